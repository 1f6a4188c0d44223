//! Parse, then validate: the CSV and the TOML become a [`Loaded`] gazetteer,
//! or every problem found, each with its place.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use minsheng_core::TownshipCode;
use serde::Deserialize;
use toml::Spanned;

use crate::TownshipInfo;
use crate::error::{Diagnostic, Problem};

/// What the TOML says when it says nothing about `support_after`.
const DEFAULT_SUPPORT_AFTER: [&str; 5] = ["镇", "街道", "乡", "社区", "村"];

/// How a word names a township.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The official name (乌镇镇).
    Full,
    /// A landmark inside it (南北湖): as strong as the full name.
    Place,
    /// A short form that counts alone (乌镇).
    Alias,
    /// A short form that counts only when supported (长安).
    Strict,
}

/// What a word found in a text stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// One township (an index into [`Loaded::townships`]).
    Township(usize, Kind),
    /// A short form several townships share; a district picks one.
    Shared(Vec<usize>),
    /// A district (an index into [`Loaded::districts`]).
    District(usize),
    /// A longer word that hides a name inside it (长安汽车).
    Nothing,
}

/// A district: code and official name.
#[derive(Debug, Clone)]
pub(crate) struct District {
    pub(crate) code: String,
    pub(crate) name: String,
}

/// The checked gazetteer, ready to build a matcher from.
pub(crate) struct Loaded {
    pub(crate) townships: Vec<TownshipInfo>,
    /// For each township, the index of its district.
    pub(crate) township_district: Vec<usize>,
    pub(crate) districts: Vec<District>,
    /// Every word to look for, with what it stands for, in file order.
    pub(crate) words: Vec<(String, Target)>,
    pub(crate) support_after: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlaces {
    support_after: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    district: BTreeMap<Spanned<String>, RawDistrict>,
    #[serde(default)]
    township: BTreeMap<Spanned<String>, RawTownship>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDistrict {
    #[serde(default)]
    names: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTownship {
    #[serde(default)]
    aliases: Vec<Spanned<String>>,
    #[serde(default)]
    strict: Vec<Spanned<String>>,
    #[serde(default)]
    shared: Vec<Spanned<String>>,
    #[serde(default)]
    places: Vec<Spanned<String>>,
    #[serde(default, rename = "not")]
    exceptions: Vec<Spanned<String>>,
}

/// Collects diagnostics for one file.
struct Sink<'a> {
    file: &'a str,
    src: &'a str,
    out: &'a mut Vec<Diagnostic>,
}

impl Sink<'_> {
    fn at_line(&mut self, line: usize, col: usize, problem: Problem) {
        self.out.push(Diagnostic {
            file: self.file.to_owned(),
            line,
            col,
            problem,
        });
    }

    fn at_span(&mut self, span: Range<usize>, problem: Problem) {
        let (line, col) = line_col(self.src, span.start);
        self.at_line(line, col, problem);
    }
}

/// 1-based line and character column of a byte offset.
pub(crate) fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(src.len());
    while !src.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// 1-based character column where field `index` of a CSV line starts.
fn field_col(line: &str, index: usize) -> usize {
    let mut field = 0;
    let mut quoted = false;
    for (col, c) in line.chars().enumerate() {
        if field == index {
            return col + 1;
        }
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => field += 1,
            _ => {}
        }
    }
    line.chars().count() + 1
}

fn is_digits(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit())
}

/// Reads and checks the CSV; returns the townships (with their CSV lines)
/// and the districts.
/// The checked rows of the CSV, with the line each came from.
struct CsvTable {
    townships: Vec<TownshipInfo>,
    township_lines: Vec<usize>,
    township_district: Vec<usize>,
    districts: Vec<District>,
    district_lines: Vec<usize>,
}

