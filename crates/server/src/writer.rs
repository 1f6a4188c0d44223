//! The store's own thread. Every store operation is a message to it; calls
//! submitted while it is busy are committed together in the next
//! transaction (group commit), so one flush to disk makes a whole group
//! durable and the answer to each caller leaves only after it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use minsheng_store::{
    HistoryEntry, NewTicket, QueueStats, Reroute, StoreError, Ticket, TicketStore,
};
use tokio::sync::{Notify, mpsc, oneshot};

/// Why a store operation failed, as the services report it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// No ticket has this id.
    #[error("no ticket {0}")]
    NoTicket(i64),
    /// The ticket is not leased.
    #[error("ticket {0} is not leased (already acknowledged, or its lease ended)")]
    NotLeased(i64),
    /// The store cannot read or write (disk full, unwritable, stopped).
    #[error("ticket store unavailable: {0}")]
    Unavailable(String),
}

impl From<StoreError> for WriteError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoTicket(id) => WriteError::NoTicket(id),
            StoreError::NotLeased(id) => WriteError::NotLeased(id),
            other => WriteError::Unavailable(other.to_string()),
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, WriteError>>;

/// A ticket to reroute (owned: it crosses threads).
#[derive(Debug, Clone)]
pub struct RerouteTo {
    pub queue: String,
    pub destination: String,
    pub township: Option<String>,
    pub reason: String,
    pub actor: String,
}

/// Work for the store's thread that has no operation of its own.
type StoreJob = Box<dyn FnOnce(&dyn TicketStore) + Send>;

enum Op {
    Submit(Box<NewTicket>, Reply<(i64, bool)>),
    Lease {
        queue: String,
        consumer: String,
        lease_ms: i64,
        reply: Reply<Option<Ticket>>,
    },
    Ack(i64, String, Reply<()>),
    Nack(i64, String, String, Reply<()>),
    Reroute(i64, RerouteTo, Reply<()>),
    Get(i64, Reply<(Ticket, Vec<HistoryEntry>)>),
    Stats(Reply<Vec<QueueStats>>),
    Event(Box<Event>, Reply<i64>),
    /// Anything else the store does, run on its thread.
    With(StoreJob),
}

/// An audit record of an event that is not a ticket's.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: &'static str,
    pub actor: String,
    pub rules_version: Option<String>,
    pub detail: String,
}

/// Wakes the subscribers of a queue when a ticket arrives in it.
#[derive(Debug, Default)]
pub struct Wakers {
    queues: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Wakers {
    /// The waker of a queue.
    pub fn get(&self, queue: &str) -> Arc<Notify> {
        let mut map = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(queue.to_owned()).or_default().clone()
    }

    fn wake(&self, queue: &str) {
        let map = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get(queue) {
            n.notify_waiters();
        }
    }
}

/// The handle the services use; cheap to clone.
#[derive(Debug, Clone)]
pub struct Writer {
    tx: mpsc::Sender<Op>,
    /// Wakers of the queues.
    pub wakers: Arc<Wakers>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Writer {
    /// Starts the store's thread. It ends, closing the store, when every
    /// handle is dropped and the operations already sent are done.
    pub fn start(
        store: Box<dyn TicketStore>,
        max_batch: usize,
    ) -> (Writer, std::thread::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(max_batch * 4);
        let wakers = Arc::new(Wakers::default());
        let thread_wakers = wakers.clone();
        let handle = std::thread::Builder::new()
            .name("minsheng-store".into())
            .spawn(move || run(store, rx, max_batch, &thread_wakers))
            .expect("spawning the store thread");
        (Writer { tx, wakers }, handle)
    }

    async fn call<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(op(reply))
            .await
            .map_err(|_| WriteError::Unavailable("the store is shutting down".into()))?;
        rx.await
            .map_err(|_| WriteError::Unavailable("the store stopped".into()))?
    }

    /// Queues a call; answers once it is committed.
    pub async fn submit(&self, ticket: NewTicket) -> Result<(i64, bool), WriteError> {
        self.call(|r| Op::Submit(Box::new(ticket), r)).await
    }

    /// Leases the next ticket of a queue.
    pub async fn lease(
        &self,
        queue: &str,
        consumer: &str,
        lease_ms: i64,
    ) -> Result<Option<Ticket>, WriteError> {
        self.call(|reply| Op::Lease {
            queue: queue.to_owned(),
            consumer: consumer.to_owned(),
            lease_ms,
            reply,
        })
        .await
    }

