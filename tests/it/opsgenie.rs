//! The Opsgenie Alert API as senders use it, over real HTTP: every request shape of Opsgenie's
//! documentation (and Alertmanager's, as it really sends them), its answers, wrong keys and bad
//! bodies refused with nothing stored, hostile aliases, dedup by alias and opening again, an
//! acknowledgement stopping an escalation, heartbeat pings, and a real Alertmanager's
//! `opsgenie_configs` pointed at hub.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{self, client, count, eventually, expect_error, fixture, lines, script, Hub};

const KEY: &str = "eb243592-faa2-4ba2-a551q-1afdf565c889";
/// The key Alertmanager's fixture config sends.
const AM_KEY: &str = "3f1c9a0e-5b7d-4c2a-9e8f-0a1b2c3d4e5f";

fn start_in(dir: &Path, patch: Value) -> Hub {
    script(
        dir,
        "record.sh",
        r#"printf '%s %s %s\n' "$HUB_SOURCE" "$HUB_STATE" "$HUB_PROBLEM_ID" >> calls.log"#,
    );
    let mut config = json!({
        "sources": {"opsgenie": {"api_keys": [KEY, AM_KEY]}},
        "actions": {"page": {"type": "script", "command": ["./record.sh"]}},
        "heartbeats": {"HeartbeatName": {"every": "1h", "actions": ["page"]}}
    });
    support::merge(&mut config, patch);
    Hub::start_in(dir, &support::config_with(config), &[])
}

/// A request as a fixture's `.headers.json` describes it: method, path, query and headers.
fn request(hub: &Hub, described: &Value, body: Vec<u8>) -> reqwest::RequestBuilder {
    let method = described[":method"].as_str().unwrap();
    let mut url = hub.url(described[":path"].as_str().unwrap());
    if let Some(q) = described[":query"].as_str() {
        url = format!("{url}?{q}");
    }
    let mut r = client().request(method.parse().unwrap(), url).body(body);
    for (k, v) in described.as_object().unwrap() {
        if !k.starts_with(':') {
            r = r.header(k, v.as_str().unwrap());
        }
    }
    r
}

async fn send(hub: &Hub, path: &str, key: Option<&str>, body: &str) -> (u16, Value) {
    let mut r = client()
        .post(hub.url(path))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(k) = key {
        r = r.header("authorization", format!("GenieKey {k}"));
    }
    answer(r.send().await.unwrap()).await
}

async fn answer(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
    )
}

/// Opsgenie's answer to a request it took.
fn assert_taken(status: u16, body: &Value, result: &str) {
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["result"], result, "{body}");
    assert!(body["took"].is_number(), "{body}");
    let id = body["requestId"].as_str().unwrap();
    assert_eq!(id.len(), 36, "{body}");
}

/// `(problem, state)` of every Opsgenie notification, oldest first.
async fn stored(dir: &Path) -> Vec<(String, String)> {
    support::db(dir)
        .await
        .rows(
            "SELECT problem_key, state FROM notifications WHERE source = 'opsgenie' ORDER BY id",
            &[],
        )
        .await
        .iter()
        .map(|r| (r.get("problem_key"), r.get("state")))
        .collect()
}

async fn audit(dir: &Path, action: &str) -> Vec<(String, String, String, String)> {
    support::db(dir)
        .await
        .rows(
            "SELECT actor, via, target, detail FROM audit WHERE action = $1 ORDER BY id",
            &[action.into()],
        )
        .await
        .iter()
        .map(|r| {
            (
                r.get("actor"),
                r.get("via"),
                r.get("target"),
                r.get("detail"),
            )
        })
        .collect()
}

const ALIAS: &str = "Life is too short for no alias";
const AM_ALIAS: &str = "72043ed7fe7de9123fb5f16cb31c1f5b56c537881ff27fe16f15559bf18af850";

