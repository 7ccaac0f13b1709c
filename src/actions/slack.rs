//! `slack`: one message per problem in a channel, updated as the problem changes, with each later
//! state also replied in its thread.
//!
//! With a bot token (Slack's Web API) the first run posts `chat.postMessage` and keeps the
//! message's channel and `ts` as the problem's thread; later runs `chat.update` that message and
//! reply under it (`thread_ts`). With an incoming webhook (`webhook_url`) Slack gives nothing back
//! to update, so each state is a new message. Every value from the problem is escaped: a hostile
//! entity name is text, never a link or a mention.
//!
//! An open problem's message carries an Acknowledge button (`action_id` `hub_ack`) when the action
//! has `ack_button: true`, and on every escalation run: Slack posts its clicks to
//! `/slack/interactions` (see `web::inbound`), which stops the problem's escalation.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::http::{post_json, send, traced, truncated, Answer};
use super::{Action, ActionError, ActionType, BuildContext, BuildError, Job, Outcome};
use super::{Problem, ReadContext, RunFuture, ThreadRef};
use crate::escalate::inbound;
use crate::keys::{check_secret_url, check_template, check_url, secret};
use crate::keys::{Issues, Section};
use crate::secret::Secret;
use crate::template::Template;

pub const SLACK_API_URL: &str = "https://slack.com/api";
/// Slack's limits: a section's text 3,000 characters, a header's 150.
const MAX_SECTION: usize = 3000;
const MAX_HEADER: usize = 150;

/// `type: "slack"`: `token` (or `token_env`) and `channel`, or `webhook_url`; optional `api_url`,
/// `template` (the message's text), `timeout_secs` and `ack_button`.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    pub mode: Mode,
    pub template: Option<String>,
    pub timeout_secs: u64,
    /// `"to": "person"` (see [`super::TO_PERSON`]).
    pub to_person: bool,
    /// Whether an open problem's message carries the Acknowledge button (an escalation run's
    /// always does).
    pub ack_button: bool,
}

#[derive(Debug, Clone)]
pub enum Mode {
    Api {
        token: Secret,
        channel: String,
        api_url: String,
    },
    Webhook {
        url: Secret,
    },
}

impl ActionType for SlackConfig {
    const TYPE: &'static str = "slack";
    /// Slack allows about one message a second per channel.
    const RATE_LIMIT_PER_MINUTE: Option<u32> = Some(60);

    fn read(s: &mut Section, ctx: &ReadContext, issues: &mut Issues) -> Option<Self> {
        let token = secret(s, "token", "token_env", ctx.env, issues);
        let webhook_url = Some(secret(s, "webhook_url", "webhook_url_env", ctx.env, issues))
            .filter(|u| !u.is_empty())
            .map(|u| u.expose().to_string());
        let channel = s.string("channel", issues).unwrap_or_default();
        // `"to": "person"`: a direct message to whoever an escalation step notifies.
        let to_person = match s.string("to", issues) {
            None => false,
            Some(t) if t == super::TO_PERSON => true,
            Some(t) => {
                issues.push(
                    s.path_of("to"),
                    format!("{t:?}: to is \"person\" (a direct message to whoever an escalation step notifies) or absent (the channel)"),
                );
                false
            }
        };
        let api_url = s
            .string("api_url", issues)
            .unwrap_or_else(|| SLACK_API_URL.to_string());
        check_url(&s.path_of("api_url"), &api_url, issues);
        let mode = match (webhook_url, token.is_empty()) {
            (Some(url), true) => {
                check_secret_url(&s.path_of("webhook_url"), &url, issues);
                Mode::Webhook {
                    url: Secret::new(url),
                }
            }
            (Some(_), false) => {
                issues.push(
                    s.path_of("webhook_url"),
                    "give either token and channel (messages updated per state) or webhook_url \
                     (a new message per state), not both",
                );
                return None;
            }
            (None, true) => {
                issues.push(
                    s.path_of("token"),
                    "missing: a bot token (xoxb-…, or token_env) with channel, or webhook_url",
                );
                return None;
            }
            (None, false) => {
                if channel.trim().is_empty() && !to_person {
                    issues.push(
                        s.path_of("channel"),
                        "missing: the channel's id (C…) or name to post in",
                    );
                }
                Mode::Api {
                    token,
                    channel,
                    api_url: api_url.trim_end_matches('/').to_string(),
                }
            }
        };
        let template = s.string("template", issues);
        if let Some(t) = &template {
            check_template(&s.path_of("template"), t, issues);
        }
        let timeout_secs = s.integer("timeout_secs", 1, 600, issues).unwrap_or(15);
        if to_person && matches!(mode, Mode::Webhook { .. }) {
            issues.push(
                s.path_of("to"),
                "a direct message needs a bot token (token), not webhook_url",
            );
        }
        let ack_button = s.bool("ack_button", issues).unwrap_or(false);
        Some(SlackConfig {
            mode,
            template,
            timeout_secs,
            to_person,
            ack_button,
        })
    }

