//! Ticket queues on NATS JetStream, for several nodes behind a load
//! balancer: PostgreSQL keeps the tickets and the audit chain, JetStream
//! delivers them.
//!
//! One stream (work-queue retention, file storage) holds the subjects of
//! every queue, `<prefix>.police.*`, `<prefix>.township.330402011.*`…: one
//! per urgency (`.u3` critical … `.u0` routine), each with one durable
//! pull consumer with explicit acks, shared by every node and every
//! subscriber of that queue, whose ack-wait is the lease. A subscription
//! takes from the most urgent subject that has a message, so a queue is
//! delivered most urgent first, then oldest first, as in the store. A
//! message carries a ticket id, and its `Nats-Msg-Id` is the hotline and
//! call id (and the move, after a reroute), so a retried publish is not a
//! second message.
//!
//! The order of a change, so that nothing answered is lost:
//!
//! - intake commits the ticket in PostgreSQL, publishes it, and answers
//!   only once JetStream has stored the message; if the publish fails the
//!   caller gets UNAVAILABLE, and the ticket (committed, marked as not
//!   published) is published by the caller's retry or by the sweep
//!   ([`sweep`]) that every node runs;
//! - a delivered message is leased in PostgreSQL before the consumer sees
//!   it; a message of a ticket acknowledged, moved, or leased through
//!   another message is stale and acknowledged unseen;
//! - an ack or nack is recorded in PostgreSQL first, then passed to
//!   JetStream; if that fails the message comes back after ack-wait and is
//!   found stale (acked) or delivered again (nacked), as promised;
//! - a message delivered more than `max_deliver` times moves its ticket to
//!   the `dead_letter` queue (a reroute, in the audit log) and is acked.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use minsheng_store::{Delivered, Outgoing, Taken};
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;

use crate::config::QueueConfig;
use crate::writer::{Writer, now_ms};

/// The queue that tickets delivered too often without an ack move to.
pub const DEAD_LETTER: &str = "dead_letter";

/// The rank of the most urgent calls (critical); routine is 0.
const MOST_URGENT: i64 = 3;

/// How often each node looks for tickets a failed publish left out.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// A ticket is swept only once it is this old: younger ones are most
/// likely being published by the node that took them.
const SWEEP_AFTER_MS: i64 = 10_000;

/// Why the queues cannot be used now.
#[derive(Debug, Clone, thiserror::Error)]
#[error("ticket queues (NATS JetStream): {0}")]
pub struct JetError(pub String);

fn jet_error(what: &str, e: impl std::fmt::Display) -> JetError {
    JetError(format!("{what}: {e}"))
}

/// The JetStream side of the queues; shared by the services.
pub struct Jet {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: stream::Stream,
    prefix: String,
    /// The lease: the consumers' ack-wait.
    pub ack_wait: Duration,
    /// Deliveries of one message before its ticket is dead-lettered.
    pub max_deliver: i64,
    consumers: Mutex<HashMap<(String, i64), consumer::PullConsumer>>,
    marks: mpsc::UnboundedSender<(i64, i64)>,
}

impl std::fmt::Debug for Jet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jet")
            .field("prefix", &self.prefix)
            .field("ack_wait", &self.ack_wait)
            .finish_non_exhaustive()
    }
}

/// A message delivered to a subscriber, not yet leased.
pub struct Incoming {
    /// The ticket it carries.
    pub id: i64,
    /// Its reply subject, which acknowledges it.
    pub token: String,
    /// Its sequence number in the stream.
    pub message: i64,
    /// How often JetStream has delivered it.
    pub delivered: i64,
}

