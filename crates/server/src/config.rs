//! `minsheng.toml`: where the server listens, where its rules and data are,
//! and its limits. Every key has a default, so the file is optional; an
//! unknown key is an error, never silently ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The server's configuration.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[server]`: the gRPC endpoint.
    pub server: ServerConfig,
    /// `[rules]`: the rule directory.
    pub rules: RulesConfig,
    /// `[store]`: the ticket store.
    pub store: StoreConfig,
    /// `[queue]`: who delivers the tickets: the store itself, or NATS
    /// JetStream.
    pub queue: QueueConfig,
    /// `[metrics]`: the Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// `[tls]`: TLS on the gRPC port, and mutual TLS when `client_ca` is set.
    pub tls: Option<TlsConfig>,
    /// `[[client]]`: who may call what. With none, every caller may call
    /// everything (only allowed on loopback).
    #[serde(rename = "client")]
    pub clients: Vec<ClientConfig>,
    /// `[limits]`: what one client may use.
    pub limits: LimitsConfig,
}

/// `[tls]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA that signs client certificates (PEM): set, clients may prove
    /// who they are with a certificate (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// A secret that never shows in logs or debug output.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// `[[client]]`: one client identity and its roles.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Its name, as the audit log records it (`110-cad`).
    pub name: String,
    /// Its bearer token, inline (better: `token_env` or `token_file`).
    pub token: Option<Secret>,
    /// The environment variable that holds its token.
    pub token_env: Option<String>,
    /// The file that holds its token (whitespace around it ignored).
    pub token_file: Option<PathBuf>,
    /// The common name (CN) of its client certificate, with mutual TLS.
    pub cert_subject: Option<String>,
    /// What it may do: `intake` or `intake:110|12345|app`,
    /// `consumer:<queue>` (a trailing `*` matches any rest:
    /// `consumer:township.*`), `dispatcher`, `rules-admin`, `auditor`.
    pub roles: Vec<String>,
}

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Calls a second one client may make, on average (500).
    pub calls_per_second: u32,
    /// Calls one client may make at once above that rate (1,000).
    pub burst: u32,
    /// Calls of one client in flight at once (128).
    pub max_in_flight: u32,
    /// Open Subscribe streams of one client (64).
    pub max_subscriptions: u32,
    /// HTTP/2 keepalive ping interval, seconds (30); a peer that does not
    /// answer within 20 s is dropped.
    pub keepalive_seconds: u32,
    /// The longest a call (not a stream) may take, seconds (30); past it
    /// the caller gets CANCELLED. A shorter client deadline wins.
    pub request_timeout_seconds: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            calls_per_second: 500,
            burst: 1000,
            max_in_flight: 128,
            max_subscriptions: 64,
            keepalive_seconds: 30,
            request_timeout_seconds: 30,
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the gRPC endpoint (`127.0.0.1:50051`; port 0 picks a
    /// free one, printed at start).
    pub listen: SocketAddr,
    /// The largest request message accepted, in bytes (1 MiB); a larger
    /// one is refused with INVALID_ARGUMENT. At most 16 MiB.
    pub max_message_bytes: usize,
    /// The longest call text accepted, in bytes (64 KiB).
    pub max_text_bytes: usize,
}

/// `[rules]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// The rule directory (`rules`). When it does not exist, the rule set
    /// built into the binary serves, and reloads have nothing to read.
    pub dir: PathBuf,
    /// Reload when a file of the directory changes (true).
    pub watch: bool,
}

/// `[store]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Where tickets and the audit log are kept: `sqlite` (embedded, in
    /// `data_dir`) or `postgres` (shared by several nodes, at
    /// `postgres_url`).
    pub backend: Backend,
    /// The PostgreSQL connection string, with `backend = "postgres"`
    /// (`host=127.0.0.1 user=minsheng dbname=minsheng`).
    pub postgres_url: Option<String>,
    /// The PostgreSQL schema the tables are in (created if missing); the
    /// connection's default when absent.
    pub postgres_schema: Option<String>,
    /// The data directory (`data`); the tickets are in `tickets.db` there.
    pub data_dir: PathBuf,
    /// How long a delivered ticket stays leased when the consumer does not
    /// ask for a lease of its own, in seconds (30).
    pub lease_seconds: u32,
    /// The most calls committed together in one transaction (512).
    pub max_batch: usize,
    /// A cap on the size of the ticket database in bytes, 0 for none (0).
    /// Past it, calls are refused with UNAVAILABLE as on a full disk.
    pub max_bytes: u64,
}

