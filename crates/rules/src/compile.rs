//! Validation: raw files in, a checked [`RuleSet`] and every diagnostic out.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::diag::{Code, Diagnostic, Location, Severity, SourceFile};
use crate::raw::{RawExample, RawList, RawRule, RawRuleFile, RawSettings, RawTerm};
use crate::{
    Condition, Destination, Example, ExpectedTownship, Negation, PLACES_FILE, Rewrite, Rule,
    RuleSet, SETTINGS_FILE, TOWNSHIPS_FILE, Term, TermKind, WordList,
};

/// The outcome of checking a rule directory.
#[derive(Debug)]
pub struct Checked {
    /// The rule set, when there was no error (warnings allowed).
    pub rule_set: Option<RuleSet>,
    /// Every problem found, errors and warnings, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity() == Severity::Error)
    }
}

/// Checks and compiles the files of a rule directory.
///
/// `files` are every file of the directory; which is which is decided by
/// name: `minsheng.toml` (settings), `places.toml` (for the gazetteer),
/// `townships.csv`, `*.dict` (user dictionaries), any other `*.toml`
/// (lists, rules, examples). Other files (README.md) only count towards
/// the version.
pub fn compile(files: Vec<Arc<SourceFile>>) -> Checked {
    let mut cx = Compiler::default();
    let rule_set = cx.run(files);
    // A list whose definition had its own error is not also "unknown"
    // wherever it is used: that would bury the real problem.
    let dropped = std::mem::take(&mut cx.dropped_lists);
    cx.diags.retain(|d| {
        d.code != Code::UnknownList
            || !dropped
                .iter()
                .any(|name| d.message == format!("unknown list `@{name}`"))
    });
    let has_error = cx.diags.iter().any(|d| d.severity() == Severity::Error);
    Checked {
        rule_set: if has_error { None } else { rule_set },
        diagnostics: cx.diags,
    }
}

#[derive(Default)]
struct Compiler {
    diags: Vec<Diagnostic>,
    /// Lists left out because their own definition could not be read.
    dropped_lists: HashSet<String>,
}

/// How the words of a negation setting are matched.
#[derive(Debug, Clone, Copy)]
enum SettingWords {
    /// As tokens: plain words only.
    Tokens,
    /// In the text: words or phrases.
    Text,
}

/// How many broken items of one rule file are set aside, each with its
/// error, before the rest of the file is given up.
const MAX_RECOVERIES: usize = 100;

/// The byte range of the top-level item (`[list.x]`, `[[rule]]`,
/// `[[example]]`, `[[rewrite]]`) that holds `offset`: from its header line
/// to the next header line. `None` before the first header.
fn item_around(text: &str, offset: usize) -> Option<std::ops::Range<usize>> {
    let mut start = None;
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        let is_header = line.trim_start().starts_with('[');
        if is_header {
            if line_start > offset {
                return start.map(|s| s..line_start);
            }
            start = Some(line_start);
        }
        line_start += line.len();
    }
    start.map(|s| s..text.len())
}

/// The list a `[list.NAME]` header line defines.
fn list_header(line: &str) -> Option<&str> {
    let name = line.trim().strip_prefix("[list.")?.split(']').next()?;
    Some(name.trim().trim_matches('"'))
}

fn loc<T>(file: &Arc<SourceFile>, s: &Spanned<T>) -> Location {
    Location::new(file, s.span())
}

impl Compiler {
    fn error(&mut self, code: Code, at: Location, message: impl Into<String>) -> &mut Diagnostic {
        self.diags.push(Diagnostic::at(code, at, message));
        self.diags.last_mut().expect("just pushed")
    }

    fn parse<T: serde::de::DeserializeOwned>(&mut self, file: &Arc<SourceFile>) -> Option<T> {
        match toml::from_str::<T>(&file.text) {
            Ok(v) => Some(v),
            Err(e) => {
                self.toml_error(file, &e);
                None
            }
        }
    }

