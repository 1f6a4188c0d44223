//! Who may call what: client identities (a bearer token or a client
//! certificate), their roles, and what one client may use (a rate, calls in
//! flight, open subscriptions).
//!
//! Every service method asks [`Guard::admit`] for what it needs before it
//! does anything; a caller that cannot prove who it is gets
//! UNAUTHENTICATED, one without the role PERMISSION_DENIED, one over its
//! limits RESOURCE_EXHAUSTED. With no `[[client]]` configured every caller
//! is let in (the loopback default).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use minsheng_core::Hotline;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Request, Status};

use crate::config::{ClientConfig, LimitsConfig};

/// What a client may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Submit calls of a hotline, or of any (`None`).
    Intake(Option<Hotline>),
    /// Take the tickets of the queues a pattern names (`township.*`).
    Consumer(String),
    /// Reroute tickets and read them.
    Dispatcher,
    /// Reload the rules.
    RulesAdmin,
    /// Read the audit log and tickets.
    Auditor,
}

impl Role {
    /// Parses a role as written in the configuration.
    pub fn parse(s: &str) -> Result<Role, String> {
        Ok(match s.split_once(':') {
            None if s == "intake" => Role::Intake(None),
            None if s == "dispatcher" => Role::Dispatcher,
            None if s == "rules-admin" => Role::RulesAdmin,
            None if s == "auditor" => Role::Auditor,
            Some(("intake", h)) => Role::Intake(Some(h.parse().map_err(|_| {
                format!("unknown hotline {h:?} in role {s:?} (110, 12345 or app)")
            })?)),
            Some(("consumer", q)) if !q.is_empty() => {
                if q[..q.len() - 1].contains('*') {
                    return Err(format!(
                        "role {s:?}: `*` only at the end of a queue pattern"
                    ));
                }
                Role::Consumer(q.to_owned())
            }
            _ => {
                return Err(format!(
                    "unknown role {s:?} (intake, intake:<hotline>, consumer:<queue>, dispatcher, rules-admin, auditor)"
                ));
            }
        })
    }
}

/// What a call needs.
#[derive(Debug, Clone, Copy)]
pub enum Need<'a> {
    /// To submit or classify a call of this hotline.
    Intake(Hotline),
    /// To open a stream of calls (each call is checked for its hotline).
    AnyIntake,
    /// To take, ack or nack tickets of a queue.
    Consume(&'a str),
    /// To reroute.
    Dispatch,
    /// To read a ticket.
    ReadTicket,
    /// To reload the rules.
    RulesAdmin,
    /// To read the audit log.
    Audit,
    /// Anything any known client may do (the rule set's version).
    Known,
}

fn queue_matches(pattern: &str, queue: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => queue.starts_with(prefix),
        None => pattern == queue,
    }
}

impl Need<'_> {
    fn allowed_by(&self, roles: &[Role]) -> bool {
        roles.iter().any(|r| match (self, r) {
            (Need::Known, _) => true,
            (Need::Intake(h), Role::Intake(allowed)) => allowed.is_none_or(|a| a == *h),
            (Need::AnyIntake, Role::Intake(_)) => true,
            (Need::Consume(q), Role::Consumer(p)) => queue_matches(p, q),
            (Need::Dispatch, Role::Dispatcher) => true,
            (Need::ReadTicket, Role::Dispatcher | Role::Auditor) => true,
            (Need::RulesAdmin, Role::RulesAdmin) => true,
            (Need::Audit, Role::Auditor) => true,
            _ => false,
        })
    }

    fn describe(&self) -> String {
        match self {
            Need::Intake(h) => format!("intake:{h}"),
            Need::AnyIntake => "intake".into(),
            Need::Consume(q) => format!("consumer:{q}"),
            Need::Dispatch => "dispatcher".into(),
            Need::ReadTicket => "dispatcher or auditor".into(),
            Need::RulesAdmin => "rules-admin".into(),
            Need::Audit => "auditor".into(),
            Need::Known => "a known client".into(),
        }
    }
}

struct Client {
    name: String,
    /// SHA-256 of the token: compared in constant time, same length always.
    token: Option<[u8; 32]>,
    subject: Option<String>,
    roles: Vec<Role>,
}

/// What one client has used.
struct Usage {
    tokens: f64,
    refilled: Instant,
    in_flight: Arc<Semaphore>,
    subscriptions: Arc<Semaphore>,
}