impl Jet {
    /// Connects, and creates the stream if it is missing. Marks of
    /// published tickets are recorded through `writer`.
    pub async fn connect(
        config: &QueueConfig,
        lease: Duration,
        writer: Writer,
    ) -> Result<Jet, JetError> {
        let timeout = Duration::from_millis(config.publish_timeout_ms);
        let secret = |key: &str, var: &str| {
            std::env::var(var).map_err(|_| {
                JetError(format!(
                    "queue.{key}: the environment variable {var} is not set"
                ))
            })
        };
        let mut options = match (
            &config.nats_token_env,
            &config.nats_user,
            &config.nats_password_env,
        ) {
            (Some(var), _, _) => {
                async_nats::ConnectOptions::with_token(secret("nats_token_env", var)?)
            }
            (None, Some(user), Some(var)) => async_nats::ConnectOptions::with_user_and_password(
                user.clone(),
                secret("nats_password_env", var)?,
            ),
            _ => async_nats::ConnectOptions::new(),
        };
        if let Some(ca) = &config.nats_tls_ca {
            options = options.require_tls(true).add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&config.nats_tls_cert, &config.nats_tls_key) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        let client = options
            .name("minsheng")
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(timeout))
            .connect(config.nats_url.as_str())
            .await
            .map_err(|e| jet_error(&format!("connecting to {}", config.nats_url), e))?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(timeout);
        let stream = js
            .get_or_create_stream(stream::Config {
                name: config.stream.clone(),
                subjects: vec![format!("{}.>", config.subject_prefix)],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                duplicate_window: Duration::from_secs(u64::from(config.duplicate_window_seconds)),
                ..Default::default()
            })
            .await
            .map_err(|e| jet_error(&format!("stream {}", config.stream), e))?;
        let (marks, rx) = mpsc::unbounded_channel();
        tokio::spawn(record_marks(rx, writer));
        Ok(Jet {
            client,
            js,
            stream,
            prefix: config.subject_prefix.clone(),
            ack_wait: lease,
            max_deliver: i64::from(config.max_deliver),
            consumers: Mutex::new(HashMap::new()),
            marks,
        })
    }

    /// Whether the connection to NATS is up now.
    pub fn is_up(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Refuses at once while NATS is unreachable, so that no call is
    /// committed that cannot be queued.
    pub fn check_up(&self) -> Result<(), JetError> {
        if self.is_up() {
            Ok(())
        } else {
            Err(JetError("NATS is unreachable; retry later".into()))
        }
    }

    /// The subjects of a queue, one per urgency: `<prefix>.<queue>.u3`
    /// (critical) … `.u0` (routine).
    fn subject(&self, queue: &str, urgency: i64) -> String {
        format!("{}.{queue}.u{urgency}", self.prefix)
    }

    /// Publishes a ticket to its queue and waits until JetStream has
    /// stored it; then records, in the background, that it is published.
    pub async fn publish(&self, out: &Outgoing) -> Result<(), JetError> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, out.message_id.as_str());
        let urgency = out.urgency.clamp(0, MOST_URGENT);
        let ack = self
            .js
            .publish_with_headers(
                self.subject(&out.queue, urgency),
                headers,
                out.id.to_string().into(),
            )
            .await
            .map_err(|e| jet_error("publishing", e))?;
        let ack = ack.await.map_err(|e| jet_error("publishing", e))?;
        tracing::trace!(
            ticket = out.id,
            seq = ack.sequence,
            duplicate = ack.duplicate,
            "published"
        );
        let _ = self.marks.send((out.id, out.moves));
        Ok(())
    }

    /// The durable consumer of one urgency of a queue, created on first
    /// use.
    async fn consumer(
        &self,
        queue: &str,
        urgency: i64,
    ) -> Result<consumer::PullConsumer, JetError> {
        let key = (queue.to_owned(), urgency);
        if let Some(c) = self
            .consumers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(c.clone());
        }
        // Consumer names may not hold dots.
        let name = format!("{}_u{urgency}", queue.replace('.', "_"));
        let c: consumer::PullConsumer = self
            .stream
            .get_or_create_consumer(
                &name,
                consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: self.subject(queue, urgency),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: self.ack_wait,
                    // minsheng dead-letters past `max_deliver` itself, so
                    // JetStream must never stop delivering first.
                    max_deliver: -1,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| jet_error(&format!("consumer of {queue}"), e))?;
        self.consumers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, c.clone());
        Ok(c)
    }

    /// Wakes a subscription when a ticket is published to its queue (a
    /// plain subscription to the queue's subjects: it sees each message
    /// as JetStream stores it, and takes nothing).
    pub async fn waker(&self, queue: &str) -> Result<async_nats::Subscriber, JetError> {
        self.client
            .subscribe(format!("{}.{queue}.*", self.prefix))
            .await
            .map_err(|e| jet_error(&format!("watching {queue}"), e))
    }

    /// The next message of a queue, without waiting: the most urgent
    /// first, then the oldest.
    pub async fn next(&self, queue: &str) -> Result<Option<Incoming>, JetError> {
        for urgency in (0..=MOST_URGENT).rev() {
            if let Some(m) = self.next_of(queue, urgency).await? {
                return Ok(Some(m));
            }
        }
        Ok(None)
    }

    async fn next_of(&self, queue: &str, urgency: i64) -> Result<Option<Incoming>, JetError> {
        let consumer = self.consumer(queue, urgency).await?;
        // After a failed fetch the consumer is looked up (or made) again:
        // it may have gone with its stream.
        let forget = |e: &dyn std::fmt::Display| {
            self.consumers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&(queue.to_owned(), urgency));
            jet_error(&format!("fetching from {queue}"), e)
        };
        // `fetch` does not wait: what is there now, or nothing.
        let mut batch = consumer
            .fetch()
            .max_messages(1)
            .messages()
            .await
            .map_err(|e| forget(&e))?;
        let Some(message) = batch.next().await else {
            return Ok(None);
        };
        let message = message.map_err(|e| forget(&e))?;
        let info = message
            .info()
            .map_err(|e| jet_error("a message without delivery information", e))?;
        let (message_seq, delivered) = (info.stream_sequence as i64, info.delivered);
        let token = message
            .reply
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default();
        let text = std::str::from_utf8(&message.payload).unwrap_or("");
        match text.parse::<i64>() {
            Ok(id) => Ok(Some(Incoming {
                id,
                token,
                message: message_seq,
                delivered,
            })),
            Err(_) => {
                // Not minsheng's: no ticket can be made of it. It is
                // removed, so that it does not block the queue forever.
                tracing::warn!(
                    queue,
                    seq = message_seq,
                    "a message that is not a ticket id; removed"
                );
                self.ack(&token).await?;
                Ok(None)
            }
        }
    }

    /// Acknowledges a message for good, waiting for JetStream's answer.
    pub async fn ack(&self, token: &str) -> Result<(), JetError> {
        self.client
            .request(token.to_owned(), "+ACK".into())
            .await
            .map(drop)
            .map_err(|e| jet_error("acknowledging", e))
    }

    /// Gives a message back for delivery now.
    pub async fn nak(&self, token: &str) -> Result<(), JetError> {
        self.client
            .request(token.to_owned(), "-NAK".into())
            .await
            .map(drop)
            .map_err(|e| jet_error("giving back", e))
    }

    /// Hands a delivered message to `consumer`: leases its ticket in the
    /// store, or acknowledges a stale message, or dead-letters a ticket
    /// delivered too often. `Ok(None)`: nothing to hand over.
    pub async fn take(
        &self,
        writer: &Writer,
        queue: &str,
        consumer: &str,
        incoming: Incoming,
    ) -> Result<Option<minsheng_store::Ticket>, TakeError> {
        if self.max_deliver > 0 && incoming.delivered > self.max_deliver {
            self.dead_letter(writer, queue, &incoming).await?;
            return Ok(None);
        }
        let (queue_owned, consumer_owned, token) = (
            queue.to_owned(),
            consumer.to_owned(),
            incoming.token.clone(),
        );
        let lease_ms = self.ack_wait.as_millis() as i64;
        let (id, message) = (incoming.id, incoming.message);
        let taken = writer
            .with(move |s| {
                s.take_delivery(
                    &Delivered {
                        id,
                        queue: &queue_owned,
                        consumer: &consumer_owned,
                        lease_ms,
                        token: &token,
                        message,
                    },
                    now_ms(),
                )
            })
            .await;
        match taken {
            Ok(Taken::Lease(t)) => Ok(Some(*t)),
            Ok(Taken::Stale(why)) => {
                tracing::debug!(ticket = id, queue, why, "stale message acknowledged");
                self.ack(&incoming.token).await?;
                Ok(None)
            }
            Err(crate::writer::WriteError::NoTicket(_)) => {
                tracing::warn!(ticket = id, queue, "a message of no ticket; removed");
                self.ack(&incoming.token).await?;
                Ok(None)
            }
            Err(e) => Err(TakeError::Store(e)),
        }
    }

    async fn dead_letter(
        &self,
        writer: &Writer,
        queue: &str,
        incoming: &Incoming,
    ) -> Result<(), TakeError> {
        let id = incoming.id;
        let (ticket, _) = writer.get(id).await.map_err(TakeError::Store)?;
        if ticket.queue == queue && ticket.state != minsheng_store::TicketState::Acked {
            let reason = format!(
                "delivered {} times from {queue} without an acknowledgement",
                incoming.delivered - 1
            );
            writer
                .reroute(
                    id,
                    crate::writer::RerouteTo {
                        queue: DEAD_LETTER.into(),
                        destination: ticket.destination.clone(),
                        township: ticket.township.clone(),
                        reason,
                        actor: "minsheng".into(),
                    },
                )
                .await
                .map_err(TakeError::Store)?;
            metrics::counter!("minsheng_dead_lettered_total", "queue" => queue.to_owned())
                .increment(1);
            tracing::warn!(ticket = id, queue, "ticket moved to the dead-letter queue");
            let out = writer
                .with(move |s| s.outgoing(id))
                .await
                .map_err(TakeError::Store)?;
            // If this publish fails, the sweep publishes the moved ticket.
            if let Err(e) = self.publish(&out).await {
                tracing::warn!(ticket = id, error = %e, "dead-lettered ticket not yet published");
            }
        }
        self.ack(&incoming.token).await?;
        Ok(())
    }
}

