//! `hub poll` and `hub problem`: Dynatrace's view, next to what hub received.

use anyhow::Context;
use serde_json::json;

use crate::clock::utc;
use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::domain::Source;
use crate::dynatrace::problem::Summary;
use crate::dynatrace::{Client, Window};
use crate::feed::Feed;
use crate::store;

/// How long `--run-actions` works the queue before leaving the rest to a running hub.
const RUN_ACTIONS_BUDGET: std::time::Duration = std::time::Duration::from_secs(600);

pub async fn poll(
    client: Client,
    config: Config,
    window: Window,
    json: bool,
    run_actions: bool,
) -> anyhow::Result<String> {
    let problems = client
        .feed(window)
        .await
        .context("cannot read the problem feed")?;
    let summaries: Vec<Summary> = problems
        .iter()
        .map(|p| Summary::from_api(client.version(), p))
        .collect();
    let ran = if run_actions {
        Some(run_actions_for(&config, &summaries).await?)
    } else {
        None
    };
    let wanted = crate::feed::Wanted::of(&summaries);
    let received = store::received(&config.store, &wanted)
        .await?
        .unwrap_or_default();
    let feed = Feed::new(window, summaries, &received);
    let mut out = if json {
        let mut doc = feed.to_json();
        if let (Some(ran), Some(map)) = (&ran, doc.as_object_mut()) {
            map.insert("run_actions".into(), json!(ran));
        }
        doc.to_string()
    } else {
        feed.to_table()
    };
    if let (Some(ran), false) = (ran, json) {
        out.push('\n');
        out.push_str(&ran);
    }
    Ok(out)
}

/// Hands every problem hub has not handled in its current status to the pipeline, as a notification
/// Dynatrace could have sent, then works the queue. Idempotency keys make this safe to repeat: a
/// problem already handled in that status runs nothing again.
async fn run_actions_for(config: &Config, problems: &[Summary]) -> anyhow::Result<String> {
    let store = crate::app::open_store(config).await?;
    let (mut handed, mut known) = (0, 0);
    for p in problems {
        let state = if p.status == "OPEN" {
            "OPEN"
        } else {
            "RESOLVED"
        };
        let key = p.problem_number();
        if key.is_empty() || p.pid.is_empty() {
            continue;
        }
        if store.has_state(Source::Dynatrace, key, state).await? {
            known += 1;
            continue;
        }
        let body = json!({
            "State": state,
            "ProblemID": key,
            "PID": p.pid,
            "ProblemTitle": p.title,
            "ProblemImpact": p.impact,
            "ProblemSeverity": p.severity,
            "ImpactedEntities": p.entities.iter().map(|e| json!({"name": e})).collect::<Vec<_>>(),
            "Source": "hub poll --run-actions",
        });
        let n = crate::sources::dynatrace::parse(body.to_string().as_bytes())
            .map_err(|e| anyhow::anyhow!("problem {key} cannot be handed on: {e}"))?;
        store.accept(n).await?;
        handed += 1;
    }
    let dispatcher = Dispatcher::new(config, store)?;
    let finished = dispatcher.work_until_idle(RUN_ACTIONS_BUDGET).await?;
    Ok(format!(
        "run-actions: {handed} problem(s) handed to the actions, {known} already handled in their \
         current status{}",
        if finished {
            ""
        } else {
            "; some runs wait for a later retry, which hub makes while it runs"
        }
    ))
}

pub async fn problem(client: Client, pid: String, json: bool) -> anyhow::Result<String> {
    let details = client
        .problem(&pid)
        .await
        .with_context(|| format!("cannot read problem {pid}"))?;
    if json {
        return Ok(details.to_string());
    }
    let s = Summary::from_api(client.version(), &details);
    let field = |name: &str, value: &str| format!("{name:<10} {value}");
    let lines = [
        field("problem", &format!("{} ({})", s.display_id, s.pid)),
        field("title", &s.title),
        field("status", &s.status),
        field("severity", &s.severity),
        field("impact", &s.impact),
        field("start", &s.start_ms.map(utc).unwrap_or_else(|| "-".into())),
        field(
            "end",
            &s.end_ms.map(utc).unwrap_or_else(|| "still open".into()),
        ),
        field("entities", &s.entities.join(", ")),
    ];
    Ok(lines.join("\n"))
}
