//! The audit log: every event of every ticket, and of the rule set, in one
//! hash chain.
//!
//! Record `n` carries the SHA-256 of record `n − 1`, and its own hash covers
//! every field and that link; the head (last sequence number and hash) is
//! kept in a row of its own, written in the same transaction. Editing a
//! record breaks its hash, deleting or inserting one breaks the sequence
//! or a link, swapping two breaks both, and cutting records off the end
//! disagrees with the head. Records are appended in the transaction of the
//! change they describe, so there is no change without its record.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The hash before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Its place in the chain, from 1.
    pub seq: i64,
    /// When (ms since the Unix epoch).
    pub at: i64,
    /// What happened: `received`, `delivered`, `acked`, `nacked`,
    /// `expired`, `rerouted`, `rules_loaded`, `rules_rejected`,
    /// `numbers_shown`.
    pub kind: String,
    /// Who: a client, a consumer, a person, or the system.
    pub actor: String,
    /// The ticket, for ticket events.
    pub ticket_id: Option<i64>,
    /// The operator system's call id, for ticket events.
    pub call_id: Option<String>,
    /// The hotline of the call.
    pub hotline: Option<String>,
    /// The ticket's queue after the event.
    pub queue: Option<String>,
    /// The ticket's destination after the event.
    pub destination: Option<String>,
    /// The ticket's township after the event.
    pub township: Option<String>,
    /// The rules that fired for the call (for `received`).
    pub rules: Vec<String>,
    /// The rule-set version of the decision, or the new version (for
    /// `rules_loaded`).
    pub rules_version: Option<String>,
    /// The event's details, as JSON: the decision and the call for
    /// `received`, from/to/reason for `rerouted`…
    pub detail: String,
    /// The hash of the record before.
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
}

/// A record to append; the chain fills in its place and hashes.
#[derive(Debug, Clone, Default)]
pub struct Entry<'a> {
    /// What happened.
    pub kind: &'a str,
    /// Who.
    pub actor: &'a str,
    /// The ticket, for ticket events.
    pub ticket_id: Option<i64>,
    /// Its call id.
    pub call_id: Option<&'a str>,
    /// Its hotline.
    pub hotline: Option<&'a str>,
    /// Its queue after the event.
    pub queue: Option<&'a str>,
    /// Its destination after the event.
    pub destination: Option<&'a str>,
    /// Its township after the event.
    pub township: Option<&'a str>,
    /// The rules that fired.
    pub rules: &'a [String],
    /// The rule-set version.
    pub rules_version: Option<&'a str>,
    /// Details, as JSON.
    pub detail: &'a str,
}

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    ticket_id INTEGER,
    call_id TEXT,
    hotline TEXT,
    queue TEXT,
    destination TEXT,
    township TEXT,
    rules TEXT NOT NULL,
    rules_version TEXT,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_ticket ON audit (ticket_id, seq) WHERE ticket_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS audit_by_time ON audit (at);
