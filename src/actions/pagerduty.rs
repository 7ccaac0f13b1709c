//! `pagerduty`: forwards a problem to PagerDuty's Events API v2, one incident per problem.
//!
//! OPEN triggers, ACKNOWLEDGED acknowledges and a closed state resolves, all under one `dedup_key`
//! per problem (kept as the problem's thread), so PagerDuty updates one incident instead of
//! opening another. The base URL is configurable: a second hub's `/v2/enqueue` answers the same.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::http::{post_json, send, traced, truncated};
use super::{Action, ActionError, ActionType, BuildContext, BuildError, Job, Outcome};
use super::{Problem, ReadContext, RunFuture, ThreadRef};
use crate::keys::{check_url, secret, Issues, Section};
use crate::secret::Secret;

pub const EVENTS_API_URL: &str = "https://events.pagerduty.com";
/// PagerDuty's limits: a summary of 1,024 characters, a dedup key of 255.
const MAX_SUMMARY: usize = 1024;
const MAX_DEDUP_KEY: usize = 255;
const ROUTING_KEY_LEN: usize = 32;

/// `type: "pagerduty"`: `routing_key` (or `routing_key_env`), optional `api_url` and
/// `timeout_secs`.
#[derive(Debug, Clone)]
pub struct PagerdutyConfig {
    pub routing_key: Secret,
    pub api_url: String,
    pub timeout_secs: u64,
}

impl ActionType for PagerdutyConfig {
    const TYPE: &'static str = "pagerduty";
    /// PagerDuty takes about 120 events a minute per routing key.
    const RATE_LIMIT_PER_MINUTE: Option<u32> = Some(120);

    fn read(s: &mut Section, ctx: &ReadContext, issues: &mut Issues) -> Option<Self> {
        let routing_key = secret(s, "routing_key", "routing_key_env", ctx.env, issues);
        if routing_key.is_empty() {
            issues.push(
                s.path_of("routing_key"),
                "missing: the service's 32-character integration key (or routing_key_env)",
            );
        } else if routing_key.expose().chars().count() != ROUTING_KEY_LEN {
            issues.push(
                s.path_of("routing_key"),
                "a PagerDuty routing key is 32 characters",
            );
        }
        let api_url = s
            .string("api_url", issues)
            .unwrap_or_else(|| EVENTS_API_URL.to_string());
        check_url(&s.path_of("api_url"), &api_url, issues);
        let timeout_secs = s.integer("timeout_secs", 1, 600, issues).unwrap_or(15);
        Some(PagerdutyConfig {
            routing_key,
            api_url,
            timeout_secs,
        })
    }

    fn build(&self, ctx: &BuildContext) -> Result<Arc<dyn Action>, BuildError> {
        Ok(Arc::new(Pagerduty {
            routing_key: self.routing_key.clone(),
            url: format!("{}/v2/enqueue", self.api_url.trim_end_matches('/')),
            timeout: Duration::from_secs(self.timeout_secs),
            http: ctx.http.clone(),
        }))
    }
}

pub struct Pagerduty {
    routing_key: Secret,
    url: String,
    timeout: Duration,
    http: reqwest::Client,
}

/// The Events API's action for a problem's state.
pub fn event_action(state: &str) -> &'static str {
    if crate::store::is_closed(state, false) {
        "resolve"
    } else if state.eq_ignore_ascii_case("ACKNOWLEDGED") {
        "acknowledge"
    } else {
        "trigger"
    }
}

/// PagerDuty's four severities, from what sources call theirs (Dynatrace's categories,
/// Alertmanager's labels, Monasca's levels, Opsgenie's priorities). Anything unknown pages as
/// `error`.
pub fn severity(problem: &Problem) -> &'static str {
    match problem.severity.to_ascii_lowercase().as_str() {
        "critical" | "availability" | "monitoring_unavailable" | "fatal" | "page" | "high" | "p1"
        | "p2" => "critical",
        "warning" | "warn" | "performance" | "resource_contention" | "custom_alert" | "medium"
        | "low" | "minor" | "p4" => "warning",
        "info" | "informational" | "ok" | "none" | "p5" => "info",
        _ => "error",
    }
}

/// One key per problem, whatever its state: the source and the problem's id (hashed when too long).
fn dedup_key(problem: &Problem) -> String {
    let key = format!("{}/{}", problem.source, problem.problem_id);
    if key.chars().count() <= MAX_DEDUP_KEY {
        key
    } else {
        format!(
            "{}/{}",
            problem.source,
            crate::secret::short_sha256(problem.problem_id.as_bytes(), 32)
        )
    }
}