    fn toml_error(&mut self, file: &Arc<SourceFile>, e: &toml::de::Error) {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim().to_owned();
        let code = if message.contains("unknown field") {
            Code::UnknownKey
        } else {
            Code::Syntax
        };
        self.error(code, Location::new(file, span), message);
    }

    /// A rule file, item by item where it must: an item with an error is
    /// reported and set aside (blanked in place, so that every other
    /// offset stays true), and the rest of the file is read again. Every
    /// broken item of the file is reported in one run, and the good ones
    /// are still checked.
    fn parse_rule_file(&mut self, file: &Arc<SourceFile>) -> Option<RawRuleFile> {
        let mut text = file.text.clone();
        for _ in 0..MAX_RECOVERIES {
            let e = match toml::from_str::<RawRuleFile>(&text) {
                Ok(raw) => return Some(raw),
                Err(e) => e,
            };
            self.toml_error(file, &e);
            let item = e.span().and_then(|span| item_around(&text, span.start));
            let Some(item) = item.filter(|r| !text[r.clone()].trim().is_empty()) else {
                break;
            };
            if let Some(name) = text[item.clone()].lines().next().and_then(list_header) {
                self.dropped_lists.insert(name.to_owned());
            }
            let blank: String = text[item.clone()]
                .chars()
                .flat_map(|c| {
                    let n = if c == '\n' { 0 } else { c.len_utf8() };
                    std::iter::repeat_n(' ', n).chain((c == '\n').then_some('\n'))
                })
                .collect();
            text.replace_range(item, &blank);
        }
        // Given up: every list the file defines is dropped with it.
        for line in file.text.lines() {
            if let Some(name) = list_header(line) {
                self.dropped_lists.insert(name.to_owned());
            }
        }
        None
    }

