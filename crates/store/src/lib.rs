//! Durable ticket queues: a routed call is a ticket in a queue until the
//! force that handles it acknowledges it.
//!
//! The main type is [`Store`], an embedded SQLite database in WAL mode with
//! `synchronous=FULL`: [`Store::submit`] returns only after the ticket and
//! its audit record (the decision, rules and version: see [`audit`]) are
//! committed in one transaction, so a call that
//! was answered as accepted is never lost. The same (hotline, call id)
//! submitted twice yields the same ticket. Delivery is at-least-once: a
//! consumer [`Store::lease`]s the most urgent, then oldest, ticket of its
//! queue; the ticket comes back to the queue if it is not acknowledged
//! before its lease ends.
//!
//! [`PgStore`] keeps the same queues and the same audit chain in
//! PostgreSQL, so that several server nodes share them; both implement
//! [`TicketStore`], and one behavioural test suite holds both to the same
//! promises.
//!
//! The one design decision that shapes it: time is passed in (`now`, in
//! milliseconds), never read inside, so that leases and their expiry are
//! tested exactly, without sleeping.
//!
//! ```
//! use minsheng_store::{NewTicket, Store};
//!
//! let store = Store::open_in_memory().unwrap();
//! let call = NewTicket {
//!     hotline: "110".into(),
//!     call_id: "c-1".into(),
//!     queue: "dispatch.police".into(),
//!     destination: "police".into(),
//!     township: None,
//!     urgency: 3,
//!     decision: "{}".into(),
//!     rules: vec!["police.weapon".into()],
//!     rules_version: "3f2a…".into(),
//!     call: Default::default(),
//!     actor: "intake".into(),
//! };
//! let (id, created) = store.submit(&call, 1_000).unwrap();
//! assert!(created);
//! assert_eq!(store.submit(&call, 2_000).unwrap(), (id, false), "one ticket per call");
//! let leased = store.lease("dispatch.police", "110-dispatch", 3_000, 30_000).unwrap().unwrap();
//! assert_eq!(leased.id, id);
//! store.ack(id, "110-dispatch", 4_000).unwrap();
//! assert!(store.lease("dispatch.police", "110-dispatch", 5_000, 30_000).unwrap().is_none());
//! ```
#![deny(missing_docs)]

use std::path::Path;

pub mod audit;
mod backend;
mod postgres;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

pub use crate::postgres::PgStore;
pub use audit::{AuditRecord, Filter, Verified};
pub use backend::{Delivered, Outgoing, Taken, TicketStore};

/// The shortest retention of audit records, in days: network logs are kept
/// at least six months (Cybersecurity Law of the PRC, art. 21).
pub const MIN_RETENTION_DAYS: u32 = 180;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened, read or written (disk full, the
    /// directory unwritable, a corrupt file).
    #[error("ticket store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A shared database could not be reached, read or written.
    #[error("ticket store: {0}")]
    Backend(String),
    /// No ticket has this id.
    #[error("no ticket {0}")]
    NoTicket(i64),
    /// A retention shorter than the law allows.
    #[error("audit records are kept at least {MIN_RETENTION_DAYS} days, not {0}")]
    Retention(u32),
    /// The ticket is not leased, so it cannot be acknowledged or given back.
    #[error("ticket {0} is not leased (already acknowledged, or its lease ended)")]
    NotLeased(i64),
}

/// A call to be queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTicket {
    /// The hotline the call came in on (`110`, `12345`, `app`).
    pub hotline: String,
    /// The operator system's id of the call.
    pub call_id: String,
    /// The queue it goes to (`dispatch.police`, `township.330402011`…).
    pub queue: String,
    /// The destination's name.
    pub destination: String,
    /// The township code, when known.
    pub township: Option<String>,
    /// Urgency as a number: higher is more urgent (0 routine … 3 critical).
    pub urgency: i64,
    /// The decision, as a JSON object; it goes into the audit record of
    /// the call.
    pub decision: String,
    /// The ids of the rules that fired.
    pub rules: Vec<String>,
    /// The rule-set version of the decision.
    pub rules_version: String,
    /// What the call was: its text, the caller's number, where and when.
    pub call: CallRecord,
    /// Who submitted it (the intake, an operator system).
    pub actor: String,
}

