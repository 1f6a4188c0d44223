//! What the server needs of a ticket store, whatever keeps the tickets:
//! the embedded SQLite [`Store`](crate::Store), or a shared database
//! several nodes write to.
//!
//! Every method is the store's promise as [`Store`](crate::Store)
//! documents it; a backend keeps the same promises (one ticket per
//! (hotline, call id), most urgent then oldest first, at-least-once
//! delivery through leases, one audit chain written in the transaction of
//! each change), and the same behavioural tests hold it to them.

use crate::{
    AuditRecord, Filter, HistoryEntry, NewTicket, QueueStats, Reroute, StoreError, Ticket, Verified,
};

/// A ticket as an outside queue carries it (NATS JetStream): which queue
/// it belongs in and the id that makes publishing it again harmless.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The ticket.
    pub id: i64,
    /// The queue it is in now.
    pub queue: String,
    /// The message id: `hotline:call_id`, and `:n` after its n-th move, so
    /// that a retried publish is one message and a move is a new one.
    pub message_id: String,
    /// How often it moved (a reroute is a move): each move is a message.
    pub moves: i64,
    /// Its urgency (higher first).
    pub urgency: i64,
    /// Whether the queue already holds a message of this move.
    pub published: bool,
    /// Whether it still waits to be acknowledged.
    pub open: bool,
}

impl Outgoing {
    /// A ticket just queued, not yet published.
    pub fn queued(id: i64, ticket: &NewTicket) -> Outgoing {
        Outgoing {
            id,
            queue: ticket.queue.clone(),
            message_id: message_id(&ticket.hotline, &ticket.call_id, 0),
            moves: 0,
            urgency: ticket.urgency,
            published: false,
            open: true,
        }
    }
}

/// The message id of a ticket's move in an outside queue.
pub(crate) fn message_id(hotline: &str, call_id: &str, moves: i64) -> String {
    match moves {
        0 => format!("{hotline}:{call_id}"),
        n => format!("{hotline}:{call_id}:{n}"),
    }
}

/// A message of a ticket, delivered by an outside queue to a consumer.
#[derive(Debug, Clone, Copy)]
pub struct Delivered<'a> {
    /// The ticket the message carries.
    pub id: i64,
    /// The queue it was delivered from.
    pub queue: &'a str,
    /// Who it is delivered to.
    pub consumer: &'a str,
    /// How long the consumer has to acknowledge it (ms).
    pub lease_ms: i64,
    /// What acknowledges the message (its reply subject).
    pub token: &'a str,
    /// The message's sequence number in the queue, the same however often
    /// it is delivered.
    pub message: i64,
}

/// What a store makes of a message an outside queue delivered.
#[derive(Debug, Clone, PartialEq)]
pub enum Taken {
    /// The ticket is leased to the consumer: hand it over.
    Lease(Box<Ticket>),
    /// The message is stale (the ticket was acknowledged, moved, or is
    /// leased through another message of it): acknowledge it, hand nothing.
    Stale(String),
}

fn no_outside_queue() -> StoreError {
    StoreError::Backend(
        "this ticket store keeps its own queues; an outside queue needs the PostgreSQL store"
            .into(),
    )
}

