//! Read-only queries for the status page, the JSON API and the metrics.

use crate::domain::Source;
use serde::Serialize;

use super::{Store, StoreError};
use crate::clock::now_ms;

/// Per source: what was stored, what was a sender's test, how many redeliveries were answered.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct SourceCounts {
    pub source: Source,
    pub received: i64,
    pub test: i64,
    pub duplicate: i64,
}

/// Per action: runs by status; `retrying` are pending runs that failed at least once.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ActionCounts {
    pub action: String,
    pub succeeded: i64,
    pub failed: i64,
    pub pending: i64,
    pub retrying: i64,
    pub running: i64,
    pub held_back: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct NotificationRow {
    pub id: i64,
    pub source: Source,
    pub problem_key: String,
    pub state: String,
    pub title: Option<String>,
    pub is_test: bool,
    pub duplicates: i64,
    pub file_name: String,
    pub received_at_ms: i64,
}

/// A problem: the newest notification of a (source, id), and how its runs stand.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ProblemRow {
    pub source: Source,
    pub problem_key: String,
    pub state: String,
    pub title: Option<String>,
    pub last_received_at_ms: i64,
    pub notifications: i64,
    pub runs: i64,
    pub runs_succeeded: i64,
    pub runs_failed: i64,
    pub runs_open: i64,
}

/// Notifications in one hour of the last day, per source.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct HourCount {
    pub source: Source,
    /// Hours since the epoch.
    pub hour: i64,
    pub count: i64,
}

impl Store {
    pub async fn source_counts(&self) -> Result<Vec<SourceCounts>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT source,
                    SUM(CASE WHEN is_test THEN 0 ELSE 1 END) AS received,
                    SUM(CASE WHEN is_test THEN 1 ELSE 0 END) AS test,
                    SUM(duplicates) AS duplicate
             FROM notifications GROUP BY source ORDER BY source",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn action_counts(&self) -> Result<Vec<ActionCounts>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT action,
                    SUM(status = 'succeeded') AS succeeded,
                    SUM(status = 'failed') AS failed,
                    SUM(status = 'pending' AND attempts = 0) AS pending,
                    SUM(status = 'pending' AND attempts > 0) AS retrying,
                    SUM(status = 'running') AS running,
                    SUM(status = 'held_back') AS held_back
             FROM action_runs GROUP BY action ORDER BY action",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Runs not finished yet (pending, retrying or running), per action.
    pub async fn waiting_runs_by_action(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT action, COUNT(*) FROM action_runs
             WHERE status IN ('pending', 'running') GROUP BY action ORDER BY action",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The newest notifications first; `page` counts from 0.
    pub async fn latest_notifications(
        &self,
        page: i64,
        per_page: i64,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, source, problem_key, state, title, is_test, duplicates, file_name,
                    received_at_ms
             FROM notifications ORDER BY id DESC LIMIT ? OFFSET ?",
        )
        .bind(per_page)
        .bind(page.max(0) * per_page)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Problems by their newest notification, newest first; `page` counts from 0.
    pub async fn problems(&self, page: i64, per_page: i64) -> Result<Vec<ProblemRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT n.source, n.problem_key, n.state, n.title, n.received_at_ms AS last_received_at_ms,
                    (SELECT COUNT(*) FROM notifications x
                     WHERE x.source = n.source AND x.problem_key = n.problem_key) AS notifications,
                    COUNT(r.id) AS runs,
                    COALESCE(SUM(r.status = 'succeeded'), 0) AS runs_succeeded,
                    COALESCE(SUM(r.status IN ('failed', 'held_back')), 0) AS runs_failed,
                    COALESCE(SUM(r.status IN ('pending', 'running')), 0) AS runs_open
             FROM notifications n
             LEFT JOIN action_runs r ON r.source = n.source AND r.problem_key = n.problem_key
             WHERE n.id = (SELECT MAX(id) FROM notifications y
                           WHERE y.source = n.source AND y.problem_key = n.problem_key)
             GROUP BY n.id
             ORDER BY n.id DESC LIMIT ? OFFSET ?",
        )
        .bind(per_page)
        .bind(page.max(0) * per_page)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every notification of a problem, oldest first.
    pub async fn problem_notifications(
        &self,
        source: Source,
        problem_key: &str,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, source, problem_key, state, title, is_test, duplicates, file_name,
                    received_at_ms
             FROM notifications WHERE source = ? AND problem_key = ? ORDER BY id",
        )
        .bind(source)
        .bind(problem_key)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The source of the newest notification with this problem id, whichever source sent it.
    pub async fn source_of(&self, problem_key: &str) -> Result<Option<Source>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT source FROM notifications WHERE problem_key = ? ORDER BY id DESC LIMIT 1",
        )
        .bind(problem_key)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn hourly_counts(&self) -> Result<Vec<HourCount>, StoreError> {
        let since = now_ms() - 24 * 3_600_000;
        Ok(sqlx::query_as(
            "SELECT source, received_at_ms / 3600000 AS hour, COUNT(*) AS count
             FROM notifications WHERE received_at_ms >= ? GROUP BY source, hour ORDER BY hour",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }

    /// A run's attempts: number, manual, started at, result (`None` while in flight).
    pub async fn attempts(
        &self,
        run_id: i64,
    ) -> Result<Vec<(i64, bool, i64, Option<String>)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT number, manual, started_at_ms, result FROM action_attempts
             WHERE run_id = ? ORDER BY number",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Runs waiting to start or to be retried.
    pub async fn pending_runs(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM action_runs WHERE status = 'pending'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Asks for every given run to run again now, as a manual attempt; runs in flight are left
    /// alone. The dispatcher (of this hub, or of the one running on this store) does the work.
    /// Returns how many were scheduled.
    pub async fn schedule_replay(&self, run_ids: &[i64]) -> Result<u64, StoreError> {
        let (ids, now) = (run_ids.to_vec(), now_ms());
        self.write(move |c| {
            let mut schedule = c.prepare_cached(
                "UPDATE action_runs SET status = 'pending', manual = 1, next_attempt_at_ms = ?1,
                        updated_at_ms = ?1
                 WHERE id = ?2 AND status != 'running'",
            )?;
            let mut scheduled = 0;
            for id in ids {
                scheduled += schedule.execute(rusqlite::params![now, id])? as u64;
            }
            Ok(scheduled)
        })
        .await
    }
}
