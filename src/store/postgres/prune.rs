//! Retention: deleting problems that ended long ago, with everything they own.
//!
//! Instances prune one at a time (an advisory lock; the others skip their pass). What is deleted is
//! named by id as it was checked, so a notification another instance stores meanwhile for the same
//! problem is never taken with the old ones.

use deadpool_postgres::GenericClient;

use super::rows::{all, one, optional};
use super::Postgres;
use crate::domain::Source;
use crate::store::concerns::Retention;
use crate::store::{is_closed, Pruned, StoreError};

/// The pruning lock's key: beside the migrations' one, used by nothing else.
const PRUNE_LOCK: i64 = 0x6875_625f_7072_756e;

impl Retention for Postgres {
    async fn prune_candidates(
        &self,
        cutoff_ms: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Source, String)>, StoreError> {
        all(
            &self.pool.get().await?,
            "SELECT n.id, n.source, n.problem_key FROM notifications n
             WHERE n.id > $1 AND n.received_at_ms < $2
               AND NOT EXISTS (SELECT 1 FROM notifications y
                               WHERE y.source = n.source AND y.problem_key = n.problem_key
                                 AND y.id > n.id)
             ORDER BY n.id LIMIT $3",
            &[&after, &cutoff_ms, &limit],
        )
        .await
    }

    async fn prune(
        &self,
        problems: Vec<(Source, String)>,
        cutoff_ms: i64,
        dry: bool,
    ) -> Result<Pruned, StoreError> {
        let mut c = self.pool.get().await?;
        let tx = c.transaction().await?;
        let mut pruned = Pruned::default();
        let ours: bool = one(&tx, "SELECT pg_try_advisory_xact_lock($1)", &[&PRUNE_LOCK]).await?;
        if !ours {
            return Ok(pruned);
        }
        let mut gone = Vec::new();
        for (source, key) in problems {
            if !may_go(&tx, source, &key, cutoff_ms).await? {
                continue;
            }
            let rows: Vec<(i64, String)> = all(
                &tx,
                "SELECT id, file_name FROM notifications WHERE source = $1 AND problem_key = $2",
                &[&source, &key],
            )
            .await?;
            let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
            let runs: i64 = one(
                &tx,
                "SELECT COUNT(*) FROM action_runs WHERE notification_id = ANY($1)",
                &[&ids],
            )
            .await?;
            if !dry {
                // The groups it first joined (resolved: an open one keeps it) go with it, and it
                // leaves the others.
                for sql in [
                    "DELETE FROM group_members WHERE group_id IN
                         (SELECT id FROM problem_groups WHERE source = $1 AND problem_key = $2)",
                    "DELETE FROM problem_groups WHERE source = $1 AND problem_key = $2",
                    "DELETE FROM group_members WHERE source = $1 AND problem_key = $2",
                ] {
                    super::rows::exec(&tx, sql, &[&source, &key]).await?;
                }
                for sql in [
                    "DELETE FROM threads WHERE run_id IN
                         (SELECT id FROM action_runs WHERE notification_id = ANY($1))",
                    "DELETE FROM action_attempts WHERE run_id IN
                         (SELECT id FROM action_runs WHERE notification_id = ANY($1))",
                    "DELETE FROM action_runs WHERE notification_id = ANY($1)",
                    "DELETE FROM plans WHERE notification_id = ANY($1)",
                    "DELETE FROM enrichments WHERE notification_id = ANY($1)",
                    "DELETE FROM notifications WHERE id = ANY($1)",
                ] {
                    super::rows::exec(&tx, sql, &[&ids]).await?;
                }
            }
            pruned.notifications += rows.len() as u64;
            pruned.runs += runs as u64;
            pruned.problems.push((source, key));
            gone.extend(rows.into_iter().map(|(_, name)| name));
        }
        if dry {
            return Ok(pruned);
        }
        // Before the commit, as on SQLite: a file without a row would look like one to import.
        let dir = self.dir_received.clone();
        tokio::task::spawn_blocking(move || {
            for name in gone {
                let _ = std::fs::remove_file(dir.join(name));
            }
        })
        .await?;
        tx.commit().await?;
        Ok(pruned)
    }
}

async fn may_go(
    c: &impl GenericClient,
    source: Source,
    key: &str,
    cutoff_ms: i64,
) -> Result<bool, StoreError> {
    let newest: Option<(String, bool, i64)> = optional(
        c,
        "SELECT state, is_test, received_at_ms FROM notifications
         WHERE source = $1 AND problem_key = $2 ORDER BY id DESC LIMIT 1",
        &[&source, &key],
    )
    .await?;
    let Some((state, is_test, received_at_ms)) = newest else {
        return Ok(false);
    };
    if received_at_ms >= cutoff_ms || !is_closed(&state, is_test) {
        return Ok(false);
    }
    let busy: bool = one(
        c,
        "SELECT EXISTS (SELECT 1 FROM action_runs
                        WHERE source = $1 AND problem_key = $2
                          AND (status IN ('pending', 'running') OR updated_at_ms >= $3))
             OR EXISTS (SELECT 1 FROM plans p JOIN notifications n ON n.id = p.notification_id
                        WHERE n.source = $1 AND n.problem_key = $2 AND p.status = 'pending')
             OR EXISTS (SELECT 1 FROM group_members m JOIN problem_groups g ON g.id = m.group_id
                        WHERE m.source = $1 AND m.problem_key = $2 AND g.state = 'open')",
        &[&source, &key, &cutoff_ms],
    )
    .await?;
    Ok(!busy)
}