    fn build(&self, ctx: &BuildContext) -> Result<Arc<dyn Action>, BuildError> {
        Ok(Arc::new(Slack {
            to_person: self.to_person,
            mode: self.mode.clone(),
            template: self.template.as_deref().map(Template::new).transpose()?,
            timeout: Duration::from_secs(self.timeout_secs),
            ack_button: self.ack_button,
            http: ctx.http.clone(),
        }))
    }
}

pub struct Slack {
    /// Messages whoever an escalation step notifies, not the channel.
    to_person: bool,
    mode: Mode,
    template: Option<Template>,
    timeout: Duration,
    ack_button: bool,
    http: reqwest::Client,
}

/// Slack's escaping for text it formats: `&`, `<` and `>` are its only control characters, so
/// with them escaped no value can become a link, a mention or a channel-wide ping.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The message's fallback text (notifications, screen readers): one line, escaped.
fn default_text(p: &Problem) -> String {
    escape(&format!("[{}] {} ({})", p.state, p.headline(), p.display_id()))
}

/// Block Kit: a header, the facts, the entities, and a button to the problem; with `ack`, an
/// open problem's Acknowledge button too.
pub fn blocks(p: &Problem, ack: bool) -> Value {
    let field = |name: &str, value: &str| {
        json!({"type": "mrkdwn", "text": format!("*{name}*\n{}", escape(if value.is_empty() { "-" } else { value }))})
    };
    let entities: Vec<String> = p
        .entities
        .iter()
        .map(|e| if e.name.is_empty() { e.id.clone() } else { e.name.clone() })
        .collect();
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text",
               "text": truncated(&format!("{}: {}", p.state, p.headline()), MAX_HEADER)}}),
        json!({"type": "section", "fields": [
            field("State", &p.state),
            field("Severity", &p.severity),
            field("Impact", &p.impact),
            field("Problem", &format!("{} {}", p.source, p.display_id())),
        ]}),
    ];
    if !entities.is_empty() {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": truncated(&format!("*Entities*\n{}", escape(&entities.join(", "))), MAX_SECTION)}}));
    }
    if !p.tags.is_empty() {
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn",
            "text": truncated(&escape(&p.tags.join(", ")), MAX_SECTION)}]}));
    }
    let mut buttons = Vec::new();
    if ack && !crate::store::is_closed(&p.state, false) {
        buttons.push(json!({"type": "button", "action_id": inbound::SLACK_ACK_ACTION,
            "text": {"type": "plain_text", "text": "Acknowledge"}, "style": "primary",
            "value": truncated(&inbound::button_value(p.source, &p.problem_id), 2000)}));
    }
    // A button's URL is a JSON value Slack does not parse as markup, unlike a <url|text> link.
    if let Some(url) = p.url.as_deref().filter(|u| u.starts_with("https://") || u.starts_with("http://")) {
        buttons.push(json!({"type": "button",
            "text": {"type": "plain_text", "text": "Open problem"}, "url": truncated(url, 3000)}));
    }
    if !buttons.is_empty() {
        blocks.push(json!({"type": "actions", "elements": buttons}));
    }
    Value::Array(blocks)
}

/// A thread's reference: `<channel>/<ts>`.
fn split_ref(reference: &str) -> Option<(&str, &str)> {
    reference.split_once('/')
}

impl Slack {
    /// The message's blocks; an escalation run's carry the Acknowledge button whatever
    /// `ack_button` says.
    fn blocks(&self, job: &Job) -> Value {
        blocks(job.problem, self.ack_button || job.escalated.is_some())
    }

