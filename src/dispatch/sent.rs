//! `problems_sent/<problem>.json`: the enriched details and every action run, rewritten atomically
//! whenever one of them changes.

use std::path::Path;

use serde_json::{json, Value};

use crate::store::{files, now_ms, Store, StoreError};

/// The file name for a problem: the sample's `<ProblemID>.json` for Dynatrace, `<source>-<key>.json`
/// for the others.
pub fn file_name(source: &str, problem_key: &str) -> String {
    let prefix = (source != "dynatrace").then_some(source);
    match prefix {
        Some(p) => format!("{}.json", files::sanitize(&format!("{p}-{problem_key}"))),
        None => format!("{}.json", files::sanitize(problem_key)),
    }
}

pub async fn write(
    store: &Store,
    dir: &Path,
    source: &str,
    problem_key: &str,
) -> Result<String, StoreError> {
    let Some(n) = store.latest_notification(source, problem_key).await? else {
        return Ok(String::new());
    };
    let details: Value = store
        .latest_details(source, problem_key)
        .await?
        .and_then(|d| serde_json::from_str(&d).ok())
        .unwrap_or(Value::Null);
    let runs: Vec<Value> = store
        .problem_runs(source, problem_key)
        .await?
        .into_iter()
        .map(|r| {
            json!({
                "state": r.state,
                "action": r.action,
                "target": r.target_label,
                "status": r.status,
                "attempts": r.attempts,
                "last_error": r.last_error,
                "outcome": r.outcome_json(),
                "run_id": crate::actions::run_id(&r.idem_key),
                "updated_at": crate::feed::utc(r.updated_at_ms),
            })
        })
        .collect();
    let doc = json!({
        "source": source,
        "problem_id": problem_key,
        "pid": n.pid,
        "state": n.state,
        "written_at_ms": now_ms(),
        "details": details,
        "runs": runs,
    });
    let name = file_name(source, problem_key);
    let bytes =
        serde_json::to_vec_pretty(&doc).map_err(|e| StoreError::NotStored(e.to_string()))?;
    let target = dir.to_path_buf();
    let file = name.clone();
    tokio::task::spawn_blocking(move || {
        files::write_atomic(&target, &file, &bytes)?;
        files::sync_dir(&target)
    })
    .await
    .map_err(|e| StoreError::NotStored(e.to_string()))?
    .map_err(|source| StoreError::Folder {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(name)
}
