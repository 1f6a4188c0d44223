//! Nodes whose ticket queues are on NATS JetStream and whose records are
//! in PostgreSQL. NATS at 127.0.0.1:4222 (with JetStream) and PostgreSQL
//! at 127.0.0.1:5432 are started by `.ci/run`; elsewhere these tests say
//! loudly that they skip. Each test has a stream and subjects of its own,
//! deleted at its end; the NATS restart test runs a NATS server of its own.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use minsheng_proto::v1 as pb;
use pb::intake_client::IntakeClient;
use tonic::Code;

use super::distributed::{Schema, channel, database, new_schema, spread_calls, url};
use super::server::{
    EVERY_DESTINATION, Server, call, copy_dir, kill_and_restart, mini, next, nothing, subscribe,
};

const NATS: &str = "nats://127.0.0.1:4222";

pub(super) fn nats_url() -> String {
    std::env::var("MINSHENG_TEST_NATS").unwrap_or_else(|_| NATS.to_owned())
}

/// Whether NATS and PostgreSQL are there; when one is not, CI fails and
/// elsewhere the test says loudly that it skips.
pub(super) async fn services() -> bool {
    if !database() {
        return false;
    }
    let url = nats_url();
    match async_nats::connect(url.as_str()).await {
        Ok(_) => true,
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("NATS at {url} is not reachable in CI: {e}")
        }
        Err(e) => {
            eprintln!(
                "\n*** NATS at {url} is not reachable ({e}): SKIPPING the JetStream tests; start it with: start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server ***\n"
            );
            false
        }
    }
}

/// A test's own stream and subjects, and its PostgreSQL schema; the
/// stream is deleted at the end.
pub(super) struct Queues {
    nats: String,
    stream: String,
    prefix: String,
    schema: Schema,
}

impl Queues {
    pub(super) fn new(what: &str, nats: &str) -> Queues {
        let schema = new_schema(&format!("js_{what}"));
        let tag = schema.0.trim_start_matches("it_").to_owned();
        Queues {
            nats: nats.to_owned(),
            stream: format!("IT_{tag}"),
            prefix: format!("it.{tag}.tickets"),
            schema,
        }
    }

    /// A node's `minsheng.toml`: `extra` appended to its `[queue]`.
    pub(super) fn config(&self, lease_seconds: u32, extra: &str) -> String {
        format!(
            "[store]\nbackend = \"postgres\"\npostgres_url = \"{}\"\npostgres_schema = \"{}\"\nlease_seconds = {lease_seconds}\n\
             [queue]\nbackend = \"nats\"\nnats_url = \"{}\"\nstream = \"{}\"\nsubject_prefix = \"{}\"\n{extra}",
            url(),
            self.schema.0,
            self.nats,
            self.stream,
            self.prefix
        )
    }

    /// A node's directory: rules copied from `rules`, `extra` appended to
    /// its `[queue]` section.
    fn node_dir(&self, rules: &Path, lease_seconds: u32, extra: &str) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(rules, &tmp.path().join("rules"));
        std::fs::write(
            tmp.path().join("minsheng.toml"),
            self.config(lease_seconds, extra),
        )
        .unwrap();
        tmp
    }

    fn node(&self, lease_seconds: u32, extra: &str) -> (tempfile::TempDir, Server) {
        let dir = self.node_dir(&mini(), lease_seconds, extra);
        let s = Server::start_in(dir.path());
        (dir, s)
    }
}

impl Drop for Queues {
    fn drop(&mut self) {
        let (nats, stream) = (self.nats.clone(), self.stream.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(c) = async_nats::connect(nats.as_str()).await {
                    let _ = async_nats::jetstream::new(c).delete_stream(&stream).await;
                }
            });
        })
        .join();
    }
}

async fn ack(s: &Server, id: u64) {
    s.dispatch()
        .await
        .ack(pb::AckRequest {
            ticket_id: id,
            consumer: "desk".into(),
        })
        .await
        .unwrap();
}

