//! The server end to end: the real binary on an ephemeral loopback port,
//! driven through the generated clients.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use minsheng_proto::v1 as pb;
use pb::audit_client::AuditClient;
use pb::dispatch_client::DispatchClient;
use pb::intake_client::IntakeClient;
use pb::rules_client::RulesClient;
use pb::tickets_client::TicketsClient;
use tonic::Code;
use tonic::transport::Channel;

use super::support::{fixture, root};

/// A server process with its own data directory and rule directory.
pub(super) struct Server {
    pub(super) child: Child,
    pub(super) addr: SocketAddr,
    metrics: Option<String>,
    pub(super) dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// A server on a copy of `rules` (so tests may edit it), data in a
    /// new temporary directory.
    fn start(rules: &Path) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(rules, &tmp.path().join("rules"));
        let dir = tmp.path().to_path_buf();
        let mut s = Server::start_in(&dir);
        s._tmp = Some(tmp);
        s
    }

    /// A server in `dir` (rules in `dir/rules`, data in `dir/data`).
    pub(super) fn start_in(dir: &Path) -> Server {
        Server::start_with_args(dir, &[], &[], Stdio::inherit())
    }

    /// A server in `dir` with more environment and flags, its log going
    /// to `log`.
    pub(super) fn start_with_args(
        dir: &Path,
        env: &[(&str, &str)],
        args: &[&str],
        log: Stdio,
    ) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_minsheng"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .args(args)
            .current_dir(dir)
            .env_remove("MINSHENG_RULES")
            .env("MINSHENG_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start minsheng serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split("gRPC on ")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .parse()
            .unwrap();
        let metrics = line
            .split("metrics ")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .filter(|m| m.starts_with("http"))
            .map(str::to_owned);
        Server {
            child,
            addr,
            metrics,
            dir: dir.to_path_buf(),
            _tmp: None,
        }
    }

    pub(super) async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub(super) async fn intake(&self) -> IntakeClient<Channel> {
        IntakeClient::new(self.channel().await)
    }

    pub(super) async fn dispatch(&self) -> DispatchClient<Channel> {
        DispatchClient::new(self.channel().await)
    }

    pub(super) async fn tickets(&self) -> TicketsClient<Channel> {
        TicketsClient::new(self.channel().await)
    }

    async fn rules(&self) -> RulesClient<Channel> {
        RulesClient::new(self.channel().await)
    }

    pub(super) async fn audit(&self, q: pb::AuditQueryRequest) -> Vec<pb::AuditRecord> {
        let mut stream = AuditClient::new(self.channel().await)
            .query(q)
            .await
            .unwrap()
            .into_inner();
        let mut out = Vec::new();
        while let Some(r) = stream.message().await.unwrap() {
            out.push(r);
        }
        out
    }

    pub(super) async fn verify(&self) -> pb::VerifyResponse {
        AuditClient::new(self.channel().await)
            .verify(pb::VerifyRequest {})
            .await
            .unwrap()
            .into_inner()
    }

    pub(super) fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let r = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(r, 0, "kill({signal})");
    }

    pub(super) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The store and queues a server runs on.
#[derive(Debug, Clone, Copy)]
pub(super) enum Backend {
    /// The embedded SQLite store and its own queues.
    Sqlite,
    /// PostgreSQL, its tables as the queues.
    Postgres,
    /// PostgreSQL for the records, NATS JetStream for the queues.
    Nats,
}

