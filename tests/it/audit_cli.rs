//! `minsheng audit`, end to end, on an audit log built with the store.

use std::path::Path;

use minsheng_store::{CallRecord, Filter, NewTicket, Reroute, Store};
use serde_json::{Value, json};
use tempfile::TempDir;

use super::support::{minsheng, stderr, stdout};

/// 2026-11-29T08:00:00Z and 2026-11-30T08:00:00Z, in ms.
const DAY1: i64 = 1_795_939_200_000;
const DAY2: i64 = 1_796_025_600_000;
const MINUTE: i64 = 60_000;
const VERSION: &str = "3f2a9c0d1e2b3f2a9c0d1e2b3f2a9c0d1e2b3f2a9c0d1e2b3f2a9c0d1e2b3f2a";

struct Call {
    hotline: &'static str,
    call_id: &'static str,
    queue: &'static str,
    destination: &'static str,
    township: Option<&'static str>,
    rules: &'static [&'static str],
    urgency: &'static str,
    transfer: Option<&'static str>,
    needs_review: bool,
    number: &'static str,
    at: i64,
}

/// Tickets 1 to 5, records 1 to 5.
const CALLS: [Call; 5] = [
    Call {
        hotline: "110",
        call_id: "A-1",
        queue: "dispatch.police",
        destination: "police",
        township: Some("330402011"),
        rules: &["police.weapon"],
        urgency: "critical",
        transfer: None,
        needs_review: false,
        number: "13912345678",
        at: DAY1,
    },
    Call {
        hotline: "12345",
        call_id: "B-1",
        queue: "township.330483100",
        destination: "township",
        township: Some("330483100"),
        rules: &["township.noise"],
        urgency: "priority",
        transfer: Some("12345→基层"),
        needs_review: false,
        number: "13800001111",
        at: DAY1 + MINUTE,
    },
    Call {
        hotline: "110",
        call_id: "A-2",
        queue: "township.330483100",
        destination: "township",
        township: Some("330483100"),
        rules: &["township.noise", "township.dispute"],
        urgency: "priority",
        transfer: Some("110→基层"),
        needs_review: false,
        number: "13700002222",
        at: DAY1 + 2 * MINUTE,
    },
    Call {
        hotline: "12345",
        call_id: "B-2",
        queue: "workorder.12345",
        destination: "hotline_12345",
        township: None,
        rules: &[],
        urgency: "routine",
        transfer: None,
        needs_review: true,
        number: "13600003333",
        at: DAY2,
    },
    Call {
        hotline: "app",
        call_id: "C-1",
        queue: "court.shared",
        destination: "court",
        township: Some("330402011"),
        rules: &["court.divorce"],
        urgency: "routine",
        transfer: None,
        needs_review: false,
        number: "13500004444",
        at: DAY2 + MINUTE,
    },
];

fn decision(c: &Call) -> String {
    json!({
        "destination": c.destination,
        "queue": c.queue,
        "township": c.township.map(|code| json!({ "code": code, "name": "某镇" })),
        "urgency": c.urgency,
        "confidence": 0.9,
        "needs_review": c.needs_review,
        "transfer": c.transfer.map(|label| json!({ "from": c.hotline, "to": c.destination, "label": label })),
        "fired": c.rules.iter().map(|id| json!({ "id": id, "destination": c.destination })).collect::<Vec<_>>(),
        "rules_version": VERSION,
    })
    .to_string()
}

