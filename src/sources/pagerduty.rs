//! PagerDuty Events API v2, so Alertmanager's `pagerduty_configs` or any PagerDuty client can point
//! at hub. Validated as PagerDuty validates; `dedup_key` is the problem's identity, and acknowledge
//! and resolve apply to the problem with that key.

use serde_json::{Map, Value};

use super::{digest_id, object, text, ParseError};
use crate::domain::{Entity, Facts, Notification, Source};

pub const SEVERITIES: &[&str] = &["critical", "error", "warning", "info"];
const MAX_SUMMARY: usize = 1024;
const MAX_DEDUP_KEY: usize = 255;
const ROUTING_KEY_LEN: usize = 32;

/// One event, with what the web layer checks and answers.
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
