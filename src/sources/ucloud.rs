//! UCloud's alarm callback. `SessionID` identifies one delivery (UCloud retries it twice when the
//! answer's RetCode is not 0); the problem is the resource's metric, so an alarm and its recovery
//! meet on one problem.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{object, required_text, text, Failure, Gate, Headers, ParseError, Receipt, Reply};
use super::{Source, SourcePlugin, MAX_KEY_LEN};
use crate::keys::{Issues, Section};
use crate::keys::Env;
use crate::domain::{Entity, Facts, Notification};

pub const PATHS: &[&str] = &["/hooks/ucloud"];

pub(super) fn read(_: &Headers, body: &[u8]) -> Result<Vec<Notification>, ParseError> {
    parse(body).map(|n| vec![n])
}

pub(super) fn build(gate: Gate, _: &mut Section, _: &Env, _: &mut Issues) -> Arc<dyn SourcePlugin> {
    Arc::new(Ucloud { gate })
}

/// UCloud reads `RetCode`: 0 only once the alarm is stored; anything else makes it retry.
#[derive(Debug)]
struct Ucloud {
    gate: Gate,
}

impl SourcePlugin for Ucloud {
    fn source(&self) -> Source {
        Source::Ucloud
    }

    fn gate(&self) -> &Gate {
        &self.gate
    }

    fn accepted(&self, body: &[u8], _: &[Receipt]) -> Reply {
        Reply {
            status: 200,
            body: json!({"SessionID": session_id(body), "RetCode": 0}),
        }
    }

    fn refused(&self, body: &[u8], failure: &Failure) -> Option<Reply> {
        Some(Reply {
            status: failure.status,
            body: json!({
                "SessionID": session_id(body),
                "RetCode": failure.status,
                "Message": failure.detail,
            }),
        })
    }
}

/// The `SessionID` of a body, for answers to bodies that could not be parsed otherwise.
pub fn session_id(body: &[u8]) -> String {
    super::json(body)
        .ok()
        .and_then(|v| {
            v.get("SessionID")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default()
}

pub fn parse(body: &[u8]) -> Result<Notification, ParseError> {
    let obj = object(body, "a UCloud alarm")?;
    let mut errors = Vec::new();
    let session = required_text(&obj, "", "SessionID", MAX_KEY_LEN, &mut errors);
    let resource = required_text(&obj, "", "ResourceId", 120, &mut errors);
    let metric = required_text(&obj, "", "MetricName", 120, &mut errors);
    let time = |key: &str, errors: &mut Vec<String>| match obj.get(key) {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64().unwrap_or(0),
        Some(_) => {
            errors.push(format!(
                "{key} must be a whole number (seconds since the epoch)"
            ));
            0
        }
    };
    let alarm = time("AlarmTime", &mut errors);
    let recovery = time("RecoveryTime", &mut errors);
    let state = if recovery > 0 {
        "RESOLVED"
    } else if alarm > 0 {
        "OPEN"
    } else {
        errors.push("one of AlarmTime and RecoveryTime must be set".to_string());
        ""
    };
    if !errors.is_empty() {
        return Err(ParseError::Fields(errors));
    }
    let content = text(&obj, "Content");
    let title = if content.is_empty() {
        format!("{metric} on {resource}")
    } else {
        content
    };
    let mut entity = Entity::named(&resource, &text(&obj, "ResourceType"));
    entity.event_type = metric.clone();
    let tags = ["Region", "ResourceType", "MetricName"]
        .iter()
        .filter_map(|k| {
            Some(text(&obj, k))
                .filter(|v| !v.is_empty())
                .map(|v| format!("{}:{v}", k.to_lowercase()))
        })
        .collect();
    Ok(Notification {
        source: Source::Ucloud,
        problem_key: format!("{resource}-{metric}"),
        state: state.to_string(),
        pid: None,
        title: Some(title.clone()),
        is_test: false,
        body: body.to_vec(),
        facts: Facts {
            title,
            severity: String::new(),
            impact: String::new(),
            tags,
            url: None,
            entities: vec![entity],
        },
        identity: Some(session.into_bytes()),
        trace: None,
    })
}
