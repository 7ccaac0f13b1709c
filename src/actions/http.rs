//! What the HTTP actions share: sending a request and sorting the answer into success, worth
//! trying again, or not.

use std::time::Duration;

use serde_json::Value;

use super::ActionError;

/// A far side's answer, read whole (bounded where it is kept).
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The error for an answer that is not a success: transient for 408, 425, 429 and 5xx (with
    /// the server's `Retry-After`), permanent otherwise.
    pub fn error(&self, message: String, detail: Value) -> ActionError {
        if crate::retry::transient_status(self.status) {
            ActionError::Transient {
                message,
                detail,
                retry_after: self.retry_after,
            }
        } else {
            ActionError::Permanent { message, detail }
        }
    }

    /// The body as it may be kept in an outcome.
    pub fn shown(&self) -> String {
        super::bounded(self.text.as_bytes(), 1024)
    }
}

/// Sends `request`; a request that got no answer (refused, reset, timed out) is transient.
pub async fn send(request: reqwest::RequestBuilder, to: &str) -> Result<Answer, ActionError> {
    let response = request
        .send()
        .await
        .map_err(|e| ActionError::transient(format!("{to} unreachable: {}", plain(&e))))?;
    let status = response.status().as_u16();
    let retry_after = crate::retry::server_wait(response.headers());
    let text = response.text().await.unwrap_or_default();
    Ok(Answer {
        status,
        retry_after,
        text,
    })
}

/// Why a request got no answer, short: reqwest's own message names the whole URL, which may carry
/// a secret (a Twilio account SID, a Teams webhook's key).
pub(crate) fn plain(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    match std::error::Error::source(e) {
        Some(s) => format!("{kind}: {s}"),
        None => kind.to_string(),
    }
}

/// A POST of `body` as JSON (the body is built here, so no serde feature of the client is needed).
pub fn post_json(
    http: &reqwest::Client,
    url: &str,
    body: &Value,
    timeout: Duration,
) -> reqwest::RequestBuilder {
    http.post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .timeout(timeout)
}

/// Adds an attempt's `traceparent` (see `Job::trace`), so the far side's trace continues the
/// notification's.
pub fn traced(request: reqwest::RequestBuilder, trace: Option<&str>) -> reqwest::RequestBuilder {
    match trace {
        Some(t) => request.header("traceparent", t),
        None => request,
    }
}

/// At most `max` characters of `text`, with an ellipsis when cut (services refuse longer fields).
pub fn truncated(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_to_the_limit() {
        assert_eq!(truncated("abc", 3), "abc");
        let cut = truncated(&"é".repeat(2000), 1024);
        assert_eq!(cut.chars().count(), 1024);
        assert!(cut.ends_with('…'));
    }
}
