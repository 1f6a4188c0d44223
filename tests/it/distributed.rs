//! Several nodes on one PostgreSQL database: one set of tickets, one
//! audit chain. PostgreSQL at 127.0.0.1:5432 (database `test`) is started
//! by `.ci/run`; elsewhere these tests say loudly that they skip.

use std::collections::BTreeSet;
use std::time::Duration;

use minsheng_proto::v1 as pb;
use pb::audit_client::AuditClient;
use pb::dispatch_client::DispatchClient;
use pb::intake_client::IntakeClient;
use tonic::transport::Channel;

use super::server::{Server, call, copy_dir, kill_and_restart, mini};

const URL: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

pub(super) fn url() -> String {
    std::env::var("MINSHENG_TEST_POSTGRES").unwrap_or_else(|_| URL.to_owned())
}

/// Runs a blocking database call on a thread of its own: the client may
/// not block a thread of the test's runtime.
fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f).join().expect("database thread")
}

/// Whether the test database is there; when it is not, CI fails and
/// elsewhere the test says loudly that it skips.
pub(super) fn database() -> bool {
    let url = url();
    let reached = {
        let url = url.clone();
        off_runtime(move || postgres::Client::connect(&url, postgres::NoTls).map(drop))
    };
    match reached {
        Ok(()) => true,
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("PostgreSQL at {url} is not reachable in CI: {e}")
        }
        Err(e) => {
            eprintln!(
                "\n*** PostgreSQL at {url} is not reachable ({e}): SKIPPING the distributed server tests; start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start ***\n"
            );
            false
        }
    }
}

/// A schema of the test database, dropped at the end of the test.
pub(super) struct Schema(pub(super) String);

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (url(), self.0.clone());
        off_runtime(move || {
            if let Ok(mut c) = postgres::Client::connect(&url, postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"));
            }
        });
    }
}

pub(super) async fn channel(s: &Server) -> Channel {
    Channel::from_shared(format!("http://{}", s.addr))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn node(schema: &str) -> (tempfile::TempDir, Server) {
    let tmp = node_dir(schema, &mini());
    let s = Server::start_in(tmp.path());
    (tmp, s)
}

/// A node's directory: rules copied from `rules`, its store in `schema`.
fn node_dir(schema: &str, rules: &std::path::Path) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(rules, &tmp.path().join("rules"));
    std::fs::write(
        tmp.path().join("minsheng.toml"),
        format!(
            "[store]\nbackend = \"postgres\"\npostgres_url = \"{}\"\npostgres_schema = \"{schema}\"\n",
            url()
        ),
    )
    .unwrap();
    tmp
}

/// `count` calls spread over two nodes, every fifth sent to both, as an
/// operator system retries on the other node: one ticket each still.
pub(super) async fn spread_calls(
    nodes: &[IntakeClient<Channel>; 2],
    count: usize,
) -> BTreeSet<u64> {
    let mut tickets = BTreeSet::new();
    for i in 0..count {
        let c = call(&format!("n{i}"), pb::Hotline::Hotline110, "有人拿刀");
        let first = nodes[i % 2]
            .clone()
            .submit_call(c.clone())
            .await
            .unwrap()
            .into_inner();
        tickets.insert(first.ticket_id);
        if i % 5 == 0 {
            let again = nodes[(i + 1) % 2]
                .clone()
                .submit_call(c)
                .await
                .unwrap()
                .into_inner();
            assert!(again.duplicate);
            assert_eq!(again.ticket_id, first.ticket_id);
        }
    }
    assert_eq!(tickets.len(), count, "one ticket a call");
    tickets
}

pub(super) fn new_schema(what: &str) -> Schema {
    Schema(format!(
        "it_{what}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_load_loses_no_answered_call() {
    if !database() {
        return;
    }
    let schema = new_schema("kill");
    let dir = node_dir(&schema.0, &super::support::root().join("rules"));
    kill_and_restart(dir.path(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_the_tickets_and_one_chain() {
    if !database() {
        return;
    }
    let schema = new_schema("nodes");
    let (_a_dir, a) = node(&schema.0);
    let (_b_dir, b) = node(&schema.0);
    let nodes = [
        IntakeClient::new(channel(&a).await),
        IntakeClient::new(channel(&b).await),
    ];

    let tickets = spread_calls(&nodes, 30).await;

    // One consumer on node A takes every ticket, from both nodes, once.
    let mut dispatch = DispatchClient::new(channel(&a).await);
    let mut stream = dispatch
        .subscribe(pb::SubscribeRequest {
            queue: "dispatch.police".into(),
            consumer: "desk".into(),
            lease_seconds: 60,
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen = BTreeSet::new();
    while seen.len() < tickets.len() {
        let t = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("every ticket within 10 s")
            .unwrap()
            .unwrap()
            .ticket
            .unwrap();
        assert!(seen.insert(t.id), "ticket {} delivered twice", t.id);
        dispatch
            .ack(pb::AckRequest {
                ticket_id: t.id,
                consumer: "desk".into(),
            })
            .await
            .unwrap();
    }
    assert_eq!(seen, tickets);

    // Both nodes wrote one chain, and it holds.
    let v = AuditClient::new(channel(&b).await)
        .verify(pb::VerifyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(v.intact, "{v:?}");
    assert_eq!(
        v.records,
        30 + 30 + 30,
        "received, delivered and acked, each once"
    );

    drop((a, b));
}
