//! Plugin actions through the real binary: real processes, and local HTTP servers standing in for
//! Twilio, Dynatrace and a webhook receiver, each checking the exact request.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::{
    self, client, config_with, eventually, fixture, hub_command, lines, post, runs, script, Hub,
    PASSWORD,
};

const PID: &str = "-5289617462338813532_1606920000000V2";

/// Appends one line per call to calls.log and keeps each entity's argv, env and stdin.
const RECORD: &str = r#"printf '%s %s\n' "$HUB_RUN_ID" "$HUB_ENTITY_NAME" >> calls.log
n=0; for a in "$@"; do n=$((n+1)); printf '%s\n' "$a" > "arg$n-$HUB_ENTITY_ID.txt"; done
env > "env-$HUB_ENTITY_ID.txt"
cat > "stdin-$HUB_ENTITY_ID.json""#;

fn start_with(dir: &Path, patch: Value, env: &[(&str, &str)]) -> Hub {
    Hub::start_in(dir, &config_with(patch), env)
}

async fn deliver(hub: &Hub, body: Vec<u8>) {
    let r = post(&client(), &hub.url("/"), body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// `problems_sent/<name>` once every run in it has reached `status`: the file is rewritten just
/// after each outcome is recorded, so it can trail the store by a moment.
async fn sent_when_all(dir: &Path, name: &str, runs: usize, status: &str) -> Value {
    let path = dir.join("problems_sent").join(name);
    eventually(&format!("{name} with {runs} {status} run(s)"), async || {
        path.exists() && {
            let v = read_json(&path);
            v["runs"]
                .as_array()
                .is_some_and(|r| r.len() == runs && r.iter().all(|r| r["status"] == status))
        }
    })
    .await;
    read_json(&path)
}

#[tokio::test]
async fn a_script_runs_once_per_entity_never_through_a_shell_and_never_twice() {
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "record.sh", RECORD);
    let config = json!({"actions": {"page": {"type": "script",
                                             "command": "./record.sh --flag 'two words'"}}});
    let mut hub = start_with(
        dir.path(),
        config.clone(),
        &[("HUB_WEBHOOK_PASSWORD", PASSWORD)],
    );
    deliver(&hub, fixture("dynatrace/full-open.json")).await;
    let calls = dir.path().join("calls.log");
    eventually("a run per entity", async || lines(&calls).len() == 2).await;

    // The hostile entity name arrived as one whole argument and ran nothing.
    assert!(!dir.path().join("INJECTED").exists());
    let host = "HOST-0A1B2C3D4E5F6071";
    let arg =
        |n: u32| std::fs::read_to_string(dir.path().join(format!("arg{n}-{host}.txt"))).unwrap();
    assert_eq!(arg(1), "--flag\n");
    assert_eq!(arg(2), "two words\n");
    assert_eq!(
        arg(3),
        "Problem [P-2411021]: Status=OPEN, Severity=PERFORMANCE, ImpactLevel=SERVICE, \
         Tags=env:prod, team:payments Entity details: Entity=web's $(touch INJECTED) <b>01</b>, \
         impactLevel=SERVICE, severity=PERFORMANCE, eventType=\n"
    );
    let env = std::fs::read_to_string(dir.path().join(format!("env-{host}.txt"))).unwrap();
    for expected in [
        "HUB_SOURCE=dynatrace",
        "HUB_PROBLEM_ID=P-2411021",
        "HUB_STATE=OPEN",
        &format!("HUB_PID={PID}"),
        &format!("HUB_ENTITY_ID={host}"),
        "HUB_ENTITY_NAME=web's $(touch INJECTED) <b>01</b>",
        "HUB_RUN_ID=run_",
    ] {
        assert!(env.contains(expected), "{expected} not in {env}");
    }
    // hub's own secrets never reach a script.
    assert!(!env.contains(PASSWORD), "{env}");
    let stdin = read_json(&dir.path().join(format!("stdin-{host}.json")));
    assert_eq!(stdin["problem_id"], "P-2411021");
    assert_eq!(stdin["entities"].as_array().unwrap().len(), 2);

    eventually("both runs recorded", async || {
        runs(dir.path())
            .await
            .iter()
            .all(|r| r.status == "succeeded")
    })
    .await;
    let sent = sent_when_all(dir.path(), "P-2411021.json", 2, "succeeded").await;
    assert_eq!(sent["runs"][0]["outcome"]["exit_code"], 0, "{sent}");

    // A redelivery with another body, then a restart: nothing runs a second time.
    let mut changed: Value = serde_json::from_slice(&fixture("dynatrace/full-open.json")).unwrap();
    changed["ProblemTitle"] = json!("Response time degradation (updated)");
    deliver(&hub, changed.to_string().into_bytes()).await;
    hub.terminate();
    let hub = start_with(dir.path(), config, &[]);
    deliver(&hub, fixture("dynatrace/full-open.json")).await;
    support::all_routed(dir.path()).await;
    assert_eq!(lines(&calls).len(), 2, "{:?}", lines(&calls));
    assert_eq!(runs(dir.path()).await.len(), 2);

    // The RESOLVED state is a new change: it runs again, once per entity.
    let mut resolved: Value = serde_json::from_slice(&fixture("dynatrace/full-open.json")).unwrap();
    resolved["State"] = json!("RESOLVED");
    deliver(&hub, resolved.to_string().into_bytes()).await;
    eventually("the resolved runs", async || lines(&calls).len() == 4).await;
}

#[tokio::test]
async fn a_hanging_script_is_stopped_and_exit_75_is_retried_until_it_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    script(
        dir.path(),
        "hang.sh",
        "sleep 300 &\necho $! > sleep.pid\nwait",
    );
    script(
        dir.path(),
        "flaky.sh",
        "echo call >> flaky.log\n[ \"$(wc -l < flaky.log)\" -ge 2 ] || exit 75\necho fine",
    );
    let hub = start_with(
        dir.path(),
        json!({
            "actions": {
                "hang": {"type": "script", "command": ["./hang.sh"], "timeout_secs": 1,
                         "kill_grace_secs": 1},
                "flaky": {"type": "script", "command": ["./flaky.sh"]}
            },
            "dispatch": {"first_retry_secs": 1, "max_attempts": 2}
        }),
        &[],
    );
    deliver(&hub, fixture("dynatrace/minimal-open.json")).await;
    eventually("both runs final", async || {
        let r = runs(dir.path()).await;
        r.len() == 2
            && r.iter()
                .all(|r| r.status != "pending" && r.status != "running")
    })
    .await;
    let r = runs(dir.path()).await;
    let hang = r.iter().find(|r| r.action == "hang").unwrap();
    assert_eq!(hang.status, "failed");
    assert_eq!(hang.attempts, 2, "retried once, then given up");
    let error = hang.last_error.clone().unwrap();
    assert!(
        error.contains("gave up after 2") && error.contains("timed out after 1 s"),
        "{error}"
    );
    // The script's own child went with it.
    let sleep_pid = std::fs::read_to_string(dir.path().join("sleep.pid")).unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", sleep_pid.trim()));
    assert!(
        stat.map_or(true, |s| s.contains(") Z")),
        "the script's child still runs"
    );

    let flaky = r.iter().find(|r| r.action == "flaky").unwrap();
    assert_eq!(
        (flaky.status.as_str(), flaky.attempts),
        ("succeeded", 2),
        "{flaky:?}"
    );
    assert_eq!(lines(&dir.path().join("flaky.log")).len(), 2);
}

