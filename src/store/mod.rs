//! The durable inbox: every accepted notification, byte for byte, in the store and in
//! `dir_received`; the dispatcher's work queue; what the pages show.
//!
//! [`Store`] is the one interface the rest of hub uses: it names no database and no SQL. Each
//! backend keeps its SQL in its own folder (`sqlite/`, the embedded default). All writes of a
//! backend go through its writer, which commits every write waiting at that moment in one
//! transaction (group commit) and answers only then.

pub mod files;
mod inbox;
mod model;
mod postgres;
mod sqlite;
#[cfg(test)]
mod tests;

pub use inbox::Mode;
pub(crate) use model::Finished;
pub use model::{
    is_closed, ActionCounts, Backlog, Finish, HourCount, InstanceRow, NewRun, NotificationRow,
    Page, ProblemRow, Pruned, RunRow, RunStart, SentView, SilenceRow, SourceCounts,
    StoredNotification, ThreadRef, ThreadRow, FLAP_NOTE,
};
pub use sqlite::backup::{Backup, BackupError};
pub use sqlite::lock::{LockError, StoreLock};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::StoreConfig;
use crate::domain::{Notification, Source};

/// What happened to an accepted notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Newly stored under this id and file name.
    Stored { id: i64, file_name: String },
    /// A byte-identical redelivery of an already stored notification; nothing new was stored.
    Duplicate { id: i64, file_name: String },
}

impl Accepted {
    pub fn file_name(&self) -> &str {
        match self {
            Accepted::Stored { file_name, .. } | Accepted::Duplicate { file_name, .. } => file_name,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store.url {url:?}: {reason}")]
    Url { url: String, reason: &'static str },
    #[error("cannot open the store on {path}: {source}")]
    OpenFile {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot start the store's writer: {0}")]
    StartWriter(std::io::Error),
    #[error("cannot bring the store's tables up to date (migration {version}): {source}")]
    Migrate {
        version: i64,
        source: rusqlite::Error,
    },
    #[error(
        "the store was made by a newer hub (schema {found}; this hub knows up to {known}); \
         run that release, or restore a backup made before it"
    )]
    NewerSchema { found: i64, known: i64 },
    #[error("cannot use folder {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("database error: {}", postgres::describe(.0))]
    Pg(#[from] tokio_postgres::Error),
    #[error("the database cannot be reached: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("the database cannot be reached: {0}")]
    Unreachable(String),
    #[error("TLS to the database: {0}")]
    Tls(String),
    #[error(
        "another hub runs as instance {0:?} on this store (seen in the last few seconds); give \
         each instance its own store.instance, or if that hub just stopped, start again in a few \
         seconds"
    )]
    InstanceTaken(String),
    /// The notification could not be made durable; the sender should retry.
    #[error("{0}")]
    NotStored(String),
    /// Work handed to a blocking thread did not come back (it panicked).
    #[error("a background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A view of the store (a page, a `problems_sent/` file, the metrics) could not be encoded.
    #[error("cannot encode {what}: {detail}")]
    Encode { what: &'static str, detail: String },
    #[error("the WAL could not be emptied: {0}")]
    Checkpoint(&'static str),
    #[error("the store is shutting down")]
    Closed,
    #[error(transparent)]
    Locked(#[from] LockError),
}

/// Why a notification posted now would not be stored (see [`Store::health`]).
#[derive(Debug, thiserror::Error)]
pub enum Unhealthy {
    #[error("the store's writer has stopped")]
    WriterStopped,
    /// The last commit's error, kept as text since it outlives the batch it failed.
    #[error("the last write to the store failed: {0}")]
    LastWriteFailed(String),
    /// The last check of the database failed (PostgreSQL restarting, failing over, or away).
    #[error("the store cannot be reached: {0}")]
    Unreachable(String),
    #[error("the received folder {} is gone and cannot be made: {source}", path.display())]
    FolderGone {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What [`Store::check_folder`] found.
#[derive(Debug, Default)]
pub struct FolderCheck {
    /// Files written back.
    pub restored: usize,
    /// Files that could not be written back, each with its reason.
    pub unwritable: Vec<String>,
    /// Notification files in the folder that the store does not hold.
    pub unknown: Vec<String>,
    /// Nothing was compared: the folder and the store were as the last clean stop left them.
    pub as_left: bool,
}

/// A Dynatrace notification waiting for its problem's details.
#[derive(Debug, Clone)]
pub struct DueEnrichment {
    pub notification_id: i64,
    pub problem_key: String,
    pub state: String,
    pub pid: Option<String>,
    pub attempts: i64,
}

pub enum EnrichmentOutcome<'a> {
    Done,
    Failed(&'a str),
    Retry { error: &'a str, at_ms: i64 },
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

/// The database behind the store, chosen by `store.url`.
#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(postgres::Postgres),
}

impl Store {
    /// Opens (creating when missing) the database and the received folder, brings the tables up
    /// to date, and starts the writer.
    pub async fn open(config: &StoreConfig, dir_received: &Path) -> Result<Store, StoreError> {
        let backend = if config.is_postgres() {
            Backend::Postgres(postgres::Postgres::open(config, dir_received).await?)
        } else {
            Backend::Sqlite(sqlite::Sqlite::open(&config.url, dir_received).await?)
        };
        Ok(Store { backend })
    }

    /// Extends this instance's lease on a run it is running (see `dispatch.lease_secs`); `false`
    /// when the run was taken over. Always `true` where one instance owns the store.
    pub async fn renew(&self, run_id: i64, attempt: i64) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(true),
            Backend::Postgres(p) => p.renew(run_id, attempt).await,
        }
    }

    /// How often a running run's lease must be renewed; `None` where one instance owns the store.
    pub fn lease(&self) -> Option<std::time::Duration> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(p) => Some(p.lease()),
        }
    }

    /// Where instances share the store, this instance's runs whose lease has ended (see
    /// `Postgres::lapsed_own_runs`); none on SQLite, where a claim cannot be lost.
    pub async fn lapsed_own_runs(&self) -> Result<Vec<i64>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Vec::new()),
            Backend::Postgres(p) => p.lapsed_own_runs().await,
        }
    }

