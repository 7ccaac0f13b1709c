//! The dispatcher: work that happens after a notification is answered.
//!
//! Today that is enrichment: fetch the Dynatrace problem's details and write them to
//! `dir_sent/<ProblemID>.json`. The queue is the store itself (pending rows that are due), so nothing
//! is lost across a crash and a restart picks up where the last run stopped.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::Notify;

use crate::dynatrace::Client;
use crate::store::{files, now_ms, DueEnrichment, EnrichmentOutcome, Store, StoreError};

/// How often the queue is looked at when nothing wakes the dispatcher.
const IDLE_POLL: Duration = Duration::from_secs(1);
const BATCH: i64 = 16;
/// Retry delays for an unreachable tenant: 1 s doubling up to 5 min, with jitter.
const FIRST_RETRY_MS: i64 = 1_000;
const MAX_RETRY_MS: i64 = 300_000;

pub struct Dispatcher {
    pub store: Store,
    pub client: Client,
    pub dir_sent: PathBuf,
    pub wake: Arc<Notify>,
}

impl Dispatcher {
    pub async fn run(self) {
        loop {
            match self.step().await {
                Ok(0) => {
                    let _ = tokio::time::timeout(IDLE_POLL, self.wake.notified()).await;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "dispatcher cannot read its queue; trying again");
                    tokio::time::sleep(IDLE_POLL).await;
                }
            }
        }
    }

    /// Works through what is due now; returns how many items it handled. Tests call it directly.
    pub async fn step(&self) -> Result<usize, StoreError> {
        let due = self.store.due_enrichments(BATCH).await?;
        for item in &due {
            self.enrich(item).await?;
        }
        Ok(due.len())
    }

    async fn enrich(&self, item: &DueEnrichment) -> Result<(), StoreError> {
        let Some(pid) = &item.pid else {
            return self
                .store
                .record_enrichment(item.notification_id, EnrichmentOutcome::Failed("no PID"))
                .await;
        };
        let outcome = match self.client.problem(pid).await {
            Ok(details) => match self.write_sent(item, pid, details).await {
                Ok(name) => {
                    tracing::info!(problem_id = ?item.problem_key, pid = ?pid, file = %name, "enriched");
                    return self
                        .store
                        .record_enrichment(item.notification_id, EnrichmentOutcome::Done)
                        .await;
                }
                Err(e) => (format!("cannot write to dir_sent: {e}"), true),
            },
            Err(e) => (e.to_string(), e.is_transient()),
        };
        let (error, transient) = outcome;
        if transient {
            let delay = retry_delay(item.attempts);
            tracing::warn!(
                problem_id = ?item.problem_key, error = %error, retry_in_ms = delay,
                "enrichment failed; will retry"
            );
            self.store
                .record_enrichment(
                    item.notification_id,
                    EnrichmentOutcome::Retry {
                        error: &error,
                        at_ms: now_ms() + delay,
                    },
                )
                .await
        } else {
            tracing::error!(problem_id = ?item.problem_key, error = %error, "enrichment failed for good");
            self.store
                .record_enrichment(item.notification_id, EnrichmentOutcome::Failed(&error))
                .await
        }
    }

    async fn write_sent(
        &self,
        item: &DueEnrichment,
        pid: &str,
        details: serde_json::Value,
    ) -> std::io::Result<String> {
        let name = format!("{}.json", files::sanitize(&item.problem_key));
        let doc = json!({
            "problem_id": item.problem_key,
            "pid": pid,
            "state": item.state,
            "enriched_at_ms": now_ms(),
            "details": details,
        });
        let bytes = serde_json::to_vec_pretty(&doc).map_err(std::io::Error::other)?;
        let dir = self.dir_sent.clone();
        let file = name.clone();
        tokio::task::spawn_blocking(move || {
            files::write_atomic(&dir, &file, &bytes)?;
            files::sync_dir(&dir)
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok(name)
    }
}

fn retry_delay(attempts: i64) -> i64 {
    let exp = FIRST_RETRY_MS.saturating_mul(1_i64 << attempts.clamp(0, 20));
    let capped = exp.min(MAX_RETRY_MS);
    capped / 2 + fastrand::i64(0..=capped / 2)
}