/// The call a ticket carries to the force that takes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallRecord {
    /// The caller's number, whole: personal data, shown only to the
    /// consumer a ticket is delivered to.
    pub caller_number: String,
    /// The call's text (personal numbers in it already masked).
    pub text: String,
    /// The address the operator system filled in.
    pub location: String,
    /// The call-taker's id.
    pub call_taker: String,
    /// When the hotline took the call (ms).
    pub received_at: i64,
}

/// Where a ticket is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketState {
    /// Waiting in its queue.
    Queued,
    /// Delivered to a consumer, not yet acknowledged.
    Leased,
    /// Taken by the force that handles it.
    Acked,
}

impl TicketState {
    fn as_str(self) -> &'static str {
        match self {
            TicketState::Queued => "queued",
            TicketState::Leased => "leased",
            TicketState::Acked => "acked",
        }
    }

    fn parse(s: &str) -> TicketState {
        match s {
            "leased" => TicketState::Leased,
            "acked" => TicketState::Acked,
            _ => TicketState::Queued,
        }
    }
}

/// Where a person sends a ticket instead, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reroute<'a> {
    /// The new queue.
    pub queue: &'a str,
    /// The new destination.
    pub destination: &'a str,
    /// The new township code, if any.
    pub township: Option<&'a str>,
    /// Why.
    pub reason: &'a str,
    /// Who.
    pub actor: &'a str,
}

/// A ticket as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// Its id.
    pub id: i64,
    /// The hotline of the call.
    pub hotline: String,
    /// The operator system's call id.
    pub call_id: String,
    /// Its current queue.
    pub queue: String,
    /// Its current destination.
    pub destination: String,
    /// Its township code, if any.
    pub township: Option<String>,
    /// Its urgency (higher first).
    pub urgency: i64,
    /// The audit record of the call as JSON: the decision's fields and
    /// `call` (where, when, who took it, the number masked).
    pub decision: String,
    /// The call.
    pub call: CallRecord,
    /// Where it is in its life.
    pub state: TicketState,
    /// When the current lease ends (ms), while leased.
    pub lease_until: Option<i64>,
    /// How many times it was delivered.
    pub deliveries: i64,
    /// When it was accepted (ms).
    pub created_at: i64,
}

/// The open tickets of one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    /// The queue.
    pub queue: String,
    /// How many tickets are not yet acknowledged.
    pub depth: i64,
    /// When the oldest of them was accepted (ms).
    pub oldest_at: i64,
}

/// One entry of a ticket's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// When (ms).
    pub at: i64,
    /// What happened: `accepted`, `leased`, `acked`, `nacked`, `expired`, `rerouted`.
    pub event: String,
    /// Who did it.
    pub actor: String,
    /// Details (a reroute's reason and target).
    pub detail: String,
}

/// The ticket store.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tickets (
    id INTEGER PRIMARY KEY,
    hotline TEXT NOT NULL,
    call_id TEXT NOT NULL,
    queue TEXT NOT NULL,
    destination TEXT NOT NULL,
    township TEXT,
    urgency INTEGER NOT NULL,
    caller_number TEXT NOT NULL,
    text TEXT NOT NULL,
    location TEXT NOT NULL,
    call_taker TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    state TEXT NOT NULL,
    lease_until INTEGER,
    deliveries INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    UNIQUE (hotline, call_id)
);
-- Only tickets not yet acknowledged: the index stays as small as the
-- queues, however long the history grows.
CREATE INDEX IF NOT EXISTS open_tickets ON tickets (queue, urgency DESC, created_at, id)
    WHERE state != 'acked';
";