/// A refusal, with what the audit log should say of it (when anything).
#[derive(Debug)]
pub struct Refused {
    /// The status for the caller.
    pub status: Status,
    /// Who asked, for the audit record; `None`: not recorded (a limit).
    pub actor: Option<String>,
}

/// A caller let in; holds its place among its calls in flight.
#[derive(Debug)]
pub struct Pass {
    /// The client's name, or `None` when no clients are configured.
    pub name: Option<String>,
    roles: Vec<Role>,
    _in_flight: Option<OwnedSemaphorePermit>,
}

impl Pass {
    /// Whether this caller may also do `need` (always, with no clients
    /// configured).
    pub fn may(&self, need: Need<'_>) -> Result<(), Refused> {
        match &self.name {
            None => Ok(()),
            Some(_) if need.allowed_by(&self.roles) => Ok(()),
            Some(name) => Err(Refused {
                status: Status::permission_denied(format!(
                    "client {name:?} may not do this: it needs {}",
                    need.describe()
                )),
                actor: Some(name.clone()),
            }),
        }
    }

    /// The actor to record: the client's name, else what the caller said.
    pub fn actor(&self, said: &str) -> String {
        self.name.clone().unwrap_or_else(|| said.to_owned())
    }
}

/// Identities, roles and limits.
pub struct Guard {
    clients: Vec<Client>,
    limits: LimitsConfig,
    usage: Mutex<HashMap<String, Usage>>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field(
                "clients",
                &self.clients.iter().map(|c| &c.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.trim().as_bytes()).into()
}

/// Why a client's token cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("client {client:?}: {message}")]
pub struct TokenError {
    client: String,
    message: String,
}

impl Guard {
    /// Builds the guard, reading tokens from the environment and files.
    pub fn new(clients: &[ClientConfig], limits: &LimitsConfig) -> Result<Guard, TokenError> {
        let mut out = Vec::new();
        for c in clients {
            let err = |message: String| TokenError {
                client: c.name.clone(),
                message,
            };
            let token = match (&c.token, &c.token_env, &c.token_file) {
                (Some(t), _, _) => Some(t.0.clone()),
                (_, Some(var), _) => Some(
                    std::env::var(var)
                        .map_err(|_| err(format!("the environment variable {var} is not set")))?,
                ),
                (_, _, Some(path)) => Some(
                    std::fs::read_to_string(path)
                        .map_err(|e| err(format!("reading {}: {e}", path.display())))?,
                ),
                _ => None,
            };
            if token.as_deref().is_some_and(|t| t.trim().len() < 16) {
                return Err(err("a token must be at least 16 characters".into()));
            }
            out.push(Client {
                name: c.name.clone(),
                token: token.as_deref().map(digest),
                subject: c.cert_subject.clone(),
                roles: c
                    .roles
                    .iter()
                    .map(|r| Role::parse(r).map_err(&err))
                    .collect::<Result<_, _>>()?,
            });
        }
        Ok(Guard {
            clients: out,
            limits: limits.clone(),
            usage: Mutex::new(HashMap::new()),
        })
    }

    /// Whether callers must prove who they are.
    pub fn enforced(&self) -> bool {
        !self.clients.is_empty()
    }

    fn identify<T>(&self, request: &Request<T>) -> Result<&Client, Refused> {
        let peer = request
            .remote_addr()
            .map_or_else(|| "unknown peer".to_owned(), |a| a.to_string());
        let refuse = |why: &str| Refused {
            status: Status::unauthenticated(why.to_owned()),
            actor: Some(format!("unauthenticated {peer}")),
        };
        if let Some(value) = request.metadata().get("authorization") {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or_else(|| refuse("authorization: expected `Bearer <token>`"))?;
            let presented = digest(token);
            // Every client is compared, so the time does not tell which.
            let mut found = None;
            for c in &self.clients {
                if let Some(t) = &c.token
                    && bool::from(t.ct_eq(&presented))
                {
                    found = Some(c);
                }
            }
            return found.ok_or_else(|| refuse("authorization: unknown token"));
        }
        if let Some(cn) = crate::tls::peer_common_name(request)
            && let Some(c) = self
                .clients
                .iter()
                .find(|c| c.subject.as_deref() == Some(cn.as_str()))
        {
            return Ok(c);
        }
        Err(refuse(
            "no credentials: send `authorization: Bearer <token>` or a client certificate",
        ))
    }

