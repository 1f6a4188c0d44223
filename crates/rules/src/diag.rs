//! Diagnostics: every problem in a rule set, with a stable code and a place.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// A file of the rule set, kept whole so that diagnostics can quote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The path as shown to people, e.g. `rules/police.toml`.
    pub path: String,
    /// The file's text.
    pub text: String,
}

impl SourceFile {
    /// A file from its display path and text.
    pub fn new(path: impl Into<String>, text: impl Into<String>) -> Arc<SourceFile> {
        Arc::new(SourceFile {
            path: path.into(),
            text: text.into(),
        })
    }

    /// The file name without directories (`police.toml`).
    pub fn name(&self) -> &str {
        self.path.rsplit(['/', '\\']).next().unwrap_or(&self.path)
    }

    /// The 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = self.text[line_start..offset].chars().count() + 1;
        (line, col)
    }

    /// The byte offset of a 1-based line and column (in characters); the
    /// end of the file when past it.
    pub fn offset_of(&self, line: usize, col: usize) -> usize {
        let mut offset = 0;
        for (i, l) in self.text.split_inclusive('\n').enumerate() {
            if i + 1 == line {
                return offset
                    + l.char_indices()
                        .nth(col.saturating_sub(1))
                        .map_or(l.len(), |(b, _)| b);
            }
            offset += l.len();
        }
        self.text.len()
    }

    /// The text of a 1-based line, without its end of line.
    pub fn line_text(&self, line: usize) -> &str {
        self.text
            .lines()
            .nth(line.saturating_sub(1))
            .unwrap_or("")
            .trim_end_matches('\r')
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A place in a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub file: Arc<SourceFile>,
    /// Byte range in the file.
    pub span: Range<usize>,
}

impl Location {
    /// A place in `file`.
    pub fn new(file: &Arc<SourceFile>, span: Range<usize>) -> Location {
        Location {
            file: Arc::clone(file),
            span,
        }
    }

    /// The 1-based line and column where the place starts.
    pub fn line_col(&self) -> (usize, usize) {
        self.file.line_col(self.span.start)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (line, col) = self.line_col();
        write!(f, "{}:{}:{}", self.file.path, line, col)
    }
}

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The rule set still loads; the author should look.
    Warning,
    /// The rule set cannot be used.
    Error,
}

/// A stable diagnostic code. The codes never change meaning; new problems
/// get new codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Code {
    /// R001: the file is not valid TOML, or a value has the wrong type.
    Syntax,
    /// R002: a key the language does not know (often a typo).
    UnknownKey,
    /// R003: two rules share an id.
    DuplicateRuleId,
    /// R004: a destination that is not declared.
    UnknownDestination,
    /// R005: a regular expression that does not compile.
    BadRegex,
    /// R006: an `@list` that is not defined.
    UnknownList,
    /// R007: two lists share a name.
    DuplicateList,
    /// R008: a rule that can never fire.
    NeverFires,
    /// R009: a line of a user dictionary that is not `word [freq] [tag]`.
    BadDictionaryLine,
    /// R010: a settings problem (missing file, bad fallback, no destinations).
    Settings,
    /// R011: two destinations share a name.
    DuplicateDestination,
    /// R012: a bad value in an example call.
    BadExample,
    /// R013: an empty keyword, phrase, pattern or list.
    Empty,
    /// R014: a problem in the gazetteer (`townships.csv`, `places.toml`).
    Gazetteer,
    /// R015: a rewrite that would damage ordinary text (too short, empty).
    BadRewrite,
    /// R101: a keyword the segmenter splits, so it never matches as a token.
    SplitKeyword,
    /// R102: a list that no rule uses.
    UnusedList,
    /// R103: the same entry twice in one list or condition.
    DuplicateEntry,
    /// R104: a phrase of one character, which matches inside other words.
    ShortPhrase,
    /// R105: a rule whose weight is zero: it fires but never counts.
    ZeroWeight,
    /// R106: a rewrite whose `from` normalisation changes first (繁體,
    /// full-width), so it can never match.
    UnreachableRewrite,
}

impl Code {
    /// The code as printed: `R004`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Syntax => "R001",
            Code::UnknownKey => "R002",
            Code::DuplicateRuleId => "R003",
            Code::UnknownDestination => "R004",
            Code::BadRegex => "R005",
            Code::UnknownList => "R006",
            Code::DuplicateList => "R007",
            Code::NeverFires => "R008",
            Code::BadDictionaryLine => "R009",
            Code::Settings => "R010",
            Code::DuplicateDestination => "R011",
            Code::BadExample => "R012",
            Code::Empty => "R013",
            Code::Gazetteer => "R014",
            Code::BadRewrite => "R015",
            Code::SplitKeyword => "R101",
            Code::UnusedList => "R102",
            Code::DuplicateEntry => "R103",
            Code::ShortPhrase => "R104",
            Code::ZeroWeight => "R105",
            Code::UnreachableRewrite => "R106",
        }
    }

    /// The severity every diagnostic of this code has.
    pub fn severity(self) -> Severity {
        match self {
            Code::SplitKeyword
            | Code::UnusedList
            | Code::DuplicateEntry
            | Code::ShortPhrase
            | Code::ZeroWeight
            | Code::UnreachableRewrite => Severity::Warning,
            _ => Severity::Error,
        }
    }
}