fn sms_config(twilio: &MockServer, to: Value, extra: Value) -> Value {
    let mut sms = json!({"type": "sms", "account_sid": "AC123", "auth_token_env": "TWILIO_TOKEN",
                         "from": "+15005550006", "to": to, "api_url": twilio.uri()});
    if let (Value::Object(s), Value::Object(e)) = (&mut sms, extra) {
        s.extend(e);
    }
    json!({"actions": {"text": sms}, "dispatch": {"first_retry_secs": 1}})
}

fn form(request: &Request) -> Vec<(String, String)> {
    let body = String::from_utf8(request.body.clone()).unwrap();
    reqwest::Url::parse(&format!("http://x/?{body}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[tokio::test]
async fn an_sms_is_retried_after_a_twilio_500_and_its_number_is_masked() {
    let twilio = MockServer::start().await;
    let messages = "/2010-04-01/Accounts/AC123/Messages.json";
    Mock::given(method("POST"))
        .and(path(messages))
        .respond_with(ResponseTemplate::new(500).set_body_json(
            json!({"code": 20500, "message": "Internal Server Error", "status": 500}),
        ))
        .up_to_n_times(1)
        .mount(&twilio)
        .await;
    Mock::given(method("POST"))
        .and(path(messages))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"sid": "SM0123456789abcdef", "status": "queued"})),
        )
        .mount(&twilio)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let hub = start_with(
        dir.path(),
        sms_config(&twilio, json!("+4915112341111"), json!({})),
        &[("TWILIO_TOKEN", "tw-secret-token")],
    );
    deliver(&hub, fixture("dynatrace/full-open.json")).await;
    eventually("the SMS", async || {
        runs(dir.path())
            .await
            .first()
            .is_some_and(|r| r.status == "succeeded")
    })
    .await;

    let requests = twilio.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2, "a 500 is retried");
    for r in &requests {
        let auth = r.headers.get("authorization").unwrap().to_str().unwrap();
        assert_eq!(
            auth,
            format!("Basic {}", base64_encode("AC123:tw-secret-token"))
        );
        assert_eq!(
            form(r),
            [
                ("To".into(), "+4915112341111".into()),
                ("From".into(), "+15005550006".into()),
                (
                    "Body".into(),
                    format!(
                        "Dynatrace notification - service problem (P-2411021) open. Open in \
                         Dynatrace: https://abc12345.live.dynatrace.com/#problems/problemdetails;pid={PID}"
                    )
                ),
            ]
        );
    }
    let run = &runs(dir.path()).await[0];
    assert_eq!(run.target_label, "+49*****1111");
    let sent = sent_when_all(dir.path(), "P-2411021.json", 1, "succeeded")
        .await
        .to_string();
    assert!(sent.contains("SM0123456789abcdef"), "{sent}");
    let log = std::fs::read_to_string(dir.path().join("log/hub.log")).unwrap();
    for text in [&sent, &log, &hub.stderr()] {
        assert!(
            !text.contains("+4915112341111"),
            "unmasked number in {text}"
        );
        assert!(!text.contains("tw-secret-token"));
    }
}

