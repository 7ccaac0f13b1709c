//! HTTP Basic authentication, compared in constant time.

use std::convert::Infallible;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rocket::request::{FromRequest, Outcome, Request};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::secret::Secret;

/// The credentials a request must carry. Kept as SHA-256 digests, so that comparing them takes the
/// same time whatever was sent, its length included.
pub struct BasicAuth {
    user: [u8; 32],
    password: [u8; 32],
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

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Presented {
    type Error = Infallible;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Infallible> {
        Outcome::Success(Presented::parse(req.headers().get_one("Authorization")))
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

/// Checks a request against a source's configured auth; `Err` carries the challenge scheme.
pub fn check_source_auth(
    auth: &crate::config::SourceAuth,
    headers: &crate::sources::Headers,
) -> Result<(), &'static str> {
    use crate::config::SourceAuth;
    let authorization = headers.get("Authorization");
    let ok = match auth {
        SourceAuth::None => true,
        SourceAuth::Bearer(token) => {
            let presented = authorization.and_then(|h| {
                let (scheme, value) = h.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(value)
            });
            token_matches(presented, token)
        }
        SourceAuth::Basic { username, password } => {
            BasicAuth::new(username, password).allows(&Presented::parse(authorization))
        }
        SourceAuth::Token(token) => token_matches(headers.get("X-Auth-Token"), token),
    };
    match (ok, auth) {
        (true, _) => Ok(()),
        (false, SourceAuth::Basic { .. }) => Err("Basic"),
        (false, SourceAuth::Token(_)) => Err("X-Auth-Token"),
        (false, _) => Err("Bearer"),
    }
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
