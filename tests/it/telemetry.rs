//! OpenTelemetry traces through the real binary: a local OTLP/HTTP receiver (the collector's
//! `/v1/traces`, JSON encoding) takes what hub exports, and the tests check each span's parent,
//! from the sender's `traceparent` to the request an action makes.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::{
    self, check_config, client, config_with, eventually, fixture, get_text, post, runs, Hub,
};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SENDER_SPAN: &str = "00f067aa0ba902b7";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// An OTLP/HTTP receiver answering as a collector does (200 with an empty JSON object), for
/// JSON bodies only.
async fn collector() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .and(header("content-type", "application/json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&server)
        .await;
    server
}

/// One exported span, with its resource's `service.name`.
#[derive(Debug, Clone)]
struct Exported {
    span: Value,
    service: String,
}

impl Exported {
    fn name(&self) -> &str {
        self.span["name"].as_str().unwrap()
    }
    fn id(&self) -> &str {
        self.span["spanId"].as_str().unwrap()
    }
    fn trace(&self) -> &str {
        self.span["traceId"].as_str().unwrap()
    }
    fn parent(&self) -> Option<&str> {
        self.span["parentSpanId"].as_str().filter(|p| !p.is_empty())
    }
    /// A string or integer attribute, as text.
    fn attr(&self, key: &str) -> Option<String> {
        let a = self.span["attributes"]
            .as_array()?
            .iter()
            .find(|a| a["key"] == key)?;
        let v = &a["value"];
        v["stringValue"]
            .as_str()
            .or(v["intValue"].as_str())
            .map(str::to_string)
            .or_else(|| Some(v["arrayValue"].to_string()))
    }
    fn failed(&self) -> bool {
        self.span["status"]["code"] == 2
    }
}

/// Every span the receiver got, in the order they came.
async fn exported(collector: &MockServer) -> Vec<Exported> {
    let mut all = Vec::new();
    for r in collector.received_requests().await.unwrap() {
        let doc: Value = serde_json::from_slice(&r.body).unwrap();
        for rs in doc["resourceSpans"].as_array().unwrap() {
            let service = rs["resource"]["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["key"] == "service.name")
                .and_then(|a| a["value"]["stringValue"].as_str())
                .unwrap_or_default()
                .to_string();
            for ss in rs["scopeSpans"].as_array().unwrap() {
                assert_eq!(ss["scope"]["name"], "hub");
                for span in ss["spans"].as_array().unwrap() {
                    all.push(Exported {
                        span: span.clone(),
                        service: service.clone(),
                    });
                }
            }
        }
    }
    all
}

/// Waits until the receiver has spans named as `names` (one each, or as many as repeated).
async fn wait_for(collector: &MockServer, names: &[&str]) -> Vec<Exported> {
    let mut wanted: HashMap<&str, usize> = HashMap::new();
    for n in names {
        *wanted.entry(n).or_default() += 1;
    }
    eventually(&format!("spans {names:?}"), async || {
        let spans = exported(collector).await;
        wanted
            .iter()
            .all(|(name, n)| spans.iter().filter(|s| s.name() == *name).count() >= *n)
    })
    .await;
    exported(collector).await
}

fn one<'a>(spans: &'a [Exported], name: &str) -> &'a Exported {
    let found: Vec<&Exported> = spans.iter().filter(|s| s.name() == name).collect();
    assert_eq!(found.len(), 1, "one {name} span: {spans:#?}");
    found[0]
}

/// Every body the receiver got, read by OpenTelemetry's published definitions of the request
/// (`tests/otlp/check.py`): a check of the encoding by something other than what wrote it.
async fn read_by_the_protocols_definitions(collector: &MockServer) {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, r) in collector
        .received_requests()
        .await
        .unwrap()
        .iter()
        .enumerate()
    {
        let file = dir.path().join(format!("export-{i}.json"));
        std::fs::write(&file, &r.body).unwrap();
        files.push(file);
    }
    let check = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otlp/check.py");
    let mut args = vec![check.as_os_str()];
    args.extend(files.iter().map(|f| f.as_os_str()));
    let (read, said) = support::run_python(&args, "opentelemetry-proto>=1.20,<2");
    assert!(read, "{said}");
    assert!(
        said.contains("spans read as ExportTraceServiceRequest"),
        "{said}"
    );
}

