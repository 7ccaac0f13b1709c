//! OpenTelemetry traces, exported over OTLP/HTTP when `telemetry.otlp_endpoint` is set.
//!
//! One trace per notification: the request that brought it (`ingest`, a child of the sender's
//! `traceparent` when it sent one), its durable write (`store`), its routing (`route`) and every
//! attempt of every run made from it (`action NAME`). The routing and the runs happen later, maybe
//! in another instance: the ingest span's context is stored with the notification, and the route
//! span's id is derived from it ([`SpanContext::derived`]), so nothing else needs keeping.
//!
//! Off by default, and then nothing is built: every place that makes a span asks [`on`] first,
//! one atomic load. Spans are exported in batches by one task; when the collector is away or slow,
//! spans wait in a bounded queue and then are dropped and counted
//! (`hub_telemetry_spans_dropped_total`), never holding up a notification or a page.

mod context;
mod otlp;
mod span;

use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, oneshot};

pub use context::SpanContext;
pub use span::{now_ns, Attr, Kind, Span};

use crate::keys::{Env, Issues, Section};
use crate::secret::Secret;

/// The `telemetry` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// The collector's base URL (as `OTEL_EXPORTER_OTLP_ENDPOINT`), without a trailing `/`; hub
    /// posts to `/v1/traces` under it.
    pub endpoint: String,
    /// Sent with every export (a collector's or a vendor's credentials).
    pub headers: Vec<(String, Secret)>,
    /// The resource's `service.name`.
    pub service_name: String,
    /// How long one export may take.
    pub timeout: Duration,
}

impl TelemetryConfig {
    pub fn traces_url(&self) -> String {
        format!("{}/v1/traces", self.endpoint)
    }
}

/// Reads `telemetry`; `None` when it is absent or its endpoint is empty (traces off).
pub fn read(mut s: Section, env: &Env, issues: &mut Issues) -> Option<TelemetryConfig> {
    let endpoint = s.string("otlp_endpoint", issues);
    let service_name = s
        .string("service_name", issues)
        .unwrap_or_else(|| "hub".to_string());
    if service_name.trim().is_empty() || service_name.len() > 128 {
        issues.push(
            s.path_of("service_name"),
            "must be 1 to 128 characters (the traces' service.name)",
        );
    }
    let timeout = s
        .duration(
            "timeout",
            Duration::from_secs(1),
            Duration::from_secs(60),
            issues,
        )
        .unwrap_or(Duration::from_secs(10));
    let mut given: Vec<(String, String, Option<String>)> = Vec::new();
    for (name, value) in s.entries("headers", issues) {
        let path = format!("{}.{name}", s.path_of("headers"));
        given.push((path, name, value.as_str().map(str::to_string)));
    }
    // A header's value from a variable (a collector's key), as every secret can be.
    for (name, variable) in s.entries("headers_env", issues) {
        let path = format!("{}.{name}", s.path_of("headers_env"));
        let value = match variable.as_str() {
            Some(v) => match env.get(v) {
                Some(value) => Some(value.to_string()),
                None => {
                    issues.push(path, format!("the variable {v} is not set"));
                    continue;
                }
            },
            None => None,
        };
        given.push((path, name, value));
    }
    let mut headers: Vec<(String, Secret)> = Vec::new();
    for (path, name, value) in given {
        let Some(value) = value else {
            issues.push(path, "expected a string");
            continue;
        };
        if headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)) {
            issues.push(path, "given twice (in headers and headers_env?)");
        } else if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            issues.push(path, "is not a valid HTTP header name");
        } else if reqwest::header::HeaderValue::from_str(&value).is_err() {
            issues.push(
                path,
                "is not a valid HTTP header value (no line breaks or control characters)",
            );
        } else {
            headers.push((name, Secret::new(value)));
        }
    }
    let endpoint_path = s.path_of("otlp_endpoint");
    s.finish(issues);
    let endpoint = endpoint.filter(|e| !e.trim().is_empty())?;
    match check_endpoint(&endpoint) {
        Ok(endpoint) => Some(TelemetryConfig {
            endpoint,
            headers,
            service_name,
            timeout,
        }),
        Err(why) => {
            issues.push(endpoint_path, why);
            None
        }
    }
}

/// The endpoint as hub posts under it, or why it cannot be one.
fn check_endpoint(endpoint: &str) -> Result<String, String> {
    let example = "such as http://collector:4318";
    let url = reqwest::Url::parse(endpoint)
        .map_err(|e| format!("expected the collector's base URL, {example}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "expected an http:// or https:// base URL, {example}, found {endpoint:?}"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "a base URL takes no query or fragment; hub adds /v1/traces ({example})"
        ));
    }
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        return Err(format!(
            "give the base URL without /v1/traces (hub adds it), {example}"
        ));
    }
    Ok(base.to_string())
}

/// What became of spans since start.
pub struct Counters {
    pub exported: Counter,
    pub dropped: Counter,
}

static COUNTERS: LazyLock<Counters> = LazyLock::new(|| Counters {
    exported: Counter::default(),
    dropped: Counter::default(),
});

/// The counters `/metrics` shows (zero while traces are off).
pub fn counters() -> &'static Counters {
    &COUNTERS
}

enum Message {
    Span(Span),
    Flush(oneshot::Sender<()>),
}

static EXPORTER: OnceLock<mpsc::Sender<Message>> = OnceLock::new();

/// Spans waiting for the exporter at most; more are dropped and counted.
const QUEUE: usize = 2048;

