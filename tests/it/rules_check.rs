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
        "tests/fixtures/broken: 20 error(s), 5 warning(s)\n"
    );
}

#[test]
fn a_file_that_is_not_utf8_is_named_with_its_line_and_column() {
    let dir = super::support::mini_copy();
    let dict = dir.path().join("extra.dict");
    std::fs::write(
        &dict,
        b"\xe5\x8f\x96\xe6\xac\xbe\xe6\x89\x8b 100 n\nab\xff 10 n\n",
    )
    .unwrap();
    let out = minsheng(&["rules", "check", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "a problem in the rules exits 1");
    assert!(
        stderr(&out).contains("extra.dict:2:3: not valid UTF-8 (byte 18)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_missing_directory_is_named_once() {
    let out = minsheng(&["rules", "check", "tests/fixtures/no-such-dir"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(
        err.matches("No such file or directory").count(),
        1,
        "the cause is said once: {err}"
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
