//! `minsheng audit`: the auditor's view of the hash-chained audit log in
//! the server's data directory — walk the chain, query the records, count
//! the decisions and the human overrides.
//!
//! Everything here reads the database without changing it, except
//! `query --show-numbers`, which first records who asked for the caller
//! numbers, and for what.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use minsheng_store::{AuditRecord, Filter, PgStore, Store, TicketStore, Verified};
use serde_json::{Value, json};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain from its first record. Exit 0 when it holds
    /// (printing the head hash to write down), 1 at the first record that
    /// does not.
    Verify {
        #[command(flatten)]
        data: DataDir,
    },
    /// Print the records a filter wants, in order; every filter given must
    /// hold. Caller numbers are masked unless --show-numbers, which is
    /// itself recorded in the log.
    Query(QueryArgs),
    /// Count the calls (per destination, township, hotline), the transfers
    /// between hotlines and the human overrides (reroutes) per rule.
    Stats(StatsArgs),
    /// Remove records older than the retention (at least 180 days: network
    /// logs are kept six months). The chain stays verifiable from the last
    /// record removed, and the prune is itself a record. Nothing else
    /// removes audit records.
    Prune {
        #[command(flatten)]
        data: DataDir,
        /// Keep this many days of records (at least 180).
        #[arg(long, value_name = "DAYS", default_value_t = minsheng_store::MIN_RETENTION_DAYS)]
        keep_days: u32,
        /// Who prunes (recorded).
        #[arg(long = "as", value_name = "WHO")]
        actor: String,
    },
}

#[derive(Debug, Args)]
pub struct DataDir {
    /// The server's data directory; the log is in tickets.db there.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "data",
        conflicts_with = "config"
    )]
    data: PathBuf,
    /// The server's minsheng.toml instead: its [store], SQLite in its
    /// data_dir or the PostgreSQL database several nodes share.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct Range {
    /// Records at or after this time: RFC 3339 (2026-11-29T08:00:00Z,
    /// 2026-11-29T16:00:00+08:00) or a date (2026-11-29, 00:00 UTC).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    from: Option<i64>,
    /// Records before this time (same forms; a date is its 00:00 UTC, so
    /// `--from 2026-11-01 --to 2026-12-01` is November).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    to: Option<i64>,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    data: DataDir,
    #[command(flatten)]
    range: Range,
    /// The operator system's call id.
    #[arg(long, value_name = "ID")]
    call_id: Option<String>,
    /// The ticket.
    #[arg(long, value_name = "N")]
    ticket: Option<i64>,
    /// The destination after the event (police, township, hotline_12345…).
    #[arg(long, value_name = "NAME")]
    destination: Option<String>,
    /// The township code after the event.
    #[arg(long, value_name = "CODE")]
    township: Option<String>,
    /// A rule that fired for the call (on `received` records).
    #[arg(long, value_name = "ID")]
    rule: Option<String>,
    /// Who: an intake, a consumer, a person, `system`.
    #[arg(long, value_name = "WHO")]
    actor: Option<String>,
    /// The kind of event: received, delivered, acked, nacked, expired,
    /// rerouted, rules_loaded, rules_rejected, numbers_shown, pruned.
    #[arg(long, value_name = "KIND")]
    kind: Option<String>,
    /// How to print the records.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Add each ticket's caller number, whole. Recorded in the log (kind
    /// numbers_shown, with --as and the filter) before anything is shown.
    #[arg(long, requires = "who")]
    show_numbers: bool,
    /// Who is asking for the numbers (with --show-numbers).
    #[arg(long = "as", id = "who", value_name = "WHO", requires = "show_numbers")]
    who: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    data: DataDir,
    #[command(flatten)]
    range: Range,
    /// How to print the counts.
    #[arg(long, value_enum, default_value_t = StatsFormat::Table)]
    format: StatsFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table for people: one record a line, a short detail.
    Table,
    /// One JSON object a line: the whole record, its detail as JSON.
    Json,
    /// A header row, then one row a record.
    Csv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatsFormat {
    /// Sections with headings.
    Table,
    /// One JSON object.
    Json,
}