    /// Lets a caller in for `need`, or says why not.
    pub fn admit<T>(&self, request: &Request<T>, need: Need<'_>) -> Result<Pass, Refused> {
        if !self.enforced() {
            return Ok(Pass {
                name: None,
                roles: Vec::new(),
                _in_flight: None,
            });
        }
        let client = self.identify(request)?;
        if !need.allowed_by(&client.roles) {
            return Err(Refused {
                status: Status::permission_denied(format!(
                    "client {:?} may not do this: it needs {}",
                    client.name,
                    need.describe()
                )),
                actor: Some(client.name.clone()),
            });
        }
        let permit = self.take(&client.name)?;
        Ok(Pass {
            name: Some(client.name.clone()),
            roles: client.roles.clone(),
            _in_flight: Some(permit),
        })
    }

    fn exhausted(what: String) -> Refused {
        Refused {
            status: Status::resource_exhausted(what),
            actor: None,
        }
    }

    /// One call of a client's rate, for each call of a stream.
    pub fn charge(&self, pass: &Pass) -> Result<(), Refused> {
        let Some(name) = &pass.name else {
            return Ok(());
        };
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        match usage.get_mut(name) {
            Some(u) => self.spend(name, u),
            None => Ok(()),
        }
    }

    /// Refills a client's bucket and takes one call from it.
    fn spend(&self, name: &str, u: &mut Usage) -> Result<(), Refused> {
        let l = &self.limits;
        let now = Instant::now();
        let elapsed = now.duration_since(u.refilled).as_secs_f64();
        u.tokens = (u.tokens + elapsed * f64::from(l.calls_per_second)).min(f64::from(l.burst));
        u.refilled = now;
        if u.tokens < 1.0 {
            metrics::counter!("minsheng_limited_total", "limit" => "rate").increment(1);
            return Err(Self::exhausted(format!(
                "client {name:?} is over its {} calls a second",
                l.calls_per_second
            )));
        }
        u.tokens -= 1.0;
        Ok(())
    }

    /// One call of a client's rate, and a place among its calls in flight.
    fn take(&self, name: &str) -> Result<OwnedSemaphorePermit, Refused> {
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        let l = &self.limits;
        let u = usage.entry(name.to_owned()).or_insert_with(|| Usage {
            tokens: f64::from(l.burst),
            refilled: Instant::now(),
            in_flight: Arc::new(Semaphore::new(l.max_in_flight as usize)),
            subscriptions: Arc::new(Semaphore::new(l.max_subscriptions as usize)),
        });
        let permit = u.in_flight.clone().try_acquire_owned().map_err(|_| {
            metrics::counter!("minsheng_limited_total", "limit" => "in_flight").increment(1);
            Self::exhausted(format!(
                "client {name:?} has {} calls in flight already",
                l.max_in_flight
            ))
        })?;
        self.spend(name, u)?;
        Ok(permit)
    }

    /// A place among a client's open subscriptions, held while it lasts.
    pub fn subscription(&self, pass: &Pass) -> Result<Option<OwnedSemaphorePermit>, Refused> {
        let Some(name) = &pass.name else {
            return Ok(None);
        };
        let usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        let Some(u) = usage.get(name) else {
            return Ok(None);
        };
        u.subscriptions
            .clone()
            .try_acquire_owned()
            .map(Some)
            .map_err(|_| {
                metrics::counter!("minsheng_limited_total", "limit" => "subscriptions")
                    .increment(1);
                Self::exhausted(format!(
                    "client {name:?} has {} subscriptions open already",
                    self.limits.max_subscriptions
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_match() {
        let roles: Vec<Role> = ["intake:110", "consumer:township.*", "auditor"]
            .iter()
            .map(|r| Role::parse(r).unwrap())
            .collect();
        assert!(Need::Intake(Hotline::Police110).allowed_by(&roles));
        assert!(!Need::Intake(Hotline::Gov12345).allowed_by(&roles));
        assert!(Need::Consume("township.330402008").allowed_by(&roles));
        assert!(!Need::Consume("dispatch.police").allowed_by(&roles));
        assert!(Need::Audit.allowed_by(&roles));
        assert!(!Need::Dispatch.allowed_by(&roles));
        assert!(!Need::RulesAdmin.allowed_by(&roles));
        let exact = [Role::parse("consumer:township.330402008").unwrap()];
        assert!(!Need::Consume("township.330402009").allowed_by(&exact));
        assert!(Role::parse("intake:119").is_err());
        assert!(Role::parse("consumer:town*ship").is_err());
        assert!(Role::parse("admin").is_err());
    }
}
