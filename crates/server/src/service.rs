//! The gRPC services: Intake, Dispatch, Tickets and Rules.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use minsheng_core::Decision;
use minsheng_proto::v1 as pb;
use minsheng_store::NewTicket;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{Guard, Need, Pass, Refused};
use crate::convert::{self, Number};
use crate::rules::{ReloadError, Rules};
use crate::writer::{RerouteTo, WriteError, Writer};

/// What every service shares.
#[derive(Debug, Clone)]
pub struct Shared {
    pub rules: Arc<Rules>,
    pub writer: Writer,
    pub max_message_bytes: usize,
    pub max_text_bytes: usize,
    pub lease_ms: i64,
    /// The ticket queues on NATS JetStream, when they are there rather
    /// than in the store.
    pub jet: Option<Arc<crate::jet::Jet>>,
    /// The ticket database, opened again read-only for audit queries so
    /// that they never hold up the store's thread.
    pub reader: crate::Reader,
    /// Becomes true when the server shuts down: open subscriptions end.
    pub stopping: watch::Receiver<bool>,
    /// Who may call what.
    pub guard: Arc<Guard>,
}

fn status(e: WriteError) -> Status {
    match e {
        WriteError::NoTicket(_) => Status::not_found(e.to_string()),
        WriteError::NotLeased(_) => Status::failed_precondition(e.to_string()),
        WriteError::Unavailable(_) => {
            Status::unavailable(format!("{e}; the call was not accepted"))
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("{e}; the call was not accepted"))
}

fn ticket_id(id: u64) -> Result<i64, Status> {
    i64::try_from(id)
        .ok()
        .filter(|&id| id > 0)
        .ok_or_else(|| Status::invalid_argument(format!("ticket_id: no ticket {id}")))
}

fn name(field: &str, value: &str) -> Result<(), Status> {
    if value.trim().is_empty() {
        return Err(Status::invalid_argument(format!(
            "{field}: missing or empty"
        )));
    }
    if value.len() > 128 {
        return Err(Status::invalid_argument(format!(
            "{field}: more than 128 bytes"
        )));
    }
    Ok(())
}

impl Shared {
    /// Records a refusal in the audit log (a limit is not recorded: a
    /// flood would fill the log) and turns it into the caller's status.
    async fn refused(&self, method: &str, r: Refused) -> Status {
        if let Some(actor) = r.actor {
            let detail = serde_json::json!({
                "method": method,
                "code": format!("{:?}", r.status.code()),
                "reason": r.status.message(),
            })
            .to_string();
            let event = crate::writer::Event {
                kind: "refused",
                actor,
                rules_version: None,
                detail,
            };
            if let Err(e) = self.writer.event(event).await {
                tracing::error!(error = %e, "a refusal could not be recorded in the audit log");
            }
        }
        r.status
    }

    /// Lets a caller in for `need`, recording a refusal.
    async fn admit<T>(
        &self,
        request: &Request<T>,
        need: Need<'_>,
        method: &str,
    ) -> Result<Pass, Status> {
        match self.guard.admit(request, need) {
            Ok(pass) => Ok(pass),
            Err(r) => Err(self.refused(method, r).await),
        }
    }

    /// Lets a consumer ack or nack a ticket of a queue it may take.
    async fn settling<T>(
        &self,
        request: &Request<T>,
        id: u64,
        method: &str,
    ) -> Result<Pass, Status> {
        let pass = self.admit(request, Need::Known, method).await?;
        if pass.name.is_some() {
            let (t, _) = self.writer.get(ticket_id(id)?).await.map_err(status)?;
            self.may(&pass, Need::Consume(&t.queue), method).await?;
        }
        Ok(pass)
    }

    /// With JetStream queues, what acknowledges the message a ticket was
    /// last delivered through.
    async fn lease_token(&self, id: i64) -> Result<Option<String>, Status> {
        if self.jet.is_none() {
            return Ok(None);
        }
        self.writer
            .with(move |s| s.lease_token(id))
            .await
            .map_err(status)
    }

    /// Checks that an admitted caller may also do `need`.
    async fn may(&self, pass: &Pass, need: Need<'_>, method: &str) -> Result<(), Status> {
        match pass.may(need) {
            Ok(()) => Ok(()),
            Err(r) => Err(self.refused(method, r).await),
        }
    }

    /// Checks and classifies a call, then queues it: the answer leaves
    /// after the commit.
    async fn submit(&self, pass: &Pass, call: pb::Call) -> Result<pb::SubmitCallResponse, Status> {
        convert::check_size(&call, self.max_message_bytes)?;
        if let Ok(h) = convert::hotline(call.hotline) {
            self.may(pass, Need::Intake(h), "Intake.SubmitCall").await?;
        }
        let loaded = self.rules.current();
        let checked = convert::check_call(call, true, self.max_text_bytes, &loaded)?;
        let started = Instant::now();
        let decision = loaded.classifier.classify(&checked.call);
        metrics::histogram!("minsheng_decision_seconds").record(started.elapsed().as_secs_f64());
        let hotline = checked.call.hotline.as_str();
        let ticket = NewTicket {
            hotline: hotline.to_owned(),
            call_id: checked.call.id.clone().unwrap_or_default(),
            queue: decision.queue.clone(),
            destination: decision.destination.clone(),
            township: decision.township.as_ref().map(|t| t.code.to_string()),
            urgency: convert::urgency_rank(decision.urgency),
            decision: serde_json::to_string(&decision)
                .map_err(|e| Status::internal(format!("decision: {e}")))?,
            rules: decision.fired.iter().map(|f| f.id.clone()).collect(),
            rules_version: decision.rules_version.clone(),
            call: minsheng_store::CallRecord {
                caller_number: checked.caller_number,
                text: minsheng_classify::normalize(&checked.call.text),
                location: checked.call.location.clone().unwrap_or_default(),
                call_taker: checked.call_taker,
                received_at: checked.received_at,
            },
            actor: pass.actor(&format!("intake:{hotline}")),
        };
        if let Some(jet) = &self.jet {
            jet.check_up().map_err(unavailable)?;
        }
        // Its message, made before the ticket moves to the store's thread;
        // the id is known once it is committed.
        let queued = self
            .jet
            .is_some()
            .then(|| minsheng_store::Outgoing::queued(0, &ticket));
        let (id, created) = self.writer.submit(ticket).await.map_err(status)?;
        if let (Some(jet), Some(queued)) = (&self.jet, queued) {
            // Answered only once JetStream holds it too. A retry of a call
            // whose publish failed publishes it now.
            let out = if created {
                Some(minsheng_store::Outgoing { id, ..queued })
            } else {
                let out = self
                    .writer
                    .with(move |s| s.outgoing(id))
                    .await
                    .map_err(status)?;
                (out.open && !out.published).then_some(out)
            };
            if let Some(out) = out {
                jet.publish(&out).await.map_err(unavailable)?;
            }
        }
        let decision = if created {
            metrics::counter!(
                "minsheng_calls_total",
                "hotline" => hotline,
                "destination" => decision.destination.clone()
            )
            .increment(1);
            tracing::debug!(
                ticket = id,
                hotline,
                destination = %decision.destination,
                queue = %decision.queue,
                urgency = %decision.urgency,
                rules_version = loaded.classifier.rules().short_version(),
                "call accepted"
            );
            decision
        } else {
            metrics::counter!("minsheng_duplicate_calls_total", "hotline" => hotline).increment(1);
            let (stored, _) = self.writer.get(id).await.map_err(status)?;
            serde_json::from_str::<Decision>(&stored.decision)
                .map_err(|e| Status::internal(format!("stored decision of ticket {id}: {e}")))?
        };
        Ok(pb::SubmitCallResponse {
            ticket_id: id as u64,
            decision: Some(convert::decision(&decision)),
            duplicate: !created,
        })
    }
}

/// `minsheng.v1.Intake`.
#[derive(Debug, Clone)]
pub struct Intake(pub Shared);

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::intake_server::Intake for Intake {
    async fn submit_call(
        &self,
        request: Request<pb::Call>,
    ) -> Result<Response<pb::SubmitCallResponse>, Status> {
        let pass = self
            .0
            .admit(&request, Need::AnyIntake, "Intake.SubmitCall")
            .await?;
        self.0
            .submit(&pass, request.into_inner())
            .await
            .map(Response::new)
    }

    type StreamCallsStream = BoxStream<pb::StreamCallsResponse>;

    async fn stream_calls(
        &self,
        request: Request<Streaming<pb::Call>>,
    ) -> Result<Response<Self::StreamCallsStream>, Status> {
        let pass = Arc::new(
            self.0
                .admit(&request, Need::AnyIntake, "Intake.StreamCalls")
                .await?,
        );
        let mut inbound = request.into_inner();
        // Calls of one stream are worked on together (up to 64 at a time,
        // so that they share commits) and answered in the order sent.
        let (pending_tx, mut pending_rx) = mpsc::channel(64);
        let (out_tx, out_rx) = mpsc::channel(64);
        let shared = self.0.clone();
        tokio::spawn(async move {
            while let Some(next) = inbound.next().await {
                let call = match next {
                    Ok(call) => call,
                    Err(status) => {
                        tracing::debug!(%status, "call stream ended with an error");
                        break;
                    }
                };
                let shared = shared.clone();
                let pass = pass.clone();
                let call_id = call.call_id.clone();
                let work = tokio::spawn(async move {
                    let submitted = match shared.guard.charge(&pass) {
                        Ok(()) => shared.submit(&pass, call).await,
                        Err(r) => Err(r.status),
                    };
                    let result = match submitted {
                        Ok(accepted) => pb::stream_calls_response::Result::Accepted(accepted),
                        Err(s) => pb::stream_calls_response::Result::Error(pb::CallError {
                            code: s.code() as i32,
                            message: s.message().to_owned(),
                        }),
                    };
                    pb::StreamCallsResponse {
                        call_id,
                        result: Some(result),
                    }
                });
                if pending_tx.send(work).await.is_err() {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            while let Some(work) = pending_rx.recv().await {
                let answer = work
                    .await
                    .map_err(|e| Status::internal(format!("call task failed: {e}")));
                if out_tx.send(answer).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }

    async fn classify(&self, request: Request<pb::Call>) -> Result<Response<pb::Decision>, Status> {
        let s = &self.0;
        let _pass = s
            .admit(&request, Need::AnyIntake, "Intake.Classify")
            .await?;
        let call = request.into_inner();
        convert::check_size(&call, s.max_message_bytes)?;
        let loaded = s.rules.current();
        let checked = convert::check_call(call, false, s.max_text_bytes, &loaded)?;
        let d = loaded.classifier.classify(&checked.call);
        Ok(Response::new(convert::decision(&d)))
    }
}

/// `minsheng.v1.Dispatch`.
#[derive(Debug, Clone)]
pub struct Dispatch(pub Shared);

/// How often a waiting subscription looks for leases that ended.
const EXPIRY_POLL: Duration = Duration::from_millis(500);

#[tonic::async_trait]
impl pb::dispatch_server::Dispatch for Dispatch {
    type SubscribeStream = BoxStream<pb::Delivery>;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let s = self.0.clone();
        let pass = s
            .admit(
                &request,
                Need::Consume(&request.get_ref().queue),
                "Dispatch.Subscribe",
            )
            .await?;
        let subscription = match s.guard.subscription(&pass) {
            Ok(permit) => permit,
            Err(r) => return Err(s.refused("Dispatch.Subscribe", r).await),
        };
        let mut req = request.into_inner();
        name("consumer", &req.consumer)?;
        req.consumer = pass.actor(&req.consumer);
        let dead_letter = s.jet.is_some() && req.queue == crate::jet::DEAD_LETTER;
        if !s.rules.current().queues.contains(&req.queue) && !dead_letter {
            return Err(Status::not_found(format!(
                "queue: no queue {:?} (a destination's queue, township.<code> or township.unassigned)",
                req.queue
            )));
        }
        let lease_ms = match req.lease_seconds {
            0 => s.lease_ms,
            n if s.jet.is_some() && i64::from(n) * 1000 != s.lease_ms => {
                return Err(Status::invalid_argument(format!(
                    "lease_seconds: on NATS JetStream the lease is the queue's ack-wait, store.lease_seconds = {}; leave it 0",
                    s.lease_ms / 1000
                )));
            }
            n => i64::from(n) * 1000,
        };
        tracing::info!(queue = %req.queue, consumer = %req.consumer, "consumer subscribed");
        if let Some(jet) = s.jet.clone() {
            return Ok(Response::new(deliver_from_jetstream(
                s,
                jet,
                req,
                subscription,
            )));
        }
        // Capacity 1, and a ticket is leased only once there is room for
        // it: a slow consumer holds back its own deliveries, nothing else.
        let (tx, rx) = mpsc::channel(1);
        let waker = s.writer.wakers.get(&req.queue);
        let mut stopping = s.stopping.clone();
        tokio::spawn(async move {
            let _subscription = subscription;
            loop {
                if *stopping.borrow() {
                    break;
                }
                let permit = tokio::select! {
                    p = tx.reserve() => match p { Ok(p) => p, Err(_) => break },
                    _ = stopping.changed() => break,
                };
                let notified = waker.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                match s.writer.lease(&req.queue, &req.consumer, lease_ms).await {
                    Ok(Some(t)) => permit.send(Ok(delivery(&req.queue, &t))),
                    Ok(None) => {
                        drop(permit);
                        tokio::select! {
                            _ = notified => {}
                            _ = tokio::time::sleep(EXPIRY_POLL) => {}
                            _ = tx.closed() => break,
                            _ = stopping.changed() => break,
                        }
                    }
                    Err(e) => {
                        permit.send(Err(status(e)));
                        break;
                    }
                }
            }
            tracing::info!(queue = %req.queue, consumer = %req.consumer, "subscription ended");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn ack(
        &self,
        request: Request<pb::AckRequest>,
    ) -> Result<Response<pb::AckResponse>, Status> {
        let pass = self
            .0
            .settling(&request, request.get_ref().ticket_id, "Dispatch.Ack")
            .await?;
        let r = request.into_inner();
        name("consumer", &r.consumer)?;
        let id = ticket_id(r.ticket_id)?;
        let token = self.0.lease_token(id).await?;
        self.0
            .writer
            .ack(id, &pass.actor(&r.consumer))
            .await
            .map_err(status)?;
        if let (Some(jet), Some(token)) = (&self.0.jet, token) {
            // Recorded; if JetStream does not hear of it, the message comes
            // back after ack-wait and is found acknowledged.
            if let Err(e) = jet.ack(&token).await {
                tracing::warn!(ticket = id, error = %e, "ack not passed to JetStream");
            }
        }
        Ok(Response::new(pb::AckResponse {}))
    }

    async fn nack(
        &self,
        request: Request<pb::NackRequest>,
    ) -> Result<Response<pb::NackResponse>, Status> {
        let pass = self
            .0
            .settling(&request, request.get_ref().ticket_id, "Dispatch.Nack")
            .await?;
        let r = request.into_inner();
        name("consumer", &r.consumer)?;
        let id = ticket_id(r.ticket_id)?;
        let token = self.0.lease_token(id).await?;
        self.0
            .writer
            .nack(id, &pass.actor(&r.consumer), &r.reason)
            .await
            .map_err(status)?;
        if let (Some(jet), Some(token)) = (&self.0.jet, token) {
            // Recorded; if JetStream does not hear of it, the message comes
            // back after ack-wait all the same.
            if let Err(e) = jet.nak(&token).await {
                tracing::warn!(ticket = id, error = %e, "nack not passed to JetStream");
            }
        }
        Ok(Response::new(pb::NackResponse {}))
    }

    async fn reroute(
        &self,
        request: Request<pb::RerouteRequest>,
    ) -> Result<Response<pb::RerouteResponse>, Status> {
        let pass = self
            .0
            .admit(&request, Need::Dispatch, "Dispatch.Reroute")
            .await?;
        let mut r = request.into_inner();
        let id = ticket_id(r.ticket_id)?;
        name("actor", &r.actor)?;
        r.actor = pass.actor(&r.actor);
        name("reason", &r.reason)?;
        let loaded = self.0.rules.current();
        let classifier = &loaded.classifier;
        let Some(dest) = classifier.rules().destination_index(&r.destination) else {
            let known: Vec<&str> = classifier
                .rules()
                .destinations
                .iter()
                .map(|d| d.name.as_str())
                .collect();
            return Err(Status::invalid_argument(format!(
                "destination: no destination {:?} (one of {})",
                r.destination,
                known.join(", ")
            )));
        };
        let township = if r.township_code.is_empty() {
            None
        } else {
            let code: minsheng_core::TownshipCode = r
                .township_code
                .parse()
                .map_err(|e| Status::invalid_argument(format!("township_code: {e}")))?;
            if classifier.gazetteer().get(&code).is_none() {
                return Err(Status::invalid_argument(format!(
                    "township_code: no township {code} in the gazetteer"
                )));
            }
            Some(code)
        };
        let to = RerouteTo {
            queue: classifier.queue_for(dest, township.as_ref()),
            destination: r.destination.clone(),
            township: township.map(|c| c.to_string()),
            reason: r.reason,
            actor: r.actor,
        };
        tracing::info!(ticket = id, queue = %to.queue, actor = %to.actor, "ticket rerouted");
        let token = self.0.lease_token(id).await?;
        self.0.writer.reroute(id, to).await.map_err(status)?;
        if let Some(jet) = &self.0.jet {
            // The move is recorded; if this publish fails the sweep makes it.
            match self.0.writer.with(move |s| s.outgoing(id)).await {
                Ok(out) => {
                    if let Err(e) = jet.publish(&out).await {
                        tracing::warn!(ticket = id, error = %e, "rerouted ticket not yet published");
                    }
                }
                Err(e) => {
                    tracing::warn!(ticket = id, error = %e, "rerouted ticket not yet published")
                }
            }
            // The message it was leased through is done with.
            if let Some(token) = token
                && let Err(e) = jet.ack(&token).await
            {
                tracing::debug!(ticket = id, error = %e, "old message of a rerouted ticket");
            }
        }
        let (t, _) = self.0.writer.get(id).await.map_err(status)?;
        Ok(Response::new(pb::RerouteResponse {
            ticket: Some(convert::ticket(&t, Number::Masked)),
        }))
    }
}

/// A leased ticket as its consumer receives it (the number whole: the
/// delivered record says who saw it); a redelivery is counted.
fn delivery(queue: &str, t: &minsheng_store::Ticket) -> pb::Delivery {
    if t.deliveries > 1 {
        metrics::counter!("minsheng_redeliveries_total", "queue" => queue.to_owned()).increment(1);
    }
    pb::Delivery {
        ticket: Some(convert::ticket(t, Number::Whole)),
        lease_until: t.lease_until.map(convert::timestamp),
    }
}

/// How long a subscription waits before trying NATS again.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// A subscription on JetStream: each message fetched only once the
/// consumer's stream has room for it, leased in the store, then sent.
/// While NATS is down the subscription waits and tries again.
fn deliver_from_jetstream(
    s: Shared,
    jet: Arc<crate::jet::Jet>,
    req: pb::SubscribeRequest,
    subscription: Option<tokio::sync::OwnedSemaphorePermit>,
) -> BoxStream<pb::Delivery> {
    let (tx, rx) = mpsc::channel(1);
    let mut stopping = s.stopping.clone();
    tokio::spawn(async move {
        let _subscription = subscription;
        let mut warned = false;
        let mut waker: Option<async_nats::Subscriber> = None;
        loop {
            if *stopping.borrow() {
                break;
            }
            let permit = tokio::select! {
                p = tx.reserve() => match p { Ok(p) => p, Err(_) => break },
                _ = stopping.changed() => break,
            };
            // Watching before looking: a ticket published after the look
            // found nothing still wakes the wait below.
            if waker.is_none() {
                waker = jet.waker(&req.queue).await.ok();
            }
            if let Some(w) = waker.as_mut() {
                while let Ok(Some(_)) = tokio::time::timeout(Duration::ZERO, w.next()).await {}
            }
            let next = tokio::select! {
                n = jet.next(&req.queue) => n,
                _ = tx.closed() => break,
                _ = stopping.changed() => break,
            };
            let taken = match next {
                Ok(None) => {
                    drop(permit);
                    // Woken by a new ticket, or after a while for tickets
                    // given back or whose lease ended.
                    let woken = async {
                        match waker.as_mut() {
                            Some(w) => {
                                if w.next().await.is_none() {
                                    waker = None;
                                }
                            }
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        _ = woken => {}
                        _ = tokio::time::sleep(EXPIRY_POLL) => {}
                        _ = tx.closed() => break,
                        _ = stopping.changed() => break,
                    }
                    continue;
                }
                Ok(Some(incoming)) => {
                    jet.take(&s.writer, &req.queue, &req.consumer, incoming)
                        .await
                }
                Err(e) => Err(e.into()),
            };
            match taken {
                Ok(Some(t)) => {
                    warned = false;
                    permit.send(Ok(delivery(&req.queue, &t)));
                }
                Ok(None) => {}
                Err(e) => {
                    // The message, if any, comes back after ack-wait.
                    if !warned {
                        tracing::warn!(queue = %req.queue, error = %e, "delivery paused");
                        warned = true;
                    }
                    drop(permit);
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY_AFTER) => {}
                        _ = tx.closed() => break,
                        _ = stopping.changed() => break,
                    }
                }
            }
        }
        tracing::info!(queue = %req.queue, consumer = %req.consumer, "subscription ended");
    });
    Box::pin(ReceiverStream::new(rx))
}

/// `minsheng.v1.Tickets`.
#[derive(Debug, Clone)]
pub struct Tickets(pub Shared);

#[tonic::async_trait]
impl pb::tickets_server::Tickets for Tickets {
    async fn get(
        &self,
        request: Request<pb::GetTicketRequest>,
    ) -> Result<Response<pb::GetTicketResponse>, Status> {
        let _pass = self
            .0
            .admit(&request, Need::ReadTicket, "Tickets.Get")
            .await?;
        let id = ticket_id(request.into_inner().ticket_id)?;
        let (t, history) = self.0.writer.get(id).await.map_err(status)?;
        Ok(Response::new(pb::GetTicketResponse {
            ticket: Some(convert::ticket(&t, Number::Masked)),
            history: history.iter().map(convert::history).collect(),
        }))
    }
}

/// `minsheng.v1.Rules`.
#[derive(Debug, Clone)]
pub struct RulesService(pub Shared);

fn info(rules: &Rules, loaded: &crate::rules::Loaded) -> pb::RulesInfo {
    let r = loaded.classifier.rules();
    pb::RulesInfo {
        version: r.version.clone(),
        destinations: r.destinations.len() as u32,
        rules: r.rules.len() as u32,
        lists: r.lists.len() as u32,
        examples: r.examples.len() as u32,
        loaded_at: Some(convert::system_time(loaded.loaded_at)),
        source: rules.source(),
    }
}

#[tonic::async_trait]
impl pb::rules_server::Rules for RulesService {
    async fn reload(
        &self,
        request: Request<pb::ReloadRequest>,
    ) -> Result<Response<pb::ReloadResponse>, Status> {
        let rules = &self.0.rules;
        let pass = self
            .0
            .admit(&request, Need::RulesAdmin, "Rules.Reload")
            .await?;
        let actor = match request.remote_addr() {
            Some(addr) => pass.actor(&format!("client {addr}")),
            None => pass.actor("client"),
        };
        match crate::reload_recorded(rules, &self.0.writer, "Rules.Reload", &actor).await {
            Ok(done) => Ok(Response::new(pb::ReloadResponse {
                info: Some(info(rules, &done.loaded)),
                changed: done.changed,
                warnings: done.loaded.warnings.clone(),
            })),
            Err(e @ (ReloadError::Invalid(_) | ReloadError::BuiltIn)) => {
                Err(Status::failed_precondition(e.to_string()))
            }
            Err(e @ ReloadError::Read(_)) => Err(Status::unavailable(e.to_string())),
        }
    }

    async fn info(
        &self,
        request: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::RulesInfo>, Status> {
        let _pass = self.0.admit(&request, Need::Known, "Rules.Info").await?;
        let rules = &self.0.rules;
        Ok(Response::new(info(rules, &rules.current())))
    }
}

/// `minsheng.v1.Audit`.
#[derive(Debug, Clone)]
pub struct Audit(pub Shared);

fn audit_record(r: minsheng_store::AuditRecord) -> pb::AuditRecord {
    pb::AuditRecord {
        seq: r.seq as u64,
        at: Some(convert::timestamp(r.at)),
        kind: r.kind,
        actor: r.actor,
        ticket_id: r.ticket_id.unwrap_or(0) as u64,
        call_id: r.call_id.unwrap_or_default(),
        hotline: r.hotline.unwrap_or_default(),
        queue: r.queue.unwrap_or_default(),
        destination: r.destination.unwrap_or_default(),
        township_code: r.township.unwrap_or_default(),
        rules: r.rules,
        rules_version: r.rules_version.unwrap_or_default(),
        detail: r.detail,
        prev_hash: r.prev_hash,
        hash: r.hash,
    }
}

fn millis(t: &prost_types::Timestamp) -> i64 {
    t.seconds.saturating_mul(1000) + i64::from(t.nanos / 1_000_000)
}

async fn open_reader(s: &Shared) -> Result<Box<dyn minsheng_store::TicketStore>, Status> {
    let reader = s.reader.clone();
    tokio::task::spawn_blocking(move || reader.open())
        .await
        .map_err(|e| Status::internal(format!("audit reader task: {e}")))?
        .map_err(|e| Status::unavailable(format!("audit log: {e}")))
}

#[tonic::async_trait]
impl pb::audit_server::Audit for Audit {
    type QueryStream = BoxStream<pb::AuditRecord>;

    async fn query(
        &self,
        request: Request<pb::AuditQueryRequest>,
    ) -> Result<Response<Self::QueryStream>, Status> {
        let _pass = self.0.admit(&request, Need::Audit, "Audit.Query").await?;
        let q = request.into_inner();
        let text = |s: String| (!s.is_empty()).then_some(s);
        let filter = minsheng_store::Filter {
            from: q.from.as_ref().map(millis),
            to: q.to.as_ref().map(millis),
            call_id: text(q.call_id),
            ticket_id: (q.ticket_id > 0).then_some(q.ticket_id as i64),
            destination: text(q.destination),
            township: text(q.township_code),
            rule: text(q.rule_id),
            actor: text(q.actor),
            kind: text(q.kind),
        };
        let limit = if q.limit == 0 {
            usize::MAX
        } else {
            q.limit as usize
        };
        // Opened on a blocking thread: a database client may block.
        let store = open_reader(&self.0).await?;
        let (tx, rx) = mpsc::channel(64);
        tokio::task::spawn_blocking(move || {
            let mut sent = 0;
            let walked = store.audit_query(&filter, &mut |r| {
                sent += 1;
                tx.blocking_send(Ok(audit_record(r))).is_ok() && sent < limit
            });
            if let Err(e) = walked {
                let _ = tx.blocking_send(Err(Status::unavailable(format!("audit log: {e}"))));
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn verify(
        &self,
        request: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        let _pass = self.0.admit(&request, Need::Audit, "Audit.Verify").await?;
        let store = open_reader(&self.0).await?;
        let verified = tokio::task::spawn_blocking(move || store.audit_verify())
            .await
            .map_err(|e| Status::internal(format!("verify task: {e}")))?
            .map_err(|e| Status::unavailable(format!("audit log: {e}")))?;
        Ok(Response::new(match verified {
            minsheng_store::Verified::Intact { records, head } => pb::VerifyResponse {
                intact: true,
                records: records as u64,
                head_hash: head,
                ..Default::default()
            },
            minsheng_store::Verified::Broken { seq, problem } => pb::VerifyResponse {
                intact: false,
                broken_seq: seq as u64,
                problem,
                ..Default::default()
            },
        }))
    }
}