/// Whether traces are exported: the one question every span asks first.
pub fn on() -> bool {
    EXPORTER.get().is_some()
}

/// Starts the exporter for this process (`hub run`). A second call changes nothing: the
/// exporter is made once, like the log, and a reload that changes `telemetry` takes effect at
/// the next start.
pub fn start(config: &TelemetryConfig, instance: &str) -> Result<(), reqwest::Error> {
    if on() {
        return Ok(());
    }
    let out = otlp::Otlp::new(config, instance)?;
    let (tx, rx) = mpsc::channel(QUEUE);
    if EXPORTER.set(tx).is_ok() {
        tokio::spawn(otlp::run(out, rx));
        tracing::info!(endpoint = %config.traces_url(), "exporting traces over OTLP/HTTP");
    }
    Ok(())
}

/// Hands a finished span to the exporter; a full queue drops it (counted).
fn export(span: Span) {
    let Some(tx) = EXPORTER.get() else { return };
    if tx.try_send(Message::Span(span)).is_err() {
        COUNTERS.dropped.inc();
    }
}

/// Sends what is queued, waiting at most `within`: at a stop, so that the last notifications'
/// spans are not lost with the process.
pub async fn flush(within: Duration) {
    let Some(tx) = EXPORTER.get() else { return };
    let (done, flushed) = oneshot::channel();
    // Within the time given, waiting for room in a full queue included.
    let _ = tokio::time::timeout(within, async {
        if tx.send(Message::Flush(done)).await.is_ok() {
            let _ = flushed.await;
        }
    })
    .await;
}

/// The context a stored notification's routing and runs hang under: the ingest span's, as kept
/// in the store (`None`: it came while traces were off, or from hub itself).
pub fn stored(traceparent: Option<&str>) -> Option<SpanContext> {
    if !on() {
        return None;
    }
    traceparent.and_then(SpanContext::parse)
}

/// The routing span of the notification stored as `notification_id` under `ingest`.
pub fn route_context(ingest: &SpanContext, notification_id: i64) -> SpanContext {
    ingest.derived(format!("route {notification_id}").as_bytes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn read_json(v: serde_json::Value) -> (Option<TelemetryConfig>, Vec<String>) {
        let mut issues = Issues::default();
        let env = [("COLLECTOR_KEY".to_string(), "k-123".to_string())];
        let section = Section::at("telemetry".into(), &v, &mut issues);
        let config = read(section, &Env(&env), &mut issues);
        (config, issues.0.iter().map(|i| i.to_string()).collect())
    }

    #[test]
    fn the_endpoint_is_a_base_url() {
        let (c, issues) = read_json(json!({"otlp_endpoint": "http://collector:4318/"}));
        assert!(issues.is_empty(), "{issues:?}");
        let c = c.unwrap();
        assert_eq!(c.traces_url(), "http://collector:4318/v1/traces");
        assert_eq!(c.service_name, "hub");
        assert_eq!(c.timeout, Duration::from_secs(10));
        let (c, issues) = read_json(json!({"otlp_endpoint": ""}));
        assert!(c.is_none() && issues.is_empty(), "empty is off");
        let (c, issues) = read_json(json!({}));
        assert!(c.is_none() && issues.is_empty(), "absent is off");
        let (c, issues) = read_json(json!({"otlp_endpoint": "https://c", "headers": {"a": "1"},
                                           "headers_env": {"x-key": "COLLECTOR_KEY"}}));
        assert!(issues.is_empty(), "{issues:?}");
        let headers: Vec<(String, String)> = c
            .unwrap()
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_string()))
            .collect();
        assert_eq!(
            headers,
            [("a".into(), "1".into()), ("x-key".into(), "k-123".into())]
        );
    }

    #[test]
    fn a_bad_telemetry_section_is_a_config_error() {
        for (v, says) in [
            (json!({"otlp_endpoint": "collector:4318"}), "otlp_endpoint"),
            (json!({"otlp_endpoint": "ftp://collector"}), "http://"),
            (json!({"otlp_endpoint": "http://c:4318?x=1"}), "no query"),
            (
                json!({"otlp_endpoint": "http://c:4318/v1/traces"}),
                "without /v1/traces",
            ),
            (json!({"otlp_endpoint": "$(touch x)"}), "otlp_endpoint"),
            (json!({"otlp_endpoint": 4318}), "expected a string"),
            (
                json!({"otlp_endpoint": "http://c", "headers": {"a b": "x"}}),
                "header name",
            ),
            (
                json!({"otlp_endpoint": "http://c", "headers": {"x": "a\nb"}}),
                "header value",
            ),
            (
                json!({"otlp_endpoint": "http://c", "headers": {"x": 1}}),
                "expected a string",
            ),
            (
                json!({"otlp_endpoint": "http://c", "service_name": ""}),
                "service_name",
            ),
            (
                json!({"otlp_endpoint": "http://c", "timeout": "0s"}),
                "timeout",
            ),
            (
                json!({"otlp_endpoint": "http://c", "endpoint": "x"}),
                "endpoint",
            ),
            (
                json!({"otlp_endpoint": "http://c", "headers_env": {"x": "UNSET"}}),
                "UNSET is not set",
            ),
            (
                json!({"otlp_endpoint": "http://c", "headers": {"X": "1"},
                    "headers_env": {"x": "COLLECTOR_KEY"}}),
                "given twice",
            ),
        ] {
            let (_, issues) = read_json(v.clone());
            assert!(
                issues.iter().any(|i| i.contains(says)),
                "{v}: {issues:?} should mention {says:?}"
            );
        }
    }
}
