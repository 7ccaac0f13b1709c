//! Groups on SQLite: each change is one write, inside the writer's transaction.

use rusqlite::Connection;

use super::rows::{all, optional};
use super::Sqlite;
use crate::domain::Source;
use crate::store::concerns::Groups;
use crate::store::{GroupChange, GroupJoin, GroupRow, MemberRow, StoreError};

const GROUP_COLUMNS: &str = "id, route, key, state, source, problem_key, notification_id,
     opened_at_ms, next_send_at_ms, last_sent_at_ms, sends, resolved_at_ms";
const MEMBER_COLUMNS: &str =
    "group_id, source, problem_key, state, title, joined_at_ms, updated_at_ms, first_send";

fn join(c: &Connection, j: &GroupJoin) -> rusqlite::Result<(i64, bool)> {
    let opened =
        c.prepare_cached(
            "INSERT INTO problem_groups (route, key, state, source, problem_key, notification_id,
                                         opened_at_ms, next_send_at_ms)
             VALUES (?1, ?2, 'open', ?3, ?4, ?5, ?6, ?6 + ?7)
             ON CONFLICT DO NOTHING",
        )?
        .execute(rusqlite::params![
            j.route,
            j.key,
            j.source,
            j.problem_key,
            j.notification_id,
            j.now,
            j.wait_ms
        ])? > 0;
    let (id, sends): (i64, i64) = c
        .prepare_cached(
            "SELECT id, sends FROM problem_groups WHERE route = ?1 AND key = ?2 AND state = 'open'",
        )?
        .query_row(rusqlite::params![j.route, j.key], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    // New, or open again after it resolved: the next send carries it as new.
    let changed =
        c.prepare_cached(
            "INSERT INTO group_members (group_id, source, problem_key, state, title, joined_at_ms,
                                        updated_at_ms)
             VALUES (?1, ?2, ?3, 'OPEN', ?4, ?5, ?5)
             ON CONFLICT (group_id, source, problem_key) DO UPDATE
                SET state = 'OPEN', title = excluded.title, updated_at_ms = excluded.updated_at_ms,
                    first_send = NULL
              WHERE group_members.state != 'OPEN'",
        )?
        .execute(rusqlite::params![
            id,
            j.source,
            j.problem_key,
            j.title,
            j.now
        ])? > 0;
    if changed && sends > 0 {
        c.prepare_cached(
            "UPDATE problem_groups
                SET next_send_at_ms = MAX(?2, COALESCE(last_sent_at_ms, 0) + ?3)
              WHERE id = ?1 AND next_send_at_ms IS NULL",
        )?
        .execute(rusqlite::params![id, j.now, j.interval_ms])?;
    }
    Ok((id, opened))
}

fn leave(c: &Connection, source: Source, key: &str, now: i64) -> rusqlite::Result<u64> {
    let groups: Vec<i64> = all(
        c,
        "UPDATE group_members SET state = 'RESOLVED', updated_at_ms = ?3
          WHERE source = ?1 AND problem_key = ?2 AND state != 'RESOLVED'
            AND group_id IN (SELECT id FROM problem_groups WHERE state = 'open')
         RETURNING group_id",
        rusqlite::params![source, key, now],
    )?;
    for id in &groups {
        // Every member resolved: a group that sent says so now; one that never sent ends quietly
        // (as a flap wait does).
        c.prepare_cached(
            "UPDATE problem_groups
                SET next_send_at_ms = CASE WHEN sends > 0 THEN ?2 END,
                    state = CASE WHEN sends > 0 THEN 'open' ELSE 'resolved' END,
                    resolved_at_ms = CASE WHEN sends > 0 THEN NULL ELSE ?2 END
              WHERE id = ?1 AND state = 'open'
                AND NOT EXISTS (SELECT 1 FROM group_members
                                 WHERE group_id = ?1 AND state != 'RESOLVED')",
        )?
        .execute(rusqlite::params![id, now])?;
    }
    Ok(groups.len() as u64)
}

impl Groups for Sqlite {
    async fn join_group(&self, j: GroupJoin) -> Result<(i64, bool), StoreError> {
        self.write(move |c| join(c, &j)).await
    }

