//! Dynatrace custom-integration notifications.
//!
//! The payload is whatever JSON the operator wrote in Dynatrace's custom-integration template, with
//! placeholders filled in. hub needs `State`, `ProblemID` and `PID`; everything else is kept as
//! received. Placeholders like `{ProblemID}` are often written without quotes, so the two ids are
//! taken as strings or whole numbers.

use serde_json::{Map, Value};

use std::sync::Arc;

use super::{Gate, Headers, ParseError, Receipt, Reply, Source, SourcePlugin};
use crate::keys::{Issues, Section};
use crate::keys::Env;
use crate::domain::{dedup_entities, Entity, Facts, Notification};

/// The sample's path (Dynatrace custom integrations already point here) and hub's own.
pub const PATHS: &[&str] = &["/", "/hooks/dynatrace"];

pub(super) fn read(_: &Headers, body: &[u8]) -> Result<Vec<Notification>, ParseError> {
    parse(body).map(|n| vec![n])
}

/// Dynatrace is always on and has no entry of its own: its gate is the sample's
/// `webhook.username` and `webhook.password`.
pub(super) fn build(gate: Gate, _: &mut Section, _: &Env, _: &mut Issues) -> Arc<dyn SourcePlugin> {
    Arc::new(Dynatrace { gate })
}

#[derive(Debug)]
struct Dynatrace {
    gate: Gate,
}

impl SourcePlugin for Dynatrace {
    fn source(&self) -> Source {
        Source::Dynatrace
    }

    fn gate(&self) -> &Gate {
        &self.gate
    }

    /// The sample answered one notification with its outcome; hub adds the file it was kept in.
    fn accepted(&self, _: &[u8], receipts: &[Receipt]) -> Reply {
        match receipts {
            [one] => Reply {
                status: 200,
                body: serde_json::json!({ "status": one.outcome, "file": one.file }),
            },
            _ => Reply::counts(receipts),
        }
    }
}

/// The title Dynatrace uses for "Send test notification".
pub const TEST_TITLE: &str = "Dynatrace problem notification test run";
/// The ProblemID Dynatrace uses for "Send test notification".
pub const TEST_PROBLEM_ID: &str = "999";

/// Longest ProblemID and State accepted, so every file name stays within file-system limits.
const MAX_ID_LEN: usize = 128;
const MAX_STATE_LEN: usize = 40;

pub fn parse(body: &[u8]) -> Result<Notification, ParseError> {
    let value = super::json(body)?;
    let Value::Object(obj) = value else {
        return Err(ParseError::Invalid(
            "expected a JSON object with State, ProblemID and PID".into(),
        ));
    };

    let state = text_field(&obj, "State", false, MAX_STATE_LEN)?;
    let problem_key = text_field(&obj, "ProblemID", true, MAX_ID_LEN)?;
    let pid = text_field(&obj, "PID", true, MAX_ID_LEN)?;
    let title = obj
        .get("ProblemTitle")
        .and_then(Value::as_str)
        .map(str::to_string);
    // Exact matches only: a real problem whose id merely contains 999 is not a test.
    let is_test = problem_key == TEST_PROBLEM_ID || title.as_deref() == Some(TEST_TITLE);

    let facts = facts(&Value::Object(obj));
    Ok(Notification {
        source: Source::Dynatrace,
        problem_key,
        state,
        pid: Some(pid),
        title,
        is_test,
        body: body.to_vec(),
        facts,
        identity: None,
        trace: None,
    })
}

/// What a custom-integration payload says beyond its ids: the placeholders `{ProblemTitle}`,
/// `{ProblemSeverity}`, `{ProblemImpact}`, `{Tags}`, `{ProblemURL}`, `{ImpactedEntities}`.
pub fn facts(n: &Value) -> Facts {
    let text = |key: &str| match n.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(v)) => v.to_string(),
        _ => String::new(),
    };
    let tags = match n.get("Tags") {
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    };
    let entities = match n.get("ImpactedEntities") {
        Some(Value::Array(items)) => dedup_entities(
            items
                .iter()
                .filter(|i| i.is_object())
                .map(|i| {
                    let field = |k: &str| i.get(k).and_then(Value::as_str).unwrap_or_default();
                    Entity {
                        id: field("entity").to_string(),
                        name: field("name").to_string(),
                        kind: field("type").to_string(),
                        severity: text("ProblemSeverity"),
                        impact: text("ProblemImpact"),
                        event_type: String::new(),
                    }
                })
                .collect(),
        ),
        _ => Vec::new(),
    };
    Facts {
        title: text("ProblemTitle"),
        severity: text("ProblemSeverity"),
        impact: text("ProblemImpact"),
        tags,
        url: Some(text("ProblemURL")).filter(|u| !u.is_empty()),
        entities,
    }
}

