//! Sends spans to the collector: OTLP/HTTP with the JSON encoding, posted to `/v1/traces`.
//!
//! The JSON encoding is the protocol's own (<https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding>):
//! ids in hex, enums as numbers, 64-bit integers as strings. It needs nothing hub does not
//! already build (reqwest, serde_json), where the protobuf encoding would bring a protobuf and
//! gRPC stack.

use std::time::{Duration, Instant};

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::{Attr, Message, Span, TelemetryConfig, COUNTERS};
use crate::logging::Throttle;

/// Spans in one request at most (the SDKs' default batch).
const BATCH: usize = 512;
/// How often what is queued is sent.
const EVERY: Duration = Duration::from_secs(1);
/// Spans kept for a collector that is away, at most; the oldest go first.
const KEPT: usize = 4096;
/// Tries of one batch before it is dropped.
const TRIES: u32 = 5;

pub(super) struct Otlp {
    client: reqwest::Client,
    url: String,
    headers: Vec<(String, String)>,
    resource: Value,
    errors: Throttle,
}

impl Otlp {
    pub(super) fn new(config: &TelemetryConfig, instance: &str) -> Result<Otlp, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()?;
        Ok(Otlp {
            client,
            url: config.traces_url(),
            headers: config
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_string()))
                .collect(),
            resource: json!({"attributes": [
                {"key": "service.name", "value": {"stringValue": config.service_name}},
                {"key": "service.version", "value": {"stringValue": env!("CARGO_PKG_VERSION")}},
                {"key": "service.instance.id", "value": {"stringValue": instance}},
            ]}),
            errors: Throttle::new(Duration::from_secs(60)),
        })
    }

    /// Sends `spans` in batches. What a collector that is away did not take is left in `spans`
    /// for the next try; `Err` then says when to try again.
    async fn send(&mut self, spans: &mut Vec<Span>) -> Result<(), Instant> {
        while !spans.is_empty() {
            let n = spans.len().min(BATCH);
            match self.post(&spans[..n]).await {
                Sent::Taken { rejected } => {
                    COUNTERS
                        .exported
                        .inc_by((n as u64).saturating_sub(rejected));
                    COUNTERS.dropped.inc_by(rejected);
                    spans.drain(..n);
                }
                Sent::Refused => {
                    COUNTERS.dropped.inc_by(n as u64);
                    spans.drain(..n);
                }
                Sent::Later(wait) => return Err(Instant::now() + wait),
            }
        }
        Ok(())
    }

    async fn post(&mut self, spans: &[Span]) -> Sent {
        let body = encode(&self.resource, spans);
        let mut request = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in &self.headers {
            request = request.header(k.as_str(), v.as_str());
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                self.complain(&crate::actions::http::plain(&e), spans.len());
                return Sent::Later(EVERY * 5);
            }
        };
        let status = response.status().as_u16();
        let wait = crate::retry::server_wait(response.headers());
        let text = response.text().await.unwrap_or_default();
        if (200..300).contains(&status) {
            let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let rejected = rejected_spans(&answer);
            if rejected > 0 {
                let why = answer
                    .pointer("/partialSuccess/errorMessage")
                    .and_then(Value::as_str)
                    .unwrap_or("no reason given");
                self.complain(&format!("it rejected {rejected} span(s): {why}"), 0);
            }
            return Sent::Taken { rejected };
        }
        let shown = crate::actions::bounded(text.as_bytes(), 300);
        self.complain(&format!("HTTP {status}: {shown}"), spans.len());
        // The statuses the protocol says to try again after; any other is final.
        if matches!(status, 429 | 502 | 503 | 504) {
            Sent::Later(wait.unwrap_or(EVERY * 5).min(Duration::from_secs(60)))
        } else {
            Sent::Refused
        }
    }

    fn complain(&mut self, what: &str, spans: usize) {
        if let Some(held_back) = self.errors.ready() {
            tracing::warn!(
                url = %self.url, spans, similar_lines_held_back = held_back,
                dropped_so_far = COUNTERS.dropped.get(),
                "cannot export traces: {what}"
            );
        }
    }
}

