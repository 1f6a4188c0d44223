//! Measuring the classifier on a labelled corpus (one JSON call a line).

use std::collections::BTreeMap;

use minsheng_core::{Call, Decision, Hotline, MAX_TEXT_BYTES, TownshipCode, check_text};
use serde::{Deserialize, Serialize};

/// One line of a corpus file. `expected` is optional so that a day's
/// unlabelled calls can be classified in batch.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusCall {
    /// The call's id.
    #[serde(default)]
    pub id: Option<String>,
    /// The number used.
    pub hotline: Hotline,
    /// The call's text.
    pub text: String,
    /// The operator system's address.
    #[serde(default)]
    pub location: Option<String>,
    /// The label.
    #[serde(default)]
    pub expected: Option<Expected>,
}

impl CorpusCall {
    /// The call, without its label.
    pub fn call(&self) -> Call {
        Call {
            id: self.id.clone(),
            hotline: self.hotline,
            text: self.text.clone(),
            location: self.location.clone(),
            township: None,
        }
    }
}

/// Where a labelled call must go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    /// The destination's name.
    pub destination: String,
    /// The township, where the place can be told.
    #[serde(default)]
    pub township: Option<TownshipCode>,
}

/// A corpus line that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}:{line}:{column}: {message}")]
pub struct LineError {
    /// The file.
    pub path: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Reads a corpus, one result a non-blank line, in order, with the line
/// number of each. A line is bad when it is not a call in the corpus
/// format, or when its text is empty or over [`MAX_TEXT_BYTES`].
pub fn read_corpus(path: &str, text: &str) -> Vec<(usize, Result<CorpusCall, LineError>)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let error = |column: usize, message: String| LineError {
                path: path.to_owned(),
                line: i + 1,
                column,
                message,
            };
            let parsed = serde_json::from_str::<CorpusCall>(l)
                .map_err(|e| {
                    let message = e.to_string();
                    let message = message.split(" at line ").next().unwrap_or_default();
                    error(e.column(), message.to_owned())
                })
                .and_then(|c| match check_text(&c.text, MAX_TEXT_BYTES) {
                    Ok(()) => Ok(c),
                    Err(problem) => {
                        // Point at the `text` key (characters, 1-based).
                        let column = l
                            .find("\"text\"")
                            .map_or(1, |byte| l[..byte].chars().count() + 1);
                        Err(error(column, format!("text: {problem}")))
                    }
                });
            (i + 1, parsed)
        })
        .collect()
}

/// Precision, recall and F1 of one destination.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClassMetrics {
    /// Right among the calls sent there.
    pub precision: f64,
    /// Sent there among the calls that belong there.
    pub recall: f64,
    /// The harmonic mean of the two.
    pub f1: f64,
    /// Calls that belong there.
    pub support: usize,
    /// Calls sent there.
    pub predicted: usize,
}

/// The measurements of one run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// Labelled calls measured.
    pub total: usize,
    /// Calls sent to their expected destination.
    pub correct: usize,
    /// `correct / total`.
    pub accuracy: f64,
    /// Per destination, in order of precedence.
    pub per_destination: BTreeMap<String, ClassMetrics>,
    /// expected → predicted → count.
    pub confusion: BTreeMap<String, BTreeMap<String, usize>>,
    /// Calls whose expected township is known.
    pub township_total: usize,
    /// Of those, calls placed in that township.
    pub township_correct: usize,
    /// `township_correct / township_total`.
    pub township_accuracy: f64,
    /// The same, over calls expected to go to a per-township destination.
    pub township_accuracy_on_township_calls: f64,
    /// Calls flagged for review.
    pub needs_review: usize,
    /// Lines of the corpus that could not be read and were left out
    /// (only with `--skip-bad`; otherwise a bad line stops the run).
    #[serde(default)]
    pub skipped: usize,
    /// Classification throughput of the run (parsing excluded).
    pub calls_per_second: f64,
}

/// Accumulates decisions against labels.
#[derive(Debug, Default)]
pub struct Evaluation {
    destinations: Vec<String>,
    township_destination: Option<String>,
    confusion: BTreeMap<String, BTreeMap<String, usize>>,
    total: usize,
    correct: usize,
    town_total: usize,
    town_correct: usize,
    town_calls_total: usize,
    town_calls_correct: usize,
    needs_review: usize,
}