async fn history(s: &Server, id: u64) -> Vec<String> {
    s.tickets()
        .await
        .get(pb::GetTicketRequest { ticket_id: id })
        .await
        .unwrap()
        .into_inner()
        .history
        .into_iter()
        .map(|h| h.event)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_of_every_queue_go_through_jetstream_once() {
    if !services().await {
        return;
    }
    let q = Queues::new("queues", &nats_url());
    let (_dir, s) = q.node(30, "");
    let mut intake = s.intake().await;
    for (id, hotline, text, location, queue) in EVERY_DESTINATION {
        let mut c = call(id, hotline, text);
        c.location = location.into();
        let r = intake.submit_call(c.clone()).await.unwrap().into_inner();
        assert_eq!(r.decision.as_ref().unwrap().queue, queue);
        // The operator system retries: the same ticket, and no second
        // message (a second delivery would show below).
        let again = intake.submit_call(c).await.unwrap().into_inner();
        assert!(again.duplicate);
        assert_eq!(again.ticket_id, r.ticket_id);
        let mut sub = subscribe(&s, queue, 0).await;
        let t = next(&mut sub).await;
        assert_eq!((t.id, t.deliveries), (r.ticket_id, 1));
        ack(&s, t.id).await;
        nothing(&mut sub, Duration::from_millis(1500)).await;
        assert_eq!(history(&s, t.id).await, ["received", "delivered", "acked"]);
    }
    // A queue that does not exist, and a lease JetStream cannot give.
    let err = s
        .dispatch()
        .await
        .subscribe(pb::SubscribeRequest {
            queue: "nowhere".into(),
            consumer: "desk".into(),
            lease_seconds: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = s
        .dispatch()
        .await
        .subscribe(pb::SubscribeRequest {
            queue: "dispatch.police".into(),
            consumer: "desk".into(),
            lease_seconds: 5,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("lease_seconds"), "{err:?}");
    assert!(s.verify().await.intact);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_reroute_and_the_dead_letter_queue() {
    if !services().await {
        return;
    }
    let q = Queues::new("dead", &nats_url());
    let (_dir, s) = q.node(30, "max_deliver = 2\n");
    let mut intake = s.intake().await;
    let id = intake
        .submit_call(call("n-1", pb::Hotline::Hotline110, "有人拿刀"))
        .await
        .unwrap()
        .into_inner()
        .ticket_id;
    let mut dispatch = s.dispatch().await;
    let mut sub = subscribe(&s, "dispatch.police", 0).await;
    for delivery in 1..=2 {
        let t = next(&mut sub).await;
        assert_eq!((t.id, t.deliveries), (id, delivery));
        dispatch
            .nack(pb::NackRequest {
                ticket_id: id,
                consumer: "desk".into(),
                reason: "busy".into(),
            })
            .await
            .unwrap();
    }
    // A third delivery would pass max_deliver: the ticket goes to the
    // dead-letter queue instead, and a person can take it from there.
    nothing(&mut sub, Duration::from_millis(1500)).await;
    let mut dead = subscribe(&s, "dead_letter", 0).await;
    let t = next(&mut dead).await;
    assert_eq!((t.id, t.queue.as_str()), (id, "dead_letter"));
    let h = history(&s, id).await;
    assert_eq!(
        h,
        [
            "received",
            "delivered",
            "nacked",
            "delivered",
            "nacked",
            "rerouted",
            "delivered"
        ]
    );

    // A person moves it on: it arrives on the new queue, once.
    dispatch
        .reroute(pb::RerouteRequest {
            ticket_id: id,
            destination: "hotline_12345".into(),
            township_code: String::new(),
            reason: "a noise complaint after all".into(),
            actor: "operator-7".into(),
        })
        .await
        .unwrap();
    let mut moved = subscribe(&s, "workorder.12345", 0).await;
    let t = next(&mut moved).await;
    assert_eq!((t.id, t.queue.as_str()), (id, "workorder.12345"));
    ack(&s, id).await;
    nothing(&mut moved, Duration::from_millis(1500)).await;
    nothing(&mut dead, Duration::from_millis(100)).await;
    assert!(s.verify().await.intact);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_dies_holding_tickets_gets_them_redelivered_after_ack_wait() {
    if !services().await {
        return;
    }
    let q = Queues::new("ackwait", &nats_url());
    let (_dir, s) = q.node(2, "");
    let mut intake = s.intake().await;
    let mut ids = BTreeSet::new();
    for i in 0..3 {
        let r = intake
            .submit_call(call(&format!("w-{i}"), pb::Hotline::Hotline110, "有人拿刀"))
            .await
            .unwrap()
            .into_inner();
        ids.insert(r.ticket_id);
    }
    // A consumer takes them all, and dies without an ack.
    let mut sub = subscribe(&s, "dispatch.police", 0).await;
    let mut held = BTreeSet::new();
    for _ in 0..3 {
        held.insert(next(&mut sub).await.id);
    }
    assert_eq!(held, ids);
    drop(sub);
    let died = Instant::now();
    let mut again = subscribe(&s, "dispatch.police", 0).await;
    let mut back = BTreeSet::new();
    for _ in 0..3 {
        let t = next(&mut again).await;
        assert_eq!(t.deliveries, 2, "ticket {} is a redelivery", t.id);
        back.insert(t.id);
        ack(&s, t.id).await;
    }
    assert_eq!(back, ids);
    assert!(
        died.elapsed() >= Duration::from_millis(1500),
        "redelivered only once the ack-wait of 2 s had passed"
    );
    for id in ids {
        assert_eq!(
            history(&s, id).await,
            ["received", "delivered", "expired", "delivered", "acked"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_the_jetstream_queues_and_one_chain() {
    if !services().await {
        return;
    }
    let q = Queues::new("nodes", &nats_url());
    let (a_dir, a) = q.node(30, "");
    let (_b_dir, b) = q.node(30, "");
    let nodes = [
        IntakeClient::new(channel(&a).await),
        IntakeClient::new(channel(&b).await),
    ];
    // Retried on the other node: one ticket, one message.
    let tickets = spread_calls(&nodes, 30).await;
    // Consumers on both nodes share the queue: every ticket once.
    let mut subs = [
        subscribe(&a, "dispatch.police", 0).await,
        subscribe(&b, "dispatch.police", 0).await,
    ];
    let mut seen = BTreeSet::new();
    let until = Instant::now() + Duration::from_secs(20);
    while seen.len() < tickets.len() {
        assert!(
            Instant::now() < until,
            "only {} of 30 tickets in 20 s",
            seen.len()
        );
        for (n, sub) in subs.iter_mut().enumerate() {
            if let Ok(d) = tokio::time::timeout(Duration::from_millis(200), sub.message()).await {
                let t = d.unwrap().unwrap().ticket.unwrap();
                assert!(seen.insert(t.id), "ticket {} delivered twice", t.id);
                ack(if n == 0 { &a } else { &b }, t.id).await;
            }
        }
    }
    assert_eq!(seen, tickets);
    for sub in &mut subs {
        nothing(sub, Duration::from_millis(1200)).await;
    }
    let v = b.verify().await;
    assert!(v.intact, "{v:?}");
    assert_eq!(v.records, 90, "received, delivered and acked, each once");

    // The auditor's command line reads the shared chain through a node's
    // configuration, and records who saw the numbers.
    let config = a_dir.path().join("minsheng.toml");
    let audit = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_minsheng"))
            .arg("audit")
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let verified = audit(&["verify"]);
    assert!(
        verified.starts_with("audit log intact: 90 records"),
        "{verified}"
    );
    let shown = audit(&[
        "query",
        "--kind",
        "received",
        "--format",
        "csv",
        "--show-numbers",
        "--as",
        "auditor-1",
    ]);
    assert_eq!(
        shown.lines().count(),
        1 + 30,
        "a header and the 30 calls: {shown}"
    );
    assert!(
        shown.lines().skip(1).all(|l| l.contains("13812345678")),
        "{shown}"
    );
    let recorded = audit(&["query", "--kind", "numbers_shown", "--format", "json"]);
    assert!(recorded.contains("auditor-1"), "{recorded}");
    assert!(audit(&["verify"]).starts_with("audit log intact: 91 records"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_load_has_every_answered_call_in_jetstream() {
    if !services().await {
        return;
    }
    let q = Queues::new("kill", &nats_url());
    let dir = q.node_dir(&super::support::root().join("rules"), 30, "");
    // Delivered from JetStream first, then retried: nothing answered was
    // left out of the queues, and a retry is the same ticket.
    kill_and_restart(dir.path(), true).await;
}

/// A NATS server of the test's own, on a free port, with its store in a
/// temporary directory, so that it can be stopped and started again.
struct OwnNats {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// More flags for the server (`--auth TOKEN`).
    extra: Vec<String>,
}

impl OwnNats {
    fn start() -> OwnNats {
        OwnNats::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> OwnNats {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut n = OwnNats {
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        n.up();
        n
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The nats-server program: on the PATH, or where Debian puts it.
    fn program() -> &'static str {
        if Path::new("/usr/sbin/nats-server").exists() {
            "/usr/sbin/nats-server"
        } else {
            "nats-server"
        }
    }

    fn up(&mut self) {
        let child = Command::new(OwnNats::program())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (Debian package nats-server) on the PATH");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < until,
                "nats-server did not come up in 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        self.down();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_nats_is_down_intake_answers_unavailable_and_recovers_by_itself() {
    if !services().await {
        return;
    }
    if !nats_server_installed() {
        return;
    }
    let mut nats = OwnNats::start();
    let q = Queues::new("restart", &nats.url());
    let (_dir, s) = q.node(30, "publish_timeout_ms = 500\n");
    let mut intake = s.intake().await;
    let mut accepted = BTreeSet::new();
    let mut n = 0;
    let mut submit = async |intake: &mut IntakeClient<_>| {
        n += 1;
        let r = intake
            .submit_call(call(&format!("r-{n}"), pb::Hotline::Hotline110, "有人拿刀"))
            .await;
        r.map(|r| r.into_inner().ticket_id)
    };
    for _ in 0..20 {
        accepted.insert(
            submit(&mut intake)
                .await
                .expect("accepted while NATS is up"),
        );
    }

    nats.down();
    let mut refused = 0;
    let down_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < down_until {
        match submit(&mut intake).await {
            Ok(id) => panic!("ticket {id} accepted while NATS was down"),
            Err(e) => {
                assert_eq!(e.code(), Code::Unavailable, "{e:?}");
                refused += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused > 0);

    nats.up();
    let back_until = Instant::now() + Duration::from_secs(20);
    let mut recovered = false;
    while Instant::now() < back_until {
        match submit(&mut intake).await {
            Ok(id) => {
                accepted.insert(id);
                recovered = true;
                break;
            }
            Err(e) => assert_eq!(e.code(), Code::Unavailable, "{e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        recovered,
        "intake did not recover within 20 s of NATS coming back"
    );
    for _ in 0..10 {
        accepted.insert(
            submit(&mut intake)
                .await
                .expect("accepted once NATS is back"),
        );
    }

    // Everything accepted, before and after, is delivered.
    let mut sub = subscribe(&s, "dispatch.police", 0).await;
    // (A call refused after its commit is delivered too, once the sweep
    // publishes it: it exists, and its retry would be the same ticket.)
    let mut seen = BTreeSet::new();
    while !accepted.is_subset(&seen) {
        let t = next(&mut sub).await;
        seen.insert(t.id);
        ack(&s, t.id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_whose_publish_failed_is_published_by_a_retry_or_the_sweep() {
    if !services().await {
        return;
    }
    let q = Queues::new("sweep", &nats_url());
    let (_dir, s) = q.node(30, "publish_timeout_ms = 500\n");
    let js = async_nats::jetstream::new(async_nats::connect(q.nats.as_str()).await.unwrap());
    let open = js
        .get_stream(&q.stream)
        .await
        .unwrap()
        .cached_info()
        .config
        .clone();
    let mut intake = s.intake().await;
    let mut sub = subscribe(&s, "dispatch.police", 0).await;

    // The stream takes one message more, then refuses new ones: the
    // publishes of x and y fail after their commits, and the caller is
    // told the calls were not accepted.
    let full = async_nats::jetstream::stream::Config {
        max_messages: 1,
        discard: async_nats::jetstream::stream::DiscardPolicy::New,
        ..open.clone()
    };
    js.update_stream(full).await.unwrap();
    let w = intake
        .submit_call(call("w", pb::Hotline::Hotline110, "有人拿刀"))
        .await
        .unwrap()
        .into_inner();
    for id in ["x", "y"] {
        let err = intake
            .submit_call(call(id, pb::Hotline::Hotline110, "有人拿刀"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    }
    js.update_stream(open).await.unwrap();

    // The operator system retries x: the ticket it made is published now.
    let retried = intake
        .submit_call(call("x", pb::Hotline::Hotline110, "有人拿刀"))
        .await
        .unwrap()
        .into_inner();
    assert!(retried.duplicate, "the refused call had been committed");
    for expected in [w.ticket_id, retried.ticket_id] {
        let t = next(&mut sub).await;
        assert_eq!(t.id, expected);
        ack(&s, t.id).await;
    }

    // Nobody retries y: the sweep publishes it.
    let swept = tokio::time::timeout(Duration::from_secs(30), sub.message())
        .await
        .expect("the sweep publishes a left-out ticket within 30 s")
        .unwrap()
        .unwrap()
        .ticket
        .unwrap();
    assert_eq!(swept.call_id, "y");
    ack(&s, swept.id).await;
    nothing(&mut sub, Duration::from_millis(1500)).await;
}

/// Whether nats-server can be run here; in CI it must be.
fn nats_server_installed() -> bool {
    if Command::new(OwnNats::program())
        .arg("--version")
        .output()
        .is_ok()
    {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "nats-server is not installed in CI"
    );
    eprintln!("\n*** nats-server is not on the PATH: SKIPPING a NATS server test ***\n");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_proves_itself_to_nats_with_a_token_from_the_environment() {
    if !services().await || !nats_server_installed() {
        return;
    }
    let nats = OwnNats::start_with(&["--auth", "s3cret-token"]);
    // Queues::new cleans its stream up through a connection of its own,
    // which this server would refuse: the stream dies with the server.
    let q = Queues::new("token", &nats.url());
    let dir = q.node_dir(
        &mini(),
        30,
        "nats_token_env = \"MINSHENG_TEST_NATS_TOKEN\"\n",
    );

    // The right token: the node starts and queues calls.
    let s = Server::start_with_args(
        dir.path(),
        &[("MINSHENG_TEST_NATS_TOKEN", "s3cret-token")],
        &[],
        Stdio::inherit(),
    );
    let r = s
        .intake()
        .await
        .submit_call(call("t-1", pb::Hotline::Hotline110, "有人拿刀"))
        .await
        .unwrap()
        .into_inner();
    let mut sub = subscribe(&s, "dispatch.police", 0).await;
    assert_eq!(next(&mut sub).await.id, r.ticket_id);
    drop((sub, s));

    // A wrong token, and none at all: the node does not start, and says why.
    for (env, expected) in [
        (Some("wrong"), "connecting to nats://"),
        (
            None,
            "queue.nats_token_env: the environment variable MINSHENG_TEST_NATS_TOKEN is not set",
        ),
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_minsheng"));
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .current_dir(dir.path())
        .env_remove("MINSHENG_TEST_NATS_TOKEN");
        if let Some(token) = env {
            cmd.env("MINSHENG_TEST_NATS_TOKEN", token);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started with {env:?}");
        assert!(stderr.contains(expected), "{env:?}: {stderr}");
        assert!(
            !stderr.contains("s3cret-token"),
            "the token is never printed"
        );
    }
}
