//! The folders' files: safe names, and writes a reader never sees half done. The files are views
//! of the store, so they are not fsynced; start-up rewrites what a crash left missing or short.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// A name made from `part` (`problems_sent/<name>.json`): its characters made safe
/// ([`safe_chars`]) and its length bounded ([`fit`]), so that with `.json`, and inside the
/// temporary `.<name>.tmp`, it stays within the 255 bytes a file system takes. An id of 251
/// characters made a name no folder could hold, and its problem's file failed at every change.
pub fn sanitize(part: &str) -> String {
    fit(safe_chars(part))
}

/// Replaces every character outside `[A-Za-z0-9._-]` with `_`, so no name can leave its folder.
/// Leading dots become `_` too: a name is never `.` or `..`, and never a hidden file that a tool
/// watching the folder would skip (hub's own temporary files are the hidden ones).
fn safe_chars(part: &str) -> String {
    let mut leading = true;
    part.chars()
        .map(|c| {
            let keep = c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
            let hidden = leading && c == '.';
            leading &= c == '.';
            if keep && !hidden {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The `n`th file name candidate for a notification, in order of preference: the sample's
/// `<ProblemID>-<State>.json` first, then numbered variants for a different body with the same
/// ProblemID and State (or for two ids that sanitize to the same name).
pub fn candidate(stem: &str, n: u64) -> String {
    if n <= 1 {
        format!("{stem}.json")
    } else {
        format!("{stem}.{n}.json")
    }
}

/// The stem a [`candidate`] name was made from: `P-1-OPEN.3.json` → `P-1-OPEN`.
pub fn stem_of(name: &str) -> &str {
    let stem = name.strip_suffix(".json").unwrap_or(name);
    match stem.rsplit_once('.') {
        Some((head, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => head,
        _ => stem,
    }
}

/// The stem for a Dynatrace notification; other sources prefix their name.
pub fn stem(source_prefix: Option<&str>, key: &str, state: &str) -> String {
    fit(match source_prefix {
        None => format!("{}-{}", safe_chars(key), safe_chars(state)),
        Some(p) => format!(
            "{}-{}-{}",
            safe_chars(p),
            safe_chars(key),
            safe_chars(state)
        ),
    })
}

/// The longest stem kept as it is. File systems take names of at most 255 bytes; a stem this long
/// still leaves room for `.<n>.json` and for the hidden temporary name (`.<name>.tmp`).
pub const MAX_STEM: usize = 200;

/// A sanitized stem that fits [`MAX_STEM`]: a longer one keeps its beginning and ends with a digest
/// of the whole, so two long ids that share a beginning still get names of their own. An id of any
/// length from any sender must make a name the file system takes, or its file could never be
/// written (and a start-up that writes it back would fail).
pub fn fit(stem: String) -> String {
    if stem.len() <= MAX_STEM {
        return stem;
    }
    let hex = crate::secret::short_sha256(stem.as_bytes(), 8);
    // Sanitized stems are ASCII, so any byte index is a character boundary.
    format!("{}-{hex}", &stem[..MAX_STEM - hex.len() - 1])
}

/// Runs a write into the received folder; a folder deleted while hub runs is made again first.
pub fn in_folder<T>(dir: &Path, write: impl Fn() -> io::Result<T>) -> io::Result<T> {
    match write() {
        Err(e) if e.kind() == io::ErrorKind::NotFound && !dir.is_dir() => {
            tracing::warn!(folder = %dir.display(), "the received folder was gone; making it again");
            fs::create_dir_all(dir)?;
            write()
        }
        other => other,
    }
}

/// The stem of a notification's received file names (see `Source::file_prefix`).
pub fn notification_stem(n: &crate::domain::Notification) -> String {
    stem(n.source.file_prefix(), &n.problem_key, &n.state)
}

/// A problem's file name in `problems_sent/`: the sample's `<ProblemID>.json` for Dynatrace, `<source>-<key>.json`
/// for the others.
pub fn sent_name(source: crate::domain::Source, problem_key: &str) -> String {
    match source {
        crate::domain::Source::Dynatrace => format!("{}.json", sanitize(problem_key)),
        other => format!("{}.json", sanitize(&format!("{other}-{problem_key}"))),
    }
}

/// Whether anything (a file, a folder, a link) is in `dir` under `name`.
pub fn exists_in(dir: &Path, name: &str) -> bool {
    fs::symlink_metadata(dir.join(name)).is_ok()
}

/// A new received file's bytes, written but not yet under a name, so that nothing is in the
/// folder until the notification is committed: a crash or a failed commit leaves no file of a
/// notification that was never stored. [`Unnamed::link`] then gives it its name, never replacing a
/// file already there (one the Python sample left, say).
///
/// The file is not synced: the files are views of the store, whose commit is what makes a
/// notification durable, and the start-up pass rewrites any file that is missing or not whole.
/// Syncing each file would cap ingest at the disk's fsync rate for no gain in what is kept.
///
/// On Linux the file is written unnamed (`O_TMPFILE`) and then linked (`linkat`): one entry added
/// to the folder instead of a temporary name created, looked up and linked, which makes a file
/// about a third cheaper here, and the kernel drops it if hub dies first. Elsewhere (another file
/// system, no `/proc`) it is a hidden temporary name, hard-linked into place (a link, unlike a
/// rename, never replaces) and removed. Either way a reader never sees half a file.
pub struct Unnamed(Held);

enum Held {
    #[cfg(target_os = "linux")]
    Open(fs::File),
    Hidden(PathBuf),
}

impl Unnamed {
    pub fn write(dir: &Path, bytes: &[u8]) -> io::Result<Unnamed> {
        #[cfg(target_os = "linux")]
        if proc_fd_available() {
            if let Ok(f) = write_unnamed(dir, bytes) {
                return Ok(Unnamed(Held::Open(f)));
            }
        }
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".hub-{}-{n}.tmp", std::process::id()));
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        let held = Unnamed(Held::Hidden(tmp));
        f.write_all(bytes)?;
        Ok(held)
    }

    /// Gives the file its name; an error of kind `AlreadyExists` if the name is taken.
    pub fn link(&self, dir: &Path, name: &str) -> io::Result<()> {
        let target = dir.join(name);
        match &self.0 {
            #[cfg(target_os = "linux")]
            Held::Open(f) => link_open(f, &target),
            Held::Hidden(tmp) => fs::hard_link(tmp, &target),
        }
    }
}

impl Drop for Unnamed {
    fn drop(&mut self) {
        if let Held::Hidden(tmp) = &self.0 {
            let _ = fs::remove_file(tmp);
        }
    }
}

/// Writes the store's own file `name` again, replacing what is there (a file cut short by a power
/// cut, say); for the start-up repair and a redelivery whose file went missing.
pub fn write_view(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    write_via_temporary(dir, name, bytes, None)
}

#[cfg(target_os = "linux")]
fn proc_fd_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| Path::new("/proc/self/fd").is_dir())
}

#[cfg(target_os = "linux")]
fn write_unnamed(dir: &Path, bytes: &[u8]) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)?;
    f.write_all(bytes)?;
    Ok(f)
}

