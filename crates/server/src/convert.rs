//! Between the wire and the domain: a proto `Call` checked into a core
//! `Call` (every refusal names its field), core decisions and stored
//! tickets into proto messages.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use minsheng_core::{Call, Decision, Hotline, TownshipCode, mask_number};
use minsheng_proto::v1 as pb;
use minsheng_store::{HistoryEntry, Ticket};
use tonic::Status;

use crate::rules::Loaded;

/// The longest call id, caller number, location and call-taker id accepted.
const MAX_ID: usize = 128;
const MAX_NUMBER: usize = 32;
const MAX_LOCATION: usize = 1024;

/// A call that passed every check, with what the store keeps beside it.
#[derive(Debug)]
pub struct Checked {
    /// The call as the classifier takes it.
    pub call: Call,
    /// The caller's number, whole.
    pub caller_number: String,
    /// The call-taker's id.
    pub call_taker: String,
    /// When the hotline took the call (ms); now when absent.
    pub received_at: i64,
}

fn invalid(field: &str, message: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {message}"))
}

/// Refuses a field longer than `max` bytes, naming it.
fn at_most(field: &str, value: &str, max: usize) -> Result<(), Status> {
    if value.len() > max {
        return Err(invalid(
            field,
            format!("{} bytes, more than the {max} allowed", value.len()),
        ));
    }
    Ok(())
}

/// Refuses a message larger than the configured limit, naming it.
pub fn check_size<M: prost::Message>(message: &M, limit: usize) -> Result<(), Status> {
    let len = message.encoded_len();
    if len > limit {
        return Err(Status::invalid_argument(format!(
            "message: {len} bytes, more than the {limit} allowed"
        )));
    }
    Ok(())
}

/// The hotline of a proto call.
pub fn hotline(value: i32) -> Result<Hotline, Status> {
    match pb::Hotline::try_from(value) {
        Ok(pb::Hotline::Hotline110) => Ok(Hotline::Police110),
        Ok(pb::Hotline::Hotline12345) => Ok(Hotline::Gov12345),
        Ok(pb::Hotline::App) => Ok(Hotline::App),
        Ok(pb::Hotline::Unspecified) => Err(invalid(
            "hotline",
            "missing (HOTLINE_110, HOTLINE_12345 or HOTLINE_APP)",
        )),
        Err(_) => Err(invalid(
            "hotline",
            format!("unknown hotline {value} (HOTLINE_110, HOTLINE_12345 or HOTLINE_APP)"),
        )),
    }
}

fn hotline_to_pb(h: Hotline) -> pb::Hotline {
    match h {
        Hotline::Police110 => pb::Hotline::Hotline110,
        Hotline::Gov12345 => pb::Hotline::Hotline12345,
        Hotline::App => pb::Hotline::App,
    }
}

/// Checks a call. `need_id`: SubmitCall needs the operator system's id;
/// a dry run does not.
pub fn check_call(
    c: pb::Call,
    need_id: bool,
    max_text: usize,
    rules: &Loaded,
) -> Result<Checked, Status> {
    if need_id && c.call_id.trim().is_empty() {
        return Err(invalid("call_id", "missing or empty"));
    }
    at_most("call_id", &c.call_id, MAX_ID)?;
    let hotline = hotline(c.hotline)?;
    if minsheng_core::is_blank(&c.text) {
        return Err(invalid("text", "missing or empty"));
    }
    at_most("text", &c.text, max_text)?;
    at_most("location", &c.location, MAX_LOCATION)?;
    at_most("call_taker", &c.call_taker, MAX_ID)?;
    let number_ok = c.caller_number.len() <= MAX_NUMBER
        && c.caller_number
            .chars()
            .all(|ch| ch.is_ascii_digit() || matches!(ch, '+' | '-' | ' '));
    if !number_ok {
        return Err(invalid(
            "caller_number",
            format!(
                "not a phone number (digits, +, - and spaces, at most {MAX_NUMBER}): {}",
                mask_number(&c.caller_number)
            ),
        ));
    }
    let township = if c.township_code.is_empty() {
        None
    } else {
        let code: TownshipCode = c
            .township_code
            .parse()
            .map_err(|e| invalid("township_code", e))?;
        if rules.classifier.gazetteer().get(&code).is_none() {
            return Err(invalid(
                "township_code",
                format!("no township {code} in the gazetteer"),
            ));
        }
        Some(code)
    };
    let received_at = match c.received_at {
        None => crate::writer::now_ms(),
        Some(t) if t.seconds < 0 || !(0..1_000_000_000).contains(&t.nanos) => {
            return Err(invalid("received_at", "not a valid time"));
        }
        Some(t) => t.seconds.saturating_mul(1000) + i64::from(t.nanos / 1_000_000),
    };
    Ok(Checked {
        call: Call {
            id: (!c.call_id.is_empty()).then_some(c.call_id),
            hotline,
            text: c.text,
            location: (!c.location.trim().is_empty()).then_some(c.location),
            township,
        },
        caller_number: c.caller_number,
        call_taker: c.call_taker,
        received_at,
    })
}

