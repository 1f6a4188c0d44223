//! The gazetteer of minsheng: finds the township (镇/街道) of a call in its
//! `location` field or, failing that, in its text.
//!
//! The main type is [`Gazetteer`], loaded once from `rules/townships.csv`
//! (the official names and codes) and `rules/places.toml` (what people
//! actually say: short forms, districts, landmarks), then shared read-only.
//! [`Gazetteer::resolve`] runs one leftmost-longest Aho-Corasick pass over
//! the string, so a call costs microseconds, and the longest word always
//! wins: 西塘桥 is never 西塘, 海宁市长安镇 is 海宁市 then 长安镇.
//!
//! The one design decision that shapes it: **a word is evidence of a
//! strength, and the strongest evidence wins** — not the first word found.
//! In one string every mention gets a level:
//!
//! 1. an official name (乌镇镇) or a landmark (南北湖) — strongest;
//! 2. a short form right after its own district (海宁长安, 桐乡市濮院);
//! 3. a short form alone (乌镇), or a `strict` short form — one that is also
//!    an ordinary word (长安, 大桥, 新城) — followed by 镇/街道/乡/社区/村.
//!
//! A `strict` form with no such support is no evidence at all ("长安汽车",
//! "河上那座大桥"), and a district alone never gives a township. A `shared`
//! short form (东栅: a 街道 of 南湖区 and a scenic quarter of 乌镇) counts
//! only right after a district, which picks the township. Among
//! mentions of equal level, one whose district is named in the call wins,
//! then the first. The `location` field is read first; only when it names
//! no township is the text read, with the districts of the location as
//! tie-breakers.
//!
//! ```
//! use minsheng_core::PlaceSource;
//! use minsheng_geo::Gazetteer;
//!
//! let csv = "code,name,district_code,district_name\n\
//!            330481103,长安镇,330481,海宁市\n\
//!            330483100,乌镇镇,330483,桐乡市\n";
//! let places = r#"
//!     [district.330481]
//!     names = ["海宁"]
//!
//!     [township.330481103]
//!     strict = ["长安"]
//!
//!     [township.330483100]
//!     aliases = ["乌镇"]
//! "#;
//! let geo = Gazetteer::parse("townships.csv", csv, "places.toml", places).unwrap();
//!
//! let t = geo.resolve(None, "我们在乌镇开民宿的").unwrap();
//! assert_eq!((t.code.as_str(), t.name.as_str()), ("330483100", "乌镇镇"));
//! assert_eq!(t.source, PlaceSource::Text);
//!
//! assert_eq!(geo.resolve(Some("海宁长安某路"), "").unwrap().name, "长安镇");
//! assert!(geo.resolve(None, "开的是长安汽车").is_none());
//!
//! let err = Gazetteer::parse("townships.csv", csv, "places.toml", "[township.330481103]\nalias = []\n")
//!     .unwrap_err();
//! assert_eq!(err.to_string(), "places.toml:2:1: unknown field `alias`, expected one of \
//!     `aliases`, `strict`, `shared`, `places`, `not`");
//! ```
#![deny(missing_docs)]

mod error;
mod load;

use std::cmp::Reverse;

use aho_corasick::{AhoCorasick, MatchKind};
use minsheng_core::{PlaceSource, Township, TownshipCode};

pub use error::{Diagnostic, GeoError, Problem};
use load::{Kind, Target};

/// One township of the gazetteer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TownshipInfo {
    /// The 9-digit statistical code.
    pub code: TownshipCode,
    /// The official name (乌镇镇).
    pub name: String,
    /// The 6-digit code of its district.
    pub district_code: String,
    /// The official name of its district (桐乡市).
    pub district: String,
}

/// The townships and districts of the city, and every word that names them.
///
/// Build it once with [`Gazetteer::parse`]; it is immutable afterwards and
/// cheap to share.
#[derive(Debug, Clone)]
pub struct Gazetteer {
    townships: Vec<TownshipInfo>,
    township_district: Vec<usize>,
    district_count: usize,
    /// What pattern `i` of `matcher` stands for.
    targets: Vec<Target>,
    matcher: AhoCorasick,
    support_after: Vec<String>,
    /// Place words for the segmenter (every pattern but `not` words).
    dictionary: Vec<String>,
}

/// How strongly a mention names its township; higher is stronger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Evidence {
    /// A short form alone, or a supported strict form.
    Short,
    /// A short form right after its own district.
    DistrictShort,
    /// The official name or a landmark.
    Full,
}

/// A township mention found in one string.
struct Mention {
    township: usize,
    evidence: Evidence,
    start: usize,
    end: usize,
}

