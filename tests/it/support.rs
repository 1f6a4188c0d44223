//! Helpers shared by the test modules.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use minsheng_classify::Classifier;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fixture directory under tests/fixtures.
pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

/// A copy of the mini rule set in a new temporary directory, for tests
/// that add or break a file of it.
pub fn mini_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture("mini")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    dir
}

/// Builds a classifier from a rule directory, panicking with every
/// diagnostic if it does not compile.
pub fn classifier(dir: &Path) -> Classifier {
    let checked =
        minsheng_rules::compile(minsheng_rules::read_dir(dir).expect("readable rule dir"));
    let rules = checked.rule_set.unwrap_or_else(|| {
        panic!(
            "{} does not compile:\n{}",
            dir.display(),
            checked
                .diagnostics
                .iter()
                .map(|d| d.render())
                .collect::<String>()
        )
    });
    Classifier::new(rules).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs the `minsheng` binary in the repository root.
pub fn minsheng(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_minsheng"))
        .args(args)
        .current_dir(root())
        .env_remove("MINSHENG_RULES")
        .output()
        .expect("run minsheng")
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("UTF-8 stdout")
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("UTF-8 stderr")
}

/// Asserts two texts are equal, showing a line diff when they are not.
pub fn assert_text_eq(expected: &str, actual: &str) {
    if expected == actual {
        return;
    }
    let mut diff = String::new();
    let (e, a): (Vec<_>, Vec<_>) = (expected.lines().collect(), actual.lines().collect());
    for i in 0..e.len().max(a.len()) {
        match (e.get(i), a.get(i)) {
            (Some(x), Some(y)) if x == y => diff.push_str(&format!("  {x}\n")),
            (x, y) => {
                if let Some(x) = x {
                    diff.push_str(&format!("- {x}\n"));
                }
                if let Some(y) = y {
                    diff.push_str(&format!("+ {y}\n"));
                }
            }
        }
    }
    panic!("texts differ (- expected, + actual):\n{diff}");
}
