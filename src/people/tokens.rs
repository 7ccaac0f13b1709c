//! API tokens: `hub_<id>_<secret>`. The id is public (lists, the audit log, revocation); the
//! secret is 256 random bits shown once, and only its SHA-256 is stored. A slow hash adds nothing
//! for a secret that long (nobody can guess it), and a fast one keeps every API call cheap.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const PREFIX: &str = "hub_";

/// A new token: its id, the whole token to hand out once, and the digest to store.
pub struct Minted {
    pub id: String,
    pub token: String,
    pub digest: String,
}

pub fn mint() -> Minted {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
    let (id, secret) = (crate::secret::hex(&id), crate::secret::hex(&secret));
    Minted {
        token: format!("{PREFIX}{id}_{secret}"),
        digest: digest(&secret),
        id,
    }
}

/// The id and secret of a presented token; `None` for anything not shaped as one.
pub fn split(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.trim().strip_prefix(PREFIX)?.split_once('_')?;
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, 16) && hex(secret, 64)).then_some((id, secret))
}

pub fn digest(secret: &str) -> String {
    crate::secret::hex(&Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` is the one whose digest was stored, in constant time.
pub fn matches(secret: &str, stored_digest: &str) -> bool {
    digest(secret)
        .as_bytes()
        .ct_eq(stored_digest.as_bytes())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_token_splits_and_matches() {
        let m = mint();
        let (id, secret) = split(&m.token).unwrap();
        assert_eq!(id, m.id);
        assert!(matches(secret, &m.digest));
        assert!(!matches(
            &secret.replace('a', "b").replace('0', "1"),
            &m.digest
        ));
        assert_ne!(mint().id, m.id);
    }

    #[test]
    fn garbage_is_no_token() {
        for bad in [
            "",
            "hub_",
            "hub_abc_def",
            "xyz_0123456789abcdef_00",
            "hub_../../etc_passwd",
            &format!("hub_0123456789abcdef_{}", "g".repeat(64)),
        ] {
            assert!(split(bad).is_none(), "{bad}");
        }
    }
}
