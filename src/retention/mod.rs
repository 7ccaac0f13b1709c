//! Retention: problems that ended long ago are deleted, a batch at a time, with their
//! notifications, runs, attempts and both folders' files (`retention` in the config, `hub prune`).
//!
//! Each batch is one transaction that checks every problem again before deleting it, so a problem
//! that reopened or got a replay since it was chosen stays. Batches are spaced out: deleting many
//! files at once slows file creation on ext4, and ingest must not feel a prune.

pub mod config;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::watch;

use crate::clock::now_ms;
use crate::live::Live;
use crate::store::{Pruned, Store, StoreError};
pub use config::RetentionConfig;

/// Problems looked at per transaction.
const BATCH: i64 = 200;
/// Between two batches of a pass in the background.
const PAUSE: Duration = Duration::from_millis(50);

/// What a pass removed (or, dry, would remove).
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub problems: u64,
    pub notifications: u64,
    pub runs: u64,
}

impl Totals {
    fn add(&mut self, p: &Pruned) {
        self.problems += p.problems.len() as u64;
        self.notifications += p.notifications;
        self.runs += p.runs;
    }
}

/// What `/metrics` counts.
#[derive(Default, Clone)]
pub struct Counters {
    pub problems: Counter,
    pub notifications: Counter,
}

/// One pass over the store: every problem that ended more than `max_age` ago with nothing left
/// to do. `progress` sees the totals after each batch.
pub async fn pass(
    store: &Store,
    dir_sent: &Path,
    max_age: Duration,
    dry: bool,
    pause: Duration,
    mut progress: impl FnMut(&Totals),
) -> Result<Totals, StoreError> {
    let cutoff = now_ms() - i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
    let mut totals = Totals::default();
    let mut after = 0;
    loop {
        let batch = store.prune_candidates(cutoff, after, BATCH).await?;
        let Some((last, _, _)) = batch.last() else {
            return Ok(totals);
        };
        after = *last;
        let problems = batch.into_iter().map(|(_, s, k)| (s, k)).collect();
        let pruned = store.prune(problems, cutoff, dry).await?;
        if !dry && !pruned.problems.is_empty() {
            remove_sent(dir_sent, &pruned).await?;
        }
        totals.add(&pruned);
        progress(&totals);
        if !dry && !pruned.problems.is_empty() {
            tokio::time::sleep(pause).await;
        }
    }
}

/// The problems' `problems_sent/` files: views of what the store no longer has.
async fn remove_sent(dir: &Path, pruned: &Pruned) -> Result<(), StoreError> {
    let paths: Vec<PathBuf> = pruned
        .problems
        .iter()
        .map(|(source, key)| dir.join(crate::store::files::sent_name(*source, key)))
        .collect();
    tokio::task::spawn_blocking(move || {
        for path in paths {
            let _ = std::fs::remove_file(path);
        }
    })
    .await?;
    Ok(())
}

/// Prunes every `interval` while `retention` is set (a reload may set, change or clear it).
pub async fn run(
    store: Store,
    dir_sent: PathBuf,
    retention: Arc<Live<Option<RetentionConfig>>>,
    counters: Counters,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let wait = retention
            .get()
            .map_or(Duration::from_secs(60), |r| r.interval);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        let Some(r) = *retention.get() else {
            continue;
        };
        let started = std::time::Instant::now();
        let work = pass(&store, &dir_sent, r.max_age, false, PAUSE, |_| {});
        let result = tokio::select! {
            result = work => result,
            // A batch's transaction is atomic: stopping between batches loses nothing.
            _ = shutdown.changed() => return,
        };
        match result {
            Ok(t) if t.problems > 0 => {
                counters.problems.inc_by(t.problems);
                counters.notifications.inc_by(t.notifications);
                tracing::info!(
                    problems = t.problems, notifications = t.notifications, runs = t.runs,
                    max_age = %crate::keys::short_duration(r.max_age),
                    took_ms = started.elapsed().as_millis() as u64,
                    "pruned problems that ended before the retention period"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot prune; trying again at the next interval"),
        }
    }
}
