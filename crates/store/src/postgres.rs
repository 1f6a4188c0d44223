//! The ticket store in PostgreSQL: the same queues, leases and audit chain
//! as the embedded [`Store`](crate::Store), shared by several server nodes.
//!
//! What several nodes change at once, the database serialises:
//!
//! - Every transaction that appends audit records locks the chain's head
//!   row (`SELECT … FOR UPDATE`), so records are linked one after the
//!   other whichever node writes them: one chain, verifiable as a whole.
//! - A lease takes the next ticket with `FOR UPDATE SKIP LOCKED`: two
//!   nodes never take the same ticket, and neither waits for the other.
//! - One call submitted to two nodes at once is one ticket: the unique
//!   (hotline, call id) and `INSERT … ON CONFLICT DO NOTHING`.
//!
//! Lock order, so that no two transactions wait on each other in a cycle:
//! a lease, an acknowledgement or a reroute locks its one ticket, then the
//! head; a submission locks the head first, then finds or inserts its
//! tickets (a ticket that exists is found by a plain read, which waits for
//! no lock, and a new one can only collide with another submission, which
//! would hold the head).
//!
//! The schema is versioned in `schema_migrations`: [`PgStore::connect`]
//! applies the migrations the database lacks, in one transaction under an
//! advisory lock, so that nodes starting together do not race.

use std::collections::HashMap;
use std::error::Error as _;
use std::sync::{Mutex, MutexGuard};

use ::postgres::types::ToSql;
use ::postgres::{Client, GenericClient, IsolationLevel, NoTls, Row, Statement, Transaction};

use crate::audit::{self, AuditRecord, Filter, Verified};
use crate::backend::message_id;
use crate::{
    CallRecord, Delivered, EXPIRED_DETAIL, HistoryEntry, MIN_RETENTION_DAYS, NewTicket, Outgoing,
    QueueStats, Reroute, StoreError, TICKET_COLUMNS, Taken, Ticket, TicketState, TicketStore,
    delivered_detail, nacked_detail, received_detail, received_entry, rerouted, ticket_entry,
};

/// The key of the advisory lock that migrations hold ("minsheng" in ASCII).
const MIGRATION_LOCK: i64 = 0x6d69_6e73_6865_6e67;

/// How many rows a walk over the audit log fetches at a time.
const PAGE: i32 = 512;

