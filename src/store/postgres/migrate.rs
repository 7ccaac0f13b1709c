//! The PostgreSQL schema, brought up to date at open. Instances starting together take turns: the
//! migrations run in one transaction holding an advisory lock, so the second waits for the first
//! and then finds nothing to do.

use super::StoreError;

/// Every migration, in order; a version is never reused or changed once released.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../../../migrations/postgres/0001_schema.sql"),
    ),
    (
        2,
        include_str!("../../../migrations/postgres/0002_kept_counts.sql"),
    ),
    (
        3,
        include_str!("../../../migrations/postgres/0003_folder_marks.sql"),
    ),
    (
        4,
        include_str!("../../../migrations/postgres/0004_pid_index.sql"),
    ),
    (
        5,
        include_str!("../../../migrations/postgres/0005_threads.sql"),
    ),
    (
        6,
        include_str!("../../../migrations/postgres/0006_noise.sql"),
    ),
    (
        7,
        include_str!("../../../migrations/postgres/0007_queue_indexes.sql"),
    ),
    (
        8,
        include_str!("../../../migrations/postgres/0008_run_priority.sql"),
    ),
    (
        9,
        include_str!("../../../migrations/postgres/0009_people.sql"),
    ),
    (
        10,
        include_str!("../../../migrations/postgres/0010_escalations.sql"),
    ),
    (
        11,
        include_str!("../../../migrations/postgres/0011_groups.sql"),
    ),
    (
        12,
        include_str!("../../../migrations/postgres/0012_trace.sql"),
    ),
];

/// The advisory lock's key: any fixed number no other program on the database uses.
const LOCK_KEY: i64 = 0x0068_7562_5f6d_6967; // "hub_mig"

/// Whether the database's tables are this hub's, changing nothing (not even the schema table).
pub(super) async fn check(client: &tokio_postgres::Client) -> Result<(), StoreError> {
    let made: bool = client
        .query_one("SELECT to_regclass('hub_schema') IS NOT NULL", &[])
        .await?
        .try_get(0)?;
    let found: i64 = if made {
        client
            .query_one("SELECT COALESCE(MAX(version), 0) FROM hub_schema", &[])
            .await?
            .try_get(0)?
    } else {
        0
    };
    let known = MIGRATIONS.last().map_or(0, |(v, _)| *v);
    match found.cmp(&known) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Greater => Err(StoreError::NewerSchema { found, known }),
        std::cmp::Ordering::Less => Err(StoreError::OlderSchema { found, known }),
    }
}

/// Applies what the database lacks; returns how many migrations ran.
pub(super) async fn run(client: &mut tokio_postgres::Client) -> Result<usize, StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS hub_schema (version BIGINT PRIMARY KEY)")
        .await?;
    let current: i64 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM hub_schema", &[])
        .await?
        .try_get(0)?;
    let known = MIGRATIONS.last().map_or(0, |(v, _)| *v);
    if current > known {
        return Err(StoreError::NewerSchema {
            found: current,
            known,
        });
    }
    let mut ran = 0;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO hub_schema (version) VALUES ($1)", &[version])
            .await?;
        ran += 1;
    }
    tx.commit().await?;
    Ok(ran)
}