/// A ticket store: queues, tickets and the audit log.
pub trait TicketStore: Send {
    /// Queues calls in one transaction; see [`crate::Store::submit_batch`].
    fn submit_batch(&self, tickets: &[NewTicket], now: i64)
    -> Result<Vec<(i64, bool)>, StoreError>;
    /// Leases the next ticket of a queue; see [`crate::Store::lease`].
    fn lease(
        &self,
        queue: &str,
        consumer: &str,
        now: i64,
        lease_ms: i64,
    ) -> Result<Option<Ticket>, StoreError>;
    /// Acknowledges a leased ticket.
    fn ack(&self, id: i64, actor: &str, now: i64) -> Result<(), StoreError>;
    /// Gives a leased ticket back.
    fn nack(&self, id: i64, actor: &str, reason: &str, now: i64) -> Result<(), StoreError>;
    /// Moves a ticket to another queue, with who and why.
    fn reroute(&self, id: i64, to: &Reroute<'_>, now: i64) -> Result<(), StoreError>;
    /// A ticket and its history.
    fn get(&self, id: i64) -> Result<(Ticket, Vec<HistoryEntry>), StoreError>;
    /// The open tickets of every queue.
    fn open_queues(&self) -> Result<Vec<QueueStats>, StoreError>;
    /// Appends an audit record of an event that is not a ticket's.
    fn audit_event(
        &self,
        kind: &str,
        actor: &str,
        rules_version: Option<&str>,
        detail: &str,
        now: i64,
    ) -> Result<i64, StoreError>;
    /// Walks the audit chain.
    fn audit_verify(&self) -> Result<Verified, StoreError>;
    /// The audit records a filter wants, in order; `each` returns false to
    /// stop.
    fn audit_query(
        &self,
        filter: &Filter,
        each: &mut dyn FnMut(AuditRecord) -> bool,
    ) -> Result<(), StoreError>;
    /// Removes audit records older than the retention.
    fn audit_prune(&self, retention_days: u32, actor: &str, now: i64) -> Result<i64, StoreError>;
    /// A ticket's caller number, whole.
    fn caller_number(&self, ticket_id: i64) -> Result<Option<String>, StoreError>;

    // With an outside queue (NATS JetStream), the store keeps the tickets
    // and their audit records, and the outside queue delivers them: these
    // are the store's side of it. A store that keeps its own queues
    // refuses them.

    /// A ticket as an outside queue carries it.
    fn outgoing(&self, id: i64) -> Result<Outgoing, StoreError> {
        let _ = id;
        Err(no_outside_queue())
    }
    /// Records that the outside queue holds a message of each ticket's
    /// move, `(id, moves)`.
    fn mark_published(&self, published: &[(i64, i64)]) -> Result<(), StoreError> {
        let _ = published;
        Err(no_outside_queue())
    }
    /// Open tickets whose current move the outside queue holds no message
    /// of, created before `before` (ms), at most `limit`, oldest first.
    fn unpublished(&self, before: i64, limit: i64) -> Result<Vec<Outgoing>, StoreError> {
        let _ = (before, limit);
        Err(no_outside_queue())
    }
    /// Leases a ticket that the outside queue delivered, or says why the
    /// message is stale.
    fn take_delivery(&self, d: &Delivered<'_>, now: i64) -> Result<Taken, StoreError> {
        let _ = (d, now);
        Err(no_outside_queue())
    }
    /// What acknowledges the message a ticket was last delivered through.
    fn lease_token(&self, id: i64) -> Result<Option<String>, StoreError> {
        let _ = id;
        Err(no_outside_queue())
    }
}

impl TicketStore for crate::Store {
    fn submit_batch(
        &self,
        tickets: &[NewTicket],
        now: i64,
    ) -> Result<Vec<(i64, bool)>, StoreError> {
        crate::Store::submit_batch(self, tickets, now)
    }
    fn lease(
        &self,
        queue: &str,
        consumer: &str,
        now: i64,
        lease_ms: i64,
    ) -> Result<Option<Ticket>, StoreError> {
        crate::Store::lease(self, queue, consumer, now, lease_ms)
    }
    fn ack(&self, id: i64, actor: &str, now: i64) -> Result<(), StoreError> {
        crate::Store::ack(self, id, actor, now)
    }
    fn nack(&self, id: i64, actor: &str, reason: &str, now: i64) -> Result<(), StoreError> {
        crate::Store::nack(self, id, actor, reason, now)
    }
    fn reroute(&self, id: i64, to: &Reroute<'_>, now: i64) -> Result<(), StoreError> {
        crate::Store::reroute(self, id, to, now)
    }
    fn get(&self, id: i64) -> Result<(Ticket, Vec<HistoryEntry>), StoreError> {
        crate::Store::get(self, id)
    }
    fn open_queues(&self) -> Result<Vec<QueueStats>, StoreError> {
        crate::Store::open_queues(self)
    }
    fn audit_event(
        &self,
        kind: &str,
        actor: &str,
        rules_version: Option<&str>,
        detail: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        crate::Store::audit_event(self, kind, actor, rules_version, detail, now)
    }
    fn audit_verify(&self) -> Result<Verified, StoreError> {
        crate::Store::audit_verify(self)
    }
    fn audit_query(
        &self,
        filter: &Filter,
        each: &mut dyn FnMut(AuditRecord) -> bool,
    ) -> Result<(), StoreError> {
        crate::Store::audit_query(self, filter, each)
    }
    fn audit_prune(&self, retention_days: u32, actor: &str, now: i64) -> Result<i64, StoreError> {
        crate::Store::audit_prune(self, retention_days, actor, now)
    }
    fn caller_number(&self, ticket_id: i64) -> Result<Option<String>, StoreError> {
        crate::Store::caller_number(self, ticket_id)
    }
}
