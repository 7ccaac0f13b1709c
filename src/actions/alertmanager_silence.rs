//! `alertmanager-silence`: while people work on an acknowledged alert, the Alertmanager that sent
//! it stays quiet about it. An acknowledgement creates a silence for the alert's labels; the
//! alert's resolve (or `hub resolve`) expires it. The silence's id is the problem's thread, so the
//! expiring run finds it.
//!
//! hub makes this action itself when `alertmanager.silence_on_ack` is set; no route names it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::http::{post_json, send};
use super::{Action, ActionError, ActionType, BuildContext, BuildError, Job, Outcome};
use super::{ReadContext, RunFuture, ThreadRef};
use crate::domain::Source;
use crate::keys::{Issues, Section};

/// The action's name in runs, metrics and pages.
pub const NAME: &str = "alertmanager-silence";

#[derive(Debug, Clone)]
pub struct AlertmanagerSilenceConfig {
    /// Alertmanager's base URL, without `/api/v2`.
    pub url: String,
    /// The longest a silence lasts when the alert never resolves.
    pub silence_for: Duration,
    pub timeout_secs: u64,
}

impl ActionType for AlertmanagerSilenceConfig {
    const TYPE: &'static str = "alertmanager_silence";

    fn read(s: &mut Section, _: &ReadContext, issues: &mut Issues) -> Option<Self> {
        issues.push(
            s.path_of("type"),
            "hub makes this action itself: set \"alertmanager\": {\"url\": …, \"silence_on_ack\": true} instead",
        );
        None
    }

    fn build(&self, ctx: &BuildContext) -> Result<Arc<dyn Action>, BuildError> {
        Ok(Arc::new(AlertmanagerSilence {
            config: self.clone(),
            http: ctx.http.clone(),
        }))
    }
}

pub struct AlertmanagerSilence {
    config: AlertmanagerSilenceConfig,
    http: reqwest::Client,
}

/// One equality matcher per label (the alert's tags are its labels as `name:value`), so the
/// silence covers this alert and nothing else.
pub fn matchers(tags: &[String]) -> Vec<Value> {
    tags.iter()
        .filter_map(|t| t.split_once(':'))
        .map(|(name, value)| json!({"name": name, "value": value, "isRegex": false, "isEqual": true}))
        .collect()
}

impl AlertmanagerSilence {
    fn api(&self, path: &str) -> String {
        format!("{}/api/v2/{path}", self.config.url.trim_end_matches('/'))
    }

    fn silence(&self, job: &Job) -> Value {
        let now = crate::clock::now_ms();
        let ends = now + self.config.silence_for.as_millis() as i64;
        let by = if job.target.label.is_empty() {
            "acknowledged in hub".to_string()
        } else {
            job.target.label.clone()
        };
        json!({
            "matchers": matchers(&job.problem.tags),
            "startsAt": crate::clock::rfc3339(now),
            "endsAt": crate::clock::rfc3339(ends),
            "createdBy": "hub",
            "comment": format!("{by}; hub expires this silence when the alert resolves"),
        })
    }

    async fn tell(&self, job: &Job<'_>) -> Result<Outcome, ActionError> {
        let timeout = Duration::from_secs(self.config.timeout_secs);
        // Its runs tell of an acknowledgement (a silence), or of a resolve or an unacknowledgement
        // (the silence expired).
        if job.problem.state != crate::escalate::tell::Event::Ack.state() {
            let Some(id) = job.thread_ref() else {
                return Ok(Outcome::new("no silence to expire", Value::Null));
            };
            let url = self.api(&format!("silence/{}", urlencoding(id)));
            let answer = send(self.http.delete(&url).timeout(timeout), "Alertmanager").await?;
            let detail = json!({"http_status": answer.status, "silence": id});
            // 404: expired or deleted there already, which is what was wanted.
            if answer.is_success() || answer.status == 404 {
                return Ok(Outcome::new(format!("silence {id} expired"), detail));
            }
            return Err(answer.error(
                format!("Alertmanager answered {}: {}", answer.status, answer.shown()),
                detail,
            ));
        }
        let body = self.silence(job);
        if body["matchers"].as_array().is_none_or(Vec::is_empty) {
            return Err(ActionError::permanent(
                "the alert has no labels to silence it by",
            ));
        }
        let answer = send(
            post_json(&self.http, &self.api("silences"), &body, timeout),
            "Alertmanager",
        )
        .await?;
        let id = answer.json()["silenceID"].as_str().map(str::to_string);
        let detail = json!({"http_status": answer.status, "silence": id});
        match id {
            Some(id) if answer.is_success() => Ok(Outcome::new(
                format!("silence {id} created"),
                detail,
            )
            .with_thread(Some(ThreadRef {
                url: Some(format!(
                    "{}/#/silences/{id}",
                    self.config.url.trim_end_matches('/')
                )),
                reference: id,
            }))),
            _ if answer.is_success() => Err(ActionError::permanent(format!(
                "Alertmanager's answer has no silenceID: {}",
                answer.shown()
            ))),
            _ => Err(answer.error(
                format!("Alertmanager answered {}: {}", answer.status, answer.shown()),
                detail,
            )),
        }
    }
}

/// A silence id is a UUID; anything else is escaped rather than trusted into the path.
fn urlencoding(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Action for AlertmanagerSilence {
    /// Never chosen by routing: its runs come from acknowledgements and resolves.
    fn targets(&self, _: &super::Problem) -> Vec<super::Target> {
        Vec::new()
    }

    fn keeps_thread(&self) -> bool {
        true
    }

    fn run<'a>(&'a self, job: &'a Job<'a>) -> RunFuture<'a> {
        Box::pin(self.tell(job))
    }

    fn refuses(&self, problem: &super::Problem) -> Option<String> {
        (problem.source != Source::Alertmanager)
            .then(|| format!("silences Alertmanager alerts only, not {}", problem.source))
    }

    fn explain(&self, job: &Job) -> Value {
        json!({"url": self.api("silences"), "body": self.silence(job)})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_label_is_one_exact_matcher() {
        let m = matchers(&["alertname:Down".into(), "url:http://x:9".into(), "bare".into()]);
        assert_eq!(m.len(), 2);
        assert_eq!(m[1]["name"], "url");
        assert_eq!(m[1]["value"], "http://x:9");
        assert_eq!(m[0]["isRegex"], false);
    }

    #[test]
    fn silence_ids_cannot_leave_their_path() {
        assert_eq!(urlencoding("../x y"), "%2E%2E%2Fx%20y");
        assert_eq!(urlencoding("0a1b-2c"), "0a1b-2c");
    }
}