fn base64_encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn a_twilio_4xx_is_final_and_a_storm_is_held_back_not_dropped() {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": 21211, "message": "The 'To' number +4915100000002 is not a valid phone number.",
            "status": 400})))
        .up_to_n_times(1)
        .mount(&twilio)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"sid": "SMok"})))
        .mount(&twilio)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let hub = start_with(
        dir.path(),
        sms_config(
            &twilio,
            json!(["+4915100000002", "+4915100000003", "+4915100000004"]),
            json!({"rate_limit_per_minute": 2, "max_concurrent": 1}),
        ),
        &[("TWILIO_TOKEN", "t")],
    );
    deliver(&hub, fixture("dynatrace/minimal-open.json")).await;
    eventually("three final runs", async || {
        let r = runs(dir.path()).await;
        r.len() == 3
            && r.iter()
                .all(|r| r.status != "pending" && r.status != "running")
    })
    .await;
    let r = runs(dir.path()).await;
    let statuses: Vec<&str> = r.iter().map(|r| r.status.as_str()).collect();
    assert_eq!(statuses, ["failed", "succeeded", "held_back"], "{r:?}");
    assert_eq!(r[0].attempts, 1, "a 400 is not retried");
    let error = r[0].last_error.clone().unwrap();
    assert!(
        error.contains("error 21211") && error.contains("+49*****0002"),
        "{error}"
    );
    assert!(!error.contains("+4915100000002"));
    assert!(r[2]
        .last_error
        .clone()
        .unwrap()
        .contains("at most 2 SMS a minute"));
    assert_eq!(twilio.received_requests().await.unwrap().len(), 2);
}

async fn dynatrace_mock(version: u8) -> MockServer {
    let server = MockServer::start().await;
    let (details_path, details) = if version == 2 {
        (
            format!("/api/v2/problems/{PID}"),
            json!({"problemId": PID, "displayId": "P-2411021", "title": "Response time degradation",
                   "status": "OPEN", "severityLevel": "PERFORMANCE", "impactLevel": "SERVICES",
                   "impactedEntities": [{"entityId": {"id": "SERVICE-1", "type": "SERVICE"},
                                         "name": "checkout-service"}]}),
        )
    } else {
        (
            format!("/api/v1/problem/details/{PID}"),
            json!({"result": {"id": PID, "displayName": "2411021", "status": "OPEN",
                   "severityLevel": "PERFORMANCE", "impactLevel": "SERVICE",
                   "rankedImpacts": [{"entityId": "SERVICE-1", "entityName": "checkout-service",
                                      "severityLevel": "PERFORMANCE", "impactLevel": "SERVICE",
                                      "eventType": "SERVICE_RESPONSE_TIME_DEGRADED"}]}}),
        )
    };
    Mock::given(method("GET"))
        .and(path(details_path))
        .respond_with(ResponseTemplate::new(200).set_body_json(details))
        .mount(&server)
        .await;
    let (comments, status) = if version == 2 {
        (format!("/api/v2/problems/{PID}/comments"), 201)
    } else {
        (format!("/api/v1/problem/details/{PID}/comments"), 200)
    };
    Mock::given(method("POST"))
        .and(path(comments))
        .respond_with(ResponseTemplate::new(status).set_body_json(json!({})))
        .mount(&server)
        .await;
    server
}

async fn comment_after_the_script(version: u8) -> Value {
    let server = dynatrace_mock(version).await;
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "legacy.sh", RECORD);
    let hub = start_with(
        dir.path(),
        json!({
            "dynatrace": {"tenant": server.uri(), "api_token": "dt0c01.T", "api_version": version},
            "incident_notification": {"active": true, "exec_unix": "legacy.sh"}
        }),
        &[],
    );
    deliver(&hub, fixture("dynatrace/minimal-open.json")).await;
    eventually("the comment", async || {
        runs(dir.path())
            .await
            .iter()
            .any(|r| r.action == "incident_notification_comment" && r.status == "succeeded")
    })
    .await;
    // The script ran on the entity from the details, then the comment reported it.
    assert_eq!(lines(&dir.path().join("calls.log")).len(), 1);
    let posted: Vec<Request> = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "POST")
        .collect();
    assert_eq!(posted.len(), 1);
    assert_eq!(
        posted[0].headers.get("authorization").unwrap(),
        "Api-Token dt0c01.T"
    );
    serde_json::from_slice(&posted[0].body).unwrap()
}

