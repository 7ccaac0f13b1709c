//! Credentials a request presents, compared in constant time: HTTP Basic and bearer-style tokens.
//! Used by every source's gate and by the status page; no HTTP framework here.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::secret::Secret;

/// The credentials a request must carry. Kept as SHA-256 digests, so that comparing them takes the
/// same time whatever was sent, its length included.
#[derive(Clone)]
pub struct BasicAuth {
    user: [u8; 32],
    password: [u8; 32],
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BasicAuth(***)")
    }
}

impl BasicAuth {
    pub fn new(username: &str, password: &Secret) -> Self {
        BasicAuth {
            user: Sha256::digest(username.as_bytes()).into(),
            password: Sha256::digest(password.expose().as_bytes()).into(),
        }
    }

    pub fn allows(&self, presented: &Presented) -> bool {
        let Some((user, password)) = &presented.0 else {
            return false;
        };
        let user_ok = Sha256::digest(user.as_bytes()).ct_eq(&self.user);
        let password_ok = Sha256::digest(password.as_bytes()).ct_eq(&self.password);
        (user_ok & password_ok).into()
    }
}

/// The Basic credentials a request presented, if it presented readable ones.
pub struct Presented(Option<(String, String)>);

impl Presented {
    /// The user name and password, when the request presented readable ones.
    pub fn pair(&self) -> Option<(&str, &str)> {
        self.0.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// Reads an `Authorization` header's value.
    pub fn parse(header: Option<&str>) -> Presented {
        let parsed = header.and_then(|h| {
            let (scheme, encoded) = h.trim().split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("basic") {
                return None;
            }
            let decoded = STANDARD.decode(encoded.trim()).ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (user, password) = text.split_once(':')?;
            Some((user.to_string(), password.to_string()))
        });
        Presented(parsed)
    }
}

/// Compares a presented token with the expected one in constant time (digests, so length does not
/// leak either).
pub fn token_matches(presented: Option<&str>, expected: &Secret) -> bool {
    let Some(presented) = presented else {
        return false;
    };
    let a = Sha256::digest(presented.trim().as_bytes());
    let b = Sha256::digest(expected.expose().as_bytes());
    a.ct_eq(&b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user_pass: &str) -> String {
        format!("Basic {}", STANDARD.encode(user_pass))
    }

    #[test]
    fn accepts_only_the_exact_pair() {
        let auth = BasicAuth::new("dynatrace", &Secret::new("pw:with:colons"));
        let ok = header("dynatrace:pw:with:colons");
        assert!(auth.allows(&Presented::parse(Some(&ok))));
        assert!(auth.allows(&Presented::parse(Some(&ok.replace("Basic", "basic")))));
        for bad in [
            header("dynatrace:pw"),
            header("Dynatrace:pw:with:colons"),
            header("dynatrace"),
            header(":"),
            "Basic !!!notbase64".to_string(),
            "Bearer abc".to_string(),
            format!("Basic {}", STANDARD.encode([0xff, b':', 0xfe])),
            String::new(),
        ] {
            assert!(!auth.allows(&Presented::parse(Some(&bad))), "{bad}");
        }
        assert!(!auth.allows(&Presented::parse(None)));
    }
}