const OPEN_QUEUES: &str = "SELECT queue, COUNT(*), MIN(created_at) FROM tickets WHERE state != 'acked' GROUP BY queue ORDER BY queue";

const TICKET_COLUMNS: &str = "id, hotline, call_id, queue, destination, township, urgency,
    COALESCE((SELECT detail FROM audit WHERE audit.ticket_id = tickets.id AND kind = 'received'), '{}'), state, lease_until, deliveries, created_at, caller_number, text, location, call_taker, received_at";

fn ticket_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Ticket> {
    let state: String = row.get(8)?;
    Ok(Ticket {
        id: row.get(0)?,
        hotline: row.get(1)?,
        call_id: row.get(2)?,
        queue: row.get(3)?,
        destination: row.get(4)?,
        township: row.get(5)?,
        urgency: row.get(6)?,
        decision: row.get(7)?,
        state: TicketState::parse(&state),
        lease_until: row.get(9)?,
        deliveries: row.get(10)?,
        created_at: row.get(11)?,
        call: CallRecord {
            caller_number: row.get(12)?,
            text: row.get(13)?,
            location: row.get(14)?,
            call_taker: row.get(15)?,
            received_at: row.get(16)?,
        },
    })
}

impl Store {
    /// Opens (creating if needed) the store in a file, in WAL mode with
    /// `synchronous=FULL`: a committed ticket survives a crash of the
    /// process or the machine.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::init(Connection::open(path)?)
    }

    /// Opens an existing store to read only (audit queries beside a
    /// running server).
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Store { conn })
    }

    /// A store in memory, for tests and dry runs.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Store::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Store, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(audit::SCHEMA)?;
        Ok(Store { conn })
    }

    /// Queues a call. Returns the ticket id and whether it was created now;
    /// the same (hotline, call id) again returns the existing ticket.
    pub fn submit(&self, t: &NewTicket, now: i64) -> Result<(i64, bool), StoreError> {
        let mut results = self.submit_batch(std::slice::from_ref(t), now)?;
        Ok(results.remove(0))
    }

    /// Queues several calls in one transaction, so that one flush to disk
    /// makes them all durable (group commit). Either every call is
    /// committed or none is. Returns, in order, each ticket id and whether
    /// it was created now; a (hotline, call id) seen before, in this batch
    /// or earlier, returns the existing ticket.
    pub fn submit_batch(
        &self,
        tickets: &[NewTicket],
        now: i64,
    ) -> Result<Vec<(i64, bool)>, StoreError> {
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let mut results = Vec::with_capacity(tickets.len());
        {
            let mut find =
                tx.prepare_cached("SELECT id FROM tickets WHERE hotline = ?1 AND call_id = ?2")?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO tickets (hotline, call_id, queue, destination, township, urgency,
                     caller_number, text, location, call_taker, received_at, state, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'queued', ?12)",
            )?;
            for t in tickets {
                let existing: Option<i64> = find
                    .query_row(params![t.hotline, t.call_id], |r| r.get(0))
                    .optional()?;
                if let Some(id) = existing {
                    results.push((id, false));
                    continue;
                }
                let c = &t.call;
                insert.execute(params![
                    t.hotline,
                    t.call_id,
                    t.queue,
                    t.destination,
                    t.township,
                    t.urgency,
                    c.caller_number,
                    c.text,
                    c.location,
                    c.call_taker,
                    c.received_at,
                    now
                ])?;
                let id = tx.last_insert_rowid();
                let detail = received_detail(t);
                audit::append(&tx, now, &received_entry(t, id, &detail))?;
                results.push((id, true));
            }
        }
        tx.commit()?;
        Ok(results)
    }

    /// Leases the next ticket of a queue — the most urgent, then the oldest
    /// — for `lease_ms`. A ticket whose lease has ended is available again
    /// (and its expiry recorded). `None` when the queue is empty.
    ///
    /// The consumer receives the caller's number whole; the history records
    /// to whom the ticket, and so the number, was delivered.
    pub fn lease(
        &self,
        queue: &str,
        consumer: &str,
        now: i64,
        lease_ms: i64,
    ) -> Result<Option<Ticket>, StoreError> {
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let next: Option<Ticket> = tx
            .query_row(
                &format!(
                    "SELECT {TICKET_COLUMNS} FROM tickets
                     WHERE queue = ?1 AND state != 'acked'
                       AND (state = 'queued' OR (state = 'leased' AND lease_until <= ?2))
                     ORDER BY urgency DESC, created_at, id LIMIT 1"
                ),
                params![queue, now],
                ticket_from_row,
            )
            .optional()?;
        let Some(mut ticket) = next else {
            tx.commit()?;
            return Ok(None);
        };
        if ticket.state == TicketState::Leased {
            ticket_event(&tx, &ticket, now, "expired", "system", EXPIRED_DETAIL)?;
        }
        let until = now + lease_ms;
        tx.execute(
            "UPDATE tickets SET state = 'leased', lease_until = ?1, deliveries = deliveries + 1 WHERE id = ?2",
            params![until, ticket.id],
        )?;
        ticket_event(
            &tx,
            &ticket,
            now,
            "delivered",
            consumer,
            &delivered_detail(until),
        )?;
        tx.commit()?;
        ticket.state = TicketState::Leased;
        ticket.lease_until = Some(until);
        ticket.deliveries += 1;
        Ok(Some(ticket))
    }

    /// Acknowledges a leased ticket: the force has taken it.
    pub fn ack(&self, id: i64, actor: &str, now: i64) -> Result<(), StoreError> {
        self.settle(id, actor, now, TicketState::Acked, "acked", "{}")
    }

    /// Gives a leased ticket back to its queue, to be delivered again;
    /// `reason` goes into its history.
    pub fn nack(&self, id: i64, actor: &str, reason: &str, now: i64) -> Result<(), StoreError> {
        self.settle(
            id,
            actor,
            now,
            TicketState::Queued,
            "nacked",
            &nacked_detail(reason),
        )
    }

    fn settle(
        &self,
        id: i64,
        actor: &str,
        now: i64,
        to: TicketState,
        event: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let ticket = ticket_in(&tx, id)?;
        if ticket.state != TicketState::Leased || ticket.lease_until.is_some_and(|u| u <= now) {
            return Err(StoreError::NotLeased(id));
        }
        tx.execute(
            "UPDATE tickets SET state = ?1, lease_until = NULL WHERE id = ?2",
            params![to.as_str(), id],
        )?;
        ticket_event(&tx, &ticket, now, event, actor, detail)?;
        tx.commit()?;
        Ok(())
    }

    /// A person overrides the decision (退单/改派): the ticket moves to
    /// another queue and destination, back to waiting, with who and why.
    pub fn reroute(&self, id: i64, to: &Reroute<'_>, now: i64) -> Result<(), StoreError> {
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let mut ticket = ticket_in(&tx, id)?;
        tx.execute(
            "UPDATE tickets SET queue = ?1, destination = ?2, township = ?3, state = 'queued', lease_until = NULL WHERE id = ?4",
            params![to.queue, to.destination, to.township, id],
        )?;
        let detail = rerouted(&mut ticket, to);
        ticket_event(&tx, &ticket, now, "rerouted", to.actor, &detail)?;
        tx.commit()?;
        Ok(())
    }

    /// A ticket and its history, oldest entry first.
    pub fn get(&self, id: i64) -> Result<(Ticket, Vec<HistoryEntry>), StoreError> {
        let ticket = self
            .conn
            .query_row(
                &format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ?1"),
                params![id],
                ticket_from_row,
            )
            .optional()?
            .ok_or(StoreError::NoTicket(id))?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT at, kind, actor, detail FROM audit WHERE ticket_id = ?1 ORDER BY seq",
        )?;
        let entries = stmt
            .query_map(params![id], |r| {
                Ok(HistoryEntry {
                    at: r.get(0)?,
                    event: r.get(1)?,
                    actor: r.get(2)?,
                    detail: r.get(3)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok((ticket, entries))
    }

    /// Appends an audit record of an event that is not a ticket's (rules
    /// loaded or rejected, caller numbers shown), in its own transaction.
    /// Returns its sequence number.
    pub fn audit_event(
        &self,
        kind: &str,
        actor: &str,
        rules_version: Option<&str>,
        detail: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let seq = audit::append(
            &tx,
            now,
            &audit::Entry {
                kind,
                actor,
                rules_version,
                detail,
                ..Default::default()
            },
        )?;
        tx.commit()?;
        Ok(seq)
    }

    /// Removes the audit records older than `retention_days` days before
    /// `now`, for a retention policy; at least [`MIN_RETENTION_DAYS`], and
    /// never the last record. The chain then starts from the last record
    /// removed (its place and hash are kept), and a `pruned` record says
    /// who removed what. Returns how many records were removed.
    pub fn audit_prune(
        &self,
        retention_days: u32,
        actor: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        if retention_days < MIN_RETENTION_DAYS {
            return Err(StoreError::Retention(retention_days));
        }
        let before = now - i64::from(retention_days) * 86_400_000;
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let removed = audit::prune(&tx, before, actor, now)?;
        tx.commit()?;
        Ok(removed)
    }

    /// Walks the audit chain from its first record: intact, or the first
    /// record that does not hold.
    pub fn audit_verify(&self) -> Result<Verified, StoreError> {
        Ok(audit::verify(&self.conn)?)
    }

    /// The audit records a filter wants, in order, each passed to `each`;
    /// `each` returns false to stop.
    pub fn audit_query(
        &self,
        filter: &Filter,
        each: impl FnMut(AuditRecord) -> bool,
    ) -> Result<(), StoreError> {
        Ok(audit::query(&self.conn, filter, each)?)
    }

    /// A ticket's caller number, whole: for a privileged export, which must
    /// itself be recorded ([`Store::audit_event`]).
    pub fn caller_number(&self, ticket_id: i64) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT caller_number FROM tickets WHERE id = ?1")?
            .query_row(params![ticket_id], |r| r.get(0))
            .optional()?)
    }

    /// Every queue with tickets not yet acknowledged: its name, how many,
    /// and when the oldest of them was accepted (ms).
    pub fn open_queues(&self) -> Result<Vec<QueueStats>, StoreError> {
        let mut stmt = self.conn.prepare_cached(OPEN_QUEUES)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(QueueStats {
                    queue: r.get(0)?,
                    depth: r.get(1)?,
                    oldest_at: r.get(2)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Caps the database at about `bytes` (rounded down to whole pages): a
    /// write that would grow it further fails, as on a full disk, and
    /// nothing of that write is kept. A quota for a shared data volume.
    pub fn set_size_limit(&self, bytes: u64) -> Result<(), StoreError> {
        let page_size: i64 = self.conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let pages = (bytes / page_size.max(1) as u64).max(1);
        let _: i64 = self
            .conn
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                r.get(0)
            })?;
        Ok(())
    }

    /// The query plans of the queue queries, for tests: each line names
    /// the index it uses.
    #[doc(hidden)]
    pub fn queue_query_plans(&self) -> Result<Vec<String>, StoreError> {
        let mut plans = Vec::new();
        for sql in [
            format!(
                "SELECT {TICKET_COLUMNS} FROM tickets WHERE queue = 'q' AND state != 'acked'
                 AND (state = 'queued' OR (state = 'leased' AND lease_until <= 0))
                 ORDER BY urgency DESC, created_at, id LIMIT 1"
            ),
            OPEN_QUEUES.to_owned(),
        ] {
            let mut stmt = self.conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(3))?;
            plans.push(rows.collect::<Result<Vec<_>, _>>()?.join("; "));
        }
        Ok(plans)
    }

    /// How many tickets of a queue are not yet acknowledged.
    pub fn depth(&self, queue: &str) -> Result<i64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM tickets WHERE queue = ?1 AND state != 'acked'",
            params![queue],
            |r| r.get(0),
        )?)
    }
}