#[tokio::test]
async fn the_sample_s_script_is_followed_by_a_comment_v2() {
    let body = comment_after_the_script(2).await;
    assert_eq!(body["context"], "hub: incident_notification");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("1 succeeded")
            && message.contains("incident_notification checkout-service: exit 0"),
        "{message}"
    );
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
}

#[tokio::test]
async fn the_sample_s_script_is_followed_by_a_comment_v1() {
    let body = comment_after_the_script(1).await;
    assert_eq!(body["context"], "hub: incident_notification");
    assert_eq!(body["user"], support::USER);
    assert!(
        body["comment"].as_str().unwrap().contains("exit 0"),
        "{body}"
    );
}

#[tokio::test]
async fn a_webhook_is_signed_and_keeps_its_id_across_a_retry() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&receiver)
        .await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let dir = tempfile::tempdir().unwrap();
    let hub = start_with(
        dir.path(),
        json!({"actions": {"notify": {"type": "webhook", "url": format!("{}/in", receiver.uri()),
                                      "secret": secret}}}),
        &[],
    );
    deliver(&hub, fixture("dynatrace/full-open.json")).await;
    eventually("the delivery", async || {
        runs(dir.path())
            .await
            .first()
            .is_some_and(|r| r.status == "succeeded")
    })
    .await;
    let requests = receiver.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    let verifier = standardwebhooks::Webhook::new(secret).unwrap();
    for r in &requests {
        let mut headers = http::HeaderMap::new();
        for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            headers.insert(
                name,
                r.headers
                    .get(name)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap(),
            );
        }
        verifier
            .verify(&r.body, &headers)
            .expect("signature verifies");
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["type"], "problem.open");
        assert_eq!(body["data"]["problem_id"], "P-2411021");
    }
    assert_eq!(
        requests[0].headers.get("webhook-id"),
        requests[1].headers.get("webhook-id"),
        "a retry is the same message"
    );
}

/// A webhook's body template escapes values as JSON: a title that closes its string and adds
/// fields, or breaks the line, stays one string in a valid, signed body; a `| safe` value that
/// breaks the JSON fails the run before anything is signed or sent; a template that cannot make
/// JSON is refused at load, with its key path.
#[tokio::test]
async fn a_webhook_template_cannot_be_made_to_forge_fields() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&receiver)
        .await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let template = r#"{"id": "{{ problem.problem_id }}", "title": "{{ problem.title }}",
        "severity": "{{ problem.severity }}", "tags": {{ problem.tags | json_encode }}}"#;
    let dir = tempfile::tempdir().unwrap();
    let hub = start_with(
        dir.path(),
        json!({"actions": {
            "notify": {"type": "webhook", "url": format!("{}/in", receiver.uri()),
                       "secret": secret, "template": template},
            "raw": {"type": "webhook", "url": format!("{}/raw", receiver.uri()),
                    "secret": secret, "template": "{\"title\": \"{{ problem.title | safe }}\"}"}}}),
        &[],
    );
    let forged = r#"disk full", "id": "P-FORGED", "severity": "none"#;
    let broken = "disk full\r\nX-Injected: 1\n\"}";
    for (id, title) in [("P-1", forged), ("P-2", broken)] {
        let mut n: Value = serde_json::from_slice(&fixture("dynatrace/full-open.json")).unwrap();
        n["ProblemID"] = json!(id);
        n["PID"] = json!(format!("pid-{id}"));
        n["ProblemTitle"] = json!(title);
        deliver(&hub, serde_json::to_vec(&n).unwrap()).await;
    }
    eventually("four finished runs", async || {
        let r = runs(dir.path()).await;
        r.len() == 4
            && r.iter()
                .all(|r| r.status == "succeeded" || r.status == "failed")
    })
    .await;
    let requests = receiver.received_requests().await.unwrap();
    let verifier = standardwebhooks::Webhook::new(secret).unwrap();
    let mut seen = Vec::new();
    for r in requests.iter().filter(|r| r.url.path() == "/in") {
        let mut headers = http::HeaderMap::new();
        for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            headers.insert(name, r.headers.get(name).unwrap().clone());
        }
        verifier
            .verify(&r.body, &headers)
            .expect("signature verifies");
        let body: Value = serde_json::from_slice(&r.body).expect("the body is JSON");
        assert_eq!(body.as_object().unwrap().len(), 4, "no field added: {body}");
        assert_eq!(body["severity"], "PERFORMANCE", "{body}");
        seen.push((body["id"].to_string(), body["title"].to_string()));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            (json!("P-1").to_string(), json!(forged).to_string()),
            (json!("P-2").to_string(), json!(broken).to_string())
        ]
    );
    // `| safe` opts out of escaping: the forged title still makes valid JSON (the operator's
    // choice), the line break does not, and that run fails for good without sending.
    let raw: Vec<_> = requests.iter().filter(|r| r.url.path() == "/raw").collect();
    assert_eq!(raw.len(), 1, "only the body that is JSON is sent");
    let failed: Vec<_> = runs(dir.path())
        .await
        .into_iter()
        .filter(|r| r.status == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].action, "raw");
    assert_eq!(failed[0].attempts, 1, "a permanent error is not retried");
    let error = failed[0].last_error.as_deref().unwrap_or_default();
    assert!(
        error.starts_with("the template made a body that is not JSON"),
        "{error}"
    );

    // At load: a template whose values are not inside strings makes no JSON for any problem.
    let check = tempfile::tempdir().unwrap();
    let (code, stderr) = support::check_config(
        check.path(),
        &config_with(json!({"actions": {
            "notify": {"type": "webhook", "url": "http://127.0.0.1:9/in", "secret": secret,
                       "template": "{\"title\": {{ problem.title }}}"}}})),
    );
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("actions.notify.template: the template does not make JSON"),
        "{stderr}"
    );
}