/// `[queue]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Who delivers tickets to consumers: `store` (the ticket store's own
    /// queues, the default) or `nats` (NATS JetStream, shared by several
    /// nodes; needs `store.backend = "postgres"`).
    pub backend: QueueBackend,
    /// The NATS server, with `backend = "nats"` (`nats://127.0.0.1:4222`).
    pub nats_url: String,
    /// The JetStream stream of the ticket queues, created if missing
    /// (`MINSHENG_TICKETS`).
    pub stream: String,
    /// The subjects' prefix: queue `police` is `<prefix>.police`
    /// (`minsheng.tickets`).
    pub subject_prefix: String,
    /// Deliveries of a ticket without an ack before it moves to the
    /// `dead_letter` queue (5).
    pub max_deliver: u32,
    /// How long JetStream remembers a message id, so that a retried
    /// publish is not a second message, in seconds (120).
    pub duplicate_window_seconds: u32,
    /// How long intake waits for JetStream to store a ticket before it
    /// answers UNAVAILABLE, in milliseconds (2000).
    pub publish_timeout_ms: u64,
    /// The environment variable that holds the NATS token, when the
    /// server wants one (never the token itself in this file).
    pub nats_token_env: Option<String>,
    /// The NATS user, with `nats_password_env`.
    pub nats_user: Option<String>,
    /// The environment variable that holds the NATS user's password.
    pub nats_password_env: Option<String>,
    /// The CA that signs the NATS server's certificate (PEM): set, the
    /// connection must be TLS.
    pub nats_tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) for NATS servers that verify clients,
    /// with `nats_tls_key`.
    pub nats_tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub nats_tls_key: Option<PathBuf>,
}

/// Who delivers the tickets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueBackend {
    /// The ticket store's own queues (leases in SQLite or PostgreSQL).
    #[default]
    Store,
    /// NATS JetStream.
    Nats,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            backend: QueueBackend::Store,
            nats_url: "nats://127.0.0.1:4222".into(),
            stream: "MINSHENG_TICKETS".into(),
            subject_prefix: "minsheng.tickets".into(),
            max_deliver: 5,
            duplicate_window_seconds: 120,
            publish_timeout_ms: 2000,
            nats_token_env: None,
            nats_user: None,
            nats_password_env: None,
            nats_tls_ca: None,
            nats_tls_cert: None,
            nats_tls_key: None,
        }
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `/metrics` (true).
    pub enabled: bool,
    /// Its address (`127.0.0.1:9464`; port 0 picks a free one).
    pub listen: SocketAddr,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            max_message_bytes: 1 << 20,
            max_text_bytes: minsheng_core::MAX_TEXT_BYTES,
        }
    }
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            dir: PathBuf::from("rules"),
            watch: true,
        }
    }
}

/// Where tickets are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Embedded SQLite in the data directory.
    #[default]
    Sqlite,
    /// A PostgreSQL database shared by several nodes.
    Postgres,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: Backend::Sqlite,
            postgres_url: None,
            postgres_schema: None,
            data_dir: PathBuf::from("data"),
            lease_seconds: 30,
            max_batch: 512,
            max_bytes: 0,
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

