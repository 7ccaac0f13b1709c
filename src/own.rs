//! hub's own problems (source `hub`): a heartbeat that went silent (`heartbeat-<name>`), an action
//! whose runs fail for good (`action-failed-<action>`). They are stored as notifications, so they
//! are shown, routed, kept and pruned like any other problem; each one lists the actions it runs.

use serde_json::{json, Value};

use crate::clock::now_ms;
use crate::domain::Source;
use crate::store::{Store, StoreError};

/// One of hub's own problems, as it is opened.
pub struct Own {
    /// `heartbeat` or `action-failed`.
    pub kind: &'static str,
    pub problem_id: String,
    pub title: String,
    pub actions: Vec<String>,
    pub detail: Value,
}

fn notification(
    kind: &str,
    problem_id: &str,
    state: &str,
    title: &str,
    episode: i64,
    actions: &[String],
    detail: &Value,
) -> Result<crate::domain::Notification, StoreError> {
    let body = json!({
        "kind": kind, "problem_id": problem_id, "state": state, "title": title,
        "severity": "ERROR", "episode": episode, "actions": actions, "detail": detail,
    });
    Source::Hub
        .read(&Default::default(), body.to_string().as_bytes())
        .map_err(|e| StoreError::Encode {
            what: "one of hub's own notifications",
            detail: e.to_string(),
        })?
        .pop()
        .ok_or(StoreError::Encode {
            what: "one of hub's own notifications",
            detail: "empty".into(),
        })
}

/// Whether the problem is open now (its latest notification is OPEN).
pub async fn is_open(store: &Store, problem_id: &str) -> Result<bool, StoreError> {
    Ok(store
        .latest_notification(Source::Hub, problem_id)
        .await?
        .is_some_and(|n| n.notification.state == "OPEN"))
}

/// Opens the problem unless it is open already. `episode` tells this opening from earlier ones
/// (and makes two instances opening it for the same reason store it once). Returns whether it
/// opened.
pub async fn open(store: &Store, own: &Own, episode: i64) -> Result<bool, StoreError> {
    if is_open(store, &own.problem_id).await? {
        return Ok(false);
    }
    let n = notification(
        own.kind,
        &own.problem_id,
        "OPEN",
        &own.title,
        episode,
        &own.actions,
        &own.detail,
    )?;
    let stored = store.accept(n).await?;
    tracing::warn!(
        problem_id = own.problem_id.as_str(),
        title = own.title.as_str(),
        "hub opened its own problem"
    );
    Ok(matches!(stored, crate::store::Accepted::Stored { .. }))
}

/// Resolves the problem if it is open, for the same episode and actions it opened with.
pub async fn resolve(store: &Store, problem_id: &str, detail: Value) -> Result<bool, StoreError> {
    let Some(latest) = store.latest_notification(Source::Hub, problem_id).await? else {
        return Ok(false);
    };
    if latest.notification.state != "OPEN" {
        return Ok(false);
    }
    let opened: Value = serde_json::from_slice(&latest.notification.body).unwrap_or(Value::Null);
    let text = |k: &str| {
        opened
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let actions: Vec<String> = opened
        .get("actions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let episode = opened.get("episode").and_then(Value::as_i64).unwrap_or(0);
    let n = notification(
        &text("kind"),
        problem_id,
        "RESOLVED",
        &text("title"),
        episode,
        &actions,
        &detail,
    )?;
    store.accept(n).await?;
    tracing::info!(problem_id, "hub resolved its own problem");
    Ok(true)
}

/// The failure alarm of `action`: opened when one of its runs (on `target`) failed for good.
pub fn failure(action: &str, target: &str, error: &str, actions: &[String]) -> Own {
    Own {
        kind: "action-failed",
        problem_id: format!("action-failed-{action}"),
        title: format!(
            "action {action} failed: {}",
            crate::actions::http::truncated(error, 200)
        ),
        actions: actions.to_vec(),
        detail: json!({"action": action, "target": target, "error": error, "at": now_ms()}),
    }
}
