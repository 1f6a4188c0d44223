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
    /// `[metrics]`: the Prometheus endpoint.
    pub metrics: MetricsConfig,
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
            max_text_bytes: 64 << 10,
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

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
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
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
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
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
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

#[cfg(test)]
mod tests {
    use super::*;

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
