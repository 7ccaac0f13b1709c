//! hub's own problems: a heartbeat that went silent, an action whose runs fail. hub stores them
//! itself (see `own.rs`), never from a request: the source has no path. They are shown,
//! routed and kept like any other problem.

use std::sync::Arc;

use serde_json::Value;

use super::{object, required_text, text, Gate, Headers, ParseError, Plain, SourcePlugin};
use super::MAX_KEY_LEN;
use crate::keys::{Issues, Section};
use crate::keys::Env;
use crate::domain::{Facts, Notification};

pub const PATHS: &[&str] = &[];

pub(super) fn read(_: &Headers, body: &[u8]) -> Result<Vec<Notification>, ParseError> {
    let obj = object(body, "one of hub's own notifications")?;
    let mut errors = Vec::new();
    let problem_key = required_text(&obj, "", "problem_id", MAX_KEY_LEN, &mut errors);
    let state = required_text(&obj, "", "state", 64, &mut errors);
    if !errors.is_empty() {
        return Err(ParseError::Fields(errors));
    }
    let title = text(&obj, "title");
    let tags = match obj.get("kind").and_then(Value::as_str) {
        Some(kind) => vec![format!("hub:{kind}")],
        None => Vec::new(),
    };
    Ok(vec![Notification {
        source: super::Source::Hub,
        problem_key,
        state,
        pid: None,
        title: Some(title.clone()).filter(|t| !t.is_empty()),
        is_test: false,
        body: body.to_vec(),
        facts: Facts {
            title,
            severity: text(&obj, "severity"),
            impact: String::new(),
            tags,
            url: None,
            entities: Vec::new(),
        },
        identity: None,
        trace: None,
    }])
}

pub(super) fn build(gate: Gate, _: &mut Section, _: &Env, _: &mut Issues) -> Arc<dyn SourcePlugin> {
    Plain::build(super::Source::Hub, gate)
}