#[tokio::test]
async fn routes_choose_actions_and_tests_run_nothing() {
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "record.sh", RECORD);
    let hub = start_with(
        dir.path(),
        json!({
            "actions": {"page": {"type": "script", "command": ["./record.sh"]}},
            "routes": [{"states": ["OPEN"], "tags": ["team:payments"], "actions": ["page"]}]
        }),
        &[],
    );
    deliver(&hub, fixture("dynatrace/test-notification.json")).await;
    deliver(&hub, fixture("dynatrace/minimal-resolved.json")).await;
    deliver(&hub, fixture("dynatrace/minimal-open.json")).await;
    deliver(&hub, fixture("dynatrace/full-open.json")).await;
    eventually("the routed runs", async || {
        lines(&dir.path().join("calls.log")).len() == 2
    })
    .await;
    support::all_routed(dir.path()).await;
    let r = runs(dir.path()).await;
    assert_eq!(
        r.len(),
        2,
        "only the OPEN problem tagged team:payments: {r:?}"
    );
}

#[test]
fn bad_action_config_is_reported_by_key_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(json!({
        "actions": {
            "a b": {"type": "script", "command": "./missing.sh"},
            "oops": {"type": "pager"},
            "quote": {"type": "script", "command": "echo 'unclosed"},
            "sms": {"type": "sms", "account_sid": "AC1", "to": [], "template": "{{ unclosed"},
            "hook": {"type": "webhook", "url": "ftp://x", "secret": "hunter2"},
            "note": {"type": "comment", "after": ["nope"]}
        },
        "routes": [{"actions": ["ghost"], "sources": ["nagios"]}],
        "dispatch": {"first_retry_secs": 10, "max_retry_secs": 5}
    }));
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let out = hub_command(dir.path())
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "actions.a b: action names may use only",
        "actions.a b.command: program not found",
        "actions.oops.type: unknown action type \"pager\"",
        "actions.quote.command: cannot split the command line",
        "actions.sms.template: bad template",
        "actions.sms.auth_token: missing",
        "actions.sms.to: missing",
        "actions.sms.from: give exactly one of",
        "actions.hook.url: expected an http:// or https:// URL",
        "actions.hook.secret: expected a Standard Webhooks secret",
        "actions.note: a comment action needs dynatrace.tenant",
        "actions.note.after: no action is named \"nope\"",
        "routes[0].actions: no action is named \"ghost\"",
        "routes[0].sources: unknown source \"nagios\"",
        "dispatch.max_retry_secs: must not be less than first_retry_secs",
    ] {
        assert!(err.contains(expected), "{expected:?} not in:\n{err}");
    }
    assert!(!err.contains("hunter2"), "{err}");
    let out = hub_command(dir.path()).arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!dir.path().join("hub.db").exists());
}

