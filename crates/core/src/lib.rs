//! Domain types of minsheng, shared by every other crate.
//!
//! A [`Call`] comes in from an operator system; the classifier answers with a
//! [`Decision`]: which destination handles it, for which township, how
//! urgently, and — because a call-taker, a rule author and an auditor must
//! each be able to see why — which rules fired on which spans of the text.
//!
//! The one design decision that shapes this crate: destinations are *data*
//! (declared in the rule files), so a destination here is a name, not an
//! enum. Another city adds 12315 by editing TOML, not this crate.
//!
//! ```
//! use minsheng_core::{Hotline, TownshipCode};
//!
//! let code: TownshipCode = "330402011".parse().unwrap();
//! assert_eq!(code.district(), "330402");
//! assert_eq!("12345".parse::<Hotline>().unwrap(), Hotline::Gov12345);
//! assert!("33040201".parse::<TownshipCode>().is_err());
//! ```
#![deny(missing_docs)]

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An error in a value that came from outside (a file, a flag, a request).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A township code that is not nine ASCII digits.
    #[error("township code {0:?} is not a 9-digit statistical code")]
    BadTownshipCode(String),
    /// A hotline other than the known ones.
    #[error("unknown hotline {0:?}: expected \"110\", \"12345\" or \"app\"")]
    BadHotline(String),
    /// An urgency level other than the known ones.
    #[error("unknown urgency {0:?}: expected routine, priority, urgent or critical")]
    BadUrgency(String),
}

/// The 9-digit statistical code of a 镇/街道 (e.g. `330402011`, 新兴街道).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TownshipCode(String);

impl TownshipCode {
    /// The code as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 6-digit code of the district (区/县/市) the township belongs to.
    pub fn district(&self) -> &str {
        &self.0[..6]
    }
}

impl FromStr for TownshipCode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        if s.len() == 9 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(TownshipCode(s.to_owned()))
        } else {
            Err(Error::BadTownshipCode(s.to_owned()))
        }
    }
}

impl fmt::Display for TownshipCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for TownshipCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TownshipCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The number (or channel) the citizen used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Hotline {
    /// 110, the police emergency number.
    #[default]
    Police110,
    /// 12345, the government service hotline.
    Gov12345,
    /// An online or app submission.
    App,
}

impl Hotline {
    /// The hotline as written in calls and records: `110`, `12345`, `app`.
    pub fn as_str(self) -> &'static str {
        match self {
            Hotline::Police110 => "110",
            Hotline::Gov12345 => "12345",
            Hotline::App => "app",
        }
    }
}

impl FromStr for Hotline {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "110" => Ok(Hotline::Police110),
            "12345" => Ok(Hotline::Gov12345),
            "app" => Ok(Hotline::App),
            other => Err(Error::BadHotline(other.to_owned())),
        }
    }
}