fn traceparent_of(r: &Request) -> Option<String> {
    r.headers
        .get("traceparent")
        .map(|v| v.to_str().unwrap().to_string())
}

fn traced(collector: &MockServer, patch: Value) -> Value {
    let mut config = config_with(json!({
        "telemetry": {"otlp_endpoint": collector.uri()},
        "dispatch": {"first_retry_secs": 1},
    }));
    support::merge(&mut config, patch);
    config
}

async fn deliver(hub: &Hub, traceparent: Option<&str>) {
    let mut request = post(
        &client(),
        &hub.url("/"),
        fixture("dynatrace/full-open.json"),
    );
    if let Some(t) = traceparent {
        request = request.header("traceparent", t);
    }
    let r = request.send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
}

async fn all_succeeded(dir: &Path, n: usize) {
    eventually(&format!("{n} runs succeeded"), async || {
        let r = runs(dir).await;
        r.len() == n && r.iter().all(|r| r.status == "succeeded")
    })
    .await;
}

/// A receiver for the webhook action that takes every request.
async fn receiver() -> MockServer {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&receiver)
        .await;
    receiver
}

/// A receiver for the webhook action: the first request fails (so the run is tried twice), the
/// rest are taken.
async fn flaky_receiver() -> MockServer {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .with_priority(2)
        .mount(&receiver)
        .await;
    receiver
}

#[tokio::test]
async fn a_notification_is_one_trace_from_the_senders_span_to_each_attempt_and_its_request() {
    let collector = collector().await;
    let receiver = flaky_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    support::script(
        dir.path(),
        "note.sh",
        "echo \"$TRACEPARENT\" >> traceparents",
    );
    let hub = Hub::start_in(
        dir.path(),
        &traced(
            &collector,
            json!({"actions": {
                "notify": {"type": "webhook", "url": format!("{}/in", receiver.uri()),
                           "secret": SECRET},
                "note": {"type": "script", "command": ["./note.sh"]},
            }}),
        ),
        &[],
    );
    deliver(&hub, Some(&format!("00-{TRACE}-{SENDER_SPAN}-01"))).await;
    // The script runs once per impacted entity (two), the webhook once for the problem.
    all_succeeded(dir.path(), 3).await;
    let spans = wait_for(
        &collector,
        &[
            "ingest dynatrace",
            "store",
            "route",
            "action notify",
            "action notify",
            "action note",
            "action note",
        ],
    )
    .await;

    assert!(spans.iter().all(|s| s.trace() == TRACE), "{spans:#?}");
    assert!(spans.iter().all(|s| s.service == "hub"));
    let ingest = one(&spans, "ingest dynatrace");
    assert_eq!(ingest.parent(), Some(SENDER_SPAN), "the sender's span");
    assert_eq!(ingest.span["kind"], 2, "SERVER");
    assert_eq!(ingest.attr("hub.source").as_deref(), Some("dynatrace"));
    assert_eq!(ingest.attr("hub.problem_id").as_deref(), Some("P-2411021"));
    assert_eq!(
        ingest.attr("http.response.status_code").as_deref(),
        Some("200")
    );
    let store = one(&spans, "store");
    assert_eq!(store.parent(), Some(ingest.id()));
    assert_eq!(store.attr("hub.stored").as_deref(), Some("1"));
    assert_eq!(store.attr("hub.problem_id").as_deref(), Some("P-2411021"));
    let route = one(&spans, "route");
    assert_eq!(route.parent(), Some(ingest.id()));
    assert_eq!(route.attr("hub.problem_id").as_deref(), Some("P-2411021"));
    let actions = route.attr("hub.actions").unwrap();
    assert!(
        actions.contains("notify") && actions.contains("note"),
        "{actions}"
    );

    let attempts: Vec<&Exported> = spans
        .iter()
        .filter(|s| s.name() == "action notify")
        .collect();
    for s in spans.iter().filter(|s| s.name().starts_with("action ")) {
        assert_eq!(s.parent(), Some(route.id()), "{s:#?}");
        assert_eq!(s.attr("hub.problem_id").as_deref(), Some("P-2411021"));
        assert_eq!(s.attr("hub.source").as_deref(), Some("dynatrace"));
        assert_eq!(
            s.attr("hub.action").as_deref(),
            s.name().strip_prefix("action ")
        );
    }
    let by_attempt = |n: &str| {
        *attempts
            .iter()
            .find(|s| s.attr("hub.attempt").as_deref() == Some(n))
            .unwrap()
    };
    let (first, second) = (by_attempt("1"), by_attempt("2"));
    assert!(first.failed(), "the 500 is an error: {first:#?}");
    assert_eq!(first.attr("hub.outcome").as_deref(), Some("retry"));
    assert!(!second.failed());
    assert_eq!(second.attr("hub.outcome").as_deref(), Some("succeeded"));
    assert!(spans
        .iter()
        .filter(|s| s.name() == "action note")
        .all(|s| !s.failed()));

    read_by_the_protocols_definitions(&collector).await;

    // A script gets its attempt's as TRACEPARENT.
    let mut given = support::lines(&dir.path().join("traceparents"));
    let mut notes: Vec<String> = spans
        .iter()
        .filter(|s| s.name() == "action note")
        .map(|s| format!("00-{TRACE}-{}-01", s.id()))
        .collect();
    given.sort();
    notes.sort();
    assert_eq!(given, notes);

    // Each attempt's request names that attempt's span as its parent.
    let sent: Vec<String> = receiver
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| traceparent_of(r).expect("a traceparent on the webhook's request"))
        .collect();
    assert_eq!(
        sent,
        [
            format!("00-{TRACE}-{}-01", first.id()),
            format!("00-{TRACE}-{}-01", second.id())
        ]
    );
}