type Migration = fn(&mut Transaction<'_>) -> Result<(), ::postgres::Error>;

/// The schema's versions, in order; each is applied once, in the
/// transaction that records it in `schema_migrations`.
const MIGRATIONS: &[(i32, Migration)] = &[(1, migration_1), (2, migration_2)];

/// The tickets and the audit chain, as in SQLite.
fn migration_1(tx: &mut Transaction<'_>) -> Result<(), ::postgres::Error> {
    tx.batch_execute(
        "
CREATE TABLE tickets (
    id BIGSERIAL PRIMARY KEY,
    hotline TEXT NOT NULL,
    call_id TEXT NOT NULL,
    queue TEXT NOT NULL,
    destination TEXT NOT NULL,
    township TEXT,
    urgency BIGINT NOT NULL,
    caller_number TEXT NOT NULL,
    text TEXT NOT NULL,
    location TEXT NOT NULL,
    call_taker TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    state TEXT NOT NULL,
    lease_until BIGINT,
    deliveries BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    UNIQUE (hotline, call_id)
);
-- Only tickets not yet acknowledged: the index stays as small as the
-- queues, however long the history grows.
CREATE INDEX open_tickets ON tickets (queue, urgency DESC, created_at, id)
    WHERE state <> 'acked';
CREATE TABLE audit (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    ticket_id BIGINT,
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
CREATE INDEX audit_by_ticket ON audit (ticket_id, seq) WHERE ticket_id IS NOT NULL;
CREATE INDEX audit_by_time ON audit (at);
CREATE TABLE audit_head (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
-- The last record removed by a prune: the chain starts after it.
CREATE TABLE audit_anchor (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
",
    )?;
    // The head exists from the start, so that every appending transaction
    // has one row to lock.
    tx.execute(
        "INSERT INTO audit_head (one, seq, hash) VALUES (1, 0, $1)",
        &[&audit::GENESIS],
    )?;
    Ok(())
}

/// What an outside queue (NATS JetStream) needs: which queue a ticket's
/// message was published to, how often the ticket moved (each move is a
/// new message), and the message it is leased through.
fn migration_2(tx: &mut Transaction<'_>) -> Result<(), ::postgres::Error> {
    tx.batch_execute(
        "
ALTER TABLE tickets
    ADD COLUMN moves BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN lease_token TEXT,
    ADD COLUMN lease_message BIGINT;
-- Which moves of which tickets the outside queue holds a message of: a
-- narrow row inserted after each publish (rewriting the wide ticket row
-- would cost every publish a copy of it).
CREATE TABLE published (
    ticket_id BIGINT NOT NULL,
    moves BIGINT NOT NULL,
    PRIMARY KEY (ticket_id, moves)
);
-- Open tickets by age: where a node looks for what a failed publish left
-- out.
CREATE INDEX open_by_age ON tickets (created_at, id) WHERE state <> 'acked';
",
    )
}

const OUTGOING_COLUMNS: &str = "t.id, t.queue, t.hotline, t.call_id, t.moves,
    EXISTS (SELECT 1 FROM published p WHERE p.ticket_id = t.id AND p.moves = t.moves), t.state,
    t.urgency";

fn outgoing_from_row(row: &Row) -> Result<Outgoing, ::postgres::Error> {
    let queue: String = row.try_get(1)?;
    let hotline: String = row.try_get(2)?;
    let call_id: String = row.try_get(3)?;
    let moves: i64 = row.try_get(4)?;
    let state: String = row.try_get(6)?;
    Ok(Outgoing {
        id: row.try_get(0)?,
        message_id: message_id(&hotline, &call_id, moves),
        moves,
        urgency: row.try_get(7)?,
        published: row.try_get(5)?,
        open: TicketState::parse(&state) != TicketState::Acked,
        queue,
    })
}

impl From<::postgres::Error> for StoreError {
    fn from(e: ::postgres::Error) -> Self {
        // The error's own text is only its kind ("db error"): the server's
        // message is in its sources.
        let mut text = e.to_string();
        let mut source = e.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        StoreError::Backend(text)
    }
}

/// The ticket store in PostgreSQL, shared by several server nodes: the
/// same promises as [`Store`](crate::Store) (see [`TicketStore`]), and one
/// audit chain whichever node writes.
///
/// One connection, used by one call at a time. A connection that was lost
/// (the database restarted) is made again on the next call; the call that
/// found it lost fails.
pub struct PgStore {
    url: String,
    schema: Option<String>,
    conn: Mutex<Conn>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// A connection and its prepared statements.
struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl Conn {
    fn open(url: &str, schema: Option<&str>) -> Result<Conn, StoreError> {
        let mut client = Client::connect(url, NoTls)?;
        migrate(&mut client, schema)?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }
}

/// A statement prepared once per connection.
fn prepared<C: GenericClient>(
    client: &mut C,
    cache: &mut HashMap<String, Statement>,
    sql: &str,
) -> Result<Statement, ::postgres::Error> {
    if let Some(statement) = cache.get(sql) {
        return Ok(statement.clone());
    }
    let statement = client.prepare(sql)?;
    cache.insert(sql.to_owned(), statement.clone());
    Ok(statement)
}

/// A transaction, with the connection's prepared statements.
struct Tx<'a> {
    tx: Transaction<'a>,
    cache: &'a mut HashMap<String, Statement>,
}

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

impl Tx<'_> {
    fn execute(&mut self, sql: &str, params: Params<'_>) -> Result<u64, ::postgres::Error> {
        let statement = prepared(&mut self.tx, self.cache, sql)?;
        self.tx.execute(&statement, params)
    }

    fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, ::postgres::Error> {
        let statement = prepared(&mut self.tx, self.cache, sql)?;
        self.tx.query(&statement, params)
    }

    fn query_one(&mut self, sql: &str, params: Params<'_>) -> Result<Row, ::postgres::Error> {
        let statement = prepared(&mut self.tx, self.cache, sql)?;
        self.tx.query_one(&statement, params)
    }

    fn query_opt(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, ::postgres::Error> {
        let statement = prepared(&mut self.tx, self.cache, sql)?;
        self.tx.query_opt(&statement, params)
    }

    /// Walks the rows of a query a page at a time; `each` returns false to
    /// stop.
    fn walk(
        &mut self,
        sql: &str,
        params: Params<'_>,
        mut each: impl FnMut(&Row) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let portal = self.tx.bind(sql, params)?;
        loop {
            let rows = self.tx.query_portal(&portal, PAGE)?;
            for row in &rows {
                if !each(row)? {
                    return Ok(());
                }
            }
            if rows.len() < PAGE as usize {
                return Ok(());
            }
        }
    }
}

/// The chain's head, locked for the rest of the transaction once read:
/// records are appended after it, and it is moved when the transaction
/// ends.
#[derive(Default)]
struct Chain {
    head: Option<(i64, String)>,
    moved: bool,
}

impl Chain {
    /// Locks the head (until the transaction ends) and returns its
    /// sequence number.
    fn lock(&mut self, tx: &mut Tx<'_>) -> Result<i64, ::postgres::Error> {
        if let Some((seq, _)) = &self.head {
            return Ok(*seq);
        }
        const LOCK: &str = "SELECT seq, hash FROM audit_head WHERE one = 1 FOR UPDATE";
        let row = match tx.query_opt(LOCK, &[])? {
            Some(row) => row,
            None => {
                tx.execute(
                    "INSERT INTO audit_head (one, seq, hash) VALUES (1, 0, $1)
                     ON CONFLICT (one) DO NOTHING",
                    &[&audit::GENESIS],
                )?;
                tx.query_one(LOCK, &[])?
            }
        };
        let seq: i64 = row.try_get(0)?;
        self.head = Some((seq, row.try_get(1)?));
        Ok(seq)
    }

    /// Appends a record after the head; returns its sequence number.
    fn append(
        &mut self,
        tx: &mut Tx<'_>,
        at: i64,
        e: &audit::Entry<'_>,
    ) -> Result<i64, ::postgres::Error> {
        self.lock(tx)?;
        let (last, prev_hash) = self.head.take().expect("locked");
        let r = audit::link(last, prev_hash, at, e);
        tx.execute(
            &format!(
                "INSERT INTO audit ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                audit::COLUMNS
            ),
            &[
                &r.seq,
                &r.at,
                &r.kind,
                &r.actor,
                &r.ticket_id,
                &r.call_id,
                &r.hotline,
                &r.queue,
                &r.destination,
                &r.township,
                &audit::join_rules(&r.rules),
                &r.rules_version,
                &r.detail,
                &r.prev_hash,
                &r.hash,
            ],
        )?;
        self.head = Some((r.seq, r.hash));
        self.moved = true;
        Ok(r.seq)
    }

    /// Writes the head back, if records were appended.
    fn close(self, tx: &mut Tx<'_>) -> Result<(), ::postgres::Error> {
        if let (true, Some((seq, hash))) = (self.moved, &self.head) {
            tx.execute(
                "UPDATE audit_head SET seq = $1, hash = $2 WHERE one = 1",
                &[seq, hash],
            )?;
        }
        Ok(())
    }
}

/// Quotes an identifier (a schema's name) for SQL.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Applies the migrations the database lacks, under an advisory lock held
/// to the end of the transaction; with a schema, creates it if missing and
/// makes it the connection's.
fn migrate(client: &mut Client, schema: Option<&str>) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    if let Some(schema) = schema {
        let name = quote_ident(schema);
        // A plain SET outlives the transaction once it commits.
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {name}; SET search_path TO {name}"
        ))?;
    }
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )?;
    let current: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )?
        .try_get(0)?;
    let latest = MIGRATIONS.last().map_or(0, |(version, _)| *version);
    if current > latest {
        return Err(StoreError::Backend(format!(
            "the database's schema is at version {current}, newer than this build knows ({latest})"
        )));
    }
    for (version, apply) in MIGRATIONS {
        if *version > current {
            apply(&mut tx)?;
            tx.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[version],
            )?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn ticket_from_row(row: &Row) -> Result<Ticket, ::postgres::Error> {
    let state: String = row.try_get(8)?;
    Ok(Ticket {
        id: row.try_get(0)?,
        hotline: row.try_get(1)?,
        call_id: row.try_get(2)?,
        queue: row.try_get(3)?,
        destination: row.try_get(4)?,
        township: row.try_get(5)?,
        urgency: row.try_get(6)?,
        decision: row.try_get(7)?,
        state: TicketState::parse(&state),
        lease_until: row.try_get(9)?,
        deliveries: row.try_get(10)?,
        created_at: row.try_get(11)?,
        call: CallRecord {
            caller_number: row.try_get(12)?,
            text: row.try_get(13)?,
            location: row.try_get(14)?,
            call_taker: row.try_get(15)?,
            received_at: row.try_get(16)?,
        },
    })
}

fn record_from_row(row: &Row) -> Result<AuditRecord, ::postgres::Error> {
    let rules: String = row.try_get(10)?;
    Ok(AuditRecord {
        seq: row.try_get(0)?,
        at: row.try_get(1)?,
        kind: row.try_get(2)?,
        actor: row.try_get(3)?,
        ticket_id: row.try_get(4)?,
        call_id: row.try_get(5)?,
        hotline: row.try_get(6)?,
        queue: row.try_get(7)?,
        destination: row.try_get(8)?,
        township: row.try_get(9)?,
        rules: audit::split_rules(&rules),
        rules_version: row.try_get(11)?,
        detail: row.try_get(12)?,
        prev_hash: row.try_get(13)?,
        hash: row.try_get(14)?,
    })
}

fn seq_hash(row: Option<Row>) -> Result<Option<(i64, String)>, ::postgres::Error> {
    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
}

/// A ticket, locked until the transaction ends.
fn lock_ticket(tx: &mut Tx<'_>, id: i64) -> Result<Ticket, StoreError> {
    let row = tx
        .query_opt(
            &format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE id = $1 FOR UPDATE OF tickets"),
            &[&id],
        )?
        .ok_or(StoreError::NoTicket(id))?;
    Ok(ticket_from_row(&row)?)
}

impl PgStore {
    /// Connects to a PostgreSQL database (a libpq-style connection string,
    /// `host=… user=… dbname=…`, or a `postgresql://` URL) and brings its
    /// schema up to date, in the connection's default schema.
    pub fn connect(url: &str) -> Result<PgStore, StoreError> {
        PgStore::open(url, None)
    }

    /// A store inside its own schema, for several independent stores in
    /// one database (tests, tenants): creates the schema if it is missing
    /// and makes it the connection's `search_path`.
    pub fn connect_in_schema(url: &str, schema: &str) -> Result<PgStore, StoreError> {
        PgStore::open(url, Some(schema))
    }

    fn open(url: &str, schema: Option<&str>) -> Result<PgStore, StoreError> {
        Ok(PgStore {
            conn: Mutex::new(Conn::open(url, schema)?),
            url: url.to_owned(),
            schema: schema.map(str::to_owned),
        })
    }

    /// The connection, made again if it was lost.
    fn conn(&self) -> Result<MutexGuard<'_, Conn>, StoreError> {
        // A call that panicked left no transaction open: its rollback ran
        // as the transaction was dropped.
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if conn.client.is_closed() {
            *conn = Conn::open(&self.url, self.schema.as_deref())?;
        }
        Ok(conn)
    }

    /// Runs `f` in a transaction that may append audit records, and
    /// commits: all of it, with the head moved, or nothing.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut Tx<'_>, &mut Chain) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn()?;
        let Conn { client, statements } = &mut *conn;
        let mut tx = Tx {
            tx: client.transaction()?,
            cache: statements,
        };
        let mut chain = Chain::default();
        let out = f(&mut tx, &mut chain)?;
        chain.close(&mut tx)?;
        tx.tx.commit()?;
        Ok(out)
    }

    /// Runs `f` in a read-only transaction that sees one snapshot
    /// throughout, however many other nodes write meanwhile.
    fn read<T>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn()?;
        let Conn { client, statements } = &mut *conn;
        let mut tx = Tx {
            tx: client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?,
            cache: statements,
        };
        let out = f(&mut tx)?;
        tx.tx.commit()?;
        Ok(out)
    }

    /// Queues a call; see [`Store::submit`](crate::Store::submit).
    pub fn submit(&self, t: &NewTicket, now: i64) -> Result<(i64, bool), StoreError> {
        let mut results = self.submit_batch(std::slice::from_ref(t), now)?;
        Ok(results.remove(0))
    }

    /// Queues several calls in one transaction: all or none; see
    /// [`Store::submit_batch`](crate::Store::submit_batch).
    pub fn submit_batch(
        &self,
        tickets: &[NewTicket],
        now: i64,
    ) -> Result<Vec<(i64, bool)>, StoreError> {
        if tickets.is_empty() {
            return Ok(Vec::new());
        }
        self.write(|tx, chain| {
            // The head first: see the module's lock order.
            chain.lock(tx)?;
            const FIND: &str = "SELECT id FROM tickets WHERE hotline = $1 AND call_id = $2";
            let mut results = Vec::with_capacity(tickets.len());
            for t in tickets {
                if let Some(row) = tx.query_opt(FIND, &[&t.hotline, &t.call_id])? {
                    results.push((row.try_get(0)?, false));
                    continue;
                }
                let c = &t.call;
                let inserted = tx.query_opt(
                    "INSERT INTO tickets (hotline, call_id, queue, destination, township, urgency,
                         caller_number, text, location, call_taker, received_at, state, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'queued', $12)
                     ON CONFLICT (hotline, call_id) DO NOTHING
                     RETURNING id",
                    &[
                        &t.hotline,
                        &t.call_id,
                        &t.queue,
                        &t.destination,
                        &t.township,
                        &t.urgency,
                        &c.caller_number,
                        &c.text,
                        &c.location,
                        &c.call_taker,
                        &c.received_at,
                        &now,
                    ],
                )?;
                let Some(row) = inserted else {
                    // Committed by another node since the look-up.
                    let row = tx
                        .query_opt(FIND, &[&t.hotline, &t.call_id])?
                        .ok_or_else(|| {
                            StoreError::Backend(format!(
                                "call {}/{} neither inserted nor found",
                                t.hotline, t.call_id
                            ))
                        })?;
                    results.push((row.try_get(0)?, false));
                    continue;
                };
                let id: i64 = row.try_get(0)?;
                let detail = received_detail(t);
                chain.append(tx, now, &received_entry(t, id, &detail))?;
                results.push((id, true));
            }
            Ok(results)
        })
    }

    /// Leases the next ticket of a queue, the most urgent then the oldest,
    /// skipping tickets that another node is leasing at this moment; see
    /// [`Store::lease`](crate::Store::lease).
    pub fn lease(
        &self,
        queue: &str,
        consumer: &str,
        now: i64,
        lease_ms: i64,
    ) -> Result<Option<Ticket>, StoreError> {
        self.write(|tx, chain| {
            let next = tx.query_opt(
                &format!(
                    "SELECT {TICKET_COLUMNS} FROM tickets
                     WHERE queue = $1 AND state <> 'acked'
                       AND (state = 'queued' OR (state = 'leased' AND lease_until <= $2))
                     ORDER BY urgency DESC, created_at, id LIMIT 1
                     FOR UPDATE OF tickets SKIP LOCKED"
                ),
                &[&queue, &now],
            )?;
            let Some(row) = next else {
                return Ok(None);
            };
            let mut ticket = ticket_from_row(&row)?;
            if ticket.state == TicketState::Leased {
                chain.append(
                    tx,
                    now,
                    &ticket_entry(&ticket, "expired", "system", EXPIRED_DETAIL),
                )?;
            }
            let until = now + lease_ms;
            tx.execute(
                "UPDATE tickets SET state = 'leased', lease_until = $1, deliveries = deliveries + 1 WHERE id = $2",
                &[&until, &ticket.id],
            )?;
            let detail = delivered_detail(until);
            chain.append(
                tx,
                now,
                &ticket_entry(&ticket, "delivered", consumer, &detail),
            )?;
            ticket.state = TicketState::Leased;
            ticket.lease_until = Some(until);
            ticket.deliveries += 1;
            Ok(Some(ticket))
        })
    }

    /// Acknowledges a leased ticket; see [`Store::ack`](crate::Store::ack).
    pub fn ack(&self, id: i64, actor: &str, now: i64) -> Result<(), StoreError> {
        self.settle(id, actor, now, TicketState::Acked, "acked", "{}")
    }

    /// Gives a leased ticket back to its queue; see
    /// [`Store::nack`](crate::Store::nack).
    pub fn nack(&self, id: i64, actor: &str, reason: &str, now: i64) -> Result<(), StoreError> {
        self.settle(
            id,
            actor,
            now,
            TicketState::Queued,
            "nacked",
            &nacked_detail(reason),
        )
    }

    fn settle(
        &self,
        id: i64,
        actor: &str,
        now: i64,
        to: TicketState,
        event: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.write(|tx, chain| {
            let ticket = lock_ticket(tx, id)?;
            if ticket.state != TicketState::Leased || ticket.lease_until.is_some_and(|u| u <= now) {
                return Err(StoreError::NotLeased(id));
            }
            tx.execute(
                "UPDATE tickets SET state = $1, lease_until = NULL WHERE id = $2",
                &[&to.as_str(), &id],
            )?;
            chain.append(tx, now, &ticket_entry(&ticket, event, actor, detail))?;
            Ok(())
        })
    }

    /// Moves a ticket to another queue and destination, back to waiting,
    /// with who and why; see [`Store::reroute`](crate::Store::reroute).
    pub fn reroute(&self, id: i64, to: &Reroute<'_>, now: i64) -> Result<(), StoreError> {
        self.write(|tx, chain| {
            let mut ticket = lock_ticket(tx, id)?;
            tx.execute(
                "UPDATE tickets SET queue = $1, destination = $2, township = $3, state = 'queued',
                     lease_until = NULL, moves = moves + 1
                 WHERE id = $4",
                &[&to.queue, &to.destination, &to.township, &id],
            )?;
            let detail = rerouted(&mut ticket, to);
            chain.append(
                tx,
                now,
                &ticket_entry(&ticket, "rerouted", to.actor, &detail),
            )?;
            Ok(())
        })
    }

    /// A ticket as an outside queue carries it.
    pub fn outgoing(&self, id: i64) -> Result<Outgoing, StoreError> {
        self.read(|tx| {
            let row = tx
                .query_opt(
                    &format!("SELECT {OUTGOING_COLUMNS} FROM tickets t WHERE t.id = $1"),
                    &[&id],
                )?
                .ok_or(StoreError::NoTicket(id))?;
            Ok(outgoing_from_row(&row)?)
        })
    }

    /// Records that the outside queue holds a message of each ticket's
    /// move (`(id, moves)`); a ticket moved since waits for its new one.
    pub fn mark_published(&self, published: &[(i64, i64)]) -> Result<(), StoreError> {
        if published.is_empty() {
            return Ok(());
        }
        let (ids, moves): (Vec<i64>, Vec<i64>) = published.iter().copied().unzip();
        self.write(|tx, _| {
            tx.execute(
                "INSERT INTO published (ticket_id, moves)
                 SELECT * FROM unnest($1::BIGINT[], $2::BIGINT[])
                 ON CONFLICT DO NOTHING",
                &[&ids, &moves],
            )?;
            Ok(())
        })
    }

    /// Open tickets whose current move the outside queue holds no message
    /// of, created before `before` (ms), oldest first.
    pub fn unpublished(&self, before: i64, limit: i64) -> Result<Vec<Outgoing>, StoreError> {
        self.read(|tx| {
            tx.query(
                &format!(
                    "SELECT {OUTGOING_COLUMNS} FROM tickets t
                     WHERE t.state <> 'acked' AND t.created_at < $1
                       AND NOT EXISTS (SELECT 1 FROM published p
                                       WHERE p.ticket_id = t.id AND p.moves = t.moves)
                     ORDER BY t.created_at, t.id LIMIT $2"
                ),
                &[&before, &limit],
            )?
            .iter()
            .map(|r| outgoing_from_row(r).map_err(StoreError::from))
            .collect()
        })
    }

    /// Leases a ticket that an outside queue delivered, unless the message
    /// is stale: the ticket was acknowledged, moved to another queue, or is
    /// leased, unexpired, through another message of it (a duplicate). A
    /// message delivered again after its lease ended takes the lease over,
    /// with an `expired` record as in [`PgStore::lease`].
    pub fn take_delivery(&self, d: &Delivered<'_>, now: i64) -> Result<Taken, StoreError> {
        self.write(|tx, chain| {
            let mut ticket = lock_ticket(tx, d.id)?;
            if ticket.state == TicketState::Acked {
                return Ok(Taken::Stale("the ticket is acknowledged".into()));
            }
            if ticket.queue != d.queue {
                return Ok(Taken::Stale(format!(
                    "the ticket moved to {}",
                    ticket.queue
                )));
            }
            if ticket.state == TicketState::Leased {
                let row =
                    tx.query_one("SELECT lease_message FROM tickets WHERE id = $1", &[&d.id])?;
                let through: Option<i64> = row.try_get(0)?;
                let live = ticket.lease_until.is_some_and(|u| u > now);
                if live && through != Some(d.message) {
                    return Ok(Taken::Stale(
                        "the ticket is leased through another message".into(),
                    ));
                }
                chain.append(
                    tx,
                    now,
                    &ticket_entry(&ticket, "expired", "system", EXPIRED_DETAIL),
                )?;
            }
            let until = now + d.lease_ms;
            tx.execute(
                "UPDATE tickets SET state = 'leased', lease_until = $1, deliveries = deliveries + 1,
                     lease_token = $2, lease_message = $3
                 WHERE id = $4",
                &[&until, &d.token, &d.message, &d.id],
            )?;
            let detail = delivered_detail(until);
            chain.append(
                tx,
                now,
                &ticket_entry(&ticket, "delivered", d.consumer, &detail),
            )?;
            ticket.state = TicketState::Leased;
            ticket.lease_until = Some(until);
            ticket.deliveries += 1;
            Ok(Taken::Lease(Box::new(ticket)))
        })
    }

    /// What acknowledges the message a ticket was last delivered through.
    pub fn lease_token(&self, id: i64) -> Result<Option<String>, StoreError> {
        self.read(|tx| {
            let row = tx
                .query_opt("SELECT lease_token FROM tickets WHERE id = $1", &[&id])?
                .ok_or(StoreError::NoTicket(id))?;
            Ok(row.try_get(0)?)
        })
    }

    /// A ticket and its history, oldest entry first.
    pub fn get(&self, id: i64) -> Result<(Ticket, Vec<HistoryEntry>), StoreError> {
        self.read(|tx| {
            let row = tx
                .query_opt(
                    &format!("SELECT {TICKET_COLUMNS} FROM tickets WHERE id = $1"),
                    &[&id],
                )?
                .ok_or(StoreError::NoTicket(id))?;
            let ticket = ticket_from_row(&row)?;
            let entries = tx
                .query(
                    "SELECT at, kind, actor, detail FROM audit WHERE ticket_id = $1 ORDER BY seq",
                    &[&id],
                )?
                .iter()
                .map(|r| {
                    Ok(HistoryEntry {
                        at: r.try_get(0)?,
                        event: r.try_get(1)?,
                        actor: r.try_get(2)?,
                        detail: r.try_get(3)?,
                    })
                })
                .collect::<Result<Vec<_>, ::postgres::Error>>()?;
            Ok((ticket, entries))
        })
    }

    /// Appends an audit record of an event that is not a ticket's; see
    /// [`Store::audit_event`](crate::Store::audit_event).
    pub fn audit_event(
        &self,
        kind: &str,
        actor: &str,
        rules_version: Option<&str>,
        detail: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        self.write(|tx, chain| {
            Ok(chain.append(
                tx,
                now,
                &audit::Entry {
                    kind,
                    actor,
                    rules_version,
                    detail,
                    ..Default::default()
                },
            )?)
        })
    }

    /// Removes the audit records older than `retention_days` days before
    /// `now`; see [`Store::audit_prune`](crate::Store::audit_prune).
    pub fn audit_prune(
        &self,
        retention_days: u32,
        actor: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        if retention_days < MIN_RETENTION_DAYS {
            return Err(StoreError::Retention(retention_days));
        }
        let before = now - i64::from(retention_days) * 86_400_000;
        self.write(|tx, chain| {
            let last = chain.lock(tx)?;
            let through = tx.query_opt(
                "SELECT seq, hash FROM audit WHERE at < $1 AND seq < $2
                   AND seq < (SELECT COALESCE(MIN(a.seq), 9223372036854775807) FROM audit a
                              JOIN tickets t ON t.id = a.ticket_id
                              WHERE a.kind = 'received' AND t.state <> 'acked')
                 ORDER BY seq DESC LIMIT 1",
                &[&before, &last],
            )?;
            let Some((seq, hash)) = seq_hash(through)? else {
                return Ok(0);
            };
            let removed = tx.execute("DELETE FROM audit WHERE seq <= $1", &[&seq])? as i64;
            tx.execute(
                "INSERT INTO audit_anchor (one, seq, hash) VALUES (1, $1, $2)
                 ON CONFLICT (one) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                &[&seq, &hash],
            )?;
            let detail = audit::prune_detail(seq, &hash, before, removed);
            chain.append(
                tx,
                now,
                &audit::Entry {
                    kind: "pruned",
                    actor,
                    detail: &detail,
                    ..Default::default()
                },
            )?;
            Ok(removed)
        })
    }

    /// Walks the audit chain from its first record, in one snapshot:
    /// intact, or the first record that does not hold.
    pub fn audit_verify(&self) -> Result<Verified, StoreError> {
        self.read(|tx| {
            let anchor =
                seq_hash(tx.query_opt("SELECT seq, hash FROM audit_anchor WHERE one = 1", &[])?)?;
            let mut walk = audit::Walk::from(anchor);
            let mut broken = None;
            tx.walk(
                &format!("SELECT {} FROM audit ORDER BY seq", audit::COLUMNS),
                &[],
                |row| {
                    broken = walk.step(record_from_row(row)?);
                    Ok(broken.is_none())
                },
            )?;
            if let Some(broken) = broken {
                return Ok(broken);
            }
            let head =
                seq_hash(tx.query_opt("SELECT seq, hash FROM audit_head WHERE one = 1", &[])?)?;
            Ok(walk.finish(head))
        })
    }

    /// The audit records a filter wants, in order, each passed to `each`;
    /// `each` returns false to stop. Fetched a page at a time.
    pub fn audit_query(
        &self,
        filter: &Filter,
        mut each: impl FnMut(AuditRecord) -> bool,
    ) -> Result<(), StoreError> {
        let (sql, args) = filter.to_sql(|n| format!("${n}"));
        let args: Vec<Box<dyn ToSql + Sync>> = args
            .into_iter()
            .map(|a| -> Box<dyn ToSql + Sync> {
                match a {
                    audit::Arg::Int(v) => Box::new(v),
                    audit::Arg::Text(v) => Box::new(v),
                }
            })
            .collect();
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| &**a).collect();
        self.read(|tx| {
            tx.walk(&sql, &params, |row| {
                let r = record_from_row(row)?;
                Ok(!filter.keeps(&r) || each(r))
            })
        })
    }

    /// A ticket's caller number, whole; see
    /// [`Store::caller_number`](crate::Store::caller_number).
    pub fn caller_number(&self, ticket_id: i64) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn()?;
        let Conn { client, statements } = &mut *conn;
        let statement = prepared(
            client,
            statements,
            "SELECT caller_number FROM tickets WHERE id = $1",
        )?;
        let row = client.query_opt(&statement, &[&ticket_id])?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Every queue with tickets not yet acknowledged: its name, how many,
    /// and when the oldest of them was accepted (ms). Queues in byte
    /// order, as in SQLite, whatever the database's collation.
    pub fn open_queues(&self) -> Result<Vec<QueueStats>, StoreError> {
        let mut conn = self.conn()?;
        let Conn { client, statements } = &mut *conn;
        let statement = prepared(
            client,
            statements,
            "SELECT queue, COUNT(*), MIN(created_at) FROM tickets WHERE state <> 'acked'
             GROUP BY queue ORDER BY queue COLLATE \"C\"",
        )?;
        let rows = client.query(&statement, &[])?;
        Ok(rows
            .iter()
            .map(|r| {
                Ok(QueueStats {
                    queue: r.try_get(0)?,
                    depth: r.try_get(1)?,
                    oldest_at: r.try_get(2)?,
                })
            })
            .collect::<Result<Vec<_>, ::postgres::Error>>()?)
    }

    /// How many tickets of a queue are not yet acknowledged.
    pub fn depth(&self, queue: &str) -> Result<i64, StoreError> {
        let mut conn = self.conn()?;
        let Conn { client, statements } = &mut *conn;
        let statement = prepared(
            client,
            statements,
            "SELECT COUNT(*) FROM tickets WHERE queue = $1 AND state <> 'acked'",
        )?;
        Ok(client.query_one(&statement, &[&queue])?.try_get(0)?)
    }
}

