//! What every backend shares on the way in: notifications' bytes written unnamed before the
//! store sees them, the names hub must not give, the health of the last write, and the start-up
//! check of the received folder against the store.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use super::{files, FolderCheck, StoreError};
use crate::domain::Notification;

/// The longest file name kept; longer ones, from before names were shortened, are renamed at start.
const MAX_NAME_LEN: usize = 250;

/// How a notification comes in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// From a sender: deduplicated (a redelivery is counted), enriched and routed to actions.
    Live,
    /// From `hub import`, as history: stored and shown, never enriched or acted on, and a
    /// notification already stored is left as it is. `adopt` names a file already in the received
    /// folder that holds exactly this body, to be kept as the notification's file.
    Import { adopt: Option<String> },
}

/// A new notification's bytes in an unnamed file, with the slot it holds among the files waiting
/// for their names: each one holds a file descriptor until it is named, so their number is bounded
/// (see `Store::set_file_slots`).
pub(crate) struct Pending {
    pub file: files::Unnamed,
    pub _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Names of files in the received folder that the store does not hold (the Python sample's, say),
/// as the start-up check found them: no new notification is given one of them. Also whether a
/// received file could not be named since start: either way the folder differs from the store,
/// and the next start must compare them in full.
#[derive(Default)]
pub(crate) struct Foreign {
    names: Mutex<std::collections::HashSet<String>>,
    unnamed: std::sync::atomic::AtomicBool,
}

impl Foreign {
    pub fn set(&self, names: impl IntoIterator<Item = String>) {
        *self.names() = names.into_iter().collect();
    }

    pub fn names(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.names.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A file hub did not write, found under a name hub was about to give: never given again.
    pub fn add(&self, name: &str) {
        self.names().insert(name.to_string());
    }

    /// A stored notification's file could not be given its name.
    pub fn left_unnamed(&self) {
        self.unnamed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The folder holds every stored notification's file and nothing else hub knows of.
    fn folder_matches_store(&self) -> bool {
        self.names().is_empty() && !self.unnamed.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The received folder and the store as a clean stop left them (see `folder_marks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FolderMark {
    pub folder: String,
    pub dir_mtime_ns: i64,
    pub dir_ctime_ns: i64,
    pub max_id: i64,
}

/// Writes every file system buffer of the folder's file system to its disk.
fn sync_file_system(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::io::AsRawFd;
    let folder = std::fs::File::open(dir)?;
    // SAFETY: syncfs takes a file descriptor that `folder` owns for the duration of the call.
    if unsafe { libc::syncfs(folder.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The folder's own times change whenever a file in it is created, removed or renamed.
fn folder_times(dir: &Path) -> std::io::Result<(i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(dir)?;
    let ns = |secs: i64, nanos: i64| secs.saturating_mul(1_000_000_000).saturating_add(nanos);
    Ok((ns(m.mtime(), m.mtime_nsec()), ns(m.ctime(), m.ctime_nsec())))
}

async fn current_mark(b: &impl FolderRows) -> Result<Option<FolderMark>, StoreError> {
    let Ok((dir_mtime_ns, dir_ctime_ns)) = folder_times(b.dir()) else {
        return Ok(None);
    };
    Ok(Some(FolderMark {
        folder: b.dir().display().to_string(),
        dir_mtime_ns,
        dir_ctime_ns,
        max_id: b.max_id().await?,
    }))
}

/// At a clean stop: records the folder as it is, when it matched the store all along, so that
/// the next start can skip the full comparison.
pub(crate) async fn mark_folder(b: &impl FolderRows) -> Result<bool, StoreError> {
    if !b.foreign().folder_matches_store() {
        return Ok(false);
    }
    // Received files are named without a sync of their own; the mark vouches for their bytes, so
    // they must be on the disk first, or a power cut after the stop could leave one cut short
    // under a mark that says nothing changed.
    let dir = b.dir().to_path_buf();
    if tokio::task::spawn_blocking(move || sync_file_system(&dir))
        .await?
        .is_err()
    {
        return Ok(false);
    }
    match current_mark(b).await? {
        Some(mark) => {
            b.put_mark(mark).await?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Whether the last commit failed, and why; for the health check. A full disk fails every commit
/// until space is back, and the first commit after that clears it.
#[derive(Default)]
pub(crate) struct Health(Mutex<Option<String>>);

impl Health {
    pub fn write_failed(&self, error: &str) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.to_string());
    }

    pub fn write_succeeded(&self) {
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some() {
            tracing::info!("the store takes writes again");
            *last = None;
        }
    }

    pub fn last_failure(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Writes each notification's bytes to an unnamed file in `dir` (none when it is imported under
/// the name of a file already there), holding a slot among the files waiting for their names.
/// `NotStored` when the folder cannot take it: the sender is told to retry, and nothing of it
/// reaches the store.
pub(crate) async fn write_unnamed(
    dir: &Path,
    slots: &Arc<Semaphore>,
    notifications: Vec<Notification>,
    mode: &Mode,
) -> Result<Vec<(Notification, Option<Pending>)>, StoreError> {
    let adopts = matches!(mode, Mode::Import { adopt: Some(_) });
    let mut jobs = Vec::with_capacity(notifications.len());
    for notification in notifications {
        let file = if adopts {
            None
        } else {
            let slot = slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| StoreError::Closed)?;
            // A small file, written without a sync: blocking this thread for it costs less than
            // handing it to another.
            let file = files::in_folder(dir, || files::Unnamed::write(dir, &notification.body))
                .map_err(|e| {
                    // The answer's error line (once per interval) says why.
                    StoreError::NotStored(format!(
                        "cannot write to the received folder {}: {e}",
                        dir.display()
                    ))
                })?;
            Some(Pending {
                file,
                _slot: Some(slot),
            })
        };
        jobs.push((notification, file));
    }
    Ok(jobs)
}

/// What the start-up check needs of a backend.
pub(crate) trait FolderRows {
    fn dir(&self) -> &Path;
    fn foreign(&self) -> &Foreign;
    /// Stored notifications' id, file name and body length, by id, after `after`.
    async fn known_files(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, i64)>, StoreError>;
    async fn body(&self, id: i64) -> Result<Vec<u8>, StoreError>;
    /// Gives a stored notification a new file name: one that fits the file system, and that no
    /// other notification or file in the folder has.
    async fn rename_file(&self, id: i64, name: &str) -> Result<String, StoreError>;
    /// The newest notification's id (0 when there is none).
    async fn max_id(&self) -> Result<i64, StoreError>;
    /// Removes this instance's mark and returns it.
    async fn take_mark(&self) -> Result<Option<FolderMark>, StoreError>;
    async fn put_mark(&self, mark: FolderMark) -> Result<(), StoreError>;
}

/// Compares the received folder with the store. Writes again every file the store has and the
/// folder lacks, or has with another size (cut short by a power failure, or changed by hand), and
/// lists the notification files in the folder that the store does not know (left by the Python
/// sample, or kept only in a WAL that was lost). A file that cannot be written is reported and
/// skipped: no single notification may keep hub from starting.
pub(crate) async fn check_folder(b: &impl FolderRows) -> Result<FolderCheck, StoreError> {
    // Taken whatever comes next: from now on only a clean stop may say the folder is as it was.
    let left = b.take_mark().await?;
    if left.is_some() && left == current_mark(b).await? {
        return Ok(FolderCheck {
            as_left: true,
            ..FolderCheck::default()
        });
    }
    let dir = b.dir().to_path_buf();
    let folder_error = |source| StoreError::Folder {
        path: dir.clone(),
        source,
    };
    let listed = dir.clone();
    let mut present = tokio::task::spawn_blocking(move || Listing::of(&listed))
        .await?
        .map_err(folder_error)?;
    let mut check = FolderCheck::default();
    let mut foreign_files = Vec::new();
    let mut after = 0;
    loop {
        let batch = b.known_files(after, KNOWN_BATCH).await?;
        let Some((last, _, _)) = batch.last() else {
            break;
        };
        after = *last;
        for (id, mut name, len) in batch {
            let found = present.take(&dir, &name);
            if found == Some(len as u64) {
                continue;
            }
            let body = b.body(id).await?;
            let foreign = found.is_some() && !cut_short(&dir.join(&name), &body);
            if name.len() > MAX_NAME_LEN || foreign {
                // Named before long ids were shortened (its file could never be written, and a
                // sender retrying it got 503 for ever), or its name taken by a file hub did not
                // write, which is kept: it gets a name of its own.
                if foreign {
                    foreign_files.push(name.clone());
                }
                name = b.rename_file(id, &name).await?;
            }
            let (dir, target) = (dir.clone(), name.clone());
            let written =
                tokio::task::spawn_blocking(move || files::write_view(&dir, &target, &body))
                    .await?;
            match written {
                Ok(()) => check.restored += 1,
                Err(e) => check.unwritable.push(format!("{name}: {e}")),
            }
        }
    }
    let listed = dir.clone();
    let left = tokio::task::spawn_blocking(move || present.names_left(&listed))
        .await?
        .map_err(folder_error)?;
    check.unknown = left
        .into_iter()
        .chain(foreign_files)
        .filter(|name| name.ends_with(".json") && !name.starts_with('.'))
        .collect();
    check.unknown.sort();
    // hub's names all end in `.json` and none is hidden, so these are the names it must not give.
    b.foreign().set(check.unknown.iter().cloned());
    Ok(check)
}

/// Whether the file at `path` is what a power cut leaves of `body` (a beginning of it, or zeros),
/// rather than a file of someone else's under the same name.
fn cut_short(path: &Path, body: &[u8]) -> bool {
    match std::fs::read(path) {
        Ok(bytes) => body.starts_with(&bytes) || bytes.iter().all(|&b| b == 0),
        Err(_) => true,
    }
}

/// Stored notifications read at a time by the start-up check.
const KNOWN_BATCH: i64 = 10_000;

/// The files of a folder by a hash of their names, with their sizes: a million names held as
/// strings took 200 MiB at start, as hashes they take 20. Two names with one hash (which does not
/// happen in practice) are marked, and each such name is looked at by itself.
struct Listing {
    sizes: HashMap<u64, u64>,
    /// Stored names whose hash two files share: not foreign, whatever their hash says.
    shared_known: std::collections::HashSet<String>,
}

const SHARED_HASH: u64 = u64::MAX;

/// Folder entries listed at a time.
const LISTING_CHUNK: usize = 8192;

/// Each entry's name hash and size (names that are not UTF-8 are not hub's, and are skipped).
fn sized(entries: &[std::fs::DirEntry]) -> std::io::Result<Vec<(u64, u64)>> {
    entries
        .iter()
        .filter_map(|e| Some((e, e.file_name().into_string().ok()?)))
        .map(|(e, name)| Ok((name_hash(&name), e.metadata()?.len())))
        .collect()
}

fn name_hash(name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

impl Listing {
    fn of(dir: &Path) -> std::io::Result<Listing> {
        let mut sizes = HashMap::new();
        let mut entries = std::fs::read_dir(dir)?;
        loop {
            let chunk: Vec<std::fs::DirEntry> = entries
                .by_ref()
                .take(LISTING_CHUNK)
                .collect::<Result<_, _>>()?;
            if chunk.is_empty() {
                break;
            }
            // A `stat` per file is most of the time a full comparison takes: the two halves of
            // each chunk are read side by side.
            let (first, second) = chunk.split_at(chunk.len() / 2);
            let (a, b) = std::thread::scope(|s| {
                let other = s.spawn(|| sized(second));
                (sized(first), other.join())
            });
            let b = b.map_err(|_| std::io::Error::other("a listing thread panicked"))?;
            for (hash, size) in a?.into_iter().chain(b?) {
                sizes
                    .entry(hash)
                    .and_modify(|s| *s = SHARED_HASH)
                    .or_insert(size);
            }
        }
        Ok(Listing {
            sizes,
            shared_known: Default::default(),
        })
    }

    /// The size of the file a stored notification names, if it is there; the file is then known.
    fn take(&mut self, dir: &Path, name: &str) -> Option<u64> {
        let hash = name_hash(name);
        match self.sizes.get(&hash).copied() {
            None => None,
            Some(SHARED_HASH) => {
                self.shared_known.insert(name.to_string());
                std::fs::metadata(dir.join(name)).ok().map(|m| m.len())
            }
            Some(size) => {
                self.sizes.remove(&hash);
                Some(size)
            }
        }
    }

    /// The names of the files no stored notification named: a second pass over the folder, made
    /// only when there are any.
    fn names_left(self, dir: &Path) -> std::io::Result<Vec<String>> {
        if self.sizes.is_empty() {
            return Ok(Vec::new());
        }
        let mut left = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let Ok(name) = entry?.file_name().into_string() else {
                continue;
            };
            match self.sizes.get(&name_hash(&name)) {
                Some(&SHARED_HASH) if !self.shared_known.contains(&name) => left.push(name),
                Some(&SHARED_HASH) | None => {}
                Some(_) => left.push(name),
            }
        }
        Ok(left)
    }
}
