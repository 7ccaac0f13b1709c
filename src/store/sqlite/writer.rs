//! The single writer: group commit of whatever is waiting, files written before the commit, then
//! the answers.
//!
//! Every write to the store goes through it: new notifications, and the dispatcher's claims,
//! outcomes and routing. One writer means no one ever waits on SQLite's lock (whose busy handler
//! sleeps, up to 100 ms a try, and starved the dispatcher while notifications poured in), and one
//! fsync commits a whole burst of both.
//!
//! It runs on two threads of its own, with its own SQLite connection (prepared statements kept), so
//! the hot path has no async hop per statement (an async driver that sends every statement to a
//! worker thread and back cost more CPU under load than the statements themselves). The
//! SQL thread inserts a batch's notifications while the file thread writes their files, and commits
//! only once every file is written: a notification is answered 2xx exactly when it is committed
//! with its file, and one whose file could not be written is taken out of the transaction first.

use std::path::{Path, PathBuf};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Notify};

use crate::domain::Notification;
use crate::logging::Throttle;
use crate::store::inbox::{Foreign, Health, Mode, Pending};
use crate::store::{files, Accepted, StoreError};

/// Upper bound on one transaction, so one batch never holds the answers of a whole storm.
const MAX_BATCH: usize = 512;

/// Committed batches waiting for their files to be named.
const PUBLISH_QUEUE: usize = 4;

/// A failing store (a full disk) fails every batch; one line per interval says so.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What the writer is asked to do.
// Notifications are most of the jobs; boxing them to shrink the enum would allocate for each.
#[allow(clippy::large_enum_variant)]
pub(super) enum Job {
    /// Store a new notification; answered once it is committed and its file named.
    Accept {
        notification: Notification,
        mode: Mode,
        /// Its bytes, written unnamed; `None` when its file is one already in the folder.
        file: Option<Pending>,
        reply: Reply,
    },
    /// Any other write, in a savepoint of the batch's transaction; told once it is committed.
    Apply(Work),
    /// Empty the WAL into the database file (at a graceful stop).
    Checkpoint(tokio::sync::oneshot::Sender<Result<(), StoreError>>),
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

/// Opens the writer's connection and starts its thread. It stops when every `Sqlite` handle (and so
/// the job queue's sender) is gone.
pub(super) fn start(
    db_path: &Path,
    queue: mpsc::Receiver<Job>,
    dir: PathBuf,
    committed: Arc<Notify>,
    health: Arc<Health>,
    foreign: Arc<Foreign>,
) -> Result<(), StoreError> {
    let conn = open(db_path).map_err(|source| StoreError::OpenFile {
        path: db_path.to_path_buf(),
        source: source.into(),
    })?;
    // Bounded, so memory stays flat if the disk stalls.
    let (files, batches) = std_mpsc::sync_channel::<Publish>(PUBLISH_QUEUE);
    let (file_dir, unnamed, file_db) = (dir.clone(), foreign.clone(), db_path.to_path_buf());
    std::thread::Builder::new()
        .name("hub-files".into())
        .spawn(move || publish_loop(&file_db, &file_dir, batches, &unnamed))
        .map_err(StoreError::StartWriter)?;
    std::thread::Builder::new()
        .name("hub-writer".into())
        .spawn(move || commit_loop(conn, queue, &dir, &files, &foreign, &committed, &health))
        .map_err(StoreError::StartWriter)?;
    Ok(())
}

/// A committed batch for the file thread: its new files get their names, then it is answered, in
/// order. One thread names every received file, since creating entries in one folder from several
/// threads only makes the threads spin on the folder's lock; and it does so while the next batch
/// is inserted and committed.
struct Publish {
    named: Vec<(Pending, NameFor)>,
    answers: Vec<(Reply, Result<Accepted, StoreError>)>,
}

fn publish_loop(
    db_path: &Path,
    dir: &Path,
    batches: std_mpsc::Receiver<Publish>,
    foreign: &Foreign,
) {
    // Opened the first time a file hub did not write holds a name it gives (rare).
    let mut own: Option<Connection> = None;
    for Publish { named, answers } in batches {
        let mut renamed = std::collections::HashMap::new();
        for (Pending { file, .. }, name) in named {
            let linked = match file.link(dir, &name.file) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    rename(&mut own, db_path, dir, &file, &name, foreign)
                        .map(|new| renamed.insert(name.id, new))
                        .map_err(|e| e.to_string())
                }
                other => other.map(|()| None).map_err(|e| e.to_string()),
            };
            // Rare (no room for one more folder entry): the notification is committed, so it
            // is answered as stored, and the start-up pass writes its file.
            if let Err(e) = linked {
                foreign.left_unnamed();
                tracing::error!(file = %name.file, error = %e, "cannot name a received file; it is written back at the next start");
            }
        }
        for (reply, mut answer) in answers {
            if let Ok(Accepted::Stored { id, file_name }) = &mut answer {
                if let Some(new) = renamed.remove(id) {
                    *file_name = new;
                }
            }
            // The requester may have gone away; its notification is stored anyway.
            let _ = reply.send(answer);
        }
    }
}