    fn run(&mut self, files: Vec<Arc<SourceFile>>) -> Option<RuleSet> {
        let version = version(&files);
        let mut settings = None;
        let mut rule_files = Vec::new();
        let mut dictionaries = Vec::new();
        let (mut townships, mut places) = (None, None);
        for file in files {
            let name = file.name().to_owned();
            if name == SETTINGS_FILE {
                settings = self.parse::<RawSettings>(&file).map(|s| (file, s));
            } else if name == PLACES_FILE {
                places = Some(file);
            } else if name == TOWNSHIPS_FILE {
                townships = Some(file);
            } else if crate::is_dictionary(&file) {
                dictionaries.push(file);
            } else if name.ends_with(".toml") {
                if let Some(raw) = self.parse_rule_file(&file) {
                    rule_files.push((file, raw));
                }
            }
        }

        // Lists first: rules anywhere may name lists anywhere.
        let mut lists = Vec::new();
        let mut list_index: HashMap<String, usize> = HashMap::new();
        let mut includes = Vec::new();
        for (file, raw) in &rule_files {
            for (name, list) in &raw.lists {
                if let Some(&first) = list_index.get(name.get_ref()) {
                    let first_at = lists_location(&lists, first);
                    self.error(
                        Code::DuplicateList,
                        loc(file, name),
                        format!("list `@{}` is defined twice", name.get_ref()),
                    )
                    .help = Some(format!("first defined at {first_at}"));
                    continue;
                }
                let (compiled, included) = self.list(file, name, list);
                list_index.insert(name.get_ref().clone(), lists.len());
                lists.push(compiled);
                includes.push(included);
            }
        }
        self.expand_includes(&mut lists, &includes, &list_index);

        let Some((settings_file, raw_settings)) = settings else {
            if !self.diags.iter().any(|d| {
                d.location
                    .as_ref()
                    .is_some_and(|l| l.file.name() == SETTINGS_FILE)
            }) {
                self.diags.push(
                    Diagnostic::global(Code::Settings, format!("no {SETTINGS_FILE} in the rule directory"))
                        .with_help("it declares the destinations, the fallback and negation; see rules/README.md"),
                );
            }
            return None;
        };
        let destinations = self.destinations(&settings_file, &raw_settings);
        let dest_names: Vec<&str> = destinations.iter().map(|d| d.name.as_str()).collect();
        let fallback = self.destination_ref(&settings_file, &raw_settings.fallback, &dest_names);

        let mut used_lists: HashSet<usize> = includes
            .iter()
            .flatten()
            .filter_map(|(name, _)| list_index.get(name).copied())
            .collect();
        let negation = self.negation(
            &settings_file,
            &raw_settings,
            &lists,
            &list_index,
            &mut used_lists,
        );

        // The township codes of townships.csv (its first column), so that an
        // example naming a code that does not exist is caught here.
        let known_codes: Option<HashSet<&str>> = townships.as_ref().map(|f| {
            f.text
                .lines()
                .filter_map(|l| l.split(',').next())
                .map(str::trim)
                .collect()
        });
        let mut rules = Vec::new();
        let mut examples = Vec::new();
        let mut rewrites: Vec<Rewrite> = Vec::new();
        let mut rule_ids: HashMap<String, Location> = HashMap::new();
        for (file, raw) in &rule_files {
            for raw_rule in &raw.rules {
                let id_at = loc(file, &raw_rule.id);
                if let Some(first) = rule_ids.get(raw_rule.id.get_ref()) {
                    let help = format!("first defined at {first}");
                    self.error(
                        Code::DuplicateRuleId,
                        id_at.clone(),
                        format!("duplicate rule id `{}`", raw_rule.id.get_ref()),
                    )
                    .help = Some(help);
                } else {
                    rule_ids.insert(raw_rule.id.get_ref().clone(), id_at);
                }
                if let Some(rule) = self.rule(
                    file,
                    raw_rule,
                    &dest_names,
                    &lists,
                    &list_index,
                    &mut used_lists,
                ) {
                    rules.push(rule);
                }
            }
            for raw_example in &raw.examples {
                if let Some(example) =
                    self.example(file, raw_example, &dest_names, known_codes.as_ref())
                {
                    examples.push(example);
                }
            }
            for raw_rewrite in &raw.rewrites {
                self.rewrite(file, raw_rewrite, &mut rewrites);
            }
        }

        for (i, list) in lists.iter().enumerate() {
            if !used_lists.contains(&i) {
                self.diags.push(
                    Diagnostic::at(
                        Code::UnusedList,
                        list.location.clone(),
                        format!("list `@{}` is used by no rule", list.name),
                    )
                    .with_help("name it in a rule's any/all/none, or delete it"),
                );
            }
        }
        if destinations.is_empty() {
            self.diags.push(Diagnostic::global(
                Code::Settings,
                "no destination is declared",
            ));
        }
        dictionaries.sort_by(|a, b| a.name().cmp(b.name()));
        self.diags.sort_by_key(|d| {
            d.location
                .as_ref()
                .map(|l| (l.file.path.clone(), l.span.start))
        });

        Some(RuleSet {
            version,
            destinations,
            fallback: fallback?,
            negation: negation?,
            lists,
            rules,
            examples,
            rewrites,
            dictionaries,
            townships,
            places,
        })
    }

