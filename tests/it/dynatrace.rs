//! The Problems API client and `hub poll`/`hub problem` against a local stand-in tenant.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hub::dynatrace::{ApiVersion, Client, DynatraceError, RetryPolicy, Window};
use hub::secret::Secret;
use serde_json::{json, Value};
use wiremock::matchers::{body_json, header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::{self, config_with, hub_command};

const TOKEN: &str = "dt0c01.TEST-TOKEN";

fn client(server: &MockServer, tenant_suffix: &str, version: ApiVersion) -> Client {
    client_with(&format!("{}{tenant_suffix}", server.uri()), version, 4, 2)
}

fn client_with(tenant: &str, version: ApiVersion, max_attempts: u32, timeout_secs: u64) -> Client {
    Client::new(
        tenant,
        Secret::new(TOKEN),
        version,
        Duration::from_secs(1),
        timeout_secs,
        RetryPolicy {
            max_attempts,
            first_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            max_rate_limit_wait: Duration::from_secs(5),
        },
    )
    .unwrap()
}

fn v2_problem(n: u32) -> Value {
    json!({
        "problemId": format!("-{n}_1606920000000V2"), "displayId": format!("P-{n}"),
        "title": format!("problem {n}"), "status": if n % 2 == 0 { "OPEN" } else { "CLOSED" },
        "severityLevel": "PERFORMANCE", "impactLevel": "SERVICES",
        "startTime": 1_700_000_000_000_i64, "endTime": if n % 2 == 0 { -1 } else { 1_700_000_600_000_i64 },
        "impactedEntities": [{"entityId": {"id": "SERVICE-1", "type": "SERVICE"}, "name": format!("svc-{n}")}],
        "affectedEntities": [], "managementZones": [], "problemFilters": []
    })
}

#[tokio::test]
async fn v2_feed_follows_every_page_with_the_key_alone() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/e/env-1/api/v2/problems"))
        .and(query_param("from", "now-1w"))
        .and(query_param("pageSize", "500"))
        .and(query_param_is_missing("nextPageKey"))
        .and(header("authorization", format!("Api-Token {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"totalCount": 5, "pageSize": 2, "nextPageKey": "KEY/1+=", "problems": [v2_problem(1), v2_problem(2)]}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/e/env-1/api/v2/problems"))
        .and(query_param("nextPageKey", "KEY/1+="))
        .and(query_param_is_missing("from"))
        .and(query_param_is_missing("pageSize"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"totalCount": 5, "nextPageKey": "KEY2", "problems": [v2_problem(3), v2_problem(4)]}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/e/env-1/api/v2/problems"))
        .and(query_param("nextPageKey", "KEY2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"totalCount": 5, "nextPageKey": null, "problems": [v2_problem(5)]}),
        ))
        .expect(1)
        .mount(&server)
        .await;

    // A Managed tenant URL with a trailing slash.
    let problems = client(&server, "/e/env-1/", ApiVersion::V2)
        .feed(Window::Week)
        .await
        .unwrap();
    let ids: Vec<&str> = problems
        .iter()
        .map(|p| p["displayId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["P-1", "P-2", "P-3", "P-4", "P-5"]);
}

#[tokio::test]
async fn v1_feed_and_details_use_the_v1_paths() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/problem/feed"))
        .and(query_param("relativeTime", "3days"))
        .and(header(
            "authorization",
            format!("Api-Token {TOKEN}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"result": {
            "problems": [{"id": "-9_1V2", "displayName": "9", "status": "OPEN", "endTime": -1}],
            "monitored": {"APPLICATION": 1}
        }})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/problem/details/-9_1V2"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"result": {"id": "-9_1V2", "status": "OPEN"}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server, "", ApiVersion::V1);
    let feed = c.feed(Window::ThreeDays).await.unwrap();
    assert_eq!(feed[0]["displayName"], "9");
    let details = c.problem("-9_1V2").await.unwrap();
    assert_eq!(details, json!({"id": "-9_1V2", "status": "OPEN"}));
}

#[tokio::test]
async fn comments_carry_the_right_body_for_each_version() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v2/problems/-5_1V2/comments"))
        .and(header("content-type", "application/json"))
        .and(body_json(
            json!({"message": "script exit 0", "context": "hub: script"}),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "c1"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v1/problem/details/-5_1V2/comments"))
        .and(body_json(
            json!({"comment": "script exit 0", "user": "hub", "context": "hub: script"}),
        ))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    for version in [ApiVersion::V2, ApiVersion::V1] {
        client(&server, "", version)
            .comment("-5_1V2", "script exit 0", "hub: script", "hub")
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn path_segments_are_encoded() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(|req: &Request| {
            ResponseTemplate::new(200).set_body_json(json!({"path": req.url.path()}))
        })
        .mount(&server)
        .await;
    let answer = client(&server, "", ApiVersion::V2)
        .problem("../../x?y#z")
        .await
        .unwrap();
    assert_eq!(answer["path"], "/api/v2/problems/..%2F..%2Fx%3Fy%23z");
}

#[tokio::test]
async fn a_429_waits_for_the_rate_limit_reset() {
    let server = MockServer::start().await;
    let reset_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros()
        + 300_000;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("X-RateLimit-Reset", reset_us.to_string().as_str())
                .set_body_json(json!({"error": {"code": 429, "message": "Too many requests"}})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(v2_problem(2)))
        .mount(&server)
        .await;
    let started = Instant::now();
    let p = client(&server, "", ApiVersion::V2)
        .problem("-2_1606920000000V2")
        .await
        .unwrap();
    assert_eq!(p["displayId"], "P-2");
    // Behaviour, not speed: the retry did not go out before the reset the server named.
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed_and_give_up_after_max_attempts() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(v2_problem(4)))
        .mount(&server)
        .await;
    let p = client(&server, "", ApiVersion::V2)
        .problem("x")
        .await
        .unwrap();
    assert_eq!(p["displayId"], "P-4");
    assert_eq!(server.received_requests().await.unwrap().len(), 3);

    let down = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500).set_body_string("boom"))
        .mount(&down)
        .await;
    let e = client(&down, "", ApiVersion::V2)
        .problem("x")
        .await
        .unwrap_err();
    assert!(
        matches!(e, DynatraceError::Status { status: 500, .. }),
        "{e}"
    );
    assert_eq!(down.received_requests().await.unwrap().len(), 4);
}

#[tokio::test]
async fn a_401_fails_at_once_with_dynatraces_message() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"error": {"code": 401, "message": "Token Authentication failed"}}),
        ))
        .mount(&server)
        .await;
    let e = client(&server, "", ApiVersion::V2)
        .problem("x")
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Dynatrace answered 401: Token Authentication failed"
    );
    assert!(!e.is_transient());
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_hanging_tenant_times_out() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(10)))
        .mount(&server)
        .await;
    let c = client_with(&server.uri(), ApiVersion::V2, 1, 1);
    let e = c.problem("x").await.unwrap_err();
    assert!(matches!(e, DynatraceError::Timeout(1)), "{e}");
}