/// The kinds of record the log holds so far.
const KINDS: &[&str] = &[
    "received",
    "delivered",
    "acked",
    "nacked",
    "expired",
    "rerouted",
    "rules_loaded",
    "rules_rejected",
    "numbers_shown",
    "pruned",
];

pub fn run(command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Verify { data } => verify(&data),
        AuditCommand::Query(args) => query(&args),
        AuditCommand::Stats(args) => stats(&args),
        AuditCommand::Prune {
            data,
            keep_days,
            actor,
        } => prune(&data, keep_days, &actor),
    }
}

fn prune(dir: &DataDir, keep_days: u32, actor: &str) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(!actor.trim().is_empty(), "--as: who prunes must be named");
    let store = open(dir, true)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let removed = store.audit_prune(keep_days, actor, now)?;
    println!("removed {removed} audit record(s) older than {keep_days} days");
    Ok(ExitCode::SUCCESS)
}

/// Opens the audit log: the database of a data directory, read-only
/// unless `write` (a missing one is an error, never created here), or the
/// store a configuration names.
fn open(at: &DataDir, write: bool) -> anyhow::Result<Box<dyn TicketStore>> {
    let dir = match &at.config {
        None => at.data.clone(),
        Some(file) => {
            let config = minsheng_server::Config::from_file(file)?;
            let store = &config.store;
            if store.backend == minsheng_server::config::Backend::Postgres {
                let url = store
                    .postgres_url
                    .as_deref()
                    .context("store.postgres_url is missing")?;
                let pg = match &store.postgres_schema {
                    Some(schema) => PgStore::connect_in_schema(url, schema),
                    None => PgStore::connect(url),
                };
                return Ok(Box::new(pg.context("cannot open the PostgreSQL store")?));
            }
            store.data_dir.clone()
        }
    };
    let path = dir.join("tickets.db");
    if !path.is_file() {
        bail!(
            "no audit log at {}: the file does not exist (--data names the server's data directory)",
            path.display()
        );
    }
    let store = if write {
        Store::open(&path)
    } else {
        Store::open_read_only(&path)
    };
    Ok(Box::new(store.with_context(|| {
        format!("cannot open {}", path.display())
    })?))
}

fn verify(dir: &DataDir) -> anyhow::Result<ExitCode> {
    let store = open(dir, false)?;
    match store.audit_verify()? {
        Verified::Intact { records, head } => {
            println!("audit log intact: {records} records, head {head}");
            Ok(ExitCode::SUCCESS)
        }
        Verified::Broken { seq, problem } => {
            println!("audit log broken at record {seq}: {problem}");
            Ok(ExitCode::FAILURE)
        }
    }
}

// ---------------------------------------------------------------------------
// Times

/// A time flag: RFC 3339 with `Z` or an offset, or a date (00:00 UTC); in
/// ms since the epoch.
fn parse_time(s: &str) -> Result<i64, String> {
    const BAD: &str = "not a time: use RFC 3339 (2026-11-29T08:00:00Z, 2026-11-29T16:00:00+08:00) or a date (2026-11-29)";
    let bad = || BAD.to_owned();
    // RFC 3339 allows a lower-case `t` and `z`, and a space for the `T`.
    let mut s = s.trim().to_ascii_uppercase();
    if s.len() > 10 && s.as_bytes()[10] == b' ' {
        s.replace_range(10..11, "T");
    }
    let s = s.as_str();
    let (utc, offset_ms) = if s.len() == "2026-11-29".len() {
        (format!("{s}T00:00:00Z"), 0)
    } else if s.ends_with('Z') {
        (s.to_owned(), 0)
    } else if let Some((base, offset)) = split_offset(s) {
        (format!("{base}Z"), offset)
    } else if s.len() >= "2026-11-29T08:00:00".len() {
        return Err(format!(
            "{BAD}; a time needs its zone (Z or an offset such as +08:00)"
        ));
    } else {
        return Err(bad());
    };
    let t = humantime::parse_rfc3339(&utc).map_err(|_| bad())?;
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "before 1970".to_owned())?
        .as_millis();
    i64::try_from(ms)
        .map(|ms| ms - offset_ms)
        .map_err(|_| bad())
}