    fn destinations(&mut self, file: &Arc<SourceFile>, raw: &RawSettings) -> Vec<Destination> {
        let mut out: Vec<Destination> = Vec::new();
        for d in &raw.destinations {
            let name = d.name.get_ref();
            if out.iter().any(|o| &o.name == name) {
                self.error(
                    Code::DuplicateDestination,
                    loc(file, &d.name),
                    format!("destination `{name}` is declared twice"),
                );
                continue;
            }
            if name.is_empty() || d.queue.get_ref().is_empty() {
                self.error(
                    Code::Empty,
                    loc(file, &d.name),
                    "a destination needs a name and a queue",
                );
            }
            let threshold = *d.threshold.get_ref();
            if !(threshold.is_finite() && threshold > 0.0) {
                self.error(
                    Code::Settings,
                    loc(file, &d.threshold),
                    format!("threshold must be a positive number, not {threshold}"),
                );
            }
            let default_urgency = match d
                .default_urgency
                .get_ref()
                .parse::<minsheng_core::Urgency>()
            {
                Ok(u) => u,
                Err(e) => {
                    self.error(Code::Settings, loc(file, &d.default_urgency), e.to_string());
                    continue;
                }
            };
            let hotline = match &d.hotline {
                None => None,
                Some(h) => match h.get_ref().parse::<minsheng_core::Hotline>() {
                    Ok(h) => Some(h),
                    Err(e) => {
                        self.error(Code::Settings, loc(file, h), e.to_string());
                        continue;
                    }
                },
            };
            out.push(Destination {
                name: name.clone(),
                description: d.description.clone(),
                queue: d.queue.get_ref().clone(),
                per_township: d.per_township,
                hotline,
                transfer_label: d.transfer_label.clone(),
                threshold,
                default_urgency,
                clock: d.clock.clone(),
            });
        }
        out
    }

    fn destination_ref(
        &mut self,
        file: &Arc<SourceFile>,
        name: &Spanned<String>,
        known: &[&str],
    ) -> Option<usize> {
        let found = known.iter().position(|k| k == name.get_ref());
        if found.is_none() {
            self.error(
                Code::UnknownDestination,
                loc(file, name),
                format!("unknown destination `{}`", name.get_ref()),
            )
            .help = Some(format!("declared destinations: {}", known.join(", ")));
        }
        found
    }

    fn negation(
        &mut self,
        file: &Arc<SourceFile>,
        raw: &RawSettings,
        lists: &[WordList],
        list_index: &HashMap<String, usize>,
        used: &mut HashSet<usize>,
    ) -> Option<Negation> {
        let n = &raw.negation;
        let window = *n.window.get_ref();
        if !(1..=10).contains(&window) {
            self.error(
                Code::Settings,
                loc(file, &n.window),
                format!("negation window must be 1 to 10 tokens, not {window}"),
            );
        }
        // Each setting is checked even when another is wrong: every
        // problem in one run.
        let mut words = |name: Option<&Spanned<String>>, kind: SettingWords| match name {
            Some(name) => self.setting_words(file, name, kind, lists, list_index, used),
            None => Some(Vec::new()),
        };
        let negators = words(Some(&n.negators), SettingWords::Tokens);
        let clause_negators = words(n.clause_negators.as_ref(), SettingWords::Tokens);
        let retractors = words(n.retractors.as_ref(), SettingWords::Text);
        let (negators, clause_negators, retractors) = (negators?, clause_negators?, retractors?);
        Some(Negation {
            negators,
            clause_negators,
            retractors,
            window: window.clamp(1, 10) as usize,
            clause_breaks: n.clause_breaks.chars().collect(),
        })
    }

    /// The words of the list a negation setting names (`"@negator"`):
    /// plain words for settings matched on tokens; words or phrases for
    /// settings found in the text. A pattern is an error either way.
    fn setting_words(
        &mut self,
        file: &Arc<SourceFile>,
        name: &Spanned<String>,
        kind: SettingWords,
        lists: &[WordList],
        list_index: &HashMap<String, usize>,
        used: &mut HashSet<usize>,
    ) -> Option<Vec<String>> {
        let index = self.setting_list(file, name, list_index, used)?;
        let mut words = Vec::new();
        for term in &lists[index].terms {
            match (&term.kind, kind) {
                (TermKind::Token(t), _) | (TermKind::Phrase(t), SettingWords::Text) => {
                    words.push(t.clone());
                }
                (_, SettingWords::Tokens) => {
                    self.error(Code::Settings, term.location.clone(), "negators are matched as tokens: write plain words, not phrases or patterns");
                }
                (_, SettingWords::Text) => {
                    self.error(
                        Code::Settings,
                        term.location.clone(),
                        "retractors are found as plain text: write words or phrases, not patterns",
                    );
                }
            }
        }
        Some(words)
    }

