//! `hub explain <payload-file>`: the whole pipeline as a dry run.
//!
//! Parses the payload as its source would, routes it, and shows every run it would start with its
//! resolved argv, environment, URL and body. It runs nothing, sends nothing and writes nothing;
//! Dynatrace is not asked for details, so entities come from the payload itself.

use serde_json::{json, Value};

use crate::actions::route::route;
use crate::actions::{idem_key, run_id, Job, Problem, Registry};
use crate::config::Config;
use crate::domain::{Notification, Source};
use crate::sources::Headers;

/// Why a dry run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("{source} would refuse this payload: {error}")]
    Refused {
        source: Source,
        #[source]
        error: crate::sources::ParseError,
    },
    #[error(transparent)]
    Dispatcher(#[from] crate::dispatch::StartError),
}

pub fn explain(config: &Config, body: &[u8], source: Source) -> Result<Value, ExplainError> {
    let notifications = source
        .read(&Headers::default(), body)
        .map_err(|error| ExplainError::Refused { source, error })?;
    let client = crate::dynatrace::Client::from_config(&config.dynatrace)
        .map_err(crate::dispatch::StartError::from)?;
    let registry = Registry::build(&config.actions, client.as_ref())
        .map_err(crate::dispatch::StartError::from)?;
    let explained: Vec<Value> = notifications
        .iter()
        .map(|n| one(config, &registry, n))
        .collect();
    Ok(json!({
        "notifications": explained,
        "routes": if config.actions.routes.is_some() { "as configured" } else { "none configured: every action for every notification" },
        "note": "a dry run: nothing was run, sent or stored, and Dynatrace was not asked for details",
    }))
}

fn one(config: &Config, registry: &Registry, n: &Notification) -> Value {
    let problem = Problem::arriving(n, config.dynatrace.tenant.as_deref());
    let decision = route(&config.actions, registry, &problem, n.is_test);
    let mut runs = Vec::new();
    for chosen in &decision.chosen {
        let Some((action_config, action)) = registry.get(&chosen.action) else {
            continue;
        };
        for target in &chosen.targets {
            let key = idem_key(&problem, &chosen.action, target, None);
            let job = Job {
                run_id: run_id(&key),
                attempt: 1,
                problem: &problem,
                target: target.clone(),
                reports: Vec::new(),
                thread: None,
            };
            // The key ends with the target; a phone number there is shown masked, as everywhere.
            let masked = crate::actions::mask_number(&target.id);
            let shown_key = match key.strip_suffix(target.id.as_str()) {
                Some(head) if !target.id.is_empty() && target.label == masked => {
                    format!("{head}{masked}")
                }
                _ => key.clone(),
            };
            runs.push(json!({
                "action": chosen.action,
                "type": action_config.kind.type_name(),
                "target": target.label,
                "idempotency_key": shown_key,
                "run_id": job.run_id,
                "would": action.explain(&job),
            }));
        }
    }
    let skipped: Vec<Value> = decision
        .skipped
        .iter()
        .map(|(a, why)| json!({"action": a, "why": why}))
        .collect();
    let mut shown = serde_json::to_value(&problem).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut shown {
        map.remove("notification");
    }
    json!({
        "notification": {
            "source": n.source,
            "problem_id": n.problem_key,
            "state": n.state,
            "pid": n.pid,
            "test": n.is_test,
        },
        "problem": shown,
        "runs": runs,
        "skipped": skipped,
    })
}
