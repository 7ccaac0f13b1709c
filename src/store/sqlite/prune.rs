//! Retention: deleting problems that ended long ago, with everything they own.

use std::path::PathBuf;

use rusqlite::Connection;

use super::rows::{all, one, optional};
use super::Sqlite;
use crate::domain::Source;
use crate::store::concerns::Retention;
use crate::store::{is_closed, Pruned, StoreError};

impl Retention for Sqlite {
    /// Problems whose newest notification is older than `cutoff_ms`, after the one whose newest
    /// notification is `after`: `(newest id, source, problem key)`, oldest first.
    async fn prune_candidates(
        &self,
        cutoff_ms: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Source, String)>, StoreError> {
        self.views
            .read(move |c| {
                all(
                    c,
                    "SELECT n.id, n.source, n.problem_key FROM notifications n
                     WHERE n.id > ?1 AND n.received_at_ms < ?2
                       AND NOT EXISTS (SELECT 1 FROM notifications y
                                       WHERE y.source = n.source AND y.problem_key = n.problem_key
                                         AND y.id > n.id)
                     ORDER BY n.id LIMIT ?3",
                    (after, cutoff_ms, limit),
                )
            })
            .await
    }

    /// Deletes those of `problems` that may go (see `Store::prune`), with their received files,
    /// in one transaction; `dry` only counts them.
    async fn prune(
        &self,
        problems: Vec<(Source, String)>,
        cutoff_ms: i64,
        dry: bool,
    ) -> Result<Pruned, StoreError> {
        if dry {
            return self
                .views
                .read(move |c| prune_in(c, &problems, cutoff_ms, None))
                .await;
        }
        let dir = self.dir_received.clone();
        self.write(move |c| prune_in(c, &problems, cutoff_ms, Some(dir)))
            .await
    }
}

/// Checks and (with a folder to delete files from) deletes each problem in turn.
fn prune_in(
    c: &Connection,
    problems: &[(Source, String)],
    cutoff_ms: i64,
    delete_in: Option<PathBuf>,
) -> rusqlite::Result<Pruned> {
    let mut pruned = Pruned::default();
    for (source, key) in problems {
        if !may_go(c, *source, key, cutoff_ms)? {
            continue;
        }
        let files: Vec<String> = all(
            c,
            "SELECT file_name FROM notifications WHERE source = ?1 AND problem_key = ?2",
            (source, key),
        )?;
        let runs: i64 = one(
            c,
            "SELECT COUNT(*) FROM action_runs WHERE source = ?1 AND problem_key = ?2",
            (source, key),
        )?;
        if let Some(dir) = &delete_in {
            for sql in [
                // The groups it first joined (resolved: an open one keeps it) go with it, and it
                // leaves the others.
                "DELETE FROM group_members WHERE group_id IN
                     (SELECT id FROM problem_groups WHERE source = ?1 AND problem_key = ?2)",
                "DELETE FROM problem_groups WHERE source = ?1 AND problem_key = ?2",
                "DELETE FROM group_members WHERE source = ?1 AND problem_key = ?2",
                "DELETE FROM threads WHERE source = ?1 AND problem_key = ?2",
                "DELETE FROM action_attempts WHERE run_id IN
                     (SELECT id FROM action_runs WHERE source = ?1 AND problem_key = ?2)",
                "DELETE FROM action_runs WHERE source = ?1 AND problem_key = ?2",
                "DELETE FROM plans WHERE notification_id IN
                     (SELECT id FROM notifications WHERE source = ?1 AND problem_key = ?2)",
                "DELETE FROM enrichments WHERE notification_id IN
                     (SELECT id FROM notifications WHERE source = ?1 AND problem_key = ?2)",
                "DELETE FROM notifications WHERE source = ?1 AND problem_key = ?2",
            ] {
                c.prepare_cached(sql)?.execute((source, key))?;
            }
            // Before the commit: a crash after it would leave files no row names, which the next
            // start would take for files to import. Files of a commit that fails are written back
            // from the store at the next start.
            for name in &files {
                let _ = std::fs::remove_file(dir.join(name));
            }
        }
        pruned.notifications += files.len() as u64;
        pruned.runs += runs as u64;
        pruned.problems.push((*source, key.clone()));
    }
    Ok(pruned)
}

/// Ended before `cutoff_ms` and nothing left to do: its newest notification closed it (or was a
/// test) before then, and no run waits, runs, or changed since.
fn may_go(c: &Connection, source: Source, key: &str, cutoff_ms: i64) -> rusqlite::Result<bool> {
    let newest: Option<(String, bool, i64)> = optional(
        c,
        "SELECT state, is_test, received_at_ms FROM notifications
         WHERE source = ?1 AND problem_key = ?2 ORDER BY id DESC LIMIT 1",
        (source, key),
    )?;
    let Some((state, is_test, received_at_ms)) = newest else {
        return Ok(false);
    };
    if received_at_ms >= cutoff_ms || !is_closed(&state, is_test) {
        return Ok(false);
    }
    let busy: bool = one(
        c,
        "SELECT EXISTS (SELECT 1 FROM action_runs
                        WHERE source = ?1 AND problem_key = ?2
                          AND (status IN ('pending', 'running') OR updated_at_ms >= ?3))
             OR EXISTS (SELECT 1 FROM plans p JOIN notifications n ON n.id = p.notification_id
                        WHERE n.source = ?1 AND n.problem_key = ?2 AND p.status = 'pending')
             OR EXISTS (SELECT 1 FROM group_members m JOIN problem_groups g ON g.id = m.group_id
                        WHERE m.source = ?1 AND m.problem_key = ?2 AND g.state = 'open')",
        (source, key, cutoff_ms),
    )?;
    Ok(!busy)
}
