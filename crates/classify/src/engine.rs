//! Matching and deciding: terms compiled into one token table, one phrase
//! automaton and one regex set, so that a call costs one pass of each.

use std::collections::HashMap;

use aho_corasick::AhoCorasick;
use minsheng_core::{
    Call, Decision, DestinationScore, FiredRule, Match, MatchKind, NegatedMatch, Transfer, Urgency,
};
use minsheng_geo::Gazetteer;
use minsheng_rules::{Code, Condition, Diagnostic, Location, RuleSet, TermKind};
use regex::{Regex, RegexSet};

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
    phrase_terms: Vec<usize>,
    regex_set: RegexSet,
    regexes: Vec<(Regex, usize)>,
    /// term id → the lists that hold it
    term_lists: Vec<Vec<usize>>,
    /// rule index → (any, all, none)
    rule_conds: Vec<[Vec<Cond>; 3]>,
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
        // Valid (counting) hits by term and by list, for negatable and non-negatable rules.
        let mut by_term: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut by_list: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, h) in hits.iter().enumerate() {
            by_term.entry(h.term).or_default().push(i);
            for &l in &m.term_lists[h.term] {
                by_list.entry(l).or_default().push(i);
            }
        }
        let empty = Vec::new();
        let cond_hits = |c: Cond, negatable: bool| -> Vec<usize> {
            let all = match c {
                Cond::List(l) => by_list.get(&l).unwrap_or(&empty),
                Cond::Term(t) => by_term.get(&t).unwrap_or(&empty),
            };
            all.iter()
                .copied()
                .filter(|&i| !negatable || hits[i].negated_by.is_none())
                .collect()
        };

        let char_of = CharIndex::new(text);
        let mut fired = Vec::new();
        let mut scores = vec![0.0f64; rules.destinations.len()];
        for (ri, rule) in rules.rules.iter().enumerate() {
            let [any, all, none] = &m.rule_conds[ri];
            if none
                .iter()
                .any(|&c| !cond_hits(c, rule.negatable).is_empty())
            {
                continue;
            }
            let mut evidence = Vec::new();
            let mut ok = true;
            for (ci, &c) in all.iter().enumerate() {
                let hs = cond_hits(c, rule.negatable);
                if hs.is_empty() {
                    ok = false;
                    break;
                }
                evidence.extend(hs.into_iter().map(|h| (rule.all[ci].display(), h)));
            }
            if !ok {
                continue;
            }
            if !any.is_empty() {
                let before = evidence.len();
                for (ci, &c) in any.iter().enumerate() {
                    evidence.extend(
                        cond_hits(c, rule.negatable)
                            .into_iter()
                            .map(|h| (rule.any[ci].display(), h)),
                    );
                }
                if evidence.len() == before {
                    continue;
                }
            }
            scores[rule.destination] += rule.weight;
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
        let mut phrase_terms = Vec::new();
        let mut regexes: Vec<(Regex, usize)> = Vec::new();
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
                    phrase_terms.push(id);
                }
                TermKind::Regex(r) => regexes.push((r.clone(), id)),
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
        let rule_conds = rules
            .rules
            .iter()
            .map(|r| {
                [
                    compile_conds(&r.any),
                    compile_conds(&r.all),
                    compile_conds(&r.none),
                ]
            })
            .collect();
        let mut term_lists = vec![Vec::new(); terms.len()];
        for (l, members) in list_members.iter().enumerate() {
            for &t in members {
                if !term_lists[t].contains(&l) {
                    term_lists[t].push(l);
                }
            }
        }
        let phrases = AhoCorasick::new(&phrase_patterns)
            .expect("phrase automaton: patterns are plain strings");
        let regex_set = RegexSet::new(regexes.iter().map(|(r, _)| r.as_str()))
            .expect("each pattern compiled alone");
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
            phrase_terms,
            regex_set,
            regexes,
            term_lists,
            rule_conds,
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
        for m in self.phrases.find_overlapping_iter(text) {
            let term = self.phrase_terms[m.pattern().as_usize()];
            hits.push(Hit {
                term,
                byte_start: m.start(),
                byte_end: m.end(),
                token: token_at(m.start()),
                negated_by: None,
            });
        }
        for idx in self.regex_set.matches(text).iter() {
            let (re, term) = &self.regexes[idx];
            for m in re.find_iter(text) {
                hits.push(Hit {
                    term: *term,
                    byte_start: m.start(),
                    byte_end: m.end(),
                    token: token_at(m.start()),
                    negated_by: None,
                });
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