CREATE TABLE IF NOT EXISTS audit_head (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
-- The last record removed by a prune: the chain starts after it.
CREATE TABLE IF NOT EXISTS audit_anchor (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
";

pub(crate) const COLUMNS: &str = "seq, at, kind, actor, ticket_id, call_id, hotline, queue, destination, township, rules, rules_version, detail, prev_hash, hash";

/// Rule ids as stored: `,a,b,` so that one id is found with `LIKE '%,a,%'`.
pub(crate) fn join_rules(rules: &[String]) -> String {
    if rules.is_empty() {
        String::new()
    } else {
        format!(",{},", rules.join(","))
    }
}

pub(crate) fn split_rules(stored: &str) -> Vec<String> {
    stored
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

pub(crate) fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRecord> {
    let rules: String = r.get(10)?;
    Ok(AuditRecord {
        seq: r.get(0)?,
        at: r.get(1)?,
        kind: r.get(2)?,
        actor: r.get(3)?,
        ticket_id: r.get(4)?,
        call_id: r.get(5)?,
        hotline: r.get(6)?,
        queue: r.get(7)?,
        destination: r.get(8)?,
        township: r.get(9)?,
        rules: split_rules(&rules),
        rules_version: r.get(11)?,
        detail: r.get(12)?,
        prev_hash: r.get(13)?,
        hash: r.get(14)?,
    })
}

/// The hash of a record: SHA-256 over a JSON array of every field but the
/// hash itself, in hex.
pub fn hash(r: &AuditRecord) -> String {
    let fields = (
        r.seq,
        r.at,
        &r.kind,
        &r.actor,
        r.ticket_id,
        &r.call_id,
        &r.hotline,
        &r.queue,
        &r.destination,
        &r.township,
        &r.rules,
        &r.rules_version,
        &r.detail,
        &r.prev_hash,
    );
    let bytes = serde_json::to_vec(&fields).expect("plain fields serialise");
    let digest = Sha256::digest(&bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        use std::fmt::Write;
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The record that follows the head `(last, prev_hash)`: its place, its
/// link and its hash.
pub(crate) fn link(last: i64, prev_hash: String, at: i64, e: &Entry<'_>) -> AuditRecord {
    let mut record = AuditRecord {
        seq: last + 1,
        at,
        kind: e.kind.to_owned(),
        actor: e.actor.to_owned(),
        ticket_id: e.ticket_id,
        call_id: e.call_id.map(str::to_owned),
        hotline: e.hotline.map(str::to_owned),
        queue: e.queue.map(str::to_owned),
        destination: e.destination.map(str::to_owned),
        township: e.township.map(str::to_owned),
        rules: e.rules.to_vec(),
        rules_version: e.rules_version.map(str::to_owned),
        detail: e.detail.to_owned(),
        prev_hash,
        hash: String::new(),
    };
    record.hash = hash(&record);
    record
}

/// Appends a record in the caller's transaction: reads the head, links,
/// hashes, inserts, moves the head.
pub(crate) fn append(
    tx: &rusqlite::Transaction<'_>,
    at: i64,
    e: &Entry<'_>,
) -> rusqlite::Result<i64> {
    let head: Option<(i64, String)> = tx
        .prepare_cached("SELECT seq, hash FROM audit_head WHERE one = 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (last, prev_hash) = head.unwrap_or((0, GENESIS.to_owned()));
    let record = link(last, prev_hash, at, e);
    tx.prepare_cached(&format!(
        "INSERT INTO audit ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
    ))?
    .execute(params![
        record.seq,
        record.at,
        record.kind,
        record.actor,
        record.ticket_id,
        record.call_id,
        record.hotline,
        record.queue,
        record.destination,
        record.township,
        join_rules(&record.rules),
        record.rules_version,
        record.detail,
        record.prev_hash,
        record.hash,
    ])?;
    tx.prepare_cached(
        "INSERT INTO audit_head (one, seq, hash) VALUES (1, ?1, ?2)
         ON CONFLICT (one) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
    )?
    .execute(params![record.seq, record.hash])?;
    Ok(record.seq)
}

/// The outcome of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// Every record links and hashes; the head agrees.
    Intact {
        /// How many records.
        records: i64,
        /// The last record's hash (write it down: a later verify that
        /// shows another hash for this record means the log was rewritten).
        head: String,
    },
    /// The first record that does not hold.
    Broken {
        /// Its sequence number (or the one expected there).
        seq: i64,
        /// What is wrong.
        problem: String,
    },
}

/// A walk along the chain, one record at a time, from the anchor (or the
/// genesis) to the head: the same checks whatever database holds it.
pub(crate) struct Walk {
    expected_seq: i64,
    prev: String,
    first: i64,
}

impl Walk {
    /// A walk that starts after the prune anchor `(seq, hash)`, if any.
    pub(crate) fn from(anchor: Option<(i64, String)>) -> Walk {
        let (expected_seq, prev) = match anchor {
            Some((seq, hash)) => (seq + 1, hash),
            None => (1, GENESIS.to_owned()),
        };
        Walk {
            expected_seq,
            prev,
            first: expected_seq,
        }
    }

    /// Checks the next record in sequence order: `Some` at the first that
    /// does not hold.
    pub(crate) fn step(&mut self, r: AuditRecord) -> Option<Verified> {
        let expected_seq = self.expected_seq;
        if r.seq != expected_seq {
            let problem = if r.seq > expected_seq {
                format!(
                    "record {expected_seq} is missing (the next one is {})",
                    r.seq
                )
            } else {
                format!("record {} is out of order", r.seq)
            };
            return Some(Verified::Broken {
                seq: expected_seq,
                problem,
            });
        }
        if r.prev_hash != self.prev {
            return Some(Verified::Broken {
                seq: r.seq,
                problem: "its link does not match the hash of the record before (a record was removed, inserted or moved here)".into(),
            });
        }
        if hash(&r) != r.hash {
            return Some(Verified::Broken {
                seq: r.seq,
                problem: "its content does not match its hash (it was edited)".into(),
            });
        }
        self.prev = r.hash;
        self.expected_seq += 1;
        None
    }

    /// The outcome once every record has passed: the head row `(seq, hash)`
    /// must name the last of them.
    pub(crate) fn finish(self, head: Option<(i64, String)>) -> Verified {
        let records = self.expected_seq - self.first;
        let last = self.expected_seq - 1;
        let prev = self.prev;
        match head {
            None if records == 0 && self.first == 1 => Verified::Intact {
                records,
                head: GENESIS.to_owned(),
            },
            Some((seq, hash)) if seq == last && hash == prev => Verified::Intact {
                records,
                head: prev,
            },
            Some((seq, _)) if seq > last => Verified::Broken {
                seq: last + 1,
                problem: format!(
                    "the log ends at record {last} but its head says {seq}: records were cut off the end"
                ),
            },
            _ => Verified::Broken {
                seq: last,
                problem: "the head of the log does not match its last record".into(),
            },
        }
    }
}

/// Walks the chain from the first record.
pub(crate) fn verify(conn: &rusqlite::Connection) -> rusqlite::Result<Verified> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM audit ORDER BY seq"))?;
    let mut rows = stmt.query([])?;
    let anchor: Option<(i64, String)> = conn
        .query_row(
            "SELECT seq, hash FROM audit_anchor WHERE one = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let mut walk = Walk::from(anchor);
    while let Some(row) = rows.next()? {
        if let Some(broken) = walk.step(from_row(row)?) {
            return Ok(broken);
        }
    }
    let head: Option<(i64, String)> = conn
        .query_row("SELECT seq, hash FROM audit_head WHERE one = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    Ok(walk.finish(head))
}

/// Which records a query wants; every field set must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// At or after (ms).
    pub from: Option<i64>,
    /// Before (ms).
    pub to: Option<i64>,
    /// The operator system's call id.
    pub call_id: Option<String>,
    /// The ticket.
    pub ticket_id: Option<i64>,
    /// The destination.
    pub destination: Option<String>,
    /// The township code.
    pub township: Option<String>,
    /// A rule that fired.
    pub rule: Option<String>,
    /// The actor.
    pub actor: Option<String>,
    /// The kind of event.
    pub kind: Option<String>,
}

/// A value a filter compares with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arg {
    Int(i64),
    Text(String),
}

impl Filter {
    /// The query of the records this filter wants, in chain order, with
    /// its values; `placeholder(n)` writes the n-th (from 1) as the
    /// database wants it (`?1`, `$1`). One query for every backend.
    pub(crate) fn to_sql(&self, placeholder: impl Fn(usize) -> String) -> (String, Vec<Arg>) {
        let mut tests: Vec<(&str, Arg)> = Vec::new();
        let text = |v: &Option<String>| v.clone().map(Arg::Text);
        let conditions = [
            ("at >= ", self.from.map(Arg::Int)),
            ("at < ", self.to.map(Arg::Int)),
            ("call_id = ", text(&self.call_id)),
            ("ticket_id = ", self.ticket_id.map(Arg::Int)),
            ("destination = ", text(&self.destination)),
            ("township = ", text(&self.township)),
            // Rule ids have no commas: the id between two of them, its
            // own `%` and `_` taken literally.
            (
                "rules LIKE ",
                self.rule.as_ref().map(|r| {
                    let r = r
                        .replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_");
                    Arg::Text(format!("%,{r},%"))
                }),
            ),
            ("actor = ", text(&self.actor)),
            ("kind = ", text(&self.kind)),
        ];
        for (test, value) in conditions {
            if let Some(v) = value {
                tests.push((test, v));
            }
        }
        let mut sql = format!("SELECT {COLUMNS} FROM audit WHERE 1 = 1");
        let mut args = Vec::with_capacity(tests.len());
        for (test, value) in tests {
            args.push(value);
            sql.push_str(&format!(" AND {test}{}", placeholder(args.len())));
            if test.starts_with("rules LIKE") {
                sql.push_str(" ESCAPE '\\'");
            }
        }
        sql.push_str(" ORDER BY seq");
        (sql, args)
    }

    /// Whether a record the query returned is one this filter wants: the
    /// query's `LIKE` on rule ids ignores ASCII case in SQLite, this does
    /// not.
    pub(crate) fn keeps(&self, r: &AuditRecord) -> bool {
        self.rule.as_ref().is_none_or(|id| r.rules.contains(id))
    }
}

/// The records a filter wants, in chain order, each passed to `each`
/// (which stops the walk by returning false).
pub(crate) fn query(
    conn: &rusqlite::Connection,
    f: &Filter,
    mut each: impl FnMut(AuditRecord) -> bool,
) -> rusqlite::Result<()> {
    let (sql, args) = f.to_sql(|n| format!("?{n}"));
    let args = args.into_iter().map(|a| match a {
        Arg::Int(v) => rusqlite::types::Value::Integer(v),
        Arg::Text(v) => rusqlite::types::Value::Text(v),
    });
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
    while let Some(row) = rows.next()? {
        let r = from_row(row)?;
        if f.keeps(&r) && !each(r) {
            break;
        }
    }
    Ok(())
}

/// Removes the records older than `before` (ms), but never the last one,
/// keeping the last removed record's place and hash as the anchor the
/// chain now starts from, and appends a `pruned` record saying so.
/// Returns how many records were removed.
pub(crate) fn prune(
    tx: &rusqlite::Transaction<'_>,
    before: i64,
    actor: &str,
    now: i64,
) -> rusqlite::Result<i64> {
    let through: Option<(i64, String)> = tx
        .query_row(
            "SELECT seq, hash FROM audit
             WHERE at < ?1 AND seq < (SELECT seq FROM audit_head WHERE one = 1)
               AND seq < (SELECT COALESCE(MIN(a.seq), 9223372036854775807) FROM audit a
                          JOIN tickets t ON t.id = a.ticket_id
                          WHERE a.kind = 'received' AND t.state != 'acked')
             ORDER BY seq DESC LIMIT 1",
            params![before],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((seq, hash)) = through else {
        return Ok(0);
    };
    let removed = tx.execute("DELETE FROM audit WHERE seq <= ?1", params![seq])? as i64;
    tx.execute(
        "INSERT INTO audit_anchor (one, seq, hash) VALUES (1, ?1, ?2)
         ON CONFLICT (one) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        params![seq, hash],
    )?;
    let detail = prune_detail(seq, &hash, before, removed);
    append(
        tx,
        now,
        &Entry {
            kind: "pruned",
            actor,
            detail: &detail,
            ..Default::default()
        },
    )?;
    Ok(removed)
}

/// The detail of a `pruned` record: through which record, what cut-off,
/// how many records.
pub(crate) fn prune_detail(seq: i64, hash: &str, before: i64, removed: i64) -> String {
    serde_json::json!({
        "through_seq": seq,
        "through_hash": hash,
        "before": before,
        "records": removed,
    })
    .to_string()
}
