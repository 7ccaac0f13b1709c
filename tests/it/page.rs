//! The status page, problem pages, feed, JSON API and metrics over real HTTP.

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{
    self, client, eventually, expect_error, fixture, post, runs, script, Hub, PASSWORD, USER,
};

const HOSTILE: &str = "<script>window.__xss=1</script><img src=x onerror=\"window.__xss=2\">";

/// A notification whose entity and title are hostile HTML.
pub fn hostile_notification() -> String {
    json!({
        "State": "OPEN", "ProblemID": "P-31337", "PID": "-31337_1V2",
        "ProblemTitle": format!("CPU {HOSTILE}"),
        "ImpactedEntities": [{"type": "HOST", "name": HOSTILE, "entity": "HOST-31337"}]
    })
    .to_string()
}

pub fn feed_server_problems() -> Value {
    json!({"problems": [
        {"problemId": "-31337_1V2", "displayId": "P-31337", "title": format!("CPU {HOSTILE}"),
         "status": "OPEN", "severityLevel": "PERFORMANCE", "impactLevel": "INFRASTRUCTURE",
         "startTime": 1_700_000_000_000_i64, "endTime": -1, "impactedEntities": []},
        {"problemId": "-7_1V2", "displayId": "P-7", "title": "Disk full", "status": "CLOSED",
         "severityLevel": "AVAILABILITY", "impactLevel": "INFRASTRUCTURE",
         "startTime": 1_700_000_000_000_i64, "endTime": 1_700_000_600_000_i64, "impactedEntities": []}
    ]})
}

/// A hub with a script action and a stand-in tenant that serves a feed and the problem's details.
pub async fn hub_with_tenant() -> (tempfile::TempDir, Hub, MockServer) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/problems"))
        .respond_with(ResponseTemplate::new(200).set_body_json(feed_server_problems()))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/problems/-31337_1V2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "problemId": "-31337_1V2", "displayId": "P-31337", "title": HOSTILE, "status": "OPEN",
            "startTime": 1_700_000_000_000_i64, "endTime": -1,
            "impactedEntities": [{"entityId": {"id": "HOST-31337", "type": "HOST"}, "name": HOSTILE}]
        })))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "ok.sh", "echo \"$HUB_ENTITY_NAME\"");
    let config = support::config_with(json!({
        "dynatrace": {"tenant": server.uri(), "api_token": "dt0c01.T", "max_attempts": 1},
        "actions": {"page": {"type": "script", "command": ["./ok.sh"]}}
    }));
    let hub = Hub::start_in(dir.path(), &config, &[]);
    let r = post(&client(), &hub.url("/"), hostile_notification())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually("the run", async || {
        runs(dir.path())
            .await
            .first()
            .is_some_and(|r| r.status == "succeeded")
    })
    .await;
    (dir, hub, server)
}

/// Waits until the first run's second attempt (a replay) has succeeded.
pub async fn second_attempt_succeeded(dir: &std::path::Path) {
    eventually("the replayed run to succeed", async || {
        let r = runs(dir).await;
        r[0].attempts == 2 && r[0].status == "succeeded"
    })
    .await;
}

async fn get(hub: &Hub, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let r = client()
        .get(hub.url(path))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    (
        r.status().as_u16(),
        r.headers().clone(),
        r.text().await.unwrap(),
    )
}