    /// The list a negation setting names (`"@negator"`), marked used.
    fn setting_list(
        &mut self,
        file: &Arc<SourceFile>,
        name: &Spanned<String>,
        list_index: &HashMap<String, usize>,
        used: &mut HashSet<usize>,
    ) -> Option<usize> {
        let Some(bare) = name.get_ref().strip_prefix('@') else {
            self.error(
                Code::Settings,
                loc(file, name),
                "a negation setting must name a list: \"@negator\"",
            );
            return None;
        };
        let Some(&index) = list_index.get(bare) else {
            self.error(
                Code::UnknownList,
                loc(file, name),
                format!("unknown list `@{bare}`"),
            );
            return None;
        };
        used.insert(index);
        Some(index)
    }

    fn list(
        &mut self,
        file: &Arc<SourceFile>,
        name: &Spanned<String>,
        raw: &RawList,
    ) -> (WordList, Vec<(String, Location)>) {
        let location = loc(file, name);
        let mut includes = Vec::new();
        if raw.words.get_ref().is_empty() {
            self.error(
                Code::Empty,
                Location::new(file, raw.words.span()),
                format!("list `@{}` has no words", name.get_ref()),
            );
        }
        let mut seen = HashSet::new();
        let mut terms = Vec::new();
        for word in raw.words.get_ref() {
            if !seen.insert(word.get_ref().clone()) {
                self.diags.push(Diagnostic::at(
                    Code::DuplicateEntry,
                    loc(file, word),
                    format!(
                        "`{}` is listed twice in `@{}`",
                        term_text(word.get_ref()),
                        name.get_ref()
                    ),
                ));
                continue;
            }
            if let RawTerm::Word(w) = word.get_ref() {
                if let Some(other) = w.strip_prefix('@') {
                    includes.push((other.to_owned(), loc(file, word)));
                    continue;
                }
            }
            if let Some(t) = self.term(file, word) {
                terms.push(t);
            }
        }
        let list = WordList {
            name: name.get_ref().clone(),
            description: raw.description.clone(),
            terms,
            location,
        };
        (list, includes)
    }

    /// Copies the entries of included lists (`"@other"` inside a list) into
    /// the lists that include them, transitively; a cycle is an error.
    fn expand_includes(
        &mut self,
        lists: &mut [WordList],
        includes: &[Vec<(String, Location)>],
        index: &HashMap<String, usize>,
    ) {
        fn visit(
            i: usize,
            includes: &[Vec<(String, Location)>],
            index: &HashMap<String, usize>,
            path: &mut Vec<usize>,
            out: &mut Vec<usize>,
            errors: &mut Vec<Diagnostic>,
            names: &[String],
        ) {
            for (name, at) in &includes[i] {
                let Some(&j) = index.get(name) else {
                    errors.push(Diagnostic::at(
                        Code::UnknownList,
                        at.clone(),
                        format!("unknown list `@{name}`"),
                    ));
                    continue;
                };
                if path.contains(&j) {
                    let cycle: Vec<String> = path
                        .iter()
                        .chain([&j])
                        .map(|k| format!("@{}", names[*k]))
                        .collect();
                    errors.push(Diagnostic::at(
                        Code::UnknownList,
                        at.clone(),
                        format!("lists include each other: {}", cycle.join(" → ")),
                    ));
                    continue;
                }
                if !out.contains(&j) {
                    out.push(j);
                    path.push(j);
                    visit(j, includes, index, path, out, errors, names);
                    path.pop();
                }
            }
        }
        let names: Vec<String> = lists.iter().map(|l| l.name.clone()).collect();
        for i in 0..lists.len() {
            let (mut out, mut errors) = (Vec::new(), Vec::new());
            visit(
                i,
                includes,
                index,
                &mut vec![i],
                &mut out,
                &mut errors,
                &names,
            );
            // Report each bad include once: from the list that wrote it.
            errors.retain(|e| {
                includes[i]
                    .iter()
                    .any(|(_, at)| Some(at) == e.location.as_ref())
            });
            self.diags.extend(errors);
            let extra: Vec<Term> = out.iter().flat_map(|&j| lists[j].terms.clone()).collect();
            let list = &mut lists[i];
            for term in extra {
                if !list.terms.iter().any(|t| same_term(t, &term)) {
                    list.terms.push(term);
                }
            }
        }
    }

