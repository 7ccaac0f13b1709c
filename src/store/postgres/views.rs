//! Read-only queries for the status page, the JSON API and the metrics, on PostgreSQL. Counts come
//! from the store, so every instance shows the whole cluster.

use super::rows::{all, one, optional};
use super::Postgres;
use crate::clock::now_ms;
use crate::domain::Source;
use crate::store::concerns::Views;
use crate::store::{
    ActionCounts, Backlog, HourCount, NotificationRow, Page, ProblemRow, SourceCounts, StoreError,
};

impl Views for Postgres {
    async fn source_counts(&self) -> Result<Vec<SourceCounts>, StoreError> {
        let c = self.pool.get().await?;
        all(
            &c,
            "SELECT source, SUM(received)::BIGINT AS received, SUM(test)::BIGINT AS test,
                    SUM(duplicate)::BIGINT AS duplicate
             FROM source_counts GROUP BY source
             HAVING SUM(received + test + duplicate) > 0 ORDER BY source",
            &[],
        )
        .await
    }

    async fn action_counts(&self) -> Result<Vec<ActionCounts>, StoreError> {
        let c = self.pool.get().await?;
        all(
            &c,
            "SELECT action,
                    COALESCE(SUM(runs) FILTER (WHERE bucket = 'succeeded'), 0)::BIGINT AS succeeded,
                    COALESCE(SUM(runs) FILTER (WHERE bucket = 'failed'), 0)::BIGINT AS failed,
                    COALESCE(SUM(runs) FILTER (WHERE bucket = 'pending'), 0)::BIGINT AS pending,
                    COALESCE(SUM(runs) FILTER (WHERE bucket = 'retrying'), 0)::BIGINT AS retrying,
                    COALESCE(SUM(runs) FILTER (WHERE bucket = 'running'), 0)::BIGINT AS running,
                    COALESCE(SUM(runs) FILTER (WHERE bucket = 'held_back'), 0)::BIGINT AS held_back,
                    COALESCE(SUM(runs) FILTER (WHERE bucket = 'silenced'), 0)::BIGINT AS silenced,
                    COALESCE(SUM(runs) FILTER (WHERE bucket = 'suppressed'), 0)::BIGINT AS suppressed
             FROM run_counts GROUP BY action HAVING SUM(runs) > 0 ORDER BY action",
            &[],
        )
        .await
    }

    async fn backlogs(&self, now_ms: i64) -> Result<Vec<Backlog>, StoreError> {
        let c = self.pool.get().await?;
        all(
            &c,
            "SELECT action, COUNT(*) AS due, MIN(next_attempt_at_ms) AS oldest_due_ms
             FROM action_runs WHERE status = 'pending' AND next_attempt_at_ms <= $1
             GROUP BY action ORDER BY action",
            &[&now_ms],
        )
        .await
    }

    async fn waiting_runs_by_action(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let c = self.pool.get().await?;
        all(
            &c,
            "SELECT action, SUM(runs)::BIGINT FROM run_counts
             WHERE bucket IN ('pending', 'retrying', 'running')
             GROUP BY action HAVING SUM(runs) > 0 ORDER BY action",
            &[],
        )
        .await
    }

    async fn latest_notifications(&self, page: Page) -> Result<Vec<NotificationRow>, StoreError> {
        let c = self.pool.get().await?;
        all(
            &c,
            "SELECT id, source, problem_key, state, title, is_test, duplicates, file_name,
                    received_at_ms
             FROM notifications WHERE id < $1 ORDER BY id DESC LIMIT $2 OFFSET $3",
            &[&page.before, &page.limit, &page.skip],
        )
        .await
    }

    /// The page's problems are found first, walking the notifications down from `before`, and
    /// only those are counted.
    async fn problems(&self, page: Page) -> Result<Vec<ProblemRow>, StoreError> {
        let c = self.pool.get().await?;
        all(
            &c,
            "SELECT n.id AS newest_id, n.source, n.problem_key, n.state, n.title,
                    n.received_at_ms AS last_received_at_ms,
                    (SELECT COUNT(*) FROM notifications x
                     WHERE x.source = n.source AND x.problem_key = n.problem_key) AS notifications,
                    r.runs, r.runs_succeeded, r.runs_failed, r.runs_open
             FROM (SELECT id, source, problem_key, state, title, received_at_ms
                   FROM notifications p
                   WHERE p.id < $1
                     AND NOT EXISTS (SELECT 1 FROM notifications y
                                     WHERE y.source = p.source AND y.problem_key = p.problem_key
                                       AND y.id > p.id)
                   ORDER BY p.id DESC LIMIT $2 OFFSET $3) n
             CROSS JOIN LATERAL (
                 SELECT COUNT(*) AS runs,
                        COUNT(*) FILTER (WHERE status = 'succeeded') AS runs_succeeded,
                        COUNT(*) FILTER (WHERE status IN ('failed', 'held_back')) AS runs_failed,
                        COUNT(*) FILTER (WHERE status IN ('pending', 'running')) AS runs_open
                 FROM action_runs r
                 WHERE r.source = n.source AND r.problem_key = n.problem_key) r
             ORDER BY n.id DESC",
            &[&page.before, &page.limit, &page.skip],
        )
        .await
    }

    async fn problem_notifications(
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

    async fn source_of(&self, problem_key: &str) -> Result<Option<Source>, StoreError> {
        let c = self.pool.get().await?;
        optional(
            &c,
            "SELECT source FROM notifications WHERE problem_key = $1 ORDER BY id DESC LIMIT 1",
            &[&problem_key],
        )
        .await
    }

    async fn hourly_counts(&self) -> Result<Vec<HourCount>, StoreError> {
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

    async fn attempts(
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

    async fn export_batch(
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

    async fn pending_runs(&self) -> Result<i64, StoreError> {
        let c = self.pool.get().await?;
        one(
            &c,
            "SELECT COALESCE(SUM(runs), 0)::BIGINT FROM run_counts
             WHERE bucket IN ('pending', 'retrying')",
            &[],
        )
        .await
    }
}
