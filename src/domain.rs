//! The normalized notification every source produces and the store keeps.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The monitoring system a notification came from; listed where the sources are.
pub use crate::sources::Source;

/// One notification as received: who sent it, which problem and state it speaks of, and the raw
/// body byte for byte (the store keeps the bytes; the fields are what hub needs to act on them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub source: Source,
    /// The problem's identity within its source (Dynatrace: `ProblemID`).
    pub problem_key: String,
    /// The state the notification reports (Dynatrace: `OPEN`, `RESOLVED`, …).
    pub state: String,
    /// Dynatrace's internal problem id, the one its API takes.
    pub pid: Option<String>,
    pub title: Option<String>,
    /// A sender's self-test: stored and answered, never acted on.
    pub is_test: bool,
    pub body: Vec<u8>,
    /// What routes and actions need, read from the body by its source.
    pub facts: Facts,
    /// The bytes that make two deliveries "the same one" when that is not the whole body: one alert
    /// of an Alertmanager group, CloudStack's event id, UCloud's session id, an Opsgenie request's
    /// fresh id (each request is its own). `None`: the body.
    pub identity: Option<Vec<u8>>,
    /// The `traceparent` of the span that stored it, when traces are on: its routing and runs
    /// are that trace's (see `crate::telemetry`).
    pub trace: Option<String>,
}

impl Notification {
    /// A real problem of a source with details to fetch is enriched; a sender's self-test never is.
    pub fn needs_enrichment(&self) -> bool {
        self.source.is_enriched() && !self.is_test && self.pid.is_some()
    }
}

/// The source-independent description of a problem, as far as one notification tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    pub title: String,
    pub severity: String,
    pub impact: String,
    pub tags: Vec<String>,
    pub url: Option<String>,
    pub entities: Vec<Entity>,
}

/// Something a problem affects: a host, a service, an instance.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entity {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub severity: String,
    pub impact: String,
    pub event_type: String,
}

impl Entity {
    /// An entity known only by one name (a host, an instance).
    pub fn named(name: &str, kind: &str) -> Entity {
        Entity {
            id: name.to_string(),
            name: name.to_string(),
            kind: kind.to_string(),
            ..Entity::default()
        }
    }
}

/// Keeps the first of entities that share an id (or, without one, a name); drops empty ones.
pub fn dedup_entities(entities: Vec<Entity>) -> Vec<Entity> {
    let mut seen = std::collections::HashSet::new();
    entities
        .into_iter()
        .filter(|e| !(e.id.is_empty() && e.name.is_empty()))
        .filter(|e| {
            seen.insert(if e.id.is_empty() {
                e.name.clone()
            } else {
                e.id.clone()
            })
        })
        .collect()
}

/// A JSON object, or a value that may be one, to read fields from.
pub trait Fields {
    fn field(&self, key: &str) -> Option<&Value>;
}

impl Fields for Value {
    fn field(&self, key: &str) -> Option<&Value> {
        self.get(key)
    }
}

impl Fields for Map<String, Value> {
    fn field(&self, key: &str) -> Option<&Value> {
        self.get(key)
    }
}

/// A field as text: a string as it is, a number written out, anything else (or nothing) empty.
/// Senders and the Dynatrace API write ids sometimes as strings and sometimes as numbers.
pub fn text(object: &impl Fields, key: &str) -> String {
    match object.field(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}
