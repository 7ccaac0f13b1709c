//! PagerDuty Events API v2, so Alertmanager's `pagerduty_configs` or any PagerDuty client can point
//! at hub. Validated as PagerDuty validates; `dedup_key` is the problem's identity, and acknowledge
//! and resolve apply to the problem with that key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Map, Value};

use super::{digest_id, object, text, Failure, Gate, Headers, ParseError, Receipt, Refusal};
use super::{Reply, Source, SourcePlugin};
use crate::keys::{Issues, Section};
use crate::keys::Env;
use crate::credentials::token_matches;
use crate::domain::{Entity, Facts, Notification};
use crate::secret::Secret;

/// PagerDuty Events API v2's own path, so a PagerDuty client needs only a URL change; and hub's.
pub const PATHS: &[&str] = &["/v2/enqueue", "/hooks/pagerduty"];

pub(super) fn read(_: &Headers, body: &[u8]) -> Result<Vec<Notification>, ParseError> {
    parse(body).map(|e| vec![e.notification])
}

/// `routing_keys`: the 32-character integration keys events must carry (required);
/// `rate_limit_per_minute`: events a minute per key before 429 (default 120).
pub(super) fn build(gate: Gate, s: &mut Section, _: &Env, issues: &mut Issues) -> Arc<dyn SourcePlugin> {
    let keys = s.string_list("routing_keys", issues).unwrap_or_default();
    if keys.is_empty() {
        issues.push(
            s.path_of("routing_keys"),
            "missing: the 32-character integration keys senders use",
        );
    }
    if keys.iter().any(|k| k.chars().count() != ROUTING_KEY_LEN) {
        issues.push(
            s.path_of("routing_keys"),
            "every routing key is 32 characters, as PagerDuty's are",
        );
    }
    let per_minute = s
        .integer("rate_limit_per_minute", 1, 100_000, issues)
        .unwrap_or(120) as u32;
    Arc::new(Pagerduty {
        gate,
        routing_keys: keys.into_iter().map(Secret::new).collect(),
        per_minute,
        sent: Mutex::default(),
    })
}

/// Answers as PagerDuty does: 202 with the dedup key, 400 with the list of what is invalid, 429
/// when a routing key sends too fast. Failures before the event is read (not enabled, auth, size)
/// and storage failures keep hub's own error shape.
#[derive(Debug)]
struct Pagerduty {
    gate: Gate,
    routing_keys: Vec<Secret>,
    per_minute: u32,
    /// Each routing key's events of the last minute.
    sent: Mutex<HashMap<String, crate::rate::Window>>,
}

impl Pagerduty {
    fn allow(&self, key: &str) -> bool {
        let mut map = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.to_string())
            .or_insert_with(|| crate::rate::Window::new(self.per_minute))
            .take(Instant::now())
            .is_ok()
    }
}

impl SourcePlugin for Pagerduty {
    fn source(&self) -> Source {
        Source::Pagerduty
    }

    fn gate(&self) -> &Gate {
        &self.gate
    }

    fn receive(&self, _: &Headers, body: &[u8]) -> Result<Vec<Notification>, Refusal> {
        let event = parse(body)?;
        if !self
            .routing_keys
            .iter()
            .any(|k| token_matches(Some(&event.routing_key), k))
        {
            return Err(ParseError::Fields(vec![
                "'routing_key' is not one of this hub's integration keys".to_string(),
            ])
            .into());
        }
        if !self.allow(&event.routing_key) {
            return Err(Refusal::Throttled(
                "Requests for this service are arriving too quickly. Please retry later."
                    .to_string(),
            ));
        }
        Ok(vec![event.notification])
    }

    fn accepted(&self, _: &[u8], receipts: &[Receipt]) -> Reply {
        let dedup_key = receipts.first().map(|r| r.problem_key.as_str());
        Reply {
            status: 202,
            body: json!({"status": "success", "message": "Event processed", "dedup_key": dedup_key}),
        }
    }

    fn refused(&self, _: &[u8], failure: &Failure) -> Option<Reply> {
        let body = match failure.refusal? {
            Refusal::Parse(ParseError::Fields(errors)) => invalid(errors.clone()),
            Refusal::Parse(other) => invalid(vec![other.to_string()]),
            Refusal::Throttled(message) => {
                return Some(Reply {
                    status: 429,
                    body: json!({"status": "throttle event", "message": message}),
                })
            }
            Refusal::Unauthorized { .. } | Refusal::OverRate { .. } => return None,
        };
        Some(Reply { status: 400, body })
    }
}

fn invalid(errors: Vec<String>) -> Value {
    json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors})
}

