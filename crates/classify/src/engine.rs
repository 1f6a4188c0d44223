//! Matching and deciding: terms compiled into one token table, one phrase
//! automaton and one regex set, so that a call costs one pass of each.

use std::collections::HashMap;

use aho_corasick::AhoCorasick;
use minsheng_core::{
    Call, Decision, DestinationScore, FiredRule, Match, MatchKind, NegatedMatch, Transfer, Urgency,
};
use minsheng_geo::Gazetteer;
use minsheng_rules::{Code, Condition, Diagnostic, Location, RuleSet, TermKind};
use regex_automata::meta::Regex as MetaRegex;
use regex_automata::{Anchored, Input};
use regex_syntax::hir::literal::ExtractKind;

use crate::normalize::normalize;
use crate::segment::{Segmenter, Token};

/// A term of the rule set, deduplicated across lists and rules.
#[derive(Debug)]
struct TermInfo {
    text: String,
    kind: MatchKind,
}

/// What a rule condition refers to, after compilation.
#[derive(Debug, Clone, Copy)]
enum Cond {
    List(usize),
    Term(usize),
}

/// The compiled matcher.
#[derive(Debug)]
struct Matcher {
    terms: Vec<TermInfo>,
    tokens: HashMap<String, usize>,
    phrases: AhoCorasick,
    /// automaton pattern → what its match means
    phrase_targets: Vec<Target>,
    /// the patterns that are real regular expressions, with their term
    regexes: Vec<(MetaRegex, usize)>,
    /// regexes that have no finite set of prefixes, so always run
    always_run: Vec<usize>,
    /// term id → the lists that hold it
    term_lists: Vec<Vec<usize>>,
    /// rule index → (any, all, none, unless)
    rule_conds: Vec<[Vec<Cond>; 4]>,
    /// term id → rules that name it directly in `any`/`all`
    term_rules: Vec<Vec<usize>>,
    /// list index → rules that name it in `any`/`all`
    list_rules: Vec<Vec<usize>>,
    negators: HashMap<String, ()>,
}

/// One place in the text where a term matched.
#[derive(Debug, Clone, Copy)]
struct Hit {
    term: usize,
    byte_start: usize,
    byte_end: usize,
    /// The token that holds the start of the hit.
    token: usize,
    /// The negating token, if any.
    negated_by: Option<usize>,
}

/// Dictionary or gazetteer problems that stop a classifier being built,
/// each with its place.
#[derive(Debug, thiserror::Error)]
#[error("{}", .diagnostics.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct BuildError {
    /// The problems.
    pub diagnostics: Vec<Diagnostic>,
}

/// The classifier: rules, segmenter and gazetteer, built once, shared
/// read-only (`classify` takes `&self`; wrap it in an `Arc` to share).
#[derive(Debug)]
pub struct Classifier {
    rules: RuleSet,
    segmenter: Segmenter,
    gazetteer: Gazetteer,
    matcher: Matcher,
}

impl Classifier {
    /// Builds the segmenter (with the user dictionaries and every place
    /// name), the gazetteer and the matcher.
    pub fn new(rules: RuleSet) -> Result<Classifier, BuildError> {
        let gazetteer = build_gazetteer(&rules)?;
        let place_words = gazetteer.dictionary_words();
        let segmenter = Segmenter::new(&rules.dictionaries, &place_words)
            .map_err(|diagnostics| BuildError { diagnostics })?;
        let matcher = Matcher::new(&rules);
        Ok(Classifier {
            rules,
            segmenter,
            gazetteer,
            matcher,
        })
    }

    /// The rule set.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// The segmenter.
    pub fn segmenter(&self) -> &Segmenter {
        &self.segmenter
    }

    /// The gazetteer.
    pub fn gazetteer(&self) -> &Gazetteer {
        &self.gazetteer
    }

