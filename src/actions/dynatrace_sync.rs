//! `dynatrace-sync`: tells Dynatrace what people did in hub. An acknowledgement becomes a comment
//! on the problem; `hub resolve` closes it there (Problems API v2 `close`, which also comments).
//!
//! hub makes this action itself when `dynatrace.sync` is set; no route names it. Its runs are
//! inserted when someone acknowledges or resolves (see `crate::escalate::tell`), so they retry and
//! show like any other run.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{Action, ActionError, ActionType, BuildContext, BuildError, Job, Outcome};
use super::{ReadContext, RunFuture};
use crate::domain::Source;
use crate::dynatrace::Client;
use crate::keys::{Issues, Section};

/// The action's name in runs, metrics and pages.
pub const NAME: &str = "dynatrace-sync";

#[derive(Debug, Clone)]
pub struct DynatraceSyncConfig;

impl ActionType for DynatraceSyncConfig {
    const TYPE: &'static str = "dynatrace_sync";

    fn read(s: &mut Section, _: &ReadContext, issues: &mut Issues) -> Option<Self> {
        issues.push(
            s.path_of("type"),
            "hub makes this action itself: set \"dynatrace\": {\"sync\": true} instead",
        );
        None
    }

    fn build(&self, ctx: &BuildContext) -> Result<Arc<dyn Action>, BuildError> {
        match ctx.dynatrace {
            Some(client) => Ok(Arc::new(DynatraceSync {
                client: client.clone(),
            })),
            None => Err(BuildError::NeedsTenant(ctx.name.to_string())),
        }
    }
}

pub struct DynatraceSync {
    client: Client,
}

/// What the problem's page in Dynatrace says; the run's label names who did it and how.
fn message(job: &Job) -> String {
    let what = if job.target.label.is_empty() {
        job.problem.state.to_lowercase()
    } else {
        job.target.label.clone()
    };
    format!("hub: {what}")
}

impl DynatraceSync {
    async fn tell(&self, job: &Job<'_>) -> Result<Outcome, ActionError> {
        let Some(pid) = job.problem.pid.as_deref() else {
            return Err(ActionError::permanent("the problem has no PID"));
        };
        let text = message(job);
        let closing = crate::store::is_closed(&job.problem.state, false);
        let result = if closing {
            self.client.close(pid, &text).await
        } else {
            self.client.comment(pid, &text, "hub", "hub").await
        };
        match result {
            Ok(()) if closing => Ok(Outcome::new(
                "problem closed in Dynatrace",
                json!({"closed": pid, "comment": text}),
            )),
            Ok(()) => Ok(Outcome::new(
                "comment posted",
                json!({"pid": pid, "comment": text}),
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

impl Action for DynatraceSync {
    /// Never chosen by routing: its runs come from acknowledgements and resolves.
    fn targets(&self, _: &super::Problem) -> Vec<super::Target> {
        Vec::new()
    }

    fn run<'a>(&'a self, job: &'a Job<'a>) -> RunFuture<'a> {
        Box::pin(self.tell(job))
    }

    fn refuses(&self, problem: &super::Problem) -> Option<String> {
        (problem.source != Source::Dynatrace)
            .then(|| format!("tells Dynatrace only, not {}", problem.source))
    }

    fn explain(&self, job: &Job) -> Value {
        json!({
            "pid": job.problem.pid,
            "on_ack": "a comment on the problem",
            "on_resolve": "closes the problem (Problems API close)",
            "comment": message(job),
        })
    }
}
