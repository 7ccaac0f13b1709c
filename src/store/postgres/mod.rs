//! PostgreSQL, for several instances on one store: the same interface as SQLite, its own SQL.
//! Dedup and file names hold across instances through unique keys; a due run is claimed by one
//! instance (`FOR UPDATE SKIP LOCKED`) with a lease the running instance renews, and its outcome
//! is recorded only under the claim's fencing token (its attempt number); instances wake each
//! other with `LISTEN/NOTIFY`, polling being the backstop. When the database is away, writes fail
//! (ingest answers 503), `/healthz` says so, and connections are made again once it is back.

mod clock;
mod escalations;
mod groups;
mod migrate;
mod noise;
mod prune;
mod queue;
mod roster;
pub(super) mod rows;
mod source_sql;
#[cfg(test)]
pub(in crate::store) mod tests;
mod threads;
mod views;
mod writer;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::inbox::{self, FolderMark, FolderRows, Foreign, Health, Mode};
use super::{files, Accepted, StoreError, Unhealthy};
use crate::clock::now_ms;
use crate::domain::{Notification, Source};
use crate::feed::Wanted;
use crate::store::concerns::{Inbox, Instances};
use crate::store::config::StoreConfig;
use crate::store::InstanceRow;
use clock::DB_NOW_MS;
use rows::{all, one};

/// Connections per instance: the writer's, the dispatcher's and the pages' at once.
const POOL_SIZE: usize = 8;

/// How long an instance waits for a connection, or to make one, before the store counts as away.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often an instance checks the database and says it is alive (the table of instances).
const HEARTBEAT: Duration = Duration::from_secs(2);

/// How many notifications may wait for the writer before `accept` itself waits.
const QUEUE_DEPTH: usize = 4096;

#[derive(Clone)]
pub(super) struct Postgres {
    pool: Pool,
    jobs: mpsc::Sender<writer::Accept>,
    dir_received: PathBuf,
    committed: Arc<Notify>,
    /// The last commit of notifications.
    health: Arc<Health>,
    /// The last heartbeat: whether the database can be reached at all.
    reachable: Arc<Health>,
    foreign: Arc<Foreign>,
    file_slots: Arc<tokio::sync::Semaphore>,
    instance: Arc<str>,
    lease_ms: i64,
    /// The database's clock, as this instance follows it.
    clock: Arc<clock::StoreClock>,
}

impl Postgres {
    pub async fn open(
        config: &StoreConfig,
        dir_received: &Path,
        opening: super::Opening,
    ) -> Result<Postgres, StoreError> {
        std::fs::create_dir_all(dir_received).map_err(|source| StoreError::Folder {
            path: dir_received.to_path_buf(),
            source,
        })?;
        let pg = pg_config(config)?;
        let tls = tls(config)?;
        let (mut client, connection) =
            tokio::time::timeout(CONNECT_TIMEOUT, pg.connect(tls.clone()))
                .await
                .map_err(|_| StoreError::Unreachable("timed out connecting".into()))??;
        let connection = tokio::spawn(connection);
        let ran = match opening {
            super::Opening::Serve => migrate::run(&mut client).await?,
            super::Opening::Inspect => migrate::check(&client).await.map(|()| 0)?,
        };
        if ran > 0 {
            tracing::info!(migrations = ran, "brought the store's tables up to date");
        }
        drop(client);
        let _ = connection.await;

        let manager = Manager::from_config(
            pg.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Unreachable(e.to_string()))?;
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        let store = Postgres {
            pool: pool.clone(),
            jobs,
            dir_received: dir_received.to_path_buf(),
            committed: Arc::new(Notify::new()),
            health: Arc::new(Health::default()),
            reachable: Arc::new(Health::default()),
            foreign: Arc::new(Foreign::default()),
            file_slots: Arc::new(tokio::sync::Semaphore::new(1024)),
            instance: config.instance.as_str().into(),
            lease_ms: config.lease.as_millis() as i64,
            clock: Arc::default(),
        };
        let w = writer::Writer {
            pool,
            dir: store.dir_received.clone(),
            foreign: store.foreign.clone(),
            committed: store.committed.clone(),
            health: store.health.clone(),
        };
        tokio::spawn(w.run(queue));
        tokio::spawn(listen(pg, tls, store.committed.clone()));
        Ok(store)
    }

    pub fn set_file_slots(&mut self, slots: usize) {
        self.file_slots = Arc::new(tokio::sync::Semaphore::new(slots.max(1)));
    }