/// The hard ceiling of `server.max_message_bytes`.
pub const MAX_MESSAGE_CEILING: usize = 16 << 20;

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// It could not be read.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        cause: std::io::Error,
    },
    /// It is not valid TOML, has an unknown key or a bad value.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Io {
            path: path.display().to_string(),
            cause,
        })?;
        Config::parse(&path.display().to_string(), &text)
    }

    /// Parses and checks a configuration; `path` names it in errors.
    pub fn parse(path: &str, text: &str) -> Result<Config, ConfigError> {
        let invalid = |offset: usize, message: String| {
            let before = &text[..offset.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            ConfigError::Invalid {
                path: path.to_owned(),
                line,
                column,
                message,
            }
        };
        let config: Config = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            invalid(offset, e.message().trim().to_owned())
        })?;
        let max = config.server.max_message_bytes;
        if max == 0 || max > MAX_MESSAGE_CEILING {
            let offset = text.find("max_message_bytes").unwrap_or(0);
            return Err(invalid(
                offset,
                format!(
                    "server.max_message_bytes must be between 1 and {MAX_MESSAGE_CEILING}, not {max}"
                ),
            ));
        }
        for (i, client) in config.clients.iter().enumerate() {
            let at = nth_offset(text, "[[client]]", i);
            let sources = [
                client.token.is_some(),
                client.token_env.is_some(),
                client.token_file.is_some(),
            ]
            .iter()
            .filter(|&&b| b)
            .count();
            if sources > 1 {
                return Err(invalid(
                    at,
                    format!(
                        "client {:?}: give one of token, token_env, token_file",
                        client.name
                    ),
                ));
            }
            if sources == 0 && client.cert_subject.is_none() {
                return Err(invalid(
                    at,
                    format!(
                        "client {:?}: no way to prove who it is (token, token_env, token_file or cert_subject)",
                        client.name
                    ),
                ));
            }
            for role in &client.roles {
                if let Err(e) = crate::auth::Role::parse(role) {
                    let offset = text[at..].find(role.as_str()).map_or(at, |o| at + o);
                    return Err(invalid(offset, format!("client {:?}: {e}", client.name)));
                }
            }
        }
        let l = &config.limits;
        if l.calls_per_second == 0
            || l.burst == 0
            || l.max_in_flight == 0
            || l.max_subscriptions == 0
            || l.keepalive_seconds == 0
            || l.request_timeout_seconds == 0
        {
            let offset = text.find("[limits]").unwrap_or(0);
            return Err(invalid(
                offset,
                "every [limits] value must be at least 1".into(),
            ));
        }
        if config.store.backend == Backend::Postgres && config.store.postgres_url.is_none() {
            let offset = text.find("backend").unwrap_or(0);
            return Err(invalid(
                offset,
                "store.backend = \"postgres\" needs store.postgres_url".into(),
            ));
        }
        let q = &config.queue;
        if q.backend == QueueBackend::Nats {
            let at = |key: &str| {
                text.find("[queue]")
                    .and_then(|o| text[o..].find(key).map(|k| o + k))
                    .unwrap_or(0)
            };
            if config.store.backend != Backend::Postgres {
                return Err(invalid(
                    at("backend"),
                    "queue.backend = \"nats\" needs store.backend = \"postgres\": the nodes that share the queues must share the tickets".into(),
                ));
            }
            if q.max_deliver == 0 || q.duplicate_window_seconds == 0 || q.publish_timeout_ms == 0 {
                return Err(invalid(
                    at("["),
                    "queue.max_deliver, queue.duplicate_window_seconds and queue.publish_timeout_ms must be at least 1".into(),
                ));
            }
            let token = |s: &str| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            };
            if !token(&q.stream) {
                return Err(invalid(
                    at("stream"),
                    format!(
                        "queue.stream: {:?} is not a stream name (letters, digits, _ and -)",
                        q.stream
                    ),
                ));
            }
            if q.nats_token_env.is_some() && q.nats_user.is_some() {
                return Err(invalid(
                    at("nats_token_env"),
                    "queue: give nats_token_env or nats_user, not both".into(),
                ));
            }
            if q.nats_user.is_some() != q.nats_password_env.is_some() {
                return Err(invalid(
                    at("nats_"),
                    "queue.nats_user and queue.nats_password_env go together".into(),
                ));
            }
            if q.nats_tls_cert.is_some() != q.nats_tls_key.is_some() {
                return Err(invalid(
                    at("nats_tls"),
                    "queue.nats_tls_cert and queue.nats_tls_key go together".into(),
                ));
            }
            if q.subject_prefix.is_empty() || q.subject_prefix.split('.').any(|t| !token(t)) {
                return Err(invalid(
                    at("subject_prefix"),
                    format!(
                        "queue.subject_prefix: {:?} is not a subject (dot-separated letters, digits, _ and -)",
                        q.subject_prefix
                    ),
                ));
            }
        }
        if config.store.lease_seconds == 0 || config.store.max_batch == 0 {
            let key = if config.store.lease_seconds == 0 {
                "lease_seconds"
            } else {
                "max_batch"
            };
            let offset = text.find(key).unwrap_or(0);
            return Err(invalid(offset, format!("store.{key} must be at least 1")));
        }
        Ok(config)
    }
}

