//! The single writer: group commit of whatever is waiting, then the files, then the answers.
//!
//! Every write to the store goes through it: new notifications, and the dispatcher's claims,
//! outcomes and routing. One writer means no one ever waits on SQLite's lock (whose busy handler
//! sleeps, up to 100 ms a try, and starved the dispatcher while notifications poured in), and one
//! fsync commits a whole burst of both.
//!
//! It runs on two threads of its own, with its own SQLite connection (rusqlite, prepared statements
//! kept), so the hot path has no async hop per statement: sqlx's SQLite driver sends every statement
//! to a worker thread and back, and under load those hops cost more CPU than the statements. The SQL
//! thread commits batch N+1 while the file thread writes batch N's files; answers go out from the
//! file thread, in order, once a notification is both committed and in the folder.

use std::path::{Path, PathBuf};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Notify};

use super::{files, Accepted, StoreError};
use crate::domain::{Notification, Source};

/// Upper bound on one transaction, so one batch never holds the answers of a whole storm.
const MAX_BATCH: usize = 512;

/// Committed batches waiting for their files; a bound keeps memory flat if the disk stalls.
const FILE_QUEUE: usize = 4;

/// What the writer is asked to do.
// Notifications are most of the jobs; boxing them to shrink the enum would allocate for each.
#[allow(clippy::large_enum_variant)]
pub(super) enum Job {
    /// Store a new notification; answered once it is committed and its file written.
    Accept {
        notification: Notification,
        reply: Reply,
    },
    /// Any other write, in a savepoint of the batch's transaction; told once it is committed.
    Apply(Work),
}

type Reply = tokio::sync::oneshot::Sender<Result<Accepted, StoreError>>;

/// A write for the writer's transaction. It returns whether its changes are to be kept (they are
/// rolled back to its savepoint otherwise) and how to tell its caller once the batch is committed.
pub(super) type Work = Box<dyn FnOnce(&Connection) -> Applied + Send>;

pub(super) struct Applied {
    pub keep: bool,
    pub deliver: Deliver,
}

pub(super) type Deliver = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// Opens the writer's connection and starts its two threads. They stop when every `Store` handle
/// (and so the job queue's sender) is gone.
pub(super) fn start(
    db_path: &Path,
    queue: mpsc::Receiver<Job>,
    dir: PathBuf,
    committed: Arc<Notify>,
) -> Result<(), StoreError> {
    let conn = open(db_path).map_err(|source| StoreError::OpenFile {
        path: db_path.to_path_buf(),
        source,
    })?;
    let (to_files, batches) = std_mpsc::sync_channel::<Committed>(FILE_QUEUE);
    std::thread::Builder::new()
        .name("hub-files".into())
        .spawn(move || write_files_loop(&dir, batches))
        .map_err(StoreError::StartWriter)?;
    std::thread::Builder::new()
        .name("hub-writer".into())
        .spawn(move || commit_loop(conn, queue, to_files, &committed))
        .map_err(StoreError::StartWriter)?;
    Ok(())
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // Answers depend on these commits: each one is fsynced before anyone hears of it.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Every write of hub runs here (about twenty statements); rusqlite keeps 16 by default, so a
    // mix of notifications, claims and outcomes kept preparing them again.
    conn.set_prepared_statement_cache_capacity(super::STATEMENTS_KEPT);
    Ok(conn)
}

/// A committed batch on its way to the folder: each notification, its answer, and what the
/// transaction decided for it (or why it failed).
struct Committed {
    accepted: Vec<(Notification, Reply, Result<Planned, StoreError>)>,
}

/// A row as decided inside the transaction.
struct Planned {
    accepted: Accepted,
    /// Whether the file must be written (new) or only checked (duplicate).
    new: bool,
}

fn commit_loop(
    mut conn: Connection,
    mut queue: mpsc::Receiver<Job>,
    to_files: std_mpsc::SyncSender<Committed>,
    committed: &Notify,
) {
    while let Some(first) = queue.blocking_recv() {
        let mut jobs = Vec::with_capacity(MAX_BATCH.min(queue.len() + 1));
        jobs.push(first);
        while jobs.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let mut accepted = Vec::new();
        let mut delivers = Vec::new();
        let failure = run_batch(&mut conn, jobs, &mut accepted, &mut delivers).err();
        if let Some(e) = &failure {
            tracing::error!(error = %e, "cannot commit to the store");
        }
        let not_stored =
            |e: &String| StoreError::NotStored(format!("cannot commit to the store: {e}"));
        for deliver in delivers {
            deliver(failure.as_ref().map_or(Ok(()), |e| Err(not_stored(e))));
        }
        if let Some(e) = &failure {
            for (_, _, planned) in &mut accepted {
                *planned = Err(not_stored(e));
            }
        }
        committed.notify_one();
        if accepted.is_empty() {
            continue;
        }
        if to_files.send(Committed { accepted }).is_err() {
            // The file thread is gone (it only stops by panicking): the answers' senders were
            // dropped with the batch, so the requests fail with "not stored" rather than hang.
            tracing::error!("the file writer stopped; notifications can no longer be accepted");
            return;
        }
    }
}

