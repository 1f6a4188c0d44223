//! `minsheng rules check`: every problem in one run, rendered like a
//! compiler, with stable codes; the exit code says whether there was an
//! error.

use super::support::{assert_text_eq, fixture, minsheng, root, stderr, stdout};

#[test]
fn every_problem_of_a_broken_directory_is_reported_in_one_run() {
    let out = minsheng(&["rules", "check", "tests/fixtures/broken"]);
    assert_eq!(out.status.code(), Some(1), "an error exits 1");
    let expected = std::fs::read_to_string(fixture("broken.expected")).unwrap();
    assert_text_eq(&expected, &stderr(&out));
    assert_eq!(
        stdout(&out),
        "tests/fixtures/broken: 12 error(s), 3 warning(s)\n"
    );
}

#[test]
fn warnings_alone_exit_zero() {
    let out = minsheng(&["rules", "check", "tests/fixtures/mini"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "tests/fixtures/mini: 10 rules, 9 lists, 0 examples: ok, 0 warning(s)\n"
    );
}

#[test]
fn the_default_rule_set_has_no_errors() {
    let out = minsheng(&["rules", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("rules: "), "{}", stdout(&out));
    assert!(!stderr(&out).contains("error["), "{}", stderr(&out));
    assert!(root().join("rules/minsheng.toml").is_file());
}