/// `…+08:00` → (`…`, 8 h in ms).
fn split_offset(s: &str) -> Option<(&str, i64)> {
    if s.len() <= 6 || !s.is_char_boundary(s.len() - 6) {
        return None;
    }
    let (base, zone) = s.split_at(s.len() - 6);
    let b = zone.as_bytes();
    let sign = match b[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    if b[3] != b':' || ![b[1], b[2], b[4], b[5]].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let hours = i64::from(b[1] - b'0') * 10 + i64::from(b[2] - b'0');
    let minutes = i64::from(b[4] - b'0') * 10 + i64::from(b[5] - b'0');
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some((base, sign * (hours * 60 + minutes) * 60_000))
}

fn system_time(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

/// `2026-11-29T08:00:00Z`.
fn time_seconds(ms: i64) -> String {
    humantime::format_rfc3339_seconds(system_time(ms)).to_string()
}

/// `2026-11-29T08:00:00.250Z`.
fn time_millis(ms: i64) -> String {
    humantime::format_rfc3339_millis(system_time(ms)).to_string()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

// ---------------------------------------------------------------------------
// Query

impl QueryArgs {
    fn filter(&self) -> Filter {
        Filter {
            from: self.range.from,
            to: self.range.to,
            call_id: self.call_id.clone(),
            ticket_id: self.ticket,
            destination: self.destination.clone(),
            township: self.township.clone(),
            rule: self.rule.clone(),
            actor: self.actor.clone(),
            kind: self.kind.clone(),
        }
    }
}

/// The filter as JSON, only the parts given (times in RFC 3339).
fn filter_json(f: &Filter) -> Value {
    let mut m = serde_json::Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_owned(), v);
    };
    if let Some(v) = f.from {
        put("from", json!(time_millis(v)));
    }
    if let Some(v) = f.to {
        put("to", json!(time_millis(v)));
    }
    if let Some(v) = &f.call_id {
        put("call_id", json!(v));
    }
    if let Some(v) = f.ticket_id {
        put("ticket_id", json!(v));
    }
    if let Some(v) = &f.destination {
        put("destination", json!(v));
    }
    if let Some(v) = &f.township {
        put("township", json!(v));
    }
    if let Some(v) = &f.rule {
        put("rule", json!(v));
    }
    if let Some(v) = &f.actor {
        put("actor", json!(v));
    }
    if let Some(v) = &f.kind {
        put("kind", json!(v));
    }
    Value::Object(m)
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Table => "table",
        Format::Json => "json",
        Format::Csv => "csv",
    }
}