impl TicketStore for PgStore {
    fn submit_batch(
        &self,
        tickets: &[NewTicket],
        now: i64,
    ) -> Result<Vec<(i64, bool)>, StoreError> {
        PgStore::submit_batch(self, tickets, now)
    }
    fn lease(
        &self,
        queue: &str,
        consumer: &str,
        now: i64,
        lease_ms: i64,
    ) -> Result<Option<Ticket>, StoreError> {
        PgStore::lease(self, queue, consumer, now, lease_ms)
    }
    fn ack(&self, id: i64, actor: &str, now: i64) -> Result<(), StoreError> {
        PgStore::ack(self, id, actor, now)
    }
    fn nack(&self, id: i64, actor: &str, reason: &str, now: i64) -> Result<(), StoreError> {
        PgStore::nack(self, id, actor, reason, now)
    }
    fn reroute(&self, id: i64, to: &Reroute<'_>, now: i64) -> Result<(), StoreError> {
        PgStore::reroute(self, id, to, now)
    }
    fn get(&self, id: i64) -> Result<(Ticket, Vec<HistoryEntry>), StoreError> {
        PgStore::get(self, id)
    }
    fn open_queues(&self) -> Result<Vec<QueueStats>, StoreError> {
        PgStore::open_queues(self)
    }
    fn audit_event(
        &self,
        kind: &str,
        actor: &str,
        rules_version: Option<&str>,
        detail: &str,
        now: i64,
    ) -> Result<i64, StoreError> {
        PgStore::audit_event(self, kind, actor, rules_version, detail, now)
    }
    fn audit_verify(&self) -> Result<Verified, StoreError> {
        PgStore::audit_verify(self)
    }
    fn audit_query(
        &self,
        filter: &Filter,
        each: &mut dyn FnMut(AuditRecord) -> bool,
    ) -> Result<(), StoreError> {
        PgStore::audit_query(self, filter, each)
    }
    fn audit_prune(&self, retention_days: u32, actor: &str, now: i64) -> Result<i64, StoreError> {
        PgStore::audit_prune(self, retention_days, actor, now)
    }
    fn caller_number(&self, ticket_id: i64) -> Result<Option<String>, StoreError> {
        PgStore::caller_number(self, ticket_id)
    }
    fn outgoing(&self, id: i64) -> Result<Outgoing, StoreError> {
        PgStore::outgoing(self, id)
    }
    fn mark_published(&self, published: &[(i64, i64)]) -> Result<(), StoreError> {
        PgStore::mark_published(self, published)
    }
    fn unpublished(&self, before: i64, limit: i64) -> Result<Vec<Outgoing>, StoreError> {
        PgStore::unpublished(self, before, limit)
    }
    fn take_delivery(&self, d: &Delivered<'_>, now: i64) -> Result<Taken, StoreError> {
        PgStore::take_delivery(self, d, now)
    }
    fn lease_token(&self, id: i64) -> Result<Option<String>, StoreError> {
        PgStore::lease_token(self, id)
    }
}