    fn term(&mut self, file: &Arc<SourceFile>, raw: &Spanned<RawTerm>) -> Option<Term> {
        let location = loc(file, raw);
        let kind = match raw.get_ref() {
            RawTerm::Word(w) | RawTerm::Phrase(w) if w.trim().is_empty() => {
                self.error(Code::Empty, location, "empty keyword");
                return None;
            }
            RawTerm::Word(w) => TermKind::Token(w.clone()),
            RawTerm::Phrase(p) => {
                if p.chars().count() < 2 {
                    self.diags.push(
                        Diagnostic::at(Code::ShortPhrase, location.clone(), format!("phrase `{p}` has one character and matches inside any word that holds it"))
                            .with_help(format!("write it as a token: \"{p}\"")),
                    );
                }
                TermKind::Phrase(p.clone())
            }
            // Parsed, not compiled: the matcher compiles each pattern once,
            // and a full compile here cost most of the rule set's load time.
            RawTerm::Regex(r) => match regex_syntax::Parser::new().parse(r) {
                Ok(hir) if r.is_empty() || hir.properties().minimum_len() == Some(0) => {
                    self.error(
                        Code::Empty,
                        location,
                        format!("pattern `{r}` matches the empty string, so it matches every call"),
                    );
                    return None;
                }
                Ok(_) => TermKind::Regex(r.clone()),
                Err(e) => {
                    let detail = e.to_string();
                    let last = detail.lines().last().unwrap_or("").trim();
                    let last = last.strip_prefix("error: ").unwrap_or(last);
                    self.error(
                        Code::BadRegex,
                        location,
                        format!("bad regular expression `{r}`: {last}"),
                    );
                    return None;
                }
            },
        };
        Some(Term { kind, location })
    }