/// The log, 13 records:
///
/// 1–5 received (tickets 1–5, as in `CALLS`); 6 delivered and 7 acked
/// (ticket 1, 110-desk-1); 8 delivered and 9 nacked (ticket 2,
/// wuzhen-team); 10 rerouted ticket 2 to the 12345 work orders
/// (supervisor-wang); 11 rerouted ticket 3 to the police (supervisor-li);
/// 12 rerouted ticket 5 to its township (supervisor-wang); 13 rules_loaded.
fn build_log() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("tickets.db")).unwrap();
    for (i, c) in CALLS.iter().enumerate() {
        let ticket = NewTicket {
            hotline: c.hotline.into(),
            call_id: c.call_id.into(),
            queue: c.queue.into(),
            destination: c.destination.into(),
            township: c.township.map(str::to_owned),
            urgency: match c.urgency {
                "critical" => 3,
                "priority" => 1,
                _ => 0,
            },
            decision: decision(c),
            rules: c.rules.iter().map(|r| (*r).to_owned()).collect(),
            rules_version: VERSION.into(),
            call: CallRecord {
                caller_number: c.number.into(),
                text: "（通话内容）".into(),
                location: "某地".into(),
                call_taker: "ct-7".into(),
                received_at: c.at - 1_000,
            },
            actor: format!("intake:{}", c.hotline),
        };
        assert_eq!(store.submit(&ticket, c.at).unwrap(), (i as i64 + 1, true));
    }
    let at = |n: i64| DAY2 + n * MINUTE;
    let t1 = store
        .lease("dispatch.police", "110-desk-1", at(2), 5 * MINUTE)
        .unwrap()
        .unwrap();
    assert_eq!(t1.id, 1);
    store.ack(1, "110-desk-1", at(3)).unwrap();
    let t2 = store
        .lease("township.330483100", "wuzhen-team", at(4), 5 * MINUTE)
        .unwrap()
        .unwrap();
    assert_eq!(t2.id, 2);
    store
        .nack(2, "wuzhen-team", "a shop's opening hours, not ours", at(5))
        .unwrap();
    let reroute = |id, queue, destination, township, reason, actor, when| {
        store
            .reroute(
                id,
                &Reroute {
                    queue,
                    destination,
                    township,
                    reason,
                    actor,
                },
                when,
            )
            .unwrap();
    };
    reroute(
        2,
        "workorder.12345",
        "hotline_12345",
        None,
        "a work order for the market bureau",
        "supervisor-wang",
        at(6),
    );
    reroute(
        3,
        "dispatch.police",
        "police",
        Some("330483100"),
        "the dispute turned violent",
        "supervisor-li",
        at(7),
    );
    reroute(
        5,
        "township.330402011",
        "township",
        Some("330402011"),
        "a neighbours' quarrel, not a court case",
        "supervisor-wang",
        at(8),
    );
    let detail = json!({ "trigger": "reload", "old_version": VERSION, "new_version": "9b1e", "warnings": 0 });
    assert_eq!(
        store
            .audit_event(
                "rules_loaded",
                "system",
                Some("9b1e"),
                &detail.to_string(),
                at(9)
            )
            .unwrap(),
        13
    );
    dir
}

fn data(dir: &TempDir) -> &str {
    dir.path().to_str().unwrap()
}

/// Runs `minsheng audit <args…> --data DIR`.
fn audit(dir: &TempDir, args: &[&str]) -> std::process::Output {
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--data", data(dir)]);
    minsheng(&all)
}

