//! `minsheng serve`: the gRPC server on the configuration of
//! `minsheng.toml` (optional) and the flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use minsheng_server::{Config, RuleSource};

use crate::commands;

/// The flags of `minsheng serve` that override the configuration file.
#[derive(Debug, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub rules: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub metrics_listen: Option<SocketAddr>,
    pub no_metrics: bool,
    pub data: Option<PathBuf>,
}

/// The configuration: the file named, else `./minsheng.toml` when it
/// exists, else the defaults; then the flags.
pub fn config(o: &Overrides) -> anyhow::Result<Config> {
    let default = Path::new("minsheng.toml");
    let mut config = match (&o.config, default.is_file()) {
        (Some(path), _) => Config::from_file(path)?,
        (None, true) => Config::from_file(default)?,
        (None, false) => Config::default(),
    };
    if let Some(dir) = &o.rules {
        config.rules.dir = dir.clone();
    }
    if let Some(addr) = o.listen {
        config.server.listen = addr;
    }
    if let Some(addr) = o.metrics_listen {
        config.metrics.listen = addr;
    }
    if o.no_metrics {
        config.metrics.enabled = false;
    }
    if let Some(dir) = &o.data {
        config.store.data_dir = dir.clone();
    }
    Ok(config)
}

pub fn run(o: &Overrides) -> anyhow::Result<ExitCode> {
    let config = config(o)?;
    let source = if config.rules.dir.is_dir() {
        RuleSource::Dir(config.rules.dir.clone())
    } else if o.rules.is_some() || o.config.is_some() {
        anyhow::bail!("no rule directory {}", config.rules.dir.display());
    } else {
        tracing::warn!(
            dir = %config.rules.dir.display(),
            "no rule directory; serving the rule set built into the binary"
        );
        RuleSource::BuiltIn(commands::rule_files(None)?)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("minsheng")
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        // Signal handlers go in before the server says it is up: a
        // supervisor that reads the line below and sends SIGTERM at once
        // must get a graceful stop, not the default death by signal.
        let shutdown = shutdown_signal()?;
        let running = minsheng_server::start(&config, source).await?;
        let metrics = running
            .metrics_addr
            .map_or_else(|| "off".to_owned(), |a| format!("http://{a}/metrics"));
        // One line on stdout for people and for scripts that started the
        // server on port 0.
        let store = match config.store.backend {
            minsheng_server::config::Backend::Sqlite => {
                format!("data in {}", config.store.data_dir.display())
            }
            minsheng_server::config::Backend::Postgres => match config.queue.backend {
                minsheng_server::config::QueueBackend::Store => "tickets in PostgreSQL".to_owned(),
                minsheng_server::config::QueueBackend::Nats => format!(
                    "tickets in PostgreSQL, queues on NATS JetStream at {}",
                    config.queue.nats_url
                ),
            },
        };
        println!(
            "minsheng serving gRPC on {}; metrics {metrics}; {store}",
            running.grpc_addr
        );
        shutdown.await;
        tracing::info!("shutdown signal: finishing calls in flight");
        running.stop();
        running.wait().await?;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Installs the SIGTERM and Ctrl-C handlers now; the future resolves on
/// the first of them.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
