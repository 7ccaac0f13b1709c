//! Read-only queries for the status page, the JSON API and the metrics, on PostgreSQL. Counts come
//! from the store, so every instance shows the whole cluster.

use super::rows::{all, one, optional};
use super::Postgres;
use crate::clock::now_ms;
use crate::domain::Source;
use crate::store::{
    ActionCounts, HourCount, InstanceRow, NotificationRow, ProblemRow, SourceCounts, StoreError,
};

impl Postgres {
    pub async fn source_counts(&self) -> Result<Vec<SourceCounts>, StoreError> {
        let c = self.pool.get().await?;
        all(
            &c,
            "SELECT source,
                    COUNT(*) FILTER (WHERE NOT is_test) AS received,
                    COUNT(*) FILTER (WHERE is_test) AS test,
                    SUM(duplicates)::BIGINT AS duplicate
             FROM notifications GROUP BY source ORDER BY source",
            &[],
        )
        .await
    }

    pub async fn action_counts(&self) -> Result<Vec<ActionCounts>, StoreError> {
        let c = self.pool.get().await?;
        all(
            &c,
            "SELECT action,
                    COUNT(*) FILTER (WHERE status = 'succeeded') AS succeeded,
                    COUNT(*) FILTER (WHERE status = 'failed') AS failed,
                    COUNT(*) FILTER (WHERE status = 'pending' AND attempts = 0) AS pending,
                    COUNT(*) FILTER (WHERE status = 'pending' AND attempts > 0) AS retrying,
                    COUNT(*) FILTER (WHERE status = 'running') AS running,
                    COUNT(*) FILTER (WHERE status = 'held_back') AS held_back
             FROM action_runs GROUP BY action ORDER BY action",
            &[],
        )
        .await
    }

    pub async fn waiting_runs_by_action(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let c = self.pool.get().await?;
        all(
            &c,
            "SELECT action, COUNT(*) FROM action_runs
             WHERE status IN ('pending', 'running') GROUP BY action ORDER BY action",
            &[],
        )
        .await
    }

    pub async fn latest_notifications(
        &self,
        page: i64,
        per_page: i64,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        let c = self.pool.get().await?;
        all(
            &c,
            "SELECT id, source, problem_key, state, title, is_test, duplicates, file_name,
                    received_at_ms
             FROM notifications ORDER BY id DESC LIMIT $1 OFFSET $2",
            &[&per_page, &(page.max(0) * per_page)],
        )
        .await
    }

    pub async fn problems(&self, page: i64, per_page: i64) -> Result<Vec<ProblemRow>, StoreError> {
        let c = self.pool.get().await?;
        all(
            &c,
            "SELECT n.source, n.problem_key, n.state, n.title,
                    n.received_at_ms AS last_received_at_ms,
                    (SELECT COUNT(*) FROM notifications x
                     WHERE x.source = n.source AND x.problem_key = n.problem_key) AS notifications,
                    COUNT(r.id) AS runs,
                    COUNT(r.id) FILTER (WHERE r.status = 'succeeded') AS runs_succeeded,
                    COUNT(r.id) FILTER (WHERE r.status IN ('failed', 'held_back')) AS runs_failed,
                    COUNT(r.id) FILTER (WHERE r.status IN ('pending', 'running')) AS runs_open
             FROM notifications n
             LEFT JOIN action_runs r ON r.source = n.source AND r.problem_key = n.problem_key
             WHERE n.id = (SELECT MAX(id) FROM notifications y
                           WHERE y.source = n.source AND y.problem_key = n.problem_key)
             GROUP BY n.id
             ORDER BY n.id DESC LIMIT $1 OFFSET $2",
            &[&per_page, &(page.max(0) * per_page)],
        )
        .await
    }

    pub async fn problem_notifications(
        &self,
        source: Source,
        problem_key: &str,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        let c = self.pool.get().await?;
        all(
            &c,
            "SELECT id, source, problem_key, state, title, is_test, duplicates, file_name,
                    received_at_ms
             FROM notifications WHERE source = $1 AND problem_key = $2 ORDER BY id",
            &[&source, &problem_key],
        )
        .await
    }

    pub async fn source_of(&self, problem_key: &str) -> Result<Option<Source>, StoreError> {
        let c = self.pool.get().await?;
        optional(
            &c,
            "SELECT source FROM notifications WHERE problem_key = $1 ORDER BY id DESC LIMIT 1",
            &[&problem_key],
        )
        .await
    }

    pub async fn hourly_counts(&self) -> Result<Vec<HourCount>, StoreError> {
        let since = now_ms() - 24 * 3_600_000;
        let c = self.pool.get().await?;
        all(
            &c,
            "SELECT source, received_at_ms / 3600000 AS hour, COUNT(*) AS count
             FROM notifications WHERE received_at_ms >= $1
             GROUP BY source, hour ORDER BY hour",
            &[&since],
        )
        .await
    }

    pub async fn attempts(
        &self,
        run_id: i64,
    ) -> Result<Vec<(i64, bool, i64, Option<String>)>, StoreError> {
        let c = self.pool.get().await?;
        all(
            &c,
            "SELECT number, manual, started_at_ms, result FROM action_attempts
             WHERE run_id = $1 ORDER BY number",
            &[&run_id],
        )
        .await
    }

    pub async fn export_batch(
        &self,
        after_id: i64,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, Vec<u8>)>, StoreError> {
        let c = self.pool.get().await?;
        all(
            &c,
            "SELECT id, file_name, body FROM notifications
             WHERE id > $1 AND received_at_ms >= $2 ORDER BY id LIMIT $3",
            &[&after_id, &since_ms, &limit],
        )
        .await
    }

    pub async fn pending_runs(&self) -> Result<i64, StoreError> {
        let c = self.pool.get().await?;
        one(
            &c,
            "SELECT COUNT(*) FROM action_runs WHERE status = 'pending'",
            &[],
        )
        .await
    }

    /// Every instance that ran on this store, newest first, with its runs in flight.
    pub async fn instances(&self) -> Result<Vec<InstanceRow>, StoreError> {
        let c = self.pool.get().await?;
        all(
            &c,
            "SELECT i.name, i.started_at_ms, i.last_seen_ms,
                    (SELECT COUNT(*) FROM action_runs r
                     WHERE r.status = 'running' AND r.instance = i.name) AS runs_in_flight
             FROM instances i ORDER BY i.last_seen_ms DESC",
            &[],
        )
        .await
    }
}