/// The records of `audit query <filters…> --format json`.
fn query_json(dir: &TempDir, filters: &[&str]) -> Vec<Value> {
    let mut args = vec!["query", "--format", "json"];
    args.extend_from_slice(filters);
    let out = audit(dir, &args);
    assert!(out.status.success(), "{filters:?}: {}", stderr(&out));
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn seqs(dir: &TempDir, filters: &[&str]) -> Vec<i64> {
    query_json(dir, filters)
        .iter()
        .map(|r| r["seq"].as_i64().unwrap())
        .collect()
}

fn head_hash(path: &Path) -> String {
    let store = Store::open_read_only(&path.join("tickets.db")).unwrap();
    let mut head = String::new();
    store
        .audit_query(&Filter::default(), |r| {
            head = r.hash;
            true
        })
        .unwrap();
    head
}

#[test]
fn verify_reports_an_intact_chain_with_its_head() {
    let dir = build_log();
    let out = audit(&dir, &["verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "audit log intact: 13 records, head {}\n",
            head_hash(dir.path())
        )
    );
}

#[test]
fn verify_names_an_edited_record_and_exits_1() {
    let dir = build_log();
    let conn = rusqlite::Connection::open(dir.path().join("tickets.db")).unwrap();
    conn.execute("UPDATE audit SET actor = 'x' WHERE seq = 5", [])
        .unwrap();
    drop(conn);
    let out = audit(&dir, &["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("audit log broken at record 5: "), "{text}");
    assert!(text.contains("edited"), "{text}");
}

#[test]
fn verify_notices_records_cut_off_the_end() {
    let dir = build_log();
    let conn = rusqlite::Connection::open(dir.path().join("tickets.db")).unwrap();
    conn.execute("DELETE FROM audit WHERE seq >= 12", [])
        .unwrap();
    drop(conn);
    let out = audit(&dir, &["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("audit log broken at record 12: "),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_missing_database_is_an_error_naming_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing");
    for sub in ["verify", "query", "stats"] {
        let out = minsheng(&["audit", sub, "--data", missing.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{sub}");
        let err = stderr(&out);
        let path = missing.join("tickets.db");
        assert!(err.contains(path.to_str().unwrap()), "{sub}: {err}");
    }
    assert!(!missing.exists(), "nothing is created");
}

#[test]
fn query_filters_return_exactly_the_matching_records() {
    let dir = build_log();
    assert_eq!(seqs(&dir, &[]), (1..=13).collect::<Vec<_>>());
    assert_eq!(seqs(&dir, &["--kind", "rerouted"]), [10, 11, 12]);
    assert_eq!(seqs(&dir, &["--kind", "nacked"]), [9]);
    assert_eq!(seqs(&dir, &["--rule", "township.noise"]), [2, 3]);
    assert_eq!(seqs(&dir, &["--rule", "township"]), Vec::<i64>::new());
    assert_eq!(seqs(&dir, &["--township", "330483100"]), [2, 3, 8, 9, 11]);
    assert_eq!(seqs(&dir, &["--ticket", "2"]), [2, 8, 9, 10]);
    assert_eq!(seqs(&dir, &["--call-id", "A-2"]), [3, 11]);
    assert_eq!(seqs(&dir, &["--destination", "police"]), [1, 6, 7, 11]);
    assert_eq!(seqs(&dir, &["--actor", "supervisor-wang"]), [10, 12]);
    assert_eq!(
        seqs(&dir, &["--kind", "rerouted", "--actor", "supervisor-li"]),
        [11]
    );
    assert_eq!(
        seqs(
            &dir,
            &["--from", "2026-11-29T08:01:00Z", "--to", "2026-11-30"]
        ),
        [2, 3]
    );
    // 16:05 in China is 08:05 UTC: the nack, and everything after it.
    assert_eq!(
        seqs(&dir, &["--from", "2026-11-30T16:05:00+08:00"]),
        [9, 10, 11, 12, 13]
    );
    assert_eq!(seqs(&dir, &["--to", "2026-11-29"]), Vec::<i64>::new());
}

#[test]
fn query_json_embeds_the_detail_as_json() {
    let dir = build_log();
    let records = query_json(&dir, &["--ticket", "2", "--kind", "rerouted"]);
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r["kind"], "rerouted");
    assert_eq!(r["actor"], "supervisor-wang");
    assert_eq!(r["ticket_id"], 2);
    assert_eq!(r["queue"], "workorder.12345");
    assert_eq!(r["detail"]["from"]["queue"], "township.330483100");
    assert_eq!(r["detail"]["reason"], "a work order for the market bureau");
    assert!(r.get("caller_number").is_none());
    let received = &query_json(&dir, &["--call-id", "B-1", "--kind", "received"])[0];
    assert_eq!(received["rules"], json!(["township.noise"]));
    assert_eq!(received["detail"]["transfer"]["label"], "12345→基层");
    assert_eq!(received["detail"]["call"]["caller_number"], "138****1111");
}

#[test]
fn query_a_bad_time_names_the_flag_and_the_value() {
    let dir = build_log();
    for (flag, value) in [
        ("--from", "yesterday"),
        ("--to", "2026-13-01"),
        ("--from", "2026-11-29T08:00:00"),
    ] {
        let out = audit(&dir, &["query", flag, value]);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let err = stderr(&out);
        assert!(
            err.contains(flag) && err.contains(value),
            "{flag} {value}: {err}"
        );
    }
}

#[test]
fn query_csv_has_its_header_and_a_row_per_record() {
    let dir = build_log();
    let out = audit(&dir, &["query", "--format", "csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        header,
        [
            "seq",
            "time",
            "kind",
            "actor",
            "ticket_id",
            "call_id",
            "hotline",
            "queue",
            "destination",
            "township",
            "rules",
            "rules_version",
            "detail",
            "hash"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 13);
    let third = &rows[2];
    assert_eq!(&third[0], "3");
    assert_eq!(&third[1], "2026-11-29T08:02:00.000Z");
    assert_eq!(&third[2], "received");
    assert_eq!(&third[10], "township.noise;township.dispute");
    let detail: Value = serde_json::from_str(&third[12]).unwrap();
    assert_eq!(detail["transfer"]["label"], "110→基层");
    assert_eq!(
        &rows[8][12],
        r#"{"reason":"a shop's opening hours, not ours"}"#
    );
    assert_eq!(third[13].len(), 64);
}

#[test]
fn query_table_is_one_readable_line_a_record() {
    let dir = build_log();
    let out = audit(&dir, &["query"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 14, "{text}");
    assert!(lines[0].starts_with("   SEQ  TIME"), "{text}");
    assert!(lines[0].contains("DESTINATION/QUEUE"), "{text}");
    assert!(
        lines[1].starts_with("     1  2026-11-29T08:00:00Z  received"),
        "{text}"
    );
    assert!(lines[1].contains("police/dispatch.police"), "{text}");
    assert!(lines[1].trim_end().ends_with("critical"), "{text}");
    assert!(
        lines[3].contains("township.noise,township.dispute"),
        "{text}"
    );
    assert!(lines[3].contains("110→基层"), "{text}");
    assert!(lines[4].trim_end().ends_with("needs review"), "{text}");
    assert!(
        lines[9]
            .trim_end()
            .ends_with("a shop's opening hours, not ours"),
        "{text}"
    );
    assert!(
        lines[10]
            .ends_with("township.330483100 → workorder.12345: a work order for the market bureau"),
        "{text}"
    );
}

#[test]
fn default_output_shows_caller_numbers_masked_only() {
    let dir = build_log();
    for format in ["table", "json", "csv"] {
        let out = audit(&dir, &["query", "--format", format]);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        for c in &CALLS {
            assert!(!text.contains(c.number), "{format} shows {}", c.number);
            if format != "table" {
                let masked = minsheng_core::mask_number(c.number);
                assert!(text.contains(&masked), "{format} lacks {masked}");
            }
        }
    }
    assert!(
        stdout(&audit(&dir, &["query", "--format", "json"])).contains("139****5678"),
        "the first caller, masked"
    );
}

#[test]
fn show_numbers_shows_them_whole_and_is_recorded_first() {
    let dir = build_log();
    let records = query_json(
        &dir,
        &["--ticket", "2", "--show-numbers", "--as", "inspector-1"],
    );
    assert_eq!(records.len(), 4);
    for r in &records {
        assert_eq!(r["caller_number"], "13800001111", "{r}");
    }
    let shown = query_json(&dir, &["--kind", "numbers_shown"]);
    assert_eq!(shown.len(), 1);
    let s = &shown[0];
    assert_eq!(s["seq"], 14);
    assert_eq!(s["actor"], "inspector-1");
    assert_eq!(s["detail"]["filter"], json!({ "ticket_id": 2 }));
    assert_eq!(s["detail"]["tickets"], json!([2]));
    assert_eq!(s["detail"]["records"], 4);
    assert_eq!(seqs(&dir, &["--actor", "inspector-1"]), [14]);

    // A table with numbers has its column; non-ticket records have none.
    let out = audit(
        &dir,
        &[
            "query",
            "--kind",
            "received",
            "--show-numbers",
            "--as",
            "inspector-2",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.lines().next().unwrap().contains("CALLER NUMBER"),
        "{text}"
    );
    for c in &CALLS {
        assert!(text.contains(c.number), "{text}");
    }

    let out = audit(&dir, &["verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).starts_with("audit log intact: 15 records, head "));
}

#[test]
fn show_numbers_needs_as_and_records_nothing_without_it() {
    let dir = build_log();
    let out = audit(&dir, &["query", "--show-numbers"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--as"), "{}", stderr(&out));
    assert!(!stdout(&out).contains("13912345678"));
    let out = audit(&dir, &["query", "--show-numbers", "--as", " "]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!stdout(&out).contains("13912345678"));
    let out = audit(&dir, &["verify"]);
    assert!(
        stdout(&out).starts_with("audit log intact: 13 records"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn stats_counts_calls_transfers_and_reroutes_per_rule() {
    let dir = build_log();
    let out = audit(&dir, &["stats", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["calls"], 5);
    assert_eq!(
        s["by_destination"],
        json!({ "police": 1, "township": 2, "hotline_12345": 1, "court": 1 })
    );
    assert_eq!(
        s["by_township"],
        json!({ "330402011": 2, "330483100": 2, "unassigned": 1 })
    );
    assert_eq!(s["by_hotline"], json!({ "110": 2, "12345": 2, "app": 1 }));
    assert_eq!(s["transfers"], json!({ "110→基层": 1, "12345→基层": 1 }));
    assert_eq!(s["no_rule"], 1);
    assert_eq!(s["needs_review"], 1);
    assert_eq!(s["reroutes"], 3);
    assert_eq!(s["rerouted_tickets"], 3);
    assert_eq!(
        s["reroutes_by_rule"],
        json!([
            { "rule": "township.noise", "tickets": 2 },
            { "rule": "court.divorce", "tickets": 1 },
            { "rule": "township.dispute", "tickets": 1 },
        ])
    );

    // The second day: two calls, and the three reroutes, charged to the
    // rules of calls received the day before.
    let out = audit(&dir, &["stats", "--format", "json", "--from", "2026-11-30"]);
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["calls"], 2);
    assert_eq!(
        s["by_destination"],
        json!({ "hotline_12345": 1, "court": 1 })
    );
    assert_eq!(s["transfers"], json!({}));
    assert_eq!(s["no_rule"], 1);
    assert_eq!(s["reroutes"], 3);
    assert_eq!(
        s["reroutes_by_rule"][0],
        json!({ "rule": "township.noise", "tickets": 2 })
    );
}

#[test]
fn stats_table_has_a_section_per_count() {
    let dir = build_log();
    let out = audit(
        &dir,
        &["stats", "--from", "2026-11-01", "--to", "2026-12-01"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("audit log from 2026-11-01T00:00:00Z to 2026-12-01T00:00:00Z\n"),
        "{text}"
    );
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix}:\n{text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(line("calls  "), ["calls", "5"]);
    assert_eq!(line("matched no rule"), ["matched", "no", "rule", "1"]);
    assert_eq!(line("reroutes  "), ["reroutes", "3", "(3", "tickets)"]);
    assert_eq!(line("township.noise"), ["township.noise", "2"]);
    assert_eq!(line("110→基层"), ["110→基层", "1"]);
    assert_eq!(line("unassigned"), ["unassigned", "1"]);
    for heading in [
        "\ncalls per destination\n",
        "\ncalls per township\n",
        "\ncalls per hotline\n",
        "\ntransfers between hotlines\n",
        "\nreroutes per rule",
    ] {
        assert!(text.contains(heading), "{heading}: {text}");
    }
}

#[test]
fn after_a_prune_the_log_verifies_and_stats_say_which_calls_are_gone() {
    let dir = build_log();
    // The first day's calls (records 1–3) are older than the retention,
    // and handled (a prune keeps the records of every open ticket).
    let store = Store::open(&dir.path().join("tickets.db")).unwrap();
    for (queue, id) in [("workorder.12345", 2), ("dispatch.police", 3)] {
        let t = store
            .lease(queue, "desk", DAY2 + 20 * MINUTE, 5 * MINUTE)
            .unwrap()
            .unwrap();
        assert_eq!(t.id, id);
        store.ack(id, "desk", DAY2 + 21 * MINUTE).unwrap();
    }
    let now = DAY2 - 60 * MINUTE + i64::from(minsheng_store::MIN_RETENTION_DAYS) * 86_400_000;
    assert_eq!(
        store
            .audit_prune(minsheng_store::MIN_RETENTION_DAYS, "archivist", now)
            .unwrap(),
        3
    );
    drop(store);
    let out = audit(&dir, &["verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).starts_with("audit log intact: 15 records, head "),
        "{}",
        stdout(&out)
    );
    let out = audit(&dir, &["query", "--kind", "pruned"]);
    let text = stdout(&out);
    assert!(
        text.lines()
            .nth(1)
            .unwrap()
            .ends_with("3 record(s) through 3 removed, the chain starts after it"),
        "{text}"
    );
    let out = audit(&dir, &["stats", "--format", "json"]);
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["calls"], 2);
    assert_eq!(s["reroutes"], 3);
    assert_eq!(
        s["reroutes_by_rule"],
        json!([{ "rule": "court.divorce", "tickets": 1 }])
    );
    assert_eq!(s["rerouted_call_pruned"], 2);
}

#[test]
fn prune_keeps_at_least_180_days_and_removes_nothing_newer() {
    let dir = build_log();
    let out = audit(&dir, &["prune", "--keep-days", "30", "--as", "archivist"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("at least 180 days, not 30"),
        "{}",
        stderr(&out)
    );
    // This log is from the last days: a prune keeping 180 days removes
    // none of it, and the chain still verifies.
    let before = seqs(&dir, &[]);
    let out = audit(&dir, &["prune", "--as", "archivist"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "removed 0 audit record(s) older than 180 days\n"
    );
    assert_eq!(seqs(&dir, &[]), before);
    assert_eq!(audit(&dir, &["verify"]).status.code(), Some(0));
}
