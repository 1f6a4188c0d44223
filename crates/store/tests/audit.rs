//! The audit chain: a long mixed run verifies, and editing, deleting,
//! inserting or swapping any single record, directly in the database, is
//! reported at that record.

use minsheng_store::audit::{self, AuditRecord};
use minsheng_store::{CallRecord, Filter, NewTicket, Reroute, Store, Verified};
use rusqlite::{Connection, params};

fn call(id: &str, queue: &str, rule: &str) -> NewTicket {
    NewTicket {
        hotline: "110".into(),
        call_id: id.into(),
        queue: queue.into(),
        destination: queue.split('.').next().unwrap().into(),
        township: queue.strip_prefix("township.").map(str::to_owned),
        urgency: 1,
        decision: format!("{{\"id\":\"{id}\"}}"),
        rules: vec![rule.into()],
        rules_version: "v1".into(),
        call: CallRecord {
            caller_number: "13912345678".into(),
            text: format!("call {id}"),
            ..Default::default()
        },
        actor: "intake:110".into(),
    }
}

/// A store with a long mixed history; returns its path's directory and
/// how many records it holds.
fn long_run() -> (tempfile::TempDir, i64) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("t.db")).unwrap();
    let mut now = 1_000;
    for i in 0..60 {
        now += 10;
        let queue = match i % 3 {
            0 => "police",
            1 => "township.330402008",
            _ => "workorder",
        };
        let rule = format!("rule.{}", i % 5);
        let (id, _) = s
            .submit(&call(&format!("c{i}"), queue, &rule), now)
            .unwrap();
        if i % 4 == 0 {
            s.reroute(
                id,
                &Reroute {
                    queue: "court",
                    destination: "court",
                    township: None,
                    reason: "wants to sue",
                    actor: "operator-2",
                },
                now + 1,
            )
            .unwrap();
        }
    }
    for queue in ["police", "township.330402008", "workorder", "court"] {
        while let Some(t) = s.lease(queue, "team", now, 100).unwrap() {
            now += 1;
            if t.id % 2 == 0 {
                s.ack(t.id, "team", now).unwrap();
            } else {
                s.nack(t.id, "team", "busy", now).unwrap();
                let again = s.lease(queue, "team", now, 100).unwrap().unwrap();
                s.ack(again.id, "team", now + 1).unwrap();
            }
        }
    }
    s.audit_event("rules_loaded", "Rules.Reload", Some("v2"), "{}", now)
        .unwrap();
    let Verified::Intact { records, .. } = s.audit_verify().unwrap() else {
        panic!("a run without tampering verifies");
    };
    (dir, records)
}

fn broken(dir: &tempfile::TempDir) -> (i64, String) {
    match Store::open(&dir.path().join("t.db"))
        .unwrap()
        .audit_verify()
        .unwrap()
    {
        Verified::Broken { seq, problem } => (seq, problem),
        other => panic!("tampering went unnoticed: {other:?}"),
    }
}

fn raw(dir: &tempfile::TempDir) -> Connection {
    Connection::open(dir.path().join("t.db")).unwrap()
}

fn record(c: &Connection, seq: i64) -> AuditRecord {
    let mut found = None;
    let s = Store::open(&std::path::PathBuf::from(c.path().unwrap())).unwrap();
    s.audit_query(&Filter::default(), |r| {
        if r.seq == seq {
            found = Some(r);
            false
        } else {
            true
        }
    })
    .unwrap();
    found.unwrap()
}

#[test]
fn a_long_mixed_run_verifies() {
    let (_dir, records) = long_run();
    // 60 received, 15 rerouted, deliveries, acks and nacks, one reload.
    assert!(records > 150, "{records}");
}

#[test]
fn an_edited_record_is_found() {
    for seq in [1, 77] {
        let (dir, _) = long_run();
        raw(&dir)
            .execute(
                "UPDATE audit SET actor = 'someone-else' WHERE seq = ?1",
                params![seq],
            )
            .unwrap();
        let (at, problem) = broken(&dir);
        assert_eq!(at, seq);
        assert!(problem.contains("edited"), "{problem}");
    }
}

#[test]
fn a_deleted_record_is_found_in_the_middle_and_at_the_end() {
    let (dir, records) = long_run();
    raw(&dir)
        .execute("DELETE FROM audit WHERE seq = 40", [])
        .unwrap();
    let (at, problem) = broken(&dir);
    assert_eq!(at, 40);
    assert!(problem.contains("missing"), "{problem}");

    let (dir, _) = long_run();
    raw(&dir)
        .execute("DELETE FROM audit WHERE seq = ?1", params![records])
        .unwrap();
    let (at, problem) = broken(&dir);
    assert_eq!(at, records);
    assert!(problem.contains("cut off"), "{problem}");
}

