//! The Dynatrace Problems API client: v2 by default, v1 for old Managed clusters.
//!
//! Every call goes through one retry loop under hub's one policy (`crate::retry`): connection
//! errors, timeouts, 408, 425, 429 and 5xx are retried with backoff and jitter (waiting as long as
//! `Retry-After` or `X-RateLimit-Reset` asks, within a cap); any other answer fails at once with
//! Dynatrace's own message.

pub mod config;
pub mod problem;
pub mod window;

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde_json::{json, Value};

use crate::secret::Secret;
use config::DynatraceConfig;
pub use window::{UnknownWindow, Window};

/// Tries a paged feed at most this many pages, so a server that never stops cannot hold hub.
const MAX_PAGES: u32 = 100;
const PAGE_SIZE: &str = "500";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    V1,
    V2,
}

#[derive(Debug, thiserror::Error)]
pub enum DynatraceError {
    #[error("Dynatrace answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("cannot reach Dynatrace: {0}")]
    Transport(String),
    #[error("Dynatrace did not answer within {0} s")]
    Timeout(u64),
    #[error("unexpected answer from Dynatrace: {0}")]
    Decode(String),
    #[error("Dynatrace kept sending pages; stopped after {0}")]
    TooManyPages(u32),
    #[error("dynatrace.tenant is not a usable URL: {0}")]
    BadTenant(String),
}

impl DynatraceError {
    /// Whether trying again later can succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            DynatraceError::Status { status, .. } => crate::retry::transient_status(*status),
            DynatraceError::Transport(_) | DynatraceError::Timeout(_) => true,
            DynatraceError::Decode(_)
            | DynatraceError::TooManyPages(_)
            | DynatraceError::BadTenant(_) => false,
        }
    }
}

/// How calls are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
    pub max_rate_limit_wait: Duration,
}

impl RetryPolicy {
    fn delay(&self, attempt: u32) -> Duration {
        crate::retry::backoff(self.first_delay, self.max_delay, attempt.saturating_sub(1))
    }
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Secret,
    version: ApiVersion,
    timeout_secs: u64,
    retry: RetryPolicy,
}

impl Client {
    /// `None` when no tenant is configured.
    pub fn from_config(c: &DynatraceConfig) -> Result<Option<Client>, DynatraceError> {
        let Some(tenant) = &c.tenant else {
            return Ok(None);
        };
        let retry = RetryPolicy {
            max_attempts: c.max_attempts,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_rate_limit_wait: Duration::from_secs(c.max_rate_limit_wait_secs),
        };
        let version = if c.api_version == 1 {
            ApiVersion::V1
        } else {
            ApiVersion::V2
        };
        Client::new(
            tenant,
            c.api_token.clone(),
            version,
            Duration::from_secs(c.connect_timeout_secs),
            c.timeout_secs,
            retry,
        )
        .map(Some)
    }