    pub fn health(&self) -> Result<(), Unhealthy> {
        if self.jobs.is_closed() {
            return Err(Unhealthy::WriterStopped);
        }
        if let Some(e) = self.reachable.last_failure() {
            return Err(Unhealthy::Unreachable(e));
        }
        if let Some(e) = self.health.last_failure() {
            return Err(Unhealthy::LastWriteFailed(e));
        }
        if !self.dir_received.is_dir() {
            std::fs::create_dir_all(&self.dir_received).map_err(|source| {
                Unhealthy::FolderGone {
                    path: self.dir_received.clone(),
                    source,
                }
            })?;
        }
        Ok(())
    }

    pub fn file_slots(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.file_slots
    }

    /// Hands a notification, its bytes written unnamed, to this instance's writer.
    pub async fn submit(
        &self,
        notification: Notification,
        mode: Mode,
        file: Option<inbox::Pending>,
    ) -> Result<oneshot::Receiver<Result<Accepted, StoreError>>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(writer::Accept {
                notification,
                mode,
                file,
                reply,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(answer)
    }

    pub fn committed(&self) -> Arc<Notify> {
        self.committed.clone()
    }

    pub fn dir_received(&self) -> &Path {
        &self.dir_received
    }

    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms as u64)
    }

    /// The database's clock minus this instance's, once measured (see [`clock`]).
    pub fn clock_offset_ms(&self) -> Option<i64> {
        self.clock.offset_ms()
    }

    /// Every beat is written with the database's clock, which it also reads, so this instance
    /// keeps the offset between the two clocks.
    async fn heartbeat(self) {
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.tick().await;
        loop {
            tick.tick().await;
            if self.jobs.is_closed() {
                return;
            }
            let before = now_ms();
            let beat = async {
                let c = self.pool.get().await?;
                let row = rows::query_opt(
                    &c,
                    &format!(
                        "INSERT INTO instances (name, started_at_ms, last_seen_ms)
                         VALUES ($1, {DB_NOW_MS}, {DB_NOW_MS})
                         ON CONFLICT (name) DO UPDATE SET last_seen_ms = excluded.last_seen_ms
                         RETURNING last_seen_ms"
                    ),
                    &[&&*self.instance],
                )
                .await?;
                Ok::<_, StoreError>(row.map(|r| r.try_get::<_, i64>(0)))
            };
            match tokio::time::timeout(CONNECT_TIMEOUT, beat).await {
                // The beat is a write that committed: the store takes writes again, so a commit
                // that failed during an outage no longer keeps `/healthz` down. Waiting for the
                // next notification to clear it never ends behind a load balancer, which sends
                // none to an instance it takes for down.
                Ok(Ok(db_now)) => {
                    if let Some(Ok(db_now)) = db_now {
                        self.clock.measured(db_now, before, now_ms());
                    }
                    self.reachable.write_succeeded();
                    self.health.write_succeeded();
                }
                Ok(Err(e)) => {
                    self.clock.failed();
                    self.reachable.write_failed(&e.to_string());
                }
                Err(_) => {
                    self.clock.failed();
                    self.reachable.write_failed("timed out");
                }
            }
        }
    }
}

impl Inbox for Postgres {
    /// Nothing to empty: PostgreSQL keeps its own write-ahead log.
    async fn checkpoint(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn received(&self, wanted: &Wanted) -> Result<crate::feed::Received, StoreError> {
        let c = self.pool.get().await?;
        let rows: Vec<(String, Option<String>)> = all(
            &c,
            RECEIVED_AMONG,
            &[&Source::Dynatrace, &wanted.keys, &wanted.pids],
        )
        .await?;
        Ok(super::received_from(rows))
    }
}

/// Instances announce themselves and beat (see `Postgres::heartbeat`); a run's lease is renewed
/// by its instance and, once it ended, taken over only as `clock::takeover` allows.
impl Instances for Postgres {
    /// Joins the table of instances, and keeps saying this one is alive (and whether the database
    /// can be reached, for `/healthz`), until the last handle to the store is gone. Refused while
    /// another instance of the same name is alive: two would take each other's runs for crashed
    /// ones at start.
    async fn announce(&self) -> Result<(), StoreError> {
        let stale = 3 * HEARTBEAT.as_millis() as i64;
        let c = self.pool.get().await?;
        let before = now_ms();
        let joined = rows::query_opt(
            &c,
            &format!(
                "INSERT INTO instances (name, started_at_ms, last_seen_ms)
                 VALUES ($1, {DB_NOW_MS}, {DB_NOW_MS})
                 ON CONFLICT (name) DO UPDATE
                 SET started_at_ms = excluded.started_at_ms, last_seen_ms = excluded.last_seen_ms
                 WHERE instances.last_seen_ms < {DB_NOW_MS} - $2::BIGINT
                 RETURNING last_seen_ms"
            ),
            &[&&*self.instance, &stale],
        )
        .await?;
        let Some(row) = joined else {
            return Err(StoreError::InstanceTaken(self.instance.to_string()));
        };
        self.clock.measured(row.try_get(0)?, before, now_ms());
        tokio::spawn(self.clone().heartbeat());
        Ok(())
    }

