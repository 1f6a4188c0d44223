//! The matcher: every keyword, phrase and pattern of a rule set compiled
//! into one token table and one Aho-Corasick automaton; regular
//! expressions run only where the automaton saw a literal they must start
//! (or end) with. One call costs one pass of each.

use std::collections::{HashMap, HashSet};
use std::panic::{RefUnwindSafe, UnwindSafe};

use aho_corasick::AhoCorasick;
use minsheng_core::MatchKind;
use minsheng_rules::{Code, Condition, Diagnostic, RuleSet, TermKind};
use regex_automata::hybrid::dfa::{Cache as DfaCache, DFA};
use regex_automata::meta::Regex as MetaRegex;
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::pool::Pool;
use regex_automata::{Anchored, Input};
use regex_syntax::hir::Hir;
use regex_syntax::hir::literal::{ExtractKind, Extractor, Seq};

use crate::segment::Token;

/// A term of the rule set, deduplicated across lists and rules.
#[derive(Debug)]
pub(crate) struct TermInfo {
    pub(crate) text: String,
    pub(crate) kind: MatchKind,
}

/// What a rule condition refers to, after compilation.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cond {
    List(usize),
    Term(usize),
}

/// The compiled matcher.
#[derive(Debug)]
pub(crate) struct Matcher {
    pub(crate) terms: Vec<TermInfo>,
    tokens: HashMap<String, usize>,
    phrases: AhoCorasick,
    /// automaton pattern → what its match means
    phrase_targets: Vec<Target>,
    /// the patterns that are real regular expressions, with their term
    regexes: Vec<(Engine, usize)>,
    /// Each thread's lazy DFA caches for the `Engine::Anchored` patterns,
    /// made on a pattern's first search.
    dfa_caches: Pool<DfaCaches, CachesFn>,
    /// regexes with neither a finite set of prefixes nor of suffixes: run on every call
    always_run: Vec<usize>,
    /// regex → whether it is gated by a suffix as well as a prefix
    suffix_gated: Vec<bool>,
    /// term id → the lists that hold it
    pub(crate) term_lists: Vec<Vec<usize>>,
    /// rule index → (any, all, none, unless)
    pub(crate) rule_conds: Vec<[Vec<Cond>; 4]>,
    /// term id → rules that name it directly in `any`/`all`
    pub(crate) term_rules: Vec<Vec<usize>>,
    /// list index → rules that name it in `any`/`all`
    pub(crate) list_rules: Vec<Vec<usize>>,
    negators: HashSet<String>,
    clause_negators: HashSet<String>,
    /// The retractors ("哦不是", "说错了"), found in the text.
    retractors: Option<AhoCorasick>,
}

/// How a regular expression runs.
#[derive(Debug)]
enum Engine {
    /// Only from a place where the phrase automaton saw one of its
    /// prefixes: a forward lazy DFA anchored there finds where the match
    /// ends, and the place is where it starts. A third of the memory of
    /// the full engine, which also builds the pattern backwards to find
    /// where a match starts.
    Anchored(Box<DFA>),
    /// Over the whole text (no finite set of prefixes): the full engine.
    Unanchored(MetaRegex),
}

/// Makes a thread's (empty) set of DFA caches.
type CachesFn = Box<dyn Fn() -> DfaCaches + Send + Sync + UnwindSafe + RefUnwindSafe>;

/// One thread's lazy DFA caches, one per anchored pattern, each made on
/// the pattern's first search. A cache keeps the states the calls it has
/// seen needed; a thread that has classified thousands of different calls
/// would hold tens of megabytes of them, so past CACHE_BUDGET_BYTES the
/// largest are dropped (all of them if that is not enough) and begin
/// again.
#[derive(Debug)]
struct DfaCaches {
    caches: Vec<Option<DfaCache>>,
    /// Calls since the last look at the budget.
    calls: u32,
}

/// What one thread's DFA caches may hold together before they are dropped.
/// The states most calls need come back within a few calls.
const CACHE_BUDGET_BYTES: usize = 16 << 20;

/// How often, in calls, a thread adds up the size of its caches.
const CACHE_CHECK_EVERY: u32 = 64;

/// The most the lazy DFA cache of one pattern may hold, per thread (the
/// engine's default). Bounding each pattern's cache at 16 KiB kept memory
/// down but rebuilt busy caches so often that the server lost a fifth of
/// its throughput (BENCHMARKS.md); the memory is bounded instead by
/// CACHE_BUDGET_BYTES over all of a thread's caches.
const PATTERN_CACHE_BYTES: usize = 2 << 20;