    /// Where instances share the store: how far the store's clock is ahead of this instance's
    /// (negative when behind), once measured. Leases and due times follow the store's clock.
    pub fn clock_offset_ms(&self) -> Option<i64> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(p) => p.clock_offset_ms(),
        }
    }

    /// Notifications after `after_id` received since `since_ms`, by id: id, file name and body
    /// (for `hub export`, a batch at a time).
    pub async fn export_batch(
        &self,
        after_id: i64,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, Vec<u8>)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.export_batch(after_id, since_ms, limit).await,
            Backend::Postgres(p) => p.export_batch(after_id, since_ms, limit).await,
        }
    }

    /// Joins the instances serving this store (the page's table of instances), for `hub run`;
    /// commands beside it do not. Nothing to do where one instance owns the store.
    pub async fn announce(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(p) => p.announce().await,
        }
    }

    /// Leaves the instances serving this store, at a graceful stop.
    pub async fn leave(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(p) => p.leave().await,
        }
    }

    /// The instances that run on this store (none listed where one instance owns it).
    pub async fn instances(&self) -> Result<Vec<InstanceRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Vec::new()),
            Backend::Postgres(p) => p.instances().await,
        }
    }

    /// Bounds the files written and waiting for their names (each holds a file descriptor until
    /// it is named), so that with the connections they stay within the open-file limit.
    pub fn set_file_slots(&mut self, slots: usize) {
        match &mut self.backend {
            Backend::Sqlite(s) => s.set_file_slots(slots),
            Backend::Postgres(p) => p.set_file_slots(slots),
        }
    }

    /// Whether the store can take a notification now: its writer runs, its last commit went
    /// through, and the received folder is there (the writer makes it again when it is not, so a
    /// missing folder that cannot be made is what counts). `Err` says what is wrong.
    pub fn health(&self) -> Result<(), Unhealthy> {
        match &self.backend {
            Backend::Sqlite(s) => s.health(),
            Backend::Postgres(p) => p.health(),
        }
    }

    /// Empties the WAL into the database file; at a graceful stop, so the database file alone
    /// holds everything that was acknowledged.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.checkpoint().await,
            Backend::Postgres(p) => p.checkpoint().await,
        }
    }

    /// Stores a notification durably. Returns only once its transaction has committed and its file
    /// is in `dir_received`; an error means it was not made durable and must not be acknowledged.
    pub async fn accept(&self, notification: Notification) -> Result<Accepted, StoreError> {
        self.accept_all(vec![notification])
            .await?
            .pop()
            .ok_or(StoreError::Closed)
    }

    /// Stores several notifications of one request; they reach the writer together, so they usually
    /// share one commit. Answers in order; the request is acknowledged only if all are stored.
    pub async fn accept_all(
        &self,
        notifications: Vec<Notification>,
    ) -> Result<Vec<Accepted>, StoreError> {
        self.store_all(notifications, Mode::Live).await
    }

    /// Stores notifications as history (see [`Mode::Import`]): `Duplicate` for one stored already.
    pub async fn import(
        &self,
        notifications: Vec<Notification>,
        adopt: Option<String>,
    ) -> Result<Vec<Accepted>, StoreError> {
        self.store_all(notifications, Mode::Import { adopt }).await
    }

    /// Writes each notification's bytes unnamed, hands it to the backend's writer, and waits for
    /// every answer: a notification is answered once it is committed and its file named.
    async fn store_all(
        &self,
        notifications: Vec<Notification>,
        mode: Mode,
    ) -> Result<Vec<Accepted>, StoreError> {
        let slots = match &self.backend {
            Backend::Sqlite(s) => s.file_slots(),
            Backend::Postgres(p) => p.file_slots(),
        };
        let jobs = inbox::write_unnamed(self.dir_received(), slots, notifications, &mode).await?;
        let mut answers = Vec::with_capacity(jobs.len());
        for (notification, file) in jobs {
            let mode = mode.clone();
            answers.push(match &self.backend {
                Backend::Sqlite(s) => s.submit(notification, mode, file).await?,
                Backend::Postgres(p) => p.submit(notification, mode, file).await?,
            });
        }
        let mut accepted = Vec::with_capacity(answers.len());
        for answer in answers {
            accepted.push(answer.await.map_err(|_| StoreError::Closed)??);
        }
        Ok(accepted)
    }

    /// Compares the received folder with the store. Writes again every file the store has and the
    /// folder lacks, or has with another size (cut short by a power failure, or changed by hand),
    /// and lists the notification files in the folder that the store does not know (left by the
    /// Python sample, or kept only in a WAL that was lost). A file that cannot be written is
    /// reported and skipped: no single notification may keep hub from starting.
    pub async fn check_folder(&self) -> Result<FolderCheck, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => inbox::check_folder(s).await,
            Backend::Postgres(p) => inbox::check_folder(p).await,
        }
    }

    /// At a clean stop, after the last write: records how the received folder is, so that the
    /// next start, finding it and the store unchanged, need not compare them file by file.
    /// Returns whether it did (not when the folder held files the store lacks, or a file could
    /// not be named).
    pub async fn mark_folder(&self) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => inbox::mark_folder(s).await,
            Backend::Postgres(p) => inbox::mark_folder(p).await,
        }
    }

    /// Enrichments due now, oldest first; none waits longer than `max_wait_ms` from now.
    pub async fn due_enrichments(
        &self,
        max_wait_ms: i64,
        limit: i64,
    ) -> Result<Vec<DueEnrichment>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.due_enrichments(max_wait_ms, limit).await,
            Backend::Postgres(p) => p.due_enrichments(max_wait_ms, limit).await,
        }
    }

    /// Records an attempt: done, failed for good, or pending again at `retry_at_ms`.
    pub async fn record_enrichment(
        &self,
        notification_id: i64,
        outcome: EnrichmentOutcome<'_>,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.record_enrichment(notification_id, outcome).await,
            Backend::Postgres(p) => p.record_enrichment(notification_id, outcome).await,
        }
    }

    /// Notified after every commit of new notifications.
    pub fn committed(&self) -> Arc<Notify> {
        match &self.backend {
            Backend::Sqlite(s) => s.committed(),
            Backend::Postgres(p) => p.committed(),
        }
    }

    /// Which Dynatrace problems hub has received a notification for.
    pub async fn received(
        &self,
        wanted: &crate::feed::Wanted,
    ) -> Result<crate::feed::Received, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.received(wanted).await,
            Backend::Postgres(p) => p.received(wanted).await,
        }
    }

    /// The received folder.
    pub fn dir_received(&self) -> &Path {
        match &self.backend {
            Backend::Sqlite(s) => s.dir_received(),
            Backend::Postgres(p) => p.dir_received(),
        }
    }

    /// Notifications ready to be routed: not a test, and enrichment (if any) finished or waited
    /// for `enrich_wait_ms` since the notification came.
    pub async fn due_plans(&self, enrich_wait_ms: i64, limit: i64) -> Result<Vec<i64>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.due_plans(enrich_wait_ms, limit).await,
            Backend::Postgres(p) => p.due_plans(enrich_wait_ms, limit).await,
        }
    }

    pub async fn notification(&self, id: i64) -> Result<StoredNotification, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.notification(id).await,
            Backend::Postgres(p) => p.notification(id).await,
        }
    }

    /// Several notifications by id, oldest first.
    pub async fn notifications(&self, ids: &[i64]) -> Result<Vec<StoredNotification>, StoreError> {
        match &self.backend {
            // Reads in place: one at a time costs nothing more.
            Backend::Sqlite(s) => {
                let mut ids = ids.to_vec();
                ids.sort_unstable();
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    out.push(s.notification(id).await?);
                }
                Ok(out)
            }
            Backend::Postgres(p) => p.notifications(ids).await,
        }
    }

    /// The newest notification of a problem; `None` when hub never received one.
    pub async fn latest_notification(
        &self,
        source: Source,
        problem_key: &str,
    ) -> Result<Option<StoredNotification>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.latest_notification(source, problem_key).await,
            Backend::Postgres(p) => p.latest_notification(source, problem_key).await,
        }
    }

    /// When the next pending run or enrichment is due; `None` when nothing is pending.
    pub async fn earliest_pending_ms(&self) -> Result<Option<i64>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.earliest_pending_ms().await,
            Backend::Postgres(p) => p.earliest_pending_ms().await,
        }
    }

    /// Whether hub has a notification of this problem in this state.
    pub async fn has_state(
        &self,
        source: Source,
        problem_key: &str,
        state: &str,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.has_state(source, problem_key, state).await,
            Backend::Postgres(p) => p.has_state(source, problem_key, state).await,
        }
    }

    /// Creates the routed runs and closes the plans, all in one transaction (one fsync for a whole
    /// burst). A run whose key exists already (the same change reached hub before) is left as it is.
    /// Returns how many runs were new, per plan.
    pub async fn insert_runs(
        &self,
        plans: &[(&StoredNotification, Vec<NewRun>)],
    ) -> Result<Vec<usize>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.insert_runs(plans).await,
            Backend::Postgres(p) => p.insert_runs(plans).await,
        }
    }

    /// Closes plans that route to nothing, in one transaction.
    pub async fn close_plans(&self, notification_ids: Vec<i64>) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.close_plans(notification_ids).await,
            Backend::Postgres(p) => p.close_plans(notification_ids).await,
        }
    }

    /// Runs due now, oldest first; none waits longer than `max_wait_ms` from now.
    pub async fn due_runs(&self, max_wait_ms: i64, limit: i64) -> Result<Vec<RunRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.due_runs(max_wait_ms, limit).await,
            Backend::Postgres(p) => p.due_runs(max_wait_ms, limit).await,
        }
    }

    /// What the dispatcher takes: per action named in `wanted`, at most that many due runs, the
    /// most urgent first, then by due time. Each action's runs are looked for on their own, so
    /// one action's backlog never hides another's due runs. Where instances share the store,
    /// runs whose lease ended are due too.
    pub async fn due_runs_of(
        &self,
        wanted: &[(String, i64)],
        max_wait_ms: i64,
    ) -> Result<Vec<RunRow>, StoreError> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        match &self.backend {
            Backend::Sqlite(s) => s.due_runs_of(wanted, max_wait_ms).await,
            Backend::Postgres(p) => p.due_runs_of(wanted, max_wait_ms).await,
        }
    }

    /// Every run of a problem, for `problems_sent/` and the pages.
    pub async fn problem_runs(
        &self,
        source: Source,
        problem_key: &str,
    ) -> Result<Vec<RunRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.problem_runs(source, problem_key).await,
            Backend::Postgres(p) => p.problem_runs(source, problem_key).await,
        }
    }

    /// The runs of one state change of a problem by the named actions (what a comment reports).
    pub async fn group_runs(
        &self,
        source: Source,
        problem_key: &str,
        state: &str,
        actions: &[String],
    ) -> Result<Vec<RunRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.group_runs(source, problem_key, state, actions).await,
            Backend::Postgres(p) => p.group_runs(source, problem_key, state, actions).await,
        }
    }

    /// Marks runs in flight and writes their attempts, before anything is done, in one
    /// transaction. Only a pending run can be claimed, so two dispatchers never start the same
    /// run. The attempt number of each, or `None` for a run that could not be claimed (another
    /// claim or a finish got there first).
    pub async fn claim_many(&self, run_ids: Vec<i64>) -> Result<Vec<Option<i64>>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.claim_many(run_ids).await,
            Backend::Postgres(p) => p.claim_many(run_ids).await,
        }
    }

    /// Keeps a new silence.
    pub async fn add_silence(&self, silence: SilenceRow) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.add_silence(silence).await,
            Backend::Postgres(p) => p.add_silence(silence).await,
        }
    }

    /// Silences that have not ended, or ended after `ended_after_ms`, newest first.
    pub async fn silences(&self, ended_after_ms: i64) -> Result<Vec<SilenceRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.silences(ended_after_ms).await,
            Backend::Postgres(p) => p.silences(ended_after_ms).await,
        }
    }

    /// One silence, by id.
    pub async fn silence(&self, id: &str) -> Result<Option<SilenceRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.silence(id).await,
            Backend::Postgres(p) => p.silence(id).await,
        }
    }

    /// Ends a silence now; `false` when there is no such silence or it had ended.
    pub async fn expire_silence(&self, id: String, now: i64) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.expire_silence(id, now).await,
            Backend::Postgres(p) => p.expire_silence(id, now).await,
        }
    }

    /// Silences that ended and whose end was not handled yet.
    pub async fn silences_to_settle(&self, now: i64) -> Result<Vec<SilenceRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.silences_to_settle(now).await,
            Backend::Postgres(p) => p.silences_to_settle(now).await,
        }
    }

    /// Marks a silence's end handled.
    pub async fn settle_silence(&self, id: String, now: i64) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.settle_silence(id, now).await,
            Backend::Postgres(p) => p.settle_silence(id, now).await,
        }
    }

    /// The silenced runs `held_by` (a silence's id, `maintenance:<name>`) holds.
    pub async fn held_runs(&self, held_by: &str) -> Result<Vec<RunRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.held_runs(held_by).await,
            Backend::Postgres(p) => p.held_runs(held_by).await,
        }
    }

    /// Puts silenced runs back in the queue, due now, with `note` as why; or, with `release` false,
    /// leaves them silenced and held by nothing.
    pub async fn release_runs(
        &self,
        ids: Vec<i64>,
        release: bool,
        note: String,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.release_runs(ids, release, note).await,
            Backend::Postgres(p) => p.release_runs(ids, release, note).await,
        }
    }

    /// Whether an earlier run of the same problem, action and target is pending or running.
    pub async fn earlier_unfinished(&self, run: &RunRow) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.earlier_unfinished(run).await,
            Backend::Postgres(p) => p.earlier_unfinished(run).await,
        }
    }

    /// Every holder (a silence's id, `maintenance:<name>`) that silenced runs are still held by.
    pub async fn holders(&self) -> Result<Vec<String>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.holders().await,
            Backend::Postgres(p) => p.holders().await,
        }
    }

    /// Moves silenced runs under another holder that still covers them.
    pub async fn rehold_runs(&self, ids: Vec<i64>, held_by: String) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.rehold_runs(ids, held_by).await,
            Backend::Postgres(p) => p.rehold_runs(ids, held_by).await,
        }
    }

    /// Which opening of its problem notification `id` belongs to: `None` for the first, else the
    /// id of the closing notification before that opening. A problem that opens again after it
    /// closed (the same Alertmanager fingerprint firing again) runs its actions again; its resolve
    /// belongs to the opening it closes, so a repeated resolve still runs nothing twice.
    pub async fn episode(
        &self,
        source: Source,
        problem_key: &str,
        id: i64,
        closed: bool,
    ) -> Result<Option<i64>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.episode(source, problem_key, id, closed).await,
            Backend::Postgres(p) => p.episode(source, problem_key, id, closed).await,
        }
    }

    /// Records a heartbeat's beat (an older one changes nothing).
    pub async fn beat(&self, name: String, at_ms: i64) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.beat(name, at_ms).await,
            Backend::Postgres(p) => p.beat(name, at_ms).await,
        }
    }

    /// Every heartbeat's last beat.
    pub async fn beats(&self) -> Result<Vec<(String, i64)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.beats().await,
            Backend::Postgres(p) => p.beats().await,
        }
    }

    /// What `action` kept for this problem and target, for its next run to continue: set by a run
    /// of a notification after `after` (the close that began this opening of the problem), so a
    /// problem that opens again starts a new thread.
    pub async fn thread(
        &self,
        source: Source,
        problem_key: &str,
        action: &str,
        target: &str,
        after: Option<i64>,
    ) -> Result<Option<ThreadRef>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.thread(source, problem_key, action, target, after).await,
            Backend::Postgres(p) => p.thread(source, problem_key, action, target, after).await,
        }
    }

    /// Every thread of a problem, for its page and the API.
    pub async fn threads(
        &self,
        source: Source,
        problem_key: &str,
    ) -> Result<Vec<ThreadRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.threads(source, problem_key).await,
            Backend::Postgres(p) => p.threads(source, problem_key).await,
        }
    }

    /// Records how an attempt ended, on the run and on its attempt row, and keeps the thread a
    /// success names (in the same transaction).
    pub async fn finish(
        &self,
        run_id: i64,
        attempt: i64,
        finish: &Finish,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.finish(run_id, attempt, finish).await,
            Backend::Postgres(p) => p.finish(run_id, attempt, finish).await,
        }
    }

    /// Puts runs left in flight (by a crash, or by a shutdown past its deadline) back in the queue.
    /// Their open attempts are closed as interrupted. Returns how many runs were recovered.
    pub async fn recover_in_flight(&self, only: Option<&[i64]>) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.recover_in_flight(only).await,
            Backend::Postgres(p) => p.recover_in_flight(only).await,
        }
    }

    pub async fn run(&self, run_id: i64) -> Result<RunRow, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.run(run_id).await,
            Backend::Postgres(p) => p.run(run_id).await,
        }
    }

    /// Defers a run without counting an attempt (a comment waiting for the runs it reports, a
    /// run over its action's rate limit); `note`, when given, says why on the run.
    pub async fn defer(
        &self,
        run_id: i64,
        at_ms: i64,
        note: Option<String>,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.defer(run_id, at_ms, note).await,
            Backend::Postgres(p) => p.defer(run_id, at_ms, note).await,
        }
    }

    /// Marks a notification's enrichment done (or failed) with the details it fetched.
    pub async fn store_details(
        &self,
        notification_id: i64,
        details: &str,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.store_details(notification_id, details).await,
            Backend::Postgres(p) => p.store_details(notification_id, details).await,
        }
    }

    /// Marks enrichments failed for one reason, in one transaction.
    pub async fn fail_enrichments(&self, ids: &[i64], reason: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.fail_enrichments(ids, reason).await,
            Backend::Postgres(p) => p.fail_enrichments(ids, reason).await,
        }
    }

    /// The newest enriched details of a problem, for `problems_sent/`.
    pub async fn latest_details(
        &self,
        source: Source,
        problem_key: &str,
    ) -> Result<Option<String>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.latest_details(source, problem_key).await,
            Backend::Postgres(p) => p.latest_details(source, problem_key).await,
        }
    }

    /// What the `problems_sent/` files of these problems show, read in one transaction (one look
    /// at what changed since the last read, rather than one per query); `None` for a problem hub
    /// never received.
    pub async fn sent_views(
        &self,
        problems: &[(Source, String)],
    ) -> Result<Vec<Option<SentView>>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.sent_views(problems).await,
            Backend::Postgres(p) => p.sent_views(problems).await,
        }
    }

    /// Each problem that has a `problems_sent/` file, with the time of its last change (an attempted
    /// run's update, or details fetched), for the start-up check of those files. A problem whose runs
    /// were routed but never attempted has no file yet.
    pub async fn last_sent_changes(&self) -> Result<Vec<(Source, String, i64)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.last_sent_changes().await,
            Backend::Postgres(p) => p.last_sent_changes().await,
        }
    }

    pub async fn source_counts(&self) -> Result<Vec<SourceCounts>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.source_counts().await,
            Backend::Postgres(p) => p.source_counts().await,
        }
    }

    pub async fn action_counts(&self) -> Result<Vec<ActionCounts>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.action_counts().await,
            Backend::Postgres(p) => p.action_counts().await,
        }
    }

    /// Runs not finished yet (pending, retrying or running), per action.
    /// Per action, its runs due at `now_ms` that wait to start, and since when the oldest waits:
    /// an action that cannot keep up shows here first.
    pub async fn backlogs(&self, now_ms: i64) -> Result<Vec<Backlog>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.backlogs(now_ms).await,
            Backend::Postgres(p) => p.backlogs(now_ms).await,
        }
    }

    pub async fn waiting_runs_by_action(&self) -> Result<Vec<(String, i64)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.waiting_runs_by_action().await,
            Backend::Postgres(p) => p.waiting_runs_by_action().await,
        }
    }

    /// The newest notifications first; `page` counts from 0.
    pub async fn latest_notifications(
        &self,
        page: Page,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.latest_notifications(page).await,
            Backend::Postgres(p) => p.latest_notifications(page).await,
        }
    }

    /// Problems by their newest notification, newest first.
    pub async fn problems(&self, page: Page) -> Result<Vec<ProblemRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.problems(page).await,
            Backend::Postgres(p) => p.problems(page).await,
        }
    }

    /// Every notification of a problem, oldest first.
    pub async fn problem_notifications(
        &self,
        source: Source,
        problem_key: &str,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.problem_notifications(source, problem_key).await,
            Backend::Postgres(p) => p.problem_notifications(source, problem_key).await,
        }
    }

    /// The source of the newest notification with this problem id, whichever source sent it.
    pub async fn source_of(&self, problem_key: &str) -> Result<Option<Source>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.source_of(problem_key).await,
            Backend::Postgres(p) => p.source_of(problem_key).await,
        }
    }

    pub async fn hourly_counts(&self) -> Result<Vec<HourCount>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.hourly_counts().await,
            Backend::Postgres(p) => p.hourly_counts().await,
        }
    }

    /// A run's attempts: number, manual, started at, result (`None` while in flight).
    pub async fn attempts(
        &self,
        run_id: i64,
    ) -> Result<Vec<(i64, bool, i64, Option<String>)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.attempts(run_id).await,
            Backend::Postgres(p) => p.attempts(run_id).await,
        }
    }

    /// Runs waiting to start or to be retried.
    pub async fn pending_runs(&self) -> Result<i64, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.pending_runs().await,
            Backend::Postgres(p) => p.pending_runs().await,
        }
    }

    /// Asks for every given run to run again now, as a manual attempt; runs in flight are left
    /// alone. The dispatcher (of this hub, or of the one running on this store) does the work.
    /// Returns how many were scheduled.
    /// Problems whose newest notification is older than `cutoff_ms`, after the one whose newest
    /// notification is `after`: `(newest id, source, problem key)`, oldest first. Whether each
    /// may go is for [`Store::prune`] to say.
    pub async fn prune_candidates(
        &self,
        cutoff_ms: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Source, String)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.prune_candidates(cutoff_ms, after, limit).await,
            Backend::Postgres(p) => p.prune_candidates(cutoff_ms, after, limit).await,
        }
    }

    /// Deletes, in one transaction, those of `problems` that ended before `cutoff_ms` with nothing
    /// left to do: the newest notification closed the problem (or was a test), no run is pending
    /// or running, and nothing changed since `cutoff_ms`. Their notifications, runs, attempts,
    /// enrichments and received files go; `dry` deletes nothing and counts what would go.
    pub async fn prune(
        &self,
        problems: Vec<(Source, String)>,
        cutoff_ms: i64,
        dry: bool,
    ) -> Result<Pruned, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.prune(problems, cutoff_ms, dry).await,
            Backend::Postgres(p) => p.prune(problems, cutoff_ms, dry).await,
        }
    }

    pub async fn schedule_replay(&self, run_ids: &[i64]) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.schedule_replay(run_ids).await,
            Backend::Postgres(p) => p.schedule_replay(run_ids).await,
        }
    }
}

