//! OpenStack Monasca's webhook notifier: one alarm state change per request.
//!
//! `alarm_id` is the problem; ALARM is OPEN, OK is RESOLVED, UNDETERMINED is kept as it is. Entities
//! come from the metrics' `hostname` dimensions.

use serde_json::Value;

use std::sync::Arc;

use super::{object, required_text, text, Gate, Headers, ParseError, Plain, Source, SourcePlugin};
use super::MAX_KEY_LEN;
use crate::keys::{Issues, Section};
use crate::keys::Env;
use crate::domain::{dedup_entities, Entity, Facts, Notification};

/// hub's path, and the one Monasca's webhook notifier examples use.
pub const PATHS: &[&str] = &["/hooks/monasca", "/openstack/alerts"];

pub(super) fn read(_: &Headers, body: &[u8]) -> Result<Vec<Notification>, ParseError> {
    parse(body).map(|n| vec![n])
}

pub(super) fn build(gate: Gate, _: &mut Section, _: &Env, _: &mut Issues) -> Arc<dyn SourcePlugin> {
    Plain::build(Source::Monasca, gate)
}

pub fn parse(body: &[u8]) -> Result<Notification, ParseError> {
    let obj = object(body, "a Monasca alarm notification")?;
    let mut errors = Vec::new();
    let alarm_id = required_text(&obj, "", "alarm_id", MAX_KEY_LEN, &mut errors);
    let alarm_name = required_text(&obj, "", "alarm_name", 1024, &mut errors);
    let state = match obj.get("state").and_then(Value::as_str) {
        Some("ALARM") => "OPEN",
        Some("OK") => "RESOLVED",
        Some("UNDETERMINED") => "UNDETERMINED",
        _ => {
            errors.push("state must be ALARM, OK or UNDETERMINED".to_string());
            ""
        }
    };
    let metrics = match obj.get("metrics") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(m)) => m.clone(),
        Some(_) => {
            errors.push("metrics must be a list".to_string());
            Vec::new()
        }
    };
    if !errors.is_empty() {
        return Err(ParseError::Fields(errors));
    }
    let mut entities = Vec::new();
    let mut tags = Vec::new();
    for m in &metrics {
        if let Some(name) = m.get("name").and_then(Value::as_str) {
            tags.push(format!("metric:{name}"));
        }
        if let Some(Value::Object(dims)) = m.get("dimensions") {
            for (k, v) in dims {
                if let Some(v) = v.as_str() {
                    let tag = format!("{k}:{v}");
                    if !tags.contains(&tag) {
                        tags.push(tag);
                    }
                    if k == "hostname" {
                        entities.push(Entity::named(v, "host"));
                    }
                }
            }
        }
    }
    let facts = Facts {
        title: alarm_name.clone(),
        severity: text(&obj, "severity"),
        impact: String::new(),
        tags,
        url: None,
        entities: dedup_entities(entities),
    };
    Ok(Notification {
        source: Source::Monasca,
        problem_key: alarm_id,
        state: state.to_string(),
        pid: None,
        title: Some(alarm_name),
        is_test: false,
        body: body.to_vec(),
        facts,
        identity: None,
        trace: None,
    })
}