    fn text(&self, job: &Job) -> Result<String, ActionError> {
        match &self.template {
            Some(t) => t
                .render(&job.template_data())
                .map(|t| escape(&t))
                .map_err(|e| ActionError::permanent(format!("cannot render the text: {e}"))),
            None => Ok(default_text(job.problem)),
        }
    }

    /// The calls a run makes, in order: `(method, body)`.
    fn calls(&self, job: &Job, channel: &str) -> Result<Vec<(&'static str, Value)>, ActionError> {
        let text = self.text(job)?;
        let blocks = self.blocks(job);
        let Some((at, ts)) = job.thread_ref().and_then(split_ref) else {
            return Ok(vec![(
                "chat.postMessage",
                json!({"channel": channel, "text": text, "blocks": blocks}),
            )]);
        };
        let p = job.problem;
        let reply = escape(&format!("{} is now {}", p.display_id(), p.state));
        Ok(vec![
            (
                "chat.update",
                json!({"channel": at, "ts": ts, "text": text, "blocks": blocks}),
            ),
            (
                "chat.postMessage",
                json!({"channel": at, "thread_ts": ts, "text": reply}),
            ),
        ])
    }

    async fn call(&self, job: &Job<'_>, token: &Secret, api_url: &str, method: &str, body: &Value) -> Result<Value, ActionError> {
        let request = post_json(&self.http, &format!("{api_url}/{method}"), body, self.timeout);
        let answer = send(
            traced(request, job.trace.as_deref()).bearer_auth(token.expose()),
            "Slack",
        )
        .await?;
        let doc = answer.json();
        if answer.is_success() && doc.get("ok") == Some(&Value::Bool(true)) {
            return Ok(doc);
        }
        Err(slack_error(method, &answer, &doc))
    }

    async fn post_api(&self, job: &Job<'_>, token: &Secret, channel: &str, api_url: &str) -> Result<Outcome, ActionError> {
        let mut thread = job.thread.clone();
        let mut done = Vec::new();
        for (method, body) in self.calls(job, channel)? {
            let doc = self.call(job, token, api_url, method, &body).await?;
            if thread.is_none() {
                let (Some(at), Some(ts)) = (
                    doc.get("channel").and_then(Value::as_str),
                    doc.get("ts").and_then(Value::as_str),
                ) else {
                    return Err(ActionError::permanent("Slack posted but named no channel and ts"));
                };
                let url = self.permalink(token, api_url, at, ts).await;
                thread = Some(ThreadRef { reference: format!("{at}/{ts}"), url });
            }
            done.push(method);
        }
        let reference = thread.as_ref().map(|t| t.reference.clone()).unwrap_or_default();
        Ok(Outcome::new(
            format!("{} ({reference})", done.join(" + ")),
            json!({"calls": done, "thread": reference}),
        )
        .with_thread(thread))
    }

    /// The message's link for the problem page; a message without one is still posted.
    async fn permalink(&self, token: &Secret, api_url: &str, channel: &str, ts: &str) -> Option<String> {
        let response = self
            .http
            .get(format!("{api_url}/chat.getPermalink"))
            .query(&[("channel", channel), ("message_ts", ts)])
            .bearer_auth(token.expose())
            .timeout(self.timeout)
            .send()
            .await
            .ok()?;
        let doc: Value = serde_json::from_str(&response.text().await.ok()?).ok()?;
        doc.get("permalink")
            .and_then(Value::as_str)
            .filter(|u| u.starts_with("https://"))
            .map(str::to_string)
    }

    async fn post_webhook(&self, job: &Job<'_>, url: &Secret) -> Result<Outcome, ActionError> {
        let body = json!({"text": self.text(job)?, "blocks": self.blocks(job)});
        let request = post_json(&self.http, url.expose(), &body, self.timeout);
        let answer = send(traced(request, job.trace.as_deref()), "Slack").await?;
        if answer.is_success() {
            return Ok(Outcome::new(
                "posted to the incoming webhook",
                json!({"http_status": answer.status}),
            ));
        }
        let detail = json!({"http_status": answer.status, "error": answer.shown()});
        Err(answer.error(format!("Slack answered {}: {}", answer.status, answer.shown()), detail))
    }
}

