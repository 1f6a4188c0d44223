//! The minsheng rule language: TOML files parsed with spans, validated, and
//! compiled into a [`RuleSet`] — the only thing the classifier accepts.
//!
//! Rule authors maintain a directory (`rules/`) of TOML files: destinations
//! and negation settings in `minsheng.toml`, named word lists (`@weapon`),
//! rules that vote for a destination when their conditions match, and
//! example calls that say where a call must (not) go. The language itself
//! is documented in `rules/README.md`.
//!
//! The design decision that shapes this crate is *parse, then validate*:
//! serde reads raw structs that keep every span, then [`compile`] checks
//! everything at once and reports **every** problem as a [`Diagnostic`]
//! with a stable code and a `file:line:col`, like a compiler. A rule set
//! with an error is never half-loaded.
//!
//! ```
//! use minsheng_rules::{compile, SourceFile};
//!
//! let settings = r#"
//! fallback = "hotline_12345"
//! [negation]
//! negators = "@negator"
//! window = 3
//! clause_breaks = "，。"
//! [[destination]]
//! name = "hotline_12345"
//! description = "12345"
//! queue = "workorder.12345"
//! transfer_label = "12345"
//! threshold = 1.0
//! default_urgency = "routine"
//! clock = "working days"
//! "#;
//! let rules = r#"
//! [list.negator]
//! words = ["没", "没有"]
//! [[rule]]
//! id = "hotline.typo"
//! description = "a rule with a typo in its destination"
//! destination = "hotlin_12345"
//! category = "咨询"
//! urgency = "routine"
//! any = ["社保"]
//! "#;
//! let checked = compile(vec![
//!     SourceFile::new("rules/minsheng.toml", settings),
//!     SourceFile::new("rules/a.toml", rules),
//! ]);
//! assert!(checked.rule_set.is_none());
//! assert_eq!(checked.diagnostics[0].to_string(),
//!     "rules/a.toml:7:15: R004: unknown destination `hotlin_12345`");
//! ```
#![deny(missing_docs)]

mod compile;
mod diag;
mod raw;

use std::path::Path;
use std::sync::Arc;

use minsheng_core::{Hotline, TownshipCode, Urgency};

pub use compile::{Checked, compile};
pub use diag::{Code, Diagnostic, Location, Severity, SourceFile};

/// The settings file of a rule directory.
pub const SETTINGS_FILE: &str = "minsheng.toml";
/// The gazetteer of township codes.
pub const TOWNSHIPS_FILE: &str = "townships.csv";
/// Short forms and well-known places of townships.
pub const PLACES_FILE: &str = "places.toml";
/// The extension of jieba user dictionaries.
pub const DICTIONARY_EXTENSION: &str = "dict";

/// Whether a file of a rule directory is a jieba user dictionary (`*.dict`).
pub fn is_dictionary(file: &SourceFile) -> bool {
    file.name()
        .strip_suffix(DICTIONARY_EXTENSION)
        .is_some_and(|stem| stem.ends_with('.'))
}

/// A checked, compiled rule set.
#[derive(Debug, Clone)]
pub struct RuleSet {
    /// SHA-256 of every file of the directory (name and bytes), in hex.
    pub version: String,
    /// Destinations in order of precedence.
    pub destinations: Vec<Destination>,
    /// The index of the destination that takes calls no rule decided.
    pub fallback: usize,
    /// How negators cancel keywords.
    pub negation: Negation,
    /// Named word lists.
    pub lists: Vec<WordList>,
    /// The rules, in file order.
    pub rules: Vec<Rule>,
    /// Example calls with their expected destinations.
    pub examples: Vec<Example>,
    /// Phrases rewritten in the normalised text before segmentation
    /// (dialect to Mandarin), in file order.
    pub rewrites: Vec<Rewrite>,
    /// The user dictionaries (`*.dict`), in name order, unparsed.
    pub dictionaries: Vec<Arc<SourceFile>>,
    /// `townships.csv`, when present.
    pub townships: Option<Arc<SourceFile>>,
    /// `places.toml`, when present.
    pub places: Option<Arc<SourceFile>>,
}

impl RuleSet {
    /// The index of a destination by name.
    pub fn destination_index(&self, name: &str) -> Option<usize> {
        self.destinations.iter().position(|d| d.name == name)
    }

    /// The first 12 hex digits of the version, for people.
    pub fn short_version(&self) -> &str {
        &self.version[..12]
    }
}

/// Where calls can be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Destination {
    /// Its name (`police`).
    pub name: String,
    /// Who it is.
    pub description: String,
    /// The queue its tickets go to.
    pub queue: String,
    /// Whether each township has its own queue (`queue.<code>`).
    pub per_township: bool,
    /// The hotline that owns it; a call from another one is a transfer.
    pub hotline: Option<Hotline>,
    /// How a transfer record names it (`基层`).
    pub transfer_label: String,
    /// The score it needs to be chosen.
    pub threshold: f64,
    /// Its urgency when no fired rule says otherwise.
    pub default_urgency: Urgency,
    /// Its response clock, as people say it.
    pub clock: String,
}

/// Negation settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Negation {
    /// The negating tokens.
    pub negators: Vec<String>,
    /// Tokens that cancel every keyword after them to the end of their
    /// clause, however far ("以为是什么东西炸了": a mistaken belief).
    pub clause_negators: Vec<String>,
    /// Words by which a caller takes back what they just said ("哦不是",
    /// "说错了"): every keyword before one, back to the start of its
    /// sentence, does not count. Matched on the text, not on tokens.
    pub retractors: Vec<String>,
    /// How many tokens before a keyword a negator reaches.
    pub window: usize,
    /// Characters that end a clause; negation never crosses them.
    pub clause_breaks: Vec<char>,
}

