//! `webhook`: POSTs the problem as JSON (or a template's output), signed per Standard Webhooks.
//!
//! `webhook-id` is the run's id, the same on every retry, so the receiver can drop a repeat;
//! `webhook-signature` is `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">` under the `whsec_` key.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use super::{Action, ActionError, ActionType, BuildContext, BuildError, Job, Outcome};
use super::{ReadContext, RunFuture};
use crate::keys::{check_url, secret, Env, Issues, Section};
use crate::secret::Secret;
use crate::template::{check_json, Template};

/// `type: "webhook"`: `url`, `secret` (or `secret_env`, a `whsec_` key), optional `template`,
/// `timeout_secs` and `thread_pointer`.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: Secret,
    pub template: Option<String>,
    pub timeout_secs: u64,
    /// A JSON pointer (`/id`) into the receiver's answer: the value there is the problem's thread.
    pub thread_pointer: Option<String>,
}

impl ActionType for WebhookConfig {
    const TYPE: &'static str = "webhook";

    fn read(s: &mut Section, ctx: &ReadContext, issues: &mut Issues) -> Option<Self> {
        Some(read_webhook(s, ctx.env, issues))
    }

    fn build(&self, ctx: &BuildContext) -> Result<Arc<dyn Action>, BuildError> {
        Ok(Arc::new(Webhook::new(self, ctx.http.clone())?))
    }
}

fn read_webhook(s: &mut Section, env: &Env, issues: &mut Issues) -> WebhookConfig {
    let url = s.string("url", issues).unwrap_or_default();
    check_url(&s.path_of("url"), &url, issues);
    let secret = secret(s, "secret", "secret_env", env, issues);
    if let Err(e) = Signer::new(&secret) {
        issues.push(s.path_of("secret"), e.to_string());
    }
    let template = s.string("template", issues);
    if let Some(t) = &template {
        check_json_template(&s.path_of("template"), t, issues);
    }
    let timeout_secs = s.integer("timeout_secs", 1, 600, issues).unwrap_or(15);
    let thread_pointer = s.string("thread_pointer", issues);
    if let Some(p) = &thread_pointer {
        if !p.starts_with('/') {
            issues.push(
                s.path_of("thread_pointer"),
                format!("{p:?} is not a JSON pointer: it starts with / (for example \"/id\")"),
            );
        }
    }
    WebhookConfig {
        url,
        secret,
        template,
        timeout_secs,
        thread_pointer,
    }
}

/// A body template must compile and, rendered for a sample problem, make a JSON document: a
/// template that cannot is wrong for every problem, so it is found at load, not at the first page.
/// (A template that cannot render for the sample, say one reading the details, is left to its runs.)
fn check_json_template(path: &str, source: &str, issues: &mut Issues) {
    let template = match Template::json(source) {
        Ok(t) => t,
        Err(e) => return issues.push(path, format!("bad template: {e}")),
    };
    let problem = super::Problem::sample();
    let job = Job {
        run_id: "run_sample".to_string(),
        attempt: 1,
        problem: &problem,
        target: super::Target::whole(),
        reports: Vec::new(),
        thread: None,
        escalated: None,
        group: None,
        trace: None,
    };
    if let Ok(body) = template.render(&job.template_data()) {
        if let Err(e) = check_json(&body) {
            issues.push(
                path,
                format!("the template does not make JSON (rendered for a sample problem): {e}"),
            );
        }
    }
}

const SECRET_PREFIX: &str = "whsec_";

/// Signs messages with a Standard Webhooks secret.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

/// Why a webhook secret cannot sign (the secret itself is never part of the message).
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("expected a Standard Webhooks secret starting with whsec_")]
    Prefix,
    #[error("the part after whsec_ is not valid base64")]
    Base64(#[source] base64::DecodeError),
    #[error("the key is too short: use at least 16 random bytes (24 or 32 is usual)")]
    TooShort,
}

impl Signer {
    pub fn new(secret: &Secret) -> Result<Signer, SecretError> {
        let Some(encoded) = secret.expose().strip_prefix(SECRET_PREFIX) else {
            return Err(SecretError::Prefix);
        };
        let key = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(SecretError::Base64)?;
        if key.len() < 16 {
            return Err(SecretError::TooShort);
        }
        Ok(Signer { key })
    }

    /// The `webhook-signature` header value.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let timestamp = timestamp.to_string();
        let mac = crate::secret::hmac_sha256(
            &self.key,
            &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
        );
        let sig = base64::engine::general_purpose::STANDARD.encode(mac);
        format!("v1,{sig}")
    }
}

pub struct Webhook {
    url: String,
    signer: Signer,
    template: Option<Template>,
    timeout: Duration,
    thread_pointer: Option<String>,
    http: reqwest::Client,
}