/// Who a new file's name was given to, so that it can be given another.
pub(super) struct NameFor {
    file: String,
    id: i64,
    stem: String,
}

impl NameFor {
    fn new(file: String, accepted: &Accepted, n: &Notification) -> NameFor {
        let id = match accepted {
            Accepted::Stored { id, .. } | Accepted::Duplicate { id, .. } => *id,
        };
        NameFor {
            file,
            id,
            stem: files::notification_stem(n),
        }
    }
}

/// A committed notification whose name a file hub did not write holds (put in the folder while
/// hub ran) gets the next free name, in the store first, then in the folder; so the answer names
/// the file the notification really has, and that file is there when the answer goes out. On the
/// file thread's own connection: it is rare, and the writer's transactions are short.
fn rename(
    own: &mut Option<Connection>,
    db_path: &Path,
    dir: &Path,
    file: &files::Unnamed,
    name: &NameFor,
    foreign: &Foreign,
) -> Result<String, StoreError> {
    foreign.add(&name.file);
    let conn = match own {
        Some(c) => c,
        None => own.insert(open(db_path)?),
    };
    for _ in 0..8 {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let new = free_name(&tx, &name.stem, foreign)?;
        tx.execute(
            "UPDATE notifications SET file_name = ?1 WHERE id = ?2",
            params![new, name.id],
        )?;
        tx.commit()?;
        match file.link(dir, &new) {
            Ok(()) => {
                tracing::warn!(taken = %name.file, file = %new, "a file hub did not write holds a received file's name; the notification's file has the next free name");
                return Ok(new);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => foreign.add(&new),
            Err(e) => {
                return Err(StoreError::NotStored(format!("cannot name {new}: {e}")));
            }
        }
    }
    Err(StoreError::NotStored(
        "every free name tried is taken by a file hub did not write".into(),
    ))
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

fn commit_loop(
    mut conn: Connection,
    mut queue: mpsc::Receiver<Job>,
    dir: &Path,
    files: &std_mpsc::SyncSender<Publish>,
    foreign: &Foreign,
    committed: &Notify,
    health: &Health,
) {
    let mut errors = Throttle::new(ERROR_LOG_INTERVAL);
    let mut next = None;
    while let Some(first) = next.take().or_else(|| queue.blocking_recv()) {
        if let Job::Checkpoint(reply) = first {
            let _ = reply.send(checkpoint(&conn));
            continue;
        }
        let mut jobs = Vec::with_capacity(MAX_BATCH.min(queue.len() + 1));
        jobs.push(first);
        while jobs.len() < MAX_BATCH {
            match queue.try_recv() {
                // A checkpoint waits for the batch before it: it cannot run inside a transaction.
                Ok(job @ Job::Checkpoint(_)) => {
                    next = Some(job);
                    break;
                }
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let mut batch = Batch::default();
        let failure = run_batch(&mut conn, jobs, dir, foreign, &mut batch).err();
        match &failure {
            Some(e) => {
                // Nothing of the batch is stored: its files are dropped unnamed, leaving nothing.
                batch.unnamed.clear();
                health.write_failed(&e.to_string());
                if let Some(suppressed) = errors.ready() {
                    tracing::error!(error = %e, similar_errors_since_last_line = suppressed, "cannot commit to the store");
                }
            }
            // A notification that could not be stored (its row or its file: a full disk fails
            // them one by one while the empty commit around them goes through) counts as a
            // failed write unless another of the batch was stored.
            None => {
                let stored = batch.accepted.iter().any(|(_, a)| a.is_ok());
                match batch.accepted.iter().find_map(|(_, a)| a.as_ref().err()) {
                    Some(e) if !stored => health.write_failed(&e.to_string()),
                    _ => health.write_succeeded(),
                }
            }
        }
        let not_stored =
            |e: &rusqlite::Error| StoreError::NotStored(format!("cannot commit to the store: {e}"));
        for deliver in batch.delivers {
            deliver(failure.as_ref().map_or(Ok(()), |e| Err(not_stored(e))));
        }
        let answers: Vec<_> = match &failure {
            Some(e) => batch
                .accepted
                .into_iter()
                .map(|(reply, _)| (reply, Err(not_stored(e))))
                .collect(),
            None => batch.accepted,
        };
        let publish = Publish {
            named: batch.unnamed,
            answers,
        };
        if let Err(std_mpsc::SendError(Publish { answers, .. })) = files.send(publish) {
            // The file thread is gone (it only stops by panicking): say so rather than hang.
            for (reply, _) in answers {
                let _ = reply.send(Err(StoreError::NotStored("the file writer stopped".into())));
            }
        }
        committed.notify_one();
    }
}

/// Moves what the WAL holds into the database file and empties the WAL, so that `hub.db` alone
/// is a whole copy once hub has stopped (a backup of that one file, say).
fn checkpoint(conn: &Connection) -> Result<(), StoreError> {
    let (busy, _, _): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    if busy != 0 {
        return Err(StoreError::Checkpoint(
            "another process is reading the store",
        ));
    }
    Ok(())
}

/// What one batch did: answers to give once its fate is known, and the files it wrote.
#[derive(Default)]
struct Batch {
    accepted: Vec<(Reply, Result<Accepted, StoreError>)>,
    delivers: Vec<Deliver>,
    /// New files written for this batch, to be named once it is committed (dropped unnamed, and
    /// so gone, if it is not).
    unnamed: Vec<(Pending, NameFor)>,
}

/// Runs one batch in one transaction, in the order the jobs came. Each job has a savepoint of its
/// own: a notification that cannot be inserted, or a write that fails, is rolled back alone and
/// told so, and the rest of the batch is kept.
///
/// A new notification comes with its bytes already written to an unnamed file (see
/// [`super::Sqlite::accept_all`]); it is named after the commit, so what is committed has its file,
/// and a notification whose file could not be written never reached the store (its sender gets
/// 503 and retries, and nothing of it is stored or run). Writing the files after the commit would
/// leave a row that runs its actions while its sender was told it was not stored.
fn run_batch(
    conn: &mut Connection,
    jobs: Vec<Job>,
    dir: &Path,
    foreign: &Foreign,
    batch: &mut Batch,
) -> Result<(), rusqlite::Error> {
    let received_at_ms = crate::clock::now_ms();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for job in jobs {
        match job {
            Job::Accept {
                notification,
                mode,
                file,
                reply,
            } => {
                let planned = in_savepoint(&tx, |c| {
                    insert_one(c, &notification, &mode, received_at_ms, dir, foreign)
                })?;
                let answer = match planned {
                    Ok((accepted, to_name)) => {
                        // A redelivery's file was written already: this one is dropped unnamed.
                        match (to_name, file) {
                            (Some(name), Some(file)) => batch
                                .unnamed
                                .push((file, NameFor::new(name, &accepted, &notification))),
                            // An imported file whose own name the store gave to another.
                            (Some(name), None) => {
                                match files::Unnamed::write(dir, &notification.body) {
                                    Ok(file) => batch.unnamed.push((
                                        Pending { file, _slot: None },
                                        NameFor::new(name, &accepted, &notification),
                                    )),
                                    Err(e) => {
                                        tracing::error!(file = %name, error = %e, "cannot write an imported file; it is written back at the next start")
                                    }
                                }
                            }
                            (None, _) => {}
                        }
                        Ok(accepted)
                    }
                    Err(e) => {
                        static WHY: crate::logging::SharedThrottle =
                            crate::logging::SharedThrottle::new(ERROR_LOG_INTERVAL);
                        if let Some(held_back) = WHY.ready() {
                            tracing::error!(error = %e, similar_errors_since_last_line = held_back, "cannot store a notification");
                        }
                        Err(StoreError::NotStored(format!(
                            "cannot store the notification: {e}"
                        )))
                    }
                };
                batch.accepted.push((reply, answer));
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
                })?;
                batch
                    .delivers
                    .push(applied.unwrap_or_else(|deliver| deliver));
            }
            Job::Checkpoint(reply) => {
                let _ = reply.send(Err(StoreError::Checkpoint(
                    "a checkpoint cannot run inside a batch",
                )));
            }
        }
    }
    tx.commit()
}

/// Why a notification could not be stored.
#[derive(Debug, thiserror::Error)]
enum InsertError {
    #[error("{0}")]
    Db(#[from] rusqlite::Error),
    #[error("cannot write {name} in the received folder: {source}")]
    File {
        name: String,
        source: std::io::Error,
    },
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

/// Inserts a notification (or counts a redelivery), and says which file it needs written.
fn insert_one(
    conn: &Connection,
    n: &Notification,
    mode: &Mode,
    received_at_ms: i64,
    dir: &Path,
    foreign: &Foreign,
) -> Result<(Accepted, Option<String>), InsertError> {
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
    let live = *mode == Mode::Live;
    if let Some((id, file_name)) = existing {
        if !live {
            return Ok((Accepted::Duplicate { id, file_name }, None));
        }
        conn.prepare_cached("UPDATE notifications SET duplicates = duplicates + 1 WHERE id = ?1")?
            .execute([id])?;
        // Written again only if missing: an earlier attempt was stored but its file was deleted
        // since, and the sender is retrying. The name is the store's own, so it may be replaced;
        // this is rare, so it is written here, inside the savepoint, which a failure rolls back.
        if !files::exists_in(dir, &file_name) {
            let body = stored_body(conn, id)?;
            files::in_folder(dir, || files::write_view(dir, &file_name, &body)).map_err(
                |source| InsertError::File {
                    name: file_name.clone(),
                    source,
                },
            )?;
        }
        return Ok((Accepted::Duplicate { id, file_name }, None));
    }
    let adopted = match mode {
        Mode::Import { adopt: Some(name) }
            if !conn
                .prepare_cached("SELECT 1 FROM notifications WHERE file_name = ?1")?
                .exists([name])? =>
        {
            Some(name.clone())
        }
        _ => None,
    };
    let file_name = match &adopted {
        Some(name) => name.clone(),
        None => free_name(conn, &files::notification_stem(n), foreign)?,
    };
    let facts = serde_json::to_string(&n.facts).ok();
    let id: i64 = conn
        .prepare_cached(
            "INSERT INTO notifications
               (source, problem_key, state, pid, title, is_test, body, body_sha256, file_name,
                received_at_ms, facts, trace_parent)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
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
                facts,
                n.trace
            ],
            |r| r.get(0),
        )?;
    if live && n.needs_enrichment() {
        conn.prepare_cached(
            "INSERT INTO enrichments (notification_id, next_attempt_at_ms, updated_at_ms)
             VALUES (?1, ?2, ?2)",
        )?
        .execute(params![id, received_at_ms])?;
    }
    if live && !n.is_test {
        conn.prepare_cached("INSERT INTO plans (notification_id, updated_at_ms) VALUES (?1, ?2)")?
            .execute(params![id, received_at_ms])?;
    }
    let to_name = adopted.is_none().then(|| file_name.clone());
    Ok((Accepted::Stored { id, file_name }, to_name))
}

fn stored_body(conn: &Connection, id: i64) -> rusqlite::Result<Vec<u8>> {
    conn.prepare_cached("SELECT body FROM notifications WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
}

/// The first name that neither a stored notification nor a file found in the folder at start uses
/// (a file hub did not write is never replaced). Only this transaction inserts, so a name found
/// free in the store is still free at its commit. The folder is not asked for each name (that
/// lookup cost a twentieth of ingest); a file put there under the name while hub runs is kept (a
/// link never replaces), and the start-up check gives the notification another name.
///
/// The last number a stem was given is kept, so a new variant costs one lookup whether the
/// problem's state has one variant or thirteen thousand; probing every number from the first made
/// the single writer, and every sender waiting on it, slower with each variant.
fn free_name(conn: &Connection, stem: &str, foreign: &Foreign) -> rusqlite::Result<String> {
    let mut taken = conn.prepare_cached("SELECT 1 FROM notifications WHERE file_name = ?1")?;
    let foreign = foreign.names();
    let plain = files::candidate(stem, 1);
    let mut free = |name: &str| -> rusqlite::Result<bool> {
        Ok(!taken.exists([name])? && !foreign.contains(name))
    };
    if free(&plain)? {
        // The common case, a state's first notification: no counter to read.
        return Ok(plain);
    }
    let last: Option<i64> = conn
        .prepare_cached("SELECT last FROM file_name_counters WHERE stem = ?1")?
        .query_row([stem], |r| r.get(0))
        .optional()?;
    let mut number = last.map_or(2, |l| l.max(1) as u64 + 1);
    let name = loop {
        let name = files::candidate(stem, number);
        if free(&name)? {
            break name;
        }
        number += 1;
    };
    conn.prepare_cached(
        "INSERT INTO file_name_counters (stem, last) VALUES (?1, ?2)
         ON CONFLICT (stem) DO UPDATE SET last = excluded.last",
    )?
    .execute(params![stem, number as i64])?;
    Ok(name)
}
