//! Read-only queries for the status page, the JSON API and the metrics.

use crate::domain::Source;

use super::rows::{all, one, optional};
use super::Sqlite;
use crate::clock::now_ms;
use crate::store::concerns::Views;
use crate::store::StoreError;
use crate::store::{
    ActionCounts, Backlog, HourCount, NotificationRow, Page, ProblemRow, SourceCounts,
};

impl Views for Sqlite {
    async fn source_counts(&self) -> Result<Vec<SourceCounts>, StoreError> {
        self.views
            .read(|c| {
                all(
                    c,
                    "SELECT source, received, test, duplicate AS duplicate FROM source_counts
                     WHERE received + test + duplicate > 0 ORDER BY source",
                    [],
                )
            })
            .await
    }

    async fn action_counts(&self) -> Result<Vec<ActionCounts>, StoreError> {
        self.views
            .read(|c| {
                all(
                    c,
                    "SELECT action,
                            SUM(CASE bucket WHEN 'succeeded' THEN runs ELSE 0 END) AS succeeded,
                            SUM(CASE bucket WHEN 'failed' THEN runs ELSE 0 END) AS failed,
                            SUM(CASE bucket WHEN 'pending' THEN runs ELSE 0 END) AS pending,
                            SUM(CASE bucket WHEN 'retrying' THEN runs ELSE 0 END) AS retrying,
                            SUM(CASE bucket WHEN 'running' THEN runs ELSE 0 END) AS running,
                            SUM(CASE bucket WHEN 'held_back' THEN runs ELSE 0 END) AS held_back,
                            SUM(CASE bucket WHEN 'silenced' THEN runs ELSE 0 END) AS silenced,
                            SUM(CASE bucket WHEN 'suppressed' THEN runs ELSE 0 END) AS suppressed
                     FROM run_counts GROUP BY action HAVING SUM(runs) > 0 ORDER BY action",
                    [],
                )
            })
            .await
    }

    /// Per action, its runs due now that wait to start, and since when the oldest waits.
    async fn backlogs(&self, now_ms: i64) -> Result<Vec<Backlog>, StoreError> {
        self.views
            .read(move |c| {
                all(
                    c,
                    "SELECT action, COUNT(*) AS due, MIN(next_attempt_at_ms) AS oldest_due_ms
                     FROM action_runs WHERE status = 'pending' AND next_attempt_at_ms <= ?1
                     GROUP BY action ORDER BY action",
                    [now_ms],
                )
            })
            .await
    }

    /// Runs not finished yet (pending, retrying or running), per action.
    async fn waiting_runs_by_action(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.views
            .read(|c| {
                all(
                    c,
                    "SELECT action, SUM(runs) FROM run_counts
                     WHERE bucket IN ('pending', 'retrying', 'running')
                     GROUP BY action HAVING SUM(runs) > 0 ORDER BY action",
                    [],
                )
            })
            .await
    }

    /// The newest notifications first.
    async fn latest_notifications(&self, page: Page) -> Result<Vec<NotificationRow>, StoreError> {
        self.views
            .read(move |c| {
                all(
                    c,
                    "SELECT id, source, problem_key, state, title, is_test, duplicates, file_name,
                            received_at_ms
                     FROM notifications WHERE id < ?1 ORDER BY id DESC LIMIT ?2 OFFSET ?3",
                    (page.before, page.limit, page.skip),
                )
            })
            .await
    }

