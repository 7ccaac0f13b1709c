//! `hub replay <problem-id>`: runs a problem's actions again, on purpose.
//!
//! Takes the runs of the problem's latest state (optionally one action's) and schedules each again
//! as a manual attempt, recorded as such, exactly as the page's and the API's replay do. A running
//! hub runs them; with none running, this command runs them itself. Either way it waits for the
//! outcomes and prints them. A comment waits for the runs it reports, so it reports the fresh
//! outcomes. A run that a running hub has in flight at that moment is left to it.

use anyhow::Context;

use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::domain::Source;
use crate::store::Store;

/// The runs of the problem's latest state in its current opening: what a replay runs again (a
/// problem that opened again does not resend its first opening's runs).
pub async fn current(
    store: &Store,
    latest: &crate::store::StoredNotification,
    runs: &[crate::store::RunRow],
) -> Result<Vec<crate::store::RunRow>, crate::store::StoreError> {
    let n = &latest.notification;
    let closed = crate::store::is_closed(&n.state, n.is_test);
    let episode = store
        .episode(n.source, &n.problem_key, latest.id, closed)
        .await?;
    Ok(runs
        .iter()
        .filter(|r| r.state == n.state && crate::actions::episode_of(&r.idem_key) == episode)
        .cloned()
        .collect())
}

pub async fn replay(
    config: Config,
    source: Source,
    problem_id: &str,
    action: Option<&str>,
    actor: &crate::people::Actor,
) -> anyhow::Result<String> {
    let store = crate::app::open_store(&config).await?;
    let latest = store
        .latest_notification(source, problem_id)
        .await?
        .with_context(|| format!("hub has no {source} notification for problem {problem_id}"))?;
    let all = store.problem_runs(source, problem_id).await?;
    let runs: Vec<_> = current(&store, &latest, &all)
        .await?
        .into_iter()
        .filter(|r| action.is_none_or(|a| r.action == a))
        .collect();
    if runs.is_empty() {
        let names: Vec<&str> = all.iter().map(|r| r.action.as_str()).collect();
        anyhow::bail!(
            "problem {problem_id} ({}) has no run{} to replay{}",
            latest.notification.state,
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
    let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
    let scheduled = store.schedule_replay(&ids).await?;
    crate::people::audit::record(
        &store,
        actor,
        "replay",
        &format!("{source}/{problem_id}"),
        format!(
            "{scheduled} run(s){}",
            action.map(|a| format!(" of {a}")).unwrap_or_default()
        ),
    )
    .await;
    let waited = match crate::store::lock(&config.store) {
        // No hub runs on this store: this command does the work itself, holding the store as
        // `hub run` would, so one that starts meanwhile waits its turn.
        Ok(Some(_lock)) => {
            let dispatcher = Dispatcher::new(&config, store.clone())?;
            dispatcher.work_until_idle(REPLAY_BUDGET).await?;
            None
        }
        // A store several instances share: whichever runs claims the runs.
        Ok(None) => {
            wait_for_outcomes(&store, &ids).await?;
            Some("the hubs running on this store ran them".to_string())
        }
        Err(crate::store::StoreError::Locked(held)) => {
            wait_for_outcomes(&store, &ids).await?;
            Some(held.to_string())
        }
        Err(e) => return Err(e.into()),
    };
    let mut lines = Vec::new();
    let mut failed = 0;
    if let Some(held) = waited {
        lines.push(format!(
            "scheduled {scheduled} run(s) for the running hub: {}",
            held.split(';').next().unwrap_or_default()
        ));
    }
    for before in runs {
        let after = store.run(before.id).await?;
        let what = if after.target_label.is_empty() {
            after.action.clone()
        } else {
            format!("{} {}", after.action, after.target_label)
        };
        lines.push(if before.status == "running" {
            format!("{what}: in flight in the running hub; left to it")
        } else if after.attempts == before.attempts {
            // Not run by this command: what it shows is not this replay's outcome.
            format!("{what}: {} (not run yet; the hub runs it)", after.status)
        } else {
            failed += usize::from(after.status == "failed");
            format!(
                "{what}: {} (attempt {}, manual){}",
                after.status,
                after.attempts,
                after
                    .last_error
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            )
        });
    }
    // A script that replays and checks the exit code must see a run that failed.
    if failed > 0 {
        anyhow::bail!("{}\n{failed} replayed run(s) failed", lines.join("\n"));
    }
    Ok(lines.join("\n"))
}

/// How long a replay works (or waits for the running hub) before it reports what it has.
const REPLAY_BUDGET: std::time::Duration = std::time::Duration::from_secs(120);

/// Waits until the running hub has finished the given runs (or the budget is spent).
async fn wait_for_outcomes(store: &Store, ids: &[i64]) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + REPLAY_BUDGET;
    while tokio::time::Instant::now() < deadline {
        let mut done = true;
        for id in ids {
            let run = store.run(*id).await?;
            done &= run.is_final() && !run.manual;
        }
        if done {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    Ok(())
}
