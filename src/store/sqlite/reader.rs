//! Reads. The dispatcher's run in place on a connection of their own: each pass reads what is due,
//! every run reads its notification, and every `problems_sent/` rewrite reads its problem's runs.
//! Each is an indexed lookup of a few microseconds, less than two context switches to a blocking
//! thread and back. The pages', the API's and the commands' reads may scan a whole table, so they
//! run on blocking threads ([`ReadPool`]), never on the runtime's own.

use crate::domain::{Notification, Source};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::{DueEnrichment, StoreError};
use crate::store::model::stored_facts;
use crate::store::{Room, RunRow, SentView, StoredNotification};

pub(super) const RUN_COLUMNS: &str =
    "id, notification_id, idem_key, source, problem_key, state, action, target,
     target_label, status, attempts, next_attempt_at_ms, last_error, outcome, manual, updated_at_ms,
     summary";

/// A connection that can only read.
fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "query_only", true)?;
    conn.set_prepared_statement_cache_capacity(super::STATEMENTS_KEPT);
    Ok(conn)
}

pub(super) struct Reader(Mutex<Connection>);

impl Reader {
    pub fn open(path: &Path) -> rusqlite::Result<Reader> {
        Ok(Reader(Mutex::new(open_read_only(path)?)))
    }

    pub fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        // A panic in a read leaves the connection as it was (reads change nothing).
        let conn = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&conn)?)
    }
}

/// Read-only connections for reads that may take a while, each run on a blocking thread. A
/// connection is opened when none is idle, and at most [`ReadPool::IDLE`] are kept.
pub(super) struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    const IDLE: usize = 4;

    pub fn new(path: &Path) -> Arc<ReadPool> {
        Arc::new(ReadPool {
            path: path.to_path_buf(),
            idle: Mutex::default(),
        })
    }

    pub async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let idle = pool.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match idle {
                Some(conn) => conn,
                None => open_read_only(&pool.path)?,
            };
            let result = f(&conn);
            let mut idle = pool.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < Self::IDLE {
                idle.push(conn);
            }
            Ok(result?)
        })
        .await?
    }
}

const NOTIFICATION: &str =
    "SELECT n.id, n.source, n.problem_key, n.state, n.pid, n.title, n.is_test,
        n.body, n.received_at_ms, e.details, n.facts, n.trace_parent
     FROM notifications n LEFT JOIN enrichments e ON e.notification_id = n.id
     WHERE n.id = ?1";

pub(super) fn notification(c: &Connection, id: i64) -> rusqlite::Result<StoredNotification> {
    c.prepare_cached(NOTIFICATION)?.query_row([id], |r| {
        let body: Vec<u8> = r.get(7)?;
        let facts: Option<String> = r.get(10)?;
        Ok(StoredNotification {
            id: r.get(0)?,
            notification: Notification {
                source: r.get(1)?,
                problem_key: r.get(2)?,
                state: r.get(3)?,
                pid: r.get(4)?,
                title: r.get(5)?,
                is_test: r.get(6)?,
                facts: stored_facts(id, facts.as_deref(), &body),
                body,
                identity: None,
                trace: r.get(11)?,
            },
            received_at_ms: r.get(8)?,
            details: r.get(9)?,
        })
    })
}

pub(super) fn latest_notification(
    c: &Connection,
    source: Source,
    problem_key: &str,
) -> rusqlite::Result<Option<StoredNotification>> {
    let id: Option<i64> = c
        .prepare_cached(
            "SELECT id FROM notifications WHERE source = ?1 AND problem_key = ?2
             ORDER BY id DESC LIMIT 1",
        )?
        .query_row((source, problem_key), |r| r.get(0))
        .optional()?;
    id.map(|id| notification(c, id)).transpose()
}

pub(super) fn problem_runs(
    c: &Connection,
    source: Source,
    problem_key: &str,
) -> rusqlite::Result<Vec<RunRow>> {
    runs(
        c,
        "WHERE source = ?1 AND problem_key = ?2 ORDER BY id",
        (source, problem_key),
    )
}

