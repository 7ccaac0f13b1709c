//! One shape for a problem from either API version, for tables and matching.
//!
//! Read leniently: unknown enum values pass through as text and missing optional fields are empty,
//! so a newer Dynatrace never breaks the feed.

use crate::domain::text;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use super::ApiVersion;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The id the API takes (v2 `problemId`, v1 `id`); Dynatrace's `{PID}` placeholder.
    pub pid: String,
    /// The id people see (`P-2411021`); Dynatrace's `{ProblemID}` is its number.
    pub display_id: String,
    pub title: String,
    pub status: String,
    pub severity: String,
    pub impact: String,
    pub start_ms: Option<i64>,
    /// `None` while the problem is open.
    pub end_ms: Option<i64>,
    pub entities: Vec<String>,
}

impl Summary {
    pub fn from_api(version: ApiVersion, v: &Value) -> Summary {
        match version {
            ApiVersion::V2 => Summary::from_v2(v),
            ApiVersion::V1 => Summary::from_v1(v),
        }
    }

    fn from_v2(v: &Value) -> Summary {
        let status = text(v, "status");
        Summary {
            pid: text(v, "problemId"),
            display_id: text(v, "displayId"),
            title: text(v, "title"),
            severity: text(v, "severityLevel"),
            impact: text(v, "impactLevel"),
            start_ms: v.get("startTime").and_then(Value::as_i64),
            end_ms: end(&status, v.get("endTime").and_then(Value::as_i64)),
            status,
            entities: names(v.get("impactedEntities"), "name"),
        }
    }

    fn from_v1(v: &Value) -> Summary {
        let status = text(v, "status");
        let mut entities = names(v.get("rankedImpacts"), "entityName");
        if entities.is_empty() {
            entities = names(v.get("rankedEvents"), "entityName");
        }
        // v1 has no title: the first event's type says what happened.
        let title = v
            .pointer("/rankedEvents/0/eventType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let display = text(v, "displayName");
        Summary {
            pid: text(v, "id"),
            display_id: if display.is_empty() || display.starts_with("P-") {
                display
            } else {
                format!("P-{display}")
            },
            title,
            severity: text(v, "severityLevel"),
            impact: text(v, "impactLevel"),
            start_ms: v.get("startTime").and_then(Value::as_i64),
            end_ms: end(&status, v.get("endTime").and_then(Value::as_i64)),
            status,
            entities,
        }
    }

    /// The number in the display id, as the `{ProblemID}` placeholder sends it.
    pub fn problem_number(&self) -> &str {
        self.display_id.trim_start_matches("P-")
    }
}

/// An open problem has no end. v1 marks that with -1 and sometimes with a far-future time.
fn end(status: &str, end_ms: Option<i64>) -> Option<i64> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(i64::MAX);
    let far_future = now_ms.saturating_add(366 * 24 * 3600 * 1000);
    match end_ms {
        _ if status == "OPEN" => None,
        Some(ms) if ms > 0 && ms < far_future => Some(ms),
        _ => None,
    }
}

fn names(list: Option<&Value>, key: &str) -> Vec<String> {
    let Some(Value::Array(items)) = list else {
        return Vec::new();
    };
    let mut out: Vec<String> = items
        .iter()
        .filter_map(|i| i.get(key).and_then(Value::as_str).map(str::to_string))
        .collect();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_both_versions_leniently() {
        let v2 = json!({
            "problemId": "-52_1606V2", "displayId": "P-2411021", "title": "Response time degradation",
            "status": "OPEN", "severityLevel": "SOMETHING_NEW", "impactLevel": "SERVICES",
            "startTime": 1_700_000_000_000_i64, "endTime": -1,
            "impactedEntities": [{"entityId": {"id": "S-1", "type": "SERVICE"}, "name": "checkout"}]
        });
        let s = Summary::from_api(ApiVersion::V2, &v2);
        assert_eq!(s.pid, "-52_1606V2");
        assert_eq!(s.problem_number(), "2411021");
        assert_eq!(s.severity, "SOMETHING_NEW");
        assert_eq!(s.end_ms, None);
        assert_eq!(s.entities, ["checkout"]);

        let v1 = json!({
            "id": "-77_1500V2", "displayName": "931", "status": "CLOSED",
            "severityLevel": "AVAILABILITY", "impactLevel": "INFRASTRUCTURE",
            "startTime": 1_700_000_000_000_i64, "endTime": 1_700_000_600_000_i64,
            "rankedEvents": [{"eventType": "CONNECTION_LOST", "entityName": "host-1"}]
        });
        let s = Summary::from_api(ApiVersion::V1, &v1);
        assert_eq!(
            (s.display_id.as_str(), s.title.as_str()),
            ("P-931", "CONNECTION_LOST")
        );
        assert_eq!(s.end_ms, Some(1_700_000_600_000));
        assert_eq!(s.entities, ["host-1"]);

        // v1's far-future end time for a problem it still lists as closed-but-open.
        let odd = json!({"id": "x", "status": "CLOSED", "endTime": 253_402_300_799_000_i64});
        assert_eq!(Summary::from_api(ApiVersion::V1, &odd).end_ms, None);
        // Nothing at all still reads.
        assert_eq!(Summary::from_api(ApiVersion::V2, &json!({})).pid, "");
    }
}