    /// Checks that need the segmenter: keywords it would split (so they
    /// never match as a token), and rules that can therefore never fire.
    pub fn lint(&self) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let split = |text: &str| -> Option<Vec<String>> {
            let toks = self.segmenter.cut(text);
            (toks.len() > 1).then(|| toks.iter().map(|t| t.text.to_owned()).collect())
        };
        let is_dead = |term: &minsheng_rules::Term| matches!(&term.kind, TermKind::Token(t) if split(t).is_some());
        let mut warned = std::collections::HashSet::new();
        let mut warn = |term: &minsheng_rules::Term, out: &mut Vec<Diagnostic>| {
            if let TermKind::Token(t) = &term.kind {
                if let Some(parts) = split(t) {
                    if warned.insert((term.location.file.path.clone(), term.location.span.start)) {
                        out.push(
                            Diagnostic::at(Code::SplitKeyword, term.location.clone(), format!("keyword `{t}` is cut into {} by the segmenter, so it never matches as a token", parts.join("/")))
                                .with_help(format!("add the line `{t}` to a rules/*.dict file, or write {{ phrase = \"{t}\" }}")),
                        );
                    }
                }
            }
        };
        for list in &self.rules.lists {
            for term in &list.terms {
                warn(term, &mut out);
            }
        }
        for rule in &self.rules.rules {
            for cond in rule.any.iter().chain(&rule.all).chain(&rule.none) {
                if let Condition::Term(t) = cond {
                    warn(t, &mut out);
                }
            }
            let cond_dead = |c: &Condition| match c {
                Condition::Term(t) => is_dead(t),
                Condition::List { index, .. } => self.rules.lists[*index].terms.iter().all(is_dead),
            };
            let dead_all = rule.all.iter().find(|c| cond_dead(c));
            let dead_any = !rule.any.is_empty() && rule.any.iter().all(cond_dead);
            if let Some(c) = dead_all {
                out.push(Diagnostic::at(Code::NeverFires, c.location().clone(), format!("rule `{}` can never fire: `{}` is required by `all` but the segmenter never produces it as a token", rule.id, c.display())));
            } else if dead_any {
                out.push(Diagnostic::at(Code::NeverFires, rule.location.clone(), format!("rule `{}` can never fire: the segmenter splits every keyword of its `any` condition", rule.id)));
            }
        }
        out
    }

    /// Decides who handles a call, and explains why.
    pub fn classify(&self, call: &Call) -> Decision {
        let text = normalize(&call.text);
        let location = call.location.as_deref().map(normalize);
        let tokens = self.segmenter.cut(&text);
        let hits = self.matcher.hits(&text, &tokens, &self.rules);
        self.decide(call, &text, location.as_deref(), &tokens, &hits)
    }

    fn decide(
        &self,
        call: &Call,
        text: &str,
        location: Option<&str>,
        tokens: &[Token<'_>],
        hits: &[Hit],
    ) -> Decision {
        let rules = &self.rules;
        let m = &self.matcher;
        // Which terms and lists have a hit: VALID when one is not negated,
        // ANY when there is any (non-negatable rules count negated hits).
        const VALID: u8 = 1;
        const ANY: u8 = 2;
        let mut term_flags = vec![0u8; m.terms.len()];
        let mut list_flags = vec![0u8; m.list_rules.len()];
        let mut candidates = Vec::new();
        for h in hits {
            let f = if h.negated_by.is_none() {
                VALID | ANY
            } else {
                ANY
            };
            term_flags[h.term] |= f;
            candidates.extend_from_slice(&m.term_rules[h.term]);
            for &l in &m.term_lists[h.term] {
                list_flags[l] |= f;
                candidates.extend_from_slice(&m.list_rules[l]);
            }
        }
        // Only rules with a hit on a positive condition can fire; keep rule order.
        candidates.sort_unstable();
        candidates.dedup();
        let holds = |c: Cond, negatable: bool| {
            let need = if negatable { VALID } else { ANY };
            match c {
                Cond::List(l) => list_flags[l] & need != 0,
                Cond::Term(t) => term_flags[t] & need != 0,
            }
        };
        let belongs = |c: Cond, h: &Hit| match c {
            Cond::List(l) => m.term_lists[h.term].contains(&l),
            Cond::Term(t) => h.term == t,
        };

        let char_of = CharIndex::new(text);
        let mut fired = Vec::new();
        // A destination's score is its strongest positive evidence plus
        // every negative weight: several rules naming one situation do not
        // add up, counter-evidence always counts.
        let mut scores = vec![0.0f64; rules.destinations.len()];
        let mut strongest = vec![0.0f64; rules.destinations.len()];
        for ri in candidates {
            let rule = &rules.rules[ri];
            let neg = rule.negatable;
            let [any, all, none, unless] = &m.rule_conds[ri];
            if none.iter().any(|&c| holds(c, neg)) {
                continue;
            }
            // Spans the rule's `unless` entries cover: hits inside them do
            // not count for this rule.
            let masks: Vec<(usize, usize)> = hits
                .iter()
                .filter(|h| unless.iter().any(|&u| belongs(u, h)))
                .map(|h| (h.byte_start, h.byte_end))
                .collect();
            let counts = |h: &Hit| {
                (!neg || h.negated_by.is_none())
                    && !masks
                        .iter()
                        .any(|&(s, e)| h.byte_start < e && s < h.byte_end)
            };
            let cond_hits = |c: Cond| {
                hits.iter()
                    .enumerate()
                    .filter(move |(_, h)| belongs(c, h) && counts(h))
                    .map(|(i, _)| i)
            };
            let holds_here = |c: Cond| {
                if masks.is_empty() {
                    holds(c, neg)
                } else {
                    cond_hits(c).next().is_some()
                }
            };
            if !all.iter().all(|&c| holds_here(c))
                || (!any.is_empty() && !any.iter().any(|&c| holds_here(c)))
            {
                continue;
            }
            let mut evidence = Vec::new();
            for (conds, written) in [(all, &rule.all), (any, &rule.any)] {
                for (ci, &c) in conds.iter().enumerate() {
                    evidence.extend(cond_hits(c).map(|h| (written[ci].display(), h)));
                }
            }
            if rule.weight > 0.0 {
                strongest[rule.destination] = strongest[rule.destination].max(rule.weight);
            } else {
                scores[rule.destination] += rule.weight;
            }
            let mut matches: Vec<Match> = evidence
                .into_iter()
                .map(|(cond, h)| {
                    let hit = &hits[h];
                    Match {
                        condition: cond.to_owned(),
                        term: m.terms[hit.term].text.clone(),
                        kind: m.terms[hit.term].kind,
                        text: text[hit.byte_start..hit.byte_end].to_owned(),
                        start: char_of.at(hit.byte_start),
                        end: char_of.at(hit.byte_end),
                    }
                })
                .collect();
            matches.sort_by(|a, b| {
                (a.start, a.end, &a.condition).cmp(&(b.start, b.end, &b.condition))
            });
            matches.dedup_by(|a, b| {
                a.start == b.start && a.end == b.end && a.condition == b.condition
            });
            fired.push(FiredRule {
                id: rule.id.clone(),
                destination: rules.destinations[rule.destination].name.clone(),
                category: rule.category.clone(),
                urgency: rule.urgency,
                weight: rule.weight,
                review: rule.review,
                matches,
            });
        }

        for (score, best) in scores.iter_mut().zip(&strongest) {
            *score += best;
        }
        let chosen = rules
            .destinations
            .iter()
            .enumerate()
            .find(|(i, d)| scores[*i] >= d.threshold)
            .map(|(i, _)| i);
        let nothing_decided = chosen.is_none();
        let dest_index = chosen.unwrap_or(rules.fallback);
        let dest = &rules.destinations[dest_index];
        let urgency = fired
            .iter()
            .filter(|f| f.destination == dest.name)
            .map(|f| f.urgency)
            .max()
            .unwrap_or(dest.default_urgency);
        let review_asked = fired.iter().any(|f| f.review && f.weight > 0.0);
        let confidence = if nothing_decided {
            0.0
        } else {
            confidence(&scores, dest_index, dest.threshold)
        };

        let township = self.gazetteer.resolve(location, text);
        let queue = if dest.per_township {
            match &township {
                Some(t) => format!("{}.{}", dest.queue, t.code),
                None => format!("{}.unassigned", dest.queue),
            }
        } else {
            dest.queue.clone()
        };
        let transfer = (dest.hotline != Some(call.hotline)).then(|| Transfer {
            from: call.hotline,
            to: dest.name.clone(),
            label: format!("{}→{}", call.hotline, dest.transfer_label),
        });

        // Strongest destination first, then rule order.
        let order: HashMap<&str, usize> = rules
            .destinations
            .iter()
            .enumerate()
            .map(|(i, d)| (d.name.as_str(), i))
            .collect();
        fired.sort_by_key(|f| (f.destination != dest.name, order[f.destination.as_str()]));

        let mut negated: Vec<NegatedMatch> = hits
            .iter()
            .filter_map(|h| {
                h.negated_by.map(|n| NegatedMatch {
                    text: text[h.byte_start..h.byte_end].to_owned(),
                    start: char_of.at(h.byte_start),
                    negator: tokens[n].text.to_owned(),
                })
            })
            .collect();
        negated.sort_by(|a, b| (a.start, &a.text).cmp(&(b.start, &b.text)));
        negated.dedup();

        Decision {
            id: call.id.clone(),
            destination: dest.name.clone(),
            queue,
            township,
            urgency: if nothing_decided {
                dest.default_urgency.max(Urgency::Routine)
            } else {
                urgency
            },
            confidence,
            needs_review: nothing_decided || review_asked,
            transfer,
            fired,
            negated,
            scores: rules
                .destinations
                .iter()
                .zip(&scores)
                .map(|(d, &s)| DestinationScore {
                    destination: d.name.clone(),
                    score: round3(s),
                    threshold: d.threshold,
                })
                .collect(),
            rules_version: rules.version.clone(),
            normalized_text: text.to_owned(),
            tokens: tokens.iter().map(|t| t.text.to_owned()).collect(),
        }
    }
}

