//! `problems_sent/<problem>.json`: the enriched details and every action run, written at the
//! problem's first outcome (or its details) and rewritten atomically whenever one of them changes.
//!
//! The files are views of the store, like `problems_received/`: a change marks its problem, and one
//! background task rewrites the marked files, so a burst of outcomes for one problem costs one
//! rewrite, and no run waits for a file. They are not fsynced one by one (that capped runs at the
//! disk's fsync rate). Each file is dated with the last change it shows, so after a crash
//! [`repair`] finds every file that missed one.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::clock::now_ms;
use crate::domain::Source;
use crate::store::{files, SentView, Store, StoreError, ThreadRow};

/// How many problems one read covers: the dispatcher shares the reader and should not wait long.
const CHUNK: usize = 64;

/// The problems whose file must be rewritten, and the one task that rewrites them.
pub struct SentFiles {
    store: Store,
    dir: PathBuf,
    state: Mutex<State>,
    /// Signalled whenever the writer finishes a round, for [`SentFiles::flush`].
    settled: Notify,
}

#[derive(Default)]
struct State {
    dirty: BTreeSet<(Source, String)>,
    writing: bool,
}

impl SentFiles {
    pub fn new(store: Store, dir: PathBuf) -> Arc<SentFiles> {
        Arc::new(SentFiles {
            store,
            dir,
            state: Mutex::new(State::default()),
            settled: Notify::new(),
        })
    }

    /// Marks a problem's file for rewriting, and starts the writer if it is not running.
    pub fn mark(self: &Arc<Self>, source: Source, problem_key: &str) {
        let start = {
            let mut s = self.lock();
            s.dirty.insert((source, problem_key.to_string()));
            !std::mem::replace(&mut s.writing, true)
        };
        if start {
            let me = self.clone();
            tokio::spawn(async move { me.write_marked().await });
        }
    }

    /// Waits until every marked file is written; for commands that exit once their work is done.
    pub async fn flush(&self) {
        loop {
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            {
                let s = self.lock();
                if s.dirty.is_empty() && !s.writing {
                    return;
                }
            }
            settled.await;
        }
    }

    async fn write_marked(&self) {
        loop {
            let batch = {
                let mut s = self.lock();
                if s.dirty.is_empty() {
                    s.writing = false;
                    break;
                }
                std::mem::take(&mut s.dirty)
            };
            let batch: Vec<(Source, String)> = batch.into_iter().collect();
            for chunk in batch.chunks(CHUNK) {
                if let Err(e) = write(&self.store, &self.dir, chunk).await {
                    tracing::error!(problems = chunk.len(), error = %e, "cannot write to dir_sent");
                }
            }
            self.settled.notify_waiters();
        }
        self.settled.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves a plain set behind; it is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Marks every problem whose file is missing, empty, or older than the problem's last recorded
/// change (a crash or power cut came between the change and the rewrite). Returns how many.
pub async fn repair(sent: &Arc<SentFiles>) -> Result<usize, StoreError> {
    let changed = sent.store.last_sent_changes().await?;
    let dir = sent.dir.clone();
    let stale = tokio::task::spawn_blocking(move || {
        changed
            .into_iter()
            .filter(|(source, key, changed_ms)| {
                let meta = std::fs::metadata(dir.join(files::sent_name(*source, key)));
                let written_ms = meta
                    .ok()
                    .filter(|m| m.len() > 0)
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as i64);
                written_ms.is_none_or(|w| w < *changed_ms)
            })
            .collect::<Vec<_>>()
    })
    .await?;
    for (source, key, _) in &stale {
        sent.mark(*source, key);
    }
    Ok(stale.len())
}

/// Rewrites the files of these problems: their content read in one transaction, then written in
/// one blocking task. A file that cannot be written is logged and left for the next change.
async fn write(store: &Store, dir: &Path, problems: &[(Source, String)]) -> Result<(), StoreError> {
    let mut files = Vec::new();
    for view in store.sent_views(problems).await?.into_iter().flatten() {
        let threads = store.threads(view.source, &view.problem_key).await?;
        files.push(render(view, &threads)?);
    }
    let target = dir.to_path_buf();
    let failed = tokio::task::spawn_blocking(move || {
        files
            .into_iter()
            .filter_map(|(name, bytes, dated)| {
                files::write_view_dated(&target, &name, &bytes, dated)
                    .err()
                    .map(|e| (name, e))
            })
            .collect::<Vec<_>>()
    })
    .await?;
    for (name, e) in failed {
        tracing::error!(file = %name, dir = %dir.display(), error = %e, "cannot write to dir_sent");
    }
    Ok(())
}

/// A problem's file: its name, its content, and the time of the last change it shows.
pub(crate) fn render(
    view: SentView,
    threads: &[ThreadRow],
) -> Result<(String, Vec<u8>, SystemTime), StoreError> {
    let dated =
        UNIX_EPOCH + Duration::from_millis(view.changed_ms.unwrap_or_else(now_ms).max(0) as u64);
    let details: Value = view
        .details
        .and_then(|d| serde_json::from_str(&d).ok())
        .unwrap_or(Value::Null);
    let runs: Vec<Value> = view
        .runs
        .into_iter()
        .map(|r| {
            let thread = threads
                .iter()
                .find(|t| t.action == r.action && t.target == r.target)
                .map(|t| json!({"ref": t.reference, "url": t.url}));
            json!({
                "state": r.state,
                "action": r.action,
                "target": r.target_label,
                "status": r.status,
                "attempts": r.attempts,
                "last_error": r.last_error,
                "outcome": r.outcome_json(),
                "run_id": crate::actions::run_id(&r.idem_key),
                "updated_at": crate::clock::utc(r.updated_at_ms),
                "thread": thread,
            })
        })
        .collect();
    let doc = json!({
        "source": view.source,
        "problem_id": view.problem_key,
        "pid": view.pid,
        "state": view.state,
        "written_at_ms": now_ms(),
        "details": details,
        "runs": runs,
    });
    let bytes = serde_json::to_vec_pretty(&doc).map_err(|e| StoreError::Encode {
        what: "a problems_sent/ file",
        detail: e.to_string(),
    })?;
    Ok((
        files::sent_name(view.source, &view.problem_key),
        bytes,
        dated,
    ))
}
