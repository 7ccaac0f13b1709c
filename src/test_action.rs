//! `hub test-action NAME`: one run of one action, now, with a sample problem or a given payload,
//! to check credentials and what the far side shows. It records nothing: no run, no outcome, no
//! thread, and its run id is new each time, so no idempotency key of a real run is touched.

use serde_json::{json, Value};

use crate::actions::{ActionError, Job, Registry};
use crate::config::Config;
use crate::domain::Source;
use crate::sources::Headers;

/// The sample problem: a Dynatrace notification as the sample's placeholders fill it.
const SAMPLE: &str = r#"{
  "State": "OPEN",
  "ProblemID": "P-TEST",
  "PID": "hub-test-action",
  "ProblemTitle": "hub test-action: a sample problem",
  "ProblemImpact": "INFRASTRUCTURE",
  "ProblemSeverity": "AVAILABILITY",
  "ImpactedEntities": [{"type": "HOST", "name": "sample-host-01", "entity": "HOST-0000000000000001"}],
  "Tags": "hub:test-action"
}"#;

/// Why no run could be sent.
#[derive(Debug, thiserror::Error)]
pub enum TestActionError {
    #[error("no action is named {name:?} (configured: {known})")]
    Unknown { name: String, known: String },
    #[error("{source} would refuse this payload: {error}")]
    Refused {
        source: Source,
        #[source]
        error: crate::sources::ParseError,
    },
    #[error("the payload holds no notification")]
    Empty,
    #[error("action {name} does not act on this problem: {why}")]
    NotForThis { name: String, why: String },
    #[error(transparent)]
    Build(#[from] crate::dispatch::StartError),
}

/// What was sent for each target, and how the far side answered.
pub struct Report {
    pub runs: Vec<Value>,
    pub all_succeeded: bool,
}

pub async fn test_action(
    config: &Config,
    name: &str,
    state: Option<&str>,
    payload: Option<(&[u8], Source)>,
) -> Result<Report, TestActionError> {
    let client = crate::dynatrace::Client::from_config(&config.dynatrace)
        .map_err(crate::dispatch::StartError::from)?;
    let registry = Registry::build(&config.actions, client.as_ref())
        .map_err(crate::dispatch::StartError::from)?;
    let Some((action_config, action)) = registry.get(name) else {
        let known: Vec<&str> = registry
            .actions
            .iter()
            .map(|(c, _)| c.name.as_str())
            .collect();
        return Err(TestActionError::Unknown {
            name: name.to_string(),
            known: if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            },
        });
    };
    let (body, source) = payload.unwrap_or((SAMPLE.as_bytes(), Source::Dynatrace));
    let notification = source
        .read(&Headers::default(), body)
        .map_err(|error| TestActionError::Refused { source, error })?
        .into_iter()
        .next()
        .ok_or(TestActionError::Empty)?;
    let mut problem =
        crate::actions::Problem::arriving(&notification, config.dynatrace.tenant.as_deref());
    if let Some(state) = state {
        problem.state = state.to_string();
    }
    if let Some(why) = action.refuses(&problem) {
        return Err(TestActionError::NotForThis {
            name: name.to_string(),
            why,
        });
    }
    let run_id = format!(
        "{}{}",
        crate::actions::TEST_RUN_PREFIX,
        crate::secret::short_sha256(format!("{name}/{}", crate::clock::now_ms()).as_bytes(), 12)
    );
    let mut runs = Vec::new();
    let mut all_succeeded = true;
    for target in action.targets(&problem) {
        let job = Job {
            run_id: run_id.clone(),
            attempt: 1,
            problem: &problem,
            target: target.clone(),
            reports: Vec::new(),
            thread: None,
            escalated: None,
            group: None,
            trace: None,
        };
        let sent = action.explain(&job);
        let answer = match action.run(&job).await {
            Ok(o) => json!({"result": "succeeded", "summary": o.summary, "detail": o.detail,
                            "thread": o.thread.map(|t| t.reference)}),
            Err(e) => {
                all_succeeded = false;
                let (kind, detail) = match &e {
                    ActionError::Transient { detail, .. } => {
                        ("transient: a run would be retried", detail.clone())
                    }
                    ActionError::Permanent { detail, .. } => {
                        ("permanent: a run would fail", detail.clone())
                    }
                    ActionError::HeldBack(_) => ("held back", Value::Null),
                };
                json!({"result": kind, "error": e.to_string(), "detail": detail})
            }
        };
        runs.push(json!({
            "action": name,
            "type": action_config.kind.type_name(),
            "target": target.label,
            "state": problem.state,
            "sent": sent,
            "answer": answer,
        }));
    }
    Ok(Report {
        runs,
        all_succeeded,
    })
}
