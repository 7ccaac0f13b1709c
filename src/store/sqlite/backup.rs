//! `hub backup FILE`: a consistent copy of a SQLite store taken while hub serves.
//!
//! `VACUUM INTO` reads the whole store in one read transaction, so the copy holds exactly what was
//! committed when it began, however many writes the running hub makes meanwhile (WAL readers never
//! block the writer). It writes into a partial file beside the target; the finished copy is synced
//! and then linked under its name, which fails rather than replace a file that appeared meanwhile.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use super::sqlite_path;
use crate::store::StoreError;

/// What a backup wrote.
#[derive(Debug)]
pub struct Backup {
    pub path: PathBuf,
    pub bytes: u64,
    pub notifications: i64,
    pub took: Duration,
}

/// Why no backup was written.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "{0} exists; a backup never replaces a file: name a new one, or remove that one first"
    )]
    Exists(PathBuf),
    #[error("there is no store at {0} to back up")]
    NoStore(PathBuf),
    #[error("cannot write the backup {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot copy the store: {0}")]
    Db(#[from] rusqlite::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Copies the store at `url` into `target`, which must not exist.
pub fn backup(url: &str, target: &Path) -> Result<Backup, BackupError> {
    let started = Instant::now();
    let source = sqlite_path(url)?;
    if !source.exists() {
        return Err(BackupError::NoStore(source));
    }
    if target.symlink_metadata().is_ok() {
        return Err(BackupError::Exists(target.to_path_buf()));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BackupError::Io { path, source }
    };
    let partial = partial_name(target);
    // A partial file left by a backup that was killed is ours to replace.
    let _ = std::fs::remove_file(&partial);
    let written = copy_into(&source, &partial).and_then(|notifications| {
        let file = std::fs::File::open(&partial).map_err(io(&partial))?;
        file.sync_all().map_err(io(&partial))?;
        std::fs::hard_link(&partial, target).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                BackupError::Exists(target.to_path_buf())
            } else {
                io(target)(e)
            }
        })?;
        Ok(notifications)
    });
    let _ = std::fs::remove_file(&partial);
    let notifications = written?;
    sync_folder(target).map_err(io(target))?;
    let bytes = std::fs::metadata(target).map_err(io(target))?.len();
    Ok(Backup {
        path: target.to_path_buf(),
        bytes,
        notifications,
        took: started.elapsed(),
    })
}

/// Writes a compact copy of `source` into `into` and counts its notifications.
fn copy_into(source: &Path, into: &Path) -> Result<i64, BackupError> {
    // Opened for writing only because `query_only` would refuse VACUUM; nothing here writes to it.
    let conn = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(30))?;
    let into_text = into.to_str().ok_or_else(|| BackupError::Io {
        path: into.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the file name is not UTF-8",
        ),
    })?;
    conn.execute("VACUUM INTO ?1", [into_text])?;
    // `immutable`: nothing else has the copy open, and it must gain no -wal or -shm beside it.
    let copy = Connection::open_with_flags(
        format!("file:{}?immutable=1", uri_path(into_text)),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
    )?;
    let notifications = copy.query_row("SELECT COUNT(*) FROM notifications", [], |r| r.get(0))?;
    Ok(notifications)
}

/// A path as the path part of a `file:` URI: `?`, `#` and `%` would end or change it.
fn uri_path(path: &str) -> String {
    path.replace('%', "%25")
        .replace('?', "%3f")
        .replace('#', "%23")
}

fn partial_name(target: &Path) -> PathBuf {
    let mut name = target.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Makes the new name itself durable, not only the file's bytes.
fn sync_folder(file: &Path) -> std::io::Result<()> {
    let folder = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(folder)?.sync_all()
}
