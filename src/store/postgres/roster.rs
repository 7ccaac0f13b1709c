//! API tokens, schedule overrides and the audit log on PostgreSQL, shared by every instance.

use super::rows::{all, exec, optional};
use super::Postgres;
use crate::store::concerns::Roster;
use crate::store::{AuditRow, OverrideRow, StoreError, TokenRow};

const TOKEN_COLUMNS: &str =
    "id, person, role, digest, created_at_ms, created_by, expires_at_ms, revoked_at_ms";
const OVERRIDE_COLUMNS: &str =
    "id, schedule, person, from_ms, until_ms, created_at_ms, created_by, removed_at_ms";
const AUDIT_COLUMNS: &str =
    "id, at_ms, actor, token_id, verified, via, from_addr, action, target, detail";

impl Roster for Postgres {
    async fn add_token(&self, t: TokenRow) -> Result<(), StoreError> {
        exec(
            &self.pool.get().await?,
            "INSERT INTO api_tokens (id, person, role, digest, created_at_ms, created_by,
                                     expires_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &t.id,
                &t.person,
                &t.role,
                &t.digest,
                &t.created_at_ms,
                &t.created_by,
                &t.expires_at_ms,
            ],
        )
        .await?;
        Ok(())
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRow>, StoreError> {
        optional(
            &self.pool.get().await?,
            &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"),
            &[&id],
        )
        .await
    }

    async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        all(
            &self.pool.get().await?,
            &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at_ms DESC, id"),
            &[],
        )
        .await
    }

    async fn revoke_token(&self, id: String, now: i64) -> Result<bool, StoreError> {
        Ok(exec(
            &self.pool.get().await?,
            "UPDATE api_tokens SET revoked_at_ms = $2 WHERE id = $1 AND revoked_at_ms IS NULL",
            &[&id, &now],
        )
        .await?
            > 0)
    }

    async fn add_override(&self, o: OverrideRow) -> Result<(), StoreError> {
        exec(
            &self.pool.get().await?,
            "INSERT INTO schedule_overrides (id, schedule, person, from_ms, until_ms,
                                             created_at_ms, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &o.id,
                &o.schedule,
                &o.person,
                &o.from_ms,
                &o.until_ms,
                &o.created_at_ms,
                &o.created_by,
            ],
        )
        .await?;
        Ok(())
    }

    async fn overrides(
        &self,
        schedule: Option<String>,
        ending_after_ms: i64,
    ) -> Result<Vec<OverrideRow>, StoreError> {
        all(
            &self.pool.get().await?,
            &format!(
                "SELECT {OVERRIDE_COLUMNS} FROM schedule_overrides
                  WHERE removed_at_ms IS NULL AND until_ms > $1
                    AND ($2::TEXT IS NULL OR schedule = $2)
                  ORDER BY from_ms, created_at_ms, id"
            ),
            &[&ending_after_ms, &schedule],
        )
        .await
    }

    async fn remove_override(&self, id: String, now: i64) -> Result<bool, StoreError> {
        Ok(exec(
            &self.pool.get().await?,
            "UPDATE schedule_overrides SET removed_at_ms = $2
              WHERE id = $1 AND removed_at_ms IS NULL",
            &[&id, &now],
        )
        .await?
            > 0)
    }

    async fn record_audit(&self, a: AuditRow) -> Result<(), StoreError> {
        exec(
            &self.pool.get().await?,
            "INSERT INTO audit (at_ms, actor, token_id, verified, via, from_addr, action, target,
                                detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &a.at_ms,
                &a.actor,
                &a.token_id,
                &a.verified,
                &a.via,
                &a.from_addr,
                &a.action,
                &a.target,
                &a.detail,
            ],
        )
        .await?;
        Ok(())
    }

    async fn audit(&self, since_ms: i64, limit: i64) -> Result<Vec<AuditRow>, StoreError> {
        all(
            &self.pool.get().await?,
            &format!(
                "SELECT {AUDIT_COLUMNS} FROM audit WHERE at_ms >= $1
                  ORDER BY at_ms DESC, id DESC LIMIT $2"
            ),
            &[&since_ms, &limit],
        )
        .await
    }
}