    /// Acknowledges a leased ticket.
    pub async fn ack(&self, id: i64, actor: &str) -> Result<(), WriteError> {
        self.call(|r| Op::Ack(id, actor.to_owned(), r)).await
    }

    /// Gives a leased ticket back.
    pub async fn nack(&self, id: i64, actor: &str, reason: &str) -> Result<(), WriteError> {
        self.call(|r| Op::Nack(id, actor.to_owned(), reason.to_owned(), r))
            .await
    }

    /// Moves a ticket to another queue.
    pub async fn reroute(&self, id: i64, to: RerouteTo) -> Result<(), WriteError> {
        self.call(|r| Op::Reroute(id, to, r)).await
    }

    /// A ticket and its history.
    pub async fn get(&self, id: i64) -> Result<(Ticket, Vec<HistoryEntry>), WriteError> {
        self.call(|r| Op::Get(id, r)).await
    }

    /// Appends an audit record of an event that is not a ticket's.
    pub async fn event(&self, event: Event) -> Result<i64, WriteError> {
        self.call(|r| Op::Event(Box::new(event), r)).await
    }

    /// Runs `f` on the store's thread: for what a store does that has no
    /// operation of its own here.
    pub async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn TicketStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, WriteError> {
        self.call(move |reply: Reply<T>| {
            Op::With(Box::new(move |store| {
                let _ = reply.send(f(store).map_err(Into::into));
            }))
        })
        .await
    }

    /// The open tickets of every queue.
    pub async fn stats(&self) -> Result<Vec<QueueStats>, WriteError> {
        self.call(Op::Stats).await
    }
}

fn run(store: Box<dyn TicketStore>, mut rx: mpsc::Receiver<Op>, max_batch: usize, wakers: &Wakers) {
    let mut pending: Option<Op> = None;
    loop {
        let op = match pending.take() {
            Some(op) => op,
            None => match rx.blocking_recv() {
                Some(op) => op,
                None => break,
            },
        };
        match op {
            Op::Submit(first, reply) => {
                let mut tickets = vec![*first];
                let mut replies = vec![reply];
                while tickets.len() < max_batch {
                    match rx.try_recv() {
                        Ok(Op::Submit(t, r)) => {
                            tickets.push(*t);
                            replies.push(r);
                        }
                        Ok(other) => {
                            pending = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                metrics::histogram!("minsheng_commit_batch_size").record(tickets.len() as f64);
                match store.submit_batch(&tickets, now_ms()) {
                    Ok(results) => {
                        for (t, ((id, created), reply)) in
                            tickets.iter().zip(results.into_iter().zip(replies))
                        {
                            let _ = reply.send(Ok((id, created)));
                            if created {
                                wakers.wake(&t.queue);
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, calls = tickets.len(), "commit failed; the calls are refused");
                        let e = WriteError::from(e);
                        for reply in replies {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
            Op::Lease {
                queue,
                consumer,
                lease_ms,
                reply,
            } => {
                let r = store.lease(&queue, &consumer, now_ms(), lease_ms);
                let _ = reply.send(r.map_err(Into::into));
            }
            Op::Ack(id, actor, reply) => {
                let _ = reply.send(store.ack(id, &actor, now_ms()).map_err(Into::into));
            }
            Op::Nack(id, actor, reason, reply) => {
                let r = store.nack(id, &actor, &reason, now_ms());
                if r.is_ok()
                    && let Ok((t, _)) = store.get(id)
                {
                    wakers.wake(&t.queue);
                }
                let _ = reply.send(r.map_err(Into::into));
            }
            Op::Reroute(id, to, reply) => {
                let r = store.reroute(
                    id,
                    &Reroute {
                        queue: &to.queue,
                        destination: &to.destination,
                        township: to.township.as_deref(),
                        reason: &to.reason,
                        actor: &to.actor,
                    },
                    now_ms(),
                );
                if r.is_ok() {
                    wakers.wake(&to.queue);
                }
                let _ = reply.send(r.map_err(Into::into));
            }
            Op::Get(id, reply) => {
                let _ = reply.send(store.get(id).map_err(Into::into));
            }
            Op::Event(e, reply) => {
                let r = store.audit_event(
                    e.kind,
                    &e.actor,
                    e.rules_version.as_deref(),
                    &e.detail,
                    now_ms(),
                );
                let _ = reply.send(r.map_err(Into::into));
            }
            Op::With(f) => f(&*store),
            Op::Stats(reply) => {
                let _ = reply.send(store.open_queues().map_err(Into::into));
            }
        }
    }
    drop(store);
    tracing::info!("ticket store closed");
}
