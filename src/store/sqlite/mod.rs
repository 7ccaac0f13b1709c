//! The embedded store: SQLite (WAL, `synchronous=FULL`) in one file, every write through one
//! writer thread ([`writer`]) that commits whatever is waiting in one transaction (group commit),
//! reads on connections of their own ([`reader`]).

pub mod backup;
mod escalations;
mod groups;
pub mod lock;
mod migrate;
mod noise;
mod prune;
mod reader;
mod roster;
pub(super) mod rows;
mod runs;
mod source_sql;
mod threads;
mod views;
mod writer;

use writer::Job;

/// How many prepared statements each connection (the writer, the reader) keeps: more than hub
/// has, so none is ever prepared twice.
const STATEMENTS_KEPT: usize = 64;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};

use super::files;
use super::inbox::{self, FolderMark, FolderRows, Foreign, Health, Mode};
use super::{Accepted, DueEnrichment, StoreError, Unhealthy};
use crate::clock::now_ms;
use crate::domain::Notification;
use crate::feed::Wanted;
use crate::store::concerns::{Inbox, Instances};

/// How often a store whose last commit failed tries a small write of its own.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Files written and waiting for their names, at most, unless `set_file_slots` says otherwise.
const DEFAULT_FILE_SLOTS: usize = 1024;

/// How many notifications may wait for the writer before `accept` itself waits.
const QUEUE_DEPTH: usize = 4096;

/// The embedded store: one SQLite file, written by one writer thread.
#[derive(Clone)]
pub struct Sqlite {
    reader: Arc<reader::Reader>,
    views: Arc<reader::ReadPool>,
    jobs: mpsc::Sender<Job>,
    dir_received: PathBuf,
    /// Signalled after every commit, so the dispatcher starts at once instead of at its next poll.
    committed: Arc<Notify>,
    health: Arc<Health>,
    foreign: Arc<Foreign>,
    /// Slots for files written and waiting for their names (each holds a descriptor until then).
    file_slots: Arc<tokio::sync::Semaphore>,
}

/// While the last commit failed, one small write a second: the first that commits clears the
/// failure, so `/healthz` turns healthy by itself. Waiting for a notification to clear it never
/// ends behind a load balancer, which sends none to an instance it takes for down. Ends with the
/// store.
async fn probe(jobs: mpsc::WeakSender<Job>, health: Arc<Health>) {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    loop {
        tick.tick().await;
        let Some(jobs) = jobs.upgrade() else {
            return;
        };
        if health.last_failure().is_none() {
            continue;
        }
        let still_failing = health.clone();
        let work: writer::Work = Box::new(move |c| {
            let written = c.execute(
                "INSERT INTO write_probe (id, at_ms) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET at_ms = excluded.at_ms",
                [now_ms()],
            );
            writer::Applied {
                keep: written.is_ok(),
                // The writer counts an empty commit as a success; a probe whose row could not be
                // written (the disk is still full) says the store still refuses writes.
                deliver: Box::new(move |_| {
                    if let Err(e) = written {
                        still_failing.write_failed(&e.to_string());
                    }
                }),
            }
        });
        let _ = jobs.send(Job::Apply(work)).await;
    }
}

