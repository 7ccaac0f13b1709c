//! End to end with a real Alertmanager: its webhook and its PagerDuty integration both point at hub.
//! An alert is fired and resolved with amtool; hub stores and processes each change exactly once,
//! however often Alertmanager re-sends its groups.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::support::{self, eventually, lines, script, Hub};

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
const AMTOOL: &str = "/usr/bin/amtool";
const ROUTING_KEY: &str = "0123456789abcdef0123456789abcdef";

fn amtool(am_url: &str, args: &[&str]) {
    let out = Command::new(AMTOOL)
        .arg(format!("--alertmanager.url={am_url}"))
        .args(args)
        .output()
        .expect("run amtool");
    assert!(
        out.status.success(),
        "amtool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A stored notification.
#[derive(Debug)]
struct Stored {
    source: String,
    state: String,
    duplicates: i64,
}

/// Every stored notification, oldest first.
async fn stored(dir: &Path) -> Vec<Stored> {
    let rows = support::db(dir)
        .await
        .rows(
            "SELECT source, state, duplicates FROM notifications ORDER BY id",
            &[],
        )
        .await;
    rows.iter()
        .map(|r| Stored {
            source: r.get("source"),
            state: r.get("state"),
            duplicates: r.get("duplicates"),
        })
        .collect()
}

#[tokio::test]
async fn a_real_alertmanager_fires_and_resolves_through_webhook_and_pagerduty() {
    assert!(
        Path::new(ALERTMANAGER).exists() && Path::new(AMTOOL).exists(),
        "this test needs Debian's prometheus-alertmanager package; tools/test installs it"
    );
    let dir = tempfile::tempdir().unwrap();
    script(
        dir.path(),
        "record.sh",
        r#"printf '%s %s %s\n' "$HUB_SOURCE" "$HUB_STATE" "$HUB_PROBLEM_ID" >> calls.log"#,
    );
    let config = support::config_with(json!({
        "sources": {"alertmanager": {}, "pagerduty": {"routing_keys": [ROUTING_KEY]}},
        "actions": {"page": {"type": "script", "command": ["./record.sh"]}}
    }));
    let hub = Hub::start_in(dir.path(), &config, &[]);

    let am_config = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/alertmanager/alertmanager.yml"),
    )
    .unwrap()
    .replace("http://127.0.0.1:5000", &hub.base_url)
    // Re-send firing groups every few seconds, as a long-lived alert is re-sent for real.
    .replace("repeat_interval: 1h", "repeat_interval: 3s");
    let (_am, am_url) = support::alertmanager(dir.path(), &am_config).await;

    let labels = [
        "alertname=HubE2E",
        "instance=host9:9100",
        "severity=critical",
    ];
    let mut fire = vec!["alert", "add"];
    fire.extend(labels);
    fire.push("--annotation=summary=host9 is down");
    amtool(&am_url, &fire);
    eventually("the firing alert from both integrations", async || {
        let s = stored(dir.path()).await;
        ["alertmanager", "pagerduty"]
            .iter()
            .all(|src| s.iter().any(|r| r.source == *src && r.state == "OPEN"))
    })
    .await;

    eventually("Alertmanager to send the firing group again", async || {
        stored(dir.path())
            .await
            .iter()
            .any(|r| r.source == "alertmanager" && r.state == "OPEN" && r.duplicates >= 1)
    })
    .await;

    // Resolve it: the same alert with an end in the past.
    let end = format!(
        "--end={}",
        time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    );
    let mut resolve = vec!["alert", "add"];
    resolve.extend(labels);
    resolve.push("--annotation=summary=host9 is down");
    resolve.push(&end);
    amtool(&am_url, &resolve);
    eventually("the resolved alert from both integrations", async || {
        let s = stored(dir.path()).await;
        ["alertmanager", "pagerduty"]
            .iter()
            .all(|src| s.iter().any(|r| r.source == *src && r.state == "RESOLVED"))
    })
    .await;
    let calls = dir.path().join("calls.log");
    eventually("the four runs", async || lines(&calls).len() >= 4).await;
    // Re-sends must change nothing, which no condition can show: a wait that gives Alertmanager
    // time for them (group_interval is 2 s).
    tokio::time::sleep(Duration::from_secs(5)).await;

    let s = stored(dir.path()).await;
    let mut changes: Vec<(String, String)> = s
        .iter()
        .map(|r| (r.source.clone(), r.state.clone()))
        .collect();
    changes.sort();
    assert_eq!(
        changes,
        [
            ("alertmanager".to_string(), "OPEN".to_string()),
            ("alertmanager".to_string(), "RESOLVED".to_string()),
            ("pagerduty".to_string(), "OPEN".to_string()),
            ("pagerduty".to_string(), "RESOLVED".to_string()),
        ],
        "each change stored once: {s:?}"
    );
    let mut called = lines(&calls);
    called.sort();
    assert_eq!(called.len(), 4, "each change processed once: {called:?}");
    assert!(called[0].starts_with("alertmanager OPEN"), "{called:?}");
    assert!(called[3].starts_with("pagerduty RESOLVED"), "{called:?}");
}
