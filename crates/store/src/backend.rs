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