/// Runs due at `now_ms`, oldest first. A run set for later than `latest_ms` was scheduled before
/// the clock went back (no retry waits that long from now), so it is due too: a clock that jumped
/// ahead and back must not hold a retry for as long as it jumped.
pub(super) fn due_runs(
    c: &Connection,
    now_ms: i64,
    latest_ms: i64,
    limit: i64,
) -> rusqlite::Result<Vec<RunRow>> {
    runs(
        c,
        // A flap wait may be longer than any retry; it is not taken for a clock that went back.
        "WHERE status = 'pending'
           AND (next_attempt_at_ms <= ?1 OR (next_attempt_at_ms > ?2 AND held_by IS NOT 'wait'))
         ORDER BY next_attempt_at_ms, id LIMIT ?3",
        (now_ms, latest_ms, limit),
    )
}

/// Each action's due runs (as [`due_runs`] finds them), at most as many as it asks for, the most
/// urgent first, then by due time.
pub(super) fn due_runs_of(
    c: &Connection,
    now_ms: i64,
    latest_ms: i64,
    wanted: &[Room],
) -> rusqlite::Result<Vec<RunRow>> {
    let mut due = Vec::new();
    for room in wanted {
        due.extend(runs(
            c,
            &format!(
                "AS r WHERE status = 'pending' AND action = ?1
                   AND (next_attempt_at_ms <= ?2
                        OR (next_attempt_at_ms > ?3 AND held_by IS NOT 'wait'))
                   AND (NOT ?5 OR NOT {})
                 ORDER BY priority, next_attempt_at_ms, id LIMIT ?4",
                crate::store::EARLIER_UNFINISHED
            ),
            (&room.action, now_ms, latest_ms, room.free, room.in_order),
        )?);
    }
    Ok(due)
}

/// The runs of one state change of a problem.
pub(super) fn state_runs(
    c: &Connection,
    source: Source,
    problem_key: &str,
    state: &str,
) -> rusqlite::Result<Vec<RunRow>> {
    runs(
        c,
        "WHERE source = ?1 AND problem_key = ?2 AND state = ?3 ORDER BY id",
        (source, problem_key, state),
    )
}

pub(super) fn run(c: &Connection, id: i64) -> rusqlite::Result<RunRow> {
    runs(c, "WHERE id = ?1", [id])?
        .pop()
        .ok_or(rusqlite::Error::QueryReturnedNoRows)
}

