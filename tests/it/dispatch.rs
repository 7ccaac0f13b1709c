//! No page waits behind noise: each action takes its own due runs, a saturated one never holds
//! another back, and within an action the more urgent problem goes first. Against the real binary;
//! scripts that append a line per run are the witnesses. Timings live in `bench/run`, not here.

use std::path::Path;

use serde_json::{json, Value};

use crate::support::{client, config_with, db, eventually, lines, post, script, Hub};

fn start(dir: &Path, patch: Value) -> Hub {
    let config = config_with(patch);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    Hub::start_in(dir, &config, &[])
}

fn page(id: &str, severity: &str, tags: &str) -> Vec<u8> {
    json!({"State": "OPEN", "ProblemID": id, "PID": format!("{id}V2"), "ProblemTitle": "Checkout down",
           "ProblemSeverity": severity, "Tags": tags})
    .to_string()
    .into_bytes()
}

/// One Alertmanager request with `n` firing alerts, numbered from `first`.
fn alerts(first: usize, n: usize) -> Value {
    let alerts: Vec<Value> = (first..first + n)
        .map(|i| {
            json!({"status": "firing",
                   "labels": {"alertname": "NodeDown", "instance": format!("node-{i}")},
                   "annotations": {}, "startsAt": "2026-12-07T01:00:00Z",
                   "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "",
                   "fingerprint": format!("{i:016x}")})
        })
        .collect();
    json!({"version": "4", "groupKey": format!("{{}}:{{n=\"{first}\"}}"), "truncatedAlerts": 0,
           "status": "firing", "receiver": "hub", "groupLabels": {}, "commonLabels": {},
           "commonAnnotations": {}, "externalURL": "", "alerts": alerts})
}

/// `SELECT COUNT(*) FROM <from>` on the hub's store.
async fn count(dir: &Path, from: &str) -> i64 {
    db(dir).await.count(from).await
}

#[tokio::test]
async fn a_page_to_an_idle_action_runs_while_a_slow_action_has_500_runs_pending() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The slow action holds its two slots until the test ends.
    script(d, "slow.sh", "sleep 120");
    script(
        d,
        "page.sh",
        r#"printf '%s\n' "$HUB_PROBLEM_ID" >> paged.log"#,
    );
    let hub = start(
        d,
        json!({
            "sources": {"alertmanager": {}},
            "actions": {
                "slow": {"type": "script", "command": "./slow.sh", "max_concurrent": 2},
                "pager": {"type": "script", "command": "./page.sh"}
            },
            "routes": [
                {"sources": ["alertmanager"], "actions": ["slow"]},
                {"sources": ["dynatrace"], "actions": ["pager"]}
            ],
            "dispatch": {"shutdown_grace_secs": 0}
        }),
    );
    let c = client();
    for batch in 0..5 {
        let r = c
            .post(hub.url("/hooks/alertmanager"))
            .header("content-type", "application/json")
            .body(alerts(batch * 100, 100).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    eventually("the storm routed to the slow action", async || {
        count(d, "action_runs WHERE action = 'slow'").await == 500
    })
    .await;
    let r = post(&c, &hub.url("/"), page("P-URGENT", "AVAILABILITY", ""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    eventually("the page ran", async || {
        lines(&d.join("paged.log")) == ["P-URGENT"]
    })
    .await;
    // It did not wait its turn behind the storm: the slow action's runs are still there.
    let pending = count(
        d,
        "action_runs WHERE action = 'slow' AND status = 'pending'",
    )
    .await;
    assert!(pending >= 498, "{pending} slow runs left pending");

    // The page and the metrics show the slow action's backlog and how long it has waited.
    let metrics = crate::support::get_text(&hub, "/metrics").await;
    let backlog = metrics
        .lines()
        .find(|l| l.starts_with("hub_action_backlog{action=\"slow\"}"))
        .unwrap_or_else(|| panic!("no backlog for slow in {metrics}"));
    let due: f64 = backlog.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(due >= 498.0, "{backlog}");
    assert!(
        metrics.contains("hub_action_backlog{action=\"pager\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hub_action_oldest_due_seconds{action=\"slow\"}"),
        "{metrics}"
    );
    let html = crate::support::get_text(&hub, "/").await;
    assert!(
        html.contains("due now"),
        "the actions table has no backlog column"
    );
}

#[tokio::test]
async fn within_an_action_runs_go_by_priority_then_by_arrival() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // One slot: the first run holds it until the gate opens, while the others queue.
    script(
        d,
        "one.sh",
        r#"while [ ! -f gate ]; do sleep 0.05; done
printf '%s\n' "$HUB_PROBLEM_ID" >> order.log"#,
    );
    let hub = start(
        d,
        json!({
            "actions": {"one": {"type": "script", "command": "./one.sh", "max_concurrent": 1}},
            "routes": [
                {"tags": ["team:db"], "actions": ["one"], "priority": "P2"},
                {"tags": ["team:batch"], "actions": ["one"], "priority": "P5"},
                {"actions": ["one"]}
            ],
            "dispatch": {"shutdown_grace_secs": 0}
        }),
    );
    let c = client();
    let send = async |id: &str, severity: &str, tags: &str| {
        let r = post(&c, &hub.url("/"), page(id, severity, tags))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    };
    send("P-FIRST", "PERFORMANCE", "").await;
    eventually("the first run holds the slot", async || {
        count(d, "action_runs WHERE status = 'running'").await == 1
    })
    .await;
    // Arrival order: neither severity nor route priority is on their side.
    send("P-BATCH", "ERROR", "team:batch").await; // a route's P5 overrides the severity's P1
    send("P-PERF-1", "PERFORMANCE", "").await; // P3
    send("P-DB", "RESOURCE_CONTENTION", "team:db").await; // the route's P2
    send("P-PERF-2", "CUSTOM_ALERT", "").await; // P3
    send("P-DOWN", "AVAILABILITY", "").await; // P1
    send("P-ERR", "ERROR", "").await; // P1
    eventually("every run routed", async || {
        count(d, "action_runs WHERE status = 'pending'").await == 6
    })
    .await;
    std::fs::write(d.join("gate"), "").unwrap();
    eventually("every run done", async || {
        lines(&d.join("order.log")).len() == 7
    })
    .await;
    assert_eq!(
        lines(&d.join("order.log")),
        ["P-FIRST", "P-DOWN", "P-ERR", "P-DB", "P-PERF-1", "P-PERF-2", "P-BATCH"]
    );
}

#[test]
fn a_route_priority_that_is_not_p1_to_p5_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        json!("P0"),
        json!("P6"),
        json!("urgent"),
        json!(1),
        json!("$(touch x)"),
    ] {
        let config = config_with(json!({
            "actions": {"one": {"type": "script", "command": "./one.sh"}},
            "routes": [{"actions": ["one"], "priority": bad}]
        }));
        let (code, out) = crate::support::check_config(dir.path(), &config);
        assert_eq!(code, Some(1), "{bad}: {out}");
        assert!(out.contains("routes[0].priority"), "{bad}: {out}");
    }
    assert!(!dir.path().join("x").exists());
}
