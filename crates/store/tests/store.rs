//! The ticket store's promises: one ticket per call, most urgent then
//! oldest first, at-least-once delivery through leases, acknowledgement,
//! reroute with its history, and durability across a reopen. Each holds
//! for every backend (`sqlite::…`, `postgres::…`), and for several nodes
//! on one database; a few tests are of one backend's own means.

#[macro_use]
mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Backend, depth, submit};
use minsheng_store::{
    CallRecord, Delivered, NewTicket, PgStore, Reroute, Store, StoreError, Taken, TicketState,
    TicketStore, Verified,
};

fn call(id: &str, queue: &str, urgency: i64) -> NewTicket {
    NewTicket {
        hotline: "110".into(),
        call_id: id.into(),
        queue: queue.into(),
        destination: queue.split('.').next().unwrap().into(),
        township: None,
        urgency,
        decision: format!("{{\"id\":\"{id}\"}}"),
        rules: vec!["police.weapon".into()],
        rules_version: "v1".into(),
        call: CallRecord {
            caller_number: "13812345678".into(),
            text: format!("call {id}"),
            location: String::new(),
            call_taker: "taker-1".into(),
            received_at: 1,
        },
        actor: "intake".into(),
    }
}

on_every_backend!(
    the_same_call_twice_is_one_ticket,
    the_most_urgent_then_the_oldest_is_delivered_first,
    an_unacknowledged_lease_comes_back_and_an_ack_ends_it,
    an_ack_after_the_lease_ended_is_refused,
    a_nack_gives_the_ticket_back_at_once,
    a_reroute_moves_the_ticket_and_records_who_and_why,
    accepted_tickets_survive_a_reopen,
    a_batch_commits_together_and_dedups_within_itself,
    a_lease_records_the_consumer_that_saw_the_number,
    two_nodes_share_one_queue_and_one_chain,
);

fn the_same_call_twice_is_one_ticket(b: &Backend) {
    let db = b.fresh();
    let s = &*db.open();
    let (a, new_a) = submit(s, &call("c1", "police", 2), 10);
    let (b, new_b) = submit(s, &call("c1", "police", 2), 20);
    assert_eq!((a, new_a, new_b), (b, true, false));
    let other_hotline = NewTicket {
        hotline: "12345".into(),
        ..call("c1", "police", 2)
    };
    assert_ne!(
        submit(s, &other_hotline, 30).0,
        a,
        "call ids are per hotline"
    );
    assert_eq!(depth(s, "police"), 2);
}

fn the_most_urgent_then_the_oldest_is_delivered_first(b: &Backend) {
    let db = b.fresh();
    let s = &*db.open();
    let (old_routine, _) = submit(s, &call("a", "q", 0), 1);
    let (critical, _) = submit(s, &call("b", "q", 3), 2);
    let (new_routine, _) = submit(s, &call("c", "q", 0), 3);
    let order: Vec<i64> = (0..3)
        .map(|i| {
            s.lease("q", "consumer-1", 10 + i, 1_000)
                .unwrap()
                .unwrap()
                .id
        })
        .collect();
    assert_eq!(order, [critical, old_routine, new_routine]);
    assert!(
        s.lease("q", "consumer-1", 20, 1_000).unwrap().is_none(),
        "everything is leased"
    );
    assert!(
        s.lease("other", "consumer-1", 20, 1_000).unwrap().is_none(),
        "queues are separate"
    );
}

fn an_unacknowledged_lease_comes_back_and_an_ack_ends_it(b: &Backend) {
    let db = b.fresh();
    let s = &*db.open();
    let (id, _) = submit(s, &call("a", "q", 1), 0);
    let first = s.lease("q", "consumer-1", 100, 1_000).unwrap().unwrap();
    assert_eq!(
        (first.id, first.deliveries, first.lease_until),
        (id, 1, Some(1_100))
    );
    assert!(
        s.lease("q", "consumer-1", 1_099, 1_000).unwrap().is_none(),
        "still leased"
    );
    let again = s.lease("q", "consumer-1", 1_100, 1_000).unwrap().unwrap();
    assert_eq!(
        (again.id, again.deliveries),
        (id, 2),
        "redelivered when the lease ends"
    );
    s.ack(id, "110-dispatch", 1_500).unwrap();
    assert!(
        s.lease("q", "consumer-1", 10_000, 1_000).unwrap().is_none(),
        "an acked ticket is never delivered again"
    );
    assert_eq!(depth(s, "q"), 0);
    let (t, history) = s.get(id).unwrap();
    assert_eq!(t.state, TicketState::Acked);
    let events: Vec<&str> = history.iter().map(|h| h.event.as_str()).collect();
    assert_eq!(
        events,
        ["received", "delivered", "expired", "delivered", "acked"]
    );
}

