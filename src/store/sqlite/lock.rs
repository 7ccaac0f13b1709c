//! One `hub run` per SQLite store: a lock held for the process's life.
//!
//! A second `hub run` on the same store would take the first one's in-flight runs for crashed ones
//! and start them again (a second page), so it must stop before it touches anything. The lock is
//! an advisory `flock` on `<database>.lock`, which the kernel releases when the process ends, however
//! it ends; the file says which process holds it. It is not the database file itself: SQLite's own
//! locks on that file are POSIX record locks, which do not mix with `flock` on every file system.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Held while hub runs; dropping it (or the process ending) releases the store.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "the store {db} is in use by another hub ({holder}); only one `hub run` may own a store. \
         Stop that one first, or give this one a store of its own (store.url)"
    )]
    Held { db: String, holder: String },
    #[error("cannot lock the store with {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Takes the lock for the database at `db`, or says who holds it.
pub fn acquire(db: &Path) -> Result<StoreLock, LockError> {
    let mut path = db.as_os_str().to_owned();
    path.push(".lock");
    let path = PathBuf::from(path);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    // SAFETY: flock takes a file descriptor we own for the duration of the call.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::WouldBlock {
            return Err(io(e));
        }
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        let holder = match text.trim().parse::<u32>() {
            Ok(pid) => format!("process {pid}"),
            Err(_) => "a process that has not written its id yet".to_string(),
        };
        return Err(LockError::Held {
            db: db.display().to_string(),
            holder,
        });
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(StoreLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder_and_the_first_release_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hub.db");
        let first = acquire(&db).unwrap();
        // flock locks belong to the open file, so a second open in this process conflicts too.
        let second = acquire(&db).unwrap_err().to_string();
        assert!(
            second.contains(&format!("process {}", std::process::id())),
            "{second}"
        );
        drop(first);
        acquire(&db).unwrap();
    }
}