fn text_field(
    obj: &Map<String, Value>,
    key: &str,
    number_ok: bool,
    max_len: usize,
) -> Result<String, ParseError> {
    let text = match obj.get(key) {
        None | Some(Value::Null) => {
            return Err(ParseError::Invalid(format!("missing field {key}")));
        }
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if number_ok && (n.is_i64() || n.is_u64()) => n.to_string(),
        Some(_) if number_ok => {
            return Err(ParseError::Invalid(format!(
                "field {key} must be a string or a whole number"
            )));
        }
        Some(_) => {
            return Err(ParseError::Invalid(format!("field {key} must be a string")));
        }
    };
    if text.trim().is_empty() {
        return Err(ParseError::Invalid(format!(
            "field {key} must not be empty"
        )));
    }
    if text.chars().count() > max_len {
        return Err(ParseError::Invalid(format!(
            "field {key} is longer than {max_len} characters"
        )));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/dynatrace/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn parses_the_documented_payloads() {
        let n = parse(&fixture("full-open.json")).unwrap();
        assert_eq!(n.problem_key, "P-2411021");
        assert_eq!(n.state, "OPEN");
        assert_eq!(
            n.pid.as_deref(),
            Some("-5289617462338813532_1606920000000V2")
        );
        assert_eq!(n.title.as_deref(), Some("Response time degradation"));
        assert!(!n.is_test);
        assert_eq!(n.body, fixture("full-open.json"));

        let r = parse(&fixture("minimal-resolved.json")).unwrap();
        assert_eq!(
            (r.problem_key.as_str(), r.state.as_str()),
            ("85", "RESOLVED")
        );
    }

    #[test]
    fn test_notification_is_recognised_exactly() {
        assert!(parse(&fixture("test-notification.json")).unwrap().is_test);
        let by_title =
            br#"{"State":"OPEN","ProblemID":"12","PID":"1","ProblemTitle":"Dynatrace problem notification test run"}"#;
        assert!(parse(by_title).unwrap().is_test);
        for id in ["1999", "9990", "P-999"] {
            let body = format!(r#"{{"State":"OPEN","ProblemID":"{id}","PID":"1"}}"#);
            assert!(
                !parse(body.as_bytes()).unwrap().is_test,
                "{id} is not a test"
            );
        }
    }

    #[test]
    fn unquoted_numeric_ids_are_accepted() {
        let n = parse(br#"{"State":"OPEN","ProblemID":1234,"PID":-77}"#).unwrap();
        assert_eq!(n.problem_key, "1234");
        assert_eq!(n.pid.as_deref(), Some("-77"));
    }

    #[test]
    fn rejects_what_is_not_a_notification() {
        let not_json = [&b"not json"[..], b"", b"{\"State\":", b"\xff\xfe"];
        for body in not_json {
            assert!(
                matches!(parse(body), Err(ParseError::NotJson(_))),
                "{body:?}"
            );
        }
        let invalid = [
            r#"[]"#,
            r#""OPEN""#,
            r#"{"ProblemID":"1","PID":"1"}"#,
            r#"{"State":"OPEN","PID":"1"}"#,
            r#"{"State":"OPEN","ProblemID":"1"}"#,
            r#"{"State":1,"ProblemID":"1","PID":"1"}"#,
            r#"{"State":"OPEN","ProblemID":{"a":1},"PID":"1"}"#,
            r#"{"State":"OPEN","ProblemID":1.5,"PID":"1"}"#,
            r#"{"State":"OPEN","ProblemID":true,"PID":"1"}"#,
            r#"{"State":"OPEN","ProblemID":"","PID":"1"}"#,
            r#"{"State":"  ","ProblemID":"1","PID":"1"}"#,
            r#"{"State":"OPEN","ProblemID":null,"PID":"1"}"#,
        ];
        for body in invalid {
            assert!(
                matches!(parse(body.as_bytes()), Err(ParseError::Invalid(_))),
                "{body}"
            );
        }
        let long = format!(
            r#"{{"State":"OPEN","ProblemID":"{}","PID":"1"}}"#,
            "9".repeat(129)
        );
        assert!(matches!(
            parse(long.as_bytes()),
            Err(ParseError::Invalid(_))
        ));
    }
}
