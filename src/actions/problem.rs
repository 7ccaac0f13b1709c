//! The problem as actions see it: one shape for every source, from the notification and, when
//! Dynatrace answered, its details.

use serde::Serialize;
use serde_json::Value;

use crate::store::StoredNotification;

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub source: String,
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

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Entity {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub severity: String,
    pub impact: String,
    pub event_type: String,
}

impl Problem {
    pub fn from_stored(n: &StoredNotification) -> Problem {
        let notification: Value = serde_json::from_slice(&n.body).unwrap_or(Value::Null);
        let details: Option<Value> = n
            .details
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok());
        let d = details.as_ref();
        let from_details = |key: &str| d.map(|d| text(d, key)).filter(|t| !t.is_empty());
        let title = n
            .title
            .clone()
            .or_else(|| from_details("title"))
            .unwrap_or_default();
        let severity =
            from_details("severityLevel").unwrap_or_else(|| text(&notification, "ProblemSeverity"));
        let impact =
            from_details("impactLevel").unwrap_or_else(|| text(&notification, "ProblemImpact"));
        let mut entities = d.map(entities_from_details).unwrap_or_default();
        if entities.is_empty() {
            entities = entities_from_notification(&notification);
        }
        let url = Some(text(&notification, "ProblemURL")).filter(|u| !u.is_empty());
        Problem {
            source: n.source.clone(),
            problem_id: n.problem_key.clone(),
            pid: n.pid.clone(),
            state: n.state.clone(),
            title,
            severity,
            impact,
            tags: tags(&notification, d),
            url,
            entities,
            received_at_ms: n.received_at_ms,
            notification,
            details,
        }
    }

    /// A Dynatrace problem without `ProblemURL` gets its link on the tenant, as the sample built it.
    pub fn with_tenant_link(mut self, tenant: Option<&str>) -> Problem {
        if self.url.is_none() && self.source == "dynatrace" {
            if let (Some(t), Some(pid)) = (tenant, &self.pid) {
                self.url = Some(format!(
                    "{}/#problems/problemdetails;pid={pid}",
                    t.trim_end_matches('/')
                ));
            }
        }
        self
    }

    /// The problem's id as people see it (`P-2411021` for Dynatrace).
    pub fn display_id(&self) -> String {
        if self.source == "dynatrace" && !self.problem_id.starts_with("P-") {
            format!("P-{}", self.problem_id)
        } else {
            self.problem_id.clone()
        }
    }
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// v2 `impactedEntities`, else v1 `rankedImpacts`, else v1 `rankedEvents`.
fn entities_from_details(d: &Value) -> Vec<Entity> {
    if let Some(Value::Array(items)) = d.get("impactedEntities") {
        return dedup(
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
            return dedup(
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

/// Dynatrace's `{ImpactedEntities}` placeholder: `[{"type", "name", "entity"}]`.
fn entities_from_notification(n: &Value) -> Vec<Entity> {
    let Some(Value::Array(items)) = n.get("ImpactedEntities") else {
        return Vec::new();
    };
    dedup(
        items
            .iter()
            .filter(|i| i.is_object())
            .map(|i| Entity {
                id: text(i, "entity"),
                name: text(i, "name"),
                kind: text(i, "type"),
                severity: text(n, "ProblemSeverity"),
                impact: text(n, "ProblemImpact"),
                event_type: String::new(),
            })
            .collect(),
    )
}

/// One run per entity: the same entity listed twice (v1 ranks it once per event) runs once.
fn dedup(entities: Vec<Entity>) -> Vec<Entity> {
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

/// `Tags` as Dynatrace sends it (`"a, b:c"`) or as a list; plus the details' entity tags.
fn tags(n: &Value, details: Option<&Value>) -> Vec<String> {
    let mut out: Vec<String> = match n.get("Tags") {
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
    if let Some(Value::Array(items)) = details.and_then(|d| d.get("entityTags")) {
        for t in items {
            if let Some(s) = t.get("stringRepresentation").and_then(Value::as_str) {
                if !out.iter().any(|o| o == s) {
                    out.push(s.to_string());
                }
            }
        }
    }
    out
}
