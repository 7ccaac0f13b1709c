//! One module per monitoring system: pure functions from request bytes to notifications, no I/O.

pub mod alertmanager;
pub mod cloudstack;
pub mod dynatrace;
pub mod monasca;
pub mod pagerduty;
pub mod ucloud;

use serde_json::{Map, Value};

pub(crate) use crate::domain::text;
use crate::domain::{Notification, Source};

/// Why a body was refused; the web layer maps each kind to its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON at all (400).
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    /// JSON, but not the shape this source sends (422).
    #[error("{0}")]
    Invalid(String),
    /// JSON of the right shape with these fields wrong (422; PagerDuty's own answer lists them).
    #[error("{}", .0.join("; "))]
    Fields(Vec<String>),
}

/// Request headers, looked up without regard to case.
#[derive(Debug, Clone, Default)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a body as the named source sends it. One request may carry several problems (an
/// Alertmanager group); each becomes its own notification.
pub fn parse(
    source: Source,
    headers: &Headers,
    body: &[u8],
) -> Result<Vec<Notification>, ParseError> {
    match source {
        Source::Dynatrace => dynatrace::parse(body).map(|n| vec![n]),
        Source::Alertmanager => alertmanager::parse(body),
        Source::Pagerduty => pagerduty::parse(body).map(|e| vec![e.notification]),
        Source::Monasca => monasca::parse(body).map(|n| vec![n]),
        Source::Cloudstack => cloudstack::parse(headers, body).map(|n| vec![n]),
        Source::Ucloud => ucloud::parse(body).map(|n| vec![n]),
    }
}

/// Most JSON values one body may hold, and most objects among them. A parsed value takes many
/// times its bytes (an object about 600 bytes, an empty array 32), so without a bound a 64 MiB body
/// of small arrays or objects took gigabytes. The largest real payloads (an Alertmanager group of a
/// thousand alerts) hold a few tens of thousands of values.
pub const MAX_JSON_VALUES: usize = 1_000_000;
pub const MAX_JSON_OBJECTS: usize = 100_000;

/// Parses a body as JSON after checking, in one pass over the bytes, that it holds no more values
/// and objects than the bounds above: what parsing can take is bounded before it starts.
pub(crate) fn json(body: &[u8]) -> Result<Value, ParseError> {
    let (mut values, mut objects) = (1usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b',' => values += 1,
            b'{' => {
                values += 1;
                objects += 1;
            }
            _ => {}
        }
    }
    if values > MAX_JSON_VALUES || objects > MAX_JSON_OBJECTS {
        return Err(ParseError::Invalid(format!(
            "the body holds more JSON values than hub accepts ({MAX_JSON_VALUES} values, \
             {MAX_JSON_OBJECTS} objects at most)"
        )));
    }
    serde_json::from_slice(body).map_err(|e| ParseError::NotJson(e.to_string()))
}

/// The body as a JSON object, or why not.
pub(crate) fn object(body: &[u8], what: &str) -> Result<Map<String, Value>, ParseError> {
    match json(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ParseError::Invalid(format!(
            "expected a JSON object ({what})"
        ))),
        Err(e) => Err(e),
    }
}

/// Longest problem id and state accepted from any source, so every file name stays within limits.
pub(crate) const MAX_KEY_LEN: usize = 255;

/// A required string field that is present, non-empty and not too long; else a message for it.
pub(crate) fn required_text(
    obj: &Map<String, Value>,
    path: &str,
    key: &str,
    max: usize,
    errors: &mut Vec<String>,
) -> String {
    match obj.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= max => s.clone(),
        Some(Value::String(s)) if !s.trim().is_empty() => {
            errors.push(format!("{path}{key} is longer than {max} characters"));
            String::new()
        }
        Some(Value::String(_)) | None | Some(Value::Null) => {
            errors.push(format!("{path}{key} is missing or blank"));
            String::new()
        }
        Some(_) => {
            errors.push(format!("{path}{key} must be a string"));
            String::new()
        }
    }
}

/// A short, stable id from bytes (for senders that send none).
pub(crate) fn digest_id(bytes: &[u8]) -> String {
    crate::secret::short_sha256(bytes, 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No byte string makes any parser panic: truncations, mutations and garbage of every source's
    /// real fixtures, plus random bytes.
    #[test]
    fn no_input_panics_any_parser() {
        let fixtures: &[&[u8]] = &[
            include_bytes!("../../tests/fixtures/dynatrace/full-open.json"),
            include_bytes!("../../tests/fixtures/alertmanager/webhook-firing.json"),
            include_bytes!("../../tests/fixtures/pagerduty/alertmanager-trigger.json"),
            include_bytes!("../../tests/fixtures/monasca/alarm.json"),
            include_bytes!("../../tests/fixtures/ucloud/alarm.json"),
        ];
        let headers = Headers(vec![("X-CS-Event-ID".into(), "e-1".into())]);
        let mut rng = fastrand::Rng::with_seed(7);
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for f in fixtures {
            for cut in 0..f.len() {
                inputs.push(f[..cut].to_vec());
            }
            for _ in 0..500 {
                let mut m = f.to_vec();
                for _ in 0..rng.usize(1..8) {
                    let i = rng.usize(..m.len());
                    m[i] = rng.u8(..);
                }
                inputs.push(m);
            }
        }
        for _ in 0..2000 {
            let len = rng.usize(..256);
            inputs.push((0..len).map(|_| rng.u8(..)).collect());
        }
        for input in &inputs {
            for source in Source::ALL {
                let _ = parse(*source, &headers, input);
            }
        }
    }
}