/// A server on a backend and what it runs on: its directory, its
/// PostgreSQL schema and its JetStream stream, removed when it is dropped
/// (the server first).
pub(super) struct Site {
    server: Server,
    _queues: Option<super::jetstream::Queues>,
    _schema: Option<super::distributed::Schema>,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Site {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

impl Site {
    /// A server on `backend`, with a copy of `rules` and leases of
    /// `lease_seconds`. `None` when the backend's services are missing
    /// outside CI: the test has said loudly that it skips.
    pub(super) async fn start(backend: Backend, rules: &Path, lease_seconds: u32) -> Option<Site> {
        let (mut queues, mut schema) = (None, None);
        let config = match backend {
            Backend::Sqlite => format!("[store]\nlease_seconds = {lease_seconds}\n"),
            Backend::Postgres => {
                if !super::distributed::database() {
                    return None;
                }
                let sc = super::distributed::new_schema("suite");
                let text = format!(
                    "[store]\nbackend = \"postgres\"\npostgres_url = \"{}\"\npostgres_schema = \"{}\"\nlease_seconds = {lease_seconds}\n",
                    super::distributed::url(),
                    sc.0
                );
                schema = Some(sc);
                text
            }
            Backend::Nats => {
                if !super::jetstream::services().await {
                    return None;
                }
                let q = super::jetstream::Queues::new("suite", &super::jetstream::nats_url());
                let text = q.config(lease_seconds, "");
                queues = Some(q);
                text
            }
        };
        let dir = tempfile::tempdir().unwrap();
        copy_dir(rules, &dir.path().join("rules"));
        std::fs::write(dir.path().join("minsheng.toml"), config).unwrap();
        Some(Site {
            server: Server::start_in(dir.path()),
            _queues: queues,
            _schema: schema,
            _dir: dir,
        })
    }
}

/// Instantiates async test bodies, each `fn(Backend)`, once per backend:
/// `NAME::sqlite`, `NAME::postgres` and `NAME::nats`.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::Backend;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(Backend::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(Backend::Postgres).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn nats() {
                    super::$name(Backend::Nats).await
                }
            }
        )*
    };
}

on_every_backend!(
    calls_of_every_destination_reach_their_queues,
    the_most_urgent_then_the_oldest_is_delivered_first,
    ack_nack_and_lease_expiry_deliver_as_promised,
    a_duplicate_call_id_is_one_ticket,
    a_reroute_moves_the_ticket_and_records_who_and_why,
    a_slow_consumer_never_blocks_intake,
);

pub(super) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

pub(super) fn call(id: &str, hotline: pb::Hotline, text: &str) -> pb::Call {
    pb::Call {
        call_id: id.into(),
        hotline: hotline as i32,
        caller_number: "13812345678".into(),
        text: text.into(),
        call_taker: "taker-9".into(),
        ..Default::default()
    }
}

pub(super) fn mini() -> PathBuf {
    fixture("mini")
}

/// The next delivery of a subscription, failing after 10 s.
pub(super) async fn next(stream: &mut tonic::Streaming<pb::Delivery>) -> pb::Ticket {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a delivery within 10 s")
        .expect("no stream error")
        .expect("the stream is open")
        .ticket
        .unwrap()
}

/// Asserts nothing is delivered within `wait`.
pub(super) async fn nothing(stream: &mut tonic::Streaming<pb::Delivery>, wait: Duration) {
    if let Ok(got) = tokio::time::timeout(wait, stream.message()).await {
        panic!("expected no delivery, got {got:?}");
    }
}

pub(super) async fn subscribe(
    s: &Server,
    queue: &str,
    lease_seconds: u32,
) -> tonic::Streaming<pb::Delivery> {
    s.dispatch()
        .await
        .subscribe(pb::SubscribeRequest {
            queue: queue.into(),
            consumer: format!("test-consumer-{queue}"),
            lease_seconds,
        })
        .await
        .unwrap()
        .into_inner()
}

/// A call for each destination, with the queue it must reach: (call id,
/// hotline, text, location, queue).
pub(super) const EVERY_DESTINATION: [(&str, pb::Hotline, &str, &str, &str); 5] = [
    (
        "p-1",
        pb::Hotline::Hotline12345,
        "有人拿刀",
        "",
        "dispatch.police",
    ),
    (
        "c-1",
        pb::Hotline::Hotline110,
        "我要起诉他",
        "",
        "court.shared",
    ),
    (
        "t-1",
        pb::Hotline::Hotline110,
        "楼上现在在吵架",
        "桐乡市乌镇镇石佛南路",
        "township.330483100",
    ),
    (
        "t-2",
        pb::Hotline::App,
        "楼上现在在吵架",
        "",
        "township.unassigned",
    ),
    (
        "h-1",
        pb::Hotline::Hotline12345,
        "社保怎么交",
        "",
        "workorder.12345",
    ),
];

