//! Prometheus Alertmanager's webhook (version 4): every alert of a group is its own problem.
//!
//! Identity is the alert's `fingerprint`; `firing` is OPEN and `resolved` RESOLVED. Alertmanager
//! sends the whole group again on every `group_interval` and after any non-2xx answer, so each alert
//! is deduplicated on its own JSON, not on the request: a re-sent group stores nothing new and runs
//! nothing twice, while a new alert in the same group is a new notification.

use serde_json::{Map, Value};

use std::sync::Arc;

use super::{object, required_text, text, Gate, Headers, ParseError, Plain, Source, SourcePlugin};
use super::MAX_KEY_LEN;
use crate::keys::{Issues, Section};
use crate::keys::Env;
use crate::domain::{Entity, Facts, Notification};

pub const PATHS: &[&str] = &["/hooks/alertmanager"];

pub(super) fn read(_: &Headers, body: &[u8]) -> Result<Vec<Notification>, ParseError> {
    parse(body)
}

pub(super) fn build(gate: Gate, _: &mut Section, _: &Env, _: &mut Issues) -> Arc<dyn SourcePlugin> {
    Plain::build(Source::Alertmanager, gate)
}

/// Labels that name what an alert is about, in order of preference.
const ENTITY_LABELS: &[&str] = &["instance", "hostname", "host", "node", "pod", "service"];

pub fn parse(body: &[u8]) -> Result<Vec<Notification>, ParseError> {
    let obj = object(body, "an Alertmanager webhook")?;
    match obj.get("version") {
        Some(Value::String(v)) if v == "4" => {}
        Some(other) => {
            return Err(ParseError::Invalid(format!(
                "unsupported webhook version {other}; hub reads version \"4\""
            )))
        }
        None => return Err(ParseError::Invalid("missing field version".into())),
    }
    let alerts = match obj.get("alerts") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => return Err(ParseError::Invalid("alerts is empty".into())),
        _ => return Err(ParseError::Invalid("missing list alerts".into())),
    };
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for (i, alert) in alerts.iter().enumerate() {
        let path = format!("alerts[{i}].");
        let Value::Object(a) = alert else {
            errors.push(format!("alerts[{i}] must be an object"));
            continue;
        };
        if let Some(n) = one(a, &path, body, &mut errors) {
            out.push(n);
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ParseError::Fields(errors))
    }
}

fn one(
    a: &Map<String, Value>,
    path: &str,
    body: &[u8],
    errors: &mut Vec<String>,
) -> Option<Notification> {
    let fingerprint = required_text(a, path, "fingerprint", MAX_KEY_LEN, errors);
    let state = match a.get("status").and_then(Value::as_str) {
        Some("firing") => "OPEN",
        Some("resolved") => "RESOLVED",
        _ => {
            errors.push(format!("{path}status must be \"firing\" or \"resolved\""));
            ""
        }
    };
    let empty = Map::new();
    let labels = match a.get("labels") {
        Some(Value::Object(l)) => l,
        _ => {
            errors.push(format!("{path}labels must be an object"));
            &empty
        }
    };
    let annotations = a
        .get("annotations")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    if fingerprint.is_empty() || state.is_empty() || labels.is_empty() && !errors.is_empty() {
        return None;
    }
    let title = [text(annotations, "summary"), text(labels, "alertname")]
        .into_iter()
        .find(|t| !t.is_empty())
        .unwrap_or_else(|| fingerprint.clone());
    let entities = ENTITY_LABELS
        .iter()
        .find_map(|l| {
            Some(text(labels, l))
                .filter(|v| !v.is_empty())
                .map(|v| (l, v))
        })
        .map(|(l, v)| vec![Entity::named(&v, l)])
        .unwrap_or_default();
    let tags = labels
        .iter()
        .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}:{v}")))
        .collect();
    let facts = Facts {
        title: title.clone(),
        severity: text(labels, "severity"),
        impact: String::new(),
        tags,
        url: Some(text(a, "generatorURL")).filter(|u| !u.is_empty()),
        entities,
    };
    Some(Notification {
        source: Source::Alertmanager,
        problem_key: fingerprint,
        state: state.to_string(),
        pid: None,
        title: Some(title),
        is_test: false,
        body: body.to_vec(),
        facts,
        identity: serde_json::to_vec(a).ok(),
        trace: None,
    })
}
