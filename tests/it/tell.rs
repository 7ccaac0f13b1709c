//! Telling the source what people did: an acknowledgement comments on the Dynatrace problem and
//! acknowledges the PagerDuty incident on the same dedup key, a resolve closes both, and an
//! acknowledged Alertmanager alert is silenced in a real Alertmanager until it resolves. Each is a
//! run that retries. Dynatrace and PagerDuty are local stand-ins checking the documented requests.

use std::path::Path;

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::*;

const ROUTING_KEY: &str = "0123456789abcdef0123456789abcdef";
const TOKEN: &str = "dt0c01.sync-token";

fn body(r: &Request) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

async fn requests_to(server: &MockServer, verb: &str, at: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == verb && r.url.path() == at)
        .collect()
}

/// A responder who acknowledges through the API, and a route that pages PagerDuty and escalates
/// to them by SMS.
fn on_call(dir: &Path, far: &MockServer, patch: Value) -> Value {
    let mut c = config_with(json!({
        "public_url": "http://hub.example.test",
        "people": {"ana": {"name": "Ana Lima", "phone": "+15550001111", "role": "responder",
                           "password_hash": password_hash(dir, PW)}},
        "actions": {
            "pd": {"type": "pagerduty", "routing_key": ROUTING_KEY, "api_url": far.uri()},
            "text": {"type": "sms", "account_sid": "AC123", "auth_token": "tw", "from": "+15005550006",
                     "to": "person", "api_url": far.uri(), "template": "{{ problem.problem_id }}"}
        },
        "escalations": {"prod": {"steps": [{"notify": ["person:ana"], "actions": ["text"], "wait": "1h"}]}},
        "routes": [{"actions": ["pd"], "escalate": "prod"}],
        "dispatch": {"first_retry_secs": 1}
    }));
    merge(&mut c, patch);
    c
}

const PW: &str = "a long pass phrase";

