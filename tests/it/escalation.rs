//! Escalation against the real binary with short waits: every step and repeat in order and once,
//! each way of acknowledging stopping the next step, links that change nothing, and a `kill -9`
//! in the middle that loses no step and sends none twice. Texts go to a local stand-in for
//! Twilio's Messages API.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::*;

const PW: &str = "a long pass phrase";
const ANA: &str = "+15550001111";
const BO: &str = "+15550002222";
const CY: &str = "+15550003333";

async fn twilio() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/2010-04-01/Accounts/AC123/Messages.json"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"sid": "SM1", "status": "queued"})),
        )
        .mount(&server)
        .await;
    server
}

/// The texts sent so far, in order: `(to, body)`.
async fn texts(twilio: &MockServer) -> Vec<(String, String)> {
    let form = |r: &Request| -> Vec<(String, String)> {
        let body = String::from_utf8(r.body.clone()).unwrap();
        reqwest::Url::parse(&format!("http://x/?{body}"))
            .unwrap()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    };
    twilio
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let f = form(r);
            let get = |k: &str| f.iter().find(|(n, _)| n == k).unwrap().1.clone();
            (get("To"), get("Body"))
        })
        .collect()
}

fn for_problem<'a>(all: &'a [(String, String)], key: &str) -> Vec<&'a (String, String)> {
    all.iter()
        .filter(|(_, body)| body.starts_with(&format!("{key} ")))
        .collect()
}

/// Ana is on call in `primary`, Bo in `secondary`; Cy is named by person. Two steps of `wait`,
/// repeated once: Ana; then Bo and Cy; then Ana; then Bo and Cy.
fn night(dir: &Path, twilio: &MockServer, wait: &str) -> Value {
    let hash = password_hash(dir, PW);
    config_with(json!({
        "public_url": "http://hub.example.test",
        "people": {
            "ana": {"name": "Ana Lima", "phone": ANA, "role": "responder", "password_hash": hash},
            "bo": {"name": "Bo", "phone": BO, "role": "responder"},
            "cy": {"name": "Cy", "phone": CY, "role": "admin"},
            "vi": {"name": "Vi", "role": "viewer", "password_hash": hash}
        },
        "schedules": {
            "primary": {"rotation": {"people": ["ana"], "every": "1w", "start": "2026-01-05"}},
            "secondary": {"rotation": {"people": ["bo"], "every": "1w", "start": "2026-01-05"}}
        },
        "actions": {"text-person": {
            "type": "sms", "account_sid": "AC123", "auth_token": "tw-token",
            "from": "+15005550006", "to": "person", "api_url": twilio.uri(),
            "rate_limit_per_minute": 600,
            "template": "{{ problem.problem_id }} step {{ step }} for {{ person.name }}: reply {{ ack_code }} or open {{ ack_url }}"
        }},
        "escalations": {"prod": {"steps": [
            {"notify": ["schedule:primary"], "actions": ["text-person"], "wait": wait},
            {"notify": ["schedule:secondary", "person:cy"], "actions": ["text-person"], "wait": wait}
        ], "repeat": 1}},
        "routes": [{"escalate": "prod"}],
        "dispatch": {"first_retry_secs": 1}
    }))
}

