//! The backends the behavioural tests run on: the embedded SQLite store,
//! and PostgreSQL, a fresh schema for each database a test asks for.
//!
//! PostgreSQL is `host=127.0.0.1 port=5432 user=postgres dbname=test`
//! (trust authentication), or the connection string in
//! `MINSHENG_TEST_POSTGRES`. When it cannot be reached, a test under CI
//! (`CI` set) fails; elsewhere it says so loudly and passes without
//! running.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use minsheng_store::{NewTicket, PgStore, Store, TicketStore};

/// The database of the PostgreSQL tests, unless `MINSHENG_TEST_POSTGRES`
/// names another.
pub const DEFAULT_POSTGRES: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

/// Instantiates test bodies, each `fn(&Backend)`, once per backend:
/// `sqlite::NAME` and `postgres::NAME`.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name(&super::common::Backend::Sqlite)
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    if let Some(backend) = super::common::Backend::postgres(stringify!($name)) {
                        super::$name(&backend)
                    }
                }
            )*
        }
    };
}

/// Where a test's databases are made.
pub enum Backend {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A schema of its own in a PostgreSQL database.
    Postgres {
        /// The connection string.
        url: String,
    },
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

impl Backend {
    /// PostgreSQL when it answers. When it does not: a panic under CI, and
    /// elsewhere a loud message and `None`, so that `test` is skipped.
    pub fn postgres(test: &str) -> Option<Backend> {
        let url =
            std::env::var("MINSHENG_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned());
        match ::postgres::Client::connect(&url, ::postgres::NoTls) {
            Ok(_) => Some(Backend::Postgres { url }),
            Err(e) => {
                let message = format!(
                    "PostgreSQL at {url} is not reachable ({}): skipping {test}; start it with: \
                     pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
                    minsheng_store::StoreError::from(e)
                );
                if under_ci() {
                    panic!("{message} (CI is set, so this fails the test)");
                }
                // Straight to the process's stderr: the test harness
                // captures `eprintln!` of a passing test.
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "\n!!!!!!!!!!\n!!! {message}\n!!!!!!!!!!\n"
                );
                None
            }
        }
    }

    /// A new, empty database.
    pub fn fresh(&self) -> Db {
        match self {
            Backend::Sqlite => Db::Sqlite {
                dir: tempfile::tempdir().unwrap(),
            },
            Backend::Postgres { url } => {
                static NEXT: AtomicU64 = AtomicU64::new(0);
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos();
                Db::Postgres {
                    url: url.clone(),
                    schema: format!(
                        "minsheng_test_{}_{nanos}_{}",
                        std::process::id(),
                        NEXT.fetch_add(1, Ordering::Relaxed)
                    ),
                }
            }
        }
    }
}

/// One database, shared by every store opened on it; a PostgreSQL schema
/// is dropped with it.
pub enum Db {
    /// A SQLite file.
    Sqlite {
        /// Its directory.
        dir: tempfile::TempDir,
    },
    /// A PostgreSQL schema.
    Postgres {
        /// The connection string.
        url: String,
        /// The schema.
        schema: String,
    },
}

impl Db {
    /// A store on this database: each call is another connection, as a
    /// reopened store or another node is.
    pub fn open(&self) -> Box<dyn TicketStore> {
        match self {
            Db::Sqlite { dir } => Box::new(Store::open(&dir.path().join("t.db")).unwrap()),
            Db::Postgres { url, schema } => {
                Box::new(PgStore::connect_in_schema(url, schema).unwrap())
            }
        }
    }

    /// Runs SQL on the database directly, past the store, as someone
    /// tampering with it would.
    pub fn tamper(&self, sql: &str) {
        match self {
            Db::Sqlite { dir } => rusqlite::Connection::open(dir.path().join("t.db"))
                .unwrap()
                .execute_batch(sql)
                .unwrap(),
            Db::Postgres { .. } => self.client().batch_execute(sql).unwrap(),
        }
    }

    /// A plain PostgreSQL connection whose `search_path` is this schema.
    pub fn client(&self) -> ::postgres::Client {
        let Db::Postgres { url, schema } = self else {
            panic!("not a PostgreSQL database");
        };
        let mut client = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
        client
            .batch_execute(&format!("SET search_path TO \"{schema}\""))
            .unwrap();
        client
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Db::Postgres { url, schema } = self {
            if let Ok(mut client) = ::postgres::Client::connect(url, ::postgres::NoTls) {
                let _ =
                    client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"));
            }
        }
    }
}

/// Queues one call.
pub fn submit(s: &dyn TicketStore, t: &NewTicket, now: i64) -> (i64, bool) {
    s.submit_batch(std::slice::from_ref(t), now).unwrap()[0]
}

/// How many tickets of a queue are open.
pub fn depth(s: &dyn TicketStore, queue: &str) -> i64 {
    s.open_queues()
        .unwrap()
        .iter()
        .find(|q| q.queue == queue)
        .map_or(0, |q| q.depth)
}