/// Slack's own error codes: a few say "later", the rest need a person (a revoked token, a bot not
/// in the channel), and trying again would not help.
const TRANSIENT_ERRORS: &[&str] = &[
    "ratelimited",
    "rate_limited",
    "service_unavailable",
    "fatal_error",
    "internal_error",
    "request_timeout",
];

fn slack_error(method: &str, answer: &Answer, doc: &Value) -> ActionError {
    let code = doc
        .get("error")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("HTTP {}", answer.status));
    let detail = json!({"method": method, "http_status": answer.status, "error": code});
    let message = format!("Slack {method}: {code}");
    if TRANSIENT_ERRORS.contains(&code.as_str()) || crate::retry::transient_status(answer.status) {
        ActionError::Transient {
            message,
            detail,
            retry_after: answer.retry_after,
        }
    } else {
        ActionError::Permanent { message, detail }
    }
}

impl Action for Slack {
    fn keeps_thread(&self) -> bool {
        matches!(self.mode, Mode::Api { .. })
    }

    fn refuses(&self, _problem: &Problem) -> Option<String> {
        self.to_person.then(|| super::PERSONAL_ONLY.to_string())
    }

    fn run<'a>(&'a self, job: &'a Job<'a>) -> RunFuture<'a> {
        Box::pin(async move {
            match &self.mode {
                Mode::Api {
                    token,
                    channel,
                    api_url,
                } => {
                    let channel = if self.to_person {
                        let person = job.person()?;
                        person.slack.clone().ok_or_else(|| {
                            ActionError::permanent(format!(
                                "{} has no slack user in \"people\"",
                                person.id
                            ))
                        })?
                    } else {
                        channel.clone()
                    };
                    self.post_api(job, token, &channel, api_url).await
                }
                Mode::Webhook { url } => self.post_webhook(job, url).await,
            }
        })
    }

    fn explain(&self, job: &Job) -> Value {
        match &self.mode {
            Mode::Api {
                channel, api_url, ..
            } => {
                let calls = match self.calls(job, channel) {
                    Ok(calls) => calls
                        .into_iter()
                        .map(|(m, body)| json!({"url": format!("{api_url}/{m}"), "body": body}))
                        .collect(),
                    Err(e) => vec![json!(format!("(error: {e})"))],
                };
                json!({"auth": "Bearer ***", "calls": calls,
                       "thread": "the first run's message is updated and replied to by later states"})
            }
            Mode::Webhook { url } => json!({
                "url": super::redact_secret_url(url.expose()),
                "body": {"text": self.text(job).unwrap_or_else(|e| format!("(error: {e})")),
                         "blocks": self.blocks(job)},
                "thread": "none: an incoming webhook posts a new message per state",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_values_is_escaped() {
        assert_eq!(
            escape("<!channel> <https://evil|click> & co"),
            "&lt;!channel&gt; &lt;https://evil|click&gt; &amp; co"
        );
    }

    #[test]
    fn an_open_problem_can_carry_the_acknowledge_button() {
        let buttons = |p: &Problem, ack: bool| -> Vec<Value> {
            blocks(p, ack)
                .as_array()
                .unwrap()
                .iter()
                .filter(|b| b["type"] == "actions")
                .flat_map(|b| b["elements"].as_array().unwrap().clone())
                .collect()
        };
        let mut p = Problem::sample();
        let shown = buttons(&p, true);
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert_eq!(shown[0]["action_id"], "hub_ack");
        assert_eq!(shown[0]["value"], "dynatrace/P-TEST");
        assert_eq!(shown[0]["text"]["text"], "Acknowledge");
        assert_eq!(shown[1]["text"]["text"], "Open problem");
        assert_eq!(buttons(&p, false).len(), 1);
        p.state = "RESOLVED".into();
        assert_eq!(buttons(&p, true).len(), 1, "a resolved problem has nothing to acknowledge");
        p.state = "OPEN".into();
        p.url = None;
        assert_eq!(buttons(&p, true).len(), 1);
        assert!(buttons(&p, false).is_empty());
    }

    #[test]
    fn a_thread_ref_is_channel_and_ts() {
        assert_eq!(split_ref("C1/1700000000.000100"), Some(("C1", "1700000000.000100")));
        assert_eq!(split_ref("nothing"), None);
    }
}