impl Inbox for Sqlite {
    /// Empties the WAL into the database file; at a graceful stop, so the database file alone
    /// holds everything that was acknowledged.
    async fn checkpoint(&self) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Checkpoint(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Which Dynatrace problems hub has received a notification for.
    async fn received(&self, wanted: &Wanted) -> Result<crate::feed::Received, StoreError> {
        let wanted = wanted.clone();
        self.views.read(move |c| received_among(c, &wanted)).await
    }
}

/// One instance owns an SQLite store (its lock says so): there is no other instance to announce
/// itself to, and no lease to renew or to lose.
impl Instances for Sqlite {
    async fn announce(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn leave(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn instances(&self) -> Result<Vec<crate::store::InstanceRow>, StoreError> {
        Ok(Vec::new())
    }

    async fn renew(&self, _run_id: i64, _attempt: i64) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn lapsed_own_runs(&self) -> Result<Vec<i64>, StoreError> {
        Ok(Vec::new())
    }
}

impl Sqlite {
    /// Opens (creating when missing) the database and the folder, applies migrations, starts the writer.
    pub async fn open(
        url: &str,
        dir_received: &Path,
        opening: super::Opening,
    ) -> Result<Sqlite, StoreError> {
        std::fs::create_dir_all(dir_received).map_err(|source| StoreError::Folder {
            path: dir_received.to_path_buf(),
            source,
        })?;
        let path = sqlite_path(url)?;
        let prepare = {
            let path = path.clone();
            move || -> Result<usize, StoreError> {
                let opened = |source: rusqlite::Error| StoreError::OpenFile {
                    path: path.clone(),
                    source: source.into(),
                };
                let mut conn = rusqlite::Connection::open(&path).map_err(opened)?;
                conn.busy_timeout(Duration::from_secs(10)).map_err(opened)?;
                // WAL is kept by the file itself, so every later connection reads beside the writer.
                conn.pragma_update(None, "journal_mode", "WAL")
                    .map_err(opened)?;
                match opening {
                    super::Opening::Serve => migrate::run(&mut conn),
                    super::Opening::Inspect => migrate::check(&conn).map(|()| 0),
                }
            }
        };
        let ran = tokio::task::spawn_blocking(prepare).await??;
        if ran > 0 {
            tracing::info!(migrations = ran, "brought the store's tables up to date");
        }
        let opened = |source: rusqlite::Error| StoreError::OpenFile {
            path: path.clone(),
            source: source.into(),
        };

        let reader = reader::Reader::open(&path).map_err(opened)?;
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        let committed = Arc::new(Notify::new());
        let health = Arc::new(Health::default());
        let foreign = Arc::new(Foreign::default());
        writer::start(
            &path,
            queue,
            dir_received.to_path_buf(),
            committed.clone(),
            health.clone(),
            foreign.clone(),
        )?;
        tokio::spawn(probe(jobs.downgrade(), health.clone()));
        Ok(Sqlite {
            reader: Arc::new(reader),
            views: reader::ReadPool::new(&path),
            jobs,
            dir_received: dir_received.to_path_buf(),
            committed,
            health,
            foreign,
            file_slots: Arc::new(tokio::sync::Semaphore::new(DEFAULT_FILE_SLOTS)),
        })
    }

    /// Bounds the files written and waiting for their names (each holds a file descriptor until
    /// it is named), so that with the connections they stay within the open-file limit.
    pub fn set_file_slots(&mut self, slots: usize) {
        self.file_slots = Arc::new(tokio::sync::Semaphore::new(slots.max(1)));
    }

    /// Whether the store can take a notification now: its writer runs, its last commit went
    /// through, and the received folder is there (the writer makes it again when it is not, so a
    /// missing folder that cannot be made is what counts). `Err` says what is wrong.
    pub fn health(&self) -> Result<(), Unhealthy> {
        if self.jobs.is_closed() {
            return Err(Unhealthy::WriterStopped);
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

    /// Runs `work` in the writer's next transaction and returns its result once that is committed
    /// (fsynced). A failing `work` is rolled back alone; the rest of the batch is kept.
    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job: writer::Work = Box::new(move |conn| match work(conn) {
            Ok(value) => writer::Applied {
                keep: true,
                deliver: Box::new(move |committed| {
                    let _ = reply.send(committed.map(|()| value));
                }),
            },
            Err(e) => writer::Applied {
                keep: false,
                deliver: Box::new(move |_| {
                    let _ = reply.send(Err(StoreError::from(e)));
                }),
            },
        });
        self.jobs
            .send(Job::Apply(job))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    pub fn file_slots(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.file_slots
    }

    /// Hands a notification, its bytes written unnamed, to the writer; the answer comes once it
    /// is committed and its file named.
    pub async fn submit(
        &self,
        notification: Notification,
        mode: Mode,
        file: Option<inbox::Pending>,
    ) -> Result<oneshot::Receiver<Result<Accepted, StoreError>>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Accept {
                notification,
                mode,
                file,
                reply,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(answer)
    }

    /// Notified after every commit of new notifications.
    pub fn committed(&self) -> Arc<Notify> {
        self.committed.clone()
    }

    /// The received folder.
    pub fn dir_received(&self) -> &Path {
        &self.dir_received
    }
}

impl FolderRows for Sqlite {
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
        self.views
            .read(move |c| {
                rows::all(
                    c,
                    "SELECT id, file_name, length(body) FROM notifications WHERE id > ?1
                     ORDER BY id LIMIT ?2",
                    [after, limit],
                )
            })
            .await
    }

    async fn body(&self, id: i64) -> Result<Vec<u8>, StoreError> {
        self.views
            .read(move |c| rows::one(c, "SELECT body FROM notifications WHERE id = ?1", [id]))
            .await
    }

    async fn rename_file(&self, id: i64, name: &str) -> Result<String, StoreError> {
        let stem = files::fit(files::stem_of(name).to_string());
        let dir = self.dir_received.clone();
        self.write(move |c| {
            let mut taken = c.prepare("SELECT 1 FROM notifications WHERE file_name = ?1")?;
            let mut number = 1;
            let free = loop {
                let candidate = files::candidate(&stem, number);
                if !taken.exists([&candidate])? && !files::exists_in(&dir, &candidate) {
                    break candidate;
                }
                number += 1;
            };
            c.execute(
                "UPDATE notifications SET file_name = ?1 WHERE id = ?2",
                rusqlite::params![free, id],
            )?;
            tracing::warn!(id, file = %free, "gave a notification a new file name (its old one was too long, or taken by a file hub did not write)");
            Ok(free)
        })
        .await
    }

    async fn max_id(&self) -> Result<i64, StoreError> {
        self.views
            .read(|c| rows::one(c, "SELECT COALESCE(MAX(id), 0) FROM notifications", []))
            .await
    }

    // One hub per SQLite store (its lock), so one mark, under no instance's name.
    async fn take_mark(&self) -> Result<Option<FolderMark>, StoreError> {
        self.write(|c| {
            let mark = rows::optional::<(String, i64, i64, i64)>(
                c,
                "SELECT folder, dir_mtime_ns, dir_ctime_ns, max_id FROM folder_marks
                 WHERE instance = ''",
                [],
            )?;
            c.execute("DELETE FROM folder_marks", [])?;
            Ok(
                mark.map(|(folder, dir_mtime_ns, dir_ctime_ns, max_id)| FolderMark {
                    folder,
                    dir_mtime_ns,
                    dir_ctime_ns,
                    max_id,
                }),
            )
        })
        .await
    }

    async fn put_mark(&self, mark: FolderMark) -> Result<(), StoreError> {
        self.write(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO folder_marks
                     (instance, folder, dir_mtime_ns, dir_ctime_ns, max_id)
                 VALUES ('', ?1, ?2, ?3, ?4)",
                rusqlite::params![
                    mark.folder,
                    mark.dir_mtime_ns,
                    mark.dir_ctime_ns,
                    mark.max_id
                ],
            )?;
            Ok(())
        })
        .await
    }
}

/// Takes the store's lock for this process's life (see [`lock`]), before anything is opened.
pub fn lock(url: &str) -> Result<lock::StoreLock, StoreError> {
    Ok(lock::acquire(&sqlite_path(url)?)?)
}

/// The database file a `sqlite:` URL names (`sqlite://hub.db`, `sqlite:hub.db`,
/// `sqlite:///var/lib/hub/hub.db`); a query such as `?mode=rwc` is ignored.
fn sqlite_path(url: &str) -> Result<PathBuf, StoreError> {
    let bad = |reason| StoreError::Url {
        url: url.to_string(),
        reason,
    };
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| bad("expected a SQLite URL such as sqlite://hub.db"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Err(bad("name the database file, such as sqlite://hub.db"));
    }
    Ok(PathBuf::from(path))
}

/// Which Dynatrace problems an existing store has received a notification for, read beside a
/// running hub without starting anything; `None` when there is no store yet.
pub async fn received(
    url: &str,
    wanted: &Wanted,
) -> Result<Option<crate::feed::Received>, StoreError> {
    let path = sqlite_path(url)?;
    if !path.exists() {
        return Ok(None);
    }
    let wanted = wanted.clone();
    Ok(Some(
        reader::ReadPool::new(&path)
            .read(move |c| received_among(c, &wanted))
            .await?,
    ))
}

/// The Dynatrace notifications among `wanted`, by problem id and by PID (both indexed).
fn received_among(
    c: &rusqlite::Connection,
    wanted: &Wanted,
) -> rusqlite::Result<crate::feed::Received> {
    let mut found: Vec<(String, Option<String>)> = Vec::new();
    // Without statistics SQLite would rather walk the (source, …) index than the partial one on
    // pid, which reads every Dynatrace notification: the index is named.
    let by = [
        ("", "problem_key IN", &wanted.keys),
        (
            "INDEXED BY notifications_by_pid",
            "pid IS NOT NULL AND pid IN",
            &wanted.pids,
        ),
    ];
    for (index, test, values) in by {
        for chunk in values.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!(
                "SELECT problem_key, pid FROM notifications {index}
                 WHERE source = ? AND {test} ({marks})"
            );
            let source = crate::domain::Source::Dynatrace;
            let params = std::iter::once(&source as &dyn rusqlite::ToSql)
                .chain(chunk.iter().map(|v| v as &dyn rusqlite::ToSql));
            let mut statement = c.prepare(&sql)?;
            let rows = statement.query_map(rusqlite::params_from_iter(params), |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
            for row in rows {
                found.push(row?);
            }
        }
    }
    Ok(super::received_from(found))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Facts, Source};
    use crate::store::{Backend, Store};