    fn conditions(
        &mut self,
        file: &Arc<SourceFile>,
        raw: &[Spanned<RawTerm>],
        lists: &[WordList],
        list_index: &HashMap<String, usize>,
        used: &mut HashSet<usize>,
    ) -> Vec<Condition> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for entry in raw {
            if !seen.insert(entry.get_ref().clone()) {
                self.diags.push(Diagnostic::at(
                    Code::DuplicateEntry,
                    loc(file, entry),
                    format!(
                        "`{}` is given twice in this condition",
                        term_text(entry.get_ref())
                    ),
                ));
                continue;
            }
            if let RawTerm::Word(w) = entry.get_ref() {
                if let Some(name) = w.strip_prefix('@') {
                    match list_index.get(name) {
                        Some(&index) => {
                            used.insert(index);
                            out.push(Condition::List {
                                index,
                                name: w.clone(),
                                location: loc(file, entry),
                            });
                        }
                        None => {
                            let mut known: Vec<_> =
                                lists.iter().map(|l| format!("@{}", l.name)).collect();
                            known.sort();
                            let near = known
                                .iter()
                                .filter(|k| shares_prefix(k, w))
                                .cloned()
                                .collect::<Vec<_>>();
                            let d = self.error(
                                Code::UnknownList,
                                loc(file, entry),
                                format!("unknown list `{w}`"),
                            );
                            if !near.is_empty() {
                                d.help = Some(format!("did you mean {}?", near.join(", ")));
                            }
                        }
                    }
                    continue;
                }
            }
            if let Some(t) = self.term(file, entry) {
                out.push(Condition::Term(t));
            }
        }
        out
    }

    fn rule(
        &mut self,
        file: &Arc<SourceFile>,
        raw: &RawRule,
        dest_names: &[&str],
        lists: &[WordList],
        list_index: &HashMap<String, usize>,
        used: &mut HashSet<usize>,
    ) -> Option<Rule> {
        let location = loc(file, &raw.id);
        let id = raw.id.get_ref();
        if id.trim().is_empty() {
            self.error(Code::Empty, location.clone(), "a rule needs an id");
        }
        let destination = self.destination_ref(file, &raw.destination, dest_names);
        let urgency = match raw.urgency.get_ref().parse::<minsheng_core::Urgency>() {
            Ok(u) => Some(u),
            Err(e) => {
                self.error(Code::Syntax, loc(file, &raw.urgency), e.to_string());
                None
            }
        };
        let weight = raw.weight.as_ref().map_or(1.0, |w| *w.get_ref());
        if let Some(w) = &raw.weight {
            if !w.get_ref().is_finite() {
                self.error(Code::Syntax, loc(file, w), "weight must be a finite number");
            } else if *w.get_ref() == 0.0 {
                self.diags.push(Diagnostic::at(
                    Code::ZeroWeight,
                    loc(file, w),
                    format!("rule `{id}` has weight 0: it fires but never counts"),
                ));
            }
        }
        let any = self.conditions(file, &raw.any, lists, list_index, used);
        let all = self.conditions(file, &raw.all, lists, list_index, used);
        let none = self.conditions(file, &raw.none, lists, list_index, used);
        let unless = self.conditions(file, &raw.unless, lists, list_index, used);
        if raw.any.is_empty() && raw.all.is_empty() {
            self.error(
                Code::NeverFires,
                location.clone(),
                format!("rule `{id}` has no `any` or `all` condition, so it can never fire"),
            );
        }
        let excluded: HashSet<&str> = none.iter().map(Condition::display).collect();
        if !any.is_empty() && any.iter().all(|c| excluded.contains(c.display())) {
            self.error(
                Code::NeverFires,
                location.clone(),
                format!("rule `{id}` can never fire: every `any` entry is also in `none`"),
            );
        }
        for c in &all {
            if excluded.contains(c.display()) {
                self.error(Code::NeverFires, c.location().clone(), format!("rule `{id}` can never fire: `{}` is required by `all` and forbidden by `none`", c.display()));
            }
        }
        Some(Rule {
            id: id.clone(),
            description: raw.description.clone(),
            destination: destination?,
            category: raw.category.clone(),
            urgency: urgency?,
            weight,
            review: raw.review,
            negatable: raw.negatable,
            any,
            all,
            none,
            unless,
            location,
        })
    }

    fn rewrite(
        &mut self,
        file: &Arc<SourceFile>,
        raw: &crate::raw::RawRewrite,
        out: &mut Vec<Rewrite>,
    ) {
        let to = raw.to.get_ref();
        if to.trim().is_empty() {
            self.error(
                Code::BadRewrite,
                loc(file, &raw.to),
                "a rewrite needs a non-empty `to`",
            );
        }
        if raw.from.is_empty() {
            self.error(
                Code::BadRewrite,
                loc(file, &raw.to),
                "a rewrite needs at least one `from`",
            );
        }
        for from in &raw.from {
            let text = from.get_ref();
            if text.chars().count() < 2 {
                self.error(Code::BadRewrite, loc(file, from), format!("rewrite `{text}` is shorter than two characters: it would change ordinary words"));
                continue;
            }
            if text == to {
                self.diags.push(Diagnostic::at(
                    Code::DuplicateEntry,
                    loc(file, from),
                    format!("rewrite `{text}` rewrites to itself"),
                ));
                continue;
            }
            if let Some(first) = out.iter().find(|r| &r.from == text) {
                let help = format!("first given at {}", first.location);
                self.error(
                    Code::DuplicateEntry,
                    loc(file, from),
                    format!("`{text}` is rewritten twice"),
                )
                .help = Some(help);
                continue;
            }
            out.push(Rewrite {
                from: text.clone(),
                to: to.clone(),
                location: loc(file, from),
            });
        }
    }

    fn example(
        &mut self,
        file: &Arc<SourceFile>,
        raw: &RawExample,
        dest_names: &[&str],
        known_codes: Option<&HashSet<&str>>,
    ) -> Option<Example> {
        let at = loc(file, &raw.text);
        if raw.text.get_ref().trim().is_empty() {
            self.error(Code::BadExample, at.clone(), "example text is empty");
        }
        let hotline = match &raw.hotline {
            None => Some(minsheng_core::Hotline::Police110),
            Some(h) => match h.get_ref().parse::<minsheng_core::Hotline>() {
                Ok(h) => Some(h),
                Err(e) => {
                    self.error(Code::BadExample, loc(file, h), e.to_string());
                    None
                }
            },
        };
        let expect = match &raw.expect {
            None => None,
            Some(e) => Some(self.destination_ref(file, e, dest_names)?),
        };
        let mut not = Vec::new();
        for n in &raw.not {
            not.push(self.destination_ref(file, n, dest_names)?);
        }
        if expect.is_none() && not.is_empty() {
            self.error(
                Code::BadExample,
                at.clone(),
                "an example needs `expect`, `not`, or both",
            );
        }
        let township = match &raw.township {
            None => None,
            Some(t) if t.get_ref() == "none" => Some(ExpectedTownship::Unassigned),
            Some(t) => match t.get_ref().parse::<minsheng_core::TownshipCode>() {
                Ok(code)
                    if known_codes.is_some_and(|known| !known.contains(t.get_ref().as_str())) =>
                {
                    self.error(
                        Code::BadExample,
                        loc(file, t),
                        format!("no township {code} in townships.csv"),
                    )
                    .help = Some("write a code from townships.csv, or \"none\"".into());
                    None
                }
                Ok(code) => Some(ExpectedTownship::Code(code)),
                Err(e) => {
                    self.error(Code::BadExample, loc(file, t), e.to_string())
                        .help = Some("write a code from townships.csv, or \"none\"".into());
                    None
                }
            },
        };
        Some(Example {
            text: raw.text.get_ref().clone(),
            location: raw.location.clone(),
            hotline: hotline?,
            expect,
            not,
            township,
            location_in_file: at,
        })
    }
}