/// Takes the store's lock for this process's life, before anything is opened: one `hub run` per
/// SQLite store. Instances on PostgreSQL share their store, so there it takes nothing.
pub fn lock(config: &StoreConfig) -> Result<Option<StoreLock>, StoreError> {
    if config.is_postgres() {
        return Ok(None);
    }
    sqlite::lock(&config.url).map(Some)
}

/// Writes a consistent copy of a SQLite store into `target` while hub may be serving it. A
/// PostgreSQL store is backed up with PostgreSQL's own tools.
pub fn backup(config: &StoreConfig, target: &Path) -> anyhow::Result<Backup> {
    if config.is_postgres() {
        anyhow::bail!(
            "the store is on PostgreSQL ({}); back it up with PostgreSQL's own tools, such as \
             `pg_dump --format=custom --file=hub.dump DATABASE` (restore with pg_restore), or with \
             the base backups and WAL archiving the database already has",
            config.url
        );
    }
    Ok(sqlite::backup::backup(&config.url, target)?)
}

/// Which Dynatrace problems a store has received a notification for, read beside a running hub
/// (`hub poll`); `None` when there is no store yet.
pub async fn received(
    config: &StoreConfig,
    wanted: &crate::feed::Wanted,
) -> Result<Option<crate::feed::Received>, StoreError> {
    if config.is_postgres() {
        return Ok(Some(postgres::received(config, wanted).await?));
    }
    sqlite::received(&config.url, wanted).await
}

/// The received problems from `(problem_key, pid)` rows.
fn received_from(rows: Vec<(String, Option<String>)>) -> crate::feed::Received {
    let mut received = crate::feed::Received::default();
    for (key, pid) in rows {
        received.problem_keys.insert(key);
        if let Some(pid) = pid {
            received.pids.insert(pid);
        }
    }
    received
}
