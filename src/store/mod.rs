//! The durable inbox: every accepted notification, byte for byte, in the store and in
//! `dir_received`; the dispatcher's work queue; what the pages show.
//!
//! [`Store`] is the one interface the rest of hub uses: it names no database and no SQL. Each
//! backend keeps its SQL in its own folder (`sqlite/`, the embedded default). All writes of a
//! backend go through its writer, which commits every write waiting at that moment in one
//! transaction (group commit) and answers only then.

mod concerns;
pub mod config;
pub mod files;
mod inbox;
mod model;
mod postgres;
mod sqlite;
#[cfg(test)]
mod tests;

pub use inbox::Mode;
pub use model::{
    is_closed, ActionCounts, Backlog, Claim, Finish, HourCount, InstanceRow, NewRun,
    NotificationRow, Page, ProblemRow, Pruned, Room, RunRow, RunStart, SentView, SilenceRow,
    SourceCounts, StoredNotification, ThreadRef, ThreadRow, FLAP_NOTE,
};
pub use model::{Advance, AuditRow, EscalationRow, OverrideRow, StepRow, TokenRow};
pub(crate) use model::{Finished, EARLIER_UNFINISHED};
pub use model::{GroupChange, GroupJoin, GroupRow, MemberRow};
pub use sqlite::backup::{Backup, BackupError};
pub use sqlite::lock::{LockError, StoreLock};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::domain::Notification;
use config::StoreConfig;

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
    OpenFile { path: PathBuf, source: DriverError },
    #[error("cannot start the store's writer: {0}")]
    StartWriter(std::io::Error),
    #[error("cannot bring the store's tables up to date (migration {version}): {source}")]
    Migrate { version: i64, source: DriverError },
    #[error(
        "the store was made by a newer hub (schema {found}; this hub knows up to {known}); \
         run that release, or restore a backup made before it"
    )]
    NewerSchema { found: i64, known: i64 },
    #[error(
        "the store's tables are at schema {found} and this hub's at {known}: start `hub run` once \
         to make them or bring them up to date (this command changes nothing)"
    )]
    OlderSchema { found: i64, known: i64 },
    #[error("cannot use folder {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Db(DriverError),
    #[error("the database cannot be reached: {0}")]
    Pool(DriverError),
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

/// A database driver's error: its text, and the error itself as the source, so no module outside
/// the store names a driver's types (the store looks inside with [`DriverError::driver`]).
#[derive(Debug)]
pub struct DriverError {
    text: String,
    inner: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl DriverError {
    fn new(text: String, inner: impl std::error::Error + Send + Sync + 'static) -> DriverError {
        DriverError {
            text,
            inner: Box::new(inner),
        }
    }

    /// The driver's own error, for the store's code that tells one kind from another.
    pub(crate) fn driver<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.inner.downcast_ref::<E>()
    }
}

impl std::fmt::Display for DriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for DriverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.inner.as_ref())
    }
}

impl From<rusqlite::Error> for DriverError {
    fn from(e: rusqlite::Error) -> DriverError {
        DriverError::new(e.to_string(), e)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError::Db(e.into())
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> StoreError {
        StoreError::Db(DriverError::new(postgres::describe(&e), e))
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> StoreError {
        StoreError::Pool(DriverError::new(e.to_string(), e))
    }
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
    /// The notification's trace (see `Notification::trace`).
    pub trace: Option<String>,
}

pub enum EnrichmentOutcome<'a> {
    Done,
    Failed(&'a str),
    Retry { error: &'a str, at_ms: i64 },
}

impl EnrichmentOutcome<'_> {
    /// The enrichment's row as it records: its status, when it is due again (0: never), and why.
    pub(crate) fn columns(&self) -> (&'static str, i64, Option<&str>) {
        match self {
            EnrichmentOutcome::Done => ("done", 0, None),
            EnrichmentOutcome::Failed(e) => ("failed", 0, Some(e)),
            EnrichmentOutcome::Retry { error, at_ms } => ("pending", *at_ms, Some(error)),
        }
    }
}

/// Whether opening the store may make or change its tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opening {
    /// `hub run` and the commands that write: tables made and brought up to date.
    Serve,
    /// Reading beside a running hub: the tables must be this hub's already.
    Inspect,
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
        Store::open_as(config, dir_received, Opening::Serve).await
    }

    /// Opens a store whose tables hub has made and brought up to date, changing none of them:
    /// for commands that only read beside a running hub (`hub explain`, `check-config
    /// --connect`). A store hub has not made yet, or an older one, is an error that says so.
    pub async fn open_to_inspect(
        config: &StoreConfig,
        dir_received: &Path,
    ) -> Result<Store, StoreError> {
        Store::open_as(config, dir_received, Opening::Inspect).await
    }

    async fn open_as(
        config: &StoreConfig,
        dir_received: &Path,
        opening: Opening,
    ) -> Result<Store, StoreError> {
        let backend = if config.is_postgres() {
            Backend::Postgres(postgres::Postgres::open(config, dir_received, opening).await?)
        } else {
            Backend::Sqlite(sqlite::Sqlite::open(&config.url, dir_received, opening).await?)
        };
        Ok(Store { backend })
    }

    /// The database, as traces name it (`db.system.name`).
    pub fn kind(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgresql",
        }
    }

    /// How often a running run's lease must be renewed; `None` where one instance owns the store.
    pub fn lease(&self) -> Option<std::time::Duration> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(p) => Some(p.lease()),
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

    /// Notified after every commit of new notifications.
    pub fn committed(&self) -> Arc<Notify> {
        match &self.backend {
            Backend::Sqlite(s) => s.committed(),
            Backend::Postgres(p) => p.committed(),
        }
    }

    /// The received folder.
    pub fn dir_received(&self) -> &Path {
        match &self.backend {
            Backend::Sqlite(s) => s.dir_received(),
            Backend::Postgres(p) => p.dir_received(),
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