#[tokio::test]
async fn slack_teams_and_pagerduty_requests_carry_their_attempts_traceparent() {
    let collector = collector().await;
    let far = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat.postMessage"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": true, "channel": "C0123", "ts": "1700000000.000100"})),
        )
        .mount(&far)
        .await;
    Mock::given(method("POST"))
        .and(path("/webhookb2/abc"))
        .respond_with(ResponseTemplate::new(200).set_body_string("1"))
        .mount(&far)
        .await;
    Mock::given(method("POST"))
        .and(path("/v2/enqueue"))
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({
            "status": "success", "message": "Event processed", "dedup_key": "k"})))
        .mount(&far)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start_in(
        dir.path(),
        &traced(
            &collector,
            json!({"actions": {
                "chat": {"type": "slack", "token": "xoxb-test-token", "channel": "#ops",
                         "api_url": format!("{}/api", far.uri())},
                "room": {"type": "teams", "webhook_url": format!("{}/webhookb2/abc", far.uri())},
                "page": {"type": "pagerduty", "routing_key": "0123456789abcdef0123456789abcdef",
                         "api_url": far.uri()},
            }}),
        ),
        &[],
    );
    // No traceparent: hub's ingest span starts the trace.
    deliver(&hub, None).await;
    all_succeeded(dir.path(), 3).await;
    let spans = wait_for(
        &collector,
        &[
            "ingest dynatrace",
            "action chat",
            "action room",
            "action page",
        ],
    )
    .await;
    let ingest = one(&spans, "ingest dynatrace");
    assert_eq!(ingest.parent(), None, "the first span of its trace");
    let trace = ingest.trace();
    for (action, path) in [
        ("chat", "/api/chat.postMessage"),
        ("room", "/webhookb2/abc"),
        ("page", "/v2/enqueue"),
    ] {
        let span = one(&spans, &format!("action {action}"));
        let requests = far.received_requests().await.unwrap();
        let request = requests.iter().find(|r| r.url.path() == path).unwrap();
        assert_eq!(
            traceparent_of(request),
            Some(format!("00-{trace}-{}-01", span.id())),
            "{action}"
        );
    }
}

