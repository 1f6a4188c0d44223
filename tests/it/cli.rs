//! The command line, end to end, with the built-in rule set.

use super::support::{minsheng, stderr, stdout};

#[test]
fn classify_json_explains_a_weapon_call_with_spans_and_version() {
    let out = minsheng(&[
        "classify",
        "邻居吵架，他拿着菜刀追出来了",
        "--hotline",
        "12345",
        "--location",
        "南湖区新兴街道",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["destination"], "police");
    assert_eq!(d["township"]["code"], "330402011");
    assert_eq!(d["transfer"]["label"], "12345→110");
    assert_eq!(d["rules_version"].as_str().unwrap().len(), 64);
    let police = d["fired"][0].clone();
    assert_eq!(police["destination"], "police");
    let texts: Vec<&str> = police["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert!(texts.iter().any(|t| t.contains("菜刀")), "{texts:?}");
    for m in police["matches"].as_array().unwrap() {
        let (s, e) = (
            m["start"].as_u64().unwrap() as usize,
            m["end"].as_u64().unwrap() as usize,
        );
        let span: String = d["normalized_text"]
            .as_str()
            .unwrap()
            .chars()
            .skip(s)
            .take(e - s)
            .collect();
        assert_eq!(
            span,
            m["text"].as_str().unwrap(),
            "a span points at its text"
        );
    }
}

#[test]
fn classify_prints_a_readable_explanation() {
    let out = minsheng(&[
        "classify",
        "隔壁装修从早上七点开始砸墙，现在还在砸",
        "--location",
        "乌镇镇",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("destination  township ("), "{text}");
    assert!(text.contains("queue        township.330483100\n"), "{text}");
    assert!(text.contains("transfer     110→基层\n"), "{text}");
    assert!(text.contains("tokens       隔壁 / 装修 / "), "{text}");
    assert!(text.contains("\nfired        township."), "{text}");
}

#[test]
fn classify_input_keeps_order_and_marks_bad_lines_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.jsonl");
    std::fs::write(
        &path,
        concat!(
            "{\"id\":\"a\",\"hotline\":\"110\",\"text\":\"快来人有人拿刀砍人了\"}\n",
            "{\"id\":\"b\",\"hotline\":\"119\",\"text\":\"着火了\"}\n",
            "\n",
            "{\"id\":\"c\",\"hotline\":\"12345\",\"text\":\"请问社保卡丢了怎么补办\",\"expected\":{\"destination\":\"hotline_12345\",\"township\":null}}\n",
        ),
    )
    .unwrap();
    let out = minsheng(&["classify", "--input", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "a bad line fails the run");
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        (lines[0]["id"].as_str(), lines[0]["destination"].as_str()),
        (Some("a"), Some("police"))
    );
    assert_eq!(lines[1]["line"], 2);
    assert!(
        lines[1]["error"].as_str().unwrap().contains(":2:"),
        "{}",
        lines[1]
    );
    assert!(
        lines[1]["error"]
            .as_str()
            .unwrap()
            .contains("unknown hotline \"119\""),
        "{}",
        lines[1]
    );
    assert_eq!(
        (lines[2]["id"].as_str(), lines[2]["destination"].as_str()),
        (Some("c"), Some("hotline_12345"))
    );
    assert!(stderr(&out).contains("calls.jsonl:2:"), "{}", stderr(&out));
}

#[test]
fn eval_json_reports_the_measures_it_promises() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labelled.jsonl");
    std::fs::write(
        &path,
        concat!(
            "{\"id\":\"1\",\"hotline\":\"110\",\"text\":\"快来人有人拿刀砍人了\",\"expected\":{\"destination\":\"police\",\"township\":null}}\n",
            "{\"id\":\"2\",\"hotline\":\"12345\",\"text\":\"请问社保卡丢了怎么补办\",\"location\":\"乌镇镇\",\"expected\":{\"destination\":\"hotline_12345\",\"township\":\"330483100\"}}\n",
            "{\"id\":\"3\",\"hotline\":\"12345\",\"text\":\"请问社保卡丢了怎么补办\",\"location\":\"乌镇镇\",\"expected\":{\"destination\":\"police\",\"township\":\"330402011\"}}\n",
        ),
    )
    .unwrap();
    let out = minsheng(&["eval", "--corpus", path.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["total"], 3);
    assert_eq!(r["accuracy"], 0.6667);
    assert_eq!(r["per_destination"]["police"]["support"], 2);
    assert_eq!(r["per_destination"]["police"]["precision"], 1.0);
    assert_eq!(r["per_destination"]["police"]["recall"], 0.5);
    assert_eq!(r["per_destination"]["police"]["f1"], 0.6667);
    assert_eq!(r["per_destination"]["hotline_12345"]["precision"], 0.5);
    assert_eq!(r["confusion"]["police"]["hotline_12345"], 1);
    assert_eq!(r["township_accuracy"], 0.5);
    assert!(r["calls_per_second"].as_f64().unwrap() > 0.0);
}

/// A labelled corpus with a bad line in the middle: a call with no text.
fn corpus_with_a_bad_line() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("labelled.jsonl"),
        concat!(
            "{\"id\":\"1\",\"hotline\":\"110\",\"text\":\"快来人有人拿刀砍人了\",\"expected\":{\"destination\":\"police\",\"township\":null}}\n",
            "{\"id\":\"2\",\"hotline\":\"110\",\"text\":\"   \",\"expected\":{\"destination\":\"police\",\"township\":null}}\n",
            "{\"id\":\"3\",\"hotline\":\"12345\",\"text\":\"请问社保卡丢了怎么补办\",\"expected\":{\"destination\":\"hotline_12345\",\"township\":null}}\n",
            "{\"id\":\"4\",\"hotline\":\"110\",\"text\":\"有人打架\",\"expected\":{\"destination\":\"polise\",\"township\":null}}\n",
        ),
    )
    .unwrap();
    dir
}

