//! `hub replay <problem-id>`: runs a problem's actions again, on purpose.
//!
//! Takes the runs of the problem's latest state (optionally one action's), and runs each now as a
//! manual attempt, recorded as such; comments go last so they report the fresh outcomes. A run that
//! a running hub has in flight at that moment is left to it.

use anyhow::Context;

use crate::config::{ActionKind, Config};
use crate::dispatch::Dispatcher;
use crate::store::Store;

pub async fn replay(
    config: Config,
    source: &str,
    problem_id: &str,
    action: Option<&str>,
) -> anyhow::Result<String> {
    let store = Store::open(&config.store.url, &config.dir_received).await?;
    let latest = store
        .latest_notification(source, problem_id)
        .await?
        .with_context(|| format!("hub has no {source} notification for problem {problem_id}"))?;
    let all = store.problem_runs(source, problem_id).await?;
    let mut runs: Vec<_> = all
        .iter()
        .filter(|r| r.state == latest.state)
        .filter(|r| action.map_or(true, |a| r.action == a))
        .cloned()
        .collect();
    if runs.is_empty() {
        let names: Vec<&str> = all.iter().map(|r| r.action.as_str()).collect();
        anyhow::bail!(
            "problem {problem_id} ({}) has no run{} to replay{}",
            latest.state,
            action
                .map(|a| format!(" of action {a}"))
                .unwrap_or_default(),
            if names.is_empty() {
                String::new()
            } else {
                format!("; its runs are of: {}", names.join(", "))
            }
        );
    }
    let is_comment = |name: &str| {
        config
            .actions
            .get(name)
            .is_some_and(|a| matches!(a.kind, ActionKind::Comment(_)))
    };
    runs.sort_by_key(|r| is_comment(&r.action));
    let dispatcher = Dispatcher::new(&config, store).map_err(anyhow::Error::msg)?;
    let mut lines = Vec::new();
    for run in runs {
        let what = if run.target_label.is_empty() {
            run.action.clone()
        } else {
            format!("{} {}", run.action, run.target_label)
        };
        match dispatcher.run_now(run.id).await? {
            None => lines.push(format!("{what}: in flight in the running hub; left to it")),
            Some(after) => lines.push(format!(
                "{what}: {} (attempt {}, manual){}",
                after.status,
                after.attempts,
                after
                    .last_error
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            )),
        }
    }
    Ok(lines.join("\n"))
}