fn query(a: &QueryArgs) -> anyhow::Result<ExitCode> {
    let filter = a.filter();
    let who = match &a.who {
        Some(w) if w.trim().is_empty() => bail!("--as needs a name: who is asking for the numbers"),
        w => w.as_deref().map(str::trim),
    };
    let store = open(&a.data, a.show_numbers)?;

    // Numbers shown whole are recorded first: which records and tickets,
    // to whom. Only the records counted here are printed, so that the
    // record says exactly whose numbers were shown.
    let mut last_seq = None;
    let mut numbers: HashMap<i64, Option<String>> = HashMap::new();
    if let (true, Some(who)) = (a.show_numbers, who) {
        let mut records = 0_u64;
        let mut last = 0;
        let mut tickets = BTreeSet::new();
        store.audit_query(&filter, &mut |r| {
            records += 1;
            last = r.seq;
            tickets.extend(r.ticket_id);
            true
        })?;
        let detail = json!({
            "filter": filter_json(&filter),
            "format": format_name(a.format),
            "records": records,
            "tickets": tickets,
        });
        store
            .audit_event("numbers_shown", who, None, &detail.to_string(), now_ms())
            .context("cannot record that the numbers are shown, so they are not")?;
        last_seq = Some(last);
        // Read before the records are walked: a store may not be asked
        // anything else while it walks.
        for t in tickets {
            numbers.insert(t, store.caller_number(t)?);
        }
    }

    let out = BufWriter::new(std::io::stdout().lock());
    let mut printer = Printer::new(a.format, a.show_numbers, out)?;
    let mut failed: Option<anyhow::Error> = None;
    let mut shown = 0_u64;
    store.audit_query(&filter, &mut |r| {
        if last_seq.is_some_and(|last| r.seq > last) {
            return false;
        }
        let number = match (a.show_numbers, r.ticket_id) {
            (true, Some(t)) => numbers.get(&t).cloned().flatten(),
            _ => None,
        };
        shown += 1;
        match printer.record(&r, number.as_deref()) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    printer.finish()?;
    if shown == 0
        && let Some(kind) = &a.kind
        && !KINDS.contains(&kind.as_str())
    {
        eprintln!(
            "note: no record is of kind `{kind}`; the kinds are {}",
            KINDS.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes records in one of the formats.
enum Printer<W: Write> {
    Table {
        out: W,
        numbers: bool,
    },
    Json {
        out: W,
        numbers: bool,
    },
    Csv {
        out: Box<csv::Writer<W>>,
        numbers: bool,
    },
}

const CSV_HEADER: [&str; 14] = [
    "seq",
    "time",
    "kind",
    "actor",
    "ticket_id",
    "call_id",
    "hotline",
    "queue",
    "destination",
    "township",
    "rules",
    "rules_version",
    "detail",
    "hash",
];

/// The table's columns: heading, width (in terminal cells), right-aligned.
/// A longer value is printed whole and pushes the rest of its line.
const TABLE: [(&str, usize, bool); 9] = [
    ("SEQ", 6, true),
    ("TIME", 20, false),
    ("KIND", 14, false),
    ("ACTOR", 16, false),
    ("TICKET", 6, true),
    ("CALL ID", 12, false),
    ("DESTINATION/QUEUE", 30, false),
    ("TOWNSHIP", 9, false),
    ("RULES", 34, false),
];

/// The width of the caller-number column.
const NUMBER_WIDTH: usize = 13;

impl<W: Write> Printer<W> {
    fn new(format: Format, numbers: bool, out: W) -> anyhow::Result<Printer<W>> {
        Ok(match format {
            Format::Table => {
                let mut cells: Vec<String> = TABLE.iter().map(|(h, ..)| (*h).to_owned()).collect();
                if numbers {
                    cells.push("CALLER NUMBER".into());
                }
                cells.push("DETAIL".into());
                let mut out = out;
                writeln!(out, "{}", table_line(&cells, numbers))?;
                Printer::Table { out, numbers }
            }
            Format::Json => Printer::Json { out, numbers },
            Format::Csv => {
                let mut out = csv::Writer::from_writer(out);
                let mut header = CSV_HEADER.to_vec();
                if numbers {
                    header.push("caller_number");
                }
                out.write_record(&header)?;
                Printer::Csv {
                    out: Box::new(out),
                    numbers,
                }
            }
        })
    }

    /// One record; `number` is its ticket's caller number, when shown.
    fn record(&mut self, r: &AuditRecord, number: Option<&str>) -> anyhow::Result<()> {
        match self {
            Printer::Table { out, numbers } => {
                let or_dash = |v: Option<&str>| v.unwrap_or("-").to_owned();
                let place = match (&r.destination, &r.queue) {
                    (Some(d), Some(q)) => format!("{d}/{q}"),
                    (Some(d), None) => d.clone(),
                    (None, Some(q)) => q.clone(),
                    (None, None) => "-".into(),
                };
                let mut cells = vec![
                    r.seq.to_string(),
                    time_seconds(r.at),
                    r.kind.clone(),
                    r.actor.clone(),
                    r.ticket_id.map_or_else(|| "-".into(), |t| t.to_string()),
                    or_dash(r.call_id.as_deref()),
                    place,
                    or_dash(r.township.as_deref()),
                    if r.rules.is_empty() {
                        "-".into()
                    } else {
                        r.rules.join(",")
                    },
                ];
                if *numbers {
                    cells.push(or_dash(number));
                }
                cells.push(summary(r));
                writeln!(out, "{}", table_line(&cells, *numbers))?;
            }
            Printer::Json { out, numbers } => {
                let mut v = serde_json::to_value(r)?;
                v["detail"] = detail_value(r);
                if *numbers && r.ticket_id.is_some() {
                    v["caller_number"] = json!(number);
                }
                serde_json::to_writer(&mut *out, &v)?;
                out.write_all(b"\n")?;
            }
            Printer::Csv { out, numbers } => {
                let opt = |v: &Option<String>| v.clone().unwrap_or_default();
                let mut row = vec![
                    r.seq.to_string(),
                    time_millis(r.at),
                    r.kind.clone(),
                    r.actor.clone(),
                    r.ticket_id.map(|t| t.to_string()).unwrap_or_default(),
                    opt(&r.call_id),
                    opt(&r.hotline),
                    opt(&r.queue),
                    opt(&r.destination),
                    opt(&r.township),
                    r.rules.join(";"),
                    opt(&r.rules_version),
                    r.detail.clone(),
                    r.hash.clone(),
                ];
                if *numbers {
                    row.push(number.unwrap_or_default().to_owned());
                }
                out.write_record(&row)?;
            }
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        match self {
            Printer::Table { mut out, .. } | Printer::Json { mut out, .. } => out.flush()?,
            Printer::Csv { mut out, .. } => out.flush()?,
        }
        Ok(())
    }
}

/// One line of the table: the fixed columns padded, then the rest.
fn table_line(cells: &[String], numbers: bool) -> String {
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        let cell = one_line(cell);
        let (width, right) = match TABLE.get(i) {
            Some(&(_, w, right)) => (w, right),
            None if numbers && i == TABLE.len() => (NUMBER_WIDTH, false),
            None => (0, false),
        };
        if i > 0 {
            line.push_str("  ");
        }
        let pad = " ".repeat(width.saturating_sub(display_width(&cell)));
        if right {
            line.push_str(&pad);
            line.push_str(&cell);
        } else {
            line.push_str(&cell);
            line.push_str(&pad);
        }
    }
    line.truncate(line.trim_end().len());
    line
}

/// Line breaks and tabs as spaces, so that a record stays on its line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Terminal cells a text takes: two for the wide (CJK) characters.
fn display_width(s: &str) -> usize {
    s.chars()
        .map(|c| {
            let c = c as u32;
            let wide = matches!(c,
                0x1100..=0x115F
                | 0x2E80..=0x303E
                | 0x3041..=0x33FF
                | 0x3400..=0x4DBF
                | 0x4E00..=0x9FFF
                | 0xA000..=0xA4CF
                | 0xAC00..=0xD7A3
                | 0xF900..=0xFAFF
                | 0xFE30..=0xFE4F
                | 0xFF00..=0xFF60
                | 0xFFE0..=0xFFE6
                | 0x20000..=0x3FFFD);
            if wide { 2 } else { 1 }
        })
        .sum()
}

/// A record's detail as JSON (as text when it is not JSON).
fn detail_value(r: &AuditRecord) -> Value {
    serde_json::from_str(&r.detail).unwrap_or_else(|_| Value::String(r.detail.clone()))
}

/// A string field of a JSON value, or "".
fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The first 12 characters of a rule-set version.
fn short(version: &str) -> &str {
    version.get(..12).unwrap_or(version)
}

/// The few words of a record's detail that matter, for the table. No
/// personal data: the call's text and number are not shown.
fn summary(r: &AuditRecord) -> String {
    let d = detail_value(r);
    match r.kind.as_str() {
        "received" => {
            let mut parts = Vec::new();
            if let Some(u) = d.get("urgency").and_then(Value::as_str) {
                parts.push(u.to_owned());
            }
            if let Some(l) = d.pointer("/transfer/label").and_then(Value::as_str) {
                parts.push(l.to_owned());
            }
            if d.get("needs_review").and_then(Value::as_bool) == Some(true) {
                parts.push("needs review".into());
            }
            parts.join(", ")
        }
        "rerouted" => {
            let place = |side: &str| {
                let v = &d[side];
                match (v.get("queue").and_then(Value::as_str), v.get("destination")) {
                    (Some(q), _) => q.to_owned(),
                    (None, Some(Value::String(dest))) => dest.clone(),
                    _ => "?".into(),
                }
            };
            format!(
                "{} → {}: {}",
                place("from"),
                place("to"),
                text(&d, "reason")
            )
        }
        "nacked" => text(&d, "reason").to_owned(),
        "expired" => text(&d, "why").to_owned(),
        "delivered" => match d.get("lease_until").and_then(Value::as_i64) {
            Some(until) => format!("lease until {}", time_seconds(until)),
            None => String::new(),
        },
        "acked" => String::new(),
        "rules_loaded" => format!(
            "{} → {} ({})",
            short(text(&d, "old_version")),
            short(text(&d, "new_version")),
            text(&d, "trigger")
        ),
        "rules_rejected" => format!(
            "{}: {}",
            text(&d, "trigger"),
            text(&d, "error").lines().next().unwrap_or("")
        ),
        "numbers_shown" => {
            let filter = match d.get("filter").and_then(Value::as_object) {
                Some(f) if !f.is_empty() => f
                    .iter()
                    .map(|(k, v)| match v {
                        Value::String(s) => format!("{k}={s}"),
                        v => format!("{k}={v}"),
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => "every record".into(),
            };
            let tickets = d
                .get("tickets")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            format!(
                "{} record(s) of {tickets} ticket(s); {filter}",
                d.get("records").and_then(Value::as_u64).unwrap_or(0)
            )
        }
        "pruned" => format!(
            "{} record(s) through {} removed, the chain starts after it",
            d.get("records").and_then(Value::as_i64).unwrap_or(0),
            d.get("through_seq").and_then(Value::as_i64).unwrap_or(0)
        ),
        _ => r.detail.clone(),
    }
}

// ---------------------------------------------------------------------------
// Stats

/// The counts of `stats`.
#[derive(Debug, Default)]
struct Counts {
    calls: u64,
    by_destination: BTreeMap<String, u64>,
    by_township: BTreeMap<String, u64>,
    by_hotline: BTreeMap<String, u64>,
    transfers: BTreeMap<String, u64>,
    no_rule: u64,
    needs_review: u64,
    reroutes: u64,
    rerouted_tickets: BTreeSet<i64>,
    /// Per rule, the rerouted tickets it had routed.
    reroutes_by_rule: BTreeMap<String, u64>,
    /// Rerouted tickets whose call matched no rule.
    rerouted_no_rule: u64,
    /// Rerouted tickets whose `received` record was pruned.
    rerouted_call_pruned: u64,
}

fn stats(a: &StatsArgs) -> anyhow::Result<ExitCode> {
    let store = open(&a.data, false)?;
    let filter = Filter {
        from: a.range.from,
        to: a.range.to,
        ..Filter::default()
    };
    let mut c = Counts::default();
    let mut rules_of: HashMap<i64, Vec<String>> = HashMap::new();
    store.audit_query(&filter, &mut |r| {
        match r.kind.as_str() {
            "received" => {
                c.calls += 1;
                let bump = |m: &mut BTreeMap<String, u64>, k: &str| {
                    *m.entry(k.to_owned()).or_default() += 1;
                };
                bump(
                    &mut c.by_destination,
                    r.destination.as_deref().unwrap_or("?"),
                );
                bump(
                    &mut c.by_township,
                    r.township.as_deref().unwrap_or("unassigned"),
                );
                bump(&mut c.by_hotline, r.hotline.as_deref().unwrap_or("?"));
                let d = detail_value(&r);
                if let Some(label) = d.pointer("/transfer/label").and_then(Value::as_str) {
                    bump(&mut c.transfers, label);
                }
                if r.rules.is_empty() {
                    c.no_rule += 1;
                }
                if d.get("needs_review").and_then(Value::as_bool) == Some(true) {
                    c.needs_review += 1;
                }
                if let Some(t) = r.ticket_id {
                    rules_of.insert(t, r.rules);
                }
            }
            "rerouted" => {
                c.reroutes += 1;
                c.rerouted_tickets.extend(r.ticket_id);
            }
            _ => {}
        }
        true
    })?;
    // A call received before the range and rerouted in it: its rules are
    // in its `received` record, wherever that is.
    let elsewhere: Vec<i64> = c
        .rerouted_tickets
        .iter()
        .copied()
        .filter(|t| !rules_of.contains_key(t))
        .collect();
    for t in elsewhere {
        let f = Filter {
            ticket_id: Some(t),
            kind: Some("received".into()),
            ..Filter::default()
        };
        store.audit_query(&f, &mut |r| {
            rules_of.insert(t, r.rules);
            false
        })?;
    }
    for t in &c.rerouted_tickets {
        match rules_of.get(t) {
            Some(rules) if !rules.is_empty() => {
                for rule in rules {
                    *c.reroutes_by_rule.entry(rule.clone()).or_default() += 1;
                }
            }
            Some(_) => c.rerouted_no_rule += 1,
            None => c.rerouted_call_pruned += 1,
        }
    }
    match a.format {
        StatsFormat::Json => println!("{}", stats_json(&c, &a.range)),
        StatsFormat::Table => print!("{}", stats_table(&c, &a.range)),
    }
    Ok(ExitCode::SUCCESS)
}

/// Entries by count, largest first, then by name.
fn ranked(m: &BTreeMap<String, u64>) -> Vec<(&str, u64)> {
    let mut v: Vec<(&str, u64)> = m.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v
}

fn stats_json(c: &Counts, range: &Range) -> Value {
    json!({
        "from": range.from.map(time_millis),
        "to": range.to.map(time_millis),
        "calls": c.calls,
        "by_destination": c.by_destination,
        "by_township": c.by_township,
        "by_hotline": c.by_hotline,
        "transfers": c.transfers,
        "no_rule": c.no_rule,
        "needs_review": c.needs_review,
        "reroutes": c.reroutes,
        "rerouted_tickets": c.rerouted_tickets.len(),
        "reroutes_by_rule": ranked(&c.reroutes_by_rule)
            .into_iter()
            .map(|(rule, tickets)| json!({ "rule": rule, "tickets": tickets }))
            .collect::<Vec<_>>(),
        "rerouted_no_rule": c.rerouted_no_rule,
        "rerouted_call_pruned": c.rerouted_call_pruned,
    })
}

fn stats_table(c: &Counts, range: &Range) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let bound = |t: Option<i64>, open: &str| t.map_or_else(|| open.to_owned(), time_seconds);
    let _ = writeln!(
        s,
        "audit log from {} to {}",
        bound(range.from, "the first record"),
        bound(range.to, "the last")
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "calls              {}", c.calls);
    let _ = writeln!(s, "  matched no rule  {}", c.no_rule);
    let _ = writeln!(s, "  needed review    {}", c.needs_review);
    let _ = writeln!(
        s,
        "reroutes           {} ({} tickets)",
        c.reroutes,
        c.rerouted_tickets.len()
    );
    let mut section = |heading: &str, rows: Vec<(&str, u64)>| {
        let _ = writeln!(s, "\n{heading}");
        if rows.is_empty() {
            let _ = writeln!(s, "  none");
            return;
        }
        let width = rows
            .iter()
            .map(|(k, _)| display_width(k))
            .max()
            .unwrap_or(0)
            .max(16);
        for (k, n) in rows {
            let pad = " ".repeat(width - display_width(k));
            let _ = writeln!(s, "  {k}{pad}  {n:>6}");
        }
    };
    section("calls per destination", ranked(&c.by_destination));
    section("calls per township", ranked(&c.by_township));
    section("calls per hotline", ranked(&c.by_hotline));
    section("transfers between hotlines", ranked(&c.transfers));
    let mut by_rule = ranked(&c.reroutes_by_rule);
    if c.rerouted_no_rule > 0 {
        by_rule.push(("(no rule fired)", c.rerouted_no_rule));
    }
    if c.rerouted_call_pruned > 0 {
        by_rule.push(("(call record pruned)", c.rerouted_call_pruned));
    }
    section(
        "reroutes per rule (rerouted tickets whose call the rule matched)",
        by_rule,
    );
    s
}