fn lists_location(lists: &[WordList], i: usize) -> String {
    lists[i].location.to_string()
}

fn same_term(a: &Term, b: &Term) -> bool {
    match (&a.kind, &b.kind) {
        (TermKind::Token(x), TermKind::Token(y)) | (TermKind::Phrase(x), TermKind::Phrase(y)) => {
            x == y
        }
        (TermKind::Regex(x), TermKind::Regex(y)) => x == y,
        _ => false,
    }
}

fn term_text(t: &RawTerm) -> &str {
    match t {
        RawTerm::Word(s) | RawTerm::Phrase(s) | RawTerm::Regex(s) => s,
    }
}

fn shares_prefix(known: &str, wanted: &str) -> bool {
    let a: Vec<char> = known.chars().skip(1).collect();
    let b: Vec<char> = wanted.chars().skip(1).collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    common >= 3
        || (common >= 1 && a.len().abs_diff(b.len()) <= 1 && common + 2 >= a.len().min(b.len()))
}

/// SHA-256 over every file's name, length and bytes, in name order.
fn version(files: &[Arc<SourceFile>]) -> String {
    let mut sorted: Vec<&Arc<SourceFile>> = files.iter().collect();
    sorted.sort_by(|a, b| a.name().cmp(b.name()));
    let mut h = Sha256::new();
    for f in sorted {
        h.update(f.name().as_bytes());
        h.update([0]);
        h.update((f.text.len() as u64).to_le_bytes());
        h.update(f.text.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
