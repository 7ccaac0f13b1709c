//! Silences, held runs and heartbeats on SQLite.

use super::rows::{all, optional};
use super::Sqlite;
use crate::domain::Source;
use crate::store::concerns::Quiet;
use crate::store::{RunRow, SilenceRow, StoreError};

const SILENCE_COLUMNS: &str = "id, matchers, starts_at_ms, ends_at_ms, comment, author,
     created_at_ms, expired_at_ms, renotify, settled_at_ms";

const LAST_CLOSE: &str = "SELECT MAX(id) FROM notifications
     WHERE source = ?1 AND problem_key = ?2 AND id < ?3
       AND UPPER(state) IN ('RESOLVED', 'CLOSED', 'MERGED', 'OK') AND is_test = 0";
const LAST_OPEN: &str = "SELECT MAX(id) FROM notifications
     WHERE source = ?1 AND problem_key = ?2 AND id < ?3
       AND UPPER(state) NOT IN ('RESOLVED', 'CLOSED', 'MERGED', 'OK') AND is_test = 0";

impl Quiet for Sqlite {
    async fn add_silence(&self, s: SilenceRow) -> Result<(), StoreError> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO silences (id, matchers, starts_at_ms, ends_at_ms, comment, author,
                                       created_at_ms, renotify)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(rusqlite::params![
                s.id,
                s.matchers,
                s.starts_at_ms,
                s.ends_at_ms,
                s.comment,
                s.author,
                s.created_at_ms,
                s.renotify
            ])?;
            Ok(())
        })
        .await
    }

    /// Silences that have not ended, or ended after `ended_after_ms`, newest first.
    async fn silences(&self, ended_after_ms: i64) -> Result<Vec<SilenceRow>, StoreError> {
        self.reader.read(|c| {
            all(
                c,
                &format!(
                    "SELECT {SILENCE_COLUMNS} FROM silences
                     WHERE MIN(ends_at_ms, COALESCE(expired_at_ms, ends_at_ms)) > ?1
                     ORDER BY created_at_ms DESC"
                ),
                [ended_after_ms],
            )
        })
    }

    async fn silence(&self, id: &str) -> Result<Option<SilenceRow>, StoreError> {
        self.reader.read(|c| {
            optional(
                c,
                &format!("SELECT {SILENCE_COLUMNS} FROM silences WHERE id = ?1"),
                [id],
            )
        })
    }

    /// Ends a silence now; `false` when it had ended already.
    async fn expire_silence(&self, id: String, now: i64) -> Result<bool, StoreError> {
        self.write(move |c| {
            Ok(c.prepare_cached(
                "UPDATE silences SET expired_at_ms = ?2
                  WHERE id = ?1 AND expired_at_ms IS NULL AND ends_at_ms > ?2",
            )?
            .execute(rusqlite::params![id, now])?
                > 0)
        })
        .await
    }

    /// Silences that ended and whose end was not handled yet.
    async fn silences_to_settle(&self, now: i64) -> Result<Vec<SilenceRow>, StoreError> {
        self.reader.read(|c| {
            all(
                c,
                &format!(
                    "SELECT {SILENCE_COLUMNS} FROM silences
                     WHERE settled_at_ms IS NULL
                       AND (ends_at_ms <= ?1 OR expired_at_ms IS NOT NULL)"
                ),
                [now],
            )
        })
    }

    async fn settle_silence(&self, id: String, now: i64) -> Result<(), StoreError> {
        self.write(move |c| {
            c.prepare_cached("UPDATE silences SET settled_at_ms = ?2 WHERE id = ?1")?
                .execute(rusqlite::params![id, now])?;
            Ok(())
        })
        .await
    }

    /// The silenced runs `held_by` holds.
    async fn held_runs(&self, held_by: &str) -> Result<Vec<RunRow>, StoreError> {
        self.reader.read(|c| {
            super::reader::runs(
                c,
                "WHERE held_by = ?1 AND status = 'silenced' ORDER BY id",
                [held_by],
            )
        })
    }

    /// Puts silenced runs back in the queue, due now, saying why; or, with `release` false, lets
    /// them go (they stay silenced, held by nothing).
    async fn release_runs(
        &self,
        ids: Vec<i64>,
        release: bool,
        note: String,
    ) -> Result<(), StoreError> {
        let now = crate::clock::now_ms();
        self.write(move |c| {
            let mut release_one = c.prepare_cached(
                "UPDATE action_runs SET status = 'pending', held_by = NULL, next_attempt_at_ms = ?2,
                        updated_at_ms = ?2, last_error = ?3
                  WHERE id = ?1 AND status = 'silenced'",
            )?;
            let mut let_go = c.prepare_cached(
                "UPDATE action_runs SET held_by = NULL WHERE id = ?1 AND status = 'silenced'",
            )?;
            for id in ids {
                if release {
                    release_one.execute(rusqlite::params![id, now, note])?;
                } else {
                    let_go.execute([id])?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Every holder that silenced runs are still held by.
    async fn holders(&self) -> Result<Vec<String>, StoreError> {
        self.reader.read(|c| {
            all(
                c,
                "SELECT DISTINCT held_by FROM action_runs
                  WHERE held_by IS NOT NULL AND status = 'silenced'",
                [],
            )
        })
    }

    /// Moves silenced runs under another holder (a silence that still covers them).
    async fn rehold_runs(&self, ids: Vec<i64>, held_by: String) -> Result<(), StoreError> {
        self.write(move |c| {
            let mut stmt = c.prepare_cached(
                "UPDATE action_runs SET held_by = ?2 WHERE id = ?1 AND status = 'silenced'",
            )?;
            for id in ids {
                stmt.execute(rusqlite::params![id, held_by])?;
            }
            Ok(())
        })
        .await
    }

    /// The closing notification before the open episode `id` belongs to (see `Store::episode`).
    async fn episode(
        &self,
        source: Source,
        problem_key: &str,
        id: i64,
        closed: bool,
    ) -> Result<Option<i64>, StoreError> {
        self.reader.read(|c| {
            let mut opened = id;
            if closed {
                let last_open: Option<i64> =
                    optional(c, LAST_OPEN, (source, problem_key, id))?.flatten();
                match last_open {
                    Some(o) => opened = o,
                    None => return Ok(None),
                }
            }
            Ok(optional::<Option<i64>>(c, LAST_CLOSE, (source, problem_key, opened))?.flatten())
        })
    }

    async fn beat(&self, name: String, at_ms: i64) -> Result<(), StoreError> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO heartbeats (name, last_beat_ms) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE
                    SET last_beat_ms = MAX(last_beat_ms, excluded.last_beat_ms)",
            )?
            .execute(rusqlite::params![name, at_ms])?;
            Ok(())
        })
        .await
    }

    async fn beats(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.reader.read(|c| {
            all(
                c,
                "SELECT name, last_beat_ms FROM heartbeats ORDER BY name",
                [],
            )
        })
    }
}