    /// Leaves the table of instances at a graceful stop, so that a restart under the same name
    /// need not wait for this one's heartbeat to go stale.
    async fn leave(&self) -> Result<(), StoreError> {
        rows::exec(
            &self.pool.get().await?,
            "UPDATE instances SET last_seen_ms = 0 WHERE name = $1",
            &[&&*self.instance],
        )
        .await?;
        Ok(())
    }

    /// Every instance that ran on this store, newest first, with its runs in flight.
    async fn instances(&self) -> Result<Vec<InstanceRow>, StoreError> {
        let c = self.pool.get().await?;
        all(
            &c,
            "SELECT i.name, i.started_at_ms, i.last_seen_ms,
                    (SELECT COUNT(*) FROM action_runs r
                     WHERE r.status = 'running' AND r.instance = i.name) AS runs_in_flight
             FROM instances i ORDER BY i.last_seen_ms DESC",
            &[],
        )
        .await
    }

    /// Extends this instance's lease on a run it is running; `false` when the run is no longer
    /// its own (taken over after the lease ended).
    async fn renew(&self, run_id: i64, attempt: i64) -> Result<bool, StoreError> {
        let renewed = rows::exec(
            &self.pool.get().await?,
            &format!(
                "UPDATE action_runs SET lease_until_ms = {DB_NOW_MS} + $1::BIGINT
                 WHERE id = $2 AND attempts = $3 AND status = 'running' AND instance = $4"
            ),
            &[&self.lease_ms, &run_id, &attempt, &&*self.instance],
        )
        .await?;
        Ok(renewed == 1)
    }

    /// This instance's runs whose lease has ended: those it is not running are orphans (a claim
    /// whose answer was lost when the database went away), which no other instance takes over
    /// while this one lives.
    async fn lapsed_own_runs(&self) -> Result<Vec<i64>, StoreError> {
        all(
            &self.pool.get().await?,
            &format!(
                "SELECT id FROM action_runs
                 WHERE status = 'running' AND instance = $1 AND lease_until_ms < {DB_NOW_MS}"
            ),
            &[&&*self.instance],
        )
        .await
    }
}

impl FolderRows for Postgres {
    fn dir(&self) -> &Path {
        &self.dir_received
    }

    fn foreign(&self) -> &Foreign {
        &self.foreign
    }

    async fn known_files(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, i64)>, StoreError> {
        let c = self.pool.get().await?;
        all(
            &c,
            "SELECT id, file_name, octet_length(body)::BIGINT FROM notifications WHERE id > $1
             ORDER BY id LIMIT $2",
            &[&after, &limit],
        )
        .await
    }

    async fn body(&self, id: i64) -> Result<Vec<u8>, StoreError> {
        let c = self.pool.get().await?;
        one(&c, "SELECT body FROM notifications WHERE id = $1", &[&id]).await
    }