fn parse_csv(sink: &mut Sink<'_>) -> CsvTable {
    let src = sink.src.strip_prefix('\u{feff}').unwrap_or(sink.src);
    let lines: Vec<&str> = src.lines().collect();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(src.as_bytes());

    let mut townships = Vec::new();
    let mut township_lines = Vec::new();
    let mut township_district = Vec::new();
    let mut districts: Vec<District> = Vec::new();
    let mut district_lines: Vec<usize> = Vec::new();
    let mut code_lines: HashMap<String, usize> = HashMap::new();
    let mut header_seen = false;

    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(1, |p| p.line() as usize);
                sink.at_line(line, 1, Problem::CsvSyntax(e.to_string()));
                break;
            }
        };
        let line = record.position().map_or(1, |p| p.line() as usize);
        let text = lines.get(line.saturating_sub(1)).copied().unwrap_or("");
        let fields: Vec<&str> = record.iter().map(str::trim).collect();
        if !header_seen {
            header_seen = true;
            if fields != ["code", "name", "district_code", "district_name"] {
                sink.at_line(
                    line,
                    1,
                    Problem::CsvHeader {
                        found: text.to_owned(),
                    },
                );
            }
            continue;
        }
        if fields.len() != 4 {
            sink.at_line(
                line,
                1,
                Problem::ColumnCount {
                    found: fields.len(),
                },
            );
            continue;
        }
        let (code, name, district_code, district_name) =
            (fields[0], fields[1], fields[2], fields[3]);
        let mut ok = true;

        let parsed: Option<TownshipCode> = code.parse().ok();
        if parsed.is_none() {
            sink.at_line(
                line,
                field_col(text, 0),
                Problem::BadCode {
                    code: code.to_owned(),
                },
            );
            ok = false;
        } else if let Some(&first_line) = code_lines.get(code) {
            sink.at_line(
                line,
                field_col(text, 0),
                Problem::DuplicateCode {
                    code: code.to_owned(),
                    first_line,
                },
            );
            ok = false;
        }
        if name.is_empty() {
            sink.at_line(
                line,
                field_col(text, 1),
                Problem::EmptyField { field: "name" },
            );
            ok = false;
        }
        if !is_digits(district_code, 6) {
            sink.at_line(
                line,
                field_col(text, 2),
                Problem::BadDistrictCode {
                    code: district_code.to_owned(),
                },
            );
            ok = false;
        } else if parsed.is_some() && !code.starts_with(district_code) {
            sink.at_line(
                line,
                field_col(text, 2),
                Problem::DistrictMismatch {
                    code: code.to_owned(),
                    district_code: district_code.to_owned(),
                },
            );
            ok = false;
        }
        if district_name.is_empty() {
            sink.at_line(
                line,
                field_col(text, 3),
                Problem::EmptyField {
                    field: "district_name",
                },
            );
            ok = false;
        }
        let known = districts.iter().position(|d| d.code == district_code);
        if let Some(i) = known
            && districts[i].name != district_name
        {
            sink.at_line(
                line,
                field_col(text, 3),
                Problem::DistrictRenamed {
                    district_code: district_code.to_owned(),
                    name: district_name.to_owned(),
                    first_name: districts[i].name.clone(),
                    first_line: district_lines[i],
                },
            );
            ok = false;
        }
        let Some(parsed) = parsed.filter(|_| ok) else {
            continue;
        };
        code_lines.insert(code.to_owned(), line);
        let district = known.unwrap_or_else(|| {
            districts.push(District {
                code: district_code.to_owned(),
                name: district_name.to_owned(),
            });
            district_lines.push(line);
            districts.len() - 1
        });
        townships.push(TownshipInfo {
            code: parsed,
            name: name.to_owned(),
            district_code: district_code.to_owned(),
            district: district_name.to_owned(),
        });
        township_lines.push(line);
        township_district.push(district);
    }
    if !header_seen {
        sink.at_line(
            1,
            1,
            Problem::CsvHeader {
                found: String::new(),
            },
        );
    }
    CsvTable {
        townships,
        township_lines,
        township_district,
        districts,
        district_lines,
    }
}

/// The table of every word, so that a word names only one place.
struct Names {
    words: Vec<(String, Target)>,
    index: HashMap<String, usize>,
}