impl fmt::Display for Hotline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Hotline {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Hotline {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How fast the receiving force must act. Ordered: `Routine < … < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Urgency {
    /// Working days (a 12345 work order, a booked court consultation).
    Routine,
    /// Today, on a clock (a township team's 30-minute on-site response).
    Priority,
    /// Now (a police dispatch).
    Urgent,
    /// Life at risk now: weapons, injury, fire, fraud in progress.
    Critical,
}

impl FromStr for Urgency {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "routine" => Ok(Urgency::Routine),
            "priority" => Ok(Urgency::Priority),
            "urgent" => Ok(Urgency::Urgent),
            "critical" => Ok(Urgency::Critical),
            other => Err(Error::BadUrgency(other.to_owned())),
        }
    }
}

impl fmt::Display for Urgency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Urgency::Routine => "routine",
            Urgency::Priority => "priority",
            Urgency::Urgent => "urgent",
            Urgency::Critical => "critical",
        })
    }
}

/// A call as an operator system hands it over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Call {
    /// The operator system's id of the call, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The number the citizen dialled.
    pub hotline: Hotline,
    /// What the call-taker recorded, or the caller's own words.
    pub text: String,
    /// The address the operator system filled in, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The township, when the operator system knows it: it overrides the
    /// one the location or the text names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub township: Option<TownshipCode>,
}

/// The longest call text taken by default, in bytes (64 KiB).
pub const MAX_TEXT_BYTES: usize = 64 << 10;

/// Why a call's text cannot be classified: empty or only whitespace, or
/// longer than `max_bytes`. The message names the problem, not the field:
/// each caller adds where the text came from.
pub fn check_text(text: &str, max_bytes: usize) -> Result<(), String> {
    if is_blank(text) {
        return Err("missing or empty".to_owned());
    }
    if text.len() > max_bytes {
        return Err(format!(
            "{} bytes, more than the {max_bytes} allowed",
            text.len()
        ));
    }
    Ok(())
}

/// Whether a text has nothing to read: only whitespace, control and
/// zero-width characters.
pub fn is_blank(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_whitespace() || c.is_control() || is_invisible(c))
}

/// Zero-width characters (spaces, joiners, the byte-order mark): they
/// take no room and separate nothing.
pub fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
}

/// A caller's number as logs and exports show it: the first three and the
/// last four characters, the rest as `*` (`13812345678` → `138****5678`).
/// A number of seven characters or fewer is masked whole.
pub fn mask_number(number: &str) -> String {
    let chars: Vec<char> = number.chars().collect();
    if chars.len() <= 7 {
        return "*".repeat(chars.len());
    }
    let (head, rest) = chars.split_at(3);
    let (middle, tail) = rest.split_at(rest.len() - 4);
    let mut out: String = head.iter().collect();
    out.extend(std::iter::repeat_n('*', middle.len()));
    out.extend(tail);
    out
}

/// How a piece of text matched a rule condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchKind {
    /// The keyword is one jieba token of the text.
    Token,
    /// The phrase occurs in the normalised text.
    Phrase,
    /// The regular expression matched the normalised text.
    Regex,
}

/// One match of a rule condition, with its place in the normalised text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Match {
    /// The condition as written in the rule: `@weapon`, `持刀`, `re:…`.
    pub condition: String,
    /// The keyword, phrase or pattern of the condition that matched.
    pub term: String,
    /// Token, phrase or regex.
    pub kind: MatchKind,
    /// The matched text.
    pub text: String,
    /// Start, in characters, in [`Decision::normalized_text`].
    pub start: usize,
    /// End (exclusive), in characters.
    pub end: usize,
}

/// A keyword hit that did not count because a negator stood before it
/// ("没人受伤"), reported so that the reader sees why a signal was dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NegatedMatch {
    /// The matched keyword.
    pub text: String,
    /// Its start in characters.
    pub start: usize,
    /// The negator that cancelled it.
    pub negator: String,
}

/// A rule that fired, and the evidence for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FiredRule {
    /// The rule's stable id.
    pub id: String,
    /// The destination it votes for.
    pub destination: String,
    /// The rule's category (刑事, 治安, 纠纷…).
    pub category: String,
    /// The urgency it asks for.
    pub urgency: Urgency,
    /// The weight it adds to its destination's score.
    pub weight: f64,
    /// Whether it asks for a human to review the decision.
    pub review: bool,
    /// The spans that satisfied its conditions.
    pub matches: Vec<Match>,
}

/// The score a destination reached on a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DestinationScore {
    /// The destination's name.
    pub destination: String,
    /// The summed weights of its fired rules.
    pub score: f64,
    /// The score it needs to be chosen.
    pub threshold: f64,
}

/// Where the township of a call was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlaceSource {
    /// The operator system's `location` field.
    Location,
    /// The call's text.
    Text,
    /// The township code the operator system gave.
    Operator,
}

/// The 镇/街道 a call was placed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Township {
    /// The 9-digit code.
    pub code: TownshipCode,
    /// The official name (乌镇镇).
    pub name: String,
    /// The district's name (桐乡市).
    pub district: String,
    /// Where it was found.
    pub source: PlaceSource,
    /// The words that named it (乌镇).
    pub matched: String,
}

/// A hand-off from the hotline that took the call to a force of another
/// hotline (一键转接), e.g. `110→基层`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// The hotline the citizen dialled.
    pub from: Hotline,
    /// The destination that takes the call over.
    pub to: String,
    /// The record's wording, e.g. `110→基层`.
    pub label: String,
}

/// Who handles a call, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The call's id, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The destination's name (`police`, `township`, `hotline_12345`, `court`…).
    pub destination: String,
    /// The queue the ticket goes to.
    pub queue: String,
    /// The township of the call, or `None` (unassigned).
    pub township: Option<Township>,
    /// How fast the destination must act.
    pub urgency: Urgency,
    /// How sure the rules are, from 0 to 1.
    pub confidence: f64,
    /// A human should look at this decision: nothing fired, or a rule asked.
    pub needs_review: bool,
    /// The hand-off, when the destination is not the dialled hotline's own.
    pub transfer: Option<Transfer>,
    /// The rules that fired, strongest destination first.
    pub fired: Vec<FiredRule>,
    /// Keyword hits dropped because they were negated.
    pub negated: Vec<NegatedMatch>,
    /// Every destination's score, in order of precedence.
    pub scores: Vec<DestinationScore>,
    /// The rule set's version: a content hash of the rule directory.
    pub rules_version: String,
    /// The text after normalisation, which every span refers to.
    pub normalized_text: String,
    /// The jieba segmentation of the normalised text.
    pub tokens: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_masked_keeping_head_and_tail() {
        assert_eq!(mask_number("13812345678"), "138****5678");
        assert_eq!(mask_number("057312345678"), "057*****5678");
        assert_eq!(mask_number("1234567"), "*******");
        assert_eq!(mask_number(""), "");
    }

    #[test]
    fn township_code_rejects_wrong_length_and_non_digits() {
        assert!("330402011".parse::<TownshipCode>().is_ok());
        assert_eq!(
            "3304020110".parse::<TownshipCode>(),
            Err(Error::BadTownshipCode("3304020110".into()))
        );
        assert!("33040201x".parse::<TownshipCode>().is_err());
        assert!("３３０４０２０１１".parse::<TownshipCode>().is_err());
    }

    #[test]
    fn call_rejects_unknown_fields_and_hotlines() {
        let ok: Call = serde_json::from_str(r#"{"hotline":"110","text":"x"}"#).unwrap();
        assert_eq!(ok.hotline, Hotline::Police110);
        let err = serde_json::from_str::<Call>(r#"{"hotline":"119","text":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown hotline \"119\""), "{err}");
        let err = serde_json::from_str::<Call>(r#"{"hotline":"110","txt":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `txt`"), "{err}");
    }

    #[test]
    fn urgency_orders_by_severity() {
        assert!(Urgency::Routine < Urgency::Priority);
        assert!(Urgency::Urgent < Urgency::Critical);
        assert_eq!("critical".parse::<Urgency>(), Ok(Urgency::Critical));
    }
}