#[tokio::test]
async fn the_page_needs_credentials_and_viewer_credentials_replace_the_webhook_s() {
    let (_dir, hub) = support::start(json!({}));
    for path in [
        "/",
        "/feed?relative=day",
        "/problems/x",
        "/api/problems",
        "/api/stats",
        "/metrics",
    ] {
        let r = client().get(hub.url(path)).send().await.unwrap();
        assert_eq!(
            r.headers().get("www-authenticate").unwrap(),
            "Basic realm=\"hub\"",
            "{path}"
        );
        expect_error(r, 401, "unauthorized").await;
    }
    let (status, _, _) = get(&hub, "/").await;
    assert_eq!(status, 200);

    let (_dir, hub) =
        support::start(json!({"status_page": {"username": "ops", "password": "viewer-pw"}}));
    let (status, _, _) = get(&hub, "/").await;
    assert_eq!(status, 401, "webhook credentials no longer open the page");
    let r = client()
        .get(hub.url("/"))
        .basic_auth("ops", Some("viewer-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn the_status_page_escapes_everything_and_counts_what_happened() {
    let (_dir, hub, _server) = hub_with_tenant().await;
    // A test notification, a redelivery and a rejected one, for the counters.
    let c = client();
    post(
        &c,
        &hub.url("/"),
        fixture("dynatrace/test-notification.json"),
    )
    .send()
    .await
    .unwrap();
    post(&c, &hub.url("/"), hostile_notification())
        .send()
        .await
        .unwrap();
    post(&c, &hub.url("/"), "{\"State\": 1}")
        .send()
        .await
        .unwrap();

    let (status, headers, html) = get(&hub, "/").await;
    assert_eq!(status, 200);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert!(
        !html.contains("<script>") && !html.contains("<img"),
        "raw HTML in the page"
    );
    assert!(
        html.contains("&lt;script&gt;window.__xss=1&lt;"),
        "escaped title shown"
    );
    assert!(
        !html.contains("http://") || !html.contains("src=\"http"),
        "no external asset"
    );
    assert!(html.contains("<svg") && html.contains("id=\"chart\""));
    let sources = html.split("id=\"sources\"").nth(1).unwrap();
    let row = sources.split("</tr>").nth(1).unwrap();
    let cells: Vec<&str> = row
        .split("<td class=\"num\">")
        .skip(1)
        .map(|c| c.split('<').next().unwrap())
        .collect();
    assert_eq!(
        cells,
        ["1", "1", "1", "1"],
        "received, test, duplicate, rejected: {row}"
    );
    assert!(
        html.contains("href=\"/feed?relative=week\"")
            || html.contains("href=\"&#x2F;feed?relative=week\"")
    );
    assert!(html.contains("version 0.1.0") && html.contains("problems_received"));
}

#[tokio::test]
async fn the_feed_works_at_both_urls_and_survives_a_failing_tenant() {
    let (_dir, hub, server) = hub_with_tenant().await;
    for url in ["/?relativeTime=week", "/feed?relative=week"] {
        let (status, _, html) = get(&hub, url).await;
        assert_eq!(status, 200, "{url}");
        assert!(
            html.contains("2 problem(s) in the last week; 1 not received by hub"),
            "{html}"
        );
        assert!(html.contains("still open") && html.contains("2023-11-14 22:23"));
        assert!(!html.contains("<script>"));
    }
    let (status, _, body) = get(&hub, "/feed?relative=%3Cscript%3Ealert(1)%3C/script%3E").await;
    assert_eq!(status, 400);
    assert!(
        !body.contains("script"),
        "an invalid window is never reflected: {body}"
    );

    server.reset().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"error": {"code": 401, "message": "Token <b>expired</b>"}})),
        )
        .mount(&server)
        .await;
    let (status, _, html) = get(&hub, "/feed?relative=day").await;
    assert_eq!(status, 200, "the page renders when Dynatrace fails");
    assert!(
        html.contains("id=\"feed-error\"") && html.contains("Token &lt;b&gt;expired"),
        "{html}"
    );
    let r = client()
        .get(hub.url("/api/feed?relative=day"))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    expect_error(r, 502, "dynatrace_unavailable").await;
}