enum Sent {
    /// The collector took the batch, perhaps rejecting some spans (a partial success).
    Taken { rejected: u64 },
    /// The collector refused it for good (a 400: trying again gets the same answer).
    Refused,
    /// Not taken now; try again after this.
    Later(Duration),
}

fn rejected_spans(answer: &Value) -> u64 {
    match answer.pointer("/partialSuccess/rejectedSpans") {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(v) => v.as_u64().unwrap_or(0),
        None => 0,
    }
}

/// Gathers spans and sends them once a second, or at once when a batch is full; a collector
/// that is away is tried again later, keeping at most [`KEPT`] spans meanwhile.
pub(super) async fn run(mut out: Otlp, mut rx: mpsc::Receiver<Message>) {
    let mut queued: Vec<Span> = Vec::new();
    let mut not_before: Option<Instant> = None;
    let mut tries = 0u32;
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let flush = tokio::select! {
            message = rx.recv() => match message {
                Some(Message::Span(span)) => {
                    queued.push(span);
                    if queued.len() > KEPT {
                        let over = queued.len() - KEPT;
                        queued.drain(..over);
                        COUNTERS.dropped.inc_by(over as u64);
                    }
                    if queued.len() < BATCH || not_before.is_some() {
                        continue;
                    }
                    None
                }
                Some(Message::Flush(done)) => {
                    while let Ok(Message::Span(span)) = rx.try_recv() {
                        queued.push(span);
                    }
                    Some(done)
                }
                None => return,
            },
            _ = tick.tick() => {
                if queued.is_empty() || not_before.is_some_and(|t| Instant::now() < t) {
                    continue;
                }
                None
            }
        };
        match out.send(&mut queued).await {
            Ok(()) => {
                not_before = None;
                tries = 0;
            }
            Err(later) => {
                tries += 1;
                if tries >= TRIES || flush.is_some() {
                    COUNTERS.dropped.inc_by(queued.len() as u64);
                    queued.clear();
                    tries = 0;
                    not_before = None;
                } else {
                    not_before = Some(later);
                }
            }
        }
        if let Some(done) = flush {
            let _ = done.send(());
        }
    }
}

/// An `ExportTraceServiceRequest` in OTLP's JSON encoding, written straight from the spans (the
/// exporter encodes every span hub makes: no tree of values in between).
fn encode(resource: &Value, spans: &[Span]) -> Vec<u8> {
    let request = Request {
        resource_spans: [ResourceSpans {
            resource,
            scope_spans: [ScopeSpans {
                scope: Scope {
                    name: "hub",
                    version: env!("CARGO_PKG_VERSION"),
                },
                spans: spans.iter().map(Encoded).collect(),
            }],
        }],
    };
    // Serializing these types cannot fail: every map key is a string.
    serde_json::to_vec(&request).unwrap_or_default()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Request<'a> {
    resource_spans: [ResourceSpans<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResourceSpans<'a> {
    resource: &'a Value,
    scope_spans: [ScopeSpans<'a>; 1],
}

#[derive(Serialize)]
struct ScopeSpans<'a> {
    scope: Scope,
    spans: Vec<Encoded<'a>>,
}

#[derive(Serialize)]
struct Scope {
    name: &'static str,
    version: &'static str,
}

/// One span as OTLP's JSON has it.
struct Encoded<'a>(&'a Span);