#[test]
fn an_inserted_record_is_found() {
    let (dir, _) = long_run();
    let c = raw(&dir);
    // Make room at 50 and insert a well-formed record there, linked to 49
    // and correctly hashed: the record after it no longer links.
    let before = record(&c, 49);
    c.execute_batch(
        "UPDATE audit SET seq = -seq WHERE seq >= 50;
         UPDATE audit SET seq = 1 - seq WHERE seq < 0;",
    )
    .unwrap();
    let mut forged = before.clone();
    forged.seq = 50;
    forged.actor = "forger".into();
    forged.prev_hash = before.hash.clone();
    forged.hash = audit::hash(&forged);
    c.execute(
        "INSERT INTO audit (seq, at, kind, actor, ticket_id, call_id, hotline, queue, destination, township, rules, rules_version, detail, prev_hash, hash)
         SELECT 50, at, kind, 'forger', ticket_id, call_id, hotline, queue, destination, township, rules, rules_version, detail, ?1, ?2 FROM audit WHERE seq = 49",
        params![forged.prev_hash, forged.hash],
    )
    .unwrap();
    let (at, problem) = broken(&dir);
    assert_eq!(at, 51, "{problem}");
    assert!(problem.contains("link"), "{problem}");
}

#[test]
fn swapped_records_are_found() {
    let (dir, _) = long_run();
    let c = raw(&dir);
    c.execute_batch(
        "UPDATE audit SET seq = -1 WHERE seq = 30;
         UPDATE audit SET seq = 30 WHERE seq = 31;
         UPDATE audit SET seq = 31 WHERE seq = -1;",
    )
    .unwrap();
    let (at, _) = broken(&dir);
    assert_eq!(at, 30);
}

#[test]
fn queries_return_exactly_the_matching_records() {
    let (dir, _) = long_run();
    let s = Store::open(&dir.path().join("t.db")).unwrap();
    let all = |f: Filter| {
        let mut out = Vec::new();
        s.audit_query(&f, |r| {
            out.push(r);
            true
        })
        .unwrap();
        out
    };
    let everything = all(Filter::default());
    let check = |f: Filter, keep: &dyn Fn(&AuditRecord) -> bool| {
        let got: Vec<i64> = all(f.clone()).iter().map(|r| r.seq).collect();
        let want: Vec<i64> = everything
            .iter()
            .filter(|r| keep(r))
            .map(|r| r.seq)
            .collect();
        assert!(!want.is_empty(), "{f:?} matches something");
        assert_eq!(got, want, "{f:?}");
    };
    check(
        Filter {
            kind: Some("rerouted".into()),
            ..Default::default()
        },
        &|r| r.kind == "rerouted",
    );
    check(
        Filter {
            rule: Some("rule.1".into()),
            ..Default::default()
        },
        &|r| r.rules.iter().any(|x| x == "rule.1"),
    );
    check(
        Filter {
            call_id: Some("c7".into()),
            ..Default::default()
        },
        &|r| r.call_id.as_deref() == Some("c7"),
    );
    check(
        Filter {
            township: Some("330402008".into()),
            actor: Some("team".into()),
            ..Default::default()
        },
        &|r| r.township.as_deref() == Some("330402008") && r.actor == "team",
    );
    check(
        Filter {
            from: Some(1_100),
            to: Some(1_300),
            destination: Some("police".into()),
            ..Default::default()
        },
        &|r| (1_100..1_300).contains(&r.at) && r.destination.as_deref() == Some("police"),
    );
    check(
        Filter {
            ticket_id: Some(3),
            ..Default::default()
        },
        &|r| r.ticket_id == Some(3),
    );
    // "rule.1" is not "rule.10": ids match whole.
    assert!(
        all(Filter {
            rule: Some("rule.".into()),
            ..Default::default()
        })
        .is_empty()
    );
}

#[test]
fn a_prune_keeps_the_chain_verifiable_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("t.db")).unwrap();
    let day = 86_400_000;
    for (i, at) in [(0, 0), (1, day), (2, 200 * day), (3, 201 * day)] {
        s.submit(&call(&format!("p{i}"), "police", "r"), at)
            .unwrap();
    }
    assert!(
        matches!(s.audit_prune(30, "archivist", 201 * day), Err(e) if e.to_string().contains("at least 180 days")),
        "a retention under the floor is refused"
    );
    // Kept 180 days back from day 201: the records of day 0 and 1 go.
    assert_eq!(s.audit_prune(180, "archivist", 201 * day).unwrap(), 2);
    let Verified::Intact { records, .. } = s.audit_verify().unwrap() else {
        panic!("a pruned chain still verifies");
    };
    assert_eq!(records, 3, "two kept, and the record of the prune");
    let mut pruned = Vec::new();
    s.audit_query(
        &Filter {
            kind: Some("pruned".into()),
            ..Default::default()
        },
        |r| {
            pruned.push(r);
            true
        },
    )
    .unwrap();
    assert_eq!(pruned[0].actor, "archivist");
    assert!(
        pruned[0].detail.contains("\"records\":2"),
        "{}",
        pruned[0].detail
    );
    // Tampering after a prune is still found.
    raw(&dir)
        .execute("DELETE FROM audit WHERE seq = 3", [])
        .unwrap();
    assert_eq!(broken(&dir).0, 3);
}
