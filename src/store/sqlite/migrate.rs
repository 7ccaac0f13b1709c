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
];

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
        let failed = |source| StoreError::Migrate {
            version: *version,
            source,
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
    let read = |source| StoreError::Migrate { version: 0, source };
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
        assert_eq!(version(&conn).unwrap(), 7);
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
        assert_eq!(run(&mut conn).unwrap(), 2);
        let has_summary: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('action_runs') WHERE name = 'summary'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(has_summary, 1);
    }

    #[test]
    fn a_store_from_a_newer_release_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(
            run(&mut conn),
            Err(StoreError::NewerSchema {
                found: 99,
                known: 7
            })
        ));
    }
}
