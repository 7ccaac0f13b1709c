//! The other sources over real HTTP: their real captured bodies, their auth and signatures, their
//! own answers, and every malformed variant answered with its error and nothing written.

use serde_json::{json, Value};

use crate::support::{
    self, client, count, eventually, expect_error, fixture, lines, runs, script, Hub,
};

const ROUTING_KEY: &str = "0123456789abcdef0123456789abcdef";

fn start(patch: Value) -> (tempfile::TempDir, Hub) {
    let dir = tempfile::tempdir().unwrap();
    script(
        dir.path(),
        "record.sh",
        r#"printf '%s %s %s\n' "$HUB_SOURCE" "$HUB_STATE" "$HUB_ENTITY_NAME" >> calls.log"#,
    );
    let mut patch = patch;
    patch["actions"] = json!({"page": {"type": "script", "command": ["./record.sh"]}});
    let hub = Hub::start_in(dir.path(), &support::config_with(patch), &[]);
    (dir, hub)
}

async fn send(hub: &Hub, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    client()
        .post(hub.url(path))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_str(&r.text().await.unwrap()).unwrap(),
    )
}

#[tokio::test]
async fn a_source_that_is_not_configured_answers_404_and_stores_nothing() {
    let (dir, hub) = start(json!({}));
    for path in [
        "/hooks/alertmanager",
        "/v2/enqueue",
        "/hooks/pagerduty",
        "/hooks/monasca",
        "/openstack/alerts",
        "/hooks/cloudstack",
    ] {
        let r = send(&hub, path, "{}").await;
        let body = expect_error(r, 404, "not_found").await;
        assert!(
            body["detail"].as_str().unwrap().contains("config.json"),
            "{body}"
        );
    }
    // UCloud reads RetCode, so its answers always carry one.
    let (status, body) = json_of(send(&hub, "/hooks/ucloud", "{}").await).await;
    assert_eq!((status, &body["RetCode"]), (404, &json!(404)), "{body}");
    assert_eq!(count(dir.path()).await, 0);
}