impl Evaluation {
    /// An evaluation over these destinations; `township_destination` is the
    /// per-township one, for the second township measure.
    pub fn new(destinations: Vec<String>, township_destination: Option<String>) -> Evaluation {
        Evaluation {
            destinations,
            township_destination,
            ..Evaluation::default()
        }
    }

    /// Records one decision; returns whether the destination was right.
    pub fn record(&mut self, expected: &Expected, decision: &Decision) -> bool {
        self.total += 1;
        let right = decision.destination == expected.destination;
        self.correct += usize::from(right);
        self.needs_review += usize::from(decision.needs_review);
        *self
            .confusion
            .entry(expected.destination.clone())
            .or_default()
            .entry(decision.destination.clone())
            .or_default() += 1;
        if let Some(want) = &expected.township {
            let got = decision.township.as_ref().is_some_and(|t| &t.code == want);
            self.town_total += 1;
            self.town_correct += usize::from(got);
            if self.township_destination.as_deref() == Some(expected.destination.as_str()) {
                self.town_calls_total += 1;
                self.town_calls_correct += usize::from(got);
            }
        }
        right
    }

    /// The measurements, given the classification time in seconds.
    pub fn report(&self, seconds: f64) -> Report {
        let mut names = self.destinations.clone();
        for (e, row) in &self.confusion {
            for p in std::iter::once(e).chain(row.keys()) {
                if !names.contains(p) {
                    names.push(p.clone());
                }
            }
        }
        let mut per_destination = BTreeMap::new();
        for name in &names {
            let support: usize = self.confusion.get(name).map_or(0, |r| r.values().sum());
            let predicted: usize = self.confusion.values().filter_map(|r| r.get(name)).sum();
            let tp = self
                .confusion
                .get(name)
                .and_then(|r| r.get(name))
                .copied()
                .unwrap_or(0);
            let precision = ratio(tp, predicted);
            let recall = ratio(tp, support);
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            per_destination.insert(
                name.clone(),
                ClassMetrics {
                    precision,
                    recall,
                    f1: round4(f1),
                    support,
                    predicted,
                },
            );
        }
        Report {
            total: self.total,
            correct: self.correct,
            accuracy: ratio(self.correct, self.total),
            per_destination,
            confusion: self.confusion.clone(),
            township_total: self.town_total,
            township_correct: self.town_correct,
            township_accuracy: ratio(self.town_correct, self.town_total),
            township_accuracy_on_township_calls: ratio(
                self.town_calls_correct,
                self.town_calls_total,
            ),
            needs_review: self.needs_review,
            skipped: 0,
            calls_per_second: if seconds > 0.0 {
                (self.total as f64 / seconds).round()
            } else {
                0.0
            },
        }
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        round4(a as f64 / b as f64)
    }
}

fn round4(x: f64) -> f64 {
    (x * 10000.0).round() / 10000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_lines_report_their_line_and_column() {
        let text = "{\"id\":\"a\",\"hotline\":\"110\",\"text\":\"x\"}\n\n{\"id\":\"b\",\"hotline\":\"911\",\"text\":\"y\"}\n";
        let got = read_corpus("calls.jsonl", text);
        assert_eq!(got.len(), 2);
        assert!(got[0].1.is_ok());
        assert_eq!(got[1].0, 3);
        let err = got[1].1.as_ref().unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.to_string().starts_with("calls.jsonl:3:"), "{err}");
        assert!(err.message.contains("unknown hotline \"911\""), "{err}");
    }

    #[test]
    fn empty_and_oversized_texts_are_bad_lines_that_point_at_the_text() {
        let long = "报".repeat(MAX_TEXT_BYTES / 3 + 1);
        let text = format!(
            "{{\"hotline\":\"110\",\"text\":\"  \"}}\n{{\"hotline\":\"110\",\"text\":\"{long}\"}}\n{{\"hotline\":\"110\",\"text\":\"有人打架\"}}\n"
        );
        let got = read_corpus("c.jsonl", &text);
        let err = got[0].1.as_ref().unwrap_err();
        assert_eq!(err.to_string(), "c.jsonl:1:18: text: missing or empty");
        let err = got[1].1.as_ref().unwrap_err();
        assert_eq!((err.line, err.column), (2, 18));
        assert!(
            err.message.starts_with(&format!(
                "text: {} bytes, more than the 65536 allowed",
                long.len()
            )),
            "{err}"
        );
        assert!(got[2].1.is_ok());
    }
}
