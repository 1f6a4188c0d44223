//! The audit chain: a long mixed run verifies, and editing, deleting,
//! inserting or swapping any single record, directly in the database, is
//! reported at that record. Each holds for every backend (`sqlite::…`,
//! `postgres::…`), and both backends write the same chain.

#[macro_use]
mod common;

use common::{Backend, Db, submit};
use minsheng_store::audit::{self, AuditRecord};
use minsheng_store::{CallRecord, Filter, NewTicket, Reroute, TicketStore, Verified};

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

/// A long mixed history; returns how many records it holds.
fn long_run(s: &dyn TicketStore) -> i64 {
    let mut now = 1_000;
    for i in 0..60 {
        now += 10;
        let queue = match i % 3 {
            0 => "police",
            1 => "township.330402008",
            _ => "workorder",
        };
        let rule = format!("rule.{}", i % 5);
        let (id, _) = submit(s, &call(&format!("c{i}"), queue, &rule), now);
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
    records
}

/// A database with a long mixed history, and how many records it holds.
fn long_run_db(b: &Backend) -> (Db, i64) {
    let db = b.fresh();
    let records = long_run(&*db.open());
    (db, records)
}

/// Where a store opened anew finds the chain broken.
fn broken(db: &Db) -> (i64, String) {
    match db.open().audit_verify().unwrap() {
        Verified::Broken { seq, problem } => (seq, problem),
        other => panic!("tampering went unnoticed: {other:?}"),
    }
}

fn all(s: &dyn TicketStore, f: &Filter) -> Vec<AuditRecord> {
    let mut out = Vec::new();
    s.audit_query(f, &mut |r| {
        out.push(r);
        true
    })
    .unwrap();
    out
}

fn record(s: &dyn TicketStore, seq: i64) -> AuditRecord {
    let mut found = None;
    s.audit_query(&Filter::default(), &mut |r| {
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

on_every_backend!(
    a_long_mixed_run_verifies,
    an_edited_record_is_found,
    a_deleted_record_is_found_in_the_middle_and_at_the_end,
    an_inserted_record_is_found,
    swapped_records_are_found,
    queries_return_exactly_the_matching_records,
    a_query_stops_when_asked,
    a_prune_keeps_the_chain_verifiable_and_is_recorded,
);

fn a_long_mixed_run_verifies(b: &Backend) {
    let (_db, records) = long_run_db(b);
    // 60 received, 15 rerouted, deliveries, acks and nacks, one reload.
    assert!(records > 150, "{records}");
}

fn an_edited_record_is_found(b: &Backend) {
    for seq in [1, 77] {
        let (db, _) = long_run_db(b);
        db.tamper(&format!(
            "UPDATE audit SET actor = 'someone-else' WHERE seq = {seq}"
        ));
        let (at, problem) = broken(&db);
        assert_eq!(at, seq);
        assert!(problem.contains("edited"), "{problem}");
    }
}

fn a_deleted_record_is_found_in_the_middle_and_at_the_end(b: &Backend) {
    let (db, records) = long_run_db(b);
    db.tamper("DELETE FROM audit WHERE seq = 40");
    let (at, problem) = broken(&db);
    assert_eq!(at, 40);
    assert!(problem.contains("missing"), "{problem}");

    let (db, _) = long_run_db(b);
    db.tamper(&format!("DELETE FROM audit WHERE seq = {records}"));
    let (at, problem) = broken(&db);
    assert_eq!(at, records);
    assert!(problem.contains("cut off"), "{problem}");
}

fn an_inserted_record_is_found(b: &Backend) {
    let (db, _) = long_run_db(b);
    // Make room at 50 and insert a well-formed record there, linked to 49
    // and correctly hashed: the record after it no longer links.
    let before = record(&*db.open(), 49);
    db.tamper(
        "UPDATE audit SET seq = -seq WHERE seq >= 50;
         UPDATE audit SET seq = 1 - seq WHERE seq < 0;",
    );
    let mut forged = before.clone();
    forged.seq = 50;
    forged.actor = "forger".into();
    forged.prev_hash = before.hash.clone();
    forged.hash = audit::hash(&forged);
    db.tamper(&format!(
        "INSERT INTO audit (seq, at, kind, actor, ticket_id, call_id, hotline, queue, destination, township, rules, rules_version, detail, prev_hash, hash)
         SELECT 50, at, kind, 'forger', ticket_id, call_id, hotline, queue, destination, township, rules, rules_version, detail, '{}', '{}' FROM audit WHERE seq = 49",
        forged.prev_hash, forged.hash,
    ));
    assert_eq!(
        record(&*db.open(), 50),
        forged,
        "the forgery is well formed"
    );
    let (at, problem) = broken(&db);
    assert_eq!(at, 51, "{problem}");
    assert!(problem.contains("link"), "{problem}");
}

fn swapped_records_are_found(b: &Backend) {
    let (db, _) = long_run_db(b);
    db.tamper(
        "UPDATE audit SET seq = -1 WHERE seq = 30;
         UPDATE audit SET seq = 30 WHERE seq = 31;
         UPDATE audit SET seq = 31 WHERE seq = -1;",
    );
    let (at, _) = broken(&db);
    assert_eq!(at, 30);
}

fn queries_return_exactly_the_matching_records(b: &Backend) {
    let (db, _) = long_run_db(b);
    let s = &*db.open();
    let everything = all(s, &Filter::default());
    let check = |f: Filter, keep: &dyn Fn(&AuditRecord) -> bool| {
        let got: Vec<i64> = all(s, &f).iter().map(|r| r.seq).collect();
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
        all(
            s,
            &Filter {
                rule: Some("rule.".into()),
                ..Default::default()
            }
        )
        .is_empty()
    );
    // Nor in another case, nor as a pattern.
    for other in ["RULE.1", "rule_1", "rule%"] {
        let f = Filter {
            rule: Some(other.into()),
            ..Default::default()
        };
        assert!(all(s, &f).is_empty(), "{other}");
    }
}

/// A query hands over records until told to stop, across the pages a
/// backend may fetch them in.
fn a_query_stops_when_asked(b: &Backend) {
    let db = b.fresh();
    let s = &*db.open();
    for i in 0..600 {
        s.audit_event("numbers_shown", "auditor", None, "{}", i)
            .unwrap();
    }
    for stop_after in [1, 513, 600] {
        let mut seen = Vec::new();
        s.audit_query(&Filter::default(), &mut |r| {
            seen.push(r.seq);
            seen.len() < stop_after
        })
        .unwrap();
        assert_eq!(seen, (1..=stop_after as i64).collect::<Vec<_>>());
    }
    assert!(matches!(
        s.audit_verify().unwrap(),
        Verified::Intact { records: 600, .. }
    ));
}

fn a_prune_keeps_the_chain_verifiable_and_is_recorded(b: &Backend) {
    let db = b.fresh();
    let s = &*db.open();
    let day = 86_400_000;
    let mut ids = Vec::new();
    for (i, at) in [(0, 0), (1, day), (2, 200 * day), (3, 201 * day)] {
        ids.push(submit(s, &call(&format!("p{i}"), "police", "r"), at).0);
    }
    // The first call is handled; the second is still open.
    let t = s.lease("police", "team", day + 10, 1_000).unwrap().unwrap();
    assert_eq!(t.id, ids[0]);
    s.ack(t.id, "team", day + 11).unwrap();
    assert!(
        matches!(s.audit_prune(30, "archivist", 201 * day), Err(e) if e.to_string().contains("at least 180 days")),
        "a retention under the floor is refused"
    );
    // Kept 180 days back from day 201, but the open ticket of day 1 keeps
    // its records (and so every later one): only the first record goes.
    assert_eq!(s.audit_prune(180, "archivist", 201 * day).unwrap(), 1);
    let Verified::Intact { records, .. } = s.audit_verify().unwrap() else {
        panic!("a pruned chain still verifies");
    };
    assert_eq!(records, 6, "five kept, and the record of the prune");
    let (open, _) = s.get(ids[1]).unwrap();
    assert!(open.decision.contains("\"p1\""), "{}", open.decision);
    // The handled ticket whose record went is still there, its decision
    // gone with the record.
    assert_eq!(s.get(ids[0]).unwrap().0.decision, "{}");
    let pruned = all(
        s,
        &Filter {
            kind: Some("pruned".into()),
            ..Default::default()
        },
    );
    assert_eq!(pruned[0].actor, "archivist");
    assert!(
        pruned[0].detail.contains("\"records\":1"),
        "{}",
        pruned[0].detail
    );
    // Nothing older than the retention is left: nothing more to prune.
    assert_eq!(s.audit_prune(180, "archivist", 201 * day).unwrap(), 0);
    // Tampering after a prune is still found.
    db.tamper("DELETE FROM audit WHERE seq = 3");
    assert_eq!(broken(&db).0, 3);
}

/// The same history written to SQLite and to PostgreSQL is the same chain,
/// record for record and hash for hash, before and after a prune.
#[test]
fn both_backends_write_the_same_chain() {
    let Some(pg) = Backend::postgres("both_backends_write_the_same_chain") else {
        return;
    };
    let dbs = [Backend::Sqlite.fresh(), pg.fresh()];
    let stores = dbs.each_ref().map(|db| db.open());
    let chains = stores.each_ref().map(|s| {
        long_run(&**s);
        all(&**s, &Filter::default())
    });
    assert!(chains[0].len() > 150);
    assert_eq!(chains[0], chains[1]);
    let day = 86_400_000;
    let pruned = stores.each_ref().map(|s| {
        s.audit_prune(180, "archivist", 1_000 + 180 * day + 1_200)
            .unwrap();
        (s.audit_verify().unwrap(), all(&**s, &Filter::default()))
    });
    assert!(
        pruned[0].1.len() < chains[0].len(),
        "a prune removed records"
    );
    assert_eq!(pruned[0], pruned[1]);
}
