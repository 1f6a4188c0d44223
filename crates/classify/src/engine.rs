//! Deciding: rules fired on the matcher's hits, destinations scored and
//! chosen by precedence, the township placed, and the explanation built.

use aho_corasick::AhoCorasick;
use minsheng_core::{
    Call, Decision, DestinationScore, FiredRule, Match, NegatedMatch, PlaceSource, Township,
    TownshipCode, Transfer,
};
use minsheng_geo::Gazetteer;
use minsheng_rules::{Code, Condition, Diagnostic, Location, RuleSet, TermKind};

use crate::matcher::{Cond, Hit, Matcher};
use crate::normalize::normalize;
use crate::segment::{Segmenter, Token};

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
    /// Dialect phrases and what they become, leftmost-longest.
    rewriter: Option<(AhoCorasick, Vec<String>)>,
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
        // The segmenter (jieba's dictionary and ours) and the matcher (the
        // automaton and every pattern) need nothing of each other: built
        // side by side, loading takes the longer of the two, not the sum.
        let (segmenter, matcher) = std::thread::scope(|scope| {
            let segmenter = scope.spawn(|| Segmenter::new(&rules.dictionaries, &place_words));
            let matcher = Matcher::new(&rules);
            let segmenter = segmenter
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (segmenter, matcher)
        });
        let segmenter = segmenter.map_err(|diagnostics| BuildError { diagnostics })?;
        let matcher = matcher.map_err(|diagnostics| BuildError { diagnostics })?;
        let rewriter = (!rules.rewrites.is_empty()).then(|| {
            let automaton = AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                .build(rules.rewrites.iter().map(|r| &r.from))
                .expect("rewrite phrases are plain strings");
            (
                automaton,
                rules.rewrites.iter().map(|r| r.to.clone()).collect(),
            )
        });
        Ok(Classifier {
            rules,
            rewriter,
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
        // Retractors are found in the text, not among the tokens: however
        // the segmenter cuts them does not matter.
        let retractors = &self.rules.negation.retractors;
        let mut warn = |term: &minsheng_rules::Term, out: &mut Vec<Diagnostic>| {
            if let TermKind::Token(t) = &term.kind {
                if retractors.contains(t) {
                    return;
                }
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
        // Rewrites see the normalised text: a `from` that normalisation
        // changes (嘸 becomes 呒) can never be found.
        for rewrite in &self.rules.rewrites {
            let seen = normalize(&rewrite.from);
            if seen != rewrite.from {
                out.push(
                    Diagnostic::at(
                        Code::UnreachableRewrite,
                        rewrite.location.clone(),
                        format!(
                            "rewrite `{}` can never match: normalisation turns it into `{seen}` before rewrites run",
                            rewrite.from
                        ),
                    )
                    .with_help(format!("write `{seen}` instead")),
                );
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

    /// The queue of a destination (by index) for a call of a township.
    pub fn queue_for(&self, destination: usize, township: Option<&TownshipCode>) -> String {
        let dest = &self.rules.destinations[destination];
        match (dest.per_township, township) {
            (true, Some(code)) => format!("{}.{code}", dest.queue),
            (true, None) => format!("{}.unassigned", dest.queue),
            (false, _) => dest.queue.clone(),
        }
    }

    /// Every queue a ticket can be in: each destination's, and for a
    /// per-township destination one per township of the gazetteer and
    /// `.unassigned`.
    pub fn queues(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, dest) in self.rules.destinations.iter().enumerate() {
            if dest.per_township {
                out.extend(
                    self.gazetteer
                        .townships()
                        .iter()
                        .map(|t| self.queue_for(i, Some(&t.code))),
                );
            }
            out.push(self.queue_for(i, None));
        }
        out
    }

    /// The text rules see: normalised ([`normalize`]), then dialect
    /// phrases rewritten by the rule set's `[[rewrite]]` tables.
    pub fn prepare(&self, text: &str) -> String {
        let text = normalize(text);
        match &self.rewriter {
            Some((automaton, to)) => automaton.replace_all(&text, to),
            None => text,
        }
    }

    /// Decides who handles a call, and explains why.
    pub fn classify(&self, call: &Call) -> Decision {
        let text = self.prepare(&call.text);
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
        // The same, counting only rules that do not ask for review.
        let mut solid = vec![0.0f64; rules.destinations.len()];
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
                if !rule.review {
                    solid[rule.destination] = solid[rule.destination].max(rule.weight);
                }
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
        // A human looks when the decision rests on weak signals only, or
        // when a weak signal for a destination of higher precedence (a
        // possible danger) was outweighed.
        let negatives = scores[dest_index] - strongest[dest_index];
        let rests_on_weak = !nothing_decided && solid[dest_index] + negatives < dest.threshold;
        let weak_danger_passed_over = fired.iter().any(|f| {
            f.review
                && f.weight > 0.0
                && rules
                    .destination_index(&f.destination)
                    .is_some_and(|d| d < dest_index)
        });
        let review_asked = rests_on_weak || weak_danger_passed_over;
        let confidence = if nothing_decided {
            0.0
        } else {
            confidence(&scores, dest_index, dest.threshold)
        };

        let given = call.township.as_ref().and_then(|code| {
            self.gazetteer.get(code).map(|t| Township {
                code: t.code.clone(),
                name: t.name.clone(),
                district: t.district.clone(),
                source: PlaceSource::Operator,
                matched: code.to_string(),
            })
        });
        let township = given.or_else(|| self.gazetteer.resolve(location, text));
        let queue = self.queue_for(dest_index, township.as_ref().map(|t| &t.code));
        let transfer = (dest.hotline != Some(call.hotline)).then(|| Transfer {
            from: call.hotline,
            to: dest.name.clone(),
            label: format!("{}→{}", call.hotline, dest.transfer_label),
        });

        // The chosen destination's rules first, then by precedence, each in
        // rule order (the sort is stable).
        fired.sort_by_key(|f| {
            (
                f.destination != dest.name,
                rules.destination_index(&f.destination),
            )
        });

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
                dest.default_urgency
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
