//! `comment`: writes the outcomes of other actions on the Dynatrace problem.
//!
//! It runs once every run it reports on has finished (the dispatcher holds it back until then), so
//! the comment carries every exit code, SMS SID and error, not only the last.

use serde_json::{json, Value};

use std::sync::Arc;

use super::{Action, ActionError, ActionType, BuildContext, BuildError, Job, Outcome};
use super::{ReadContext, RunFuture};
use crate::keys::{Issues, Section};
use crate::domain::Source;
use crate::dynatrace::Client;
use crate::store::RunRow;

/// `type: "comment"`: `after` (the actions it reports on) and `user` (default `webhook.username`);
/// needs `dynatrace.tenant` and `dynatrace.api_token`.
#[derive(Debug, Clone)]
pub struct CommentConfig {
    /// The actions whose outcomes this comment reports; it runs once they have all finished.
    pub after: Vec<String>,
    /// The v1 API's `user` field.
    pub user: String,
}

impl ActionType for CommentConfig {
    const TYPE: &'static str = "comment";

    fn read(s: &mut Section, ctx: &ReadContext, issues: &mut Issues) -> Option<Self> {
        let after = s.string_list("after", issues).unwrap_or_default();
        if after.is_empty() {
            issues.push(
                s.path_of("after"),
                "missing: the names of the actions this comment reports",
            );
        }
        if !ctx.tenant_set {
            issues.push(
                s.path(),
                "a comment action needs dynatrace.tenant and dynatrace.api_token",
            );
        }
        let user = s
            .string("user", issues)
            .unwrap_or_else(|| ctx.webhook_user.to_string());
        Some(CommentConfig { after, user })
    }

    fn build(&self, ctx: &BuildContext) -> Result<Arc<dyn Action>, BuildError> {
        match ctx.dynatrace {
            Some(client) => Ok(Arc::new(Comment::new(self, client.clone()))),
            None => Err(BuildError::NeedsTenant(ctx.name.to_string())),
        }
    }

    fn depends_on(&self) -> &[String] {
        &self.after
    }
}

pub struct Comment {
    context: String,
    user: String,
    after: Vec<String>,
    client: Client,
}

impl Comment {
    pub fn new(c: &CommentConfig, client: Client) -> Comment {
        Comment {
            context: format!("hub: {}", c.after.join(", ")),
            user: c.user.clone(),
            after: c.after.clone(),
            client,
        }
    }

    async fn post(&self, job: &Job<'_>) -> Result<Outcome, ActionError> {
        let Some(pid) = job.problem.pid.as_deref() else {
            return Err(ActionError::permanent(
                "the problem has no PID to comment on",
            ));
        };
        let text = message(job.problem.display_id(), &job.problem.state, &job.reports);
        match self
            .client
            .comment(pid, &text, &self.context, &self.user)
            .await
        {
            Ok(()) => Ok(Outcome::new(
                "comment posted",
                json!({"context": self.context, "comment": text}),
            )),
            Err(e) if e.is_transient() => Err(ActionError::Transient {
                message: e.to_string(),
                detail: Value::Null,
                retry_after: None,
            }),
            Err(e) => Err(ActionError::permanent(e.to_string())),
        }
    }
}

impl Action for Comment {
    fn run<'a>(&'a self, job: &'a Job<'a>) -> RunFuture<'a> {
        Box::pin(self.post(job))
    }

    fn depends_on(&self) -> &[String] {
        &self.after
    }

    fn refuses(&self, problem: &super::Problem) -> Option<String> {
        if problem.source != Source::Dynatrace {
            Some(format!(
                "comment-back exists only for Dynatrace problems, not {}",
                problem.source
            ))
        } else if problem.pid.is_none() {
            Some("the problem has no PID".into())
        } else {
            None
        }
    }

    fn explain(&self, job: &Job) -> Value {
        json!({
            "pid": job.problem.pid,
            "context": self.context,
            "comment": "the outcomes of the reported actions, once they have finished",
            "version": format!("{:?}", self.client.version()),
        })
    }
}

/// One line per reported run: what it acted on and how it ended.
pub fn message(display_id: String, state: &str, runs: &[RunRow]) -> String {
    let ok = runs.iter().filter(|r| r.status == "succeeded").count();
    let mut text = format!(
        "hub ran {} action(s) for problem {display_id} ({state}): {ok} succeeded, {} did not.",
        runs.len(),
        runs.len() - ok
    );
    for r in runs {
        let what = if r.target_label.is_empty() {
            r.action.clone()
        } else {
            format!("{} {}", r.action, r.target_label)
        };
        let how = match r.status.as_str() {
            "succeeded" => r.summary.clone().unwrap_or_else(|| summary(r)),
            "held_back" => r.last_error.clone().unwrap_or_else(|| "held back".into()),
            _ => format!(
                "{} after {} attempt(s): {}",
                r.status,
                r.attempts,
                r.last_error.clone().unwrap_or_default()
            ),
        };
        text.push_str(&format!("\n- {what}: {how}"));
    }
    text
}

/// For runs recorded before each outcome's summary was kept: read from the outcome's JSON.
fn summary(r: &RunRow) -> String {
    let o = r.outcome_json();
    if let Some(code) = o.get("exit_code").and_then(Value::as_i64) {
        return format!("exit {code}");
    }
    if let Some(sid) = o.get("sid").and_then(Value::as_str) {
        return format!("sent ({sid})");
    }
    if let Some(status) = o.get("http_status").and_then(Value::as_u64) {
        return format!("delivered ({status})");
    }
    "succeeded".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(action: &str, status: &str, summary: Option<&str>, outcome: &str) -> RunRow {
        RunRow {
            id: 1,
            notification_id: 1,
            idem_key: String::new(),
            source: Source::Dynatrace,
            problem_key: "1".into(),
            state: "OPEN".into(),
            action: action.into(),
            target: String::new(),
            target_label: String::new(),
            status: status.into(),
            attempts: 1,
            next_attempt_at_ms: 0,
            last_error: None,
            outcome: Some(outcome.into()),
            manual: false,
            updated_at_ms: 0,
            summary: summary.map(str::to_string),
        }
    }

    /// A comment reports each run's own summary; only a run recorded before summaries were kept
    /// is read from its outcome.
    #[test]
    fn reports_what_each_action_said() {
        let text = message(
            "P-1".into(),
            "OPEN",
            &[
                run(
                    "chat",
                    "succeeded",
                    Some("posted to #ops (ts 1712.5)"),
                    "{\"ok\":true}",
                ),
                run("page", "succeeded", None, "{\"exit_code\":0}"),
            ],
        );
        assert!(
            text.contains("- chat: posted to #ops (ts 1712.5)"),
            "{text}"
        );
        assert!(text.contains("- page: exit 0"), "{text}");
    }
}