#[test]
fn explain_shows_what_would_run_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "record.sh", RECORD);
    let config = config_with(json!({
        "actions": {"page": {"type": "script", "command": ["./record.sh"],
                             "args": ["{{ entity.name }}", "{{ problem.problem_id }}"]},
                    "notify": {"type": "webhook", "url": "http://127.0.0.1:9/in",
                               "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}
    }));
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    std::fs::write(
        dir.path().join("payload.json"),
        fixture("dynatrace/full-open.json"),
    )
    .unwrap();
    let out = hub_command(dir.path())
        .args(["explain", "payload.json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = plan["notifications"][0]["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3, "two entities and one webhook: {plan:#}");
    let hostile = runs
        .iter()
        .find(|r| r["target"] == "web's $(touch INJECTED) <b>01</b>")
        .unwrap();
    assert_eq!(
        hostile["would"]["argv"][1], "web's $(touch INJECTED) <b>01</b>",
        "one whole argument"
    );
    assert_eq!(hostile["would"]["argv"][2], "P-2411021");
    assert!(hostile["idempotency_key"]
        .as_str()
        .unwrap()
        .ends_with("/OPEN/page/HOST-0A1B2C3D4E5F6071"));
    let hook = runs.iter().find(|r| r["action"] == "notify").unwrap();
    assert!(hook["would"]["body"]
        .as_str()
        .unwrap()
        .contains("problem.open"));
    // Nothing ran, nothing was stored.
    assert!(!dir.path().join("calls.log").exists());
    assert!(!dir.path().join("INJECTED").exists());
    assert!(!dir.path().join("hub.db").exists());

    std::fs::write(dir.path().join("bad.json"), b"{\"State\": 1}").unwrap();
    let out = hub_command(dir.path())
        .args(["explain", "bad.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("would refuse this payload"));
}

#[tokio::test]
async fn replay_runs_again_on_purpose_and_says_so() {
    sqlite_pass_only!(
        "with no hub running, replay runs the runs itself on SQLite only; on PostgreSQL it waits \
         for the hubs on the store (replay_beside_a_running_hub_is_run_by_that_hub)"
    );
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "record.sh", RECORD);
    let config = json!({"actions": {"page": {"type": "script", "command": ["./record.sh"]}}});
    let mut hub = start_with(dir.path(), config, &[]);
    deliver(&hub, fixture("dynatrace/full-open.json")).await;
    let calls = dir.path().join("calls.log");
    eventually("two runs", async || {
        runs(dir.path())
            .await
            .iter()
            .filter(|r| r.status == "succeeded")
            .count()
            == 2
    })
    .await;
    hub.terminate();

    let out = hub_command(dir.path())
        .args(["replay", "P-2411021", "--action", "page"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.matches("succeeded (attempt 2, manual)").count(),
        2,
        "{stdout}"
    );
    assert_eq!(lines(&calls).len(), 4);
    let db = support::db(dir.path()).await;
    assert_eq!(db.count("action_attempts WHERE manual = TRUE").await, 2);

    let out = hub_command(dir.path())
        .args(["replay", "P-404"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("no dynatrace notification for problem P-404"));
}

#[tokio::test]
async fn sigterm_lets_a_running_action_finish() {
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "slow.sh", "sleep 2\necho done >> done.log");
    let mut hub = start_with(
        dir.path(),
        json!({"actions": {"slow": {"type": "script", "command": ["./slow.sh"]}}}),
        &[],
    );
    deliver(&hub, fixture("dynatrace/minimal-open.json")).await;
    eventually("the run to start", async || {
        runs(dir.path())
            .await
            .first()
            .is_some_and(|r| r.status == "running")
    })
    .await;
    assert_eq!(hub.terminate(), Some(0));
    assert_eq!(lines(&dir.path().join("done.log")).len(), 1);
    assert_eq!(runs(dir.path()).await[0].status, "succeeded");
}

fn feed_problem(n: u32, status: &str) -> Value {
    json!({"problemId": format!("-{n}_1V2"), "displayId": format!("P-{n}"), "title": format!("problem {n}"),
           "status": status, "severityLevel": "PERFORMANCE", "impactLevel": "SERVICES",
           "startTime": 1_700_000_000_000_i64, "endTime": -1,
           "impactedEntities": [{"entityId": {"id": format!("SERVICE-{n}"), "type": "SERVICE"},
                                 "name": format!("svc-{n}")}]})
}

#[tokio::test]
async fn poll_run_actions_handles_each_problem_state_once() {
    let server = MockServer::start().await;
    let problems = [
        feed_problem(2, "OPEN"),
        feed_problem(3, "CLOSED"),
        feed_problem(85, "OPEN"),
    ];
    Mock::given(method("GET"))
        .and(path("/api/v2/problems"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"problems": problems})))
        .mount(&server)
        .await;
    for p in &problems {
        Mock::given(method("GET"))
            .and(path(format!(
                "/api/v2/problems/{}",
                p["problemId"].as_str().unwrap()
            )))
            .respond_with(ResponseTemplate::new(200).set_body_json(p))
            .mount(&server)
            .await;
    }
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "record.sh", RECORD);
    let patch = json!({
        "dynatrace": {"tenant": server.uri(), "api_token": "dt0c01.T"},
        "actions": {"page": {"type": "script", "command": ["./record.sh"]}}
    });
    // hub got problem 85's notification itself.
    let mut hub = start_with(dir.path(), patch, &[]);
    deliver(
        &hub,
        json!({"State": "OPEN", "ProblemID": "85", "PID": "-85_1V2"})
            .to_string()
            .into_bytes(),
    )
    .await;
    let calls = dir.path().join("calls.log");
    eventually("problem 85's run", async || lines(&calls).len() == 1).await;
    hub.terminate();

    let poll = || {
        hub_command(dir.path())
            .args(["poll", "--relative", "day", "--run-actions"])
            .output()
            .unwrap()
    };
    let out = poll();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("run-actions: 2 problem(s) handed to the actions, 1 already handled"),
        "{stdout}"
    );
    let mut called: Vec<String> = lines(&calls)
        .iter()
        .map(|l| l.split_once(' ').unwrap().1.to_string())
        .collect();
    called.sort();
    assert_eq!(called, ["svc-2", "svc-3", "svc-85"]);
    let states: Vec<String> = support::db(dir.path())
        .await
        .rows(
            "SELECT problem_key || '-' || state AS change FROM action_runs ORDER BY problem_key",
            &[],
        )
        .await
        .iter()
        .map(|r| r.get("change"))
        .collect();
    assert_eq!(states, ["2-OPEN", "3-RESOLVED", "85-OPEN"]);

    // Again: everything is handled in its current state; nothing runs twice.
    let out = poll();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("0 problem(s) handed to the actions, 3 already handled"),
        "{stdout}"
    );
    assert_eq!(lines(&calls).len(), 3);
}

