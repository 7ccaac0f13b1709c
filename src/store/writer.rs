//! The single writer: group commit of whatever is waiting, then the files, then the answers.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use sqlx::{Connection, SqliteConnection};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};

use super::{files, Accepted, Job, StoreError};
use crate::domain::{Notification, Source};

/// Upper bound on one transaction, so one batch never holds the answers of a whole storm.
const MAX_BATCH: usize = 512;

pub(super) async fn run(
    mut conn: SqliteConnection,
    mut queue: mpsc::Receiver<Job>,
    dir: PathBuf,
    committed: Arc<Notify>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let jobs = std::mem::take(&mut batch);
        let results = commit(&mut conn, &dir, &jobs).await;
        committed.notify_one();
        for (job, result) in jobs.into_iter().zip(results) {
            // The requester may have gone away (client hung up); its notification is stored anyway.
            let _ = job.reply.send(result);
        }
    }
}

/// A row as decided inside the transaction.
struct Planned {
    accepted: Accepted,
    /// Whether the file must be written (new) or only checked (duplicate).
    new: bool,
}

async fn commit(
    conn: &mut SqliteConnection,
    dir: &Path,
    jobs: &[Job],
) -> Vec<Result<Accepted, StoreError>> {
    let planned = match insert_all(conn, jobs).await {
        Ok(planned) => planned,
        Err(e) => {
            tracing::error!(error = %e, batch = jobs.len(), "cannot commit notifications");
            let reason = format!("cannot commit to the store: {e}");
            return jobs
                .iter()
                .map(|_| Err(StoreError::NotStored(reason.clone())))
                .collect();
        }
    };

    let writes: Vec<(String, Vec<u8>, bool)> = planned
        .iter()
        .zip(jobs)
        .map(|(p, j)| {
            (
                p.accepted.file_name().to_string(),
                j.notification.body.clone(),
                p.new,
            )
        })
        .collect();
    let dir = dir.to_path_buf();
    let file_results = tokio::task::spawn_blocking(move || write_files(&dir, &writes)).await;
    let file_results = match file_results {
        Ok(r) => r,
        Err(e) => vec![Err(e.to_string()); planned.len()],
    };

    planned
        .into_iter()
        .zip(file_results)
        .map(|(p, written)| match written {
            Ok(()) => Ok(p.accepted),
            Err(reason) => Err(StoreError::NotStored(format!(
                "stored in the database but cannot write {}: {reason}",
                p.accepted.file_name()
            ))),
        })
        .collect()
}

async fn insert_all(
    conn: &mut SqliteConnection,
    jobs: &[Job],
) -> Result<Vec<Planned>, sqlx::Error> {
    let received_at_ms = super::now_ms();
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let mut planned = Vec::with_capacity(jobs.len());
    for job in jobs {
        let n = &job.notification;
        let sha = Sha256::digest(n.identity.as_deref().unwrap_or(&n.body)).to_vec();
        let facts = serde_json::to_string(&n.facts).ok();
        let existing: Option<(i64, String)> = sqlx::query_as(
            "SELECT id, file_name FROM notifications
             WHERE source = ? AND problem_key = ? AND state = ? AND body_sha256 = ?",
        )
        .bind(n.source.as_str())
        .bind(&n.problem_key)
        .bind(&n.state)
        .bind(&sha)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((id, file_name)) = existing {
            sqlx::query("UPDATE notifications SET duplicates = duplicates + 1 WHERE id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            planned.push(Planned {
                accepted: Accepted::Duplicate { id, file_name },
                new: false,
            });
            continue;
        }
        let file_name = free_name(&mut tx, n).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO notifications
               (source, problem_key, state, pid, title, is_test, body, body_sha256, file_name,
                received_at_ms, facts)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             RETURNING id",
        )
        .bind(n.source.as_str())
        .bind(&n.problem_key)
        .bind(&n.state)
        .bind(&n.pid)
        .bind(&n.title)
        .bind(n.is_test)
        .bind(&n.body)
        .bind(&sha)
        .bind(&file_name)
        .bind(received_at_ms)
        .bind(facts)
        .fetch_one(&mut *tx)
        .await?;
        if needs_enrichment(n) {
            sqlx::query(
                "INSERT INTO enrichments (notification_id, next_attempt_at_ms, updated_at_ms)
                 VALUES (?, ?, ?)",
            )
            .bind(id)
            .bind(received_at_ms)
            .bind(received_at_ms)
            .execute(&mut *tx)
            .await?;
        }
        if !n.is_test {
            sqlx::query("INSERT INTO plans (notification_id, updated_at_ms) VALUES (?, ?)")
                .bind(id)
                .bind(received_at_ms)
                .execute(&mut *tx)
                .await?;
        }
        planned.push(Planned {
            accepted: Accepted::Stored { id, file_name },
            new: true,
        });
    }
    tx.commit().await?;
    Ok(planned)
}

/// Real Dynatrace problems are enriched from the API; a sender's self-test never is.
fn needs_enrichment(n: &Notification) -> bool {
    n.source == Source::Dynatrace && !n.is_test && n.pid.is_some()
}

/// The first candidate name no stored notification uses. Only the writer inserts, so a name found
/// free here is still free when this transaction commits.
async fn free_name(conn: &mut SqliteConnection, n: &Notification) -> Result<String, sqlx::Error> {
    // Dynatrace keeps the sample's names; the others say where they came from.
    let prefix = (n.source != Source::Dynatrace).then(|| n.source.as_str());
    let stem = files::stem(prefix, &n.problem_key, &n.state);
    let mut n = 1;
    loop {
        let name = files::candidate(&stem, n);
        let taken: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM notifications WHERE file_name = ?")
                .bind(&name)
                .fetch_optional(&mut *conn)
                .await?;
        if taken.is_none() {
            return Ok(name);
        }
        n += 1;
    }
}

/// Writes new files; for a duplicate, writes its file only if it is missing (an earlier attempt
/// committed but failed to write it, and the sender is retrying). All made durable together.
fn write_files(dir: &Path, writes: &[(String, Vec<u8>, bool)]) -> Vec<Result<(), String>> {
    let todo: Vec<usize> = (0..writes.len())
        .filter(|&i| {
            let (name, _, new) = &writes[i];
            *new || !dir.join(name).is_file()
        })
        .collect();
    let batch: Vec<(&str, &[u8])> = todo
        .iter()
        .map(|&i| (writes[i].0.as_str(), writes[i].1.as_slice()))
        .collect();
    let written = files::write_batch(dir, &batch);
    let mut results: Vec<Result<(), String>> = vec![Ok(()); writes.len()];
    for (i, r) in todo.into_iter().zip(written) {
        results[i] = r.map_err(|e| e.to_string());
    }
    results
}