/// How sure a decision is: grows with the winner's score over its
/// threshold (`1 - e^(-score/threshold)`), shrinks with the share of the
/// evidence that pointed elsewhere.
fn confidence(scores: &[f64], chosen: usize, threshold: f64) -> f64 {
    let won = scores[chosen].max(0.0);
    let total: f64 = scores.iter().map(|s| s.max(0.0)).sum();
    if won == 0.0 || total == 0.0 {
        return 0.0;
    }
    round3((1.0 - (-won / threshold).exp()) * (won / total))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn build_gazetteer(rules: &RuleSet) -> Result<Gazetteer, BuildError> {
    let missing = |name: &str| BuildError {
        diagnostics: vec![
            Diagnostic::global(Code::Settings, format!("no {name} in the rule directory"))
                .with_help("the gazetteer is needed to place township calls"),
        ],
    };
    let csv = rules
        .townships
        .as_ref()
        .ok_or_else(|| missing(minsheng_rules::TOWNSHIPS_FILE))?;
    let places = rules
        .places
        .as_ref()
        .ok_or_else(|| missing(minsheng_rules::PLACES_FILE))?;
    Gazetteer::parse(&csv.path, &csv.text, &places.path, &places.text).map_err(|e| BuildError {
        diagnostics: e
            .diagnostics()
            .iter()
            .map(|d| {
                let file = if d.file == places.path { places } else { csv };
                let at = file.offset_of(d.line, d.col);
                Diagnostic::at(
                    Code::Gazetteer,
                    Location::new(file, at..at),
                    d.problem.to_string(),
                )
            })
            .collect(),
    })
}

/// The strings a pattern matches, when it matches only a small finite set
/// of them (`(吹|刮)倒` → 吹倒, 刮倒); `None` for anything else.
fn exact_literals(pattern: &str) -> Option<Vec<String>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
    let mut extractor = Extractor::new();
    extractor.kind(ExtractKind::Prefix).limit_total(500);
    let seq = extractor.extract(&hir);
    if !seq.is_exact() {
        return None;
    }
    let literals = seq.literals()?;
    if literals.is_empty() || literals.iter().any(|l| l.as_bytes().is_empty()) {
        return None;
    }
    literals
        .iter()
        .map(|l| String::from_utf8(l.as_bytes().to_vec()).ok())
        .collect()
}