/// Where a sentence ends: a retraction reaches back no further.
const SENTENCE_BREAKS: &[char] = &['。', '！', '？', '!', '?', '\n'];

/// The start of the sentence that ends at byte `end` (exclusive).
fn sentence_start_before(text: &str, end: usize) -> usize {
    text[..end]
        .char_indices()
        .rev()
        .find(|(_, c)| SENTENCE_BREAKS.contains(c))
        .map_or(0, |(i, c)| i + c.len_utf8())
}

/// What a token is, for negation.
struct TokenKind {
    /// It holds a clause break: negation does not reach across it.
    breaks: bool,
    negator: bool,
    clause_negator: bool,
}

/// One place in the text where a term matched.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hit {
    pub(crate) term: usize,
    pub(crate) byte_start: usize,
    pub(crate) byte_end: usize,
    /// The token that holds the start of the hit.
    pub(crate) token: usize,
    /// The negating token, if any.
    pub(crate) negated_by: Option<usize>,
}

impl Matcher {
    /// Compiles every term of the rule set; a pattern too big to build is
    /// an error at its place.
    pub(crate) fn new(rules: &RuleSet) -> Result<Matcher, Vec<Diagnostic>> {
        let mut terms: Vec<TermInfo> = Vec::new();
        let mut ids: HashMap<(MatchKind, String), usize> = HashMap::new();
        let mut tokens = HashMap::new();
        let mut phrase_patterns = Vec::new();
        let mut phrase_targets = Vec::new();
        let mut regexes: Vec<(Engine, usize)> = Vec::new();
        let mut always_run = Vec::new();
        let mut suffix_gated = Vec::new();
        let mut regex_sources: Vec<String> = Vec::new();
        let mut failed: Vec<Diagnostic> = Vec::new();
        // Only the span of a match is used: the groups a pattern writes
        // for alternation need no capture slots, and the engines that
        // exist to report them (one-pass, backtracking) need not be built,
        // which makes each pattern smaller and quicker to build. See
        // PATTERN_CACHE_BYTES for the lazy DFA's cache.
        let config = MetaRegex::config()
            .which_captures(WhichCaptures::Implicit)
            .hybrid_cache_capacity(PATTERN_CACHE_BYTES)
            .backtrack(false)
            .onepass(false);
        let dfa_config = DFA::config().cache_capacity(PATTERN_CACHE_BYTES);
        // The full engine's size limit, so that a pattern too big to build
        // is an error on either engine.
        let nfa_config = thompson::Config::new()
            .which_captures(WhichCaptures::None)
            .nfa_size_limit(Some(10 << 20));
        let mut intern = |term: &minsheng_rules::Term| -> usize {
            let (kind, text) = match &term.kind {
                TermKind::Token(t) => (MatchKind::Token, t.clone()),
                TermKind::Phrase(p) => (MatchKind::Phrase, p.clone()),
                TermKind::Regex(r) => (MatchKind::Regex, r.clone()),
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
                // Parsed once, for its literal sets and its look-around;
                // the rule compiler has already refused one that does not
                // parse.
                TermKind::Regex(r) => {
                    let hir = regex_syntax::parse(r).ok();
                    match hir.as_ref().and_then(exact_literals) {
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
                            // one of the prefixes it must start with; a
                            // pattern with look-around (which a lazy DFA
                            // cannot always follow) or no finite prefix set
                            // runs on the full engine.
                            let prefixes = hir
                                .as_ref()
                                .and_then(|h| literals_of(h, ExtractKind::Prefix));
                            let look_around = hir.as_ref().is_none_or(has_look_around);
                            let engine = match &prefixes {
                                Some(_) if !look_around => DFA::builder()
                                    .configure(dfa_config.clone())
                                    .thompson(nfa_config.clone())
                                    .build(r)
                                    .map(|dfa| Engine::Anchored(Box::new(dfa)))
                                    .map_err(|e| e.to_string()),
                                _ => MetaRegex::builder()
                                    .configure(config.clone())
                                    .build(r)
                                    .map(Engine::Unanchored)
                                    .map_err(|e| e.to_string()),
                            };
                            let engine = match engine {
                                Ok(engine) => engine,
                                // Well formed (the rule compiler parsed it) but
                                // too big to build: an error at its place.
                                Err(e) => {
                                    failed.push(Diagnostic::at(
                                        Code::BadRegex,
                                        term.location.clone(),
                                        format!("pattern `{r}` cannot be built: {e}"),
                                    ));
                                    ids.insert((kind, text.clone()), id);
                                    terms.push(TermInfo { text, kind });
                                    return id;
                                }
                            };
                            let index = regexes.len();
                            regex_sources.push(r.as_str().to_owned());
                            let anchored = matches!(engine, Engine::Anchored(_));
                            regexes.push((engine, id));
                            let suffixes = hir
                                .as_ref()
                                .and_then(|h| literals_of(h, ExtractKind::Suffix));
                            suffix_gated.push(false);
                            match prefixes.filter(|_| anchored) {
                                Some(prefixes) => {
                                    for prefix in prefixes {
                                        phrase_patterns.push(prefix);
                                        phrase_targets.push(Target::Regex(index));
                                    }
                                    // A prefix alone (用, 有) is common; the
                                    // pattern also needs one of its suffixes
                                    // later in the text.
                                    if let Some(suffixes) = suffixes {
                                        suffix_gated[index] = true;
                                        for suffix in suffixes {
                                            phrase_patterns.push(suffix);
                                            phrase_targets.push(Target::RegexEnd(index));
                                        }
                                    }
                                }
                                // No finite prefix set: run it over the whole
                                // text, but only once a suffix it must end
                                // with has been seen.
                                None => match suffixes {
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
                    }
                }
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
        let negators = rules.negation.negators.iter().cloned().collect();
        let retractors = (!rules.negation.retractors.is_empty()).then(|| {
            AhoCorasick::new(&rules.negation.retractors).expect("retractors: a few plain strings")
        });
        if !failed.is_empty() {
            return Err(failed);
        }
        let count = regexes.len();
        let dfa_caches: Pool<DfaCaches, CachesFn> = Pool::new(Box::new(move || DfaCaches {
            caches: (0..count).map(|_| None).collect(),
            calls: 0,
        }));
        Ok(Matcher {
            terms,
            tokens,
            phrases,
            phrase_targets,
            regexes,
            dfa_caches,
            always_run,
            suffix_gated,
            term_lists,
            rule_conds,
            term_rules,
            list_rules,
            negators,
            clause_negators: rules.negation.clause_negators.iter().cloned().collect(),
            retractors,
        })
    }

    /// Every hit of every term in a text, each marked with its negator.
    pub(crate) fn hits(&self, text: &str, tokens: &[Token<'_>], rules: &RuleSet) -> Vec<Hit> {
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
        // regex → the furthest end of one of its suffixes
        let mut suffix_end: Vec<(usize, usize)> = Vec::new();
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
                Target::RegexEnd(r) => match suffix_end.iter_mut().find(|(x, _)| *x == r) {
                    Some((_, end)) => *end = (*end).max(m.end()),
                    None => suffix_end.push((r, m.end())),
                },
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
        if !starts.is_empty() {
            let mut caches = self.dfa_caches.get();
            for (r, at) in starts {
                if self.suffix_gated[r] && !suffix_end.iter().any(|&(x, end)| x == r && end > at) {
                    continue;
                }
                let Engine::Anchored(dfa) = &self.regexes[r].0 else {
                    continue;
                };
                let cache = caches.caches[r].get_or_insert_with(|| dfa.create_cache());
                let input = Input::new(text).range(at..).anchored(Anchored::Yes);
                // Without look-around the DFA never quits, and it is not
                // told to give up: an error cannot happen.
                if let Ok(Some(end)) = dfa.try_search_fwd(cache, &input) {
                    regex_hit(r, regex_automata::Match::must(0, at..end.offset()));
                }
            }
            caches.calls += 1;
            if caches.calls >= CACHE_CHECK_EVERY {
                caches.calls = 0;
                let bytes: usize = caches
                    .caches
                    .iter()
                    .flatten()
                    .map(DfaCache::memory_usage)
                    .sum();
                if bytes > CACHE_BUDGET_BYTES {
                    // The largest caches first (a few wide patterns hold
                    // most of the states); all of them if that is not
                    // enough.
                    let mut left = bytes;
                    for cache in caches.caches.iter_mut() {
                        let size = cache.as_ref().map_or(0, DfaCache::memory_usage);
                        if size > CACHE_BUDGET_BYTES / 64 {
                            *cache = None;
                            left -= size;
                        }
                    }
                    if left > CACHE_BUDGET_BYTES / 2 {
                        caches.caches.iter_mut().for_each(|c| *c = None);
                    }
                    tracing::debug!(bytes, left, "pattern caches over their budget: dropped");
                }
            }
        }
        for &r in self.always_run.iter().chain(&anywhere) {
            let Engine::Unanchored(meta) = &self.regexes[r].0 else {
                continue;
            };
            for m in meta.find_iter(text) {
                regex_hit(r, m);
            }
        }
        // What each token is for negation, worked out once per call rather
        // than once per hit.
        let kinds: Vec<TokenKind> = tokens
            .iter()
            .map(|t| TokenKind {
                breaks: t
                    .text
                    .chars()
                    .any(|c| rules.negation.clause_breaks.contains(&c)),
                negator: self.negators.contains(t.text),
                clause_negator: self.clause_negators.contains(t.text),
            })
            .collect();
        let window = rules.negation.window;
        for hit in &mut hits {
            // Back to the start of the clause: a negator counts within the
            // window before the hit; a clause negator anywhere before the
            // hit's end, so that a pattern spanning "她以为有人掉水里"
            // is cancelled too.
            let last = token_at(hit.byte_end.saturating_sub(1)).max(hit.token);
            for j in (0..=last).rev() {
                let kind = &kinds[j];
                if j < hit.token && kind.breaks {
                    break;
                }
                let before = j < hit.token;
                // A hit that starts inside a negating token (人 of 没人)
                // is negated by it.
                let inside_negator = j == hit.token && tokens[j].byte_start < hit.byte_start;
                let near = (before && hit.token - j <= window) || inside_negator;
                let inside_or_before = j < last;
                if (near && kind.negator) || (inside_or_before && kind.clause_negator) {
                    hit.negated_by = Some(j);
                    break;
                }
            }
        }
        // A retraction ("我邻居拿刀……哦不是，说错了") takes back every
        // keyword before it in its sentence; one that opens its sentence
        // ("门锁被撬了！……不是不是") takes back the sentence before.
        if let Some(retractors) = &self.retractors {
            for m in retractors.find_iter(text) {
                let mut sentence_start = sentence_start_before(text, m.start());
                let opens_its_sentence = text[sentence_start..m.start()]
                    .chars()
                    .all(|c| !c.is_alphanumeric());
                if opens_its_sentence && sentence_start > 0 {
                    let break_at = text[..sentence_start]
                        .char_indices()
                        .next_back()
                        .map_or(0, |(i, _)| i);
                    sentence_start = sentence_start_before(text, break_at);
                }
                for hit in &mut hits {
                    if hit.negated_by.is_none()
                        && hit.byte_start >= sentence_start
                        && hit.byte_end <= m.start()
                    {
                        hit.negated_by = Some(token_at(m.start()));
                    }
                }
            }
        }
        hits
    }
}

/// The literal strings regex-syntax extracts from a pattern, as a
/// sequence (prefixes or suffixes of every match, at most 500 of them).
fn extract(hir: &Hir, kind: ExtractKind) -> Seq {
    let mut extractor = Extractor::new();
    extractor.kind(kind).limit_total(500);
    extractor.extract(hir)
}

/// Whether a pattern looks around (`^`, `$`, `\b`…): the lazy DFA may
/// have to quit on such a pattern, so it runs on the full engine.
fn has_look_around(hir: &Hir) -> bool {
    !hir.properties().look_set().is_empty()
}

/// The strings a pattern matches, when it matches only a small finite set
/// of them (`(吹|刮)倒` → 吹倒, 刮倒); `None` for anything else.
fn exact_literals(hir: &Hir) -> Option<Vec<String>> {
    // The literal extractor passes over look-around: `^有人` is not the
    // phrase 有人.
    if has_look_around(hir) {
        return None;
    }
    let seq = extract(hir, ExtractKind::Prefix);
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

/// The finite set of strings every match of a pattern starts (or ends)
/// with, cut to whole characters; `None` when there is no small set.
fn literals_of(hir: &Hir, kind: ExtractKind) -> Option<Vec<String>> {
    let mut seq = extract(hir, kind.clone());
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
        // Cut back to whole characters: from the end for a prefix, from
        // the start for a suffix. An empty literal gates nothing.
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
    /// A match of this prefix-gated regex may end here.
    RegexEnd(usize),
}
