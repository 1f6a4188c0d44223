//! Normalisation, segmentation, rule matching, scoring and explanation:
//! the decision of who handles a call.
//!
//! The main type is [`Classifier`], built once from a checked
//! [`minsheng_rules::RuleSet`]: it loads jieba with the rule set's user
//! dictionaries and every place name of the gazetteer, and compiles every
//! keyword, phrase and pattern of every rule into one token table, one
//! phrase automaton and one regex set. [`Classifier::classify`] then
//! normalises a call (繁體 → simplified, full-width → ASCII), cuts it,
//! finds every hit in one pass, drops hits under a nearby negator
//! ("没人受伤"), fires rules, scores destinations and picks the first in
//! order of precedence that reaches its threshold — so escalation always
//! beats de-escalation — and says why, span by span.
//!
//! The one design decision that shapes it: destinations, precedence and
//! words are all data in the rule set; this crate has no domain words.
//!
//! ```
//! use minsheng_classify::Classifier;
//! use minsheng_core::{Call, Hotline};
//!
//! let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../rules");
//! let files = minsheng_rules::read_dir(dir.as_ref()).unwrap();
//! let checked = minsheng_rules::compile(files);
//! let classifier = Classifier::new(checked.rule_set.unwrap()).unwrap();
//! let call = Call { hotline: Hotline::Gov12345, text: "邻居吵架，他拿刀了".into(), ..Call::default() };
//! assert_eq!(classifier.classify(&call).destination, "police");
//! ```
#![deny(missing_docs)]

mod engine;
pub mod eval;
pub mod examples;
mod matcher;
mod normalize;
mod segment;

pub use engine::{BuildError, Classifier};
pub use normalize::normalize;
pub use segment::{Segmenter, Token};
