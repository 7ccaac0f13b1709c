//! Escalation: a page climbs a policy's steps until someone acknowledges. The dispatcher moves
//! escalations on (`dispatch::escalate`); this module holds what the ways of acknowledging share:
//! the policies, the signed links, the reply codes, and acknowledging itself.

pub mod ack;
pub mod config;
pub mod inbound;
pub mod tell;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use subtle::ConstantTimeEq;

pub use config::{EscalationConfig, Policy, Recipient, Step};

/// The name of the key acknowledgement links are signed with, made once per store.
pub const LINK_KEY: &str = "ack_links";

/// A fresh random key for [`LINK_KEY`], hex.
pub fn fresh_key() -> String {
    let mut key = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut key);
    crate::secret::hex(&key)
}

/// A six-digit code a person texts back; random, so one escalation's code says nothing of
/// another's.
pub fn fresh_code() -> String {
    let n = rand_core::RngCore::next_u32(&mut rand_core::OsRng) % 1_000_000;
    format!("{n:06}")
}

/// A fresh code no running escalation has: a reply must name one escalation only (with a
/// thousand open, one new code in two thousand would otherwise repeat one).
pub async fn unused_code(store: &crate::store::Store) -> Result<String, crate::store::StoreError> {
    let mut code = fresh_code();
    for _ in 0..8 {
        if store.escalation_by_code(&code).await?.is_none() {
            break;
        }
        code = fresh_code();
    }
    Ok(code)
}

/// What a link acknowledges: one escalation, in one person's name, until a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub escalation_id: i64,
    pub person: String,
    pub expires_ms: i64,
}

/// Why a link acknowledges nothing; every case is answered alike, so a guess learns nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this link is not one hub made")]
    Forged,
    #[error("this link has expired")]
    Expired,
}

impl Link {
    /// `<payload>.<signature>`, both URL-safe: the payload is readable, the signature (HMAC-SHA256
    /// with the store's shared key) makes it unforgeable.
    pub fn sign(&self, key: &str) -> String {
        let payload = URL_SAFE_NO_PAD.encode(format!(
            "{}:{}:{}",
            self.escalation_id, self.expires_ms, self.person
        ));
        let mac =
            crate::secret::hmac_sha256(key.as_bytes(), &[b"hub ack link", payload.as_bytes()]);
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(mac))
    }

    pub fn verify(token: &str, key: &str, now_ms: i64) -> Result<Link, LinkError> {
        let (payload, mac) = token.split_once('.').ok_or(LinkError::Forged)?;
        let want =
            crate::secret::hmac_sha256(key.as_bytes(), &[b"hub ack link", payload.as_bytes()]);
        let given = URL_SAFE_NO_PAD.decode(mac).map_err(|_| LinkError::Forged)?;
        if !bool::from(given.ct_eq(&want)) {
            return Err(LinkError::Forged);
        }
        let text = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or(LinkError::Forged)?;
        let mut parts = text.splitn(3, ':');
        let (Some(id), Some(expires), Some(person)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(LinkError::Forged);
        };
        let link = Link {
            escalation_id: id.parse().map_err(|_| LinkError::Forged)?,
            expires_ms: expires.parse().map_err(|_| LinkError::Forged)?,
            person: person.to_string(),
        };
        if now_ms >= link.expires_ms {
            return Err(LinkError::Expired);
        }
        Ok(link)
    }
}

/// What a person texted back, as a code: the code alone, or after `ACK` (any case), with
/// blanks and punctuation around it ignored.
pub fn code_in(body: &str) -> Option<String> {
    let words: Vec<&str> = body
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '.' | ':' | '!'))
        .filter(|w| !w.is_empty())
        .collect();
    let code = match words.as_slice() {
        [code] => code,
        [ack, code] if ack.eq_ignore_ascii_case("ack") => code,
        _ => return None,
    };
    (code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit())).then(|| code.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_its_own_and_ends() {
        let link = Link {
            escalation_id: 7,
            person: "ana".into(),
            expires_ms: 1_000,
        };
        let token = link.sign("k");
        assert_eq!(Link::verify(&token, "k", 999), Ok(link.clone()));
        assert_eq!(Link::verify(&token, "k", 1_000), Err(LinkError::Expired));
        assert_eq!(Link::verify(&token, "other", 0), Err(LinkError::Forged));
        // Another escalation's id in a copied signature.
        let other = Link {
            escalation_id: 8,
            ..link
        }
        .sign("k");
        let spliced = format!(
            "{}.{}",
            other.split('.').next().unwrap(),
            token.split('.').nth(1).unwrap()
        );
        assert_eq!(Link::verify(&spliced, "k", 0), Err(LinkError::Forged));
        for bad in ["", ".", "abc", "../x.y", "$(touch x).zz"] {
            assert_eq!(Link::verify(bad, "k", 0), Err(LinkError::Forged), "{bad}");
        }
    }

    #[test]
    fn codes_as_people_text_them() {
        assert_eq!(code_in("123456").as_deref(), Some("123456"));
        assert_eq!(code_in(" ack 123456 ").as_deref(), Some("123456"));
        assert_eq!(code_in("ACK: 123456!").as_deref(), Some("123456"));
        for bad in [
            "",
            "ack",
            "12345",
            "1234567",
            "yes 123456",
            "ack 123456 now",
            "abcdef",
        ] {
            assert_eq!(code_in(bad), None, "{bad}");
        }
        let c = fresh_code();
        assert!(c.len() == 6 && c.bytes().all(|b| b.is_ascii_digit()));
    }
}