impl Serialize for Encoded<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let s = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("traceId", &Hex(&s.context.trace_id))?;
        map.serialize_entry("spanId", &Hex(&s.context.span_id))?;
        if let Some(parent) = &s.parent {
            map.serialize_entry("parentSpanId", &Hex(parent))?;
        }
        map.serialize_entry("name", &s.name)?;
        map.serialize_entry("kind", &(s.kind as i32))?;
        // 64-bit integers are strings in OTLP's JSON, as in proto3's.
        map.serialize_entry("startTimeUnixNano", &Text(s.start_ns))?;
        map.serialize_entry("endTimeUnixNano", &Text(s.end_ns))?;
        map.serialize_entry("attributes", &Attributes(&s.attributes))?;
        if let Some(message) = &s.error {
            // STATUS_CODE_ERROR
            map.serialize_entry("status", &Status { code: 2, message })?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct Status<'a> {
    code: i32,
    message: &'a str,
}

/// Ids in lower-case hex, written without a string of their own.
struct Hex<'a>(&'a [u8]);

impl Serialize for Hex<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{}", HexDigits(self.0)))
    }
}

struct HexDigits<'a>(&'a [u8]);

impl std::fmt::Display for HexDigits<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// A number written as a JSON string.
struct Text<T>(T);

impl<T: std::fmt::Display> Serialize for Text<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

struct Attributes<'a>(&'a [(&'static str, Attr)]);

impl Serialize for Attributes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|(key, value)| KeyValue {
            key,
            value: AnyValue(value),
        }))
    }
}

#[derive(Serialize)]
struct KeyValue<'a> {
    key: &'a str,
    value: AnyValue<'a>,
}

/// OTLP's `AnyValue`: one field named by the value's type.
struct AnyValue<'a>(&'a Attr);

impl Serialize for AnyValue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        match self.0 {
            Attr::Str(s) => map.serialize_entry("stringValue", s)?,
            Attr::Int(i) => map.serialize_entry("intValue", &Text(i))?,
            Attr::List(items) => map.serialize_entry("arrayValue", &Strings(items))?,
        }
        map.end()
    }
}

/// An `ArrayValue` of strings.
struct Strings<'a>(&'a [String]);

impl Serialize for Strings<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("values", &StringValues(self.0))?;
        map.end()
    }
}

struct StringValues<'a>(&'a [String]);

impl Serialize for StringValues<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|s| StringValue { string_value: s }))
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StringValue<'a> {
    string_value: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::context::hex;
    use crate::telemetry::{Kind, SpanContext};

    #[test]
    fn a_span_encodes_as_otlp_json() {
        let parent = SpanContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .expect("valid");
        let mut span = Span::start("ingest alertmanager", Kind::Server, Some(parent));
        span.set("hub.source", "alertmanager");
        span.set("hub.runs", 3usize);
        span.set("hub.actions", vec!["page".to_string()]);
        span.fail("boom");
        span.end_ns = span.start_ns + 5;
        let v: Value =
            serde_json::from_slice(&encode(&json!({"attributes": []}), &[span.clone()])).unwrap();
        let s = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(s["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(s["parentSpanId"], "00f067aa0ba902b7");
        assert_eq!(s["spanId"], hex(&span.context.span_id));
        assert_eq!(s["kind"], 2);
        assert_eq!(
            s["endTimeUnixNano"].as_str().map(|t| t.parse::<u64>().ok()),
            Some(Some(span.start_ns + 5))
        );
        assert_eq!(s["attributes"][0]["value"]["stringValue"], "alertmanager");
        assert_eq!(s["attributes"][1]["value"]["intValue"], "3");
        assert_eq!(
            s["attributes"][2]["value"]["arrayValue"]["values"][0]["stringValue"],
            "page"
        );
        assert_eq!(s["status"]["code"], 2);
    }

    #[test]
    fn a_partial_success_counts_its_rejected_spans() {
        assert_eq!(rejected_spans(&json!({})), 0);
        assert_eq!(
            rejected_spans(&json!({"partialSuccess": {"rejectedSpans": "3"}})),
            3
        );
        assert_eq!(
            rejected_spans(&json!({"partialSuccess": {"rejectedSpans": 2}})),
            2
        );
    }
}