async fn calls_of_every_destination_reach_their_queues(backend: Backend) {
    let Some(s) = Site::start(backend, &mini(), 30).await else {
        return;
    };
    let mut intake = s.intake().await;
    let cases = EVERY_DESTINATION;
    let mut ids = Vec::new();
    for (id, hotline, text, location, queue) in cases {
        let r = intake
            .submit_call(pb::Call {
                location: location.into(),
                ..call(id, hotline, text)
            })
            .await
            .unwrap()
            .into_inner();
        let d = r.decision.unwrap();
        assert_eq!(d.queue, queue, "{text}");
        assert!(!r.duplicate);
        assert!(!d.fired.is_empty() && !d.rules_version.is_empty(), "{d:?}");
        ids.push((r.ticket_id, queue));
    }
    let police = intake
        .classify(call("", pb::Hotline::Hotline12345, "有人拿刀"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(police.transfer, "12345→110", "a dry run decides the same");

    for (id, queue) in &ids {
        let mut sub = subscribe(&s, queue, 0).await;
        let t = next(&mut sub).await;
        assert_eq!((t.id, t.queue.as_str()), (*id, *queue));
        assert_eq!(
            t.caller_number, "13812345678",
            "the consumer sees the number whole"
        );
    }
    let got = s
        .tickets()
        .await
        .get(pb::GetTicketRequest {
            ticket_id: ids[0].0,
        })
        .await
        .unwrap()
        .into_inner();
    let t = got.ticket.unwrap();
    assert_eq!(t.caller_number, "138****5678", "masked outside a delivery");
    assert_eq!(t.call_taker, "taker-9");
    let events: Vec<(&str, &str)> = got
        .history
        .iter()
        .map(|h| (h.event.as_str(), h.actor.as_str()))
        .collect();
    assert_eq!(
        events,
        [
            ("received", "intake:12345"),
            ("delivered", "test-consumer-dispatch.police")
        ]
    );
}

async fn the_most_urgent_then_the_oldest_is_delivered_first(backend: Backend) {
    let Some(s) = Site::start(backend, &mini(), 30).await else {
        return;
    };
    let mut intake = s.intake().await;
    let mut ids = std::collections::HashMap::new();
    for (id, text) in [
        ("urgent-1", "他们在打架"),
        ("critical-1", "有人拿刀"),
        ("urgent-2", "他们在打架"),
        ("critical-2", "有人拿刀"),
    ] {
        let r = intake
            .submit_call(call(id, pb::Hotline::Hotline110, text))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.decision.unwrap().queue, "dispatch.police");
        ids.insert(r.ticket_id, id);
    }
    let mut sub = subscribe(&s, "dispatch.police", 0).await;
    let mut order = Vec::new();
    for _ in 0..4 {
        order.push(ids[&next(&mut sub).await.id]);
    }
    assert_eq!(order, ["critical-1", "critical-2", "urgent-1", "urgent-2"]);
}

async fn ack_nack_and_lease_expiry_deliver_as_promised(backend: Backend) {
    let Some(s) = Site::start(backend, &mini(), 1).await else {
        return;
    };
    let mut intake = s.intake().await;
    let urgent = intake
        .submit_call(call("a", pb::Hotline::Hotline110, "有人拿刀"))
        .await
        .unwrap()
        .into_inner()
        .ticket_id;
    let mut sub = subscribe(&s, "dispatch.police", 0).await;
    let mut dispatch = s.dispatch().await;
    let t = next(&mut sub).await;
    assert_eq!((t.id, t.deliveries), (urgent, 1));

    // Given back: delivered again at once.
    dispatch
        .nack(pb::NackRequest {
            ticket_id: urgent,
            consumer: "desk-1".into(),
            reason: "no car free".into(),
        })
        .await
        .unwrap();
    let t = next(&mut sub).await;
    assert_eq!((t.id, t.deliveries), (urgent, 2));

    // Neither acked nor given back: delivered again when the lease ends.
    let t = next(&mut sub).await;
    assert_eq!(
        (t.id, t.deliveries),
        (urgent, 3),
        "redelivered after its lease"
    );

    dispatch
        .ack(pb::AckRequest {
            ticket_id: urgent,
            consumer: "desk-1".into(),
        })
        .await
        .unwrap();
    nothing(&mut sub, Duration::from_millis(2500)).await;
    let late = dispatch
        .ack(pb::AckRequest {
            ticket_id: urgent,
            consumer: "desk-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition, "{late:?}");
    let h = s
        .tickets()
        .await
        .get(pb::GetTicketRequest { ticket_id: urgent })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.ticket.unwrap().state, "acked");
    let events: Vec<&str> = h.history.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        events,
        [
            "received",
            "delivered",
            "nacked",
            "delivered",
            "expired",
            "delivered",
            "acked"
        ]
    );
    assert_eq!(h.history[2].detail, r#"{"reason":"no car free"}"#);
}

async fn a_duplicate_call_id_is_one_ticket(backend: Backend) {
    let Some(s) = Site::start(backend, &mini(), 30).await else {
        return;
    };
    let mut intake = s.intake().await;
    let first = intake
        .submit_call(call("same", pb::Hotline::Hotline110, "有人拿刀"))
        .await
        .unwrap()
        .into_inner();
    let again = intake
        .submit_call(call("same", pb::Hotline::Hotline110, "社保怎么交"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.ticket_id, first.ticket_id);
    assert!(again.duplicate);
    assert_eq!(
        again.decision, first.decision,
        "the decision given the first time"
    );
    let other = intake
        .submit_call(call("same", pb::Hotline::Hotline12345, "有人拿刀"))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(
        other.ticket_id, first.ticket_id,
        "another hotline, another call"
    );
}

async fn a_reroute_moves_the_ticket_and_records_who_and_why(backend: Backend) {
    let Some(s) = Site::start(backend, &mini(), 30).await else {
        return;
    };
    let id = s
        .intake()
        .await
        .submit_call(call("r", pb::Hotline::Hotline110, "楼上现在在吵架"))
        .await
        .unwrap()
        .into_inner()
        .ticket_id;
    let mut dispatch = s.dispatch().await;
    let moved = dispatch
        .reroute(pb::RerouteRequest {
            ticket_id: id,
            destination: "township".into(),
            township_code: "330402008".into(),
            reason: "caller is in 解放街道".into(),
            actor: "operator-7".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    assert_eq!(moved.queue, "township.330402008");
    let mut sub = subscribe(&s, "township.330402008", 0).await;
    assert_eq!(next(&mut sub).await.id, id);
    let h = s
        .tickets()
        .await
        .get(pb::GetTicketRequest { ticket_id: id })
        .await
        .unwrap()
        .into_inner()
        .history;
    let rerouted = h.iter().find(|e| e.event == "rerouted").unwrap();
    assert_eq!(rerouted.actor, "operator-7");
    assert!(
        rerouted
            .detail
            .contains(r#""reason":"caller is in 解放街道""#)
            && rerouted
                .detail
                .contains(r#""to":{"destination":"township","queue":"township.330402008""#),
        "{}",
        rerouted.detail
    );

    // The audit log has the ticket's story, chained and intact.
    let records = s
        .audit(pb::AuditQueryRequest {
            ticket_id: id,
            ..Default::default()
        })
        .await;
    let kinds: Vec<&str> = records.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["received", "rerouted", "delivered"]);
    assert!(
        records[0].rules.iter().any(|r| r.starts_with("township.")),
        "{:?}",
        records[0]
    );
    assert!(
        records[0]
            .detail
            .contains(r#""caller_number":"138****5678""#)
    );
    assert!(
        !records.iter().any(|r| r.detail.contains("13812345678")),
        "no full number in the log"
    );
    let reroutes = s
        .audit(pb::AuditQueryRequest {
            kind: "rerouted".into(),
            actor: "operator-7".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(reroutes.len(), 1);
    let v = s.verify().await;
    assert!(v.intact && v.records == 3, "{v:?}");

    let bad = dispatch
        .reroute(pb::RerouteRequest {
            ticket_id: id,
            destination: "fire".into(),
            reason: "x".into(),
            actor: "operator-7".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().starts_with("destination: "), "{bad:?}");
    let missing = dispatch
        .reroute(pb::RerouteRequest {
            ticket_id: 9999,
            destination: "police".into(),
            reason: "x".into(),
            actor: "operator-7".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_naming_the_field() {
    let s = Server::start(&mini());
    let mut intake = s.intake().await;
    let refused = |c: pb::Call| {
        let mut intake = intake.clone();
        async move { intake.submit_call(c).await.unwrap_err() }
    };
    let cases = [
        (
            call("x", pb::Hotline::Hotline110, "  "),
            "text: missing or empty",
        ),
        (
            call("", pb::Hotline::Hotline110, "有人拿刀"),
            "call_id: missing or empty",
        ),
        (
            pb::Call {
                hotline: 99,
                ..call("x", pb::Hotline::Hotline110, "有人拿刀")
            },
            "hotline: unknown hotline 99",
        ),
        (
            pb::Call {
                hotline: 0,
                ..call("x", pb::Hotline::Hotline110, "有人拿刀")
            },
            "hotline: missing",
        ),
        (
            pb::Call {
                township_code: "33048".into(),
                ..call("x", pb::Hotline::Hotline110, "有人拿刀")
            },
            "township_code: ",
        ),
        (
            pb::Call {
                township_code: "330499999".into(),
                ..call("x", pb::Hotline::Hotline110, "有人拿刀")
            },
            "township_code: no township 330499999",
        ),
        (
            call("x", pb::Hotline::Hotline110, &"刀".repeat(30_000)),
            "text: 90000 bytes, more than the 65536 allowed",
        ),
        (
            call("x", pb::Hotline::Hotline110, &"刀".repeat(400_000)),
            "message: ",
        ),
    ];
    for (c, expected) in cases {
        let e = refused(c).await;
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().starts_with(expected), "{expected:?}: {e:?}");
    }
    let no_queue = s
        .dispatch()
        .await
        .subscribe(pb::SubscribeRequest {
            queue: "township.999999999".into(),
            consumer: "team".into(),
            lease_seconds: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(no_queue.code(), Code::NotFound, "{no_queue:?}");
    let no_ticket = s
        .tickets()
        .await
        .get(pb::GetTicketRequest { ticket_id: 424242 })
        .await
        .unwrap_err();
    assert_eq!(no_ticket.code(), Code::NotFound);
    // Nothing refused was queued.
    let ok = intake
        .submit_call(call("x", pb::Hotline::Hotline110, "有人拿刀"))
        .await
        .unwrap()
        .into_inner();
    assert!(!ok.duplicate, "a refused call left no ticket behind");
}

async fn a_slow_consumer_never_blocks_intake(backend: Backend) {
    let Some(s) = Site::start(backend, &mini(), 30).await else {
        return;
    };
    // Subscribed, never reading.
    let _idle = subscribe(&s, "dispatch.police", 0).await;
    let mut intake = s.intake().await;
    for i in 0..300 {
        tokio::time::timeout(
            Duration::from_secs(10),
            intake.submit_call(call(&format!("s{i}"), pb::Hotline::Hotline110, "有人拿刀")),
        )
        .await
        .expect("intake answers while a consumer sits idle")
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_calls_is_answered_in_order_with_errors_in_place() {
    let s = Server::start(&mini());
    let calls = vec![
        call("s1", pb::Hotline::Hotline110, "有人拿刀"),
        call("s2", pb::Hotline::Hotline110, ""),
        call("s3", pb::Hotline::Hotline12345, "社保怎么交"),
    ];
    let mut answers = s
        .intake()
        .await
        .stream_calls(tokio_stream::iter(calls))
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(a) = answers.message().await.unwrap() {
        got.push(a);
    }
    let ids: Vec<&str> = got.iter().map(|a| a.call_id.as_str()).collect();
    assert_eq!(ids, ["s1", "s2", "s3"]);
    use pb::stream_calls_response::Result as R;
    assert!(
        matches!(&got[0].result, Some(R::Accepted(a)) if a.decision.as_ref().unwrap().destination == "police")
    );
    assert!(
        matches!(&got[1].result, Some(R::Error(e)) if e.code == Code::InvalidArgument as i32 && e.message.starts_with("text: "))
    );
    assert!(
        matches!(&got[2].result, Some(R::Accepted(a)) if a.decision.as_ref().unwrap().destination == "hotline_12345")
    );
}

async fn version(s: &Server) -> String {
    s.rules()
        .await
        .info(pb::InfoRequest {})
        .await
        .unwrap()
        .into_inner()
        .version
}

async fn destination(s: &Server, text: &str) -> pb::Decision {
    s.intake()
        .await
        .classify(call("", pb::Hotline::Hotline110, text))
        .await
        .unwrap()
        .into_inner()
}

/// Waits up to 10 s for the served rule version to differ from `old`.
async fn version_change(s: &Server, old: &str) -> String {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let v = version(s).await;
        if v != old {
            return v;
        }
        assert!(Instant::now() < until, "the rules were not reloaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_reload_keeps_the_old_rules_and_a_good_one_swaps() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&mini(), &tmp.path().join("rules"));
    // No file watch here: this test decides when reloads happen.
    std::fs::write(tmp.path().join("minsheng.toml"), "[rules]\nwatch = false\n").unwrap();
    let s = Server::start_in(tmp.path());
    let before = version(&s).await;
    let rules_file = s.dir.join("rules/rules.toml");
    let good = std::fs::read_to_string(&rules_file).unwrap();
    std::fs::write(&rules_file, format!("{good}\n[[rule]]\nid = \"broken\"\n")).unwrap();

    let err = s
        .rules()
        .await
        .reload(pb::ReloadRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("rules.toml:") && err.message().contains("old rules keep serving"),
        "{err:?}"
    );
    assert_eq!(version(&s).await, before, "the old rules still serve");
    assert_eq!(destination(&s, "有人拿刀").await.destination, "police");

    // A good change: 起诉 now goes to 12345.
    std::fs::write(
        &rules_file,
        good.replace("any = [\"起诉\"]", "any = [\"诉讼费\"]"),
    )
    .unwrap();
    let r = s
        .rules()
        .await
        .reload(pb::ReloadRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(r.changed);
    let after = r.info.unwrap().version;
    assert_ne!(after, before);
    let d = destination(&s, "我要起诉他").await;
    assert_ne!(d.destination, "court");
    assert_eq!(
        d.rules_version, after,
        "the decision records the new version"
    );

    // Unchanged files: nothing swapped.
    let again = s.rules().await.reload(pb::ReloadRequest {}).await.unwrap();
    assert!(!again.into_inner().changed);

    // Both are in the audit log, with who asked and the versions.
    let rejected = s
        .audit(pb::AuditQueryRequest {
            kind: "rules_rejected".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(rejected.len(), 1);
    assert!(
        rejected[0].actor.starts_with("client 127.0.0.1:"),
        "{:?}",
        rejected[0]
    );
    assert!(
        rejected[0].detail.contains("rules.toml:"),
        "{:?}",
        rejected[0]
    );
    assert_eq!(rejected[0].rules_version, before);
    let loaded = s
        .audit(pb::AuditQueryRequest {
            kind: "rules_loaded".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(loaded.len(), 1, "an unchanged reload is no event");
    assert_eq!(loaded[0].rules_version, after);
    assert!(
        loaded[0]
            .detail
            .contains(&format!(r#""old_version":"{before}""#))
    );

    // SIGHUP reloads too.
    std::fs::write(&rules_file, &good).unwrap();
    s.signal(libc::SIGHUP);
    assert_eq!(version_change(&s, &after).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_rule_file_is_picked_up_without_a_call() {
    let s = Server::start(&mini());
    let before = version(&s).await;
    let rules_file = s.dir.join("rules/rules.toml");
    let good = std::fs::read_to_string(&rules_file).unwrap();
    // A broken edit is refused; the old rules keep serving.
    std::fs::write(&rules_file, format!("{good}\n[[rule]\n")).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(version(&s).await, before);
    std::fs::write(
        &rules_file,
        good.replace("any = [\"起诉\"]", "any = [\"诉讼费\"]"),
    )
    .unwrap();
    let after = version_change(&s, &before).await;
    assert_eq!(destination(&s, "我要起诉他").await.rules_version, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reflection_and_metrics_answer() {
    let s = Server::start(&mini());
    let mut health = tonic_health::pb::health_client::HealthClient::new(s.channel().await);
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "minsheng.v1.Intake".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        serving.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(s.channel().await);
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("not a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    // A client with no proto files can resolve the interface and what it
    // imports.
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileByFilename(
            "google/protobuf/timestamp.proto".into(),
        )),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap().message_response;
    assert!(
        matches!(answer, Some(MessageResponse::FileDescriptorResponse(ref f)) if !f.file_descriptor_proto.is_empty()),
        "{answer:?}"
    );
    for expected in [
        "minsheng.v1.Intake",
        "minsheng.v1.Dispatch",
        "minsheng.v1.Tickets",
        "minsheng.v1.Rules",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }

    s.intake()
        .await
        .submit_call(call("m", pb::Hotline::Hotline110, "有人拿刀"))
        .await
        .unwrap();
    let url = s.metrics.clone().expect("metrics served");
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let body = http_get(&url).await;
        if body.contains("minsheng_queue_depth{queue=\"dispatch.police\"} 1") {
            assert!(
                body.contains("minsheng_calls_total{hotline=\"110\",destination=\"police\"} 1"),
                "{body}"
            );
            assert!(body.contains("minsheng_decision_seconds_bucket"), "{body}");
            break;
        }
        assert!(Instant::now() < until, "no queue depth in:\n{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A plain HTTP/1.0 GET, enough for the metrics page.
async fn http_get(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut conn = tokio::net::TcpStream::connect(host).await.unwrap();
    conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut body = String::new();
    conn.read_to_string(&mut body).await.unwrap();
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_gracefully() {
    let mut s = Server::start(&mini());
    let _sub = subscribe(&s, "dispatch.police", 60).await;
    s.signal(libc::SIGTERM);
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = s.child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(Instant::now() < until, "still running 15 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_refuses_calls_as_unavailable() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&mini(), &tmp.path().join("rules"));
    // A quota of 256 KiB on the ticket database: a full disk, in small.
    std::fs::write(
        tmp.path().join("minsheng.toml"),
        "[store]\nmax_bytes = 262144\n",
    )
    .unwrap();
    let s = Server::start_in(tmp.path());
    let mut intake = s.intake().await;
    let mut accepted = Vec::new();
    let refusal = loop {
        let id = format!("f{}", accepted.len());
        match intake
            .submit_call(call(
                &id,
                pb::Hotline::Hotline110,
                &"有人拿刀。".repeat(300),
            ))
            .await
        {
            Ok(r) => accepted.push(r.into_inner().ticket_id),
            Err(e) => break e,
        }
        assert!(accepted.len() < 10_000, "the quota never filled");
    };
    assert_eq!(refusal.code(), Code::Unavailable, "{refusal:?}");
    assert!(refusal.message().contains("not accepted"), "{refusal:?}");
    assert!(!accepted.is_empty());
    let mut tickets = s.tickets().await;
    for id in accepted {
        tickets
            .get(pb::GetTicketRequest { ticket_id: id })
            .await
            .expect("every accepted call is still there");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_load_loses_no_answered_call() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&root().join("rules"), &tmp.path().join("rules"));
    kill_and_restart(tmp.path(), false).await;
}

/// Submits calls from 16 tasks, kills the server with SIGKILL in the
/// middle, restarts it on the same store (the configuration in `dir`)
/// and checks that every answered call is there exactly once and is
/// delivered.
/// Kills a server in `dir` in the middle of a load and starts it again:
/// every answered call is there once and is delivered. With
/// `deliver_first`, the answered calls are taken from their queues before
/// the operator system retries them (so they must have been queued
/// already); otherwise the retries come first.
pub(super) async fn kill_and_restart(dir: &Path, deliver_first: bool) {
    let mut s = Server::start_in(dir);
    let channel = s.channel().await;
    let texts = [
        ("有人拿刀砍人", pb::Hotline::Hotline110),
        ("楼上装修太吵了", pb::Hotline::Hotline12345),
        ("我想咨询一下离婚起诉", pb::Hotline::Hotline12345),
        ("路灯坏了好几天", pb::Hotline::App),
    ];
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut workers = Vec::new();
    for w in 0..16 {
        let mut intake = IntakeClient::new(channel.clone());
        let tx = tx.clone();
        workers.push(tokio::spawn(async move {
            for n in 0.. {
                let (text, hotline) = texts[(w + n) % texts.len()];
                let id = format!("k{w}-{n}");
                match intake.submit_call(call(&id, hotline, text)).await {
                    Ok(r) => {
                        let r = r.into_inner();
                        let _ =
                            tx.send((id, hotline, text, r.ticket_id, r.decision.unwrap().queue));
                    }
                    Err(_) => break,
                }
            }
        }));
    }
    drop(tx);
    // Let the load run, then kill the process in the middle of it.
    let until = Instant::now() + Duration::from_secs(30);
    let mut answered = Vec::new();
    while answered.len() < 300 {
        assert!(
            Instant::now() < until,
            "only {} calls in 30 s",
            answered.len()
        );
        if let Ok(Some(a)) = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
            answered.push(a);
        }
    }
    s.kill();
    for w in workers {
        w.await.unwrap();
    }
    while let Some(a) = rx.recv().await {
        answered.push(a);
    }

    let s = Server::start_in(dir);
    let mut by_queue: std::collections::BTreeMap<String, std::collections::BTreeSet<u64>> =
        Default::default();
    for (_, _, _, ticket, queue) in &answered {
        by_queue.entry(queue.clone()).or_default().insert(*ticket);
    }
    let deliver =
        async |by_queue: std::collections::BTreeMap<String, std::collections::BTreeSet<u64>>| {
            for (queue, mut expected) in by_queue {
                let mut sub = subscribe(&s, &queue, 0).await;
                while !expected.is_empty() {
                    let t = next(&mut sub).await;
                    expected.remove(&t.id);
                }
            }
        };
    if deliver_first {
        deliver(by_queue.clone()).await;
    }
    let mut intake = s.intake().await;
    for (id, hotline, text, ticket, _) in &answered {
        let again = intake
            .submit_call(call(id, *hotline, text))
            .await
            .unwrap()
            .into_inner();
        assert!(again.duplicate, "{id} was answered, so it is there");
        assert_eq!(again.ticket_id, *ticket, "{id} is there exactly once");
    }
    if !deliver_first {
        deliver(by_queue).await;
    }
}