// ---- the CLI, end to end ----

async fn tenant_with_feed() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/problems"))
        .and(query_param("from", "now-1d"))
        .and(header(
            "authorization",
            format!("Api-Token {TOKEN}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "totalCount": 3,
            "problems": [v2_problem(2), v2_problem(3), {
                "problemId": "-85_1606920000000V2", "displayId": "P-85",
                "title": "<script>alert(1)</script>\u{1b}[2J", "status": "OPEN",
                "severityLevel": "AVAILABILITY", "impactLevel": "INFRASTRUCTURE",
                "startTime": 1_700_000_000_000_i64, "endTime": -1, "impactedEntities": []
            }]
        })))
        .mount(&server)
        .await;
    server
}

fn poll_dir(server: &MockServer) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(json!({"dynatrace": {"tenant": server.uri(), "api_token": TOKEN}}));
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    dir
}

#[tokio::test]
async fn poll_prints_the_feed_with_what_hub_received() {
    let server = tenant_with_feed().await;
    let dir = poll_dir(&server);
    // hub received a notification for problem 85 (by ProblemID number), not for the others.
    let config: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    let mut hub = support::Hub::start_in(dir.path(), &config, &[]);
    let r = support::post(
        &support::client(),
        &hub.url("/"),
        support::fixture("dynatrace/minimal-open.json"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    hub.kill9();

    let out = hub_command(dir.path())
        .args(["poll", "--relative", "day"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("IN HUB"),
        "{stdout}"
    );
    let row = |id: &str| {
        *lines
            .iter()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id}: {stdout}"))
    };
    assert!(
        row("P-2 ").contains("still open") && row("P-2 ").trim_end().ends_with("NO"),
        "{stdout}"
    );
    assert!(
        row("P-3 ").contains("2023-11-14 22:23") && row("P-3 ").contains("svc-3"),
        "{stdout}"
    );
    assert!(row("P-85").trim_end().ends_with("yes"), "{stdout}");
    assert!(
        !stdout.contains('\u{1b}'),
        "control characters are not printed"
    );
    let footer = lines.last().unwrap();
    assert!(footer.contains("3 problem(s) in the last day"), "{footer}");
    assert!(footer.contains("by status: CLOSED 1, OPEN 2"), "{footer}");
    assert!(footer.contains("INFRASTRUCTURE 1, SERVICES 2"), "{footer}");
    assert!(footer.contains("not received by hub: 2"), "{footer}");

    let out = hub_command(dir.path())
        .args(["poll", "--relative", "day", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["window"], "day");
    assert_eq!(doc["problems"].as_array().unwrap().len(), 3);
    assert_eq!(doc["problems"][2]["received_by_hub"], true);
    assert_eq!(doc["problems"][0]["end_ms"], Value::Null);
    assert_eq!(doc["counts"]["status"], json!({"CLOSED": 1, "OPEN": 2}));
}

#[tokio::test]
async fn poll_reports_bad_windows_and_api_failures_in_one_line() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"error": {"code": 401, "message": "Token Authentication failed"}}),
        ))
        .mount(&server)
        .await;
    let dir = poll_dir(&server);

    let out = hub_command(dir.path())
        .args(["poll", "--relative", "fortnight"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("hour, 2hours, 6hours, day, 3days, week, month"),
        "{stderr}"
    );

    let out = hub_command(dir.path())
        .args(["poll", "--relative", "week"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("Dynatrace answered 401: Token Authentication failed"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(TOKEN) && !stderr.contains("panicked"),
        "{stderr}"
    );

    // Nobody listening at all, tried three times: one line still, each retry with HUB_LOG=warn.
    let closed = config_with(
        json!({"dynatrace": {"tenant": "http://127.0.0.1:9", "api_token": TOKEN, "max_attempts": 3}}),
    );
    std::fs::write(dir.path().join("config.json"), closed.to_string()).unwrap();
    let out = hub_command(dir.path()).arg("poll").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot reach Dynatrace"), "{stderr}");
    assert!(!stderr.contains(TOKEN));
    let out = hub_command(dir.path())
        .arg("poll")
        .env("HUB_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 3, "{stderr}");
}

#[tokio::test]
async fn problem_shows_one_problem() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/problems/-3_1606920000000V2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(v2_problem(3)))
        .mount(&server)
        .await;
    let dir = poll_dir(&server);
    let out = hub_command(dir.path())
        .args(["problem", "-3_1606920000000V2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("P-3 (-3_1606920000000V2)") && stdout.contains("problem 3"),
        "{stdout}"
    );
    assert!(stdout.contains("end        2023-11-14 22:23"), "{stdout}");
    let out = hub_command(dir.path())
        .args(["problem", "--json", "-3_1606920000000V2"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["displayId"], "P-3");
}