/// The byte offset of the `n`th occurrence of `needle` (0 when missing).
fn nth_offset(text: &str, needle: &str, n: usize) -> usize {
    text.match_indices(needle).nth(n).map_or(0, |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_queues_need_the_shared_store_and_sound_names() {
        let err = Config::parse("m.toml", "[queue]\nbackend = \"nats\"\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("m.toml:2:1: queue.backend = \"nats\" needs store.backend"),
            "{err}"
        );
        let pg = "[store]\nbackend = \"postgres\"\npostgres_url = \"host=x\"\n[queue]\nbackend = \"nats\"\n";
        let c = Config::parse("m.toml", pg).unwrap();
        assert_eq!(
            (c.queue.backend, c.queue.max_deliver),
            (QueueBackend::Nats, 5)
        );
        let err = Config::parse("m.toml", &format!("{pg}subject_prefix = \"a..b\"\n")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("m.toml:6:1: queue.subject_prefix"),
            "{err}"
        );
        let err = Config::parse("m.toml", &format!("{pg}max_deliver = 0\n")).unwrap_err();
        assert!(err.to_string().contains("queue.max_deliver"), "{err}");
        let err = Config::parse("m.toml", &format!("{pg}nats_user = \"minsheng\"\n")).unwrap_err();
        assert!(
            err.to_string().contains("nats_password_env go together"),
            "{err}"
        );
        let err = Config::parse(
            "m.toml",
            &format!("{pg}nats_token_env = \"T\"\nnats_user = \"u\"\nnats_password_env = \"P\"\n"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
        let err = Config::parse("m.toml", "[queue]\nbackend = \"kafka\"\n").unwrap_err();
        assert!(err.to_string().starts_with("m.toml:2:11:"), "{err}");
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        assert_eq!(Config::parse("m.toml", "").unwrap(), Config::default());
    }

    #[test]
    fn keys_override_defaults() {
        let c = Config::parse(
            "m.toml",
            "[server]\nlisten = \"127.0.0.1:6000\"\n[store]\ndata_dir = \"/var/lib/minsheng\"\n",
        )
        .unwrap();
        assert_eq!(c.server.listen.port(), 6000);
        assert_eq!(c.store.data_dir, PathBuf::from("/var/lib/minsheng"));
        assert_eq!(c.store.lease_seconds, 30);
    }

    #[test]
    fn an_unknown_key_names_the_file_line_and_column() {
        let err = Config::parse("m.toml", "[store]\nlease_secs = 5\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("m.toml:2:1: "), "{msg}");
        assert!(msg.contains("unknown field `lease_secs`"), "{msg}");
    }

    #[test]
    fn out_of_range_limits_are_refused() {
        let err = Config::parse("m.toml", "[server]\nmax_message_bytes = 0\n").unwrap_err();
        assert!(err.to_string().starts_with("m.toml:2:1: "), "{err}");
        let err = Config::parse("m.toml", "[store]\nlease_seconds = 0\n").unwrap_err();
        assert!(err.to_string().contains("store.lease_seconds"), "{err}");
    }
}

#[cfg(test)]
mod security_tests {
    use super::*;

    #[test]
    fn clients_need_a_proof_and_known_roles() {
        let ok = Config::parse(
            "m.toml",
            "[[client]]\nname = \"110-cad\"\ntoken_env = \"T\"\nroles = [\"intake:110\", \"consumer:township.*\"]\n",
        )
        .unwrap();
        assert_eq!(ok.clients[0].roles.len(), 2);
        let err = Config::parse(
            "m.toml",
            "[server]\n\n[[client]]\nname = \"x\"\nroles = [\"auditor\"]\n",
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("m.toml:3:1: "), "{err}");
        assert!(err.to_string().contains("no way to prove"), "{err}");
        let err = Config::parse(
            "m.toml",
            "[[client]]\nname = \"x\"\ntoken = \"t\"\nroles = [\"auditr\"]\n",
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("m.toml:4:11: "), "{err}");
        assert!(err.to_string().contains("unknown role \"auditr\""), "{err}");
    }

    #[test]
    fn a_token_never_shows_in_debug_output() {
        let c = Config::parse(
            "m.toml",
            "[[client]]\nname = \"x\"\ntoken = \"s3cret-value\"\nroles = [\"auditor\"]\n",
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("s3cret-value"));
    }
}