impl Webhook {
    pub fn new(c: &WebhookConfig, http: reqwest::Client) -> Result<Webhook, BuildError> {
        Ok(Webhook {
            url: c.url.clone(),
            signer: Signer::new(&c.secret)?,
            template: c.template.as_deref().map(Template::json).transpose()?,
            timeout: Duration::from_secs(c.timeout_secs),
            thread_pointer: c.thread_pointer.clone(),
            http,
        })
    }

    fn body(&self, job: &Job) -> Result<Vec<u8>, ActionError> {
        match &self.template {
            Some(t) => {
                let body = t
                    .render(&job.template_data())
                    .map_err(|e| ActionError::permanent(format!("cannot render the body: {e}")))?;
                // Checked before it is signed: a receiver must never get a signed body that is
                // not the JSON the template was meant to make (a `| safe` value can still break it).
                check_json(&body).map_err(|e| {
                    ActionError::permanent(format!("the template made a body that is not JSON: {e}"))
                })?;
                Ok(body.into_bytes())
            }
            None => {
                let p = job.problem;
                let mut doc = json!({
                    "type": format!("problem.{}", p.state.to_lowercase()),
                    "timestamp": crate::clock::rfc3339(crate::clock::now_ms()),
                    "thread_ref": job.thread_ref(),
                    "data": p,
                });
                // A group's send: the group, with its members, beside its problem.
                if let Some(g) = &job.group {
                    doc["group"] = g.json();
                }
                serde_json::to_vec(&doc).map_err(|e| ActionError::permanent(e.to_string()))
            }
        }
    }

    async fn post(&self, job: &Job<'_>) -> Result<Outcome, ActionError> {
        let body = self.body(job)?;
        let timestamp = crate::clock::now_ms() / 1000;
        let signature = self.signer.sign(&job.run_id, timestamp, &body);
        let request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("webhook-id", &job.run_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .timeout(self.timeout)
            .body(body);
        let request = super::http::traced(request, job.trace.as_deref());
        let answer = super::http::send(request, "the receiver").await?;
        let status = answer.status;
        let detail = json!({"http_status": status, "response": answer.shown()});
        if !answer.is_success() {
            return Err(answer.error(format!("the receiver answered {status}"), detail));
        }
        let thread = self
            .thread_pointer
            .as_deref()
            .and_then(|p| answered_ref(&answer.text, p));
        Ok(Outcome::new(format!("delivered ({status})"), detail).with_thread(thread))
    }
}

/// The receiver's value at `pointer` in its JSON answer, as the problem's thread (a string or a
/// number; a URL becomes the thread's link).
fn answered_ref(answer: &str, pointer: &str) -> Option<super::ThreadRef> {
    let doc: Value = serde_json::from_str(answer).ok()?;
    let reference = match doc.pointer(pointer)? {
        Value::String(s) if !s.is_empty() && s.len() <= 1024 => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let url = (reference.starts_with("https://") || reference.starts_with("http://"))
        .then(|| reference.clone());
    Some(super::ThreadRef { reference, url })
}

impl Action for Webhook {
    fn keeps_thread(&self) -> bool {
        self.thread_pointer.is_some()
    }

    fn run<'a>(&'a self, job: &'a Job<'a>) -> RunFuture<'a> {
        Box::pin(self.post(job))
    }

    fn explain(&self, job: &Job) -> Value {
        let body = self
            .body(job)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("(error: {e})"));
        json!({
            "url": super::redact_url(&self.url),
            "headers": {"webhook-id": job.run_id, "webhook-timestamp": "(time of sending)",
                        "webhook-signature": "v1,(HMAC-SHA256 of id.timestamp.body)"},
            "body": body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_is_read_at_the_pointer() {
        let t = answered_ref(r#"{"ticket": {"id": 42, "url": "https://t.example/42"}}"#, "/ticket/id");
        assert_eq!(t.map(|t| t.reference), Some("42".into()));
        let t = answered_ref(r#"{"ticket": {"url": "https://t.example/42"}}"#, "/ticket/url").unwrap();
        assert_eq!(t.url.as_deref(), Some("https://t.example/42"));
        assert!(answered_ref("not json", "/id").is_none());
        assert!(answered_ref(r#"{"id": {"nested": 1}}"#, "/id").is_none());
        assert!(answered_ref(r#"{"id": ""}"#, "/id").is_none());
    }

    /// The published Standard Webhooks test vector.
    #[test]
    fn signs_the_standard_vector() {
        let signer = Signer::new(&Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).unwrap();
        assert_eq!(
            signer.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn rejects_bad_secrets() {
        for bad in [
            "",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_!!!",
            "whsec_YWJj",
        ] {
            assert!(Signer::new(&Secret::new(bad)).is_err(), "{bad}");
        }
    }
}