/// The finite set of strings every match of a pattern starts with, or
/// `None` when there is no such small set (a pattern that may start with
/// any character).
fn prefix_literals(pattern: &str) -> Option<Vec<String>> {
    literals_of(pattern, ExtractKind::Prefix)
}

/// The finite set of strings every match of a pattern starts (or ends)
/// with, cut to whole characters; `None` when there is no small set.
fn literals_of(pattern: &str, kind: ExtractKind) -> Option<Vec<String>> {
    use regex_syntax::hir::literal::Extractor;
    let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
    let mut extractor = Extractor::new();
    extractor.kind(kind.clone()).limit_total(500);
    let mut seq = extractor.extract(&hir);
    // Shorter literals are fine: they only make the gate open more often.
    match kind {
        ExtractKind::Suffix => seq.keep_last_bytes(9),
        _ => seq.keep_first_bytes(9),
    }
    seq.dedup();
    let literals = seq.literals()?;
    if literals.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for l in literals {
        let bytes = l.as_bytes();
        // Cut back to a character boundary; an empty prefix gates nothing.
        // Cut back to whole characters: from the end for a prefix, from
        // the start for a suffix.
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) if matches!(kind, ExtractKind::Suffix) => {
                let skip = bytes.iter().take_while(|b| (**b & 0xC0) == 0x80).count();
                std::str::from_utf8(&bytes[skip..]).map_err(|_| e).ok()?
            }
            Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).ok()?,
        };
        if text.is_empty() {
            return None;
        }
        out.push(text.to_owned());
    }
    Some(out)
}