#[tokio::test]
async fn every_documented_request_shape_is_taken_and_answered_as_opsgenie_does() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start_in(dir.path(), json!({}));
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/opsgenie");
    let mut names: Vec<String> = std::fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".headers.json").map(str::to_string))
        .collect();
    names.sort();
    assert_eq!(names.len(), 11, "{names:?}");
    let mut unnamed = None;
    for name in &names {
        let described: Value =
            serde_json::from_slice(&fixture(&format!("opsgenie/{name}.headers.json"))).unwrap();
        let body = fixture(&format!("opsgenie/{name}.json"));
        let (status, answered) =
            answer(request(&hub, &described, body).send().await.unwrap()).await;
        let result = if name.contains("ping") {
            "PONG - Heartbeat received"
        } else {
            "Request will be processed"
        };
        assert_taken(status, &answered, result);
        if name == "02-create-minimal" {
            unnamed = answered["requestId"].as_str().map(str::to_string);
        }
    }
    let unnamed = unnamed.unwrap();
    let pair = |k: &str, s: &str| (k.to_string(), s.to_string());
    assert_eq!(
        stored(dir.path()).await,
        [
            pair(ALIAS, "OPEN"),
            // Without an alias, the problem is named by the answer's request id.
            pair(&unnamed, "OPEN"),
            pair(ALIAS, "RESOLVED"),
            pair("656b2ecf-3d7c-4cc8-9ab8-cda95bf4b4b2", "RESOLVED"),
            pair("1791", "RESOLVED"),
            pair(ALIAS, "ACKNOWLEDGED"),
            // The note is no notification; an empty close is one.
            pair("1791", "RESOLVED"),
            pair(AM_ALIAS, "OPEN"),
            pair(AM_ALIAS, "RESOLVED"),
        ]
    );
    // Bytes as sent, under the source's name.
    let files = hub.received_files();
    assert!(
        files.iter().all(|f| f.starts_with("opsgenie-")),
        "{files:?}"
    );
    let first = files
        .iter()
        .find(|f| f.starts_with("opsgenie-Life_is_too_short_for_no_alias-OPEN"))
        .unwrap();
    assert_eq!(
        std::fs::read(hub.received().join(first)).unwrap(),
        fixture("opsgenie/01-create.json")
    );
    // What a create says is the problem's: title, priority as severity, tags, entity. (A close
    // says nothing of them: the group fires again to show them.)
    let (described, body) = (
        fixture("opsgenie/09-alertmanager-create.headers.json"),
        fixture("opsgenie/09-alertmanager-create.json"),
    );
    let described: Value = serde_json::from_slice(&described).unwrap();
    let (status, _) = answer(request(&hub, &described, body).send().await.unwrap()).await;
    assert_eq!(status, 202);
    let (status, problem) =
        support::get_json(&hub, &format!("/api/problems/{}?source=opsgenie", AM_ALIAS)).await;
    assert_eq!(status, 200, "{problem}");
    assert_eq!(problem["open"], true, "opened again: {problem:#}");
    let text = problem.to_string();
    for want in [
        "[FIRING:1] HubE2E (host9:9100 critical)",
        "\"P1\"",
        "env:prod",
        "alertname:HubE2E",
        "responder:team:ops",
        "host9:9100",
    ] {
        assert!(text.contains(want), "{want} missing from {problem:#}");
    }
    // The note is in the audit log, in the request owner's name, unverified.
    assert_eq!(
        audit(dir.path(), "note").await,
        [(
            "Monitoring Script".to_string(),
            "opsgenie".to_string(),
            format!("opsgenie/{ALIAS}"),
            "Action executed via Alert API".to_string()
        )]
    );
    // The ping beat hub's heartbeat of that name.
    let beats = support::db(dir.path())
        .await
        .count("heartbeats WHERE name = 'HeartbeatName'")
        .await;
    assert_eq!(beats, 1);
    // Every method Opsgenie takes for a ping, and hub's own prefix for everything.
    for m in ["GET", "POST", "PUT", "PATCH"] {
        for prefix in ["", "/hooks/opsgenie"] {
            let r = client()
                .request(
                    m.parse().unwrap(),
                    hub.url(&format!("{prefix}/v2/heartbeats/HeartbeatName/ping")),
                )
                .header("authorization", format!("GenieKey {KEY}"))
                .send()
                .await
                .unwrap();
            let (status, body) = answer(r).await;
            assert_taken(status, &body, "PONG - Heartbeat received");
        }
    }
    let (status, body) = send(
        &hub,
        "/hooks/opsgenie/v2/alerts",
        Some(KEY),
        r#"{"message":"via hub's path","alias":"hooked"}"#,
    )
    .await;
    assert_taken(status, &body, "Request will be processed");
    let (status, body) = send(
        &hub,
        "/hooks/opsgenie/v2/alerts/hooked/close?identifierType=alias",
        Some(KEY),
        "{}",
    )
    .await;
    assert_taken(status, &body, "Request will be processed");
    let s = stored(dir.path()).await;
    assert_eq!(
        &s[s.len() - 2..],
        [pair("hooked", "OPEN"), pair("hooked", "RESOLVED")]
    );
}