async fn answer(hub: &Hub, key: &str, verb: &str) -> u16 {
    client()
        .post(hub.url(&format!("/api/problems/{key}/{verb}")))
        .basic_auth("ana", Some(PW))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn far_side() -> MockServer {
    let far = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/2010-04-01/Accounts/AC123/Messages.json"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"sid": "SM1"})))
        .mount(&far)
        .await;
    Mock::given(method("POST"))
        .and(path("/v2/enqueue"))
        .respond_with(ResponseTemplate::new(202).set_body_json(
            // PagerDuty answers with the key it filed the event under.
            json!({"status": "success", "message": "Event processed", "dedup_key": "dynatrace/7"}),
        ))
        .mount(&far)
        .await;
    far
}

#[tokio::test]
async fn an_acknowledgement_tells_dynatrace_and_pagerduty_and_a_resolve_closes_both() {
    let far = far_side().await;
    // Dynatrace is busy at first: the comment is a run, so it is tried again.
    Mock::given(method("POST"))
        .and(path("/api/v2/problems/-7V2/comments"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&far)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/problems/-7V2/comments"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "c1"})))
        .mount(&far)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v2/problems/-7V2/close"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"problemId": "-7V2", "closing": true, "comment": {"id": "c2"}}),
            ),
        )
        .mount(&far)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let config = on_call(
        dir.path(),
        &far,
        json!({"dynatrace": {"tenant": far.uri(), "api_token": TOKEN, "sync": true,
                             "enrich_wait": "0s", "max_attempts": 1}}),
    );
    let hub = Hub::start_in(dir.path(), &config, &[]);
    let opened =
        json!({"State": "OPEN", "ProblemID": "7", "PID": "-7V2", "ProblemTitle": "disk full"});
    let r = post(&client(), &hub.url("/"), opened.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually("PagerDuty's trigger", async || {
        !requests_to(&far, "POST", "/v2/enqueue").await.is_empty()
    })
    .await;

    assert_eq!(answer(&hub, "7", "ack").await, 200);
    eventually(
        "the acknowledgement in PagerDuty and the comment in Dynatrace",
        async || {
            requests_to(&far, "POST", "/v2/enqueue").await.len() == 2
                && requests_to(&far, "POST", "/api/v2/problems/-7V2/comments")
                    .await
                    .len()
                    == 2
        },
    )
    .await;
    let events: Vec<Value> = requests_to(&far, "POST", "/v2/enqueue")
        .await
        .iter()
        .map(body)
        .collect();
    assert_eq!(events[0]["event_action"], "trigger");
    assert_eq!(events[1]["event_action"], "acknowledge");
    assert_eq!(events[1]["dedup_key"], events[0]["dedup_key"]);
    assert_eq!(events[1]["routing_key"], ROUTING_KEY);
    let comments = requests_to(&far, "POST", "/api/v2/problems/-7V2/comments").await;
    let comment = &comments[1];
    assert_eq!(
        comment
            .headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap(),
        format!("Api-Token {TOKEN}")
    );
    assert_eq!(
        body(comment)["message"],
        "hub: acknowledged by Ana Lima via api"
    );

    // A second acknowledgement is refused and tells nobody again.
    assert_eq!(answer(&hub, "7", "ack").await, 409);

    assert_eq!(answer(&hub, "7", "resolve").await, 200);
    eventually(
        "the close in Dynatrace and the resolve in PagerDuty",
        async || {
            requests_to(&far, "POST", "/api/v2/problems/-7V2/close")
                .await
                .len()
                == 1
                && requests_to(&far, "POST", "/v2/enqueue").await.len() == 3
        },
    )
    .await;
    let close = &requests_to(&far, "POST", "/api/v2/problems/-7V2/close").await[0];
    assert_eq!(
        body(close),
        json!({"message": "hub: resolved by Ana Lima via api"})
    );
    let events: Vec<Value> = requests_to(&far, "POST", "/v2/enqueue")
        .await
        .iter()
        .map(body)
        .collect();
    assert_eq!(events[2]["event_action"], "resolve");
    assert_eq!(events[2]["dedup_key"], events[0]["dedup_key"]);

    // Visible like any other run: the retried comment shows its two attempts.
    let runs = runs(dir.path()).await;
    let sync: Vec<&Run> = runs
        .iter()
        .filter(|r| r.action == "dynatrace-sync")
        .collect();
    assert_eq!(sync.len(), 2, "{runs:?}");
    assert!(sync.iter().all(|r| r.status == "succeeded"));
    assert_eq!(sync[0].attempts, 2);
    assert_eq!(sync[0].target_label, "acknowledged by Ana Lima via api");
    // The first notification was the only one hub got; Dynatrace's own RESOLVED would come next.
    assert_eq!(
        runs.iter().filter(|r| r.action == "pd").count(),
        3,
        "{runs:?}"
    );
}

fn alert(status: &str) -> String {
    json!({
        "version": "4", "groupKey": "{}:{alertname=\"DiskFull\"}", "status": status,
        "receiver": "hub", "groupLabels": {"alertname": "DiskFull"},
        "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am", "truncatedAlerts": 0,
        "alerts": [{"status": status, "fingerprint": "f00dfeed",
                    "labels": {"alertname": "DiskFull", "instance": "db1:9100", "severity": "critical"},
                    "annotations": {"summary": "disk full on db1"},
                    "startsAt": "2026-12-07T01:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://prom/graph"}]
    })
    .to_string()
}

async fn silences(am: &str) -> Vec<Value> {
    let text = client()
        .get(format!("{am}/api/v2/silences"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn an_acknowledged_alert_is_silenced_in_alertmanager_until_it_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let (_am, am) = alertmanager(
        dir.path(),
        "route:\n  receiver: none\nreceivers:\n  - name: none\n",
    )
    .await;
    let far = far_side().await;
    let config = on_call(
        dir.path(),
        &far,
        json!({"sources": {"alertmanager": {}},
               "alertmanager": {"url": am, "silence_on_ack": true, "silence_for": "2h"}}),
    );
    let hub = Hub::start_in(dir.path(), &config, &[]);
    let r = post(&client(), &hub.url("/hooks/alertmanager"), alert("firing"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually("the escalation's text", async || {
        !requests_to(&far, "POST", "/2010-04-01/Accounts/AC123/Messages.json")
            .await
            .is_empty()
    })
    .await;
    assert!(silences(&am).await.is_empty());

    assert_eq!(answer(&hub, "f00dfeed", "ack").await, 200);
    eventually("a silence for the alert's labels", async || {
        silences(&am)
            .await
            .iter()
            .any(|s| s["status"]["state"] == "active")
    })
    .await;
    let s = silences(&am).await.remove(0);
    let mut matchers: Vec<(String, String)> = s["matchers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["isRegex"], false);
            (
                m["name"].as_str().unwrap().into(),
                m["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    matchers.sort();
    assert_eq!(
        matchers,
        [
            ("alertname", "DiskFull"),
            ("instance", "db1:9100"),
            ("severity", "critical")
        ]
        .map(|(n, v)| (n.to_string(), v.to_string()))
    );
    assert_eq!(s["createdBy"], "hub");
    assert!(s["comment"]
        .as_str()
        .unwrap()
        .contains("acknowledged by Ana Lima via api"));

    // Taken back: the escalation pages again, and the alert is no longer silenced there either.
    let texts = async || {
        requests_to(&far, "POST", "/2010-04-01/Accounts/AC123/Messages.json")
            .await
            .len()
    };
    let texted = texts().await;
    assert_eq!(answer(&hub, "f00dfeed", "unack").await, 200);
    eventually("the silence to expire when unacknowledged", async || {
        silences(&am)
            .await
            .iter()
            .all(|s| s["status"]["state"] == "expired")
    })
    .await;
    eventually("a page again", async || texts().await > texted).await;
    // Acknowledged again: a new silence.
    assert_eq!(answer(&hub, "f00dfeed", "ack").await, 200);
    eventually("a second silence", async || {
        silences(&am)
            .await
            .iter()
            .any(|s| s["status"]["state"] == "active")
    })
    .await;

    let r = post(
        &client(),
        &hub.url("/hooks/alertmanager"),
        alert("resolved"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    eventually(
        "the silence to expire when the alert resolves",
        async || {
            silences(&am)
                .await
                .iter()
                .all(|s| s["status"]["state"] == "expired")
        },
    )
    .await;
    let runs = runs(dir.path()).await;
    let silence: Vec<&Run> = runs
        .iter()
        .filter(|r| r.action == "alertmanager-silence")
        .collect();
    // Made, expired by the unacknowledgement, made again, expired by the resolve.
    assert_eq!(silence.len(), 4, "{runs:?}");
    assert!(silence.iter().all(|r| r.status == "succeeded"), "{runs:?}");
}

#[test]
fn telling_the_source_refuses_what_it_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            json!({"dynatrace": {"sync": true}}),
            "dynatrace.sync",
            "needs dynatrace.tenant",
        ),
        (
            json!({"dynatrace": {"sync": "yes"}}),
            "dynatrace.sync",
            "expected true or false",
        ),
        (
            json!({"alertmanager": {"silence_on_ack": true}}),
            "alertmanager.url",
            "missing",
        ),
        (
            json!({"alertmanager": {"url": "$(touch x)", "silence_on_ack": true}}),
            "alertmanager.url",
            "expected Alertmanager's base URL",
        ),
        (
            json!({"alertmanager": {"url": "http://am:9093", "silence_on_ack": true, "silence_for": "1s"}}),
            "alertmanager.silence_for",
            "",
        ),
        (
            json!({"alertmanager": {"url": "http://am:9093", "silense": true}}),
            "alertmanager.silense",
            "",
        ),
        (
            json!({"alertmanager": {"url": "http://am:9093", "silence_on_ack": true},
                   "actions": {"alertmanager-silence": {"type": "script", "command": ["true"]}}}),
            "actions.alertmanager-silence",
            "hub's own",
        ),
        (
            json!({"actions": {"mine": {"type": "dynatrace_sync"}}}),
            "actions.mine.type",
            "hub makes this action itself",
        ),
        (
            json!({"alertmanager": {"url": "http://am:9093", "silence_on_ack": true},
                   "routes": [{"actions": ["alertmanager-silence"]}]}),
            "routes[0].actions",
            "",
        ),
    ];
    for (patch, key, says) in cases {
        let (code, out) = check_config(dir.path(), &config_with(patch.clone()));
        assert_ne!(code, Some(0), "{patch} passed: {out}");
        assert!(out.contains(key) && out.contains(says), "{patch}: {out}");
    }
    // A step's sms action must text the person it pages, not its own numbers.
    let far = "http://127.0.0.1:9";
    let own_numbers = json!({
        "public_url": "http://hub.example.test",
        "people": {"ana": {"name": "Ana", "phone": "+15550001111"}},
        "actions": {"text": {"type": "sms", "account_sid": "AC1", "auth_token": "t",
                             "from": "+15005550006", "to": ["+15550009999"], "api_url": far}},
        "escalations": {"prod": {"steps": [{"notify": ["person:ana"], "actions": ["text"], "wait": "1m"}]}}
    });
    let (code, out) = check_config(dir.path(), &config_with(own_numbers));
    assert_ne!(code, Some(0), "{out}");
    assert!(
        out.contains("escalations.prod.steps[0].actions") && out.contains("\"to\": \"person\""),
        "{out}"
    );

    // Off, or on with what it needs: fine.
    let fine = json!({"alertmanager": {"url": "http://am:9093", "silence_on_ack": false}});
    let (code, out) = check_config(dir.path(), &config_with(fine));
    assert_eq!(code, Some(0), "{out}");
    assert!(!std::fs::exists(dir.path().join("x")).unwrap());
}