    /// Problems by their newest notification, newest first. The page's problems are found first,
    /// walking the notifications down from `before`, and only those are counted.
    async fn problems(&self, page: Page) -> Result<Vec<ProblemRow>, StoreError> {
        self.views
            .read(move |c| {
                all(
                    c,
                    "SELECT n.id AS newest_id, n.source, n.problem_key, n.state, n.title,
                            n.received_at_ms AS last_received_at_ms,
                            (SELECT COUNT(*) FROM notifications x
                             WHERE x.source = n.source AND x.problem_key = n.problem_key)
                                AS notifications,
                            (SELECT COUNT(*) FROM action_runs r
                             WHERE r.source = n.source AND r.problem_key = n.problem_key) AS runs,
                            (SELECT COUNT(*) FROM action_runs r
                             WHERE r.source = n.source AND r.problem_key = n.problem_key
                               AND r.status = 'succeeded') AS runs_succeeded,
                            (SELECT COUNT(*) FROM action_runs r
                             WHERE r.source = n.source AND r.problem_key = n.problem_key
                               AND r.status IN ('failed', 'held_back')) AS runs_failed,
                            (SELECT COUNT(*) FROM action_runs r
                             WHERE r.source = n.source AND r.problem_key = n.problem_key
                               AND r.status IN ('pending', 'running')) AS runs_open
                     FROM (SELECT id, source, problem_key, state, title, received_at_ms
                           FROM notifications p
                           WHERE p.id < ?1
                             AND NOT EXISTS (SELECT 1 FROM notifications y
                                             WHERE y.source = p.source
                                               AND y.problem_key = p.problem_key AND y.id > p.id)
                           ORDER BY p.id DESC LIMIT ?2 OFFSET ?3) n
                     ORDER BY n.id DESC",
                    (page.before, page.limit, page.skip),
                )
            })
            .await
    }

    /// Every notification of a problem, oldest first.
    async fn problem_notifications(
        &self,
        source: Source,
        problem_key: &str,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        let problem_key = problem_key.to_string();
        self.views
            .read(move |c| {
                all(
                    c,
                    "SELECT id, source, problem_key, state, title, is_test, duplicates, file_name,
                            received_at_ms
                     FROM notifications WHERE source = ?1 AND problem_key = ?2 ORDER BY id",
                    (source, problem_key),
                )
            })
            .await
    }

    /// The source of the newest notification with this problem id, whichever source sent it.
    async fn source_of(&self, problem_key: &str) -> Result<Option<Source>, StoreError> {
        let problem_key = problem_key.to_string();
        self.views
            .read(move |c| {
                optional(
                    c,
                    "SELECT source FROM notifications WHERE problem_key = ?1
                     ORDER BY id DESC LIMIT 1",
                    (problem_key,),
                )
            })
            .await
    }

    async fn hourly_counts(&self) -> Result<Vec<HourCount>, StoreError> {
        let since = now_ms() - 24 * 3_600_000;
        self.views
            .read(move |c| {
                all(
                    c,
                    // Named: without statistics SQLite walks the (source, …) index for the
                    // GROUP BY, which reads every notification.
                    "SELECT source, received_at_ms / 3600000 AS hour, COUNT(*) AS count
                     FROM notifications INDEXED BY notifications_by_time
                     WHERE received_at_ms >= ?1
                     GROUP BY source, hour ORDER BY hour",
                    (since,),
                )
            })
            .await
    }

    /// A run's attempts: number, manual, started at, result (`None` while in flight).
    async fn attempts(
        &self,
        run_id: i64,
    ) -> Result<Vec<(i64, bool, i64, Option<String>)>, StoreError> {
        self.views
            .read(move |c| {
                all(
                    c,
                    "SELECT number, manual, started_at_ms, result FROM action_attempts
                     WHERE run_id = ?1 ORDER BY number",
                    (run_id,),
                )
            })
            .await
    }

    /// Notifications after `after_id` received since `since_ms`, by id: id, file name, body.
    async fn export_batch(
        &self,
        after_id: i64,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, Vec<u8>)>, StoreError> {
        self.views
            .read(move |c| {
                all(
                    c,
                    "SELECT id, file_name, body FROM notifications
                     WHERE id > ?1 AND received_at_ms >= ?2 ORDER BY id LIMIT ?3",
                    (after_id, since_ms, limit),
                )
            })
            .await
    }

    /// Runs waiting to start or to be retried.
    async fn pending_runs(&self) -> Result<i64, StoreError> {
        self.views
            .read(|c| {
                one(
                    c,
                    "SELECT COALESCE(SUM(runs), 0) FROM run_counts
                     WHERE bucket IN ('pending', 'retrying')",
                    [],
                )
            })
            .await
    }
}
