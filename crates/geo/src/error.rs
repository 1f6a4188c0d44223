//! Errors of loading the gazetteer: every problem, each with its place.

use std::fmt;

/// The gazetteer files could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GeoError {
    /// The files hold problems; each [`Diagnostic`] names its file, line and
    /// column. Displayed one a line, in file order. Never empty.
    #[error("{}", Lines(.0))]
    Invalid(Vec<Diagnostic>),
}

impl GeoError {
    /// Every problem found, in file order.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            GeoError::Invalid(d) => d,
        }
    }
}

struct Lines<'a>(&'a [Diagnostic]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// One problem in one place: displayed as `file:line:col: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, as the caller named it.
    pub file: String,
    /// The line, from 1.
    pub line: usize,
    /// The column, in characters, from 1.
    pub col: usize,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.problem
        )
    }
}

/// What is wrong at a [`Diagnostic`]'s place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// The CSV does not start with the expected header.
    #[error("expected the header `code,name,district_code,district_name`, found `{found}`")]
    CsvHeader {
        /// The header line as found.
        found: String,
    },
    /// The CSV could not be read at all (bad quoting, bad UTF-8).
    #[error("unreadable CSV: {0}")]
    CsvSyntax(String),
    /// A CSV line without exactly four fields.
    #[error("expected 4 fields (code,name,district_code,district_name), found {found}")]
    ColumnCount {
        /// The number of fields on the line.
        found: usize,
    },
    /// A township code that is not nine ASCII digits.
    #[error("township code {code:?} is not a 9-digit statistical code")]
    BadCode {
        /// The code as written.
        code: String,
    },
    /// A district code that is not six ASCII digits.
    #[error("district code {code:?} is not a 6-digit statistical code")]
    BadDistrictCode {
        /// The code as written.
        code: String,
    },
    /// A field that must not be empty.
    #[error("empty {field}")]
    EmptyField {
        /// Which field.
        field: &'static str,
    },
    /// A township code given twice.
    #[error("duplicate township code {code} (first on line {first_line})")]
    DuplicateCode {
        /// The code.
        code: String,
        /// Where it was first given.
        first_line: usize,
    },
    /// A district code that is not the first six digits of the township code.
    #[error("district code {district_code} is not the prefix of township code {code}")]
    DistrictMismatch {
        /// The township code.
        code: String,
        /// The district code on the same line.
        district_code: String,
    },
    /// The same district code under two names.
    #[error("district {district_code} is named {first_name} on line {first_line}, not {name}")]
    DistrictRenamed {
        /// The district code.
        district_code: String,
        /// The name on this line.
        name: String,
        /// The name it had first.
        first_name: String,
        /// Where it had it.
        first_line: usize,
    },
    /// The TOML is malformed or does not fit the format (unknown key, wrong type).
    #[error("{0}")]
    Toml(String),
    /// A `[township.CODE]` whose code is not in the CSV.
    #[error("no township {code} in {csv}")]
    UnknownTownship {
        /// The code.
        code: String,
        /// The CSV file.
        csv: String,
    },
    /// A `[district.CODE]` whose code is not in the CSV.
    #[error("no district {code} in {csv}")]
    UnknownDistrict {
        /// The code.
        code: String,
        /// The CSV file.
        csv: String,
    },
    /// An empty word.
    #[error("empty name")]
    EmptyName,
    /// A word already given to another township or district.
    #[error(
        "{word:?} is already a name of {owner}; a word may name only one place \
         (list it under `shared` in every township that uses it)"
    )]
    DuplicateName {
        /// The word.
        word: String,
        /// Who has it already, e.g. `township 330483100 乌镇镇`.
        owner: String,
    },
    /// A `not` word that contains none of the township's names, so it can
    /// never hide one.
    #[error("`not` word {word:?} contains no name of {township}, so it can never apply")]
    UselessException {
        /// The word.
        word: String,
        /// The township, e.g. `330481103 长安镇`.
        township: String,
    },
    /// The matcher could not be built from so many words.
    #[error("too many place words to build a matcher: {0}")]
    TooLarge(String),
}
