//! minsheng's server: operator systems submit calls over gRPC, each is
//! classified, queued durably and delivered to the force that handles it.
//!
//! [`start`] binds the gRPC endpoint (Intake, Dispatch, Tickets, Rules,
//! Audit, the standard health service and server reflection; TLS and
//! client roles when configured) and the Prometheus endpoint, opens the
//! ticket store (SQLite in the data directory, or PostgreSQL), connects to
//! the ticket queues on NATS JetStream when they are configured, and
//! begins to watch the rule directory; the returned [`Running`] tells the
//! bound addresses and stops it gracefully.
//!
//! The design decision that shapes it: one thread owns the store, and
//! every call submitted while it commits waits for the next commit, so
//! under load many calls share one flush to disk (group commit) and no call
//! is answered before it is durable.
#![deny(missing_docs)]

mod auth;
pub mod config;
mod convert;
mod jet;
mod rules;
mod service;
mod tls;
mod writer;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use minsheng_proto::v1 as pb;
use minsheng_store::{PgStore, Store, StoreError, TicketStore};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::{Config, ConfigError};
pub use rules::{ReloadError, RuleSource};

use crate::rules::Rules;
use crate::service::Shared;
use crate::writer::Writer;

/// The ticket database's file name in the data directory.
pub const DB_FILE: &str = "tickets.db";

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The first rule set could not be loaded.
    #[error("{0}")]
    Rules(#[from] ReloadError),
    /// The ticket store could not be opened.
    #[error("opening the ticket store in {dir}: {source}")]
    Store {
        /// The data directory.
        dir: String,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An address could not be bound.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The security settings cannot be used (no TLS off loopback, a token
    /// that cannot be read, a certificate file missing).
    #[error("{0}")]
    Security(String),
    /// The ticket queues (NATS JetStream) could not be reached or set up.
    #[error("{0}")]
    Queue(String),
    /// The server's task ended abnormally.
    #[error("the server stopped abnormally: {0}")]
    Stopped(String),
    /// Server reflection could not be built.
    #[error("server reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// A running server.
#[derive(Debug)]
pub struct Running {
    /// The bound gRPC address.
    pub grpc_addr: SocketAddr,
    /// The bound metrics address, when metrics are served.
    pub metrics_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    done: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl Running {
    /// Begins a graceful shutdown: stop accepting, end subscriptions, let
    /// calls in flight finish, close the store.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits until the server has stopped and the store is closed.
    pub async fn wait(self) -> Result<(), ServeError> {
        self.done
            .await
            .unwrap_or_else(|e| Err(ServeError::Stopped(e.to_string())))
    }
}

/// Reloads the rules and records the outcome in the audit log: the new
/// version, or the refusal with its errors. An unchanged set is no event.
pub(crate) async fn reload_recorded(
    rules: &Arc<Rules>,
    writer: &Writer,
    trigger: &str,
    actor: &str,
) -> Result<rules::Reloaded, ReloadError> {
    let old = rules.current().classifier.rules().version.clone();
    let result = rules.reload(trigger).await;
    let event = match &result {
        Ok(done) if done.changed => {
            let new = done.loaded.classifier.rules().version.clone();
            Some(writer::Event {
                kind: "rules_loaded",
                actor: actor.to_owned(),
                detail: serde_json::json!({
                    "trigger": trigger,
                    "old_version": old,
                    "new_version": new,
                    "warnings": done.loaded.warnings.len(),
                })
                .to_string(),
                rules_version: Some(new),
            })
        }
        Ok(_) => None,
        Err(e) => Some(writer::Event {
            kind: "rules_rejected",
            actor: actor.to_owned(),
            detail: serde_json::json!({
                "trigger": trigger,
                "serving_version": old,
                "error": e.to_string(),
            })
            .to_string(),
            rules_version: Some(old),
        }),
    };
    if let Some(event) = event
        && let Err(e) = writer.event(event).await
    {
        tracing::error!(error = %e, "the rules reload could not be recorded in the audit log");
    }
    result
}

/// Opens a second connection to the store, for reads that must not wait
/// on the store's thread (audit queries).
#[derive(Clone)]
pub(crate) struct Reader(Arc<dyn Fn() -> Result<Box<dyn TicketStore>, StoreError> + Send + Sync>);

impl Reader {
    /// A new connection.
    pub(crate) fn open(&self) -> Result<Box<dyn TicketStore>, StoreError> {
        (self.0)()
    }
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reader")
    }
}

/// Opens the configured store, and the way to open it again for reads.
fn open_store(config: &Config) -> Result<(Box<dyn TicketStore>, Reader), ServeError> {
    match (&config.store.backend, &config.store.postgres_url) {
        (config::Backend::Postgres, Some(url)) => {
            let schema = config.store.postgres_schema.clone();
            let open = {
                let url = url.clone();
                move || match &schema {
                    Some(schema) => PgStore::connect_in_schema(&url, schema),
                    None => PgStore::connect(&url),
                }
            };
            let store = open().map_err(|e| ServeError::Store {
                dir: "PostgreSQL".into(),
                source: Box::new(e),
            })?;
            let reader = Reader(Arc::new(move || {
                open().map(|s| Box::new(s) as Box<dyn TicketStore>)
            }));
            Ok((Box::new(store), reader))
        }
        _ => {
            let store = open_sqlite(config)?;
            let path = config.store.data_dir.join(DB_FILE);
            let reader = Reader(Arc::new(move || {
                Store::open_read_only(&path).map(|s| Box::new(s) as Box<dyn TicketStore>)
            }));
            Ok((store, reader))
        }
    }
}

fn open_sqlite(config: &Config) -> Result<Box<dyn TicketStore>, ServeError> {
    let dir = &config.store.data_dir;
    let fail = |source: Box<dyn std::error::Error + Send + Sync>| ServeError::Store {
        dir: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(Box::new(e)))?;
    let store = Store::open(&dir.join(DB_FILE)).map_err(|e| fail(Box::new(e)))?;
    if config.store.max_bytes > 0 {
        store
            .set_size_limit(config.store.max_bytes)
            .map_err(|e| fail(Box::new(e)))?;
    }
    Ok(Box::new(store))
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Starts the server. Rules come from `source`; everything else from
/// `config`. Returns once both endpoints are bound and the store is open.
pub async fn start(config: &Config, source: RuleSource) -> Result<Running, ServeError> {
    let watch_dir = match (&source, config.rules.watch) {
        (RuleSource::Dir(dir), true) => Some(dir.clone()),
        _ => None,
    };
    let guard = Arc::new(
        auth::Guard::new(&config.clients, &config.limits)
            .map_err(|e| ServeError::Security(e.to_string()))?,
    );
    let tls = match &config.tls {
        Some(t) => Some(tls::server_config(t).map_err(ServeError::Security)?),
        None => None,
    };
    if tls.is_none() && !config.server.listen.ip().is_loopback() {
        return Err(ServeError::Security(format!(
            "{}: plain TCP only on loopback; set [tls] cert and key (`minsheng gen-cert` makes a development set)",
            config.server.listen
        )));
    }
    let rules = Arc::new(tokio::task::block_in_place(|| Rules::load(source))?);
    // A database client may block while it connects.
    let (store, reader) = tokio::task::block_in_place(|| open_store(config))?;
    let (writer, writer_thread) = Writer::start(store, config.store.max_batch);
    let (stop_tx, stop_rx) = watch::channel(false);
    let lease = Duration::from_secs(u64::from(config.store.lease_seconds));
    let jet = match config.queue.backend {
        config::QueueBackend::Store => None,
        config::QueueBackend::Nats => {
            let jet = jet::Jet::connect(&config.queue, lease, writer.clone())
                .await
                .map_err(|e| ServeError::Queue(e.to_string()))?;
            let jet = Arc::new(jet);
            jet::sweep(jet.clone(), writer.clone(), stop_rx.clone());
            tracing::info!(nats = %config.queue.nats_url, stream = %config.queue.stream, "ticket queues on NATS JetStream");
            Some(jet)
        }
    };

    let metrics_addr = if config.metrics.enabled {
        let listener = bind(config.metrics.listen).await?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: config.metrics.listen,
            source,
        })?;
        serve_metrics(listener, writer.clone(), stop_rx.clone());
        Some(addr)
    } else {
        None
    };

    let listener = bind(config.server.listen).await?;
    let grpc_addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.server.listen,
        source,
    })?;

    if let Some(dir) = watch_dir {
        watch_rules(&dir, rules.clone(), writer.clone(), stop_rx.clone());
    }
    reload_on_hangup(rules.clone(), writer.clone(), stop_rx.clone());

    let shared = Shared {
        rules,
        writer,
        max_message_bytes: config.server.max_message_bytes,
        max_text_bytes: config.server.max_text_bytes,
        lease_ms: i64::from(config.store.lease_seconds) * 1000,
        jet,
        reader,
        stopping: stop_rx.clone(),
        guard: guard.clone(),
    };
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::intake_server::IntakeServer<service::Intake>>()
        .await;
    health
        .set_serving::<pb::dispatch_server::DispatchServer<service::Dispatch>>()
        .await;
    health
        .set_serving::<pb::tickets_server::TicketsServer<service::Tickets>>()
        .await;
    health
        .set_serving::<pb::rules_server::RulesServer<service::RulesService>>()
        .await;
    health
        .set_serving::<pb::audit_server::AuditServer<service::Audit>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    // Messages up to the ceiling are decoded so that one over the
    // configured limit is refused by name (INVALID_ARGUMENT), not by the
    // transport.
    let ceiling = config::MAX_MESSAGE_CEILING;
    let keepalive = Duration::from_secs(u64::from(config.limits.keepalive_seconds));
    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(keepalive))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .tcp_keepalive(Some(keepalive))
        .timeout(Duration::from_secs(u64::from(
            config.limits.request_timeout_seconds,
        )));
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .map_err(|e| ServeError::Security(format!("[tls]: {e}")))?;
    }
    let router = builder
        .add_service(health_service)
        .add_service(reflection)
        .add_service(
            pb::intake_server::IntakeServer::new(service::Intake(shared.clone()))
                .max_decoding_message_size(ceiling),
        )
        .add_service(
            pb::dispatch_server::DispatchServer::new(service::Dispatch(shared.clone()))
                .max_decoding_message_size(ceiling),
        )
        .add_service(
            pb::tickets_server::TicketsServer::new(service::Tickets(shared.clone()))
                .max_decoding_message_size(ceiling),
        )
        .add_service(
            pb::rules_server::RulesServer::new(service::RulesService(shared.clone()))
                .max_decoding_message_size(ceiling),
        )
        .add_service(pb::audit_server::AuditServer::new(service::Audit(shared)));
    // Without TCP_NODELAY small answers wait for the peer's delayed ACK
    // (some 40 ms each).
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut stop_grpc = stop_rx.clone();
    let done = tokio::spawn(async move {
        let served = router
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stopped(&mut stop_grpc).await;
                tracing::info!("shutting down: no new calls");
            })
            .await;
        // The services are gone; the store thread ends once the last
        // subscription and stream has dropped its handle.
        let closed = tokio::task::spawn_blocking(move || writer_thread.join());
        if tokio::time::timeout(Duration::from_secs(10), closed)
            .await
            .is_err()
        {
            tracing::warn!("the ticket store was still in use 10 s after shutdown");
        }
        served.map_err(ServeError::from)
    });
    tracing::info!(%grpc_addr, ?metrics_addr, "minsheng serving");
    if config.tls.is_none() {
        tracing::warn!(
            "plain TCP without TLS, allowed on loopback only; set [tls] in minsheng.toml for anything else"
        );
    }
    if !guard.enforced() {
        tracing::warn!(
            "no [[client]] configured: every caller may call everything; add clients with tokens or certificates and roles (README: running in production)"
        );
    }
    Ok(Running {
        grpc_addr,
        metrics_addr,
        stop: stop_tx,
        done,
    })
}

