//! Apache CloudStack's webhooks (CS-Hookshot): HMAC-signed events, deduplicated by event id.
//!
//! CloudStack tries a delivery three times back to back and counts only exactly 200 as success, so
//! the event id (`X-CS-Event-ID`) is the identity: a retry is answered 200 and stored once.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use std::sync::Arc;

use super::{digest_id, object, text, Gate, Headers, ParseError, Refusal, Source, SourcePlugin};
use super::MAX_KEY_LEN;
use crate::keys::{Issues, Section};
use crate::keys::{secret, Env};
use crate::domain::{Entity, Facts, Notification};
use crate::secret::Secret;

pub const PATHS: &[&str] = &["/hooks/cloudstack"];

pub(super) fn read(headers: &Headers, body: &[u8]) -> Result<Vec<Notification>, ParseError> {
    parse(headers, body).map(|n| vec![n])
}

/// `secret` (or `secret_env`): the webhook's secret key; when set, deliveries must be signed.
pub(super) fn build(gate: Gate, s: &mut Section, env: &Env, issues: &mut Issues) -> Arc<dyn SourcePlugin> {
    let secret = secret(s, "secret", "secret_env", env, issues);
    Arc::new(Cloudstack {
        gate,
        secret: Some(secret).filter(|s| !s.is_empty()),
    })
}

#[derive(Debug)]
struct Cloudstack {
    gate: Gate,
    secret: Option<Secret>,
}

impl SourcePlugin for Cloudstack {
    fn source(&self) -> Source {
        Source::Cloudstack
    }

    fn gate(&self) -> &Gate {
        &self.gate
    }

    fn verify(&self, headers: &Headers, body: &[u8]) -> Result<(), Refusal> {
        match &self.secret {
            Some(secret) => verify(secret, headers, body).map_err(|e| Refusal::Unauthorized {
                scheme: "HMAC",
                detail: e.to_string(),
            }),
            None => Ok(()),
        }
    }
}
#[cfg(test)]
use serde_json::Value;

/// Why a signed delivery is refused (401).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("missing X-CS-Signature header (this source is configured with a secret)")]
    Missing,
    #[error("X-CS-Signature does not match the body")]
    Mismatch,
}

/// Checks `X-CS-Signature`: the standard Base64 HMAC-SHA256 of the exact body bytes.
pub fn verify(secret: &Secret, headers: &Headers, body: &[u8]) -> Result<(), SignatureError> {
    let presented = headers
        .get("X-CS-Signature")
        .ok_or(SignatureError::Missing)?;
    let presented = base64::engine::general_purpose::STANDARD
        .decode(presented.trim())
        .map_err(|_| SignatureError::Mismatch)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .map_err(|_| SignatureError::Mismatch)?;
    mac.update(body);
    // verify_slice compares in constant time.
    mac.verify_slice(&presented)
        .map_err(|_| SignatureError::Mismatch)
}

pub fn parse(headers: &Headers, body: &[u8]) -> Result<Notification, ParseError> {
    let obj = object(body, "a CloudStack event")?;
    let event_id = headers
        .get("X-CS-Event-ID")
        .map(str::to_string)
        .filter(|id| !id.trim().is_empty());
    if event_id
        .as_ref()
        .is_some_and(|id| id.chars().count() > MAX_KEY_LEN)
    {
        return Err(ParseError::Invalid(format!(
            "X-CS-Event-ID is longer than {MAX_KEY_LEN} characters"
        )));
    }
    let event = headers
        .get("X-CS-Event")
        .map(str::to_string)
        .unwrap_or_else(|| text(&obj, "event"));
    let account = headers
        .get("User-Agent")
        .and_then(|ua| ua.strip_prefix("CS-Hookshot/"))
        .map(str::to_string)
        .unwrap_or_else(|| text(&obj, "account"));
    let status = text(&obj, "status");
    let state = if status.is_empty() {
        "EVENT".to_string()
    } else {
        status.to_uppercase().chars().take(40).collect()
    };
    let description = text(&obj, "description");
    let title = [description, event.clone()]
        .into_iter()
        .find(|t| !t.is_empty())
        .unwrap_or_else(|| "CloudStack event".to_string());
    let entity_id = text(&obj, "entityuuid");
    let entities = if entity_id.is_empty() {
        Vec::new()
    } else {
        vec![Entity::named(&entity_id, &text(&obj, "entity"))]
    };
    let tags = [("event", &event), ("account", &account)]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}:{v}"))
        .collect();
    let key = event_id.clone().unwrap_or_else(|| digest_id(body));
    Ok(Notification {
        source: Source::Cloudstack,
        problem_key: key,
        state,
        pid: None,
        title: Some(title.clone()),
        is_test: false,
        body: body.to_vec(),
        facts: Facts {
            title,
            severity: String::new(),
            impact: String::new(),
            tags,
            url: None,
            entities,
        },
        identity: event_id.map(String::into_bytes),
        trace: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_signature_vectors_verify() {
        let vectors: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/cloudstack/signature-vectors.json"
        ))
        .unwrap();
        for v in vectors.as_array().unwrap() {
            let secret = Secret::new(v["secret"].as_str().unwrap());
            let body = v["body"].as_str().unwrap().as_bytes();
            let sig = v["x_cs_signature"].as_str().unwrap();
            let headers = Headers(vec![("x-cs-signature".into(), sig.into())]);
            assert_eq!(verify(&secret, &headers, body), Ok(()), "{}", v["name"]);
            let mut tampered = body.to_vec();
            tampered.push(b' ');
            assert_eq!(
                verify(&secret, &headers, &tampered),
                Err(SignatureError::Mismatch)
            );
        }
        assert_eq!(
            verify(&Secret::new("s"), &Headers::default(), b"x"),
            Err(SignatureError::Missing)
        );
    }
}
