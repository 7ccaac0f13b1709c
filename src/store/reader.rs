//! The dispatcher's hot reads, on a connection of its own and without sqlx's worker-thread hop:
//! every run reads its notification, and every `problems_sent/` rewrite reads its problem's runs.
//! Each is an indexed lookup of a few microseconds, less than the two context switches sqlx
//! spends on handing it to its worker thread and back, so they run in place.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::runs::{RunRow, StoredNotification};
use super::StoreError;

pub(super) struct Reader(Mutex<Connection>);

impl Reader {
    pub fn open(path: &Path) -> rusqlite::Result<Reader> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "query_only", true)?;
        Ok(Reader(Mutex::new(conn)))
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

const NOTIFICATION: &str =
    "SELECT n.id, n.source, n.problem_key, n.state, n.pid, n.title, n.is_test,
        n.body, n.received_at_ms, e.details, n.facts
     FROM notifications n LEFT JOIN enrichments e ON e.notification_id = n.id
     WHERE n.id = ?1";

pub(super) fn notification(c: &Connection, id: i64) -> rusqlite::Result<StoredNotification> {
    c.prepare_cached(NOTIFICATION)?.query_row([id], |r| {
        Ok(StoredNotification {
            id: r.get(0)?,
            source: r.get(1)?,
            problem_key: r.get(2)?,
            state: r.get(3)?,
            pid: r.get(4)?,
            title: r.get(5)?,
            is_test: r.get(6)?,
            body: r.get(7)?,
            received_at_ms: r.get(8)?,
            details: r.get(9)?,
            facts: r.get(10)?,
        })
    })
}

pub(super) fn latest_notification(
    c: &Connection,
    source: &str,
    problem_key: &str,
) -> rusqlite::Result<Option<StoredNotification>> {
    let id: Option<i64> = c
        .prepare_cached(
            "SELECT id FROM notifications WHERE source = ?1 AND problem_key = ?2
             ORDER BY id DESC LIMIT 1",
        )?
        .query_row([source, problem_key], |r| r.get(0))
        .optional()?;
    id.map(|id| notification(c, id)).transpose()
}

pub(super) fn problem_runs(
    c: &Connection,
    source: &str,
    problem_key: &str,
) -> rusqlite::Result<Vec<RunRow>> {
    let sql = format!(
        "SELECT {} FROM action_runs WHERE source = ?1 AND problem_key = ?2 ORDER BY id",
        super::runs::RUN_COLUMNS
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map([source, problem_key], |r| {
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
        })
    })?;
    rows.collect()
}

pub(super) fn latest_details(
    c: &Connection,
    source: &str,
    problem_key: &str,
) -> rusqlite::Result<Option<String>> {
    c.prepare_cached(
        "SELECT e.details FROM enrichments e JOIN notifications n ON n.id = e.notification_id
         WHERE n.source = ?1 AND n.problem_key = ?2 AND e.details IS NOT NULL
         ORDER BY n.id DESC LIMIT 1",
    )?
    .query_row([source, problem_key], |r| r.get(0))
    .optional()
}

pub(super) fn sent_changed_ms(
    c: &Connection,
    source: &str,
    problem_key: &str,
) -> rusqlite::Result<Option<i64>> {
    c.prepare_cached(
        "SELECT MAX(changed_ms) FROM (
             SELECT updated_at_ms AS changed_ms FROM action_runs
             WHERE source = ?1 AND problem_key = ?2
             UNION ALL
             SELECT e.updated_at_ms
             FROM enrichments e JOIN notifications n ON n.id = e.notification_id
             WHERE n.source = ?1 AND n.problem_key = ?2 AND e.details IS NOT NULL
         )",
    )?
    .query_row([source, problem_key], |r| r.get(0))
}