    async fn rename_file(&self, id: i64, name: &str) -> Result<String, StoreError> {
        let stem = files::fit(files::stem_of(name).to_string());
        let c = self.pool.get().await?;
        let mut number = 1;
        loop {
            let candidate = files::candidate(&stem, number);
            number += 1;
            if files::exists_in(&self.dir_received, &candidate) {
                continue;
            }
            let renamed = rows::exec(
                &c,
                "UPDATE notifications SET file_name = $1 WHERE id = $2
                     AND NOT EXISTS (SELECT 1 FROM notifications WHERE file_name = $1)",
                &[&candidate, &id],
            )
            .await;
            match renamed {
                Ok(1) => {
                    tracing::warn!(id, file = %candidate, "gave a notification a new file name (its old one was too long, or taken by a file hub did not write)");
                    return Ok(candidate);
                }
                // Taken, by this store or, at the same moment, by another instance.
                Ok(_) => continue,
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                    continue
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn max_id(&self) -> Result<i64, StoreError> {
        let c = self.pool.get().await?;
        one(&c, "SELECT COALESCE(MAX(id), 0) FROM notifications", &[]).await
    }

    async fn take_mark(&self) -> Result<Option<FolderMark>, StoreError> {
        let c = self.pool.get().await?;
        let mark: Option<(String, i64, i64, i64)> = rows::optional(
            &c,
            "DELETE FROM folder_marks WHERE instance = $1
             RETURNING folder, dir_mtime_ns, dir_ctime_ns, max_id",
            &[&&*self.instance],
        )
        .await?;
        Ok(
            mark.map(|(folder, dir_mtime_ns, dir_ctime_ns, max_id)| FolderMark {
                folder,
                dir_mtime_ns,
                dir_ctime_ns,
                max_id,
            }),
        )
    }

    async fn put_mark(&self, mark: FolderMark) -> Result<(), StoreError> {
        let c = self.pool.get().await?;
        rows::exec(
            &c,
            "INSERT INTO folder_marks (instance, folder, dir_mtime_ns, dir_ctime_ns, max_id)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (instance) DO UPDATE SET folder = excluded.folder,
                 dir_mtime_ns = excluded.dir_mtime_ns, dir_ctime_ns = excluded.dir_ctime_ns,
                 max_id = excluded.max_id",
            &[
                &&*self.instance,
                &mark.folder,
                &mark.dir_mtime_ns,
                &mark.dir_ctime_ns,
                &mark.max_id,
            ],
        )
        .await?;
        Ok(())
    }
}

/// How connections are secured: with TLS whenever the URL's `sslmode` asks for it (`prefer`, the
/// default, when the server offers it; `require`), and the server's certificate always checked:
/// against the Mozilla roots, or against `store.ca_file` alone when it is given (a private CA).
fn tls(config: &StoreConfig) -> Result<MakeRustlsConnect, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            // Read with the same size cap as at load: the file may have changed since.
            let certs = crate::tls::ca_certificates(path)
                .map_err(|e| StoreError::Tls(format!("store.ca_file: {e}")))?;
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    StoreError::Tls(format!("store.ca_file {}: {e}", path.display()))
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(client))
}

/// A PostgreSQL error with the server's own message and code, where the driver's own text says
/// only "db error".
pub(super) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        // The driver's own text leaves out why (a TLS handshake's certificate error, say).
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// The connection settings: the URL as given, with the password from `store.password_env` when
/// set.
fn pg_config(config: &StoreConfig) -> Result<tokio_postgres::Config, StoreError> {
    let mut pg = tokio_postgres::Config::from_str(config.connect_url.expose()).map_err(|e| {
        StoreError::Url {
            url: config.url.clone(),
            reason: if e.to_string().contains("password") {
                "the password in the URL cannot be read"
            } else {
                "not a PostgreSQL URL hub can read (postgres://USER@HOST:PORT/DATABASE)"
            },
        }
    })?;
    if let Some(password) = &config.password {
        pg.password(password.expose());
    }
    pg.application_name(format!("hub {}", config.instance));
    pg.connect_timeout(CONNECT_TIMEOUT);
    Ok(pg)
}

/// The Dynatrace notifications among a feed's problems, by problem id and by PID (both indexed).
const RECEIVED_AMONG: &str = "SELECT problem_key, pid FROM notifications
     WHERE source = $1 AND (problem_key = ANY($2) OR pid = ANY($3))";

/// Which Dynatrace problems the store has received, on a connection of its own (for `hub poll`,
/// which starts no writer and is no instance).
pub(super) async fn received(
    config: &StoreConfig,
    wanted: &Wanted,
) -> Result<crate::feed::Received, StoreError> {
    let pg = pg_config(config)?;
    let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, pg.connect(tls(config)?))
        .await
        .map_err(|_| StoreError::Unreachable("timed out connecting".into()))??;
    let connection = tokio::spawn(connection);
    let rows: Vec<(String, Option<String>)> = rows::all_direct(
        &client,
        RECEIVED_AMONG,
        &[&Source::Dynatrace, &wanted.keys, &wanted.pids],
    )
    .await?;
    drop(client);
    let _ = connection.await;
    Ok(super::received_from(rows))
}

/// Listens for other instances' commits and wakes this one's dispatcher; connects again after
/// a second when the connection is lost. Polling stays the backstop.
async fn listen(pg: tokio_postgres::Config, tls: MakeRustlsConnect, committed: Arc<Notify>) {
    loop {
        if let Ok(Ok((client, mut connection))) =
            tokio::time::timeout(CONNECT_TIMEOUT, pg.connect(tls.clone())).await
        {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            let statement = format!("LISTEN {}", writer::CHANNEL);
            let listening = client.batch_execute(&statement);
            // The connection is driven by the stream: poll both until LISTEN is through.
            tokio::pin!(listening);
            let mut ok = false;
            loop {
                tokio::select! {
                    done = &mut listening, if !ok => {
                        if done.is_err() { break; }
                        ok = true;
                    }
                    message = messages.next() => match message {
                        Some(Ok(AsyncMessage::Notification(_))) => committed.notify_one(),
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break,
                    },
                }
            }
        }
        if Arc::strong_count(&committed) == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