#[tokio::test]
async fn wrong_keys_and_bad_requests_are_refused_and_nothing_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start_in(dir.path(), json!({"webhook": {"max_body_bytes": 4096}}));
    let create = r#"{"message":"m","alias":"a"}"#;
    // No key, a wrong key, the right key under another scheme: hub's 401, saying what to send.
    for auth in [
        None,
        Some("GenieKey wrong".to_string()),
        Some(format!("Bearer {KEY}")),
        Some("GenieKey ".to_string()),
    ] {
        for path in [
            "/v2/alerts",
            "/v2/alerts/a/close",
            "/v2/alerts/a/acknowledge",
            "/v2/alerts/a/notes",
            "/v2/heartbeats/HeartbeatName/ping",
        ] {
            let mut r = client()
                .post(hub.url(path))
                .header("content-type", "application/json")
                .body(create);
            if let Some(a) = &auth {
                r = r.header("authorization", a);
            }
            let r = r.send().await.unwrap();
            assert_eq!(
                r.headers().get("www-authenticate").unwrap(),
                "GenieKey realm=\"hub\"",
                "{path} {auth:?}"
            );
            let body = expect_error(r, 401, "unauthorized").await;
            assert!(
                body["detail"].as_str().unwrap().contains("GenieKey"),
                "{body}"
            );
        }
    }
    // Bodies Opsgenie refuses, in its shape: 422 with the errors by field.
    for (path, body, field) in [
        (
            "/v2/alerts",
            r#"{"message":"m","priority":"P9"}"#,
            "priority",
        ),
        (
            "/v2/alerts",
            r#"{"message":"m","priority":"high"}"#,
            "priority",
        ),
        ("/v2/alerts", r#"{"message":""}"#, "message"),
        ("/v2/alerts", r#"{"alias":"no message"}"#, "message"),
        ("/v2/alerts", r#"{"message":"m","tags":"one"}"#, "tags"),
        (
            "/v2/alerts",
            r#"{"message":"m","details":{"n":1}}"#,
            "details",
        ),
        (
            "/v2/alerts",
            r#"{"message":"m","responders":[{"type":"cat","name":"x"}]}"#,
            "responders",
        ),
        (
            "/v2/alerts",
            r#"{"message":"m","alias":"a\u0000b"}"#,
            "alias",
        ),
        (
            "/v2/alerts",
            &format!(r#"{{"message":"m","alias":"{}"}}"#, "a".repeat(256)),
            "alias",
        ),
        (
            "/v2/alerts/a/close?identifierType=name",
            "{}",
            "identifierType",
        ),
        ("/v2/alerts/a/close", r#"{"user":7}"#, "user"),
        ("/v2/alerts/a%0Ab/acknowledge", "{}", "identifier"),
        ("/v2/alerts/a/notes", r#"{"user":"u"}"#, "note"),
    ] {
        let (status, answered) = send(&hub, path, Some(KEY), body).await;
        assert_eq!(status, 422, "{path} {body}: {answered}");
        assert!(
            answered["errors"][field].is_string(),
            "{path} {body}: {answered}"
        );
        assert_eq!(
            answered["message"],
            "Request body is not processable. Please check the errors."
        );
        assert!(answered["requestId"].is_string() && answered["took"].is_number());
    }
    // Not an object at all; not JSON; too large; not declared JSON.
    for (body, status) in [
        ("[1,2]".to_string(), 422),
        ("\"text\"".to_string(), 422),
        ("not json".to_string(), 400),
        ("{\"message\":".to_string(), 400),
        (format!(r#"{{"message":"{}"}}"#, "x".repeat(5000)), 413),
    ] {
        let (got, answered) = send(&hub, "/v2/alerts", Some(KEY), &body).await;
        assert_eq!(got, status, "{answered}");
        assert!(
            answered["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{answered}"
        );
    }
    let r = client()
        .post(hub.url("/v2/alerts"))
        .header("authorization", format!("GenieKey {KEY}"))
        .form(&[("message", "m")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // A ping for a heartbeat the config does not have.
    let r = client()
        .get(hub.url("/v2/heartbeats/nope/ping"))
        .header("authorization", format!("GenieKey {KEY}"))
        .send()
        .await
        .unwrap();
    let (status, body) = answer(r).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("heartbeat"),
        "{body}"
    );

    assert_eq!(count(dir.path()).await, 0);
    assert!(hub.received_files().is_empty());
    assert!(audit(dir.path(), "note").await.is_empty());
    assert_eq!(support::db(dir.path()).await.count("heartbeats").await, 0);
}

#[tokio::test]
async fn without_its_entry_the_source_answers_404_in_its_own_shape() {
    let (dir, hub) = support::start(json!({}));
    for path in [
        "/v2/alerts",
        "/v2/alerts/a/close",
        "/v2/alerts/a/notes",
        "/hooks/opsgenie/v2/alerts",
    ] {
        let (status, body) = send(&hub, path, Some(KEY), r#"{"message":"m"}"#).await;
        assert_eq!(status, 404, "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("sources.opsgenie"),
            "{body}"
        );
    }
    assert_eq!(count(dir.path()).await, 0);
}

#[tokio::test]
async fn hostile_aliases_are_only_names() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start_in(dir.path(), json!({}));
    // (A path segment `%2E%2E` is `..` to URL parsers that follow the WHATWG standard, so they
    // cannot send one; Alertmanager's Go client can, and `a/../../b` covers the same.)
    let hostile = [
        "../x",
        "$(touch x)",
        "<script>alert(1)</script>",
        "a/../../b",
    ];
    for alias in hostile {
        let body = json!({"message": format!("about {alias}"), "alias": alias, "entity": alias});
        let (status, answered) = send(&hub, "/v2/alerts", Some(KEY), &body.to_string()).await;
        assert_taken(status, &answered, "Request will be processed");
        let encoded: String = alias
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (status, answered) = send(
            &hub,
            &format!("/v2/alerts/{encoded}/close?identifierType=alias"),
            Some(KEY),
            r#"{"note":"$(touch y)"}"#,
        )
        .await;
        assert_taken(status, &answered, "Request will be processed");
    }
    let mut want = Vec::new();
    for alias in hostile {
        want.push((alias.to_string(), "OPEN".to_string()));
        want.push((alias.to_string(), "RESOLVED".to_string()));
    }
    for alias in ["..", ".", "/"] {
        let body = json!({"message": "dots", "alias": alias});
        let (status, _) = send(&hub, "/v2/alerts", Some(KEY), &body.to_string()).await;
        assert_eq!(status, 202, "{alias}");
        want.push((alias.to_string(), "OPEN".to_string()));
    }
    assert_eq!(stored(dir.path()).await, want);
    let calls = dir.path().join("calls.log");
    eventually("a run per notification", async || {
        lines(&calls).len() == want.len()
    })
    .await;
    assert!(lines(&calls).contains(&"opsgenie OPEN $(touch x)".to_string()));
    // Every file stayed in its folder under a safe name, and nothing ran.
    for f in hub.received_files() {
        assert!(f.starts_with("opsgenie-") && !f.contains('/'), "{f}");
        assert!(hub.received().join(&f).is_file(), "{f}");
    }
    for f in ["x", "y", "b"] {
        assert!(!dir.path().join(f).exists(), "{f}");
        assert!(
            !dir.path().join("problems_received").join(f).exists(),
            "{f}"
        );
    }
    assert!(!dir.path().parent().unwrap().join("x").exists());
    // The page shows the alias as text.
    let page = support::get_text(&hub, "/?show=all").await;
    assert!(!page.contains("<script>alert(1)"), "the alias is escaped");
}

#[tokio::test]
async fn alias_dedups_and_a_create_after_close_opens_the_problem_again() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start_in(dir.path(), json!({}));
    let create = r#"{"message":"disk full","alias":"disk-db1","priority":"P2"}"#;
    let close = "/v2/alerts/disk-db1/close?identifierType=alias";
    let calls = dir.path().join("calls.log");
    // The same create twice while open: one problem, its actions run once.
    for _ in 0..2 {
        assert_eq!(send(&hub, "/v2/alerts", Some(KEY), create).await.0, 202);
    }
    eventually("the open's run", async || !lines(&calls).is_empty()).await;
    // Both are routed: the second made no run of its own.
    support::all_routed(dir.path()).await;
    assert_eq!(lines(&calls), ["opsgenie OPEN disk-db1"]);
    assert_eq!(send(&hub, close, Some(KEY), "").await.0, 202);
    eventually("the close's run", async || lines(&calls).len() == 2).await;
    // The same bytes again after the close: the problem opens again, and runs again.
    assert_eq!(send(&hub, "/v2/alerts", Some(KEY), create).await.0, 202);
    eventually("the new opening's run", async || lines(&calls).len() == 3).await;
    let (_, problem) = support::get_json(&hub, "/api/problems/disk-db1?source=opsgenie").await;
    assert_eq!(problem["state"], "OPEN", "{problem:#}");
    assert_eq!(send(&hub, close, Some(KEY), "").await.0, 202);
    eventually("the second close's run", async || lines(&calls).len() == 4).await;
    support::all_routed(dir.path()).await;
    assert_eq!(
        lines(&calls),
        [
            "opsgenie OPEN disk-db1",
            "opsgenie RESOLVED disk-db1",
            "opsgenie OPEN disk-db1",
            "opsgenie RESOLVED disk-db1"
        ]
    );
    // Without an alias every create is a problem of its own, however alike.
    let bare = r#"{"message":"no alias"}"#;
    let (_, a) = send(&hub, "/v2/alerts", Some(KEY), bare).await;
    let (_, b) = send(&hub, "/v2/alerts", Some(KEY), bare).await;
    assert_ne!(a["requestId"], b["requestId"]);
    let problems: Vec<String> = stored(dir.path())
        .await
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k != "disk-db1")
        .collect();
    assert_eq!(
        problems,
        [
            a["requestId"].as_str().unwrap(),
            b["requestId"].as_str().unwrap()
        ]
    );
}

#[tokio::test]
async fn an_acknowledgement_stops_the_escalation_as_any_other_does() {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"sid": "SM1"})))
        .mount(&twilio)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let hub = start_in(
        dir.path(),
        json!({
            "public_url": "http://hub.example.test",
            "status_page": {"username": "ops", "password": "ops-pw"},
            "people": {"ana": {"name": "Ana Lima", "phone": "+15550001111", "role": "responder"}},
            "schedules": {"primary": {"rotation": {"people": ["ana"], "every": "1w", "start": "2026-01-05"}}},
            "actions": {"text-person": {
                "type": "sms", "account_sid": "AC123", "auth_token": "tw-token",
                "from": "+15005550006", "to": "person", "api_url": twilio.uri(),
                "template": "{{ problem.problem_id }} step {{ step }}"
            }},
            "escalations": {"prod": {"steps": [
                {"notify": ["schedule:primary"], "actions": ["text-person"], "wait": "2s"}
            ], "repeat": 3}},
            "routes": [{"escalate": "prod", "sources": ["opsgenie"]}]
        }),
    );
    let texts = async || twilio.received_requests().await.unwrap().len();
    let create = r#"{"message":"checkout down","alias":"checkout"}"#;
    assert_eq!(send(&hub, "/v2/alerts", Some(KEY), create).await.0, 202);
    eventually("the first step's text", async || texts().await == 1).await;
    let (status, body) = send(
        &hub,
        "/v2/alerts/checkout/acknowledge?identifierType=alias",
        Some(KEY),
        r#"{"user":"Ana Lima","source":"phone","note":"on it"}"#,
    )
    .await;
    assert_taken(status, &body, "Request will be processed");
    let escalation = async || {
        let r = client()
            .get(hub.url("/api/problems/checkout?source=opsgenie"))
            .basic_auth("ops", Some("ops-pw"))
            .send()
            .await
            .unwrap();
        answer(r).await.1["escalation"].clone()
    };
    eventually("the escalation to be acknowledged", async || {
        escalation().await["state"] == "acked"
    })
    .await;
    let e = escalation().await;
    assert_eq!(
        (e["acked_by"].as_str(), e["acked_via"].as_str()),
        (Some("Ana Lima"), Some("opsgenie")),
        "{e:#}"
    );
    // Three more passes were due two seconds apart: none goes out.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(texts().await, 1);
    let acks = audit(dir.path(), "ack").await;
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(
        (acks[0].0.as_str(), acks[0].1.as_str()),
        ("Ana Lima", "opsgenie")
    );
    assert_eq!(acks[0].2, "opsgenie/checkout");
    // A close ends it; a create for the closed alias starts a new escalation.
    assert_eq!(
        send(
            &hub,
            "/v2/alerts/checkout/close?identifierType=alias",
            Some(KEY),
            ""
        )
        .await
        .0,
        202
    );
    eventually("the escalation to end", async || {
        escalation().await["state"] == "resolved"
    })
    .await;
    assert_eq!(send(&hub, "/v2/alerts", Some(KEY), create).await.0, 202);
    eventually("the new opening's first text", async || texts().await == 2).await;
}

#[tokio::test]
async fn a_real_alertmanager_fires_and_resolves_through_opsgenie_configs() {
    const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
    const AMTOOL: &str = "/usr/bin/amtool";
    assert!(
        Path::new(ALERTMANAGER).exists() && Path::new(AMTOOL).exists(),
        "this test needs Debian's prometheus-alertmanager package; tools/test installs it"
    );
    let dir = tempfile::tempdir().unwrap();
    let hub = start_in(dir.path(), json!({}));
    let am_config = String::from_utf8(fixture("opsgenie/alertmanager.yml"))
        .unwrap()
        .replace("http://127.0.0.1:5000/", &format!("{}/", hub.base_url))
        // Re-send firing groups every few seconds, as a long-lived alert is re-sent for real.
        .replace("repeat_interval: 1h", "repeat_interval: 3s");
    let (_am, am_url) = support::alertmanager(dir.path(), &am_config).await;
    let amtool = |args: &[&str]| {
        let out = Command::new(AMTOOL)
            .arg(format!("--alertmanager.url={am_url}"))
            .args(args)
            .output()
            .expect("run amtool");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let alert = [
        "alert",
        "add",
        "alertname=HubE2E",
        "instance=host9:9100",
        "severity=critical",
        "--annotation=summary=host9 is down",
    ];
    let resolve = || {
        let end = format!(
            "--end={}",
            time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        );
        let mut args = alert.to_vec();
        args.push(&end);
        amtool(&args);
    };
    let calls = dir.path().join("calls.log");
    let states = async || -> Vec<String> {
        stored(dir.path())
            .await
            .into_iter()
            .map(|(_, s)| s)
            .collect()
    };
    amtool(&alert);
    eventually("the firing alert", async || {
        states().await.contains(&"OPEN".to_string())
    })
    .await;
    eventually("Alertmanager to send the firing group again", async || {
        states().await.iter().filter(|s| *s == "OPEN").count() >= 2
    })
    .await;
    resolve();
    eventually("the close", async || {
        states().await.contains(&"RESOLVED".to_string())
    })
    .await;
    // Fires again: Alertmanager sends the same create as the first time, which opens it again.
    amtool(&alert);
    eventually("the second opening", async || {
        states().await.last().is_some_and(|s| s == "OPEN")
    })
    .await;
    resolve();
    eventually("the second close", async || {
        states().await.iter().filter(|s| *s == "RESOLVED").count() >= 2
    })
    .await;
    support::all_routed(dir.path()).await;
    let s = stored(dir.path()).await;
    assert!(
        s.iter().all(|(k, _)| k.len() == 64),
        "one alias, the group key's hash: {s:?}"
    );
    assert!(s.windows(2).all(|w| w[0].0 == w[1].0), "{s:?}");
    // Each opening and each close ran once, however often the group was re-sent (runs of one
    // action may finish in any order).
    eventually("the four runs", async || lines(&calls).len() >= 4).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut states_run: Vec<String> = lines(&calls)
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap().to_string())
        .collect();
    states_run.sort();
    assert_eq!(states_run, ["OPEN", "OPEN", "RESOLVED", "RESOLVED"]);
    let (_, problem) =
        support::get_json(&hub, &format!("/api/problems/{}?source=opsgenie", s[0].0)).await;
    let text = problem.to_string();
    assert!(text.contains("[FIRING:1] HubE2E"), "{problem:#}");
}