#[cfg(target_os = "linux")]
fn link_open(f: &fs::File, target: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::io::AsRawFd;

    let fd_path = CString::new(format!("/proc/self/fd/{}", f.as_raw_fd()))?;
    let target = CString::new(target.as_os_str().as_bytes())?;
    // SAFETY: both paths are valid NUL-terminated strings that outlive the call; linkat reads
    // them and touches no other memory of ours.
    let linked = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            fd_path.as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if linked == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// As [`write_view`], with the file's modification time set to `modified` (the time of the last
/// change the file shows), so a later check can tell whether it missed one.
pub fn write_view_dated(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    modified: SystemTime,
) -> io::Result<()> {
    write_via_temporary(dir, name, bytes, Some(modified))
}

fn write_via_temporary(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    modified: Option<SystemTime>,
) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = write_file(&tmp, bytes, modified).and_then(|()| fs::rename(&tmp, dir.join(name)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_file(path: &Path, bytes: &[u8], modified: Option<SystemTime>) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    f.write_all(bytes)?;
    if let Some(t) = modified {
        f.set_modified(t)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_new(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
        Unnamed::write(dir, bytes)?.link(dir, name)
    }

    #[test]
    fn names_cannot_leave_the_folder() {
        assert_eq!(sanitize("../../etc/passwd"), "___.._etc_passwd");
        assert_eq!(sanitize("..."), "___");
        assert_eq!(sanitize("a..b."), "a..b.");
        assert_eq!(sanitize(".."), "__");
        assert_eq!(sanitize("."), "_");
        assert_eq!(sanitize("a\\b\0c"), "a_b_c");
        assert_eq!(sanitize("$(touch x)"), "__touch_x_");
        assert_eq!(sanitize("Ünï"), "_n_");
        assert_eq!(stem(None, "P-1", "OPEN"), "P-1-OPEN");
        assert_eq!(
            stem(Some("alertmanager"), "ab/c", "firing"),
            "alertmanager-ab_c-firing"
        );
        let names: Vec<String> = (1..=3).map(|n| candidate("P-1-OPEN", n)).collect();
        assert!(names.iter().all(|n| stem_of(n) == "P-1-OPEN"));
        assert_eq!(stem_of("v1.2.3-OPEN.json"), "v1.2.3-OPEN");
        assert_eq!(
            names,
            ["P-1-OPEN.json", "P-1-OPEN.2.json", "P-1-OPEN.3.json"]
        );
    }

    #[test]
    fn long_ids_make_names_that_fit_and_stay_apart() {
        let long = "x".repeat(300);
        let a = stem(Some("ucloud"), &format!("{long}a"), "OPEN");
        let b = stem(Some("ucloud"), &format!("{long}b"), "OPEN");
        assert_eq!(a.len(), MAX_STEM);
        assert_ne!(a, b);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)));
        let name = candidate(&a, 4_000_000_000);
        assert!(format!(".{name}.tmp").len() <= 255, "{}", name.len());
        let dir = tempfile::tempdir().unwrap();
        write_new(dir.path(), &name, b"{}").unwrap();
        assert_eq!(
            stem(None, "P-1", "OPEN"),
            "P-1-OPEN",
            "short ids keep the sample's names"
        );
    }

    #[test]
    fn a_new_file_never_replaces_one_already_there() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("P-1-OPEN.json"), b"left by the sample").unwrap();
        let e = write_new(dir.path(), "P-1-OPEN.json", b"{}").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(
            fs::read(dir.path().join("P-1-OPEN.json")).unwrap(),
            b"left by the sample"
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    #[test]
    fn writes_whole_files_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        write_view(dir.path(), "a.json", b"{\"x\":1}").unwrap();
        write_view(dir.path(), "a.json", b"{\"x\":2}").unwrap();
        assert_eq!(fs::read(dir.path().join("a.json")).unwrap(), b"{\"x\":2}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        write_view(dir.path(), "b.json", b"{}").unwrap();
        assert_eq!(fs::read(dir.path().join("b.json")).unwrap(), b"{}");
        write_new(dir.path(), "c.json", b"[]").unwrap();
        assert_eq!(fs::read(dir.path().join("c.json")).unwrap(), b"[]");
        fs::remove_file(dir.path().join("c.json")).unwrap();
        // Written but never named (a commit that failed): nothing is left in the folder.
        drop(Unnamed::write(dir.path(), b"{}").unwrap());
        // A name already taken (a file put there by hand) is replaced whole.
        write_view(dir.path(), "b.json", b"{\"y\":1}").unwrap();
        assert_eq!(fs::read(dir.path().join("b.json")).unwrap(), b"{\"y\":1}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
