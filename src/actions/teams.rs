//! `teams`: an Adaptive Card in a Microsoft Teams channel per state, through an incoming webhook or
//! a Workflows URL.
//!
//! Teams gives nothing back to update, so each state is a card of its own; the first card's run
//! is kept as the problem's thread and a later card names it ("resolves the card of …").

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::http::{post_json, send, traced, truncated};
use super::{Action, ActionError, ActionType, BuildContext, BuildError, Job, Outcome};
use super::{Problem, ReadContext, RunFuture, ThreadRef};
use crate::keys::{check_secret_url, Issues, Section};
use crate::secret::Secret;

const MAX_TEXT: usize = 2000;

/// `type: "teams"`: `webhook_url` (or `webhook_url_env`), optional `timeout_secs`.
#[derive(Debug, Clone)]
pub struct TeamsConfig {
    pub url: Secret,
    pub timeout_secs: u64,
}

impl ActionType for TeamsConfig {
    const TYPE: &'static str = "teams";
    /// Teams' connectors take a few requests a second per webhook; one a second stays clear.
    const RATE_LIMIT_PER_MINUTE: Option<u32> = Some(60);

    fn read(s: &mut Section, ctx: &ReadContext, issues: &mut Issues) -> Option<Self> {
        let url = crate::keys::secret(s, "webhook_url", "webhook_url_env", ctx.env, issues);
        if url.is_empty() {
            issues.push(
                s.path_of("webhook_url"),
                "missing: the channel's incoming webhook or Workflows URL (or webhook_url_env)",
            );
        } else {
            check_secret_url(&s.path_of("webhook_url"), url.expose(), issues);
        }
        let timeout_secs = s.integer("timeout_secs", 1, 600, issues).unwrap_or(15);
        Some(TeamsConfig { url, timeout_secs })
    }

    fn build(&self, ctx: &BuildContext) -> Result<Arc<dyn Action>, BuildError> {
        Ok(Arc::new(Teams {
            url: self.url.clone(),
            timeout: Duration::from_secs(self.timeout_secs),
            http: ctx.http.clone(),
        }))
    }
}

pub struct Teams {
    url: Secret,
    timeout: Duration,
    http: reqwest::Client,
}

/// Teams renders a subset of Markdown in card text; a backslash before each of its characters
/// keeps a hostile name from becoming a link or emphasis.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '*' | '_' | '[' | ']' | '(' | ')' | '#' | '`' | '~' | '>' | '<' | '|' | '!') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The message Teams takes: one Adaptive Card (schema 1.4, which both webhooks and Workflows show).
pub fn card(p: &Problem, opened: Option<&str>) -> Value {
    let fact = |title: &str, value: &str| json!({"title": title, "value": escape(if value.is_empty() { "-" } else { value })});
    let entities: Vec<&str> = p
        .entities
        .iter()
        .map(|e| if e.name.is_empty() { e.id.as_str() } else { e.name.as_str() })
        .collect();
    let mut body = vec![
        json!({"type": "TextBlock", "size": "Large", "weight": "Bolder", "wrap": true,
               "color": if crate::store::is_closed(&p.state, false) { "Good" } else { "Attention" },
               "text": truncated(&escape(&format!("{}: {}", p.state, p.headline())), MAX_TEXT)}),
        json!({"type": "FactSet", "facts": [
            fact("Problem", &format!("{} {}", p.source, p.display_id())),
            fact("State", &p.state),
            fact("Severity", &p.severity),
            fact("Impact", &p.impact),
            fact("Entities", &truncated(&entities.join(", "), MAX_TEXT)),
            fact("Tags", &truncated(&p.tags.join(", "), MAX_TEXT)),
        ]}),
    ];
    if let Some(first) = opened {
        body.push(json!({"type": "TextBlock", "wrap": true, "isSubtle": true,
            // The reference is hub's own (a run id and a time), not a value from the problem.
            "text": format!("Follows the card hub posted for this problem first ({first}).")}));
    }
    let mut content = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    });
    if let Some(url) = p.url.as_deref().filter(|u| u.starts_with("https://") || u.starts_with("http://")) {
        content["actions"] = json!([{"type": "Action.OpenUrl", "title": "Open problem", "url": url}]);
    }
    json!({"type": "message", "attachments": [{
        "contentType": "application/vnd.microsoft.card.adaptive",
        "contentUrl": null,
        "content": content,
    }]})
}

impl Teams {
    fn message(&self, job: &Job) -> Value {
        card(job.problem, job.thread_ref())
    }

    async fn post(&self, job: &Job<'_>) -> Result<Outcome, ActionError> {
        let request = post_json(&self.http, self.url.expose(), &self.message(job), self.timeout);
        let answer = send(
            traced(request, job.trace.as_deref()),
            "Teams",
        )
        .await?;
        let detail = json!({"http_status": answer.status, "response": answer.shown()});
        // Connectors answer 200 with the error in the text when Teams throttled the post.
        if answer.is_success() && !answer.text.contains("HTTP error 429") {
            // The first card is the thread; later ones keep naming it.
            let thread = job.thread.clone().unwrap_or_else(|| ThreadRef {
                reference: format!(
                    "{} of {}",
                    job.run_id,
                    crate::clock::utc(crate::clock::now_ms())
                ),
                url: None,
            });
            return Ok(
                Outcome::new(format!("card posted ({})", answer.status), detail)
                    .with_thread(Some(thread)),
            );
        }
        if answer.is_success() {
            return Err(ActionError::Transient {
                message: "Teams throttled the post (HTTP error 429 in its answer)".into(),
                detail,
                retry_after: None,
            });
        }
        Err(answer.error(format!("Teams answered {}: {}", answer.status, answer.shown()), detail))
    }
}

impl Action for Teams {
    fn keeps_thread(&self) -> bool {
        true
    }

    fn run<'a>(&'a self, job: &'a Job<'a>) -> RunFuture<'a> {
        Box::pin(self.post(job))
    }

    fn explain(&self, job: &Job) -> Value {
        json!({"url": super::redact_secret_url(self.url.expose()), "body": self.message(job)})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_in_values_is_escaped() {
        assert_eq!(escape("[x](https://evil) **b**"), r"\[x\]\(https://evil\) \*\*b\*\*");
    }
}