#[tokio::test]
async fn a_traceparent_hub_cannot_read_starts_a_new_trace_and_an_unsampled_one_records_nothing() {
    let collector = collector().await;
    let receiver = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start_in(
        dir.path(),
        &traced(
            &collector,
            json!({"actions": {"notify": {"type": "webhook", "url": receiver.uri(), "secret": SECRET}},
                   "sources": {"alertmanager": {}}}),
        ),
        &[],
    );
    // An unsampled trace first: its ids go on, its spans are not recorded.
    let unsampled = "0af7651916cd43dd8448eb211c80319c";
    deliver(&hub, Some(&format!("00-{unsampled}-b7ad6b7169203331-00"))).await;
    all_succeeded(dir.path(), 1).await;
    let forwarded = traceparent_of(&receiver.received_requests().await.unwrap()[0]).unwrap();
    assert!(
        forwarded.starts_with(&format!("00-{unsampled}-")) && forwarded.ends_with("-00"),
        "{forwarded}"
    );

    // Then a hostile one, on another source: stored, a new trace, nothing run.
    let hostile = "$(touch INJECTED) ../../x <script>";
    let alert = fixture("alertmanager/webhook-firing.json");
    let r = post(&client(), &hub.url("/hooks/alertmanager"), alert)
        .header("traceparent", hostile)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    let spans = wait_for(&collector, &["ingest alertmanager", "action notify"]).await;
    let ingest = one(&spans, "ingest alertmanager");
    assert_eq!(ingest.parent(), None);
    assert_ne!(ingest.trace(), unsampled);
    assert!(!dir.path().join("INJECTED").exists());
    // The exporter sends in order: the later trace's spans came, so the unsampled one's would have.
    assert!(
        spans.iter().all(|s| s.trace() != unsampled),
        "nothing of the unsampled trace: {spans:#?}"
    );
    assert!(spans.iter().all(|s| s.trace() == ingest.trace()));
}

#[tokio::test]
async fn without_telemetry_no_traceparent_is_sent_on() {
    let receiver = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start_in(
        dir.path(),
        &config_with(
            json!({"actions": {"notify": {"type": "webhook", "url": receiver.uri(), "secret": SECRET}}}),
        ),
        &[],
    );
    deliver(&hub, Some(&format!("00-{TRACE}-{SENDER_SPAN}-01"))).await;
    all_succeeded(dir.path(), 1).await;
    let requests = receiver.received_requests().await.unwrap();
    assert_eq!(traceparent_of(&requests[0]), None);
    let metrics = get_text(&hub, "/metrics").await;
    assert!(
        metrics.contains("hub_telemetry_spans_exported_total 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_collector_that_refuses_costs_spans_not_pages() {
    let collector = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_string("bad request"))
        .mount(&collector)
        .await;
    let dir = tempfile::tempdir().unwrap();
    support::script(dir.path(), "note.sh", "exit 0");
    let hub = Hub::start_in(
        dir.path(),
        &traced(
            &collector,
            json!({"actions": {"note": {"type": "script", "command": ["./note.sh"]}}}),
        ),
        &[],
    );
    deliver(&hub, None).await;
    all_succeeded(dir.path(), 2).await;
    eventually("spans counted as dropped", async || {
        let metrics = get_text(&hub, "/metrics").await;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("hub_telemetry_spans_dropped_total "))
            .is_some_and(|n| n.trim() != "0")
    })
    .await;
    assert!(
        hub.stderr().contains("cannot export traces: HTTP 400"),
        "{}",
        hub.stderr()
    );
}