    pub fn new(
        tenant: &str,
        token: Secret,
        version: ApiVersion,
        connect_timeout: Duration,
        timeout_secs: u64,
        retry: RetryPolicy,
    ) -> Result<Client, DynatraceError> {
        let base = Url::parse(tenant).map_err(|e| DynatraceError::BadTenant(e.to_string()))?;
        if base.cannot_be_a_base() {
            return Err(DynatraceError::BadTenant(tenant.to_string()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(Duration::from_secs(timeout_secs))
            .user_agent(concat!("hub/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DynatraceError::Transport(e.to_string()))?;
        Ok(Client {
            http,
            base,
            token,
            version,
            timeout_secs,
            retry,
        })
    }

    pub fn version(&self) -> ApiVersion {
        self.version
    }

    /// The tenant's URL for `segments`, each one percent-encoded; a trailing `/` on the tenant is fine.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// One problem's details by its PID: v2's problem object, or v1's `result`.
    pub async fn problem(&self, pid: &str) -> Result<Value, DynatraceError> {
        match self.version {
            ApiVersion::V2 => {
                let url = self.url(&["api", "v2", "problems", pid]);
                self.call(Method::GET, url, None).await
            }
            ApiVersion::V1 => {
                let url = self.url(&["api", "v1", "problem", "details", pid]);
                let answer = self.call(Method::GET, url, None).await?;
                take(answer, "result")
            }
        }
    }

    /// Every problem in the window, all pages followed.
    pub async fn feed(&self, window: Window) -> Result<Vec<Value>, DynatraceError> {
        match self.version {
            ApiVersion::V1 => {
                let mut url = self.url(&["api", "v1", "problem", "feed"]);
                url.query_pairs_mut()
                    .append_pair("relativeTime", window.name());
                let answer = self.call(Method::GET, url, None).await?;
                let problems = take(take(answer, "result")?, "problems")?;
                array(problems)
            }
            ApiVersion::V2 => {
                let mut problems = Vec::new();
                let mut url = self.url(&["api", "v2", "problems"]);
                url.query_pairs_mut()
                    .append_pair("from", window.v2_from())
                    .append_pair("pageSize", PAGE_SIZE);
                for _ in 0..MAX_PAGES {
                    let page = self.call(Method::GET, url.clone(), None).await?;
                    let next = page
                        .get("nextPageKey")
                        .and_then(Value::as_str)
                        .filter(|k| !k.is_empty())
                        .map(str::to_string);
                    problems.extend(array(take(page, "problems")?)?);
                    let Some(key) = next else {
                        return Ok(problems);
                    };
                    // Later pages carry the key alone: it encodes the original query.
                    url = self.url(&["api", "v2", "problems"]);
                    url.query_pairs_mut().append_pair("nextPageKey", &key);
                }
                Err(DynatraceError::TooManyPages(MAX_PAGES))
            }
        }
    }

    /// Writes a comment on the problem; `user` is the v1 API's author field (v2 takes the token's).
    pub async fn comment(
        &self,
        pid: &str,
        message: &str,
        context: &str,
        user: &str,
    ) -> Result<(), DynatraceError> {
        let (url, body) = match self.version {
            ApiVersion::V2 => (
                self.url(&["api", "v2", "problems", pid, "comments"]),
                json!({ "message": message, "context": context }),
            ),
            ApiVersion::V1 => (
                self.url(&["api", "v1", "problem", "details", pid, "comments"]),
                json!({ "comment": message, "user": user, "context": context }),
            ),
        };
        self.call(Method::POST, url, Some(body)).await.map(|_| ())
    }

    /// Closes the problem with a closing comment (v2 `close`; v1's deprecated `close` takes the
    /// comment as a query parameter). Closing a problem that is closed already is no error.
    pub async fn close(&self, pid: &str, message: &str) -> Result<(), DynatraceError> {
        let (url, body) = match self.version {
            ApiVersion::V2 => (
                self.url(&["api", "v2", "problems", pid, "close"]),
                Some(json!({ "message": message })),
            ),
            ApiVersion::V1 => {
                let mut url = self.url(&["api", "v1", "problem", "details", pid, "close"]);
                url.query_pairs_mut().append_pair("content", message);
                (url, None)
            }
        };
        self.call(Method::POST, url, body).await.map(|_| ())
    }

    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<Value>,
    ) -> Result<Value, DynatraceError> {
        let mut attempt = 1;
        loop {
            match self.once(method.clone(), url.clone(), body.as_ref()).await {
                Ok(value) => return Ok(value),
                Err((e, wait)) if e.is_transient() && attempt < self.retry.max_attempts => {
                    let wait = wait.unwrap_or_else(|| self.retry.delay(attempt));
                    tracing::warn!(
                        error = %e, attempt, retry_in_ms = wait.as_millis() as u64,
                        path = url.path(), "Dynatrace call failed; retrying"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// One try. On failure, also how long the server asked us to wait, if it did.
    async fn once(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Value, (DynatraceError, Option<Duration>)> {
        let mut request = self
            .http
            .request(method, url)
            .header(
                "Authorization",
                format!("Api-Token {}", self.token.expose()),
            )
            .header("Accept", "application/json");
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|e| (self.transport(e), None))?;
        let status = response.status();
        let wait = crate::retry::server_wait(response.headers())
            .map(|w| w.min(self.retry.max_rate_limit_wait));
        let bytes = response
            .bytes()
            .await
            .map_err(|e| (self.transport(e), None))?;
        if !status.is_success() {
            let error = DynatraceError::Status {
                status: status.as_u16(),
                message: error_message(status, &bytes),
            };
            return Err((error, wait));
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| (DynatraceError::Decode(e.to_string()), None))
    }

    fn transport(&self, e: reqwest::Error) -> DynatraceError {
        if e.is_timeout() {
            DynatraceError::Timeout(self.timeout_secs)
        } else {
            // reqwest's Display names the URL, never the headers: the token stays out.
            DynatraceError::Transport(source_chain(&e))
        }
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Dynatrace's own words: `{"error":{"code":…,"message":…}}`, else the start of the body.
fn error_message(status: StatusCode, body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    if let Some(message) = parsed
        .as_ref()
        .and_then(|v| v.pointer("/error/message"))
        .and_then(Value::as_str)
    {
        return message.to_string();
    }
    let text = String::from_utf8_lossy(body);
    let text: String = text.chars().take(200).collect();
    if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    }
}

fn take(mut value: Value, key: &str) -> Result<Value, DynatraceError> {
    match value.get_mut(key) {
        Some(v) => Ok(v.take()),
        None => Err(DynatraceError::Decode(format!("the answer has no {key:?}"))),
    }
}

fn array(value: Value) -> Result<Vec<Value>, DynatraceError> {
    match value {
        Value::Array(items) => Ok(items),
        Value::Null => Ok(Vec::new()),
        _ => Err(DynatraceError::Decode("expected a list of problems".into())),
    }
}