/// What a match of the phrase automaton means.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// A hit of this term.
    Term(usize),
    /// This regex may match here: run it.
    Regex(usize),
    /// This regex may match somewhere: run it over the text.
    RegexAnywhere(usize),
}

/// Byte offset → character offset, for one text.
struct CharIndex {
    /// Byte offsets of each character start, plus the text length.
    starts: Vec<usize>,
}

impl CharIndex {
    fn new(text: &str) -> CharIndex {
        let mut starts: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        starts.push(text.len());
        CharIndex { starts }
    }

    fn at(&self, byte: usize) -> usize {
        self.starts.partition_point(|&s| s < byte)
    }
}

impl Matcher {
    fn new(rules: &RuleSet) -> Matcher {
        let mut terms: Vec<TermInfo> = Vec::new();
        let mut ids: HashMap<(MatchKind, String), usize> = HashMap::new();
        let mut tokens = HashMap::new();
        let mut phrase_patterns = Vec::new();
        let mut phrase_targets = Vec::new();
        let mut regexes: Vec<(MetaRegex, usize)> = Vec::new();
        let mut always_run = Vec::new();
        let mut regex_sources: Vec<String> = Vec::new();
        let mut intern = |term: &minsheng_rules::Term| -> usize {
            let (kind, text) = match &term.kind {
                TermKind::Token(t) => (MatchKind::Token, t.clone()),
                TermKind::Phrase(p) => (MatchKind::Phrase, p.clone()),
                TermKind::Regex(r) => (MatchKind::Regex, r.as_str().to_owned()),
            };
            if let Some(&id) = ids.get(&(kind, text.clone())) {
                return id;
            }
            let id = terms.len();
            match &term.kind {
                TermKind::Token(t) => {
                    tokens.insert(t.clone(), id);
                }
                TermKind::Phrase(p) => {
                    phrase_patterns.push(p.clone());
                    phrase_targets.push(Target::Term(id));
                }
                TermKind::Regex(r) => match exact_literals(r.as_str()) {
                    // A pattern that only spells out a finite set of
                    // strings runs as phrases, in the one automaton.
                    Some(literals) => {
                        for literal in literals {
                            phrase_patterns.push(literal);
                            phrase_targets.push(Target::Term(id));
                        }
                    }
                    None => {
                        // Run the pattern only when the automaton has seen
                        // one of the prefixes it must start with.
                        let index = regexes.len();
                        regex_sources.push(r.as_str().to_owned());
                        let meta = MetaRegex::new(r.as_str())
                            .expect("the rule compiler accepted this pattern");
                        regexes.push((meta, id));
                        match prefix_literals(r.as_str()) {
                            Some(prefixes) => {
                                for prefix in prefixes {
                                    phrase_patterns.push(prefix);
                                    phrase_targets.push(Target::Regex(index));
                                }
                            }
                            // No finite prefix set: run it over the whole
                            // text, but only once a suffix it must end
                            // with has been seen.
                            None => match literals_of(r.as_str(), ExtractKind::Suffix) {
                                Some(suffixes) => {
                                    for suffix in suffixes {
                                        phrase_patterns.push(suffix);
                                        phrase_targets.push(Target::RegexAnywhere(index));
                                    }
                                }
                                None => always_run.push(index),
                            },
                        }
                    }
                },
            }
            ids.insert((kind, text.clone()), id);
            terms.push(TermInfo { text, kind });
            id
        };
        let mut list_members: Vec<Vec<usize>> = Vec::new();
        for list in &rules.lists {
            list_members.push(list.terms.iter().map(&mut intern).collect());
        }
        let mut compile_conds = |conds: &[Condition]| -> Vec<Cond> {
            conds
                .iter()
                .map(|c| match c {
                    Condition::List { index, .. } => Cond::List(*index),
                    Condition::Term(t) => Cond::Term(intern(t)),
                })
                .collect()
        };
        let rule_conds: Vec<[Vec<Cond>; 4]> = rules
            .rules
            .iter()
            .map(|r| {
                [
                    compile_conds(&r.any),
                    compile_conds(&r.all),
                    compile_conds(&r.none),
                    compile_conds(&r.unless),
                ]
            })
            .collect();
        let mut term_rules = vec![Vec::new(); terms.len()];
        let mut list_rules = vec![Vec::new(); rules.lists.len()];
        for (ri, [any, all, _, _]) in rule_conds.iter().enumerate() {
            for c in any.iter().chain(all) {
                let slot = match *c {
                    Cond::List(l) => &mut list_rules[l],
                    Cond::Term(t) => &mut term_rules[t],
                };
                if slot.last() != Some(&ri) {
                    slot.push(ri);
                }
            }
        }
        let mut term_lists = vec![Vec::new(); terms.len()];
        for (l, members) in list_members.iter().enumerate() {
            for &t in members {
                if !term_lists[t].contains(&l) {
                    term_lists[t].push(l);
                }
            }
        }
        tracing::debug!(
            terms = terms.len(),
            automaton_patterns = phrase_patterns.len(),
            regexes = regexes.len(),
            always_run = ?always_run.iter().map(|&r| regex_sources[r].as_str()).collect::<Vec<_>>(),
            "compiled the matcher"
        );
        // A contiguous NFA: measured faster than a DFA over these thousands
        // of CJK patterns (whose tables miss the cache), and 17 MB smaller.
        let phrases = AhoCorasick::builder()
            .kind(Some(aho_corasick::AhoCorasickKind::ContiguousNFA))
            .build(&phrase_patterns)
            .expect("phrase automaton: patterns are plain strings");
        let negators = rules
            .negation
            .negators
            .iter()
            .map(|n| (n.clone(), ()))
            .collect();
        Matcher {
            terms,
            tokens,
            phrases,
            phrase_targets,
            regexes,
            always_run,
            term_lists,
            rule_conds,
            term_rules,
            list_rules,
            negators,
        }
    }

