//! API tokens, schedule overrides and the audit log on SQLite.

use super::rows::{all, optional};
use super::Sqlite;
use crate::store::concerns::Roster;
use crate::store::{AuditRow, OverrideRow, StoreError, TokenRow};

const TOKEN_COLUMNS: &str =
    "id, person, role, digest, created_at_ms, created_by, expires_at_ms, revoked_at_ms";
const OVERRIDE_COLUMNS: &str =
    "id, schedule, person, from_ms, until_ms, created_at_ms, created_by, removed_at_ms";
const AUDIT_COLUMNS: &str =
    "id, at_ms, actor, token_id, verified, via, from_addr, action, target, detail";

impl Roster for Sqlite {
    async fn add_token(&self, t: TokenRow) -> Result<(), StoreError> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO api_tokens (id, person, role, digest, created_at_ms, created_by,
                                         expires_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(rusqlite::params![
                t.id,
                t.person,
                t.role,
                t.digest,
                t.created_at_ms,
                t.created_by,
                t.expires_at_ms
            ])?;
            Ok(())
        })
        .await
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRow>, StoreError> {
        self.reader.read(|c| {
            optional(
                c,
                &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1"),
                [id],
            )
        })
    }

    async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        self.reader.read(|c| {
            all(
                c,
                &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at_ms DESC, id"),
                [],
            )
        })
    }

    async fn revoke_token(&self, id: String, now: i64) -> Result<bool, StoreError> {
        self.write(move |c| {
            Ok(c.prepare_cached(
                "UPDATE api_tokens SET revoked_at_ms = ?2 WHERE id = ?1 AND revoked_at_ms IS NULL",
            )?
            .execute(rusqlite::params![id, now])?
                > 0)
        })
        .await
    }

    async fn add_override(&self, o: OverrideRow) -> Result<(), StoreError> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO schedule_overrides (id, schedule, person, from_ms, until_ms,
                                                 created_at_ms, created_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(rusqlite::params![
                o.id,
                o.schedule,
                o.person,
                o.from_ms,
                o.until_ms,
                o.created_at_ms,
                o.created_by
            ])?;
            Ok(())
        })
        .await
    }

    async fn overrides(
        &self,
        schedule: Option<String>,
        ending_after_ms: i64,
    ) -> Result<Vec<OverrideRow>, StoreError> {
        self.reader.read(|c| {
            all(
                c,
                &format!(
                    "SELECT {OVERRIDE_COLUMNS} FROM schedule_overrides
                      WHERE removed_at_ms IS NULL AND until_ms > ?1
                        AND (?2 IS NULL OR schedule = ?2)
                      ORDER BY from_ms, created_at_ms, id"
                ),
                rusqlite::params![ending_after_ms, schedule],
            )
        })
    }

    async fn remove_override(&self, id: String, now: i64) -> Result<bool, StoreError> {
        self.write(move |c| {
            Ok(c.prepare_cached(
                "UPDATE schedule_overrides SET removed_at_ms = ?2
                  WHERE id = ?1 AND removed_at_ms IS NULL",
            )?
            .execute(rusqlite::params![id, now])?
                > 0)
        })
        .await
    }

    async fn record_audit(&self, a: AuditRow) -> Result<(), StoreError> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO audit (at_ms, actor, token_id, verified, via, from_addr, action,
                                    target, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(rusqlite::params![
                a.at_ms,
                a.actor,
                a.token_id,
                a.verified,
                a.via,
                a.from_addr,
                a.action,
                a.target,
                a.detail
            ])?;
            Ok(())
        })
        .await
    }

    async fn audit(&self, since_ms: i64, limit: i64) -> Result<Vec<AuditRow>, StoreError> {
        self.reader.read(|c| {
            all(
                c,
                &format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit WHERE at_ms >= ?1
                      ORDER BY at_ms DESC, id DESC LIMIT ?2"
                ),
                [since_ms, limit],
            )
        })
    }
}