#[tokio::test]
async fn a_run_past_the_shutdown_deadline_is_left_for_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    script(
        dir.path(),
        "slow.sh",
        "echo start >> starts.log\n[ \"$(wc -l < starts.log)\" -ge 2 ] || { sleep 30 & echo $! > sleep.pid; wait; }\necho done >> done.log",
    );
    let config = json!({"actions": {"slow": {"type": "script", "command": ["./slow.sh"]}},
                        "dispatch": {"shutdown_grace_secs": 1}});
    let mut hub = start_with(dir.path(), config.clone(), &[]);
    deliver(&hub, fixture("dynatrace/minimal-open.json")).await;
    let starts = dir.path().join("starts.log");
    eventually("the run to start", async || lines(&starts).len() == 1).await;
    assert_eq!(hub.terminate(), Some(0));
    let r = runs(dir.path()).await;
    assert_eq!(r[0].status, "pending", "{r:?}");
    assert!(
        r[0].last_error.clone().unwrap().contains("interrupted"),
        "{r:?}"
    );
    // The script's group was stopped with it.
    let sleep_pid = std::fs::read_to_string(dir.path().join("sleep.pid")).unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", sleep_pid.trim()));
    assert!(
        stat.map_or(true, |s| s.contains(") Z")),
        "the script's child still runs"
    );

    let _hub = start_with(dir.path(), config, &[]);
    eventually("the run to finish after the restart", async || {
        runs(dir.path()).await[0].status == "succeeded"
    })
    .await;
    assert_eq!(lines(&dir.path().join("done.log")).len(), 1);
    let db = support::db(dir.path()).await;
    let attempts = db
        .rows("SELECT result FROM action_attempts ORDER BY id", &[])
        .await;
    let results: Vec<String> = attempts.iter().map(|r| r.get("result")).collect();
    assert_eq!(results, ["interrupted", "succeeded"]);
}

#[tokio::test]
async fn script_output_is_bounded_and_a_webhook_4xx_is_final() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(410).set_body_string("gone"))
        .mount(&receiver)
        .await;
    let dir = tempfile::tempdir().unwrap();
    script(
        dir.path(),
        "chatty.sh",
        "head -c 100000 /dev/zero | tr '\\0' x\nexit 3",
    );
    let hub = start_with(
        dir.path(),
        json!({"actions": {
            "chatty": {"type": "script", "command": ["./chatty.sh"], "max_output_bytes": 1000},
            "hook": {"type": "webhook", "url": receiver.uri(),
                     "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}}),
        &[],
    );
    deliver(&hub, fixture("dynatrace/minimal-open.json")).await;
    eventually("both runs failed", async || {
        let r = runs(dir.path()).await;
        r.len() == 2 && r.iter().all(|r| r.status == "failed")
    })
    .await;
    let r = runs(dir.path()).await;
    assert!(
        r.iter().all(|r| r.attempts == 1),
        "permanent failures are not retried: {r:?}"
    );
    assert_eq!(r[0].last_error.as_deref(), Some("exit 3"));
    assert_eq!(
        r[1].last_error.as_deref(),
        Some("the receiver answered 410")
    );
    let sent = sent_when_all(dir.path(), "85.json", 2, "failed").await;
    let stdout = sent["runs"][0]["outcome"]["stdout"].as_str().unwrap();
    assert!(
        stdout.len() < 1100 && stdout.ends_with("[99000 more bytes]"),
        "{}",
        stdout.len()
    );
}

/// `problems_sent/` shows what was done: a problem whose run is only routed (here, waiting for the
/// action's one slot) has no file until its first outcome.
#[tokio::test]
async fn a_problem_gets_its_sent_file_at_its_first_outcome() {
    let dir = tempfile::tempdir().unwrap();
    script(
        dir.path(),
        "gate.sh",
        "echo \"$HUB_PROBLEM_ID\" >> started.log\nwhile [ ! -e go ]; do sleep 0.05; done",
    );
    let config = json!({"actions": {"gate": {"type": "script", "command": ["./gate.sh"],
                                             "max_concurrent": 1}}});
    let hub = start_with(dir.path(), config, &[]);
    let started = dir.path().join("started.log");
    deliver(&hub, fixture("dynatrace/minimal-open.json")).await;
    eventually("the first run to start", async || {
        lines(&started).len() == 1
    })
    .await;
    let second = br#"{"State": "OPEN", "ProblemID": "86", "PID": "-1_1V2"}"#.to_vec();
    deliver(&hub, second).await;
    eventually("the second run to be routed", async || {
        runs(dir.path()).await.len() == 2
    })
    .await;
    // Nothing must happen here, which no condition can show: a wait long enough for the file
    // writer, which used to write a routed problem's file at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = dir.path().join("problems_sent");
    assert_eq!(support::list_files(&sent), Vec::<String>::new());

    std::fs::write(dir.path().join("go"), "").unwrap();
    sent_when_all(dir.path(), "85.json", 1, "succeeded").await;
    sent_when_all(dir.path(), "86.json", 1, "succeeded").await;
    assert_eq!(lines(&started), ["85", "86"]);
}

/// A hub that only receives: its plans are closed with no run, and no file is written for them.
#[tokio::test]
async fn with_no_action_configured_plans_close_without_runs() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start_with(dir.path(), json!({}), &[]);
    deliver(&hub, fixture("dynatrace/minimal-open.json")).await;
    deliver(&hub, fixture("dynatrace/full-open.json")).await;
    eventually("both plans closed", async || {
        let db = support::db(dir.path()).await;
        let open = db.count("plans WHERE status != 'done'").await;
        let done = db.count("plans WHERE status = 'done'").await;
        open == 0 && done == 2
    })
    .await;
    assert!(runs(dir.path()).await.is_empty());
    assert_eq!(
        support::list_files(&dir.path().join("problems_sent")),
        Vec::<String>::new()
    );
}

/// One retry policy for every action: a 408 and a 425 from Twilio are tried again (they used to
/// fail an SMS for good), and the wait Twilio asks for in `Retry-After` is kept.
#[tokio::test]
async fn an_sms_is_retried_after_408_and_425_as_the_one_policy_says() {
    let twilio = MockServer::start().await;
    let messages = "/2010-04-01/Accounts/AC123/Messages.json";
    for status in [408, 425] {
        Mock::given(method("POST"))
            .and(path(messages))
            .respond_with(ResponseTemplate::new(status).insert_header("Retry-After", "1"))
            .up_to_n_times(1)
            .with_priority(if status == 408 { 1 } else { 2 })
            .mount(&twilio)
            .await;
    }
    Mock::given(method("POST"))
        .and(path(messages))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"sid": "SM42"})))
        .with_priority(3)
        .mount(&twilio)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let hub = start_with(
        dir.path(),
        sms_config(&twilio, json!("+4915112341111"), json!({})),
        &[("TWILIO_TOKEN", "tw-secret-token")],
    );
    deliver(&hub, fixture("dynatrace/full-open.json")).await;
    eventually("the SMS", async || {
        runs(dir.path())
            .await
            .first()
            .is_some_and(|r| r.status == "succeeded")
    })
    .await;
    let run = &runs(dir.path()).await[0];
    assert_eq!(run.attempts, 3, "408, then 425, then sent");
    assert_eq!(twilio.received_requests().await.unwrap().len(), 3);
    // The API shows the run by its id, never by a key that ends with the number.
    let api = client()
        .get(hub.url("/api/problems/P-2411021"))
        .basic_auth(support::USER, Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        api.contains("\"run_id\":\"run_") && !api.contains("4915112341111"),
        "{api}"
    );
}