async fn open(hub: &Hub, key: &str) {
    let body = json!({"State": "OPEN", "ProblemID": key, "PID": format!("{key}V2"),
                      "ProblemTitle": "checkout is down"});
    let r = post(&client(), &hub.url("/"), body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn escalation(hub: &Hub, key: &str) -> Value {
    let r = client()
        .get(hub.url(&format!("/api/problems/{key}")))
        .basic_auth("ana", Some(PW))
        .send()
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    v["escalation"].clone()
}

#[tokio::test]
async fn nobody_answers_every_step_and_repeat_goes_out_in_order_once() {
    let twilio = twilio().await;
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start_in(dir.path(), &night(dir.path(), &twilio, "1s"), &[]);
    open(&hub, "N-1").await;
    eventually("the escalation to end", async || {
        escalation(&hub, "N-1").await["state"] == "ended"
    })
    .await;
    eventually("the last texts", async || texts(&twilio).await.len() >= 6).await;
    // Steps are sent in order, each to whoever it names, and each once.
    let sent = texts(&twilio).await;
    let to: Vec<&str> = sent.iter().map(|(to, _)| to.as_str()).collect();
    assert_eq!(to.len(), 6, "{sent:#?}");
    assert_eq!(to[0], ANA);
    let mut second: Vec<&str> = to[1..3].to_vec();
    second.sort();
    assert_eq!(second, [BO, CY]);
    assert_eq!(to[3], ANA);
    let mut fourth: Vec<&str> = to[4..6].to_vec();
    fourth.sort();
    assert_eq!(fourth, [BO, CY]);
    let (_, body) = &sent[0];
    assert!(
        body.starts_with("N-1 step 1 for Ana Lima: reply "),
        "{body}"
    );
    assert!(body.contains("http://hub.example.test/ack/"), "{body}");
    // The timeline: four steps, whom each notified.
    let e = escalation(&hub, "N-1").await;
    let steps = e["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 4, "{e:#}");
    assert_eq!(steps[1]["notified"].as_array().unwrap().len(), 2);
    assert_eq!(
        (steps[3]["pass"].as_i64(), steps[3]["step"].as_i64()),
        (Some(2), Some(2))
    );
    // Nothing more comes once every step went out: a quiet second proves it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(texts(&twilio).await.len(), 6);
    let metrics = client()
        .get(hub.url("/metrics"))
        .basic_auth("ana", Some(PW))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("hub_escalation_steps_total 4"),
        "{metrics}"
    );
    assert!(metrics.contains("hub_escalations_open 0"), "{metrics}");
}

/// Each way of acknowledging stops the next step: the first text goes out, then the
/// acknowledgement, then nothing for that problem, however long the wait.
#[tokio::test]
async fn each_way_of_acknowledging_stops_the_next_step() {
    let twilio = twilio().await;
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start_in(dir.path(), &night(dir.path(), &twilio, "3s"), &[]);
    let c = client();
    let keys = ["A-CLI", "A-API", "A-PAGE", "A-LINK"];
    for key in keys {
        open(&hub, key).await;
    }
    eventually("each problem's first text", async || {
        let sent = texts(&twilio).await;
        keys.iter().all(|k| for_problem(&sent, k).len() == 1)
    })
    .await;
    // The command line.
    let out = hub_command(dir.path())
        .args(["--as", "ana", "ack", "A-CLI"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The API; a viewer may not. It answers who as the problem's escalation does: by name,
    // and by id.
    for (user, status) in [("vi", 403), ("ana", 200), ("ana", 409)] {
        let r = c
            .post(hub.url("/api/problems/A-API/ack"))
            .basic_auth(user, Some(PW))
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{user}");
        if status == 200 {
            let e: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
            assert_eq!(
                (&e["acked_by"], &e["acked_by_id"]),
                (&json!("Ana Lima"), &json!("ana"))
            );
        }
    }
    // The page's button, with the page's form token.
    let page = c
        .get(hub.url("/problems/A-PAGE"))
        .basic_auth("ana", Some(PW))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("id=\"ack\""),
        "the button is shown to a responder: {page}"
    );
    let at = page.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = &page[at..at + 64];
    let r = c
        .post(hub.url("/problems/A-PAGE/ack?source=dynatrace"))
        .basic_auth("ana", Some(PW))
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    // The link from the text: its GET changes nothing, its POST acknowledges.
    let sent = texts(&twilio).await;
    let body = &for_problem(&sent, "A-LINK")[0].1;
    let token = body.rsplit("/ack/").next().unwrap().trim().to_string();
    let link = hub.url(&format!("/ack/{token}"));
    let shown = c.get(&link).send().await.unwrap();
    assert_eq!(shown.status(), 200);
    assert!(shown
        .text()
        .await
        .unwrap()
        .contains("Acknowledge as Ana Lima"));
    assert_eq!(escalation(&hub, "A-LINK").await["state"], "open");
    let done = c.post(&link).send().await.unwrap();
    assert_eq!(done.status(), 200);
    assert!(done
        .text()
        .await
        .unwrap()
        .contains("Acknowledged A-LINK as Ana Lima"));

    for (key, via) in [
        ("A-CLI", "cli"),
        ("A-API", "api"),
        ("A-PAGE", "page"),
        ("A-LINK", "link"),
    ] {
        let e = escalation(&hub, key).await;
        assert_eq!(e["state"], "acked", "{key}: {e:#}");
        assert_eq!(e["acked_via"], via, "{key}");
        assert_eq!(e["acked_by"], "Ana Lima", "{key}");
        assert_eq!(e["acked_by_id"], "ana", "{key}");
    }
    // Longer than a step's wait: still one text per problem.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let sent = texts(&twilio).await;
    for key in keys {
        assert_eq!(for_problem(&sent, key).len(), 1, "{key}: {sent:#?}");
    }
    // Every acknowledgement is in the audit log.
    let r = c
        .get(hub.url("/api/audit"))
        .basic_auth("vi", Some(PW))
        .send()
        .await
        .unwrap();
    let audit: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    let acks: Vec<&Value> = audit["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "ack")
        .collect();
    assert_eq!(acks.len(), 4);
    // Each names the step it answered: the link came in the first step's text.
    let link = acks
        .iter()
        .find(|a| a["target"] == "dynatrace/A-LINK")
        .unwrap();
    assert_eq!(
        link["detail"], "escalation prod after pass 1 step 1",
        "{link}"
    );
    // Unacknowledged: it pages again from its first step.
    let out = hub_command(dir.path())
        .args(["--as", "ana", "unack", "A-CLI"])
        .output()
        .unwrap();
    assert!(out.status.success());
    eventually("the page again", async || {
        for_problem(&texts(&twilio).await, "A-CLI").len() == 2
    })
    .await;
}

#[tokio::test]
async fn links_that_are_not_right_change_nothing() {
    let twilio = twilio().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = night(dir.path(), &twilio, "30s");
    merge(&mut config, json!({"escalation_link_ttl": "2s"}));
    let hub = Hub::start_in(dir.path(), &config, &[]);
    open(&hub, "L-1").await;
    open(&hub, "L-2").await;
    eventually("both first texts", async || texts(&twilio).await.len() == 2).await;
    let sent = texts(&twilio).await;
    let token_of = |key: &str| {
        for_problem(&sent, key)[0]
            .1
            .rsplit("/ack/")
            .next()
            .unwrap()
            .trim()
            .to_string()
    };
    let (one, two) = (token_of("L-1"), token_of("L-2"));
    // L-2's payload under L-1's signature: another problem's link is not made by editing one.
    let spliced = format!(
        "{}.{}",
        two.split('.').next().unwrap(),
        one.split('.').nth(1).unwrap()
    );
    let c = client();
    for bad in [
        spliced.as_str(),
        "not-a-token",
        "..%2F..%2Fconfig.json",
        "%3Cscript%3E.x",
    ] {
        for r in [
            c.get(hub.url(&format!("/ack/{bad}"))).send().await.unwrap(),
            c.post(hub.url(&format!("/ack/{bad}")))
                .send()
                .await
                .unwrap(),
        ] {
            assert!(
                r.status() == 403 || r.status() == 404,
                "{bad}: {}",
                r.status()
            );
        }
    }
    // A form on another site cannot use a good link.
    let r = c
        .post(hub.url(&format!("/ack/{one}")))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Expired: after escalation_link_ttl.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r = c
        .post(hub.url(&format!("/ack/{one}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("expired"));
    for key in ["L-1", "L-2"] {
        assert_eq!(escalation(&hub, key).await["state"], "open", "{key}");
    }
}

/// A `kill -9` between steps: the next start sends what was due, and nothing twice.
#[tokio::test]
async fn a_kill_between_steps_loses_none_and_sends_none_twice() {
    let twilio = twilio().await;
    let dir = tempfile::tempdir().unwrap();
    let config = night(dir.path(), &twilio, "2s");
    let mut hub = Hub::start_in(dir.path(), &config, &[]);
    open(&hub, "K-1").await;
    eventually("the first text", async || !texts(&twilio).await.is_empty()).await;
    hub.kill9();
    let hub = Hub::start_in(dir.path(), &config, &[]);
    eventually("the escalation to end", async || {
        escalation(&hub, "K-1").await["state"] == "ended"
    })
    .await;
    eventually("every text", async || texts(&twilio).await.len() >= 6).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent = texts(&twilio).await;
    assert_eq!(sent.len(), 6, "{sent:#?}");
    let mut to: Vec<&str> = sent.iter().map(|(t, _)| t.as_str()).collect();
    to.sort();
    assert_eq!(to, [ANA, ANA, BO, BO, CY, CY]);
}

/// A problem that resolves stops its escalation; a silence holds it at its first step.
#[tokio::test]
async fn resolving_stops_and_a_silence_holds() {
    let twilio = twilio().await;
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start_in(dir.path(), &night(dir.path(), &twilio, "2s"), &[]);
    open(&hub, "R-1").await;
    eventually("the first text", async || texts(&twilio).await.len() == 1).await;
    let close = json!({"State": "RESOLVED", "ProblemID": "R-1", "PID": "R-1V2"});
    let r = post(&client(), &hub.url("/"), close.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually("the escalation to stop", async || {
        escalation(&hub, "R-1").await["state"] == "resolved"
    })
    .await;
    // A silence on S-1 before it opens: no step goes out while it holds.
    let r = client()
        .post(hub.url("/api/silences"))
        .basic_auth("ana", Some(PW))
        .header("content-type", "application/json")
        .body(
            json!({"matchers": ["problem=S-1"], "duration": "1h", "comment": "deploy"}).to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    open(&hub, "S-1").await;
    eventually("the hold", async || {
        escalation(&hub, "S-1").await["held_by"].is_string()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sent = texts(&twilio).await;
    assert!(for_problem(&sent, "S-1").is_empty(), "{sent:#?}");
    assert_eq!(
        for_problem(&sent, "R-1").len(),
        1,
        "nothing after the resolve"
    );
}

/// Two hubs on one PostgreSQL store: each step goes out once, whichever instance moves it on.
#[tokio::test]
async fn two_hubs_on_one_postgres_send_each_step_once() {
    sqlite_pass_only!("starts its own PostgreSQL; the SQLite pass ran it");
    let url = crate::postgres::pg::database();
    let twilio = twilio().await;
    let root = tempfile::tempdir().unwrap();
    let start = |instance: &str| {
        let dir = root.path().join(instance);
        std::fs::create_dir_all(&dir).unwrap();
        let mut config = night(&dir, &twilio, "1s");
        merge(
            &mut config,
            json!({"store": {"url": url, "instance": instance},
                   "dir_received": root.path().join("received")}),
        );
        Hub::start_in(&dir, &config, &[])
    };
    let (a, b) = (start("a"), start("b"));
    for i in 0..5 {
        open(if i % 2 == 0 { &a } else { &b }, &format!("T-{i}")).await;
    }
    for i in 0..5 {
        let key = format!("T-{i}");
        eventually("every escalation to end", async || {
            escalation(&a, &key).await["state"] == "ended"
        })
        .await;
    }
    eventually("every text", async || texts(&twilio).await.len() >= 30).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = texts(&twilio).await;
    for i in 0..5 {
        let mine = for_problem(&sent, &format!("T-{i}"));
        let mut to: Vec<&str> = mine.iter().map(|(t, _)| t.as_str()).collect();
        to.sort();
        assert_eq!(to, [ANA, ANA, BO, BO, CY, CY], "T-{i}: {mine:#?}");
    }
    assert_eq!(sent.len(), 30);
}

#[tokio::test]
async fn a_pagerduty_acknowledge_stops_the_escalation_as_any_other_does() {
    let twilio = twilio().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = night(dir.path(), &twilio, "2s");
    let key = "0123456789abcdef0123456789abcdef";
    merge(
        &mut config,
        json!({"sources": {"pagerduty": {"routing_keys": [key]}}}),
    );
    let hub = Hub::start_in(dir.path(), &config, &[]);
    let event = |action: &str| {
        json!({"routing_key": key, "event_action": action, "dedup_key": "checkout",
               "payload": {"summary": "checkout is down", "source": "web-1",
                           "severity": "critical"}})
        .to_string()
    };
    let enqueue = async |body: String| {
        let r = client()
            .post(hub.url("/v2/enqueue"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    };
    enqueue(event("trigger")).await;
    eventually("Ana's first text", async || {
        !texts(&twilio).await.is_empty()
    })
    .await;
    enqueue(event("acknowledge")).await;
    let state = async || {
        let r = client()
            .get(hub.url("/api/problems/checkout?source=pagerduty"))
            .basic_auth("ana", Some(PW))
            .send()
            .await
            .unwrap();
        let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        v["escalation"].clone()
    };
    eventually("the escalation acknowledged", async || {
        state().await["state"] == "acked"
    })
    .await;
    let e = state().await;
    assert_eq!(
        (e["acked_by"].as_str(), e["acked_via"].as_str()),
        (Some("pagerduty"), Some("pagerduty")),
        "{e:#}"
    );
    // Bo and Cy were due two seconds later, and the pass after: none of them is texted.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(texts(&twilio).await.len(), 1);
}