/// A ticket inside a transaction.
fn ticket_in(tx: &rusqlite::Transaction<'_>, id: i64) -> Result<Ticket, StoreError> {
    tx.prepare_cached(&format!(
        "SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ?1"
    ))?
    .query_row(params![id], ticket_from_row)
    .optional()?
    .ok_or(StoreError::NoTicket(id))
}

/// The audit record of an event of a ticket, as it is after the event.
fn ticket_event(
    tx: &rusqlite::Transaction<'_>,
    t: &Ticket,
    at: i64,
    kind: &str,
    actor: &str,
    detail: &str,
) -> rusqlite::Result<i64> {
    audit::append(tx, at, &ticket_entry(t, kind, actor, detail))
}

/// The audit record of an event of a ticket, as it is after the event.
fn ticket_entry<'a>(
    t: &'a Ticket,
    kind: &'a str,
    actor: &'a str,
    detail: &'a str,
) -> audit::Entry<'a> {
    audit::Entry {
        kind,
        actor,
        ticket_id: Some(t.id),
        call_id: Some(&t.call_id),
        hotline: Some(&t.hotline),
        queue: Some(&t.queue),
        destination: Some(&t.destination),
        township: t.township.as_deref(),
        detail,
        ..Default::default()
    }
}

/// The `received` record of a new ticket.
fn received_entry<'a>(t: &'a NewTicket, id: i64, detail: &'a str) -> audit::Entry<'a> {
    audit::Entry {
        kind: "received",
        actor: &t.actor,
        ticket_id: Some(id),
        call_id: Some(&t.call_id),
        hotline: Some(&t.hotline),
        queue: Some(&t.queue),
        destination: Some(&t.destination),
        township: t.township.as_deref(),
        rules: &t.rules,
        rules_version: Some(&t.rules_version),
        detail,
    }
}

