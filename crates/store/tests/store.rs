//! The ticket store's promises: one ticket per call, most urgent then
//! oldest first, at-least-once delivery through leases, acknowledgement,
//! reroute with its history, and durability across a reopen.

use minsheng_store::{CallRecord, NewTicket, Reroute, Store, StoreError, TicketState};

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

#[test]
fn the_same_call_twice_is_one_ticket() {
    let s = Store::open_in_memory().unwrap();
    let (a, new_a) = s.submit(&call("c1", "police", 2), 10).unwrap();
    let (b, new_b) = s.submit(&call("c1", "police", 2), 20).unwrap();
    assert_eq!((a, new_a, new_b), (b, true, false));
    let other_hotline = NewTicket {
        hotline: "12345".into(),
        ..call("c1", "police", 2)
    };
    assert_ne!(
        s.submit(&other_hotline, 30).unwrap().0,
        a,
        "call ids are per hotline"
    );
    assert_eq!(s.depth("police").unwrap(), 2);
}

#[test]
fn the_most_urgent_then_the_oldest_is_delivered_first() {
    let s = Store::open_in_memory().unwrap();
    let (old_routine, _) = s.submit(&call("a", "q", 0), 1).unwrap();
    let (critical, _) = s.submit(&call("b", "q", 3), 2).unwrap();
    let (new_routine, _) = s.submit(&call("c", "q", 0), 3).unwrap();
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

#[test]
fn an_unacknowledged_lease_comes_back_and_an_ack_ends_it() {
    let s = Store::open_in_memory().unwrap();
    let (id, _) = s.submit(&call("a", "q", 1), 0).unwrap();
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
    assert_eq!(s.depth("q").unwrap(), 0);
    let (t, history) = s.get(id).unwrap();
    assert_eq!(t.state, TicketState::Acked);
    let events: Vec<&str> = history.iter().map(|h| h.event.as_str()).collect();
    assert_eq!(
        events,
        ["received", "delivered", "expired", "delivered", "acked"]
    );
}

#[test]
fn an_ack_after_the_lease_ended_is_refused() {
    let s = Store::open_in_memory().unwrap();
    let (id, _) = s.submit(&call("a", "q", 1), 0).unwrap();
    s.lease("q", "consumer-1", 0, 100).unwrap().unwrap();
    assert!(matches!(s.ack(id, "late", 100), Err(StoreError::NotLeased(t)) if t == id));
    assert!(matches!(s.ack(999, "x", 0), Err(StoreError::NoTicket(999))));
}

#[test]
fn a_nack_gives_the_ticket_back_at_once() {
    let s = Store::open_in_memory().unwrap();
    let (id, _) = s.submit(&call("a", "q", 1), 0).unwrap();
    s.lease("q", "consumer-1", 10, 60_000).unwrap().unwrap();
    s.nack(id, "township-team", "team busy", 20).unwrap();
    let again = s.lease("q", "consumer-1", 30, 60_000).unwrap().unwrap();
    assert_eq!((again.id, again.deliveries), (id, 2));
}

#[test]
fn a_reroute_moves_the_ticket_and_records_who_and_why() {
    let s = Store::open_in_memory().unwrap();
    let (id, _) = s.submit(&call("a", "workorder.12345", 0), 0).unwrap();
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

#[test]
fn accepted_tickets_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tickets.db");
    let id = {
        let s = Store::open(&path).unwrap();
        let (id, _) = s.submit(&call("a", "police", 3), 5).unwrap();
        s.lease("police", "consumer-1", 6, 10).unwrap().unwrap();
        id
    };
    let s = Store::open(&path).unwrap();
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
        s.submit(&call("a", "police", 3), 200).unwrap(),
        (id, false),
        "still one ticket per call"
    );
}

#[test]
fn a_batch_commits_together_and_dedups_within_itself() {
    let s = Store::open_in_memory().unwrap();
    let (first, _) = s.submit(&call("old", "police", 1), 1).unwrap();
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
    let police = stats.iter().find(|q| q.queue == "police").unwrap();
    assert_eq!((police.depth, police.oldest_at), (2, 1));
}

#[test]
fn a_lease_records_the_consumer_that_saw_the_number() {
    let s = Store::open_in_memory().unwrap();
    let (id, _) = s.submit(&call("a", "police", 1), 1).unwrap();
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