/// Resolves once the server is stopping.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|&s| s).await;
}

/// Serves `/metrics` and keeps the queue gauges current.
fn serve_metrics(listener: TcpListener, writer: Writer, mut stop: watch::Receiver<bool>) {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("minsheng_decision_seconds".into()),
            &[
                0.000_02, 0.000_05, 0.000_1, 0.000_2, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.05,
            ],
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("minsheng_commit_batch_size".into()),
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
            )
        })
        .expect("bucket lists are not empty");
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        tracing::warn!("a metrics recorder was already installed in this process");
    }
    let render = handle.clone();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let render = render.clone();
            async move { render.render() }
        }),
    );
    let mut stop_http = stop.clone();
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                stopped(&mut stop_http).await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "metrics endpoint failed");
        }
    });
    tokio::spawn(async move {
        let mut seen: Vec<String> = Vec::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = stopped(&mut stop) => break,
            }
            handle.run_upkeep();
            let Ok(stats) = writer.stats().await else {
                continue;
            };
            let now = writer::now_ms();
            let mut current = Vec::with_capacity(stats.len());
            for q in stats {
                metrics::gauge!("minsheng_queue_depth", "queue" => q.queue.clone())
                    .set(q.depth as f64);
                metrics::gauge!("minsheng_queue_oldest_unacked_seconds", "queue" => q.queue.clone())
                    .set((now - q.oldest_at).max(0) as f64 / 1000.0);
                current.push(q.queue);
            }
            for gone in seen.iter().filter(|q| !current.contains(q)) {
                metrics::gauge!("minsheng_queue_depth", "queue" => gone.clone()).set(0.0);
                metrics::gauge!("minsheng_queue_oldest_unacked_seconds", "queue" => gone.clone())
                    .set(0.0);
            }
            seen = current;
        }
    });
}

/// Reloads the rules when a file of their directory changes (events
/// within 300 ms count as one change).
fn watch_rules(dir: &Path, rules: Arc<Rules>, writer: Writer, mut stop: watch::Receiver<bool>) {
    use notify::Watcher;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.try_send(());
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the rule directory; reload with SIGHUP or Rules.Reload");
            return;
        }
    };
    if let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the rule directory; reload with SIGHUP or Rules.Reload");
        return;
    }
    tokio::spawn(async move {
        let _watcher = watcher;
        loop {
            tokio::select! {
                got = rx.recv() => if got.is_none() { break },
                _ = stopped(&mut stop) => break,
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            while rx.try_recv().is_ok() {}
            let _ = reload_recorded(&rules, &writer, "file change", "system").await;
        }
    });
}

/// Reloads the rules on SIGHUP.
fn reload_on_hangup(rules: Arc<Rules>, writer: Writer, mut stop: watch::Receiver<bool>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP");
                return;
            }
        };
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = hangup.recv() => {
                        let _ = reload_recorded(&rules, &writer, "SIGHUP", "system").await;
                    }
                    _ = stopped(&mut stop) => break,
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (rules, writer, stop);
}