impl Gazetteer {
    /// Parses the gazetteer CSV (`code,name,district_code,district_name`)
    /// and the places TOML, and checks them against each other.
    ///
    /// `csv_path` and `places_path` are only used in error messages. On
    /// failure the error lists every problem found, each as
    /// `file:line:col: message`.
    pub fn parse(
        csv_path: &str,
        csv: &str,
        places_path: &str,
        places: &str,
    ) -> Result<Gazetteer, GeoError> {
        let loaded = load::load(csv_path, csv, places_path, places).map_err(GeoError::Invalid)?;
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(loaded.words.iter().map(|(w, _)| w.as_str()))
            .map_err(|e| {
                GeoError::Invalid(vec![Diagnostic {
                    file: places_path.to_owned(),
                    line: 1,
                    col: 1,
                    problem: Problem::TooLarge(e.to_string()),
                }])
            })?;
        let dictionary = loaded
            .words
            .iter()
            .filter(|(_, t)| *t != Target::Nothing)
            .map(|(w, _)| w.clone())
            .collect();
        Ok(Gazetteer {
            townships: loaded.townships,
            township_district: loaded.township_district,
            district_count: loaded.districts.len(),
            targets: loaded.words.into_iter().map(|(_, t)| t).collect(),
            matcher,
            support_after: loaded.support_after,
            dictionary,
        })
    }

    /// Resolves the township of a call: from `location` when it names one,
    /// otherwise from `text`. Both must already be normalised (simplified
    /// Chinese, full-width folded to ASCII).
    ///
    /// Districts named in `location` break ties between townships of equal
    /// evidence in `text`; they do not make a `strict` short form count.
    pub fn resolve(&self, location: Option<&str>, text: &str) -> Option<Township> {
        let mut context = vec![false; self.district_count];
        if let Some(location) = location
            && let Some(found) = self.resolve_in(location, &mut context, PlaceSource::Location)
        {
            return Some(found);
        }
        self.resolve_in(text, &mut context, PlaceSource::Text)
    }

    /// Every place word — township names, district names and short forms,
    /// aliases, landmarks — so that a segmenter can keep them whole. Each
    /// word once, in the order of the files.
    pub fn dictionary_words(&self) -> Vec<&str> {
        self.dictionary.iter().map(String::as_str).collect()
    }

    /// The number of townships.
    pub fn len(&self) -> usize {
        self.townships.len()
    }

    /// Whether the gazetteer has no township.
    pub fn is_empty(&self) -> bool {
        self.townships.is_empty()
    }

    /// One township, by code.
    pub fn get(&self, code: &TownshipCode) -> Option<&TownshipInfo> {
        self.townships.iter().find(|t| t.code == *code)
    }

    /// Every township, in the order of the CSV.
    pub fn townships(&self) -> &[TownshipInfo] {
        &self.townships
    }

    /// Finds the best-evidenced township in `s`. Marks the districts named
    /// in `s` in `districts`, which also holds those named before (in the
    /// location) for tie-breaking.
    fn resolve_in(&self, s: &str, districts: &mut [bool], source: PlaceSource) -> Option<Township> {
        let mut mentions: Vec<Mention> = Vec::new();
        // The district matched last, with where it ended, when the match
        // right before the current one was a district.
        let mut previous_district: Option<(usize, usize)> = None;
        for m in self.matcher.find_iter(s) {
            let (start, end) = (m.start(), m.end());
            let adjacent = previous_district
                .filter(|&(_, d_end)| s[d_end..start].chars().all(is_separator))
                .map(|(d, _)| d);
            previous_district = None;
            let found = match &self.targets[m.pattern().as_usize()] {
                Target::District(d) => {
                    districts[*d] = true;
                    previous_district = Some((*d, end));
                    None
                }
                Target::Nothing => None,
                Target::Township(t, kind) => {
                    let own_district = adjacent == Some(self.township_district[*t]);
                    let evidence = match kind {
                        Kind::Full | Kind::Place => Some(Evidence::Full),
                        _ if own_district => Some(Evidence::DistrictShort),
                        Kind::Alias => Some(Evidence::Short),
                        Kind::Strict if self.supported_after(&s[end..]) => Some(Evidence::Short),
                        Kind::Strict => None,
                    };
                    evidence.map(|e| (*t, e))
                }
                Target::Shared(ts) => ts
                    .iter()
                    .find(|&&t| adjacent == Some(self.township_district[t]))
                    .map(|&t| (t, Evidence::DistrictShort)),
            };
            if let Some((township, evidence)) = found {
                mentions.push(Mention {
                    township,
                    evidence,
                    start,
                    end,
                });
            }
        }
        let best = mentions.iter().max_by_key(|m| {
            (
                m.evidence,
                districts[self.township_district[m.township]],
                Reverse(m.start),
            )
        })?;
        let info = &self.townships[best.township];
        Some(Township {
            code: info.code.clone(),
            name: info.name.clone(),
            district: info.district.clone(),
            source,
            matched: s[best.start..best.end].to_owned(),
        })
    }

    fn supported_after(&self, rest: &str) -> bool {
        self.support_after
            .iter()
            .any(|s| rest.starts_with(s.as_str()))
    }
}

/// What may stand between a district and the short form it supports:
/// nothing, spaces or punctuation ("海宁 长安", "海宁,长安").
fn is_separator(c: char) -> bool {
    c.is_whitespace()
        || c.is_ascii_punctuation()
        || matches!(c, '，' | '、' | '。' | '；' | '：' | '·' | '-' | '—')
}
