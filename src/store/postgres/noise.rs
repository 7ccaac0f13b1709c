//! Silences, held runs and heartbeats on PostgreSQL, shared by every instance.

use super::rows::{all, exec, optional};
use super::Postgres;
use crate::domain::Source;
use crate::store::concerns::Quiet;
use crate::store::{RunRow, SilenceRow, StoreError};

const SILENCE_COLUMNS: &str = "id, matchers, starts_at_ms, ends_at_ms, comment, author,
     created_at_ms, expired_at_ms, renotify, settled_at_ms";

impl Quiet for Postgres {
    async fn add_silence(&self, s: SilenceRow) -> Result<(), StoreError> {
        exec(
            &self.pool.get().await?,
            "INSERT INTO silences (id, matchers, starts_at_ms, ends_at_ms, comment, author,
                                   created_at_ms, renotify)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &s.id,
                &s.matchers,
                &s.starts_at_ms,
                &s.ends_at_ms,
                &s.comment,
                &s.author,
                &s.created_at_ms,
                &s.renotify,
            ],
        )
        .await?;
        Ok(())
    }

    async fn silences(&self, ended_after_ms: i64) -> Result<Vec<SilenceRow>, StoreError> {
        all(
            &self.pool.get().await?,
            &format!(
                "SELECT {SILENCE_COLUMNS} FROM silences
                 WHERE LEAST(ends_at_ms, COALESCE(expired_at_ms, ends_at_ms)) > $1
                 ORDER BY created_at_ms DESC"
            ),
            &[&ended_after_ms],
        )
        .await
    }

    async fn silence(&self, id: &str) -> Result<Option<SilenceRow>, StoreError> {
        optional(
            &self.pool.get().await?,
            &format!("SELECT {SILENCE_COLUMNS} FROM silences WHERE id = $1"),
            &[&id],
        )
        .await
    }

    async fn expire_silence(&self, id: String, now: i64) -> Result<bool, StoreError> {
        Ok(exec(
            &self.pool.get().await?,
            "UPDATE silences SET expired_at_ms = $2
              WHERE id = $1 AND expired_at_ms IS NULL AND ends_at_ms > $2",
            &[&id, &now],
        )
        .await?
            > 0)
    }

    async fn silences_to_settle(&self, now: i64) -> Result<Vec<SilenceRow>, StoreError> {
        all(
            &self.pool.get().await?,
            &format!(
                "SELECT {SILENCE_COLUMNS} FROM silences
                 WHERE settled_at_ms IS NULL
                   AND (ends_at_ms <= $1 OR expired_at_ms IS NOT NULL)"
            ),
            &[&now],
        )
        .await
    }

    async fn settle_silence(&self, id: String, now: i64) -> Result<(), StoreError> {
        exec(
            &self.pool.get().await?,
            "UPDATE silences SET settled_at_ms = $2 WHERE id = $1",
            &[&id, &now],
        )
        .await?;
        Ok(())
    }

    async fn held_runs(&self, held_by: &str) -> Result<Vec<RunRow>, StoreError> {
        all(
            &self.pool.get().await?,
            &format!(
                "SELECT {} FROM action_runs WHERE held_by = $1 AND status = 'silenced' ORDER BY id",
                super::queue::RUN_COLUMNS
            ),
            &[&held_by],
        )
        .await
    }

    async fn release_runs(
        &self,
        ids: Vec<i64>,
        release: bool,
        note: String,
    ) -> Result<(), StoreError> {
        let now = crate::clock::now_ms();
        let c = self.pool.get().await?;
        if release {
            exec(
                &c,
                "UPDATE action_runs SET status = 'pending', held_by = NULL, next_attempt_at_ms = $2,
                        updated_at_ms = $2, last_error = $3
                  WHERE id = ANY($1) AND status = 'silenced'",
                &[&ids, &now, &note],
            )
            .await?;
        } else {
            exec(
                &c,
                "UPDATE action_runs SET held_by = NULL WHERE id = ANY($1) AND status = 'silenced'",
                &[&ids],
            )
            .await?;
        }
        Ok(())
    }

    async fn holders(&self) -> Result<Vec<String>, StoreError> {
        all(
            &self.pool.get().await?,
            "SELECT DISTINCT held_by FROM action_runs
              WHERE held_by IS NOT NULL AND status = 'silenced'",
            &[],
        )
        .await
    }

    async fn rehold_runs(&self, ids: Vec<i64>, held_by: String) -> Result<(), StoreError> {
        exec(
            &self.pool.get().await?,
            "UPDATE action_runs SET held_by = $2 WHERE id = ANY($1) AND status = 'silenced'",
            &[&ids, &held_by],
        )
        .await?;
        Ok(())
    }

    async fn episode(
        &self,
        source: Source,
        problem_key: &str,
        id: i64,
        closed: bool,
    ) -> Result<Option<i64>, StoreError> {
        let c = self.pool.get().await?;
        let mut opened = id;
        if closed {
            let last_open: Option<i64> = optional::<Option<i64>>(
                &c,
                "SELECT MAX(id) FROM notifications
                  WHERE source = $1 AND problem_key = $2 AND id < $3
                    AND UPPER(state) NOT IN ('RESOLVED', 'CLOSED', 'MERGED', 'OK') AND NOT is_test",
                &[&source, &problem_key, &id],
            )
            .await?
            .flatten();
            match last_open {
                Some(o) => opened = o,
                None => return Ok(None),
            }
        }
        Ok(optional::<Option<i64>>(
            &c,
            "SELECT MAX(id) FROM notifications
              WHERE source = $1 AND problem_key = $2 AND id < $3
                AND UPPER(state) IN ('RESOLVED', 'CLOSED', 'MERGED', 'OK') AND NOT is_test",
            &[&source, &problem_key, &opened],
        )
        .await?
        .flatten())
    }

    async fn beat(&self, name: String, at_ms: i64) -> Result<(), StoreError> {
        exec(
            &self.pool.get().await?,
            "INSERT INTO heartbeats (name, last_beat_ms) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE
                SET last_beat_ms = GREATEST(heartbeats.last_beat_ms, excluded.last_beat_ms)",
            &[&name, &at_ms],
        )
        .await?;
        Ok(())
    }

    async fn beats(&self) -> Result<Vec<(String, i64)>, StoreError> {
        all(
            &self.pool.get().await?,
            "SELECT name, last_beat_ms FROM heartbeats ORDER BY name",
            &[],
        )
        .await
    }
}