/// Why a delivered message could not be handed over.
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    /// NATS failed.
    #[error(transparent)]
    Jet(#[from] JetError),
    /// The store failed.
    #[error(transparent)]
    Store(crate::writer::WriteError),
}

/// Records published tickets in the store, many in one transaction.
async fn record_marks(mut rx: mpsc::UnboundedReceiver<(i64, i64)>, writer: Writer) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 1024).await > 0 {
        let marks = std::mem::take(&mut batch);
        let count = marks.len();
        if let Err(e) = writer.with(move |s| s.mark_published(&marks)).await {
            // The sweep publishes them again; JetStream drops the
            // duplicates within its window, and delivery skips the rest.
            tracing::warn!(error = %e, count, "could not record published tickets");
        }
    }
}

/// Publishes, every few seconds, the open tickets whose queue holds no
/// message of them: a publish that failed after its commit, a node that
/// died in between, a reroute not yet published.
pub fn sweep(jet: std::sync::Arc<Jet>, writer: Writer, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(SWEEP_EVERY) => {}
                _ = stop.changed() => break,
            }
            if !jet.is_up() {
                continue;
            }
            let before = now_ms() - SWEEP_AFTER_MS;
            let left = match writer.with(move |s| s.unpublished(before, 256)).await {
                Ok(left) => left,
                Err(e) => {
                    tracing::warn!(error = %e, "looking for unpublished tickets");
                    continue;
                }
            };
            let mut published = 0;
            for out in &left {
                match jet.publish(out).await {
                    Ok(()) => published += 1,
                    Err(e) => {
                        tracing::warn!(error = %e, "publishing left-out tickets");
                        break;
                    }
                }
            }
            if published > 0 {
                metrics::counter!("minsheng_republished_total").increment(published);
                tracing::info!(published, "published tickets a failed publish had left out");
            }
        }
    });
}
