//! Sends spans to the collector: OTLP/HTTP with the JSON encoding, posted to `/v1/traces`.
//!
//! The JSON encoding is the protocol's own (<https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding>):
//! ids in hex, enums as numbers, 64-bit integers as strings. It needs nothing hub does not
//! already build (reqwest, serde_json), where the protobuf encoding would bring a protobuf and
//! gRPC stack.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::context::hex;
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
                attribute("service.name", &Attr::Str(config.service_name.clone())),
                attribute("service.version", &Attr::from(env!("CARGO_PKG_VERSION"))),
                attribute("service.instance.id", &Attr::from(instance)),
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
        let body = encode(&self.resource, spans).to_string();
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

/// An `ExportTraceServiceRequest` in OTLP's JSON encoding.
fn encode(resource: &Value, spans: &[Span]) -> Value {
    json!({"resourceSpans": [{
        "resource": resource,
        "scopeSpans": [{
            "scope": {"name": "hub", "version": env!("CARGO_PKG_VERSION")},
            "spans": spans.iter().map(encode_span).collect::<Vec<_>>(),
        }],
    }]})
}

fn encode_span(s: &Span) -> Value {
    let mut v = json!({
        "traceId": hex(&s.context.trace_id),
        "spanId": hex(&s.context.span_id),
        "name": s.name,
        "kind": s.kind as i32,
        "startTimeUnixNano": s.start_ns.to_string(),
        "endTimeUnixNano": s.end_ns.to_string(),
        "attributes": s.attributes.iter().map(|(k, a)| attribute(k, a)).collect::<Vec<_>>(),
    });
    if let Some(parent) = &s.parent {
        v["parentSpanId"] = json!(hex(parent));
    }
    if let Some(message) = &s.error {
        // STATUS_CODE_ERROR
        v["status"] = json!({"code": 2, "message": message});
    }
    v
}

fn attribute(key: &str, value: &Attr) -> Value {
    json!({"key": key, "value": any_value(value)})
}

fn any_value(value: &Attr) -> Value {
    match value {
        Attr::Str(s) => json!({"stringValue": s}),
        Attr::Int(i) => json!({"intValue": i.to_string()}),
        Attr::List(items) => json!({"arrayValue": {"values":
            items.iter().map(|s| json!({"stringValue": s})).collect::<Vec<_>>()}}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let v = encode(&json!({"attributes": []}), &[span.clone()]);
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