fn an_ack_after_the_lease_ended_is_refused(b: &Backend) {
    let db = b.fresh();
    let s = &*db.open();
    let (id, _) = submit(s, &call("a", "q", 1), 0);
    s.lease("q", "consumer-1", 0, 100).unwrap().unwrap();
    assert!(matches!(s.ack(id, "late", 100), Err(StoreError::NotLeased(t)) if t == id));
    assert!(matches!(
        s.nack(id, "late", "too late", 100),
        Err(StoreError::NotLeased(t)) if t == id
    ));
    assert!(matches!(s.ack(999, "x", 0), Err(StoreError::NoTicket(999))));
    assert!(matches!(s.get(999), Err(StoreError::NoTicket(999))));
    assert_eq!(s.caller_number(999).unwrap(), None);
    assert_eq!(s.caller_number(id).unwrap().as_deref(), Some("13812345678"));
}

fn a_nack_gives_the_ticket_back_at_once(b: &Backend) {
    let db = b.fresh();
    let s = &*db.open();
    let (id, _) = submit(s, &call("a", "q", 1), 0);
    s.lease("q", "consumer-1", 10, 60_000).unwrap().unwrap();
    s.nack(id, "township-team", "team busy", 20).unwrap();
    let again = s.lease("q", "consumer-1", 30, 60_000).unwrap().unwrap();
    assert_eq!((again.id, again.deliveries), (id, 2));
    let (_, history) = s.get(id).unwrap();
    let nack = history.iter().find(|h| h.event == "nacked").unwrap();
    assert_eq!(
        (nack.actor.as_str(), nack.detail.as_str()),
        ("township-team", r#"{"reason":"team busy"}"#)
    );
}

fn a_reroute_moves_the_ticket_and_records_who_and_why(b: &Backend) {
    let db = b.fresh();
    let s = &*db.open();
    let (id, _) = submit(s, &call("a", "workorder.12345", 0), 0);
    let to = Reroute {
        queue: "township.330402011",
        destination: "township",
        township: Some("330402011"),
        reason: "still happening now",
        actor: "operator-7",
    };
    s.reroute(id, &to, 50).unwrap();
    assert!(
        s.lease("workorder.12345", "consumer-1", 60, 1_000)
            .unwrap()
            .is_none()
    );
    let t = s
        .lease("township.330402011", "consumer-1", 60, 1_000)
        .unwrap()
        .unwrap();
    assert_eq!(
        (t.id, t.destination.as_str(), t.township.as_deref()),
        (id, "township", Some("330402011"))
    );
    let (_, history) = s.get(id).unwrap();
    let reroute = history.iter().find(|h| h.event == "rerouted").unwrap();
    assert_eq!(
        (reroute.actor.as_str(), reroute.detail.as_str()),
        (
            "operator-7",
            concat!(
                r#"{"from":{"destination":"workorder","queue":"workorder.12345","township":null},"#,
                r#""reason":"still happening now","to":{"destination":"township","queue":"township.330402011","township":"330402011"}}"#
            )
        )
    );
    assert!(matches!(
        s.reroute(42, &to, 0),
        Err(StoreError::NoTicket(42))
    ));
}

fn accepted_tickets_survive_a_reopen(b: &Backend) {
    let db = b.fresh();
    let id = {
        let s = db.open();
        let (id, _) = submit(&*s, &call("a", "police", 3), 5);
        s.lease("police", "consumer-1", 6, 10).unwrap().unwrap();
        id
    };
    let s = &*db.open();
    let (t, _) = s.get(id).unwrap();
    assert_eq!(t.call_id, "a");
    assert!(
        t.decision.ends_with(",\"id\":\"a\"}")
            && t.decision.contains("\"caller_number\":\"138****5678\""),
        "the decision, with the call and its number masked: {}",
        t.decision
    );
    let again = s.lease("police", "consumer-1", 100, 10).unwrap().unwrap();
    assert_eq!(
        again.id, id,
        "a lease that ended while the process was down is delivered again"
    );
    assert_eq!(
        submit(s, &call("a", "police", 3), 200),
        (id, false),
        "still one ticket per call"
    );
}

fn a_batch_commits_together_and_dedups_within_itself(b: &Backend) {
    let db = b.fresh();
    let s = &*db.open();
    let (first, _) = submit(s, &call("old", "police", 1), 1);
    let batch = [
        call("a", "police", 1),
        call("old", "police", 1),
        call("a", "police", 1),
        call("b", "court", 0),
    ];
    let r = s.submit_batch(&batch, 2).unwrap();
    assert_eq!(r[1], (first, false), "seen in an earlier commit");
    assert!(r[0].1 && !r[2].1 && r[3].1);
    assert_eq!(r[0].0, r[2].0, "seen earlier in the same batch");
    let (t, h) = s.get(r[3].0).unwrap();
    assert_eq!(t.call.text, "call b");
    assert_eq!(t.call.caller_number, "13812345678");
    assert_eq!(h.len(), 1);
    let stats = s.open_queues().unwrap();
    let queues: Vec<&str> = stats.iter().map(|q| q.queue.as_str()).collect();
    assert_eq!(queues, ["court", "police"]);
    let police = stats.iter().find(|q| q.queue == "police").unwrap();
    assert_eq!((police.depth, police.oldest_at), (2, 1));
    assert!(s.submit_batch(&[], 3).unwrap().is_empty());
}

fn a_lease_records_the_consumer_that_saw_the_number(b: &Backend) {
    let db = b.fresh();
    let s = &*db.open();
    let (id, _) = submit(s, &call("a", "police", 1), 1);
    s.lease("police", "110-dispatch-3", 2, 100)
        .unwrap()
        .unwrap();
    let (_, h) = s.get(id).unwrap();
    assert_eq!(h[1].event, "delivered");
    assert_eq!(h[1].actor, "110-dispatch-3");
    assert!(
        h[1].detail.contains("\"caller_number\":\"shown whole\""),
        "{}",
        h[1].detail
    );
}

/// Two nodes on one database, each from its own thread, submit and lease
/// at once; half the calls reach both. Every call is one ticket, every
/// ticket is leased exactly once while its lease lasts, and the audit log
/// is one valid chain.
fn two_nodes_share_one_queue_and_one_chain(b: &Backend) {
    let db = b.fresh();
    let nodes = [db.open(), db.open()];
    let results: Vec<(BTreeMap<String, i64>, Vec<i64>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = nodes
            .into_iter()
            .enumerate()
            .map(|(n, s)| {
                scope.spawn(move || {
                    let consumer = format!("node-{n}");
                    // Node 0 takes c0..c59, node 1 c30..c89.
                    let calls: Vec<NewTicket> = (n * 30..n * 30 + 60)
                        .map(|i| call(&format!("c{i}"), "police", (i % 4) as i64))
                        .collect();
                    let mut ids = BTreeMap::new();
                    let mut leased = Vec::new();
                    for chunk in calls.chunks(4) {
                        let r = s.submit_batch(chunk, 1_000).unwrap();
                        for (t, (id, _)) in chunk.iter().zip(r) {
                            ids.insert(t.call_id.clone(), id);
                        }
                        for _ in 0..3 {
                            if let Some(t) = s.lease("police", &consumer, 2_000, 3_600_000).unwrap()
                            {
                                leased.push(t.id);
                            }
                        }
                    }
                    while let Some(t) = s.lease("police", &consumer, 2_000, 3_600_000).unwrap() {
                        leased.push(t.id);
                    }
                    (ids, leased)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (ids0, ids1) = (&results[0].0, &results[1].0);
    for (call_id, id) in ids0 {
        if let Some(other) = ids1.get(call_id) {
            assert_eq!(id, other, "{call_id} reached both nodes: one ticket");
        }
    }
    let tickets: BTreeSet<i64> = ids0.values().chain(ids1.values()).copied().collect();
    assert_eq!(tickets.len(), 90, "90 calls, 90 tickets");
    let leased: Vec<i64> = results.iter().flat_map(|r| r.1.iter().copied()).collect();
    let once: BTreeSet<i64> = leased.iter().copied().collect();
    assert_eq!(leased.len(), once.len(), "no ticket was leased twice");
    assert_eq!(once, tickets, "every ticket was leased");
    assert!(results.iter().all(|r| !r.1.is_empty()), "both nodes leased");

    let s = &*db.open();
    assert!(s.lease("police", "late", 2_000, 1_000).unwrap().is_none());
    match s.audit_verify().unwrap() {
        Verified::Intact { records, .. } => assert_eq!(
            records, 180,
            "90 received and 90 delivered records, in one chain"
        ),
        broken => panic!("{broken:?}"),
    }
    for id in tickets {
        let (_, h) = s.get(id).unwrap();
        let events: Vec<&str> = h.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(events, ["received", "delivered"], "ticket {id}");
    }
}

#[test]
fn a_full_store_refuses_the_whole_batch_and_keeps_what_it_had() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("t.db")).unwrap();
    let (kept, _) = s.submit(&call("kept", "police", 1), 1).unwrap();
    s.set_size_limit(0).unwrap();
    let big: Vec<NewTicket> = (0..200)
        .map(|i| NewTicket {
            decision: "x".repeat(4096),
            ..call(&format!("c{i}"), "police", 1)
        })
        .collect();
    let err = s.submit_batch(&big, 2).unwrap_err();
    assert!(matches!(err, StoreError::Sqlite(_)), "{err}");
    assert_eq!(s.depth("police").unwrap(), 1, "nothing of the failed batch");
    assert_eq!(s.get(kept).unwrap().0.call_id, "kept");
}

#[test]
fn queue_queries_read_only_the_open_tickets_index() {
    let s = Store::open_in_memory().unwrap();
    for plan in s.queue_query_plans().unwrap() {
        // Through the index of open tickets, in its order: never over the
        // whole table, never sorting a queue.
        assert!(
            plan.split("; ")
                .all(|step| step.contains("INDEX open_tickets")
                    || step.contains("INDEX audit_by_ticket")
                    || step.starts_with("CORRELATED SCALAR SUBQUERY")),
            "{plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }
}

/// A batch that PostgreSQL refuses halfway (a NUL byte in a text) leaves
/// nothing of itself: no ticket, no audit record, the head where it was.
#[test]
fn a_failed_batch_keeps_nothing_of_it_in_postgres() {
    let Some(b) = Backend::postgres("a_failed_batch_keeps_nothing_of_it_in_postgres") else {
        return;
    };
    let db = b.fresh();
    let s = &*db.open();
    let (kept, _) = submit(s, &call("kept", "police", 1), 1);
    let mut bad = call("b", "police", 1);
    bad.call.text = "a NUL \0 byte".into();
    let batch = [call("a", "police", 1), bad, call("c", "police", 1)];
    let err = s.submit_batch(&batch, 2).unwrap_err();
    assert!(
        matches!(&err, StoreError::Backend(m) if m.contains("0x00")),
        "the server's own message: {err}"
    );
    assert_eq!(depth(s, "police"), 1, "nothing of the failed batch");
    assert_eq!(s.get(kept).unwrap().0.call_id, "kept");
    assert!(matches!(
        s.audit_verify().unwrap(),
        Verified::Intact { records: 1, .. }
    ));
    assert!(
        submit(s, &call("a", "police", 1), 3).1,
        "the refused call is new"
    );
    assert!(matches!(
        s.audit_verify().unwrap(),
        Verified::Intact { records: 2, .. }
    ));
}

/// Nodes that start together on a new database: one of them creates the
/// schema, the others wait for it, and each migration is applied once.
#[test]
fn nodes_starting_together_migrate_once_in_postgres() {
    let Some(b) = Backend::postgres("nodes_starting_together_migrate_once_in_postgres") else {
        return;
    };
    let db = b.fresh();
    let common::Db::Postgres { url, schema } = &db else {
        unreachable!()
    };
    std::thread::scope(|scope| {
        let nodes: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| PgStore::connect_in_schema(url, schema).unwrap()))
            .collect();
        for node in nodes {
            let s = node.join().unwrap();
            assert!(s.lease("q", "c", 0, 1).unwrap().is_none());
        }
    });
    let versions: Vec<i32> = db
        .client()
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1, 2]);
    assert!(matches!(
        db.open().audit_verify().unwrap(),
        Verified::Intact { records: 0, .. }
    ));
}

fn delivered<'a>(id: i64, queue: &'a str, consumer: &'a str, message: i64) -> Delivered<'a> {
    Delivered {
        id,
        queue,
        consumer,
        lease_ms: 1_000,
        token: if message == 1 {
            "$JS.ACK.one"
        } else {
            "$JS.ACK.other"
        },
        message,
    }
}

fn leased(t: Taken) -> minsheng_store::Ticket {
    match t {
        Taken::Lease(t) => *t,
        Taken::Stale(why) => panic!("expected a lease, the message was stale: {why}"),
    }
}

fn stale(t: Taken) -> String {
    match t {
        Taken::Stale(why) => why,
        Taken::Lease(t) => panic!("expected a stale message, ticket {} was leased", t.id),
    }
}

/// With an outside queue delivering, PostgreSQL keeps the lease: a message
/// is handed over once, a duplicate of a leased ticket and a message of an
/// acknowledged or moved ticket are stale, a message redelivered after its
/// lease takes it over (with an `expired` record), and the chain holds.
#[test]
fn an_outside_queue_delivers_through_postgres_leases() {
    let Some(b) = Backend::postgres("an_outside_queue_delivers_through_postgres_leases") else {
        return;
    };
    let db = b.fresh();
    let s: &dyn TicketStore = &*db.open();
    let (id, _) = submit(s, &call("c1", "police", 2), 10);

    let out = s.outgoing(id).unwrap();
    assert_eq!(
        (
            out.queue.as_str(),
            out.message_id.as_str(),
            out.published,
            out.open
        ),
        ("police", "110:c1", false, true)
    );
    assert_eq!(s.unpublished(11, 10).unwrap(), std::slice::from_ref(&out));
    assert!(
        s.unpublished(10, 10).unwrap().is_empty(),
        "only older than `before`"
    );
    s.mark_published(&[(id, 0)]).unwrap();
    assert!(s.outgoing(id).unwrap().published);
    assert!(s.unpublished(i64::MAX, 10).unwrap().is_empty());

    let t = leased(
        s.take_delivery(&delivered(id, "police", "desk-1", 1), 100)
            .unwrap(),
    );
    assert_eq!(
        (t.state, t.lease_until, t.deliveries),
        (TicketState::Leased, Some(1_100), 1)
    );
    assert_eq!(s.lease_token(id).unwrap().as_deref(), Some("$JS.ACK.one"));
    // A second message of the same ticket while the lease holds: stale.
    let why = stale(
        s.take_delivery(&delivered(id, "police", "desk-2", 2), 200)
            .unwrap(),
    );
    assert!(why.contains("another message"), "{why}");
    // The same message again, after the lease ended: taken over.
    let t = leased(
        s.take_delivery(&delivered(id, "police", "desk-2", 1), 1_200)
            .unwrap(),
    );
    assert_eq!((t.deliveries, t.lease_until), (2, Some(2_200)));
    s.nack(id, "desk-2", "busy", 1_300).unwrap();
    // Given back: any message of it is taken.
    leased(
        s.take_delivery(&delivered(id, "police", "desk-3", 2), 1_400)
            .unwrap(),
    );
    assert_eq!(s.lease_token(id).unwrap().as_deref(), Some("$JS.ACK.other"));
    s.ack(id, "desk-3", 1_500).unwrap();
    let why = stale(
        s.take_delivery(&delivered(id, "police", "desk-1", 1), 1_600)
            .unwrap(),
    );
    assert!(why.contains("acknowledged"), "{why}");
    assert!(!s.outgoing(id).unwrap().open);

    // A move is a new message, for the new queue, not yet published.
    let (moved, _) = submit(s, &call("c2", "police", 1), 2_000);
    s.mark_published(&[(moved, 0)]).unwrap();
    let to = Reroute {
        queue: "hotline_12345",
        destination: "hotline_12345",
        township: None,
        reason: "not a police matter",
        actor: "desk-1",
    };
    s.reroute(moved, &to, 2_100).unwrap();
    let out = s.outgoing(moved).unwrap();
    assert_eq!(
        (out.queue.as_str(), out.message_id.as_str(), out.published),
        ("hotline_12345", "110:c2:1", false)
    );
    let why = stale(
        s.take_delivery(&delivered(moved, "police", "desk-1", 9), 2_200)
            .unwrap(),
    );
    assert!(why.contains("moved to hotline_12345"), "{why}");
    assert_eq!(
        s.unpublished(i64::MAX, 10).unwrap(),
        std::slice::from_ref(&out)
    );
    // A mark of the move it left does not count for the one it is in.
    s.mark_published(&[(moved, 0)]).unwrap();
    assert!(!s.outgoing(moved).unwrap().published);
    s.mark_published(&[(moved, 1), (moved, 1)]).unwrap();
    assert!(s.outgoing(moved).unwrap().published);

    let kinds: Vec<String> = s.get(id).unwrap().1.into_iter().map(|h| h.event).collect();
    assert_eq!(
        kinds,
        [
            "received",
            "delivered",
            "expired",
            "delivered",
            "nacked",
            "delivered",
            "acked"
        ]
    );
    assert!(matches!(
        s.audit_verify().unwrap(),
        Verified::Intact { records: 9, .. }
    ));
}

/// The embedded store keeps its own queues and says so to an outside one.
#[test]
fn the_embedded_store_refuses_an_outside_queue() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("t.db")).unwrap();
    let (id, _) = submit(&s, &call("c1", "police", 2), 10);
    let err = TicketStore::outgoing(&s, id).unwrap_err();
    assert!(
        err.to_string().contains("needs the PostgreSQL store"),
        "{err}"
    );
}