/// A keyword, phrase or pattern, with where it was written.
#[derive(Debug, Clone)]
pub struct Term {
    /// What it matches.
    pub kind: TermKind,
    /// Where it was written.
    pub location: Location,
}

impl Term {
    /// The keyword, phrase or pattern as written.
    pub fn text(&self) -> &str {
        match &self.kind {
            TermKind::Token(s) | TermKind::Phrase(s) => s,
            TermKind::Regex(r) => r,
        }
    }
}

/// What a term matches.
#[derive(Debug, Clone)]
pub enum TermKind {
    /// One whole segmenter token.
    Token(String),
    /// A substring of the normalised text.
    Phrase(String),
    /// A regular expression on the normalised text, as written: checked
    /// when the rules are compiled, and compiled again only by the matcher
    /// that runs it (a second compiled copy of some 300 patterns would
    /// cost megabytes).
    Regex(String),
}

/// A named word list (`@weapon`).
#[derive(Debug, Clone)]
pub struct WordList {
    /// Its name, without `@`.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Its entries.
    pub terms: Vec<Term>,
    /// Where its name was written.
    pub location: Location,
}

/// One entry of a rule condition.
#[derive(Debug, Clone)]
pub enum Condition {
    /// `@name`: any entry of a list.
    List {
        /// The list's index in [`RuleSet::lists`].
        index: usize,
        /// `@name` as written.
        name: String,
        /// Where it was written.
        location: Location,
    },
    /// A single keyword, phrase or pattern.
    Term(Term),
}

impl Condition {
    /// The entry as written: `@weapon`, `持刀`, `拿.{0,3}刀`.
    pub fn display(&self) -> &str {
        match self {
            Condition::List { name, .. } => name,
            Condition::Term(t) => t.text(),
        }
    }

    /// Where it was written.
    pub fn location(&self) -> &Location {
        match self {
            Condition::List { location, .. } => location,
            Condition::Term(t) => &t.location,
        }
    }
}

/// A rule: when its conditions match, it adds its weight to a destination.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Its stable id.
    pub id: String,
    /// What situation it names.
    pub description: String,
    /// The index of its destination.
    pub destination: usize,
    /// 刑事, 治安, 纠纷…
    pub category: String,
    /// The urgency it asks for.
    pub urgency: Urgency,
    /// What it adds to its destination's score.
    pub weight: f64,
    /// Whether a firing flags the decision for review.
    pub review: bool,
    /// Whether negated hits are dropped (default true).
    pub negatable: bool,
    /// At least one must match (when not empty).
    pub any: Vec<Condition>,
    /// Every one must match.
    pub all: Vec<Condition>,
    /// None may match.
    pub none: Vec<Condition>,
    /// A hit of `any`/`all` that overlaps a hit of one of these does not
    /// count: local exclusions (打她 inside 打她电话).
    pub unless: Vec<Condition>,
    /// Where its id was written.
    pub location: Location,
}

/// A phrase rewritten before matching: `勿曾` → `没有`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// The phrase as callers write it.
    pub from: String,
    /// What it becomes.
    pub to: String,
    /// Where `from` was written.
    pub location: Location,
}

/// What township an example call must resolve to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedTownship {
    /// This code.
    Code(TownshipCode),
    /// No township (`"none"`).
    Unassigned,
}

/// An example call carried by a rule file.
#[derive(Debug, Clone)]
pub struct Example {
    /// The call's text.
    pub text: String,
    /// Its location field.
    pub location: Option<String>,
    /// The hotline it came from.
    pub hotline: Hotline,
    /// Where it must go.
    pub expect: Option<usize>,
    /// Where it must not go.
    pub not: Vec<usize>,
    /// The township it must resolve to.
    pub township: Option<ExpectedTownship>,
    /// Where it was written.
    pub location_in_file: Location,
}

/// Errors reading a rule directory from disk.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The directory or a file in it could not be read.
    #[error("cannot read {path}: {cause}")]
    Io {
        /// The path.
        path: String,
        /// The cause (not a chained source: the message already says it,
        /// and a chain would say it twice).
        cause: std::io::Error,
    },
    /// A file that is not UTF-8.
    #[error("{path}:{line}:{column}: not valid UTF-8 (byte {offset}): save the file as UTF-8")]
    NotUtf8 {
        /// The path.
        path: String,
        /// The 1-based line of the first bad byte.
        line: usize,
        /// Its 1-based column, in characters.
        column: usize,
        /// The first bad byte.
        offset: usize,
    },
}

/// Reads every file of a rule directory (not recursing), in name order.
pub fn read_dir(dir: &Path) -> Result<Vec<Arc<SourceFile>>, LoadError> {
    let io = |path: &Path, cause| LoadError::Io {
        path: path.display().to_string(),
        cause,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        let path = entry.path();
        if path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
            from_bytes(&path.display().to_string(), bytes)
        })
        .collect()
}

/// A file from its display path and bytes, refusing non-UTF-8.
pub fn from_bytes(path: &str, bytes: Vec<u8>) -> Result<Arc<SourceFile>, LoadError> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok(SourceFile::new(path, text)),
        Err(e) => {
            let offset = e.utf8_error().valid_up_to();
            let valid = String::from_utf8_lossy(&e.as_bytes()[..offset]);
            let line = valid.matches('\n').count() + 1;
            let column = valid
                .rsplit('\n')
                .next()
                .unwrap_or_default()
                .chars()
                .count()
                + 1;
            Err(LoadError::NotUtf8 {
                path: path.to_owned(),
                line,
                column,
                offset,
            })
        }
    }
}