#[tokio::test]
async fn the_problem_page_shows_everything_and_replays_only_from_itself() {
    let (dir, hub, _server) = hub_with_tenant().await;
    let (status, _, html) = get(&hub, "/problems/P-31337").await;
    assert_eq!(status, 200);
    assert!(!html.contains("<script>") && !html.contains("<img"));
    assert!(html.contains("still open"), "details with readable times");
    assert!(
        html.contains("exit_code: 0"),
        "outcome shown as text: {html}"
    );
    assert!(
        !html.contains("&quot;exit_code&quot;"),
        "not a JSON blob: {html}"
    );
    assert!(
        html.contains("id=\"source-link\"") && html.contains("problemdetails;pid=-31337_1V2"),
        "the link to the problem in Dynatrace: {html}"
    );
    assert!(html.contains("open for"), "its duration: {html}");
    // Replay asks first: the problem page only links to a confirmation page, which has the form.
    assert!(!html.contains("<form"), "no one-click replay: {html}");
    let (status, _, confirm) = get(
        &hub,
        "/problems/P-31337/replay?source=dynatrace&action=page",
    )
    .await;
    assert_eq!(status, 200);
    assert!(confirm.contains("Yes, run 1 run(s) again"), "{confirm}");
    let (status, _, _) = get(
        &hub,
        "/problems/P-31337/replay?source=dynatrace&action=nope",
    )
    .await;
    assert_eq!(status, 409, "an action that did not run");
    let csrf = confirm
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let (status, _, body) = get(&hub, "/problems/P-404").await;
    assert_eq!(status, 404);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "not_found",
        "an API client gets JSON"
    );
    let r = client()
        .get(hub.url("/problems/%3Cb%3EP-404"))
        .basic_auth(USER, Some(PASSWORD))
        .header("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r
        .headers()
        .get("content-type")
        .is_some_and(|c| c.to_str().unwrap().starts_with("text/html")));
    let page = r.text().await.unwrap();
    assert!(
        page.contains("hub has received no notification for this problem")
            && !page.contains("<b>P-404"),
        "a browser gets a page: {page}"
    );

    let replay = |token: &str, origin: Option<&str>| {
        let mut r = client()
            .post(hub.url("/problems/P-31337/replay?source=dynatrace"))
            .basic_auth(USER, Some(PASSWORD))
            .form(&[("csrf", token)]);
        if let Some(o) = origin {
            r = r.header("Origin", o);
        }
        r.send()
    };
    let r = replay("forged", None).await.unwrap();
    expect_error(r, 403, "forbidden").await;
    let r = replay(&csrf, Some("http://evil.example")).await.unwrap();
    expect_error(r, 403, "forbidden").await;
    assert_eq!(runs(dir.path()).await[0].attempts, 1, "nothing ran again");

    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Without the confirmation nothing runs: the browser is sent to the confirmation page.
    let r = no_redirect
        .post(hub.url("/problems/P-31337/replay?source=dynatrace"))
        .basic_auth(USER, Some(PASSWORD))
        .header("Origin", hub.base_url.clone())
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "/problems/P-31337/replay?source=dynatrace"
    );
    // Nothing must run, which no condition can show: a wait long enough for a run to start.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(runs(dir.path()).await[0].attempts, 1, "nothing ran again");
    let r = no_redirect
        .post(hub.url("/problems/P-31337/replay?source=dynatrace"))
        .basic_auth(USER, Some(PASSWORD))
        .header("Origin", hub.base_url.clone())
        .form(&[
            ("csrf", csrf.as_str()),
            ("confirm", "yes"),
            ("action", "page"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    second_attempt_succeeded(dir.path()).await;
    let db = support::db(dir.path()).await;
    assert_eq!(db.count("action_attempts WHERE manual = TRUE").await, 1);
}

#[tokio::test]
async fn the_api_mirrors_the_page_and_metrics_are_prometheus_text() {
    let (dir, hub, _server) = hub_with_tenant().await;
    let api = |path: &str| {
        client()
            .get(hub.url(path))
            .basic_auth(USER, Some(PASSWORD))
            .send()
    };
    let list: Value = api("/api/problems")
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .parse::<Value>()
        .unwrap();
    assert_eq!(list["problems"][0]["problem_key"], "P-31337");
    assert_eq!(list["problems"][0]["runs_succeeded"], 1);
    let one: Value = api("/api/problems/P-31337")
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .parse::<Value>()
        .unwrap();
    assert_eq!(one["runs"][0]["outcome"]["exit_code"], 0, "{one}");
    assert_eq!(one["details"]["displayId"], "P-31337");
    let feed: Value = api("/api/feed?relative=week")
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .parse::<Value>()
        .unwrap();
    assert_eq!(feed["problems"][0]["received_by_hub"], true);
    assert_eq!(feed["problems"][1]["received_by_hub"], false);
    let r = api("/api/feed?relative=fortnight").await.unwrap();
    expect_error(r, 400, "invalid_window").await;
    let r = api("/api/problems/P-1?source=%3Cscript%3E").await.unwrap();
    let body = expect_error(r, 400, "invalid_source").await;
    assert!(!body.to_string().contains("script"), "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("alertmanager"),
        "{body}"
    );
    let r = api("/api/problems/nope").await.unwrap();
    expect_error(r, 404, "not_found").await;
    let stats: Value = api("/api/stats")
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .parse::<Value>()
        .unwrap();
    assert_eq!(stats["sources"][0]["received"], 1);
    assert_eq!(stats["actions"][0]["succeeded"], 1);

    let replay = client()
        .post(hub.url("/api/problems/P-31337/replay"))
        .basic_auth(USER, Some(PASSWORD));
    let r = replay.try_clone().unwrap().send().await.unwrap();
    expect_error(r, 415, "unsupported_media_type").await;
    let r = replay
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    second_attempt_succeeded(dir.path()).await;

    let r = api("/metrics").await.unwrap();
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().await.unwrap();
    for expected in [
        "hub_notifications_total{source=\"dynatrace\",outcome=\"stored\"} 1",
        "hub_action_runs{action=\"page\",outcome=\"succeeded\"} 1",
        "hub_action_runs_pending 0",
        "hub_ingest_latency_seconds_count 1",
    ] {
        assert!(text.contains(expected), "{expected} not in\n{text}");
    }
}
