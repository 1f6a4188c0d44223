//! The rule files as written: serde structs that keep every span.
//!
//! Nothing here is checked beyond TOML types and unknown keys; `compile`
//! turns these into the checked [`crate::RuleSet`].

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use toml::Spanned;

/// `minsheng.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    pub fallback: Spanned<String>,
    pub negation: RawNegation,
    #[serde(rename = "destination")]
    pub destinations: Vec<RawDestination>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNegation {
    pub negators: Spanned<String>,
    #[serde(default)]
    pub clause_negators: Option<Spanned<String>>,
    #[serde(default)]
    pub retractors: Option<Spanned<String>>,
    pub window: Spanned<i64>,
    pub clause_breaks: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDestination {
    pub name: Spanned<String>,
    pub description: String,
    pub queue: Spanned<String>,
    #[serde(default)]
    pub per_township: bool,
    #[serde(default)]
    pub hotline: Option<Spanned<String>>,
    pub transfer_label: String,
    pub threshold: Spanned<f64>,
    pub default_urgency: Spanned<String>,
    pub clock: String,
}

/// Any other `*.toml` file: lists, rules, examples.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuleFile {
    #[serde(default, rename = "list")]
    pub lists: BTreeMap<Spanned<String>, RawList>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<RawRule>,
    #[serde(default, rename = "example")]
    pub examples: Vec<RawExample>,
    #[serde(default, rename = "rewrite")]
    pub rewrites: Vec<RawRewrite>,
}

/// `[[rewrite]]`: dialect or variant phrases rewritten before matching.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRewrite {
    pub from: Vec<Spanned<String>>,
    pub to: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawList {
    #[serde(default)]
    pub description: String,
    pub words: Spanned<Vec<Spanned<RawTerm>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub id: Spanned<String>,
    pub description: String,
    pub destination: Spanned<String>,
    pub category: String,
    pub urgency: Spanned<String>,
    #[serde(default)]
    pub weight: Option<Spanned<f64>>,
    #[serde(default)]
    pub review: bool,
    #[serde(default = "yes")]
    pub negatable: bool,
    #[serde(default)]
    pub any: Vec<Spanned<RawTerm>>,
    #[serde(default)]
    pub all: Vec<Spanned<RawTerm>>,
    #[serde(default)]
    pub none: Vec<Spanned<RawTerm>>,
    #[serde(default)]
    pub unless: Vec<Spanned<RawTerm>>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExample {
    pub text: Spanned<String>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub hotline: Option<Spanned<String>>,
    #[serde(default)]
    pub expect: Option<Spanned<String>>,
    #[serde(default)]
    pub not: Vec<Spanned<String>>,
    #[serde(default)]
    pub township: Option<Spanned<String>>,
}

/// One entry of a list or condition: `"菜刀"`, `"@weapon"`,
/// `{ phrase = "…" }` or `{ regex = "…" }`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RawTerm {
    /// A plain string: a token, or `@name` for a list.
    Word(String),
    /// `{ phrase = "…" }`.
    Phrase(String),
    /// `{ regex = "…" }`.
    Regex(String),
}

impl<'de> Deserialize<'de> for RawTerm {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TermVisitor;
        impl<'de> Visitor<'de> for TermVisitor {
            type Value = RawTerm;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a keyword string, \"@list\", { phrase = \"…\" } or { regex = \"…\" }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawTerm, E> {
                Ok(RawTerm::Word(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawTerm, A::Error> {
                let mut term = None;
                while let Some(key) = map.next_key::<String>()? {
                    if term.is_some() {
                        return Err(de::Error::custom(
                            "an entry holds exactly one of `phrase` or `regex`",
                        ));
                    }
                    let value: String = map.next_value()?;
                    term = Some(match key.as_str() {
                        "phrase" => RawTerm::Phrase(value),
                        "regex" => RawTerm::Regex(value),
                        other => {
                            return Err(de::Error::unknown_field(other, &["phrase", "regex"]));
                        }
                    });
                }
                term.ok_or_else(|| de::Error::custom("an entry table needs `phrase` or `regex`"))
            }
        }
        d.deserialize_any(TermVisitor)
    }
}
