//! The problem as actions see it: one shape for every source, from the notification and, when
//! Dynatrace answered, its details.

use crate::domain::text;
use crate::domain::Source;
use serde::Serialize;
use serde_json::Value;

pub use crate::domain::Entity;
use crate::domain::{dedup_entities, Notification};
use crate::store::StoredNotification;

/// What templates render, routes and silences match, and the pages list: a view made from a
/// [`Notification`] and its details, kept as a shape of its own because it carries what neither
/// holds alone. Its title, severity, impact, tags and entities merge the notification's facts with
/// what Dynatrace's details add; its body and details are parsed JSON for templates to walk; its
/// link may be made on the tenant. Templates see its field names (`problem_id`, `title`, ...).
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub source: Source,
    pub problem_id: String,
    pub pid: Option<String>,
    pub state: String,
    pub title: String,
    pub severity: String,
    pub impact: String,
    pub tags: Vec<String>,
    pub url: Option<String>,
    pub entities: Vec<Entity>,
    pub received_at_ms: i64,
    /// The notification as received.
    pub notification: Value,
    /// The Problems API's answer, when there is one.
    pub details: Option<Value>,
}

impl Problem {
    /// A stored notification's problem, with what its details add.
    pub fn from_stored(n: &StoredNotification) -> Problem {
        Problem::of(&n.notification, n.received_at_ms, n.details.as_deref())
    }

    /// The problem as actions see `n` when it arrives, before any details are fetched: what
    /// ingest matches heartbeats with, `hub explain` routes and `hub test-action` sends.
    pub fn arriving(n: &Notification, tenant: Option<&str>) -> Problem {
        Problem::of(n, crate::clock::now_ms(), None).with_tenant_link(tenant)
    }

    /// The notification's facts, with what Dynatrace's details (JSON) add: their entities, levels
    /// and tags.
    fn of(n: &Notification, received_at_ms: i64, details: Option<&str>) -> Problem {
        let notification: Value = serde_json::from_slice(&n.body).unwrap_or(Value::Null);
        let facts = &n.facts;
        let details: Option<Value> = details.and_then(|d| serde_json::from_str(d).ok());
        let d = details.as_ref();
        let from_details = |key: &str| d.map(|d| text(d, key)).filter(|t| !t.is_empty());
        let title = n
            .title
            .clone()
            .filter(|t| !t.is_empty())
            .or_else(|| from_details("title"))
            .unwrap_or_else(|| facts.title.clone());
        let mut entities = d.map(entities_from_details).unwrap_or_default();
        if entities.is_empty() {
            entities = facts.entities.clone();
        }
        let mut tags = facts.tags.clone();
        for t in d.map(detail_tags).unwrap_or_default() {
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        Problem {
            source: n.source,
            problem_id: n.problem_key.clone(),
            pid: n.pid.clone(),
            state: n.state.clone(),
            title,
            severity: from_details("severityLevel").unwrap_or_else(|| facts.severity.clone()),
            impact: from_details("impactLevel").unwrap_or_else(|| facts.impact.clone()),
            tags,
            url: facts.url.clone(),
            entities,
            received_at_ms,
            notification,
            details,
        }
    }

    /// A problem with every field filled (two entities, tags, a link), to render a template with
    /// when the configuration is checked, before any real problem exists.
    pub fn sample() -> Problem {
        let entity = |id: &str, name: &str| Entity {
            id: id.to_string(),
            name: name.to_string(),
            kind: "HOST".to_string(),
            severity: "AVAILABILITY".to_string(),
            impact: "INFRASTRUCTURE".to_string(),
            event_type: "HOST_UNAVAILABLE".to_string(),
        };
        Problem {
            source: Source::Dynatrace,
            problem_id: "P-TEST".to_string(),
            pid: Some("hub-sample".to_string()),
            state: "OPEN".to_string(),
            title: "a sample problem".to_string(),
            severity: "AVAILABILITY".to_string(),
            impact: "INFRASTRUCTURE".to_string(),
            tags: vec!["hub:sample".to_string(), "env:test".to_string()],
            url: Some("https://tenant.example/#problems/problemdetails;pid=hub-sample".to_string()),
            entities: vec![
                entity("HOST-0000000000000001", "sample-host-01"),
                entity("HOST-0000000000000002", "sample-host-02"),
            ],
            received_at_ms: 0,
            notification: serde_json::json!({"ProblemID": "P-TEST", "State": "OPEN"}),
            details: None,
        }
    }

    /// A Dynatrace problem without `ProblemURL` gets its link on the tenant, as the sample built it.
    pub fn with_tenant_link(mut self, tenant: Option<&str>) -> Problem {
        if self.url.is_none() && self.source == Source::Dynatrace {
            if let (Some(t), Some(pid)) = (tenant, &self.pid) {
                self.url = Some(format!(
                    "{}/#problems/problemdetails;pid={pid}",
                    t.trim_end_matches('/')
                ));
            }
        }
        self
    }

    /// A line naming the problem: its title, or its source and id when it came without one.
    pub fn headline(&self) -> String {
        if self.title.trim().is_empty() {
            format!("{} problem {}", self.source, self.display_id())
        } else {
            self.title.clone()
        }
    }

    /// The problem's id as people see it (`P-2411021` for Dynatrace).
    pub fn display_id(&self) -> String {
        if self.source == Source::Dynatrace && !self.problem_id.starts_with("P-") {
            format!("P-{}", self.problem_id)
        } else {
            self.problem_id.clone()
        }
    }
}

/// v2 `impactedEntities`, else v1 `rankedImpacts`, else v1 `rankedEvents`.
fn entities_from_details(d: &Value) -> Vec<Entity> {
    if let Some(Value::Array(items)) = d.get("impactedEntities") {
        return dedup_entities(
            items
                .iter()
                .map(|i| Entity {
                    id: i
                        .pointer("/entityId/id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    kind: i
                        .pointer("/entityId/type")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    name: text(i, "name"),
                    severity: text(d, "severityLevel"),
                    impact: text(d, "impactLevel"),
                    event_type: String::new(),
                })
                .collect(),
        );
    }
    for key in ["rankedImpacts", "rankedEvents"] {
        if let Some(Value::Array(items)) = d.get(key) {
            if items.is_empty() {
                continue;
            }
            return dedup_entities(
                items
                    .iter()
                    .map(|i| Entity {
                        id: text(i, "entityId"),
                        name: text(i, "entityName"),
                        kind: String::new(),
                        severity: text(i, "severityLevel"),
                        impact: text(i, "impactLevel"),
                        event_type: text(i, "eventType"),
                    })
                    .collect(),
            );
        }
    }
    Vec::new()
}

/// The details' entity tags (v2 `entityTags[].stringRepresentation`).
fn detail_tags(d: &Value) -> Vec<String> {
    let Some(Value::Array(items)) = d.get("entityTags") else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|t| t.get("stringRepresentation").and_then(Value::as_str))
        .map(str::to_string)
        .collect()
}

impl crate::matcher::Matchable for Problem {
    fn source_name(&self) -> &str {
        self.source.as_str()
    }

    fn ids(&self) -> Vec<String> {
        vec![self.problem_id.clone(), self.display_id()]
    }

    fn state(&self) -> &str {
        &self.state
    }

    fn severity(&self) -> &str {
        &self.severity
    }

    fn title(&self) -> &str {
        &self.title
    }

    fn tags(&self) -> &[String] {
        &self.tags
    }

    fn entities(&self) -> &[Entity] {
        &self.entities
    }
}