/// A time in milliseconds as a proto timestamp.
pub fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// A system time as a proto timestamp.
pub fn system_time(t: SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    prost_types::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// A decision on the wire.
pub fn decision(d: &Decision) -> pb::Decision {
    pb::Decision {
        destination: d.destination.clone(),
        queue: d.queue.clone(),
        township_code: d
            .township
            .as_ref()
            .map(|t| t.code.to_string())
            .unwrap_or_default(),
        township_name: d
            .township
            .as_ref()
            .map(|t| t.name.clone())
            .unwrap_or_default(),
        urgency: d.urgency.to_string(),
        confidence: d.confidence,
        needs_review: d.needs_review,
        transfer: d
            .transfer
            .as_ref()
            .map(|t| t.label.clone())
            .unwrap_or_default(),
        fired: d
            .fired
            .iter()
            .map(|f| pb::FiredRule {
                id: f.id.clone(),
                destination: f.destination.clone(),
                category: f.category.clone(),
                urgency: f.urgency.to_string(),
                weight: f.weight,
                review: f.review,
                matches: f
                    .matches
                    .iter()
                    .map(|m| pb::Match {
                        condition: m.condition.clone(),
                        text: m.text.clone(),
                        start: m.start as u32,
                        end: m.end as u32,
                    })
                    .collect(),
            })
            .collect(),
        rules_version: d.rules_version.clone(),
        normalized_text: d.normalized_text.clone(),
    }
}

/// Whether the caller's number goes out whole (to the consumer a ticket is
/// delivered to) or masked (everywhere else).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Number {
    /// Whole.
    Whole,
    /// Masked.
    Masked,
}

fn urgency_name(u: i64) -> &'static str {
    match u {
        3 => "critical",
        2 => "urgent",
        1 => "priority",
        _ => "routine",
    }
}

/// A stored ticket on the wire.
pub fn ticket(t: &Ticket, number: Number) -> pb::Ticket {
    let decision = serde_json::from_str::<Decision>(&t.decision)
        .ok()
        .map(|d| decision(&d));
    pb::Ticket {
        id: t.id as u64,
        call_id: t.call_id.clone(),
        hotline: t
            .hotline
            .parse::<Hotline>()
            .map_or(pb::Hotline::Unspecified, hotline_to_pb) as i32,
        queue: t.queue.clone(),
        destination: t.destination.clone(),
        township_code: t.township.clone().unwrap_or_default(),
        urgency: urgency_name(t.urgency).into(),
        state: match t.state {
            minsheng_store::TicketState::Queued => "queued",
            minsheng_store::TicketState::Leased => "leased",
            minsheng_store::TicketState::Acked => "acked",
        }
        .into(),
        deliveries: t.deliveries as u32,
        accepted_at: Some(timestamp(t.created_at)),
        received_at: Some(timestamp(t.call.received_at)),
        caller_number: match number {
            Number::Whole => t.call.caller_number.clone(),
            Number::Masked => mask_number(&t.call.caller_number),
        },
        text: t.call.text.clone(),
        location: t.call.location.clone(),
        call_taker: t.call.call_taker.clone(),
        decision,
    }
}

/// A history entry on the wire.
pub fn history(h: &HistoryEntry) -> pb::HistoryEntry {
    pb::HistoryEntry {
        at: Some(timestamp(h.at)),
        event: h.event.clone(),
        actor: h.actor.clone(),
        detail: h.detail.clone(),
    }
}

/// Urgency as the store orders it.
pub fn urgency_rank(u: minsheng_core::Urgency) -> i64 {
    match u {
        minsheng_core::Urgency::Routine => 0,
        minsheng_core::Urgency::Priority => 1,
        minsheng_core::Urgency::Urgent => 2,
        minsheng_core::Urgency::Critical => 3,
    }
}