/// The detail of an `expired` record.
const EXPIRED_DETAIL: &str = r#"{"why":"the lease ended without an ack"}"#;

/// The detail of a `delivered` record.
fn delivered_detail(until: i64) -> String {
    serde_json::json!({ "lease_until": until, "caller_number": "shown whole" }).to_string()
}

/// The detail of a `nacked` record.
fn nacked_detail(reason: &str) -> String {
    serde_json::json!({ "reason": reason }).to_string()
}

/// Moves a ticket as a reroute does; returns the detail of its `rerouted`
/// record (from, to, reason).
fn rerouted(ticket: &mut Ticket, to: &Reroute<'_>) -> String {
    let detail = serde_json::json!({
        "from": { "queue": ticket.queue, "destination": ticket.destination, "township": ticket.township },
        "to": { "queue": to.queue, "destination": to.destination, "township": to.township },
        "reason": to.reason,
    })
    .to_string();
    ticket.queue = to.queue.to_owned();
    ticket.destination = to.destination.to_owned();
    ticket.township = to.township.map(str::to_owned);
    detail
}

/// The detail of a `received` record: the decision's fields and the call,
/// its number masked.
fn received_detail(t: &NewTicket) -> String {
    let c = &t.call;
    let call = serde_json::json!({
        "caller_number": minsheng_core::mask_number(&c.caller_number),
        "location": c.location,
        "call_taker": c.call_taker,
        "received_at": c.received_at,
    });
    let decision = t.decision.trim();
    match decision.strip_prefix('{') {
        Some(rest) if rest.trim_start().starts_with('}') => format!("{{\"call\":{call}}}"),
        Some(rest) => format!("{{\"call\":{call},{rest}"),
        None => serde_json::json!({ "call": call, "decision": decision }).to_string(),
    }
}
