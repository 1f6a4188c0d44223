//! `minsheng`: the command line of the hotline triage router. It parses
//! flags, wires the crates together and prints; the decisions are made in
//! `minsheng-classify`.

mod audit;
mod bench;
mod commands;
mod gencert;
mod load;
mod render;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use minsheng_core::Hotline;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_rules.rs"));
}

/// Hotline triage router: decides who handles a 110/12345 call — police,
/// a township team, the 12345 work-order system or the shared court — and
/// explains why.
#[derive(Debug, Parser)]
#[command(name = "minsheng", version)]
struct Cli {
    /// Rule directory to use instead of the rule set built into the binary
    /// (also MINSHENG_RULES).
    #[arg(long, global = true, env = "MINSHENG_RULES", value_name = "DIR")]
    rules: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Classify one call (TEXT), or every line of a JSONL file (--input).
    Classify {
        /// The call's text.
        #[arg(required_unless_present = "input", conflicts_with = "input")]
        text: Option<String>,
        /// The hotline the citizen used: 110, 12345 or app.
        #[arg(long, default_value = "110", value_parser = parse_hotline)]
        hotline: Hotline,
        /// The address the operator system filled in.
        #[arg(long, value_name = "ADDR")]
        location: Option<String>,
        /// Print the decision as JSON.
        #[arg(long)]
        json: bool,
        /// Classify every call of a JSONL file (corpus format, `expected`
        /// optional): one JSON decision a line on stdout, in input order.
        #[arg(long, value_name = "FILE.jsonl")]
        input: Option<PathBuf>,
        /// With --input: a line that cannot be read still gets its error
        /// object in place, but no longer fails the run.
        #[arg(long, requires = "input")]
        skip_bad: bool,
    },
    /// Check or test a rule directory.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Measure the classifier on a labelled corpus.
    Eval {
        /// The corpus (one JSON call a line, with `expected`).
        #[arg(long, value_name = "FILE.jsonl")]
        corpus: PathBuf,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
        /// List every wrong call with its explanation.
        #[arg(long)]
        misses: bool,
        /// Leave out lines that cannot be read (each named on stderr) and
        /// measure the rest; without it a bad line stops the run.
        #[arg(long)]
        skip_bad: bool,
    },
    /// Throughput of full classification against segmentation alone, load
    /// time and peak memory, on one core; with --addr, a load generator
    /// that drives SubmitCall on a running server.
    Bench {
        /// Calls to run (JSONL); default: the example calls of the rule set.
        #[arg(long, value_name = "FILE.jsonl")]
        corpus: Option<PathBuf>,
        /// Seconds to spend on each measurement (with --addr: on the load).
        #[arg(long, visible_alias = "duration", default_value_t = 3.0)]
        seconds: f64,
        /// Drive the server at this address (host:port) instead; several
        /// nodes separated by commas share the load.
        #[arg(long, value_name = "HOST:PORT[,HOST:PORT…]")]
        addr: Option<String>,
        /// With --addr: calls in flight at once.
        #[arg(long, default_value_t = 64, requires = "addr")]
        concurrency: usize,
        /// With --addr: connections the calls share.
        #[arg(long, default_value_t = 4, requires = "addr")]
        connections: usize,
    },
    /// Run the gRPC server: intake, dispatch queues, tickets, rules.
    ///
    /// Rules from ./rules (the built-in set when it does not exist), data
    /// in ./data, gRPC on 127.0.0.1:50051, metrics on
    /// 127.0.0.1:9464/metrics; ./minsheng.toml or --config changes them.
    Serve {
        /// Configuration file (default: ./minsheng.toml when it exists).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// gRPC address (port 0: any free port, printed at start).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Metrics address.
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<SocketAddr>,
        /// Serve no metrics.
        #[arg(long, conflicts_with = "metrics_listen")]
        no_metrics: bool,
        /// Data directory.
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        /// Log format on stderr.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Read the audit log of a data directory: verify its hash chain, query
    /// its records, count the decisions and the overrides.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Make a development certificate authority, a server certificate and
    /// client certificates for TLS and mutual TLS (not for production).
    ///
    /// Writes ca.pem and ca.key, server.pem and server.key (for localhost,
    /// 127.0.0.1 and every --host), and NAME.pem and NAME.key for every
    /// --client NAME (its common name). Keys are readable by their owner
    /// alone.
    GenCert {
        /// The directory to write into (created if missing).
        #[arg(long, value_name = "DIR", default_value = "certs")]
        out: PathBuf,
        /// Another name or IP address the server certificate is valid for
        /// (repeatable).
        #[arg(long = "host", value_name = "NAME")]
        hosts: Vec<String>,
        /// Make a client certificate with this common name (repeatable).
        #[arg(long = "client", value_name = "NAME")]
        clients: Vec<String>,
        /// Days the certificates are valid from now.
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=36_500))]
        days: u32,
        /// Replace an existing ca.pem and ca.key in the directory.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    /// Report every problem of a rule directory, like a compiler. Exit 1 on
    /// an error, 0 when there are only warnings.
    Check {
        /// The directory (default: ./rules if it exists, else the built-in set).
        dir: Option<PathBuf>,
    },
    /// Run the example calls of a rule directory; report each that goes
    /// elsewhere.
    Test {
        /// The directory (default: ./rules if it exists, else the built-in set).
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Lines for people.
    Text,
    /// One JSON object a line.
    Json,
}