/// Runs one batch in one transaction, in the order the jobs came. Each job has a savepoint of its
/// own: a notification that cannot be inserted, or a write that fails, is rolled back alone and
/// told so, and the rest of the batch is kept.
fn run_batch(
    conn: &mut Connection,
    jobs: Vec<Job>,
    accepted: &mut Vec<(Notification, Reply, Result<Planned, StoreError>)>,
    delivers: &mut Vec<Deliver>,
) -> Result<(), String> {
    let received_at_ms = super::now_ms();
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| e.to_string())?;
    for job in jobs {
        match job {
            Job::Accept {
                notification,
                reply,
            } => {
                let planned = in_savepoint(&tx, |c| insert_one(c, &notification, received_at_ms))
                    .map_err(|e| e.to_string())?
                    .map_err(|e| {
                        tracing::error!(error = %e, "cannot insert a notification");
                        StoreError::NotStored(format!("cannot insert into the store: {e}"))
                    });
                accepted.push((notification, reply, planned));
            }
            Job::Apply(work) => {
                let applied = in_savepoint(&tx, |c| {
                    // A bug in one write must not take the writer (and with it every ingest) down:
                    // its caller, whose answer channel went with the closure, sees the store as
                    // closed for that one call.
                    let applied =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(c)))
                            .unwrap_or_else(|_| {
                                tracing::error!(
                                    "a write to the store panicked; it was rolled back"
                                );
                                Applied {
                                    keep: false,
                                    deliver: Box::new(|_| {}),
                                }
                            });
                    if applied.keep {
                        Ok(applied.deliver)
                    } else {
                        Err(applied.deliver)
                    }
                })
                .map_err(|e| e.to_string())?;
                delivers.push(applied.unwrap_or_else(|deliver| deliver));
            }
        }
    }
    tx.commit().map_err(|e| e.to_string())
}

/// Runs `f` in a savepoint, kept if it returns `Ok` and rolled back otherwise. The outer error is
/// the savepoint's own (the transaction is then unusable).
fn in_savepoint<T, E>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, E>,
) -> rusqlite::Result<Result<T, E>> {
    // Prepared once and kept, like the jobs' own statements: two of them run for every job.
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    let result = f(conn);
    if result.is_err() {
        conn.prepare_cached("ROLLBACK TO job")?.execute([])?;
    }
    conn.prepare_cached("RELEASE job")?.execute([])?;
    Ok(result)
}

fn write_files_loop(dir: &Path, batches: std_mpsc::Receiver<Committed>) {
    for Committed { accepted } in batches {
        for (notification, reply, planned) in accepted {
            let result = planned.and_then(|p| {
                let name = p.accepted.file_name();
                // A duplicate's file is written again only if missing: an earlier attempt
                // committed but could not write it, and the sender is retrying.
                if p.new || !dir.join(name).is_file() {
                    files::write_view(dir, name, &notification.body).map_err(|e| {
                        StoreError::NotStored(format!(
                            "stored in the database but cannot write {name}: {e}"
                        ))
                    })?;
                }
                Ok(p.accepted)
            });
            // The requester may have gone away (client hung up); its notification is stored anyway.
            let _ = reply.send(result);
        }
    }
}

fn insert_one(
    conn: &Connection,
    n: &Notification,
    received_at_ms: i64,
) -> rusqlite::Result<Planned> {
    let sha = Sha256::digest(n.identity.as_deref().unwrap_or(&n.body)).to_vec();
    let existing: Option<(i64, String)> = conn
        .prepare_cached(
            "SELECT id, file_name FROM notifications
             WHERE source = ?1 AND problem_key = ?2 AND state = ?3 AND body_sha256 = ?4",
        )?
        .query_row(
            params![n.source.as_str(), n.problem_key, n.state, sha],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((id, file_name)) = existing {
        conn.prepare_cached("UPDATE notifications SET duplicates = duplicates + 1 WHERE id = ?1")?
            .execute([id])?;
        return Ok(Planned {
            accepted: Accepted::Duplicate { id, file_name },
            new: false,
        });
    }
    let file_name = free_name(conn, n)?;
    let facts = serde_json::to_string(&n.facts).ok();
    let id: i64 = conn
        .prepare_cached(
            "INSERT INTO notifications
               (source, problem_key, state, pid, title, is_test, body, body_sha256, file_name,
                received_at_ms, facts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             RETURNING id",
        )?
        .query_row(
            params![
                n.source.as_str(),
                n.problem_key,
                n.state,
                n.pid,
                n.title,
                n.is_test,
                n.body,
                sha,
                file_name,
                received_at_ms,
                facts
            ],
            |r| r.get(0),
        )?;
    if needs_enrichment(n) {
        conn.prepare_cached(
            "INSERT INTO enrichments (notification_id, next_attempt_at_ms, updated_at_ms)
             VALUES (?1, ?2, ?2)",
        )?
        .execute(params![id, received_at_ms])?;
    }
    if !n.is_test {
        conn.prepare_cached("INSERT INTO plans (notification_id, updated_at_ms) VALUES (?1, ?2)")?
            .execute(params![id, received_at_ms])?;
    }
    Ok(Planned {
        accepted: Accepted::Stored { id, file_name },
        new: true,
    })
}

/// Real Dynatrace problems are enriched from the API; a sender's self-test never is.
fn needs_enrichment(n: &Notification) -> bool {
    n.source == Source::Dynatrace && !n.is_test && n.pid.is_some()
}

/// The first candidate name no stored notification uses. Only the writer inserts, so a name found
/// free here is still free when this transaction commits.
fn free_name(conn: &Connection, n: &Notification) -> rusqlite::Result<String> {
    // Dynatrace keeps the sample's names; the others say where they came from.
    let prefix = (n.source != Source::Dynatrace).then(|| n.source.as_str());
    let stem = files::stem(prefix, &n.problem_key, &n.state);
    let mut taken = conn.prepare_cached("SELECT 1 FROM notifications WHERE file_name = ?1")?;
    let mut n = 1;
    loop {
        let name = files::candidate(&stem, n);
        if !taken.exists([&name])? {
            return Ok(name);
        }
        n += 1;
    }
}
