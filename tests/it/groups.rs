//! One incident per storm, with Debian's real Alertmanager: 300 alerts of one `alertname` become
//! one send after `wait` listing all 300, 20 more become one update after `interval`, and one
//! RESOLVED goes out when every alert has resolved; another `alertname` is another group.

use std::path::Path;

use serde_json::{json, Value};

use crate::support::*;

/// What each send of the grouped script saw: `(group id, state, count, the group on stdin)`.
fn sends(dir: &Path) -> Vec<(String, String, usize, Value)> {
    lines(&dir.join("sends.log"))
        .iter()
        .map(|l| {
            let mut f = l.split(' ');
            let (id, state, count, run) = (
                f.next().unwrap().to_string(),
                f.next().unwrap().to_string(),
                f.next().unwrap().parse().unwrap(),
                f.next().unwrap(),
            );
            let stdin = std::fs::read(dir.join(format!("{run}.json"))).unwrap();
            (id, state, count, serde_json::from_slice(&stdin).unwrap())
        })
        .collect()
}

fn alerts(name: &str, from: usize, to: usize, ended: bool) -> Vec<Value> {
    (from..to)
        .map(|i| {
            let mut a = json!({
                "labels": {"alertname": name, "instance": format!("host{i}:9100"),
                           "severity": "critical", "cluster": "eu-1"},
                "annotations": {"summary": format!("host{i} is down")},
            });
            if ended {
                a["endsAt"] = json!(hub::clock::rfc3339(hub::clock::now_ms() - 1000));
            }
            a
        })
        .collect()
}