/// A user of the sample points its texts at a Twilio-compatible gateway and shortens the timeout
/// without rewriting the section as an action.
#[tokio::test]
async fn the_samples_sms_section_takes_a_gateway_and_a_template() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/2010-04-01/Accounts/AC9/Messages.json"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"sid": "SM9"})))
        .mount(&gateway)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let hub = start_with(
        dir.path(),
        json!({"sms_notification": {"active": true, "twilio_account": "AC9",
            "twilio_token": "gw-token", "twilio_number": "+15005550006",
            "to_number": "+4915112341111", "api_url": gateway.uri(),
            "template": "hub: {{ problem.title }} is {{ problem.state }}", "timeout_secs": 3}}),
        &[],
    );
    deliver(&hub, fixture("dynatrace/full-open.json")).await;
    eventually("the text", async || {
        runs(dir.path())
            .await
            .first()
            .is_some_and(|r| r.status == "succeeded")
    })
    .await;
    let requests = gateway.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let body = form(&requests[0]);
    assert!(
        body.contains(&(
            "Body".to_string(),
            "hub: Response time degradation is OPEN".to_string()
        )),
        "{body:?}"
    );
}

/// One replay path: with a hub running, `hub replay` schedules the runs as the page does, the
/// running hub runs them, and the command prints their outcomes.
#[tokio::test]
async fn replay_beside_a_running_hub_is_run_by_that_hub() {
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "record.sh", RECORD);
    let config = json!({"actions": {"page": {"type": "script", "command": ["./record.sh"]}}});
    let hub = start_with(dir.path(), config, &[]);
    deliver(&hub, fixture("dynatrace/full-open.json")).await;
    eventually("two runs", async || {
        runs(dir.path())
            .await
            .iter()
            .filter(|r| r.status == "succeeded")
            .count()
            == 2
    })
    .await;
    let out = hub_command(dir.path())
        .args(["replay", "P-2411021"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("scheduled 2 run(s) for the running hub: "),
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("succeeded (attempt 2, manual)").count(),
        2,
        "{stdout}"
    );
    assert_eq!(lines(&dir.path().join("calls.log")).len(), 4);
    assert!(hub.stderr().contains("action succeeded"));
}
