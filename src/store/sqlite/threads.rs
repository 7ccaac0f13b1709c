//! Threads: what an action created far away for a problem, kept beside its runs.

use rusqlite::Connection;

use super::rows::{all, optional};
use super::Sqlite;
use crate::domain::Source;
use crate::store::concerns::Threads;
use crate::store::{StoreError, ThreadRef, ThreadRow};

/// Keeps `thread` for the problem, action and target of run `run_id`; called inside the
/// transaction that records the run's outcome.
pub(super) fn keep(
    c: &Connection,
    run_id: i64,
    thread: &ThreadRef,
    now: i64,
) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO threads (source, problem_key, action, target, ref, url, run_id,
                              created_at_ms, updated_at_ms)
         SELECT source, problem_key, action, target, ?1, ?2, id, ?3, ?3
           FROM action_runs WHERE id = ?4
         ON CONFLICT (source, problem_key, action, target) DO UPDATE
            SET ref = excluded.ref, url = excluded.url, run_id = excluded.run_id,
                updated_at_ms = excluded.updated_at_ms",
    )?
    .execute(rusqlite::params![thread.reference, thread.url, now, run_id])?;
    Ok(())
}

/// The problem's thread for this action and target, kept by a run of a notification after
/// `after` (the opening it belongs to), if there is one.
pub(super) fn find(
    c: &Connection,
    source: Source,
    problem_key: &str,
    action: &str,
    target: &str,
    after: Option<i64>,
) -> rusqlite::Result<Option<ThreadRef>> {
    let found: Option<(String, Option<String>)> = optional(
        c,
        "SELECT t.ref, t.url FROM threads t JOIN action_runs r ON r.id = t.run_id
          WHERE t.source = ?1 AND t.problem_key = ?2 AND t.action = ?3 AND t.target = ?4
            AND r.notification_id > COALESCE(?5, 0)",
        rusqlite::params![source, problem_key, action, target, after],
    )?;
    Ok(found.map(|(reference, url)| ThreadRef { reference, url }))
}

impl Threads for Sqlite {
    async fn thread(
        &self,
        source: Source,
        problem_key: &str,
        action: &str,
        target: &str,
        after: Option<i64>,
    ) -> Result<Option<ThreadRef>, StoreError> {
        self.reader
            .read(|c| find(c, source, problem_key, action, target, after))
    }

    async fn threads(
        &self,
        source: Source,
        problem_key: &str,
    ) -> Result<Vec<ThreadRow>, StoreError> {
        self.reader.read(|c| {
            all(
                c,
                "SELECT action, target, ref AS reference, url, created_at_ms, updated_at_ms
                   FROM threads WHERE source = ?1 AND problem_key = ?2 ORDER BY action, target",
                (source, problem_key),
            )
        })
    }
}