    fn notification(key: &str) -> Notification {
        Notification {
            source: Source::Dynatrace,
            problem_key: key.into(),
            state: "OPEN".into(),
            pid: None,
            title: None,
            is_test: false,
            body: format!("{{\"ProblemID\":\"{key}\"}}").into_bytes(),
            facts: Facts::default(),
            identity: None,
            trace: None,
        }
    }

    /// A connection of the test's own to the store's database.
    fn db(dir: &tempfile::TempDir) -> rusqlite::Connection {
        rusqlite::Connection::open(dir.path().join("hub.db")).unwrap()
    }

    /// The SQLite backend behind a `Store`, for the writes only it has.
    fn sqlite(store: &Store) -> &Sqlite {
        match &store.backend {
            Backend::Sqlite(s) => s,
            Backend::Postgres(_) => unreachable!("these tests open SQLite"),
        }
    }

    async fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("hub.db").display());
        let backend = Sqlite::open(
            &url,
            &dir.path().join("received"),
            crate::store::Opening::Serve,
        )
        .await
        .unwrap();
        let store = Store {
            backend: Backend::Sqlite(backend),
        };
        (dir, store)
    }

    /// A write that fails, or even panics, is rolled back alone: the writer goes on, and the
    /// notifications and writes around it are kept.
    #[tokio::test]
    async fn a_failing_write_is_rolled_back_alone_and_the_writer_goes_on() {
        let (dir, store) = open().await;
        store.accept(notification("P-1")).await.unwrap();
        let failing = sqlite(&store).write(|c| {
            c.execute("UPDATE notifications SET duplicates = 100", [])?;
            c.execute("INSERT INTO no_such_table VALUES (1)", [])
        });
        let panicking = sqlite(&store).write(|c| -> rusqlite::Result<()> {
            c.execute("UPDATE notifications SET duplicates = 200", [])?;
            panic!("a bug in a write");
        });
        let kept =
            sqlite(&store).write(|c| c.execute("UPDATE notifications SET title = 'kept'", []));
        let (failing, panicking, kept, accepted) =
            tokio::join!(failing, panicking, kept, store.accept(notification("P-2")));
        assert!(matches!(failing, Err(StoreError::Db(_))), "{failing:?}");
        assert!(
            matches!(panicking, Err(StoreError::Closed)),
            "{panicking:?}"
        );
        assert_eq!(kept.unwrap(), 1);
        assert!(
            matches!(accepted, Ok(Accepted::Stored { .. })),
            "{accepted:?}"
        );
        let rows: Vec<(String, Option<String>, i64)> = rows::all(
            &db(&dir),
            "SELECT problem_key, title, duplicates FROM notifications ORDER BY id",
            [],
        )
        .unwrap();
        assert_eq!(
            rows,
            [
                ("P-1".into(), Some("kept".into()), 0),
                ("P-2".into(), None, 0)
            ]
        );
        let after = store.accept(notification("P-3")).await;
        assert!(matches!(after, Ok(Accepted::Stored { .. })), "{after:?}");
    }

    /// A notification that cannot be inserted fails alone; the others of its batch are stored.
    #[tokio::test]
    async fn a_notification_that_cannot_be_inserted_fails_alone() {
        let (dir, store) = open().await;
        db(&dir)
            .execute_batch(
                "CREATE TRIGGER reject BEFORE INSERT ON notifications WHEN NEW.problem_key = 'BAD'
                 BEGIN SELECT RAISE(ABORT, 'rejected by the test'); END",
            )
            .unwrap();
        let (before, bad, after) = tokio::join!(
            store.accept(notification("P-1")),
            store.accept(notification("BAD")),
            store.accept(notification("P-2"))
        );
        assert!(matches!(before, Ok(Accepted::Stored { .. })), "{before:?}");
        assert!(
            matches!(&bad, Err(StoreError::NotStored(m)) if m.contains("rejected by the test")),
            "{bad:?}"
        );
        assert!(matches!(after, Ok(Accepted::Stored { .. })), "{after:?}");
        let mut files: Vec<String> = std::fs::read_dir(dir.path().join("received"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        assert_eq!(files, ["P-1-OPEN.json", "P-2-OPEN.json"]);
        let plans: i64 = rows::one(&db(&dir), "SELECT COUNT(*) FROM plans", []).unwrap();
        assert_eq!(plans, 2, "nothing of the rejected one is kept");
    }

    /// When the file cannot be written (the folder unusable, a full disk), the sender is told
    /// "not stored", and indeed nothing is: no row, no plan, so no action runs.
    #[tokio::test]
    async fn a_notification_whose_file_cannot_be_written_is_not_stored() {
        let (dir, store) = open().await;
        let received = dir.path().join("received");
        std::fs::remove_dir(&received).unwrap();
        std::fs::write(&received, b"a file where the folder was").unwrap();
        let refused = store.accept(notification("P-1")).await;
        assert!(
            matches!(&refused, Err(StoreError::NotStored(m)) if m.contains("received folder")),
            "{refused:?}"
        );
        let (rows, plans): (i64, i64) = rows::one(
            &db(&dir),
            "SELECT (SELECT COUNT(*) FROM notifications), (SELECT COUNT(*) FROM plans)",
            [],
        )
        .unwrap();
        assert_eq!((rows, plans), (0, 0));
        assert!(store.health().is_err(), "the folder cannot be made");

        std::fs::remove_file(&received).unwrap();
        let stored = store.accept(notification("P-1")).await.unwrap();
        assert_eq!(stored.file_name(), "P-1-OPEN.json");
        store.health().unwrap();
    }

    /// A store whose last commit failed turns healthy by itself once it takes writes again, with
    /// no notification needed (behind a load balancer, none would come): its own small write
    /// tries once a second, and one that fails keeps it unhealthy.
    #[tokio::test]
    async fn health_comes_back_by_itself_once_the_store_takes_writes() {
        let (dir, store) = open().await;
        let refuse = "CREATE TRIGGER refuse_insert BEFORE INSERT ON write_probe
                          BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END;
                      CREATE TRIGGER refuse_update BEFORE UPDATE ON write_probe
                          BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END;";
        db(&dir).execute_batch(refuse).unwrap();
        sqlite(&store)
            .health
            .write_failed("database or disk is full");
        tokio::time::sleep(PROBE_EVERY * 3).await;
        assert!(
            store.health().is_err(),
            "a probe that cannot write clears nothing"
        );

        db(&dir)
            .execute_batch("DROP TRIGGER refuse_insert; DROP TRIGGER refuse_update;")
            .unwrap();
        let mut healthy = false;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if store.health().is_ok() {
                healthy = true;
                break;
            }
        }
        assert!(healthy, "{:?}", store.health());
    }

    /// A file hub did not write is never replaced: the notification takes the next free name. And
    /// each variant's name is found from the last number given, not by probing from the first.
    #[tokio::test]
    async fn names_skip_files_already_there_and_count_on() {
        let (dir, store) = open().await;
        let received = dir.path().join("received");
        std::fs::write(received.join("P-1-OPEN.json"), b"left by the sample").unwrap();
        // As `hub run` does at start.
        let check = store.check_folder().await.unwrap();
        assert_eq!(check.unknown, ["P-1-OPEN.json"]);
        let mut names = Vec::new();
        for i in 0..4 {
            let mut n = notification("P-1");
            n.body = format!("{{\"ProblemID\":\"P-1\",\"variant\":{i}}}").into_bytes();
            names.push(store.accept(n).await.unwrap().file_name().to_string());
        }
        assert_eq!(
            names,
            [
                "P-1-OPEN.2.json",
                "P-1-OPEN.3.json",
                "P-1-OPEN.4.json",
                "P-1-OPEN.5.json"
            ]
        );
        assert_eq!(
            std::fs::read(received.join("P-1-OPEN.json")).unwrap(),
            b"left by the sample"
        );
        let last: i64 = rows::one(
            &db(&dir),
            "SELECT last FROM file_name_counters WHERE stem = 'P-1-OPEN'",
            [],
        )
        .unwrap();
        assert_eq!(last, 5);
        let check = store.check_folder().await.unwrap();
        assert_eq!(check.unknown, ["P-1-OPEN.json"]);
        assert_eq!(check.restored, 0);

        // A file put under the next name while hub runs is kept; the notification gets the name
        // after it, which the answer gives, and its file is there when the answer comes.
        std::fs::write(received.join("P-1-OPEN.6.json"), b"put there meanwhile").unwrap();
        let mut n = notification("P-1");
        n.body = b"{\"ProblemID\":\"P-1\",\"variant\":6}".to_vec();
        assert_eq!(
            store.accept(n).await.unwrap().file_name(),
            "P-1-OPEN.7.json"
        );
        assert_eq!(
            std::fs::read(received.join("P-1-OPEN.6.json")).unwrap(),
            b"put there meanwhile"
        );
        assert_eq!(
            std::fs::read(received.join("P-1-OPEN.7.json")).unwrap(),
            b"{\"ProblemID\":\"P-1\",\"variant\":6}"
        );
        let check = store.check_folder().await.unwrap();
        assert_eq!(check.unknown, ["P-1-OPEN.6.json", "P-1-OPEN.json"]);
        assert_eq!(check.restored, 0);
    }

    /// At a graceful stop the WAL is emptied into the database file.
    #[tokio::test]
    async fn a_checkpoint_leaves_everything_in_the_database_file() {
        let (dir, store) = open().await;
        for i in 0..20 {
            store.accept(notification(&format!("P-{i}"))).await.unwrap();
        }
        store.checkpoint().await.unwrap();
        let wal = dir.path().join("hub.db-wal");
        assert_eq!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0), 0);
        let copy = dir.path().join("copy.db");
        std::fs::copy(dir.path().join("hub.db"), &copy).unwrap();
        let conn = rusqlite::Connection::open(&copy).unwrap();
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM notifications", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 20);
    }

    /// A row named before long ids were shortened gets a name that fits, and its file, at start.
    #[tokio::test]
    async fn a_name_too_long_is_given_one_that_fits_at_start() {
        let (dir, store) = open().await;
        store.accept(notification("P-1")).await.unwrap();
        let long = format!("{}-OPEN.json", "x".repeat(260));
        db(&dir)
            .execute("UPDATE notifications SET file_name = ?1", [&long])
            .unwrap();
        let check = store.check_folder().await.unwrap();
        assert_eq!((check.restored, check.unwritable.len()), (1, 0));
        let name: String = rows::one(&db(&dir), "SELECT file_name FROM notifications", []).unwrap();
        assert!(name.len() <= 255 && dir.path().join("received").join(&name).is_file());
        assert_eq!(
            check.unknown,
            ["P-1-OPEN.json"],
            "the old file is not the store's any more"
        );
    }

    /// A file put under a notification's name before hub named it is kept, and the notification
    /// gets another name at start; a file cut short by a power cut is written again.
    #[tokio::test]
    async fn a_foreign_file_under_a_stored_name_is_kept() {
        let (dir, store) = open().await;
        store.accept(notification("P-1")).await.unwrap();
        store.accept(notification("P-2")).await.unwrap();
        let received = dir.path().join("received");
        std::fs::write(received.join("P-1-OPEN.json"), b"someone else's").unwrap();
        std::fs::write(received.join("P-2-OPEN.json"), b"{\"Probl").unwrap();
        let check = store.check_folder().await.unwrap();
        assert_eq!(check.restored, 2);
        assert_eq!(check.unknown, ["P-1-OPEN.json"]);
        assert_eq!(
            std::fs::read(received.join("P-1-OPEN.json")).unwrap(),
            b"someone else's"
        );
        assert_eq!(
            std::fs::read(received.join("P-1-OPEN.2.json")).unwrap(),
            b"{\"ProblemID\":\"P-1\"}"
        );
        assert_eq!(
            std::fs::read(received.join("P-2-OPEN.json")).unwrap(),
            b"{\"ProblemID\":\"P-2\"}"
        );
    }
}