fn init_logs(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MINSHENG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

fn parse_hotline(s: &str) -> Result<Hotline, String> {
    s.parse().map_err(|e: minsheng_core::Error| e.to_string())
}

fn main() -> ExitCode {
    // Printing into a closed pipe (`minsheng eval … | head`) ends the
    // program quietly, as it does for every Unix tool, instead of a panic.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE at start-up,
    // before any thread exists, is sound.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match &cli.command {
        Command::Serve { log_format, .. } => init_logs(*log_format, "info"),
        _ => init_logs(LogFormat::Text, "warn"),
    }
    let result = match cli.command {
        Command::Classify {
            text,
            hotline,
            location,
            json,
            input,
            skip_bad,
        } => match input {
            Some(path) => commands::classify_file(cli.rules.as_deref(), &path, skip_bad),
            None => commands::classify_one(
                cli.rules.as_deref(),
                text.unwrap_or_default(),
                hotline,
                location,
                json,
            ),
        },
        Command::Rules {
            command: RulesCommand::Check { dir },
        } => commands::rules_check(dir.or(cli.rules).as_deref()),
        Command::Rules {
            command: RulesCommand::Test { dir },
        } => commands::rules_test(dir.or(cli.rules).as_deref()),
        Command::Eval {
            corpus,
            json,
            misses,
            skip_bad,
        } => commands::eval(cli.rules.as_deref(), &corpus, json, misses, skip_bad),
        Command::Bench {
            corpus,
            seconds,
            addr: None,
            ..
        } => bench::run(cli.rules.as_deref(), corpus.as_deref(), seconds),
        Command::Bench {
            corpus,
            seconds,
            addr: Some(addr),
            concurrency,
            connections,
        } => commands::load(cli.rules.as_deref())
            .and_then(|c| bench::calls(&c, corpus.as_deref()))
            .and_then(|calls| {
                let load = load::Load {
                    addr,
                    concurrency,
                    connections,
                    seconds,
                };
                load::run(&load, calls)
            }),
        Command::Serve {
            config,
            listen,
            metrics_listen,
            no_metrics,
            data,
            log_format: _,
        } => serve::run(&serve::Overrides {
            config,
            rules: cli.rules,
            listen,
            metrics_listen,
            no_metrics,
            data,
        }),
        Command::Audit { command } => audit::run(command),
        Command::GenCert {
            out,
            hosts,
            clients,
            days,
            force,
        } => gencert::run(&gencert::Request {
            out,
            hosts,
            clients,
            days,
            force,
        }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
