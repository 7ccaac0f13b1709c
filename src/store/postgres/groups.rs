//! Groups on PostgreSQL, shared by every instance: a group opens once (its unique index) and a
//! send is recorded by one conditional update, so two instances never make it twice.

use super::rows::{all, exec, one, optional};
use super::Postgres;
use crate::domain::Source;
use crate::store::concerns::Groups;
use crate::store::{GroupChange, GroupJoin, GroupRow, MemberRow, StoreError};

const GROUP_COLUMNS: &str = "id, route, key, state, source, problem_key, notification_id,
     opened_at_ms, next_send_at_ms, last_sent_at_ms, sends, resolved_at_ms";
const MEMBER_COLUMNS: &str =
    "group_id, source, problem_key, state, title, joined_at_ms, updated_at_ms, first_send";

impl Groups for Postgres {
    async fn join_group(&self, j: GroupJoin) -> Result<(i64, bool), StoreError> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let opened = exec(
            &tx,
            "INSERT INTO problem_groups (route, key, state, source, problem_key, notification_id,
                                         opened_at_ms, next_send_at_ms)
             VALUES ($1, $2, 'open', $3, $4, $5, $6::BIGINT, $6::BIGINT + $7::BIGINT)
             ON CONFLICT DO NOTHING",
            &[
                &j.route,
                &j.key,
                &j.source,
                &j.problem_key,
                &j.notification_id,
                &j.now,
                &j.wait_ms,
            ],
        )
        .await?
            > 0;
        let (id, sends): (i64, i64) = one(
            &tx,
            "SELECT id, sends FROM problem_groups
              WHERE route = $1 AND key = $2 AND state = 'open' FOR UPDATE",
            &[&j.route, &j.key],
        )
        .await?;
        // New, or open again after it resolved: the next send carries it as new.
        let changed = exec(
            &tx,
            "INSERT INTO group_members (group_id, source, problem_key, state, title, joined_at_ms,
                                        updated_at_ms)
             VALUES ($1, $2, $3, 'OPEN', $4, $5, $5)
             ON CONFLICT (group_id, source, problem_key) DO UPDATE
                SET state = 'OPEN', title = excluded.title, updated_at_ms = excluded.updated_at_ms,
                    first_send = NULL
              WHERE group_members.state != 'OPEN'",
            &[&id, &j.source, &j.problem_key, &j.title, &j.now],
        )
        .await?
            > 0;
        if changed && sends > 0 {
            exec(
                &tx,
                "UPDATE problem_groups
                    SET next_send_at_ms = GREATEST($2, COALESCE(last_sent_at_ms, 0) + $3)
                  WHERE id = $1 AND next_send_at_ms IS NULL",
                &[&id, &j.now, &j.interval_ms],
            )
            .await?;
        }
        tx.commit().await?;
        Ok((id, opened))
    }

    /// One transaction each, as they were: one transaction holding several groups' rows, locked
    /// in the order notifications came, could deadlock with another instance routing the same
    /// groups in another order.
    async fn change_groups(
        &self,
        changes: Vec<GroupChange>,
    ) -> Result<Vec<Option<(i64, bool)>>, StoreError> {
        let mut done = Vec::with_capacity(changes.len());
        for change in changes {
            done.push(match change {
                GroupChange::Join(j) => Some(self.join_group(j).await?),
                GroupChange::Leave {
                    source,
                    problem_key,
                    now,
                } => {
                    self.leave_groups(source, problem_key, now).await?;
                    None
                }
            });
        }
        Ok(done)
    }

    async fn leave_groups(
        &self,
        source: Source,
        problem_key: String,
        now: i64,
    ) -> Result<u64, StoreError> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let groups: Vec<i64> = all(
            &tx,
            "UPDATE group_members SET state = 'RESOLVED', updated_at_ms = $3
              WHERE source = $1 AND problem_key = $2 AND state != 'RESOLVED'
                AND group_id IN (SELECT id FROM problem_groups WHERE state = 'open')
             RETURNING group_id",
            &[&source, &problem_key, &now],
        )
        .await?;
        for id in &groups {
            // Every member resolved: a group that sent says so now; one that never sent ends
            // quietly (as a flap wait does).
            exec(
                &tx,
                "UPDATE problem_groups
                    SET next_send_at_ms = CASE WHEN sends > 0 THEN $2::BIGINT END,
                        state = CASE WHEN sends > 0 THEN 'open' ELSE 'resolved' END,
                        resolved_at_ms = CASE WHEN sends > 0 THEN NULL ELSE $2::BIGINT END
                  WHERE id = $1 AND state = 'open'
                    AND NOT EXISTS (SELECT 1 FROM group_members
                                     WHERE group_id = $1 AND state != 'RESOLVED')",
                &[id, &now],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(groups.len() as u64)
    }

    async fn due_groups(&self, now: i64, limit: i64) -> Result<Vec<GroupRow>, StoreError> {
        all(
            &self.pool.get().await?,
            &format!(
                "SELECT {GROUP_COLUMNS} FROM problem_groups
                  WHERE state = 'open' AND next_send_at_ms <= $1
                  ORDER BY next_send_at_ms LIMIT $2"
            ),
            &[&now, &limit],
        )
        .await
    }

    async fn mark_group_sent(
        &self,
        id: i64,
        sends: i64,
        sent: bool,
        resolved: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let step = i64::from(sent);
        let done = exec(
            &tx,
            "UPDATE problem_groups
                SET sends = sends + $3, next_send_at_ms = NULL,
                    last_sent_at_ms = CASE WHEN $3 = 1 THEN $5 ELSE last_sent_at_ms END,
                    state = CASE WHEN $4 THEN 'resolved' ELSE state END,
                    resolved_at_ms = CASE WHEN $4 THEN $5 ELSE resolved_at_ms END
              WHERE id = $1 AND sends = $2 AND state = 'open'",
            &[&id, &sends, &step, &resolved, &now],
        )
        .await?
            > 0;
        if done && sent {
            exec(
                &tx,
                "UPDATE group_members SET first_send = $2
                  WHERE group_id = $1 AND first_send IS NULL",
                &[&id, &(sends + 1)],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    async fn group(&self, id: i64) -> Result<Option<GroupRow>, StoreError> {
        optional(
            &self.pool.get().await?,
            &format!("SELECT {GROUP_COLUMNS} FROM problem_groups WHERE id = $1"),
            &[&id],
        )
        .await
    }

    async fn group_members(&self, id: i64) -> Result<Vec<MemberRow>, StoreError> {
        all(
            &self.pool.get().await?,
            &format!(
                "SELECT {MEMBER_COLUMNS} FROM group_members WHERE group_id = $1
                  ORDER BY joined_at_ms, problem_key"
            ),
            &[&id],
        )
        .await
    }

    async fn members_of_groups(&self, ids: Vec<i64>) -> Result<Vec<MemberRow>, StoreError> {
        all(
            &self.pool.get().await?,
            &format!(
                "SELECT {MEMBER_COLUMNS} FROM group_members WHERE group_id = ANY($1)
                  ORDER BY group_id, joined_at_ms, problem_key"
            ),
            &[&ids],
        )
        .await
    }

    async fn groups(&self, open_only: bool, limit: i64) -> Result<Vec<GroupRow>, StoreError> {
        all(
            &self.pool.get().await?,
            &format!(
                "SELECT {GROUP_COLUMNS} FROM problem_groups
                  WHERE state = 'open' OR NOT $1 ORDER BY id DESC LIMIT $2"
            ),
            &[&open_only, &limit],
        )
        .await
    }

    async fn groups_of(
        &self,
        source: Source,
        problem_key: &str,
    ) -> Result<Vec<GroupRow>, StoreError> {
        all(
            &self.pool.get().await?,
            &format!(
                "SELECT {GROUP_COLUMNS} FROM problem_groups
                  WHERE id IN (SELECT group_id FROM group_members
                                WHERE source = $1 AND problem_key = $2)
                  ORDER BY id DESC"
            ),
            &[&source, &problem_key],
        )
        .await
    }
}