pub(super) fn runs(
    c: &Connection,
    filter: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Vec<RunRow>> {
    let sql = format!("SELECT {} FROM action_runs {filter}", RUN_COLUMNS);
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map(params, |r| {
        Ok(RunRow {
            id: r.get(0)?,
            notification_id: r.get(1)?,
            idem_key: r.get(2)?,
            source: r.get(3)?,
            problem_key: r.get(4)?,
            state: r.get(5)?,
            action: r.get(6)?,
            target: r.get(7)?,
            target_label: r.get(8)?,
            status: r.get(9)?,
            attempts: r.get(10)?,
            next_attempt_at_ms: r.get(11)?,
            last_error: r.get(12)?,
            outcome: r.get(13)?,
            manual: r.get(14)?,
            updated_at_ms: r.get(15)?,
            summary: r.get(16)?,
        })
    })?;
    rows.collect()
}

/// Notifications ready to be routed: not a test, and enrichment (if any) finished or waited for
/// long enough: one received after `waited_since_ms` (and not in the future, which only a clock
/// that went back makes) still waits for its details.
pub(super) fn due_plans(
    c: &Connection,
    now_ms: i64,
    waited_since_ms: i64,
    limit: i64,
) -> rusqlite::Result<Vec<i64>> {
    let mut stmt = c.prepare_cached(
        "SELECT p.notification_id FROM plans p
         WHERE p.status = 'pending'
           AND NOT EXISTS (SELECT 1 FROM enrichments e JOIN notifications n ON n.id = e.notification_id
                           WHERE e.notification_id = p.notification_id AND e.status = 'pending'
                             AND n.received_at_ms > ?2 AND n.received_at_ms <= ?1)
         ORDER BY p.notification_id LIMIT ?3",
    )?;
    let rows = stmt.query_map([now_ms, waited_since_ms, limit], |r| r.get(0))?;
    rows.collect()
}

/// Enrichments due at `now_ms`, oldest first; as with runs, one set for after `latest_ms` is due.
pub(super) fn due_enrichments(
    c: &Connection,
    now_ms: i64,
    latest_ms: i64,
    limit: i64,
) -> rusqlite::Result<Vec<DueEnrichment>> {
    let mut stmt = c.prepare_cached(
        "SELECT e.notification_id, n.problem_key, n.state, n.pid, e.attempts, n.trace_parent
         FROM enrichments e JOIN notifications n ON n.id = e.notification_id
         WHERE e.status = 'pending' AND (e.next_attempt_at_ms <= ?1 OR e.next_attempt_at_ms > ?2)
         ORDER BY e.next_attempt_at_ms, e.notification_id LIMIT ?3",
    )?;
    let rows = stmt.query_map([now_ms, latest_ms, limit], |r| {
        Ok(DueEnrichment {
            notification_id: r.get(0)?,
            problem_key: r.get(1)?,
            state: r.get(2)?,
            pid: r.get(3)?,
            attempts: r.get(4)?,
            trace: r.get(5)?,
        })
    })?;
    rows.collect()
}

/// When the next pending run or enrichment is due; `None` when nothing is pending.
pub(super) fn earliest_pending_ms(c: &Connection) -> rusqlite::Result<Option<i64>> {
    c.prepare_cached(
        "SELECT MIN(at) FROM (
            SELECT MIN(next_attempt_at_ms) AS at FROM action_runs WHERE status = 'pending'
            UNION ALL
            SELECT MIN(next_attempt_at_ms) FROM enrichments WHERE status = 'pending')",
    )?
    .query_row([], |r| r.get(0))
}

pub(super) fn latest_details(
    c: &Connection,
    source: Source,
    problem_key: &str,
) -> rusqlite::Result<Option<String>> {
    c.prepare_cached(
        "SELECT e.details FROM enrichments e JOIN notifications n ON n.id = e.notification_id
         WHERE n.source = ?1 AND n.problem_key = ?2 AND e.details IS NOT NULL
         ORDER BY n.id DESC LIMIT 1",
    )?
    .query_row((source, problem_key), |r| r.get(0))
    .optional()
}

/// What a problem's `problems_sent/` file shows; `None` when hub never received the problem.
pub(super) fn sent_view(
    c: &Connection,
    source: Source,
    problem_key: &str,
) -> rusqlite::Result<Option<SentView>> {
    // The change time is read first: a change that lands in between makes the file look older
    // than it is (and it is marked again anyway), never newer.
    let changed_ms = sent_changed_ms(c, source, problem_key)?;
    let latest = c
        .prepare_cached(
            "SELECT pid, state FROM notifications WHERE source = ?1 AND problem_key = ?2
             ORDER BY id DESC LIMIT 1",
        )?
        .query_row((source, problem_key), |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((pid, state)) = latest else {
        return Ok(None);
    };
    Ok(Some(SentView {
        source,
        problem_key: problem_key.to_string(),
        changed_ms,
        pid,
        state,
        details: latest_details(c, source, problem_key)?,
        runs: problem_runs(c, source, problem_key)?,
    }))
}

fn sent_changed_ms(
    c: &Connection,
    source: Source,
    problem_key: &str,
) -> rusqlite::Result<Option<i64>> {
    c.prepare_cached(
        "SELECT MAX(changed_ms) FROM (
             SELECT updated_at_ms AS changed_ms FROM action_runs
             WHERE source = ?1 AND problem_key = ?2 AND attempts > 0
             UNION ALL
             SELECT e.updated_at_ms
             FROM enrichments e JOIN notifications n ON n.id = e.notification_id
             WHERE n.source = ?1 AND n.problem_key = ?2 AND e.details IS NOT NULL
         )",
    )?
    .query_row((source, problem_key), |r| r.get(0))
}