async fn fire(am: &str, alerts: Vec<Value>) {
    let r = client()
        .post(format!("{am}/api/v2/alerts"))
        .header("content-type", "application/json")
        .body(Value::Array(alerts).to_string())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

async fn start_alertmanager(dir: &Path, hub: &Hub) -> (Running, String) {
    let config = format!(
        "route:\n  receiver: hub\n  group_by: ['alertname']\n  group_wait: 1s\n  \
         group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hub\n    \
         webhook_configs:\n      - url: {}/hooks/alertmanager\n        send_resolved: true\n",
        hub.base_url
    );
    alertmanager(dir, &config).await
}

#[tokio::test]
async fn a_storm_of_300_alerts_is_one_send_one_update_and_one_resolve() {
    let dir = tempfile::tempdir().unwrap();
    script(
        dir.path(),
        "send.sh",
        r#"cat > "$HUB_RUN_ID.json"; printf '%s %s %s %s\n' "$HUB_GROUP_ID" "$HUB_STATE" "$HUB_GROUP_COUNT" "$HUB_RUN_ID" >> sends.log"#,
    );
    let config = config_with(json!({
        "sources": {"alertmanager": {}},
        "actions": {"page": {"type": "script", "command": ["./send.sh"]}},
        "routes": [{"actions": ["page"],
                    "group": {"by": ["source", "tag:alertname"], "wait": "4s", "interval": "4s"}}]
    }));
    let hub = Hub::start_in(dir.path(), &config, &[]);
    let (_am, am) = start_alertmanager(dir.path(), &hub).await;

    let mut storm = alerts("InstanceDown", 0, 300, false);
    storm.extend(alerts("DiskFull", 0, 5, false));
    fire(&am, storm).await;
    eventually("the first send of each group", async || {
        lines(&dir.path().join("sends.log")).len() >= 2
    })
    .await;
    let first = sends(dir.path());
    assert_eq!(first.len(), 2, "{first:?}");
    let (down, disk) = if first[0].2 == 300 {
        (&first[0], &first[1])
    } else {
        (&first[1], &first[0])
    };
    assert_eq!((down.1.as_str(), down.2), ("OPEN", 300));
    assert_eq!((disk.1.as_str(), disk.2), ("OPEN", 5));
    assert_ne!(down.0, disk.0);
    let group = &down.3;
    assert_eq!(group["key"], "source=alertmanager,alertname=InstanceDown");
    assert_eq!(group["new"], 300);
    assert_eq!(group["problems"].as_array().unwrap().len(), 300);
    assert!(group["problems"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["problem_id"].as_str().is_some_and(|id| !id.is_empty())));
    assert!(group["problem"]["title"]
        .as_str()
        .unwrap()
        .starts_with("300 problem(s), 300 open"));

    // A dry run says which group a payload would join, and that another alertname opens one.
    let payload = |name: &str| {
        json!({"version": "4", "status": "firing", "receiver": "hub", "groupLabels": {},
               "commonLabels": {}, "commonAnnotations": {}, "externalURL": "", "groupKey": "{}",
               "alerts": [{"status": "firing", "fingerprint": "dry1",
                           "labels": {"alertname": name, "instance": "dry:1"}, "annotations": {},
                           "startsAt": "2026-12-07T01:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                           "generatorURL": ""}]})
        .to_string()
    };
    for (name, says) in [
        ("InstanceDown", format!("joins open group {}", down.0)),
        ("Other", "opens a new group".to_string()),
    ] {
        std::fs::write(dir.path().join("dry.json"), payload(name)).unwrap();
        let out = hub_command(dir.path())
            .args(["explain", "dry.json", "--source", "alertmanager"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
        let g = &plan["notifications"][0]["groups"][0];
        assert!(g["would"].as_str().unwrap().starts_with(&says), "{plan:#}");
        assert_eq!(g["key"], format!("source=alertmanager,alertname={name}"));
    }

    // The storm goes on: 20 more are one update, no sooner than `interval` after the first send.
    fire(&am, alerts("InstanceDown", 300, 320, false)).await;
    eventually("the update", async || {
        lines(&dir.path().join("sends.log")).len() >= 3
    })
    .await;
    let update = &sends(dir.path())[2];
    assert_eq!(update.0, down.0);
    assert_eq!((update.1.as_str(), update.2), ("OPEN", 320));
    assert_eq!(update.3["new"], 20);

    // Everything resolves: one RESOLVED per group.
    let mut all = alerts("InstanceDown", 0, 320, true);
    all.extend(alerts("DiskFull", 0, 5, true));
    fire(&am, all).await;
    eventually("the resolves", async || {
        lines(&dir.path().join("sends.log")).len() >= 5
    })
    .await;
    let all_sends = sends(dir.path());
    let resolved: Vec<_> = all_sends[3..]
        .iter()
        .map(|s| (s.0.clone(), s.1.clone(), s.2))
        .collect();
    assert!(
        resolved.contains(&(down.0.clone(), "RESOLVED".into(), 320)),
        "{resolved:?}"
    );
    assert!(
        resolved.contains(&(disk.0.clone(), "RESOLVED".into(), 5)),
        "{resolved:?}"
    );
    // Nothing more comes, however Alertmanager re-sends.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert_eq!(lines(&dir.path().join("sends.log")).len(), 5);

    // The groups, from the API and the command line.
    let (status, api) = get_json(&hub, "/api/groups").await;
    assert_eq!(status, 200);
    let listed = api["groups"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|g| g["state"] == "resolved"));
    let member = group["problems"][0]["problem_id"].as_str().unwrap();
    let (_, problem) = get_json(&hub, &format!("/api/problems/{member}?source=alertmanager")).await;
    assert_eq!(problem["groups"][0]["id"].to_string(), down.0, "{problem}");
    let page = get_text(&hub, &format!("/problems/{member}?source=alertmanager")).await;
    assert!(page.contains(&format!("group {}", down.0)), "{page}");
    let out = hub_command(dir.path())
        .args(["groups", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["groups"].as_array().unwrap().len(), 2);
}

fn webhook(fingerprint: &str) -> String {
    json!({
        "version": "4", "status": "firing", "receiver": "hub", "groupLabels": {},
        "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am", "groupKey": "{}",
        "alerts": [{"status": "firing", "fingerprint": fingerprint,
                    "labels": {"alertname": "Down", "instance": fingerprint},
                    "annotations": {}, "startsAt": "2026-12-07T01:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z", "generatorURL": ""}]
    })
    .to_string()
}

#[tokio::test]
async fn a_source_over_its_rate_is_told_when_to_retry_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(json!({
        "sources": {"alertmanager": {"rate_limit_per_minute": 2, "auth": {"bearer": "am-token"}}}
    }));
    let hub = Hub::start_in(dir.path(), &config, &[]);
    let send = |fingerprint: &str, token: &str| {
        client()
            .post(hub.url("/hooks/alertmanager"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(webhook(fingerprint))
            .send()
    };
    // A stranger's requests do not use up the sender's minute.
    for _ in 0..3 {
        assert_eq!(send("f0", "wrong").await.unwrap().status(), 401);
    }
    assert_eq!(send("f1", "am-token").await.unwrap().status(), 200);
    assert_eq!(send("f2", "am-token").await.unwrap().status(), 200);
    let r = send("f3", "am-token").await.unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("rate_limit_per_minute"));
    assert_eq!(count(dir.path()).await, 2);
    let metrics = client()
        .get(hub.url("/metrics"))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains(r#"hub_notifications_total{source="alertmanager",outcome="rate_limited"} 1"#),
        "{metrics}"
    );
    // Another source has its own minute; Dynatrace has no limit.
    let r = post(
        &client(),
        &hub.url("/"),
        json!({"State": "OPEN", "ProblemID": "9", "PID": "9V2", "ProblemTitle": "down"})
            .to_string(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn groups_and_rate_limits_refuse_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let action = json!({"page": {"type": "script", "command": ["true"]}});
    for (patch, key, says) in [
        (
            json!({"routes": [{"actions": ["page"], "group": {"by": ["tag:alertname", "$(touch x)"]}}]}),
            "routes[0].group.by",
            "unknown key",
        ),
        (
            json!({"routes": [{"actions": ["page"], "group": {"by": ["cluster"]}}]}),
            "routes[0].group.by",
            "tag:NAME",
        ),
        (
            json!({"routes": [{"actions": ["page"], "group": {"wait": "30s"}}]}),
            "routes[0].group.by",
            "missing",
        ),
        (
            json!({"routes": [{"actions": ["page"], "group": {"by": [], "interval": "0s"}}]}),
            "routes[0].group.interval",
            "",
        ),
        (
            json!({"routes": [{"actions": ["page"], "group": {"by": [], "wiat": "1s"}}]}),
            "routes[0].group.wiat",
            "",
        ),
        (
            json!({"routes": [{"actions": ["page"], "group": ["source"]}]}),
            "routes[0].group",
            "expected an object",
        ),
        (
            json!({"routes": [{"escalate": "x", "group": {"by": []}}]}),
            "routes[0].group",
            "needs actions",
        ),
        (
            json!({"routes": [{"actions": ["page"], "wait": "1m", "group": {"by": []}}]}),
            "routes[0].wait",
            "group.wait",
        ),
        (
            json!({"sources": {"alertmanager": {"rate_limit_per_minute": 0}}}),
            "sources.alertmanager.rate_limit_per_minute",
            "",
        ),
        (
            json!({"sources": {"alertmanager": {"rate_limit_per_minute": "many"}}}),
            "sources.alertmanager.rate_limit_per_minute",
            "",
        ),
    ] {
        let mut patch = patch;
        patch["actions"] = action.clone();
        let (code, out) = check_config(dir.path(), &config_with(patch.clone()));
        assert_ne!(code, Some(0), "{patch} passed: {out}");
        assert!(out.contains(key) && out.contains(says), "{patch}: {out}");
    }
    assert!(!dir.path().join("x").exists());
}

/// A stand-in for Twilio's Messages API that takes every text.
async fn twilio() -> wiremock::MockServer {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/2010-04-01/Accounts/AC123/Messages.json"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"sid": "SM1"})))
        .mount(&twilio)
        .await;
    twilio
}

/// Alertmanager's alerts grouped by alertname (`wait` and `interval` as given), each group sent
/// to `./send.sh` and escalated to Ana by text.
fn grouped_on_call(twilio: &wiremock::MockServer, wait: &str) -> Value {
    config_with(json!({
        "public_url": "http://hub.example.test",
        "status_page": {"username": USER, "password": PASSWORD},
        "sources": {"alertmanager": {}},
        "people": {"ana": {"name": "Ana", "phone": "+15550001111", "role": "responder"}},
        "actions": {
            "page": {"type": "script", "command": ["./send.sh"]},
            "text": {"type": "sms", "account_sid": "AC123", "auth_token": "t", "from": "+15005550006",
                     "to": "person", "api_url": twilio.uri(),
                     "template": "{{ problem.problem_id }}: {{ group.count }} problems, reply {{ ack_code }}"}
        },
        "escalations": {"night": {"steps": [{"notify": ["person:ana"], "actions": ["text"], "wait": "1h"}]}},
        "routes": [{"actions": ["page"], "escalate": "night",
                    "group": {"by": ["tag:alertname"], "wait": wait, "interval": wait}}]
    }))
}

/// A grouped route's escalation belongs to the group: one text for three problems, speaking of
/// the group; any member acknowledges it; it ends when the last member resolves, not the first.
#[tokio::test]
async fn a_groups_escalation_pages_once_and_any_member_acknowledges_it() {
    let twilio = twilio().await;
    let dir = tempfile::tempdir().unwrap();
    script(
        dir.path(),
        "send.sh",
        r#"printf '%s %s\n' "$HUB_STATE" "$HUB_GROUP_COUNT" >> sends.log"#,
    );
    let config = grouped_on_call(&twilio, "2s");
    let hub = Hub::start_in(dir.path(), &config, &[]);
    let send = |fingerprint: &'static str, status: &'static str| {
        let body = json!({
            "version": "4", "status": status, "receiver": "hub", "groupLabels": {},
            "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am", "groupKey": "{}",
            "alerts": [{"status": status, "fingerprint": fingerprint,
                        "labels": {"alertname": "Down", "instance": fingerprint},
                        "annotations": {}, "startsAt": "2026-12-07T01:00:00Z",
                        "endsAt": "0001-01-01T00:00:00Z", "generatorURL": ""}]
        });
        post(&client(), &hub.url("/hooks/alertmanager"), body.to_string()).send()
    };
    for f in ["g1", "g2", "g3"] {
        assert_eq!(send(f, "firing").await.unwrap().status(), 200);
    }
    eventually("one text for the group", async || {
        twilio.received_requests().await.unwrap().len() == 1
    })
    .await;
    let text =
        String::from_utf8(twilio.received_requests().await.unwrap()[0].body.clone()).unwrap();
    assert!(
        text.contains("group-") && text.contains("3+problems"),
        "{text}"
    );
    assert_eq!(lines(&dir.path().join("sends.log")), ["OPEN 3"]);

    // The second member acknowledges the group's escalation.
    let out = hub_command(dir.path())
        .args(["--as", "ana", "ack", "g2", "--source", "alertmanager"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, first) = get_json(&hub, "/api/problems/g1?source=alertmanager").await;
    assert_eq!(first["escalation"]["state"], "acked", "{first}");

    // The first member resolving does not end the group's escalation; the last one does.
    assert_eq!(send("g1", "resolved").await.unwrap().status(), 200);
    all_routed(dir.path()).await;
    let (_, first) = get_json(&hub, "/api/problems/g1?source=alertmanager").await;
    assert_eq!(first["escalation"]["state"], "acked", "{first}");
    assert_eq!(send("g2", "resolved").await.unwrap().status(), 200);
    assert_eq!(send("g3", "resolved").await.unwrap().status(), 200);
    eventually("the group's resolve", async || {
        lines(&dir.path().join("sends.log")).len() == 2
    })
    .await;
    assert_eq!(lines(&dir.path().join("sends.log"))[1], "RESOLVED 3");
    eventually("the escalation to end with the group", async || {
        get_json(&hub, "/api/problems/g1?source=alertmanager")
            .await
            .1["escalation"]["state"]
            == "resolved"
    })
    .await;
    assert_eq!(twilio.received_requests().await.unwrap().len(), 1);
}

/// A group's escalation is held by what holds the group: a silence of one member's own labels
/// does not hold it, one of the group's `by` values does.
#[tokio::test]
async fn a_groups_escalation_is_held_by_silences_of_the_group_not_of_its_first_member() {
    let twilio = twilio().await;
    let dir = tempfile::tempdir().unwrap();
    let config = grouped_on_call(&twilio, "1s");
    script(dir.path(), "send.sh", "exit 0");
    let hub = Hub::start_in(dir.path(), &config, &[]);
    for matcher in ["tag=instance:d1", "tag=alertname:Up"] {
        let r = client()
            .post(hub.url("/api/silences"))
            .basic_auth(USER, Some(PASSWORD))
            .header("content-type", "application/json")
            .body(json!({"matchers": [matcher], "duration": "1h", "comment": "test"}).to_string())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{matcher}: {}", r.status());
    }
    let fire = |alertname: &str, instance: &str| {
        let body = json!({
            "version": "4", "status": "firing", "receiver": "hub", "groupLabels": {},
            "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am", "groupKey": "{}",
            "alerts": [{"status": "firing", "fingerprint": instance,
                        "labels": {"alertname": alertname, "instance": instance},
                        "annotations": {}, "startsAt": "2026-12-07T01:00:00Z",
                        "endsAt": "0001-01-01T00:00:00Z", "generatorURL": ""}]
        });
        post(&client(), &hub.url("/hooks/alertmanager"), body.to_string()).send()
    };
    // Down's first member is silenced by its own labels; the group is not.
    for (alertname, instance) in [("Down", "d1"), ("Down", "d2"), ("Up", "u1"), ("Up", "u2")] {
        assert_eq!(fire(alertname, instance).await.unwrap().status(), 200);
    }
    eventually("Down's group paged", async || {
        twilio.received_requests().await.unwrap().len() == 1
    })
    .await;
    eventually("Up's group's escalation held", async || {
        get_json(&hub, "/api/problems/u1?source=alertmanager")
            .await
            .1["escalation"]["held_by"]
            .as_str()
            .is_some_and(|h| h.starts_with("sil_"))
    })
    .await;
    let (_, down) = get_json(&hub, "/api/problems/d1?source=alertmanager").await;
    assert_eq!(down["escalation"]["held_by"], Value::Null, "{down}");
    // Only Down's group was texted, once.
    assert_eq!(twilio.received_requests().await.unwrap().len(), 1);
}
