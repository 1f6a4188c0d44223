//! Segmentation: jieba with the domain's user dictionaries, built once.

use std::sync::Arc;

use jieba_rs::Jieba;
use minsheng_rules::{Code, Diagnostic, Location, SourceFile};

/// One token of a segmented text, with its place in characters and bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    /// The token's text.
    pub text: &'a str,
    /// Start in characters.
    pub start: usize,
    /// End (exclusive) in characters.
    pub end: usize,
    /// Start in bytes.
    pub byte_start: usize,
    /// End (exclusive) in bytes.
    pub byte_end: usize,
}

/// jieba's default dictionary plus the rule set's user dictionaries.
///
/// Built once at start-up (loading takes a few hundred milliseconds) and
/// shared read-only: [`Segmenter::cut`] takes `&self`.
pub struct Segmenter {
    jieba: Jieba,
}

impl std::fmt::Debug for Segmenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segmenter").finish_non_exhaustive()
    }
}

impl Segmenter {
    /// Loads jieba's default dictionary, then every user dictionary, then
    /// `extra_words` (place names from the gazetteer). Every bad dictionary
    /// line is reported with its `file:line:col`; there is no fallback.
    pub fn new(
        dictionaries: &[Arc<SourceFile>],
        extra_words: &[&str],
    ) -> Result<Segmenter, Vec<Diagnostic>> {
        let mut jieba = Jieba::new();
        let mut errors = Vec::new();
        for file in dictionaries {
            let mut offset = 0;
            for line in file.text.split_inclusive('\n') {
                let start = offset;
                offset += line.len();
                match parse_dictionary_line(line) {
                    Ok(None) => {}
                    Ok(Some((word, freq, tag))) => {
                        jieba.add_word(word, freq, tag);
                    }
                    Err((col_byte, len, message)) => {
                        let at = start + col_byte;
                        errors.push(Diagnostic::at(Code::BadDictionaryLine, Location::new(file, at..at + len), message)
                            .with_help("a dictionary line is `word [frequency] [tag]`, e.g. `取款手 2000 n`"));
                    }
                }
            }
        }
        for word in extra_words {
            if jieba.cut(word, false).len() > 1 {
                jieba.add_word(word, None, None);
            }
        }
        if errors.is_empty() {
            Ok(Segmenter { jieba })
        } else {
            Err(errors)
        }
    }

    /// Cuts a text into tokens (jieba's exact mode, no HMM: an unknown word
    /// comes out as single characters, never as an invented word).
    pub fn cut<'a>(&self, text: &'a str) -> Vec<Token<'a>> {
        self.jieba
            .cut(text, false)
            .into_iter()
            .map(|t| Token {
                text: t.word,
                start: t.start,
                end: t.end,
                byte_start: t.byte_start,
                byte_end: t.byte_end,
            })
            .collect()
    }
}

type DictEntry<'a> = (&'a str, Option<usize>, Option<&'a str>);

/// Parses `word [freq] [tag]`; blank and `#` lines give `None`. An error
/// gives the byte column and length of the bad field, and a message.
fn parse_dictionary_line(line: &str) -> Result<Option<DictEntry<'_>>, (usize, usize, String)> {
    let content = line.trim_end_matches(['\n', '\r']);
    let trimmed = content.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let mut fields = Vec::new();
    let mut rest = content;
    let mut consumed = 0;
    while let Some(pos) = rest.find(|c: char| !c.is_whitespace()) {
        let field_start = consumed + pos;
        let after = &rest[pos..];
        let len = after.find(char::is_whitespace).unwrap_or(after.len());
        fields.push((field_start, &after[..len]));
        consumed = field_start + len;
        rest = &content[consumed..];
    }
    if fields.len() > 3 {
        let (at, f) = fields[3];
        return Err((
            at,
            f.len(),
            format!("unexpected field `{f}`: a dictionary line has at most three fields"),
        ));
    }
    let (_, word) = fields[0];
    let freq = match fields.get(1) {
        None => None,
        Some(&(at, f)) => match f.parse::<usize>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Err((
                    at,
                    f.len(),
                    format!("frequency `{f}` of `{word}` is not a positive whole number"),
                ));
            }
        },
    };
    let tag = match fields.get(2) {
        None => None,
        Some(&(at, f)) if !f.chars().all(|c| c.is_ascii_alphabetic()) => {
            return Err((
                at,
                f.len(),
                format!(
                    "tag `{f}` of `{word}` is not a part-of-speech tag (letters, e.g. n, ns, v)"
                ),
            ));
        }
        Some(&(_, f)) => Some(f),
    };
    Ok(Some((word, freq, tag)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &Segmenter, text: &str) -> Vec<String> {
        s.cut(text).iter().map(|t| t.text.to_owned()).collect()
    }

    #[test]
    fn user_dictionary_keeps_domain_words_whole() {
        let plain = Segmenter::new(&[], &[]).unwrap();
        let dict = SourceFile::new(
            "rules/test.dict",
            "# domain words\n取款手 2000 n\n\n民声一键办\n",
        );
        let seg = Segmenter::new(&[dict], &["乌镇镇"]).unwrap();
        assert_ne!(words(&plain, "他是取款手"), ["他", "是", "取款手"]);
        assert_eq!(words(&seg, "他是取款手"), ["他", "是", "取款手"]);
        assert_eq!(
            words(&seg, "我在乌镇镇用民声一键办"),
            ["我", "在", "乌镇镇", "用", "民声一键办"]
        );
    }

    #[test]
    fn tokens_carry_character_and_byte_positions_in_mixed_scripts() {
        let seg = Segmenter::new(&[], &[]).unwrap();
        let toks = seg.cut("我从2025年开始学习Rust语言。");
        let got: Vec<(&str, usize, usize)> =
            toks.iter().map(|t| (t.text, t.start, t.end)).collect();
        assert_eq!(
            got,
            [
                ("我", 0, 1),
                ("从", 1, 2),
                ("2025", 2, 6),
                ("年", 6, 7),
                ("开始", 7, 9),
                ("学习", 9, 11),
                ("Rust", 11, 15),
                ("语言", 15, 17),
                ("。", 17, 18)
            ]
        );
        assert_eq!(toks[2].byte_start, 6);
    }

    #[test]
    fn bad_dictionary_lines_are_errors_with_line_and_column() {
        let dict = SourceFile::new(
            "rules/bad.dict",
            "好词 10 n\n坏词 many n\n词 5 n x\n标签 3 n1\n",
        );
        let errors = Segmenter::new(&[dict], &[]).unwrap_err();
        let shown: Vec<String> = errors.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            shown,
            [
                "rules/bad.dict:2:4: R009: frequency `many` of `坏词` is not a positive whole number",
                "rules/bad.dict:3:7: R009: unexpected field `x`: a dictionary line has at most three fields",
                "rules/bad.dict:4:6: R009: tag `n1` of `标签` is not a part-of-speech tag (letters, e.g. n, ns, v)",
            ]
        );
    }
}