    /// In one write: a storm's joins are one commit a pass, not one each.
    async fn change_groups(
        &self,
        changes: Vec<GroupChange>,
    ) -> Result<Vec<Option<(i64, bool)>>, StoreError> {
        self.write(move |c| {
            changes
                .iter()
                .map(|change| match change {
                    GroupChange::Join(j) => join(c, j).map(Some),
                    GroupChange::Leave {
                        source,
                        problem_key,
                        now,
                    } => leave(c, *source, problem_key, *now).map(|_| None),
                })
                .collect()
        })
        .await
    }

    async fn leave_groups(
        &self,
        source: Source,
        problem_key: String,
        now: i64,
    ) -> Result<u64, StoreError> {
        self.write(move |c| leave(c, source, &problem_key, now))
            .await
    }

    async fn due_groups(&self, now: i64, limit: i64) -> Result<Vec<GroupRow>, StoreError> {
        self.reader.read(|c| {
            all(
                c,
                &format!(
                    "SELECT {GROUP_COLUMNS} FROM problem_groups
                      WHERE state = 'open' AND next_send_at_ms <= ?1
                      ORDER BY next_send_at_ms LIMIT ?2"
                ),
                [now, limit],
            )
        })
    }

    async fn mark_group_sent(
        &self,
        id: i64,
        sends: i64,
        sent: bool,
        resolved: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.write(move |c| {
            let done = c
                .prepare_cached(
                    "UPDATE problem_groups
                        SET sends = sends + ?3, next_send_at_ms = NULL,
                            last_sent_at_ms = CASE WHEN ?3 = 1 THEN ?5 ELSE last_sent_at_ms END,
                            state = CASE WHEN ?4 THEN 'resolved' ELSE state END,
                            resolved_at_ms = CASE WHEN ?4 THEN ?5 ELSE resolved_at_ms END
                      WHERE id = ?1 AND sends = ?2 AND state = 'open'",
                )?
                .execute(rusqlite::params![id, sends, i64::from(sent), resolved, now])?
                > 0;
            if done && sent {
                c.prepare_cached(
                    "UPDATE group_members SET first_send = ?2
                      WHERE group_id = ?1 AND first_send IS NULL",
                )?
                .execute(rusqlite::params![id, sends + 1])?;
            }
            Ok(done)
        })
        .await
    }

    async fn group(&self, id: i64) -> Result<Option<GroupRow>, StoreError> {
        self.reader.read(|c| {
            optional(
                c,
                &format!("SELECT {GROUP_COLUMNS} FROM problem_groups WHERE id = ?1"),
                [id],
            )
        })
    }

    async fn group_members(&self, id: i64) -> Result<Vec<MemberRow>, StoreError> {
        self.reader.read(|c| {
            all(
                c,
                &format!(
                    "SELECT {MEMBER_COLUMNS} FROM group_members WHERE group_id = ?1
                      ORDER BY joined_at_ms, problem_key"
                ),
                [id],
            )
        })
    }

    async fn members_of_groups(&self, ids: Vec<i64>) -> Result<Vec<MemberRow>, StoreError> {
        // The ids as one JSON array: one statement for any number of them.
        let ids = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into());
        self.reader.read(move |c| {
            all(
                c,
                &format!(
                    "SELECT {MEMBER_COLUMNS} FROM group_members
                      WHERE group_id IN (SELECT value FROM json_each(?1))
                      ORDER BY group_id, joined_at_ms, problem_key"
                ),
                [ids],
            )
        })
    }

    async fn groups(&self, open_only: bool, limit: i64) -> Result<Vec<GroupRow>, StoreError> {
        self.reader.read(|c| {
            all(
                c,
                &format!(
                    "SELECT {GROUP_COLUMNS} FROM problem_groups
                      WHERE state = 'open' OR NOT ?1 ORDER BY id DESC LIMIT ?2"
                ),
                rusqlite::params![open_only, limit],
            )
        })
    }

    async fn groups_of(
        &self,
        source: Source,
        problem_key: &str,
    ) -> Result<Vec<GroupRow>, StoreError> {
        self.reader.read(|c| {
            all(
                c,
                &format!(
                    "SELECT {GROUP_COLUMNS} FROM problem_groups
                      WHERE id IN (SELECT group_id FROM group_members
                                    WHERE source = ?1 AND problem_key = ?2)
                      ORDER BY id DESC"
                ),
                rusqlite::params![source, problem_key],
            )
        })
    }
}
