//! The SQLite schema, brought up to date at open: each migration in `migrations/sqlite/` runs once,
//! in its own transaction, and `PRAGMA user_version` says how far a store is.
//!
//! Stores made by releases that kept their migrations in sqlx's `_sqlx_migrations` table are read
//! as having the versions recorded there.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::StoreError;

/// Every migration, in order; a version is never reused or changed once released.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../../../migrations/sqlite/0001_notifications.sql"),
    ),
    (
        2,
        include_str!("../../../migrations/sqlite/0002_enrichments.sql"),
    ),
    (
        3,
        include_str!("../../../migrations/sqlite/0003_action_runs.sql"),
    ),
    (4, include_str!("../../../migrations/sqlite/0004_facts.sql")),
    (
        5,
        include_str!("../../../migrations/sqlite/0005_drop_redundant_index.sql"),
    ),
    (
        6,
        include_str!("../../../migrations/sqlite/0006_file_name_counters.sql"),
    ),
    (
        7,
        include_str!("../../../migrations/sqlite/0007_run_summary.sql"),
    ),
    (
        8,
        include_str!("../../../migrations/sqlite/0008_kept_counts.sql"),
    ),
    (
        9,
        include_str!("../../../migrations/sqlite/0009_folder_marks.sql"),
    ),
    (
        10,
        include_str!("../../../migrations/sqlite/0010_pid_index.sql"),
    ),
    (
        11,
        include_str!("../../../migrations/sqlite/0011_threads.sql"),
    ),
    (
        12,
        include_str!("../../../migrations/sqlite/0012_noise.sql"),
    ),
    (
        13,
        include_str!("../../../migrations/sqlite/0013_run_priority.sql"),
    ),
    (
        14,
        include_str!("../../../migrations/sqlite/0014_write_probe.sql"),
    ),
    (
        15,
        include_str!("../../../migrations/sqlite/0015_people.sql"),
    ),
    (
        16,
        include_str!("../../../migrations/sqlite/0016_escalations.sql"),
    ),
    (
        17,
        include_str!("../../../migrations/sqlite/0017_groups.sql"),
    ),
    (
        18,
        include_str!("../../../migrations/sqlite/0018_trace.sql"),
    ),
];

/// Whether the store's tables are this hub's, changing nothing.
pub(super) fn check(conn: &Connection) -> Result<(), StoreError> {
    let found = version(conn)?;
    let known = MIGRATIONS.last().map_or(0, |(v, _)| *v);
    match found.cmp(&known) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Greater => Err(StoreError::NewerSchema { found, known }),
        std::cmp::Ordering::Less => Err(StoreError::OlderSchema { found, known }),
    }
}

/// Applies what the store lacks; returns how many migrations ran.
pub(super) fn run(conn: &mut Connection) -> Result<usize, StoreError> {
    let current = version(conn)?;
    let known = MIGRATIONS.last().map_or(0, |(v, _)| *v);
    if current > known {
        return Err(StoreError::NewerSchema {
            found: current,
            known,
        });
    }
    let mut ran = 0;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let failed = |source: rusqlite::Error| StoreError::Migrate {
            version: *version,
            source: source.into(),
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        tx.execute_batch(sql).map_err(failed)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
        ran += 1;
    }
    Ok(ran)
}

/// The schema version of a store: `user_version`, or for a store of an older release the last
/// migration its `_sqlx_migrations` table records.
fn version(conn: &Connection) -> Result<i64, StoreError> {
    let read = |source: rusqlite::Error| StoreError::Migrate {
        version: 0,
        source: source.into(),
    };
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(read)?;
    if version > 0 {
        return Ok(version);
    }
    let sqlx_table: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(read)?;
    if sqlx_table.is_none() {
        return Ok(0);
    }
    let recorded: Option<i64> = conn
        .query_row(
            "SELECT MAX(version) FROM _sqlx_migrations WHERE success",
            [],
            |r| r.get(0),
        )
        .map_err(read)?;
    Ok(recorded.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_store_gets_every_migration_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(run(&mut conn).unwrap(), MIGRATIONS.len());
        assert_eq!(run(&mut conn).unwrap(), 0);
        assert_eq!(version(&conn).unwrap(), MIGRATIONS.len() as i64);
    }

    /// A store made by a release that ran its migrations through sqlx is taken as it stands.
    #[test]
    fn a_store_migrated_by_sqlx_continues_from_its_last_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        for (_, sql) in &MIGRATIONS[..5] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, success BOOLEAN NOT NULL);
             INSERT INTO _sqlx_migrations VALUES (1, 1), (2, 1), (3, 1), (4, 1), (5, 1);",
        )
        .unwrap();
        assert_eq!(run(&mut conn).unwrap(), MIGRATIONS.len() - 5);
        let has_summary: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('action_runs') WHERE name = 'summary'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(has_summary, 1);
    }

    /// A store that had rows before the counts were kept starts with them counted, and the
    /// triggers keep them from there.
    #[test]
    fn kept_counts_start_from_the_rows_there_and_follow_every_change() {
        let mut conn = Connection::open_in_memory().unwrap();
        for (_, sql) in &MIGRATIONS[..7] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "INSERT INTO notifications (id, source, problem_key, state, is_test, body, body_sha256,
                                        file_name, received_at_ms, duplicates)
             VALUES (1, 'dynatrace', 'P-1', 'OPEN', 0, x'00', x'01', 'a', 0, 2),
                    (2, 'dynatrace', 'P-0', 'OPEN', 1, x'00', x'02', 'b', 0, 0);
             INSERT INTO action_runs (id, notification_id, idem_key, source, problem_key, state,
                                      action, target, target_label, status, attempts,
                                      next_attempt_at_ms, created_at_ms, updated_at_ms)
             VALUES (1, 1, 'k1', 'dynatrace', 'P-1', 'OPEN', 'page', '', '', 'pending', 1, 0, 0, 0);
             PRAGMA user_version = 7;",
        )
        .unwrap();
        assert_eq!(run(&mut conn).unwrap(), MIGRATIONS.len() - 7);
        let counts = |c: &Connection| -> (i64, i64, i64, String) {
            c.query_row(
                "SELECT received, test, duplicate,
                        (SELECT group_concat(bucket || '=' || runs) FROM run_counts WHERE runs != 0)
                 FROM source_counts",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap()
        };
        assert_eq!(counts(&conn), (1, 1, 2, "retrying=1".into()));
        conn.execute_batch(
            "UPDATE notifications SET duplicates = 5 WHERE id = 1;
             UPDATE action_runs SET status = 'running', attempts = 2 WHERE id = 1;",
        )
        .unwrap();
        assert_eq!(counts(&conn), (1, 1, 5, "running=1".into()));
        conn.execute_batch(
            "UPDATE action_runs SET status = 'succeeded' WHERE id = 1;
             DELETE FROM action_runs; DELETE FROM notifications WHERE id = 1;",
        )
        .unwrap();
        let left: (i64, i64, i64, Option<String>) = conn
            .query_row(
                "SELECT received, test, duplicate,
                        (SELECT group_concat(bucket) FROM run_counts WHERE runs != 0)
                 FROM source_counts",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(left, (0, 1, 0, None));
    }

    #[test]
    fn a_store_from_a_newer_release_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(
            run(&mut conn),
            Err(StoreError::NewerSchema { found: 99, known }) if known == MIGRATIONS.len() as i64
        ));
    }
}