#[tokio::test]
async fn a_run_retried_after_a_restart_stays_in_its_notifications_trace() {
    let collector = collector().await;
    let receiver = flaky_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let config = traced(
        &collector,
        json!({"actions": {"notify": {"type": "webhook", "url": receiver.uri(), "secret": SECRET}},
               "dispatch": {"first_retry_secs": 3}}),
    );
    let mut hub = Hub::start_in(dir.path(), &config, &[]);
    deliver(&hub, Some(&format!("00-{TRACE}-{SENDER_SPAN}-01"))).await;
    eventually("the first attempt failed", async || {
        runs(dir.path())
            .await
            .first()
            .is_some_and(|r| r.attempts == 1 && r.status == "pending")
    })
    .await;
    // A stop sends what is queued.
    hub.terminate();
    wait_for(&collector, &["route", "action notify"]).await;
    let _hub = Hub::start_in(dir.path(), &config, &[]);
    all_succeeded(dir.path(), 1).await;
    let spans = wait_for(&collector, &["route", "action notify", "action notify"]).await;
    let route = one(&spans, "route");
    for s in spans.iter().filter(|s| s.name() == "action notify") {
        assert_eq!(s.trace(), TRACE);
        assert_eq!(s.parent(), Some(route.id()), "{s:#?}");
    }
}

#[tokio::test]
async fn a_bad_telemetry_section_is_refused_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    for (telemetry, says) in [
        (
            json!({"otlp_endpoint": "collector:4318"}),
            "telemetry.otlp_endpoint",
        ),
        (
            json!({"otlp_endpoint": "http://collector:4318/v1/traces"}),
            "without /v1/traces",
        ),
        (
            json!({"otlp_endpoint": "http://c:4318", "headers": {"x-key": "a\nb"}}),
            "telemetry.headers.x-key",
        ),
        (json!({"otlp_endpiont": "http://c:4318"}), "otlp_endpiont"),
    ] {
        let (code, out) = check_config(dir.path(), &config_with(json!({ "telemetry": telemetry })));
        assert_eq!(code, Some(1), "{telemetry}: {out}");
        assert!(out.contains(says), "{telemetry}: {out}");
    }
}

#[tokio::test]
async fn a_dynatrace_problems_details_are_fetched_under_its_ingest() {
    let collector = collector().await;
    let dynatrace = MockServer::start().await;
    let pid = "-5289617462338813532_1606920000000V2";
    // Busy once (the fetch is tried again), then the details.
    Mock::given(method("GET"))
        .and(path(format!("/api/v2/problems/{pid}")))
        .respond_with(ResponseTemplate::new(503).set_body_string("busy"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&dynatrace)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/api/v2/problems/{pid}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "problemId": pid, "displayId": "P-2411021", "title": "Response time degradation",
            "status": "OPEN", "severityLevel": "PERFORMANCE", "impactLevel": "SERVICES",
            "startTime": 1_700_000_000_000_i64, "endTime": -1, "impactedEntities": [],
            "affectedEntities": [], "managementZones": [], "problemFilters": []})))
        .with_priority(2)
        .mount(&dynatrace)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start_in(
        dir.path(),
        &traced(
            &collector,
            json!({"dynatrace": {"tenant": dynatrace.uri(), "api_token": "dt0c01.T",
                                 "max_attempts": 1}}),
        ),
        &[],
    );
    deliver(&hub, Some(&format!("00-{TRACE}-{SENDER_SPAN}-01"))).await;
    let spans = wait_for(&collector, &["ingest dynatrace", "enrich", "enrich"]).await;
    let ingest = one(&spans, "ingest dynatrace");
    let fetches: Vec<&Exported> = spans.iter().filter(|s| s.name() == "enrich").collect();
    for (fetch, (attempt, outcome)) in fetches.iter().zip([("1", "retry"), ("2", "enriched")]) {
        assert_eq!(fetch.trace(), TRACE);
        assert_eq!(fetch.parent(), Some(ingest.id()), "{fetch:#?}");
        assert_eq!(fetch.span["kind"], 3, "CLIENT");
        assert_eq!(fetch.attr("hub.pid").as_deref(), Some(pid));
        assert_eq!(fetch.attr("hub.attempt").as_deref(), Some(attempt));
        assert_eq!(fetch.attr("hub.outcome").as_deref(), Some(outcome));
        assert_eq!(fetch.failed(), outcome == "retry");
    }
}