#[tokio::test]
async fn alertmanager_groups_become_one_problem_per_alert_and_resends_run_nothing_twice() {
    let (dir, hub) = start(json!({"sources": {"alertmanager": {"auth": {"bearer": "am-token"}}}}));
    let firing = fixture("alertmanager/webhook-firing.json");
    let post = |token: Option<&'static str>, body: Vec<u8>| {
        let mut r = client()
            .post(hub.url("/hooks/alertmanager"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    // Auth first: nothing is read or written without the token.
    let r = post(None, firing.clone()).await.unwrap();
    assert_eq!(
        r.headers().get("www-authenticate").unwrap(),
        "Bearer realm=\"hub\""
    );
    expect_error(r, 401, "unauthorized").await;
    expect_error(
        post(Some("wrong"), firing.clone()).await.unwrap(),
        401,
        "unauthorized",
    )
    .await;

    let (status, body) = json_of(post(Some("am-token"), firing.clone()).await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stored"], 2);
    assert_eq!(
        body["files"],
        json!([
            "alertmanager-29545e98136dc911-OPEN.json",
            "alertmanager-06515bc5679c3ec6-OPEN.json"
        ])
    );
    let file = dir
        .path()
        .join("problems_received/alertmanager-29545e98136dc911-OPEN.json");
    assert_eq!(std::fs::read(file).unwrap(), firing, "raw bytes");

    // group_interval re-send: answered 200, nothing new.
    let (status, body) = json_of(post(Some("am-token"), firing.clone()).await.unwrap()).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("duplicate")));
    let calls = dir.path().join("calls.log");
    eventually("a run per alert", async || lines(&calls).len() == 2).await;
    let mut called = lines(&calls);
    called.sort();
    assert_eq!(
        called,
        [
            "alertmanager OPEN host1:9100",
            "alertmanager OPEN host2:9100"
        ]
    );

    let resolved = fixture("alertmanager/webhook-resolved.json");
    let (status, _) = json_of(post(Some("am-token"), resolved).await.unwrap()).await;
    assert_eq!(status, 200);
    eventually("the resolved runs", async || {
        lines(&calls)
            .iter()
            .filter(|l| l.contains("RESOLVED"))
            .count()
            >= 1
    })
    .await;
    let r = runs(dir.path()).await;
    assert!(r.iter().all(|r| r.action == "page"), "{r:?}");
    assert_eq!(count(dir.path()).await, 2 + resolved_alerts());
}

fn resolved_alerts() -> i64 {
    let v: Value = serde_json::from_slice(&fixture("alertmanager/webhook-resolved.json")).unwrap();
    v["alerts"].as_array().unwrap().len() as i64
}

#[tokio::test]
async fn malformed_alertmanager_bodies_get_their_error_and_write_nothing() {
    let (dir, hub) = start(json!({"sources": {"alertmanager": {}}}));
    let firing: Value =
        serde_json::from_slice(&fixture("alertmanager/webhook-firing.json")).unwrap();
    let variant = |f: &dyn Fn(&mut Value)| {
        let mut v = firing.clone();
        f(&mut v);
        v.to_string()
    };
    let cases: Vec<(String, u16, &str)> = vec![
        (
            String::from_utf8(fixture("alertmanager/webhook-firing.json")).unwrap()[..120]
                .to_string(),
            400,
            "invalid_json",
        ),
        (
            variant(&|v| v["version"] = json!("3")),
            422,
            "invalid_notification",
        ),
        (
            variant(&|v| v["alerts"] = json!([])),
            422,
            "invalid_notification",
        ),
        (
            variant(&|v| v["alerts"][1]["fingerprint"] = json!(null)),
            422,
            "invalid_notification",
        ),
        (
            variant(&|v| v["alerts"][0]["status"] = json!("pending")),
            422,
            "invalid_notification",
        ),
        (
            variant(&|v| v["alerts"][0]["labels"] = json!("x")),
            422,
            "invalid_notification",
        ),
        ("[1,2]".to_string(), 422, "invalid_notification"),
    ];
    for (body, status, error) in cases {
        let r = send(&hub, "/hooks/alertmanager", body.clone()).await;
        expect_error(r, status, error).await;
    }
    // A hostile fingerprint stays inside the folder.
    let body = variant(&|v| v["alerts"][0]["fingerprint"] = json!("../../x"));
    let (status, body) = json_of(send(&hub, "/hooks/alertmanager", body).await).await;
    assert_eq!(status, 200);
    assert_eq!(body["files"][0], "alertmanager-___.._x-OPEN.json");
    assert_eq!(count(dir.path()).await, 2);
}

#[tokio::test]
async fn pagerduty_events_are_validated_and_answered_as_pagerduty_does() {
    let (dir, hub) = start(json!({"sources": {"pagerduty": {
        "routing_keys": [ROUTING_KEY], "rate_limit_per_minute": 4}}}));
    let trigger = fixture("pagerduty/alertmanager-trigger.json");
    let (status, body) = json_of(send(&hub, "/v2/enqueue", trigger.clone()).await).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body,
        json!({"status": "success", "message": "Event processed",
               "dedup_key": "b0eb9e4139f8d221c9765c30c11a75f7a4f5579d77a1787168cf38ae788ccb83"})
    );

    let t: Value = serde_json::from_slice(&trigger).unwrap();
    let variant = |f: &dyn Fn(&mut Value)| {
        let mut v = t.clone();
        f(&mut v);
        v.to_string()
    };
    let invalid = [
        (
            variant(&|v| v["routing_key"] = json!("short")),
            "'routing_key' must be 32 characters",
        ),
        (
            variant(&|v| v["routing_key"] = json!("ffffffffffffffffffffffffffffffff")),
            "not one of this hub's integration keys",
        ),
        (
            variant(&|v| v["event_action"] = json!("explode")),
            "'event_action'",
        ),
        (
            variant(&|v| v["payload"]["summary"] = json!("")),
            "'payload.summary' is missing",
        ),
        (
            variant(&|v| v["payload"]["summary"] = json!("x".repeat(1025))),
            "longer than 1024",
        ),
        (
            variant(&|v| v["payload"]["severity"] = json!("fatal")),
            "'payload.severity' must be one of",
        ),
        (
            variant(&|v| {
                v["payload"].as_object_mut().unwrap().remove("source");
            }),
            "'payload.source'",
        ),
        (
            variant(&|v| {
                v["event_action"] = json!("resolve");
                v.as_object_mut().unwrap().remove("dedup_key");
            }),
            "'dedup_key' is required",
        ),
        (
            variant(&|v| v["dedup_key"] = json!("k".repeat(256))),
            "'dedup_key' is longer than 255",
        ),
    ];
    for (body, expected) in invalid {
        let (status, answer) = json_of(send(&hub, "/hooks/pagerduty", body).await).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["status"], "invalid event");
        assert_eq!(answer["message"], "Event object is invalid");
        let errors = answer["errors"].to_string();
        assert!(errors.contains(expected), "{expected} not in {errors}");
    }
    assert_eq!(count(dir.path()).await, 1, "invalid events store nothing");

    // acknowledge and resolve land on the same problem.
    let resolve = fixture("pagerduty/alertmanager-resolve.json");
    let (status, _) = json_of(send(&hub, "/v2/enqueue", resolve).await).await;
    assert_eq!(status, 202);
    let db = support::db(dir.path()).await;
    let rows = db
        .rows(
            "SELECT problem_key, state FROM notifications ORDER BY id",
            &[],
        )
        .await;
    assert_eq!(
        rows[1].get::<String>("problem_key"),
        rows[0].get::<String>("problem_key")
    );
    assert_eq!(
        (
            rows[0].get::<String>("state"),
            rows[1].get::<String>("state")
        ),
        ("OPEN".to_string(), "RESOLVED".to_string())
    );

    // Past the per-key rate: 429 as PagerDuty answers it.
    let mut statuses = Vec::new();
    for i in 0..4 {
        let body = variant(&|v| v["dedup_key"] = json!(format!("burst-{i}")));
        statuses.push(send(&hub, "/v2/enqueue", body).await.status().as_u16());
    }
    assert_eq!(statuses, [202, 202, 429, 429], "4 a minute, 2 used already");
}