#[test]
fn eval_names_every_bad_line_and_measures_nothing_unless_asked() {
    let dir = corpus_with_a_bad_line();
    let path = dir.path().join("labelled.jsonl");
    let out = minsheng(&["eval", "--corpus", path.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        out.stdout.is_empty(),
        "no report from a corpus with bad lines"
    );
    let err = stderr(&out);
    assert!(
        err.contains("labelled.jsonl:2:27: text: missing or empty"),
        "{err}"
    );
    assert!(
        err.contains("labelled.jsonl:4: call 4 expects unknown destination `polise`"),
        "{err}"
    );
    assert!(
        err.contains("--skip-bad"),
        "the error says how to go on: {err}"
    );
}

#[test]
fn eval_with_skip_bad_measures_the_rest_and_counts_what_it_left_out() {
    let dir = corpus_with_a_bad_line();
    let path = dir.path().join("labelled.jsonl");
    let out = minsheng(&[
        "eval",
        "--corpus",
        path.to_str().unwrap(),
        "--json",
        "--skip-bad",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("warning: "), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("labelled.jsonl:2:"),
        "{}",
        stderr(&out)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["total"], 2);
    assert_eq!(r["skipped"], 2);
    assert_eq!(r["accuracy"], 1.0);
    let text = minsheng(&["eval", "--corpus", path.to_str().unwrap(), "--skip-bad"]);
    assert!(
        stdout(&text).contains("skipped 2 bad line(s)"),
        "{}",
        stdout(&text)
    );
}

#[test]
fn classify_input_with_skip_bad_keeps_the_error_in_place_and_succeeds() {
    let dir = corpus_with_a_bad_line();
    let path = dir.path().join("labelled.jsonl");
    let out = minsheng(&["classify", "--input", path.to_str().unwrap(), "--skip-bad"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "one output line per input line");
    assert_eq!(lines[1]["line"], 2);
    assert_eq!(lines[0]["destination"], "police");
    // Line 4's label names no destination, but classify ignores labels.
    assert_eq!(lines[3]["destination"], "police");
}

#[test]
fn classify_refuses_an_empty_or_oversized_text_with_the_reason() {
    let out = minsheng(&["classify", " \t "]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("the call's text: missing or empty"),
        "{}",
        stderr(&out)
    );
    let long = "吵".repeat(30_000);
    let out = minsheng(&["classify", &long]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("the call's text: 90000 bytes, more than the 65536 allowed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn eval_json_with_misses_is_one_object_that_lists_destination_and_township_misses() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labelled.jsonl");
    std::fs::write(
        &path,
        concat!(
            // right
            "{\"id\":\"ok\",\"hotline\":\"110\",\"text\":\"快来人有人拿刀砍人了\",\"expected\":{\"destination\":\"police\",\"township\":null}}\n",
            // the wrong destination
            "{\"id\":\"dest\",\"hotline\":\"12345\",\"text\":\"请问社保卡丢了怎么补办\",\"expected\":{\"destination\":\"police\",\"township\":null}}\n",
            // the right destination in the wrong township
            "{\"id\":\"town\",\"hotline\":\"12345\",\"text\":\"隔壁装修从早上七点开始砸墙，现在还在砸\",\"location\":\"乌镇镇\",\"expected\":{\"destination\":\"township\",\"township\":\"330402011\"}}\n",
        ),
    )
    .unwrap();
    let out = minsheng(&[
        "eval",
        "--corpus",
        path.to_str().unwrap(),
        "--json",
        "--misses",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: not one JSON object:\n{}", stdout(&out)));
    assert_eq!(r["total"], 3);
    let ids: Vec<&str> = r["misses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["dest", "town"]);
    assert_eq!(r["misses"][1]["decision"]["township"]["code"], "330483100");
    assert_eq!(r["misses"][1]["expected"]["township"], "330402011");
    let text = minsheng(&["eval", "--corpus", path.to_str().unwrap(), "--misses"]);
    assert!(
        stdout(&text).contains("town [12345] expected township, got township; township expected 330402011, got 330483100"),
        "{}",
        stdout(&text)
    );
}

#[test]
fn eval_refuses_a_corpus_with_no_calls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.jsonl");
    std::fs::write(&path, "\n\n").unwrap();
    let out = minsheng(&["eval", "--corpus", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("holds no labelled call to measure"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn control_and_zero_width_characters_never_reach_the_terminal_or_pass_as_text() {
    let out = minsheng(&["classify", "有人\u{1b}[2J拿\u{200B}刀砍人"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        !text.contains('\u{1b}'),
        "an escape reached the output: {text:?}"
    );
    assert!(text.starts_with("destination  police"), "{text}");
    let out = minsheng(&["classify", "\u{200B}\u{FEFF} \u{1b}"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("the call's text: missing or empty"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_embedded_rule_set_is_the_rules_directory() {
    let embedded = minsheng(&["classify", "社保", "--json"]);
    let from_dir = minsheng(&["--rules", "rules", "classify", "社保", "--json"]);
    let v = |o: &std::process::Output| -> String {
        let d: serde_json::Value =
            serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(o)));
        d["rules_version"].as_str().unwrap().to_owned()
    };
    assert_eq!(
        v(&embedded),
        v(&from_dir),
        "the binary embeds rules/ as it is in the tree"
    );
}

#[test]
fn a_broken_rules_directory_stops_classify_with_the_problems() {
    let out = minsheng(&["--rules", "tests/fixtures/broken", "classify", "有人拿刀"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("error[R004]: unknown destination `polce`"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty(), "no decision from a broken rule set");
}

#[test]
fn a_bad_hotline_flag_is_refused_with_the_reason() {
    let out = minsheng(&["classify", "你好", "--hotline", "119"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown hotline \"119\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_closed_output_pipe_ends_the_program_without_a_panic() {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_minsheng"))
        .args(["rules", "test"])
        .current_dir(super::support::root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the reading end before the program writes anything.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

#[test]
fn a_missing_configuration_file_is_named_once() {
    for args in [
        &["serve", "--config", "/nonexistent/minsheng.toml"][..],
        &["audit", "verify", "--config", "/nonexistent/minsheng.toml"][..],
    ] {
        let out = minsheng(args);
        assert!(!out.status.success());
        assert_eq!(
            stderr(&out),
            "error: /nonexistent/minsheng.toml: No such file or directory (os error 2)\n",
            "{args:?}"
        );
    }
}

#[test]
fn rules_test_names_each_example_that_goes_elsewhere_and_fails() {
    let dir = super::support::mini_copy();
    std::fs::write(
        dir.path().join("examples.toml"),
        "[[example]]\ntext = \"有人拿刀砍人\"\nexpect = \"police\"\n\n[[example]]\ntext = \"请问社保卡怎么补办\"\nexpect = \"police\"\n",
    )
    .unwrap();
    let out = minsheng(&["rules", "test", dir.path().to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failing example fails the run"
    );
    let text = stdout(&out);
    assert!(
        text.contains("examples.toml:6:8: expected police, went to hotline_12345"),
        "{text}"
    );
    assert!(text.contains("请问社保卡怎么补办"), "{text}");
    assert!(
        !text.contains("有人拿刀砍人"),
        "a passing example is not listed: {text}"
    );
    assert!(text.trim_end().ends_with("1 passed, 1 failed"), "{text}");
}

#[test]
fn bench_reports_every_measure_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.jsonl");
    std::fs::write(
        &path,
        "{\"hotline\":\"110\",\"text\":\"快来人有人拿刀砍人了\"}\n{\"hotline\":\"12345\",\"text\":\"请问社保卡丢了怎么补办\"}\n",
    )
    .unwrap();
    let out = minsheng(&[
        "bench",
        "--corpus",
        path.to_str().unwrap(),
        "--seconds",
        "0.2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // The figures depend on the machine; their presence and form do not.
    for (label, unit) in [
        ("load", " s (rules"),
        ("segmentation", " calls/s"),
        ("classification", " calls/s"),
        ("ratio", " % of segmentation-alone throughput"),
        ("peak memory", " MiB resident"),
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no `{label}` line in:\n{text}"));
        assert!(line.contains(unit), "{line}");
        let number = line[label.len()..].trim_start().split(' ').next().unwrap();
        assert!(number.parse::<f64>().is_ok(), "not a number in {line:?}");
    }
    assert!(text.contains("2 calls"), "{text}");
}

#[test]
fn emoji_and_mixed_scripts_get_a_sound_decision() {
    let out = minsheng(&[
        "classify",
        "🔪🔪 help!! 有个男的拿着刀 in the lobby 😱 快来",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["destination"], "police");
    let out = minsheng(&["classify", "😀😀😀 👍", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["destination"], "hotline_12345");
    assert_eq!(d["needs_review"], true, "nothing to go on: a person looks");
}
