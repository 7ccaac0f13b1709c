//! Escalations on SQLite.

use super::rows::{all, one, optional};
use super::Sqlite;
use crate::domain::Source;
use crate::store::concerns::Escalations;
use crate::store::{Advance, EscalationRow, StepRow, StoreError};

const ESCALATION_COLUMNS: &str =
    "id, source, problem_key, notification_id, policy, state, round, pass, step, next_at_ms, held_by,
     code, started_at_ms, updated_at_ms, acked_at_ms, acked_by, acked_via";

impl Escalations for Sqlite {
    async fn start_escalation(&self, e: EscalationRow) -> Result<bool, StoreError> {
        self.write(move |c| {
            Ok(c.prepare_cached(
                "INSERT INTO escalations (source, problem_key, notification_id, policy, state,
                                          round, pass, step, next_at_ms, code, started_at_ms,
                                          updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, 'open', 0, 0, 0, ?5, ?6, ?7, ?7)
                 ON CONFLICT DO NOTHING",
            )?
            .execute(rusqlite::params![
                e.source,
                e.problem_key,
                e.notification_id,
                e.policy,
                e.next_at_ms,
                e.code,
                e.started_at_ms
            ])? > 0)
        })
        .await
    }

    async fn due_escalations(
        &self,
        now: i64,
        limit: i64,
    ) -> Result<Vec<EscalationRow>, StoreError> {
        self.reader.read(|c| {
            all(
                c,
                &format!(
                    "SELECT {ESCALATION_COLUMNS} FROM escalations
                      WHERE state = 'open' AND next_at_ms <= ?1 ORDER BY next_at_ms LIMIT ?2"
                ),
                [now, limit],
            )
        })
    }

    async fn record_step(&self, r: StepRow) -> Result<(), StoreError> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO escalation_steps (escalation_id, pass, step, started_at_ms, notified,
                                               actions, round)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
            )?
            .execute(rusqlite::params![
                r.escalation_id,
                r.pass,
                r.step,
                r.started_at_ms,
                r.notified,
                r.actions,
                r.round
            ])?;
            Ok(())
        })
        .await
    }

    async fn advance_escalation(
        &self,
        id: i64,
        round: i64,
        pass: i64,
        step: i64,
        to: Advance,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.write(move |c| {
            let (state, next_pass, next_step, at, held): (
                &str,
                i64,
                i64,
                Option<i64>,
                Option<String>,
            ) = match to {
                Advance::To { pass, step, at_ms } => ("open", pass, step, Some(at_ms), None),
                Advance::Ended => ("ended", pass, step, None, None),
                Advance::Held { by, at_ms } => ("open", 0, 0, Some(at_ms), Some(by)),
            };
            Ok(c.prepare_cached(
                "UPDATE escalations SET state = ?4, pass = ?5, step = ?6, next_at_ms = ?7,
                        round = round + (?8 IS NOT NULL AND held_by IS NULL),
                        held_by = ?8, updated_at_ms = ?9
                  WHERE id = ?1 AND pass = ?2 AND step = ?3 AND state = 'open' AND round = ?10",
            )?
            .execute(rusqlite::params![
                id, pass, step, state, next_pass, next_step, at, held, now, round
            ])? > 0)
        })
        .await
    }

    async fn acknowledge(
        &self,
        source: Source,
        problem_key: &str,
        by: String,
        via: String,
        now: i64,
    ) -> Result<Option<EscalationRow>, StoreError> {
        let key = problem_key.to_string();
        self.write(move |c| {
            let changed = c
                .prepare_cached(
                    "UPDATE escalations SET state = 'acked', next_at_ms = NULL, acked_at_ms = ?3,
                            acked_by = ?4, acked_via = ?5, updated_at_ms = ?3
                      WHERE source = ?1 AND problem_key = ?2 AND state IN ('open', 'ended')",
                )?
                .execute(rusqlite::params![source, key, now, by, via])?;
            if changed == 0 {
                return Ok(None);
            }
            optional(
                c,
                &format!(
                    "SELECT {ESCALATION_COLUMNS} FROM escalations
                      WHERE source = ?1 AND problem_key = ?2 AND state = 'acked'"
                ),
                rusqlite::params![source, key],
            )
        })
        .await
    }

    async fn unacknowledge(
        &self,
        source: Source,
        problem_key: &str,
        now: i64,
    ) -> Result<Option<EscalationRow>, StoreError> {
        let key = problem_key.to_string();
        self.write(move |c| {
            let changed = c
                .prepare_cached(
                    "UPDATE escalations SET state = 'open', pass = 0, step = 0, next_at_ms = ?3,
                            held_by = NULL, round = round + 1, acked_at_ms = NULL, acked_by = NULL,
                            acked_via = NULL, updated_at_ms = ?3
                      WHERE source = ?1 AND problem_key = ?2 AND state = 'acked'",
                )?
                .execute(rusqlite::params![source, key, now])?;
            if changed == 0 {
                return Ok(None);
            }
            optional(
                c,
                &format!(
                    "SELECT {ESCALATION_COLUMNS} FROM escalations
                      WHERE source = ?1 AND problem_key = ?2 AND state = 'open'"
                ),
                rusqlite::params![source, key],
            )
        })
        .await
    }

    async fn end_escalations(
        &self,
        source: Source,
        problem_key: String,
        state: String,
        now: i64,
    ) -> Result<u64, StoreError> {
        self.write(move |c| {
            Ok(c.prepare_cached(
                "UPDATE escalations SET state = ?3, next_at_ms = NULL, updated_at_ms = ?4
                  WHERE source = ?1 AND problem_key = ?2 AND state IN ('open', 'ended', 'acked')",
            )?
            .execute(rusqlite::params![source, problem_key, state, now])? as u64)
        })
        .await
    }

    async fn escalation_of(
        &self,
        source: Source,
        problem_key: &str,
    ) -> Result<Option<EscalationRow>, StoreError> {
        self.reader.read(|c| {
            optional(
                c,
                &format!(
                    "SELECT {ESCALATION_COLUMNS} FROM escalations
                      WHERE source = ?1 AND problem_key = ?2 ORDER BY id DESC LIMIT 1"
                ),
                rusqlite::params![source, problem_key],
            )
        })
    }

    async fn escalation(&self, id: i64) -> Result<Option<EscalationRow>, StoreError> {
        self.reader.read(|c| {
            optional(
                c,
                &format!("SELECT {ESCALATION_COLUMNS} FROM escalations WHERE id = ?1"),
                [id],
            )
        })
    }

    async fn escalation_by_code(&self, code: &str) -> Result<Option<EscalationRow>, StoreError> {
        self.reader.read(|c| {
            optional(
                c,
                &format!(
                    "SELECT {ESCALATION_COLUMNS} FROM escalations
                      WHERE code = ?1 AND state IN ('open', 'ended') ORDER BY id DESC LIMIT 1"
                ),
                [code],
            )
        })
    }

    async fn escalation_steps(&self, id: i64) -> Result<Vec<StepRow>, StoreError> {
        self.reader.read(|c| {
            all(
                c,
                "SELECT escalation_id, round, pass, step, started_at_ms, notified, actions
                   FROM escalation_steps WHERE escalation_id = ?1 ORDER BY round, pass, step",
                [id],
            )
        })
    }

    async fn open_escalations(&self) -> Result<i64, StoreError> {
        self.reader.read(|c| {
            one(
                c,
                "SELECT COUNT(*) FROM escalations WHERE state = 'open'",
                [],
            )
        })
    }

    async fn escalation_activity(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<(i64, Vec<i64>), StoreError> {
        self.reader.read(|c| {
            let steps: i64 = one(
                c,
                "SELECT COUNT(*) FROM escalation_steps
                  WHERE started_at_ms >= ?1 AND started_at_ms < ?2",
                [from_ms, to_ms],
            )?;
            let took: Vec<i64> = all(
                c,
                "SELECT acked_at_ms - started_at_ms FROM escalations
                  WHERE acked_at_ms >= ?1 AND acked_at_ms < ?2",
                [from_ms, to_ms],
            )?;
            Ok((steps, took))
        })
    }

    async fn shared_key(&self, name: &str, fresh: String) -> Result<String, StoreError> {
        let name = name.to_string();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO hub_keys (name, value) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            )?
            .execute(rusqlite::params![name, fresh])?;
            c.prepare_cached("SELECT value FROM hub_keys WHERE name = ?1")?
                .query_row([name], |r| r.get(0))
        })
        .await
    }
}
