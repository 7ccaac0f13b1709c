//! Passwords: argon2id hashes in the PHC string format (`$argon2id$v=19$m=…`), made and checked
//! with the RustCrypto `argon2` crate at its defaults (OWASP's minimum: 19 MiB, two passes). A
//! check takes tens of milliseconds on purpose, so a browser that sends Basic credentials with
//! every request would pay that each time: a successful check is remembered for a few minutes,
//! keyed by a digest of the hash and the password, never by the password itself.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};

/// A hash of a random password nobody knows, checked when the user is unknown or has no
/// password, so that a failed login costs the same time whichever part was wrong. Made once, at
/// the same cost settings as every other hash.
fn dummy() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut unknown = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut unknown);
        hash(&crate::secret::hex(&unknown)).unwrap_or_default()
    })
}

/// Hashes a password for the config's `password_hash`.
pub fn hash(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Whether `text` is a PHC string argon2 can check (what `check-config` asks of `password_hash`).
pub fn readable(text: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(text).map_err(|e| e.to_string())?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        return Err(format!(
            "{} is not an argon2 hash; make one with `hub hash-password`",
            parsed.algorithm
        ));
    }
    Ok(())
}

/// Checks `password` against `hash` (the dummy hash when there is none), always at full cost.
pub fn verify(hash: Option<&str>, password: &str) -> bool {
    let real = hash.and_then(|h| PasswordHash::new(h).ok());
    let dummy = PasswordHash::new(dummy());
    let matched = match (&real, &dummy) {
        (Some(h), _) => Argon2::default()
            .verify_password(password.as_bytes(), h)
            .is_ok(),
        (None, Ok(d)) => {
            let _ = Argon2::default().verify_password(password.as_bytes(), d);
            false
        }
        (None, Err(_)) => false,
    };
    matched && real.is_some()
}

/// How long a successful check is remembered.
const REMEMBER: Duration = Duration::from_secs(300);
/// At most this many remembered checks; the oldest go first.
const CAP: usize = 1024;

/// Successful checks of the last few minutes. A failed check is never remembered, so every wrong
/// guess pays the full cost.
#[derive(Default)]
pub struct Remembered(Mutex<HashMap<[u8; 32], Instant>>);

impl Remembered {
    fn key(hash: &str, password: &str) -> [u8; 32] {
        let mut d = Sha256::new();
        d.update(hash.as_bytes());
        d.update([0]);
        d.update(password.as_bytes());
        d.finalize().into()
    }

    pub fn knows(&self, hash: &str, password: &str) -> bool {
        let key = Remembered::key(hash, password);
        let Ok(map) = self.0.lock() else { return false };
        map.get(&key).is_some_and(|at| at.elapsed() < REMEMBER)
    }

    pub fn remember(&self, hash: &str, password: &str) {
        let key = Remembered::key(hash, password);
        let Ok(mut map) = self.0.lock() else { return };
        if map.len() >= CAP {
            map.retain(|_, at| at.elapsed() < REMEMBER);
            if map.len() >= CAP {
                if let Some(oldest) = map.iter().min_by_key(|(_, at)| **at).map(|(k, _)| *k) {
                    map.remove(&oldest);
                }
            }
        }
        map.insert(key, Instant::now());
    }

    /// Forgets everything (a reload may have changed a password).
    pub fn clear(&self) {
        if let Ok(mut map) = self.0.lock() {
            map.clear();
        }
    }
}

/// What `hub hash-password` reads: standard input with one trailing new line dropped (what
/// `echo` and a terminal add), nothing else changed.
pub fn from_input(mut text: String) -> Result<String, String> {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.is_empty() {
        return Err(
            "the password is empty: type it, or pipe it in (printf %s \"$PW\" | hub hash-password)"
                .into(),
        );
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_checks_its_password_only() {
        let h = hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        readable(&h).unwrap();
        assert!(verify(Some(&h), "correct horse"));
        assert!(!verify(Some(&h), "correct horse "));
        assert!(!verify(None, "correct horse"));
        assert!(!verify(Some("not a hash"), "x"));
        assert!(PasswordHash::new(dummy()).is_ok());
    }

    #[test]
    fn input_loses_one_new_line() {
        assert_eq!(from_input("pw\n".into()).unwrap(), "pw");
        assert_eq!(from_input("pw\r\n".into()).unwrap(), "pw");
        assert_eq!(from_input("pw\n\n".into()).unwrap(), "pw\n");
        assert_eq!(from_input(" pw ".into()).unwrap(), " pw ");
        assert!(from_input("\n".into()).is_err());
    }

    #[test]
    fn not_argon2_is_refused() {
        assert!(readable("$2b$12$abcdefghijklmnopqrstuv").is_err());
        assert!(readable("secret").is_err());
    }

    #[test]
    fn remembered_checks() {
        let r = Remembered::default();
        assert!(!r.knows("h", "p"));
        r.remember("h", "p");
        assert!(r.knows("h", "p"));
        assert!(!r.knows("h", "q"));
        r.clear();
        assert!(!r.knows("h", "p"));
    }
}