impl Pagerduty {
    fn event(&self, job: &Job, routing_key: &str) -> Value {
        let p = job.problem;
        let action = event_action(&p.state);
        let key = match job.thread_ref() {
            Some(kept) => kept.to_string(),
            // Its own incident, never the real problem's.
            None if job.is_test_action() => format!("hub-test/{}", job.run_id),
            None => dedup_key(p),
        };
        if action != "trigger" {
            return json!({"routing_key": routing_key, "event_action": action, "dedup_key": key});
        }
        let tag = |name: &str| {
            p.tags
                .iter()
                .find_map(|t| t.strip_prefix(&format!("{name}:")).map(str::to_string))
        };
        let first = p.entities.first();
        let source = first
            .map(|e| e.name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| p.source.to_string());
        let summary = if p.title.trim().is_empty() {
            p.headline()
        } else {
            format!("{} ({})", p.title, p.display_id())
        };
        let mut payload = json!({
            "summary": truncated(&summary, MAX_SUMMARY),
            "source": source,
            "severity": severity(p),
            "timestamp": crate::clock::rfc3339(p.received_at_ms),
            "component": tag("component").or_else(|| first.map(|e| e.name.clone())),
            "group": tag("group").unwrap_or_else(|| p.source.to_string()),
            "class": tag("class").unwrap_or_else(|| p.severity.clone()),
            "custom_details": {
                "problem_id": p.display_id(),
                "state": p.state,
                "severity": p.severity,
                "impact": p.impact,
                "tags": p.tags,
                "entities": p.entities.iter().map(|e| &e.name).collect::<Vec<_>>(),
            },
        });
        if let Value::Object(map) = &mut payload {
            map.retain(|_, v| !v.is_null() && v != "");
        }
        let mut event = json!({
            "routing_key": routing_key,
            "event_action": "trigger",
            "dedup_key": key,
            "client": "hub",
            "payload": payload,
        });
        if let Some(url) = p
            .url
            .as_ref()
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        {
            event["client_url"] = json!(url);
            event["links"] = json!([{"href": url, "text": format!("Open in {}", p.source)}]);
        }
        event
    }

    async fn enqueue(&self, job: &Job<'_>) -> Result<Outcome, ActionError> {
        let event = self.event(job, self.routing_key.expose());
        let action = event["event_action"].as_str().unwrap_or_default().to_string();
        let sent_key = event["dedup_key"].as_str().unwrap_or_default().to_string();
        let answer = send(
            traced(
                post_json(&self.http, &self.url, &event, self.timeout),
                job.trace.as_deref(),
            ),
            "PagerDuty",
        )
        .await?;
        let body = answer.json();
        let detail = json!({"event_action": action, "dedup_key": sent_key,
                            "http_status": answer.status, "response": answer.shown()});
        if answer.is_success() {
            let key = body
                .get("dedup_key")
                .and_then(Value::as_str)
                .filter(|k| !k.is_empty())
                .unwrap_or(&sent_key)
                .to_string();
            return Ok(
                Outcome::new(format!("{action} sent to PagerDuty ({key})"), detail).with_thread(
                    Some(ThreadRef {
                        reference: key,
                        url: None,
                    }),
                ),
            );
        }
        let errors = body
            .get("errors")
            .and_then(Value::as_array)
            .map(|e| {
                e.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .filter(|e| !e.is_empty())
            .or_else(|| body.get("message").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| answer.shown());
        Err(answer.error(
            format!("PagerDuty answered {}: {errors}", answer.status),
            detail,
        ))
    }
}

impl Action for Pagerduty {
    fn keeps_thread(&self) -> bool {
        true
    }

    fn run<'a>(&'a self, job: &'a Job<'a>) -> RunFuture<'a> {
        Box::pin(self.enqueue(job))
    }

    fn explain(&self, job: &Job) -> Value {
        json!({"url": self.url, "body": self.event(job, "***")})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_map_to_event_actions() {
        assert_eq!(event_action("OPEN"), "trigger");
        assert_eq!(event_action("ACKNOWLEDGED"), "acknowledge");
        for closed in ["RESOLVED", "CLOSED", "MERGED", "OK"] {
            assert_eq!(event_action(closed), "resolve");
        }
    }
}