/// One problem in a rule set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Its stable code.
    pub code: Code,
    /// What is wrong.
    pub message: String,
    /// Where, when it has a place (a missing file has none).
    pub location: Option<Location>,
    /// How to fix it, when the checker knows.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A problem at a place.
    pub fn at(code: Code, location: Location, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            message: message.into(),
            location: Some(location),
            help: None,
        }
    }

    /// A problem with no place.
    pub fn global(code: Code, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            message: message.into(),
            location: None,
            help: None,
        }
    }

    /// Adds advice on how to fix it.
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Its severity.
    pub fn severity(&self) -> Severity {
        self.code.severity()
    }

    /// Renders the diagnostic like a compiler does:
    ///
    /// ```text
    /// error[R004]: unknown destination `polce`
    ///   ┌─ rules/police.toml:9:15
    ///   │
    /// 9 │ destination = "polce"
    ///   │               ^^^^^^^
    ///   = help: declared destinations: police, court, township, hotline_12345
    /// ```
    pub fn render(&self) -> String {
        use fmt::Write;
        let kind = match self.severity() {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut out = format!("{kind}[{}]: {}\n", self.code.as_str(), self.message);
        if let Some(loc) = &self.location {
            let (line, col) = loc.line_col();
            let number = line.to_string();
            let pad = " ".repeat(number.len());
            let text = loc.file.line_text(line);
            let start = loc.span.start.min(loc.file.text.len());
            let end = loc.span.end.clamp(start, loc.file.text.len());
            let spanned = loc.file.text.get(start..end).unwrap_or("");
            let first_line = spanned.split('\n').next().unwrap_or("");
            let width = display_width(first_line).max(1);
            let indent = display_width(&text.chars().take(col - 1).collect::<String>());
            let _ = writeln!(out, "{pad} ┌─ {loc}");
            let _ = writeln!(out, "{pad} │");
            let _ = writeln!(out, "{number} │ {text}");
            let _ = writeln!(out, "{pad} │ {}{}", " ".repeat(indent), "^".repeat(width));
            if let Some(help) = &self.help {
                let _ = writeln!(out, "{pad} = help: {help}");
            }
        } else if let Some(help) = &self.help {
            let _ = writeln!(out, "  = help: {help}");
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(loc) => write!(f, "{loc}: {}: {}", self.code.as_str(), self.message),
            None => write!(f, "{}: {}", self.code.as_str(), self.message),
        }
    }
}

/// Terminal columns of a string: CJK characters take two.
fn display_width(s: &str) -> usize {
    s.chars()
        .map(|c| {
            let c = c as u32;
            let wide = (0x1100..=0x115F).contains(&c)
                || (0x2E80..=0xA4CF).contains(&c)
                || (0xAC00..=0xD7A3).contains(&c)
                || (0xF900..=0xFAFF).contains(&c)
                || (0xFE30..=0xFE4F).contains(&c)
                || (0xFF00..=0xFF60).contains(&c)
                || (0xFFE0..=0xFFE6).contains(&c)
                || (0x20000..=0x3FFFD).contains(&c);
            if wide { 2 } else { 1 }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_not_bytes() {
        let f = SourceFile::new("x.toml", "a = 1\nid = \"警察\" x\n");
        // byte offset of `x` on line 2: "id = \"警察\" " is 6 + 6 + 2 bytes
        let off = f.text.rfind('x').unwrap();
        assert_eq!(f.line_col(off), (2, 11));
        assert_eq!(f.line_col(0), (1, 1));
    }

    #[test]
    fn render_points_at_the_span_with_wide_characters() {
        let f = SourceFile::new("rules/p.toml", "any = [\"刀\", \"polce\"]\n");
        let start = f.text.find("\"polce\"").unwrap();
        let d = Diagnostic::at(
            Code::UnknownDestination,
            Location::new(&f, start..start + 7),
            "unknown destination `polce`",
        )
        .with_help("declared destinations: police");
        let expected = "error[R004]: unknown destination `polce`\n  \
┌─ rules/p.toml:1:13\n  \
│\n\
1 │ any = [\"刀\", \"polce\"]\n  \
│              ^^^^^^^\n  \
= help: declared destinations: police\n";
        assert_eq!(d.render(), expected);
    }
}