pub const SEVERITIES: &[&str] = &["critical", "error", "warning", "info"];
const MAX_SUMMARY: usize = 1024;
const MAX_DEDUP_KEY: usize = 255;
const ROUTING_KEY_LEN: usize = 32;

/// One event, with what the source checks and answers.
#[derive(Debug)]
pub struct Event {
    pub notification: Notification,
    pub routing_key: String,
    pub dedup_key: String,
}

pub fn parse(body: &[u8]) -> Result<Event, ParseError> {
    let obj = object(body, "a PagerDuty event")?;
    let mut errors = Vec::new();
    let routing_key = text(&obj, "routing_key");
    if routing_key.is_empty() {
        errors.push("'routing_key' is missing or blank".to_string());
    } else if routing_key.chars().count() != ROUTING_KEY_LEN {
        errors.push(format!(
            "'routing_key' must be {ROUTING_KEY_LEN} characters"
        ));
    }
    let action = text(&obj, "event_action");
    let state = match action.as_str() {
        "trigger" => "OPEN",
        "acknowledge" => "ACKNOWLEDGED",
        "resolve" => "RESOLVED",
        _ => {
            errors.push("'event_action' must be trigger, acknowledge or resolve".to_string());
            ""
        }
    };
    let dedup_key = match obj.get("dedup_key") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) if k.is_empty() => None,
        Some(Value::String(k)) if k.chars().count() > MAX_DEDUP_KEY => {
            errors.push(format!(
                "'dedup_key' is longer than {MAX_DEDUP_KEY} characters"
            ));
            None
        }
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => {
            errors.push("'dedup_key' must be a string".to_string());
            None
        }
    };
    let empty = Map::new();
    let payload = match obj.get("payload") {
        Some(Value::Object(p)) => p,
        Some(_) => {
            errors.push("'payload' must be an object".to_string());
            &empty
        }
        None => &empty,
    };
    if action == "trigger" {
        check_trigger(&obj, payload, &mut errors);
    } else if state.len() > 1 && dedup_key.is_none() {
        errors.push(format!("'dedup_key' is required to {action}"));
    }
    if !errors.is_empty() {
        return Err(ParseError::Fields(errors));
    }
    // PagerDuty makes up a key when a trigger has none; derived from the body, a retried trigger
    // gets the same one and is stored once.
    let dedup_key = dedup_key.unwrap_or_else(|| digest_id(body));
    let source_name = text(payload, "source");
    let tags = ["class", "component", "group"]
        .iter()
        .filter_map(|k| {
            Some(text(payload, k))
                .filter(|v| !v.is_empty())
                .map(|v| format!("{k}:{v}"))
        })
        .collect();
    let url = [text(&obj, "client_url")]
        .into_iter()
        .chain(
            obj.get("links")
                .and_then(Value::as_array)
                .and_then(|l| l.first())
                .and_then(|l| l.get("href"))
                .and_then(Value::as_str)
                .map(str::to_string),
        )
        .find(|u| !u.is_empty());
    let summary = text(payload, "summary");
    let facts = Facts {
        title: summary.clone(),
        severity: text(payload, "severity"),
        impact: String::new(),
        tags,
        url,
        entities: if source_name.is_empty() {
            Vec::new()
        } else {
            vec![Entity::named(&source_name, "source")]
        },
    };
    Ok(Event {
        notification: Notification {
            source: Source::Pagerduty,
            problem_key: dedup_key.clone(),
            state: state.to_string(),
            pid: None,
            title: Some(summary).filter(|s| !s.is_empty()),
            is_test: false,
            body: body.to_vec(),
            facts,
            identity: None,
            trace: None,
        },
        routing_key,
        dedup_key,
    })
}

fn check_trigger(obj: &Map<String, Value>, payload: &Map<String, Value>, errors: &mut Vec<String>) {
    if !obj.contains_key("payload") {
        errors.push("'payload' is missing".to_string());
        return;
    }
    match payload.get("summary") {
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= MAX_SUMMARY => {}
        Some(Value::String(s)) if !s.trim().is_empty() => errors.push(format!(
            "'payload.summary' is longer than {MAX_SUMMARY} characters"
        )),
        _ => errors.push("'payload.summary' is missing or blank".to_string()),
    }
    match payload.get("source") {
        Some(Value::String(s)) if !s.trim().is_empty() => {}
        _ => errors.push("'payload.source' is missing or blank".to_string()),
    }
    match payload.get("severity").and_then(Value::as_str) {
        Some(s) if SEVERITIES.contains(&s) => {}
        _ => errors.push(format!(
            "'payload.severity' must be one of {}",
            SEVERITIES.join(", ")
        )),
    }
}
