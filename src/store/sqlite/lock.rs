//! One `hub run` per SQLite store: a lock held for the process's life.
//!
//! A second `hub run` on the same store would take the first one's in-flight runs for crashed ones
//! and start them again (a second page), so it must stop before it touches anything. The lock is
//! an advisory `flock` on the database file itself, which the kernel releases when the process
//! ends, however it ends. A lock belongs to the file, not to a name: a symlink, `./`, a hard link
//! or a bind mount all reach the same inode, and so the same lock (a `<database>.lock` file beside
//! the path as given did not: each path had a lock of its own).
//!
//! SQLite's own locks on that file are POSIX record locks (`fcntl`); on Linux these and `flock`
//! locks are separate kinds that never conflict or replace each other. (NFS emulates `flock` with
//! record locks, but a store in WAL mode cannot live on a network file system anyway.) The one
//! rule is never to close this descriptor while SQLite has the file open: closing any descriptor
//! of a file drops every record lock the process holds on it. So the lock is released on drop, and
//! the descriptor is left open until the process ends.
//!
//! Which process holds the lock is read from `/proc/locks` (device and inode), so the message
//! names it whatever path that process was given.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::{AsRawFd, IntoRawFd};
use std::path::Path;

/// Held while hub runs; dropping it (or the process ending) releases the store.
#[derive(Debug)]
pub struct StoreLock {
    file: Option<File>,
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            // SAFETY: flock takes a descriptor we own; unlocking cannot harm SQLite's record locks.
            unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
            // Not closed: see the module's note on SQLite's record locks.
            let _ = file.into_raw_fd();
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "the store {db} is in use by another hub ({holder}); only one `hub run` may own a store. \
         Stop that one first, or give this one a store of its own (store.url)"
    )]
    Held { db: String, holder: String },
    #[error("cannot lock the store {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Takes the lock for the database at `db` (creating an empty database file if there is none, so
/// there is a file to lock), or says who holds it.
pub fn acquire(db: &Path) -> Result<StoreLock, LockError> {
    let io = |source| LockError::Io {
        path: db.display().to_string(),
        source,
    };
    // Read and write, as SQLite opens it: an empty file is an empty database to SQLite.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(db)
        .map_err(io)?;
    // SAFETY: flock takes a file descriptor we own for the duration of the call.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked == 0 {
        return Ok(StoreLock { file: Some(file) });
    }
    let e = std::io::Error::last_os_error();
    if e.kind() != std::io::ErrorKind::WouldBlock {
        return Err(io(e));
    }
    let holder = file
        .metadata()
        .ok()
        .and_then(|m| {
            holder(
                &std::fs::read_to_string("/proc/locks").ok()?,
                m.dev(),
                m.ino(),
            )
        })
        .map_or_else(
            || "a process this one cannot see".to_string(),
            |pid| format!("process {pid}"),
        );
    Err(LockError::Held {
        db: db.display().to_string(),
        holder,
    })
}

/// The process holding a `flock` write lock on the file `(dev, ino)`, from `/proc/locks`, where a
/// lock reads `1: FLOCK  ADVISORY  WRITE <pid> <major>:<minor>:<inode> 0 EOF` (major and minor in
/// hex) and a waiter's line has `->` after its number. A pid of 0 is one in another namespace.
fn holder(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    let file = format!("{:02x}:{:02x}:{ino}", libc::major(dev), libc::minor(dev));
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_, "FLOCK", _, "WRITE", pid, id, ..] if *id == file => {
                pid.parse().ok().filter(|p| *p != 0)
            }
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder_and_the_first_release_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hub.db");
        let first = acquire(&db).unwrap();
        assert!(db.is_file(), "the database file is made to be locked");
        // flock locks belong to the open file, so a second open in this process conflicts too,
        // through any path to the same file.
        std::os::unix::fs::symlink(&db, dir.path().join("link.db")).unwrap();
        std::fs::hard_link(&db, dir.path().join("hard.db")).unwrap();
        for other in ["hub.db", "link.db", "hard.db", "./hub.db"] {
            let path = match other.strip_prefix("./") {
                Some(name) => dir.path().join(".").join(name),
                None => dir.path().join(other),
            };
            let second = acquire(&path).unwrap_err().to_string();
            assert!(
                second.contains(&format!("process {}", std::process::id())),
                "{other}: {second}"
            );
        }
        drop(first);
        acquire(&dir.path().join("hard.db")).unwrap();
    }

    #[test]
    fn the_holder_is_read_from_proc_locks() {
        let locks = "1: POSIX  ADVISORY  WRITE 7 fe:00:42 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 1234 fe:00:42 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 99 fe:00:42 0 EOF\n";
        let dev = libc::makedev(0xfe, 0);
        assert_eq!(holder(locks, dev, 42), Some(1234));
        assert_eq!(holder(locks, dev, 43), None);
        assert_eq!(
            holder("1: FLOCK  ADVISORY  WRITE 0 fe:00:42 0 EOF", dev, 42),
            None
        );
    }
}
