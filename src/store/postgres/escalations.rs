//! Escalations on PostgreSQL, shared by every instance: a step is moved on by one conditional
//! update, so two instances never send it twice.

use super::rows::{all, exec, one, optional};
use super::Postgres;
use crate::domain::Source;
use crate::store::concerns::Escalations;
use crate::store::{Advance, EscalationRow, StepRow, StoreError};

const ESCALATION_COLUMNS: &str =
    "id, source, problem_key, notification_id, policy, state, round, pass, step, next_at_ms, held_by,
     code, started_at_ms, updated_at_ms, acked_at_ms, acked_by, acked_via";

impl Escalations for Postgres {
    async fn start_escalation(&self, e: EscalationRow) -> Result<bool, StoreError> {
        Ok(exec(
            &self.pool.get().await?,
            "INSERT INTO escalations (source, problem_key, notification_id, policy, state, round, pass,
                                      step, next_at_ms, code, started_at_ms, updated_at_ms)
             VALUES ($1, $2, $3, $4, 'open', 0, 0, 0, $5, $6, $7, $7)
             ON CONFLICT DO NOTHING",
            &[
                &e.source,
                &e.problem_key,
                &e.notification_id,
                &e.policy,
                &e.next_at_ms,
                &e.code,
                &e.started_at_ms,
            ],
        )
        .await?
            > 0)
    }

    async fn due_escalations(
        &self,
        now: i64,
        limit: i64,
    ) -> Result<Vec<EscalationRow>, StoreError> {
        all(
            &self.pool.get().await?,
            &format!(
                "SELECT {ESCALATION_COLUMNS} FROM escalations
                  WHERE state = 'open' AND next_at_ms <= $1 ORDER BY next_at_ms LIMIT $2"
            ),
            &[&now, &limit],
        )
        .await
    }

    async fn record_step(&self, r: StepRow) -> Result<(), StoreError> {
        exec(
            &self.pool.get().await?,
            "INSERT INTO escalation_steps (escalation_id, pass, step, started_at_ms, notified,
                                           actions, round)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            &[
                &r.escalation_id,
                &r.pass,
                &r.step,
                &r.started_at_ms,
                &r.notified,
                &r.actions,
                &r.round,
            ],
        )
        .await?;
        Ok(())
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
        let (state, next_pass, next_step, at, held): (&str, i64, i64, Option<i64>, Option<String>) =
            match to {
                Advance::To { pass, step, at_ms } => ("open", pass, step, Some(at_ms), None),
                Advance::Ended => ("ended", pass, step, None, None),
                Advance::Held { by, at_ms } => ("open", 0, 0, Some(at_ms), Some(by)),
            };
        Ok(exec(
            &self.pool.get().await?,
            "UPDATE escalations SET state = $4, pass = $5, step = $6, next_at_ms = $7,
                    round = round + CASE WHEN $8::TEXT IS NOT NULL AND held_by IS NULL
                                         THEN 1 ELSE 0 END,
                    held_by = $8, updated_at_ms = $9
              WHERE id = $1 AND pass = $2 AND step = $3 AND state = 'open' AND round = $10",
            &[
                &id, &pass, &step, &state, &next_pass, &next_step, &at, &held, &now, &round,
            ],
        )
        .await?
            > 0)
    }

    async fn acknowledge(
        &self,
        source: Source,
        problem_key: &str,
        by: String,
        via: String,
        now: i64,
    ) -> Result<Option<EscalationRow>, StoreError> {
        optional(
            &self.pool.get().await?,
            &format!(
                "UPDATE escalations SET state = 'acked', next_at_ms = NULL, acked_at_ms = $3,
                        acked_by = $4, acked_via = $5, updated_at_ms = $3
                  WHERE source = $1 AND problem_key = $2 AND state IN ('open', 'ended')
                 RETURNING {ESCALATION_COLUMNS}"
            ),
            &[&source, &problem_key, &now, &by, &via],
        )
        .await
    }

    async fn unacknowledge(
        &self,
        source: Source,
        problem_key: &str,
        now: i64,
    ) -> Result<Option<EscalationRow>, StoreError> {
        optional(
            &self.pool.get().await?,
            &format!(
                "UPDATE escalations SET state = 'open', pass = 0, step = 0, next_at_ms = $3,
                        held_by = NULL, round = round + 1, acked_at_ms = NULL, acked_by = NULL, acked_via = NULL,
                        updated_at_ms = $3
                  WHERE source = $1 AND problem_key = $2 AND state = 'acked'
                 RETURNING {ESCALATION_COLUMNS}"
            ),
            &[&source, &problem_key, &now],
        )
        .await
    }

    async fn end_escalations(
        &self,
        source: Source,
        problem_key: String,
        state: String,
        now: i64,
    ) -> Result<u64, StoreError> {
        Ok(exec(
            &self.pool.get().await?,
            "UPDATE escalations SET state = $3, next_at_ms = NULL, updated_at_ms = $4
              WHERE source = $1 AND problem_key = $2 AND state IN ('open', 'ended', 'acked')",
            &[&source, &problem_key, &state, &now],
        )
        .await?)
    }

    async fn escalation_of(
        &self,
        source: Source,
        problem_key: &str,
    ) -> Result<Option<EscalationRow>, StoreError> {
        optional(
            &self.pool.get().await?,
            &format!(
                "SELECT {ESCALATION_COLUMNS} FROM escalations
                  WHERE source = $1 AND problem_key = $2 ORDER BY id DESC LIMIT 1"
            ),
            &[&source, &problem_key],
        )
        .await
    }

    async fn escalation(&self, id: i64) -> Result<Option<EscalationRow>, StoreError> {
        optional(
            &self.pool.get().await?,
            &format!("SELECT {ESCALATION_COLUMNS} FROM escalations WHERE id = $1"),
            &[&id],
        )
        .await
    }

    async fn escalation_by_code(&self, code: &str) -> Result<Option<EscalationRow>, StoreError> {
        optional(
            &self.pool.get().await?,
            &format!(
                "SELECT {ESCALATION_COLUMNS} FROM escalations
                  WHERE code = $1 AND state IN ('open', 'ended') ORDER BY id DESC LIMIT 1"
            ),
            &[&code],
        )
        .await
    }

    async fn escalation_steps(&self, id: i64) -> Result<Vec<StepRow>, StoreError> {
        all(
            &self.pool.get().await?,
            "SELECT escalation_id, round, pass, step, started_at_ms, notified, actions
               FROM escalation_steps WHERE escalation_id = $1 ORDER BY round, pass, step",
            &[&id],
        )
        .await
    }

    async fn open_escalations(&self) -> Result<i64, StoreError> {
        one(
            &self.pool.get().await?,
            "SELECT COUNT(*) FROM escalations WHERE state = 'open'",
            &[],
        )
        .await
    }

    async fn escalation_activity(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<(i64, Vec<i64>), StoreError> {
        let c = self.pool.get().await?;
        let steps: i64 = one(
            &c,
            "SELECT COUNT(*) FROM escalation_steps WHERE started_at_ms >= $1 AND started_at_ms < $2",
            &[&from_ms, &to_ms],
        )
        .await?;
        let took: Vec<i64> = all(
            &c,
            "SELECT acked_at_ms - started_at_ms FROM escalations
              WHERE acked_at_ms >= $1 AND acked_at_ms < $2",
            &[&from_ms, &to_ms],
        )
        .await?;
        Ok((steps, took))
    }

    async fn shared_key(&self, name: &str, fresh: String) -> Result<String, StoreError> {
        let c = self.pool.get().await?;
        exec(
            &c,
            "INSERT INTO hub_keys (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&name, &fresh],
        )
        .await?;
        one(&c, "SELECT value FROM hub_keys WHERE name = $1", &[&name]).await
    }
}
