//! Enrichment: after the answer, the problem's details land in problems_sent/, retried until they do.

use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{self, client, eventually, fixture, post};

const PID: &str = "-5289617462338813532_1606920000000V2";

/// Waits for a condition the hub reaches on its own (bounded; asserts behaviour, not speed).
fn details() -> Value {
    json!({"problemId": PID, "displayId": "P-2411021", "title": "Response time degradation",
           "status": "OPEN", "severityLevel": "PERFORMANCE", "impactLevel": "SERVICES",
           "startTime": 1_700_000_000_000_i64, "endTime": -1, "impactedEntities": [],
           "affectedEntities": [], "managementZones": [], "problemFilters": []})
}

fn tenant_config(server: &MockServer) -> Value {
    json!({"dynatrace": {"tenant": server.uri(), "api_token": "dt0c01.T", "max_attempts": 1}})
}

#[tokio::test]
async fn details_are_written_after_the_answer_and_tests_are_never_enriched() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/api/v2/problems/{PID}")))
        .and(header("authorization", "Api-Token dt0c01.T"))
        .respond_with(ResponseTemplate::new(200).set_body_json(details()))
        .expect(1)
        .mount(&server)
        .await;
    let (_tmp, hub) = support::start(tenant_config(&server));
    let c = client();
    for body in [
        "dynatrace/test-notification.json",
        "dynatrace/full-open.json",
    ] {
        let r = post(&c, &hub.url("/"), fixture(body)).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let sent = hub.dir.join("problems_sent/P-2411021.json");
    eventually("the enriched file", async || sent.exists()).await;
    let doc: Value = serde_json::from_slice(&std::fs::read(&sent).unwrap()).unwrap();
    assert_eq!(doc["pid"], PID);
    assert_eq!(doc["state"], "OPEN");
    assert_eq!(doc["details"], details());
    assert_eq!(
        support::list_files(&hub.dir.join("problems_sent")),
        ["P-2411021.json"]
    );
    // Only the real problem was fetched; the test notification's PID 99999 never was.
    let paths: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.path().to_string())
        .collect();
    assert_eq!(paths, [format!("/api/v2/problems/{PID}")]);
}

#[tokio::test]
async fn an_unreachable_tenant_keeps_the_problem_pending_across_a_restart() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503).set_body_string("maintenance"))
        .mount(&server)
        .await;
    let (tmp, mut hub) = support::start(tenant_config(&server));
    let r = post(
        &client(),
        &hub.url("/"),
        fixture("dynatrace/full-open.json"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200, "a down tenant never fails the ingest");

    let dir = tmp.path().to_path_buf();
    eventually("a recorded failed attempt", async || {
        let db = support::db(&dir).await;
        let row = db
            .optional_row("SELECT status, attempts, last_error FROM enrichments", &[])
            .await;
        row.is_some_and(|r| {
            r.get::<String>("status") == "pending"
                && r.get::<i64>("attempts") >= 1
                && r.get::<Option<String>>("last_error")
                    .is_some_and(|e| e.contains("503"))
        })
    })
    .await;
    hub.kill9();
    assert!(!hub.dir.join("problems_sent/P-2411021.json").exists());

    // The tenant comes back; a new hub on the same store finishes the job.
    server.reset().await;
    Mock::given(method("GET"))
        .and(path(format!("/api/v2/problems/{PID}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(details()))
        .mount(&server)
        .await;
    let config = support::config_with(tenant_config(&server));
    let hub = support::Hub::start_in(tmp.path(), &config, &[]);
    let sent = hub.dir.join("problems_sent/P-2411021.json");
    eventually("enrichment after the restart", async || sent.exists()).await;
    let db = support::db(tmp.path()).await;
    let row = db
        .row("SELECT status, last_error FROM enrichments", &[])
        .await;
    assert_eq!(row.get::<String>("status"), "done");
    assert_eq!(row.get::<Option<String>>("last_error"), None);
}