impl Names {
    fn owner(&self, target: &Target, loaded: &Partial<'_>) -> String {
        match target {
            Target::Township(t, _) => loaded.township_label(*t),
            Target::Shared(ts) => ts
                .iter()
                .map(|t| loaded.township_label(*t))
                .collect::<Vec<_>>()
                .join(", "),
            Target::District(d) => format!(
                "district {} {}",
                loaded.districts[*d].code, loaded.districts[*d].name
            ),
            Target::Nothing => "a `not` word".to_owned(),
        }
    }

    /// Adds `word` for `target`; on a clash, returns who has it already.
    fn add(&mut self, word: &str, target: Target, loaded: &Partial<'_>) -> Result<(), Problem> {
        if word.is_empty() {
            return Err(Problem::EmptyName);
        }
        let Some(&i) = self.index.get(word) else {
            self.index.insert(word.to_owned(), self.words.len());
            self.words.push((word.to_owned(), target));
            return Ok(());
        };
        let clash = match (&self.words[i].1, &target) {
            (a, b) if a == b => false,
            (Target::Township(a, _), Target::Township(b, _)) => a != b,
            (Target::Shared(_), Target::Shared(_)) | (Target::Nothing, Target::Nothing) => false,
            _ => true,
        };
        if clash {
            return Err(Problem::DuplicateName {
                word: word.to_owned(),
                owner: self.owner(&self.words[i].1, loaded),
            });
        }
        if let (Target::Shared(ts), Target::Shared(new)) = (&mut self.words[i].1, &target) {
            for t in new {
                if !ts.contains(t) {
                    ts.push(*t);
                }
            }
        }
        Ok(())
    }
}

/// What the CSV gave, for labels in messages.
struct Partial<'a> {
    townships: &'a [TownshipInfo],
    districts: &'a [District],
}

impl Partial<'_> {
    fn township_label(&self, t: usize) -> String {
        format!(
            "township {} {}",
            self.townships[t].code, self.townships[t].name
        )
    }
}