    /// Every hit of every term in a text, each marked with its negator.
    fn hits(&self, text: &str, tokens: &[Token<'_>], rules: &RuleSet) -> Vec<Hit> {
        let mut hits = Vec::new();
        for (i, tok) in tokens.iter().enumerate() {
            if let Some(&term) = self.tokens.get(tok.text) {
                hits.push(Hit {
                    term,
                    byte_start: tok.byte_start,
                    byte_end: tok.byte_end,
                    token: i,
                    negated_by: None,
                });
            }
        }
        let token_at = |byte: usize| {
            tokens
                .partition_point(|t| t.byte_end <= byte)
                .min(tokens.len().saturating_sub(1))
        };
        // Phrases, and the places where a gated regex may start.
        let mut starts: Vec<(usize, usize)> = Vec::new();
        let mut anywhere: Vec<usize> = Vec::new();
        for m in self.phrases.find_overlapping_iter(text) {
            match self.phrase_targets[m.pattern().as_usize()] {
                Target::Term(term) => hits.push(Hit {
                    term,
                    byte_start: m.start(),
                    byte_end: m.end(),
                    token: token_at(m.start()),
                    negated_by: None,
                }),
                Target::Regex(r) => starts.push((r, m.start())),
                Target::RegexAnywhere(r) => {
                    if !anywhere.contains(&r) {
                        anywhere.push(r);
                    }
                }
            }
        }
        starts.sort_unstable();
        starts.dedup();
        let mut regex_hit = |r: usize, m: regex_automata::Match| {
            hits.push(Hit {
                term: self.regexes[r].1,
                byte_start: m.start(),
                byte_end: m.end(),
                token: token_at(m.start()),
                negated_by: None,
            });
        };
        // A gated regex runs anchored at each place its prefix was seen,
        // which costs a few bytes of search, not a pass over the text.
        for (r, at) in starts {
            let input = Input::new(text).range(at..).anchored(Anchored::Yes);
            if let Some(m) = self.regexes[r].0.search(&input) {
                regex_hit(r, m);
            }
        }
        for &r in self.always_run.iter().chain(&anywhere) {
            for m in self.regexes[r].0.find_iter(text) {
                regex_hit(r, m);
            }
        }
        let window = rules.negation.window;
        let breaks = &rules.negation.clause_breaks;
        for hit in &mut hits {
            let first = hit.token.saturating_sub(window);
            for j in (first..hit.token).rev() {
                let t = tokens[j].text;
                if t.chars().any(|c| breaks.contains(&c)) {
                    break;
                }
                if self.negators.contains_key(t) {
                    hit.negated_by = Some(j);
                    break;
                }
            }
        }
        hits
    }
}