#[tokio::test]
async fn monasca_alarms_on_both_paths_with_an_openstack_token() {
    let (dir, hub) = start(json!({"sources": {"monasca": {"auth": {"token": "os-token"}}}}));
    let alarm = fixture("monasca/alarm.json");
    let r = send(&hub, "/hooks/monasca", alarm.clone()).await;
    assert_eq!(
        r.headers().get("www-authenticate").unwrap(),
        "X-Auth-Token realm=\"hub\""
    );
    expect_error(r, 401, "unauthorized").await;
    let post = |path: &'static str, body: Vec<u8>| {
        client()
            .post(hub.url(path))
            .header("content-type", "application/json")
            .header("X-Auth-Token", "os-token")
            .body(body)
            .send()
    };
    assert_eq!(post("/hooks/monasca", alarm).await.unwrap().status(), 200);
    let ok = fixture("monasca/ok.json");
    let (status, body) = json_of(post("/openstack/alerts", ok).await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["files"][0],
        "monasca-20a54a65-44b8-4ac9-a398-1f2d888827d2-RESOLVED.json"
    );
    let calls = dir.path().join("calls.log");
    eventually("both state changes", async || lines(&calls).len() == 2).await;
    assert!(lines(&calls).contains(&"monasca OPEN compute-1".to_string()));

    let bad = json!({"alarm_name": "x", "state": "ALARM"}).to_string();
    let r = post("/hooks/monasca", bad.into_bytes()).await.unwrap();
    let body = expect_error(r, 422, "invalid_notification").await;
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("alarm_id is missing"));
    let bad = json!({"alarm_id": "a", "alarm_name": "x", "state": "BROKEN"}).to_string();
    expect_error(
        post("/hooks/monasca", bad.into_bytes()).await.unwrap(),
        422,
        "invalid_notification",
    )
    .await;
    assert_eq!(count(dir.path()).await, 2);
}

fn cloudstack_vector() -> Value {
    let all: Value = serde_json::from_slice(&fixture("cloudstack/signature-vectors.json")).unwrap();
    all[1].clone()
}