/// Parses and checks both files. Returns every problem found, sorted by file
/// and place, when there is any.
pub(crate) fn load(
    csv_path: &str,
    csv: &str,
    places_path: &str,
    places: &str,
) -> Result<Loaded, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut csv_sink = Sink {
        file: csv_path,
        src: csv,
        out: &mut diags,
    };
    let CsvTable {
        townships,
        township_lines,
        township_district,
        districts,
        district_lines,
    } = parse_csv(&mut csv_sink);
    let partial = Partial {
        townships: &townships,
        districts: &districts,
    };
    let mut names = Names {
        words: Vec::new(),
        index: HashMap::new(),
    };

    // The official names from the CSV.
    for (t, info) in townships.iter().enumerate() {
        if let Err(problem) = names.add(&info.name, Target::Township(t, Kind::Full), &partial) {
            let line = township_lines[t];
            let text = csv.lines().nth(line.saturating_sub(1)).unwrap_or("");
            csv_sink.at_line(line, field_col(text, 1), problem);
        }
    }
    for (d, district) in districts.iter().enumerate() {
        if let Err(problem) = names.add(&district.name, Target::District(d), &partial) {
            let line = district_lines[d];
            let text = csv.lines().nth(line.saturating_sub(1)).unwrap_or("");
            csv_sink.at_line(line, field_col(text, 3), problem);
        }
    }

    let mut sink = Sink {
        file: places_path,
        src: places,
        out: &mut diags,
    };
    let raw: RawPlaces = match toml::from_str(places) {
        Ok(raw) => raw,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            sink.at_span(span, Problem::Toml(e.message().trim().to_owned()));
            return Err(sorted(diags));
        }
    };

    let mut support_after = Vec::new();
    match raw.support_after {
        None => support_after.extend(DEFAULT_SUPPORT_AFTER.iter().map(|s| (*s).to_owned())),
        Some(list) => {
            for s in list {
                if s.get_ref().is_empty() {
                    sink.at_span(s.span(), Problem::EmptyName);
                } else {
                    support_after.push(s.into_inner());
                }
            }
        }
    }

    // In file order, so that a clash is blamed on the later word.
    let mut district_entries: Vec<_> = raw.district.iter().collect();
    district_entries.sort_by_key(|(code, _)| code.span().start);
    for (code, raw) in district_entries {
        let Some(d) = districts.iter().position(|d| d.code == *code.get_ref()) else {
            let problem = if is_digits(code.get_ref(), 6) {
                Problem::UnknownDistrict {
                    code: code.get_ref().clone(),
                    csv: csv_path.to_owned(),
                }
            } else {
                Problem::BadDistrictCode {
                    code: code.get_ref().clone(),
                }
            };
            sink.at_span(code.span(), problem);
            continue;
        };
        for word in &raw.names {
            if let Err(problem) = names.add(word.get_ref(), Target::District(d), &partial) {
                sink.at_span(word.span(), problem);
            }
        }
    }

    let mut exceptions = Vec::new();
    let mut township_entries: Vec<_> = raw.township.iter().collect();
    township_entries.sort_by_key(|(code, _)| code.span().start);
    for (code, raw) in township_entries {
        let Some(t) = townships
            .iter()
            .position(|t| t.code.as_str() == code.get_ref())
        else {
            let problem = if code.get_ref().parse::<TownshipCode>().is_ok() {
                Problem::UnknownTownship {
                    code: code.get_ref().clone(),
                    csv: csv_path.to_owned(),
                }
            } else {
                Problem::BadCode {
                    code: code.get_ref().clone(),
                }
            };
            sink.at_span(code.span(), problem);
            continue;
        };
        let lists = [
            (&raw.aliases, Target::Township(t, Kind::Alias)),
            (&raw.strict, Target::Township(t, Kind::Strict)),
            (&raw.places, Target::Township(t, Kind::Place)),
            (&raw.shared, Target::Shared(vec![t])),
        ];
        for (list, target) in lists {
            for word in list {
                if let Err(problem) = names.add(word.get_ref(), target.clone(), &partial) {
                    sink.at_span(word.span(), problem);
                }
            }
        }
        for word in &raw.exceptions {
            exceptions.push((t, word));
        }
    }

    // `not` words last, once every name is known.
    for (t, word) in exceptions {
        let w = word.get_ref();
        let hides_own_name = names.words.iter().any(|(name, target)| {
            let own = match target {
                Target::Township(o, _) => *o == t,
                Target::Shared(ts) => ts.contains(&t),
                _ => false,
            };
            own && w.len() > name.len() && w.contains(name.as_str())
        });
        if !hides_own_name {
            sink.at_span(
                word.span(),
                Problem::UselessException {
                    word: w.clone(),
                    township: format!("{} {}", townships[t].code, townships[t].name),
                },
            );
        } else if let Err(problem) = names.add(w, Target::Nothing, &partial) {
            sink.at_span(word.span(), problem);
        }
    }

    if !diags.is_empty() {
        return Err(sorted(diags));
    }
    Ok(Loaded {
        townships,
        township_district,
        districts,
        words: names.words,
        support_after,
    })
}

fn sorted(mut diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    // Stable: the CSV (checked first) stays before the TOML.
    let mut files: Vec<String> = Vec::new();
    for d in &diags {
        if !files.contains(&d.file) {
            files.push(d.file.clone());
        }
    }
    diags.sort_by_key(|d| (files.iter().position(|f| *f == d.file), d.line, d.col));
    diags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_from_one() {
        let src = "ab\n乌镇镇,x\r\nz";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 3), (2, 1));
        assert_eq!(line_col(src, 3 + "乌镇镇,".len()), (2, 5));
        assert_eq!(line_col(src, src.len() - 1), (3, 1));
        // Inside a character or past the end: the nearest place before.
        assert_eq!(line_col(src, 4), (2, 1));
        assert_eq!(line_col(src, 999), (3, 2));
    }

    #[test]
    fn field_col_skips_quoted_commas() {
        assert_eq!(field_col("a,b,c", 0), 1);
        assert_eq!(field_col("a,b,c", 2), 5);
        assert_eq!(field_col("\"x,y\",乌镇,c", 2), 10);
        assert_eq!(field_col("a", 3), 2);
    }
}
