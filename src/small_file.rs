//! Files the configuration names (a TLS certificate and key, a CA, a time zone), read with a size
//! cap: such a file is a few kilobytes, and a path mistyped or made hostile (`/dev/zero`, a
//! megabyte log) must be a clear error, not an unbounded read that ends in an allocation abort.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The largest file read: a certificate chain or a CA bundle is tens of kilobytes.
pub const MAX_BYTES: u64 = 1024 * 1024;

/// The whole of the file at `path`, if it is at most [`MAX_BYTES`].
pub fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    // Non-blocking, so a FIFO with no writer reads as empty instead of hanging the check.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(std::io::Error::new(
            ErrorKind::FileTooLarge,
            format!(
                "larger than {} MiB, which no certificate, key or time zone file is",
                MAX_BYTES / (1024 * 1024)
            ),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_file_is_refused_and_a_small_one_read() {
        let e = read(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::FileTooLarge);
        assert!(e.to_string().contains("larger than 1 MiB"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small.pem");
        std::fs::write(&small, "x".repeat(MAX_BYTES as usize)).unwrap();
        assert_eq!(read(&small).unwrap().len() as u64, MAX_BYTES);
    }
}