#[tokio::test]
async fn cloudstack_deliveries_must_be_signed_and_are_kept_once_per_event() {
    let v = cloudstack_vector();
    let (dir, hub) = start(json!({"sources": {"cloudstack": {"secret": v["secret"]}}}));
    let body = v["body"].as_str().unwrap().to_string();
    let deliver = |signature: Option<&str>, body: String| {
        let mut r = client().post(hub.url("/hooks/cloudstack")).body(body);
        for (k, value) in v["headers"].as_object().unwrap() {
            if k != "X-CS-Signature" {
                r = r.header(k.as_str(), value.as_str().unwrap());
            }
        }
        if let Some(s) = signature {
            r = r.header("X-CS-Signature", s);
        }
        r.send()
    };
    let good = v["x_cs_signature"].as_str().unwrap();
    let r = deliver(None, body.clone()).await.unwrap();
    expect_error(r, 401, "unauthorized").await;
    let r = deliver(Some("bm90IGl0"), body.clone()).await.unwrap();
    expect_error(r, 401, "unauthorized").await;
    let r = deliver(Some(good), format!("{body} ")).await.unwrap();
    let detail = expect_error(r, 401, "unauthorized").await;
    assert!(detail["detail"]
        .as_str()
        .unwrap()
        .contains("does not match"));
    assert_eq!(count(dir.path()).await, 0);

    // CloudStack tries three times back to back; only exactly 200 counts, and one is kept.
    for expected in ["stored", "duplicate", "duplicate"] {
        let (status, answer) = json_of(deliver(Some(good), body.clone()).await.unwrap()).await;
        assert_eq!(
            (status, answer["status"].as_str()),
            (200, Some(expected)),
            "{answer}"
        );
    }
    assert_eq!(count(dir.path()).await, 1);
    let db = support::db(dir.path()).await;
    let row = db
        .row("SELECT problem_key, state, facts FROM notifications", &[])
        .await;
    assert_eq!(
        row.get::<String>("problem_key"),
        "0f5c3a8e-7d21-4c1b-9a4e-2b6d8f0e1a3c"
    );
    assert_eq!(row.get::<String>("state"), "COMPLETED");
    let facts: String = row.get("facts");
    assert!(
        facts.contains("event:VM.START")
            && facts.contains("account:a1b2c3d4-0000-4000-8000-000000000001"),
        "{facts}"
    );
}

#[tokio::test]
async fn ucloud_gets_its_retcode_only_once_the_alarm_is_stored() {
    let (dir, hub) = start(json!({"sources": {"ucloud": {}}}));
    let alarm = fixture("ucloud/alarm.json");
    for _ in 0..2 {
        let (status, body) = json_of(send(&hub, "/hooks/ucloud", alarm.clone()).await).await;
        assert_eq!(status, 200);
        assert_eq!(
            body,
            json!({"SessionID": "07a89fb8-5ee0-11e6-b059-00ffbeabee13", "RetCode": 0})
        );
    }
    let (status, _) =
        json_of(send(&hub, "/hooks/ucloud", fixture("ucloud/recovery.json")).await).await;
    assert_eq!(status, 200);
    assert_eq!(
        count(dir.path()).await,
        2,
        "the same session is stored once"
    );
    let calls = dir.path().join("calls.log");
    eventually("alarm and recovery", async || lines(&calls).len() == 2).await;
    let mut called = lines(&calls);
    called.sort();
    assert_eq!(
        called,
        ["ucloud OPEN uhost-xxxx", "ucloud RESOLVED uhost-xxxx"]
    );

    for (body, status) in [
        (
            json!({"SessionID": "s-1", "ResourceId": "r", "MetricName": "m"}).to_string(),
            422,
        ),
        (
            json!({"SessionID": "s-2", "ResourceId": "r", "MetricName": "m", "AlarmTime": "soon"})
                .to_string(),
            422,
        ),
        ("{\"SessionID\": \"s-3\"".to_string(), 400),
    ] {
        let (got, answer) = json_of(send(&hub, "/hooks/ucloud", body).await).await;
        assert_eq!(got, status, "{answer}");
        assert_ne!(answer["RetCode"], 0, "{answer}");
        assert!(answer["Message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(count(dir.path()).await, 2);
}

#[test]
fn bad_sources_config_is_reported_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = support::config_with(json!({"sources": {
        "nagios": {},
        "dynatrace": {},
        "pagerduty": {"routing_keys": ["short"], "rate": 1},
        "alertmanager": {"auth": {"bearer": "a", "basic": {}}},
        "monasca": {"auth": {"token_env": "NOT_SET_ANYWHERE"}}
    }}));
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let out = support::hub_command(dir.path())
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "sources.nagios: unknown source",
        "sources.dynatrace: Dynatrace is always on",
        "sources.pagerduty.routing_keys: every routing key is 32 characters",
        "sources.pagerduty.rate: unknown key",
        "sources.alertmanager.auth: give exactly one of",
        "sources.monasca.auth.token_env: environment variable NOT_SET_ANYWHERE is not set",
    ] {
        assert!(err.contains(expected), "{expected:?} not in:\n{err}");
    }
}
