//! What `contrib/` ships for monitoring hub: the Prometheus rules (checked and unit-tested with
//! promtool, Debian's package `prometheus`) and the Grafana dashboard, and that every metric they
//! name is one a running hub serves.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::support::{
    self, client, eventually, expect_error, get_text, post, script, Hub, PASSWORD, USER,
};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const RULES: &str = "contrib/prometheus/hub-rules.yml";
const DASHBOARD: &str = "contrib/grafana/hub-dashboard.json";

/// `promtool ARGS` in `dir`; panics with what it said unless it succeeded.
fn promtool(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool (Debian package prometheus)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{said}");
    said
}

#[test]
fn the_rules_pass_promtool_and_their_unit_tests() {
    let said = promtool(&repo(), &["check", "rules", RULES]);
    assert!(said.contains("SUCCESS"), "{said}");
    let said = promtool(
        &repo().join("contrib/prometheus"),
        &["test", "rules", "hub-rules.test.yml"],
    );
    assert!(said.contains("SUCCESS"), "{said}");
}

#[test]
fn a_unit_test_that_expects_the_wrong_alert_fails() {
    // The unit tests are real: the same file with one expected label changed does not pass.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo().join(RULES), dir.path().join("hub-rules.yml")).unwrap();
    let tests = std::fs::read_to_string(repo().join("contrib/prometheus/hub-rules.test.yml"))
        .unwrap()
        .replacen("action: slack", "action: pager", 1);
    std::fs::write(dir.path().join("hub-rules.test.yml"), tests).unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules", "hub-rules.test.yml"])
        .current_dir(dir.path())
        .output()
        .expect("promtool (Debian package prometheus)");
    assert!(!out.status.success());
}

/// Every panel, those inside rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        all.push(p);
        all.extend(p["panels"].as_array().into_iter().flatten());
    }
    all
}

#[test]
fn the_dashboard_imports_with_a_prometheus_variable_and_its_queries_parse() {
    let text = std::fs::read_to_string(repo().join(DASHBOARD)).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    // What Grafana's import needs: a title, a uid, a schema version, panels.
    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(dashboard["uid"].as_str().is_some_and(|u| u.len() <= 40));
    assert!(dashboard["schemaVersion"].as_u64().is_some());
    // No `__inputs`: the data source is chosen with the variable, on import or later.
    assert!(dashboard.get("__inputs").is_none());
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let datasource = variables
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a data source variable");
    assert_eq!(datasource["query"], "prometheus");
    let uid = format!("${{{}}}", datasource["name"].as_str().unwrap());
    let wanted = json!({"type": "prometheus", "uid": uid});
    for v in variables.iter().filter(|v| v["type"] == "query") {
        assert_eq!(v["datasource"], wanted, "{v}");
    }

    let mut ids = BTreeSet::new();
    let mut queries = Vec::new();
    for p in panels(&dashboard) {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "panel ids repeat");
        let grid = &p["gridPos"];
        for key in ["h", "w", "x", "y"] {
            assert!(
                grid[key].as_u64().is_some(),
                "{}: gridPos.{key}",
                p["title"]
            );
        }
        assert!(grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24);
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"], wanted, "{}", p["title"]);
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", p["title"]);
        for t in targets {
            assert_eq!(t["datasource"], wanted, "{}", p["title"]);
            queries.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    // Each query parses as PromQL: given to promtool as a recording rule, with Grafana's
    // variables replaced by what they stand for.
    let rules: Vec<Value> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let expr = q
                .replace("$__rate_interval", "5m")
                .replace("$instance", ".*");
            assert!(!expr.contains('$'), "a variable left in {q}");
            json!({"record": format!("dashboard:query_{i}"), "expr": expr})
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    // JSON is YAML.
    std::fs::write(
        dir.path().join("queries.yml"),
        json!({"groups": [{"name": "dashboard", "rules": rules}]}).to_string(),
    )
    .unwrap();
    let said = promtool(dir.path(), &["check", "rules", "queries.yml"]);
    assert!(
        said.contains(&format!("{} rules found", queries.len())),
        "{said}"
    );
}

/// The names `hub_…` a text mentions.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("hub_") {
        // Not the end of another word (`github_`, a label's `job="hub"`).
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // A bare `hub_` is no name (`hub_…`, an API token's prefix, in a comment).
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') && end > "hub_".len() {
            names.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

/// The names a scrape serves: each sample's, each family's (its `# TYPE` line), and what the family
/// is served as (a counter as `_total`, a histogram as `_bucket`, `_sum` and `_count`).
fn served(metrics: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in metrics.lines() {
        if let Some(typed) = line.strip_prefix("# TYPE ") {
            let mut words = typed.split_whitespace();
            let (Some(family), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            names.insert(family.to_string());
            names.extend(suffixes.iter().map(|s| format!("{family}{s}")));
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

/// A hub with an action that fails, a heartbeat that goes silent, a notification refused and one
/// whose run failed: the labelled series the rules look at are all there.
async fn exercised() -> (tempfile::TempDir, Hub) {
    let dir = tempfile::tempdir().unwrap();
    script(
        dir.path(),
        "fail.sh",
        "echo 'no route to the pager' >&2; exit 1",
    );
    script(dir.path(), "ok.sh", "exit 0");
    let config = support::config_with(json!({
        "actions": {"pager": {"type": "script", "command": "./fail.sh"},
                    "log": {"type": "script", "command": "./ok.sh"}},
        "routes": [{"sources": ["dynatrace"], "actions": ["pager"]}],
        "heartbeats": {"nightly": {"every": "2s", "grace": "1s", "actions": ["log"]}}
    }));
    let hub = Hub::start_in(dir.path(), &config, &[]);
    let c = client();
    let r = post(
        &c,
        &hub.url("/"),
        json!({"State": "OPEN", "ProblemID": "70", "PID": "70V2"}).to_string(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let r = post(&c, &hub.url("/"), "{not json").send().await.unwrap();
    expect_error(r, 400, "invalid_json").await;
    eventually("the run failed", async || {
        get_text(&hub, "/metrics")
            .await
            .contains(r#"hub_action_runs{action="pager",outcome="failed"} 1"#)
    })
    .await;
    (dir, hub)
}

#[tokio::test]
async fn every_metric_the_dashboard_and_the_rules_name_is_served() {
    let (_dir, hub) = exercised().await;
    let metrics = get_text(&hub, "/metrics").await;
    let served = served(&metrics);
    let rules = std::fs::read_to_string(repo().join(RULES)).unwrap();
    let dashboard = std::fs::read_to_string(repo().join(DASHBOARD)).unwrap();
    for (file, text) in [(RULES, &rules), (DASHBOARD, &dashboard)] {
        let named = metric_names(text);
        assert!(named.len() >= 8, "{file}: {named:?}");
        let unknown: Vec<_> = named.difference(&served).collect();
        assert!(
            unknown.is_empty(),
            "{file} names metrics hub does not serve: {unknown:?}\n{metrics}"
        );
    }
    // The series the alerts fire on, with the labels they group by.
    for series in [
        r#"hub_notifications_total{source="dynatrace",outcome="rejected"} 1"#,
        r#"hub_action_oldest_due_seconds{action="pager"} "#,
        r#"hub_action_runs{action="pager",outcome="failed"} 1"#,
        r#"hub_heartbeat_silent{name="nightly"} "#,
        "hub_store_healthy 1",
        "hub_config_last_reload_successful 1",
        "hub_escalations_open 0",
        "hub_time_to_acknowledge_seconds_count 0",
    ] {
        assert!(metrics.contains(series), "{series} not in\n{metrics}");
    }
}

#[tokio::test]
async fn the_metrics_say_when_a_heartbeat_is_silent_and_when_the_store_refuses_writes() {
    let (_dir, hub) = exercised().await;
    // Silent after its every + grace (3 s), then a beat: not silent.
    eventually("the heartbeat silent", async || {
        get_text(&hub, "/metrics")
            .await
            .contains(r#"hub_heartbeat_silent{name="nightly"} 1"#)
    })
    .await;
    let r = client()
        .post(hub.url("/heartbeats/nightly"))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually("the heartbeat beat", async || {
        get_text(&hub, "/metrics")
            .await
            .contains(r#"hub_heartbeat_silent{name="nightly"} 0"#)
    })
    .await;

    // A received folder that cannot be written: the notification is refused, and the metrics,
    // still served, say what /healthz says.
    let received = hub.received();
    std::fs::remove_dir_all(&received).unwrap();
    std::fs::write(&received, b"not a folder").unwrap();
    let r = post(
        &client(),
        &hub.url("/"),
        json!({"State": "OPEN", "ProblemID": "71", "PID": "71V2"}).to_string(),
    )
    .send()
    .await
    .unwrap();
    expect_error(r, 503, "not_stored").await;
    let metrics = get_text(&hub, "/metrics").await;
    assert!(metrics.contains("hub_store_healthy 0"), "{metrics}");
    let health = client().get(hub.url("/healthz")).send().await.unwrap();
    expect_error(health, 503, "unavailable").await;
    std::fs::remove_file(&received).unwrap();
    eventually("the store healthy again", async || {
        get_text(&hub, "/metrics")
            .await
            .contains("hub_store_healthy 1")
    })
    .await;
}

#[test]
fn names_are_read_as_prometheus_would() {
    assert_eq!(
        metric_names(r#"sum(rate(hub_a_total{job="hub"}[5m])) / github_x + hub_b # hub_…"#),
        BTreeSet::from(["hub_a_total".to_string(), "hub_b".to_string()])
    );
    let text = "# HELP hub_n Notes.\n# TYPE hub_n counter\n# TYPE hub_l histogram\n\
                hub_g{a=\"b\"} 1\nhub_h 2\n# EOF\n";
    let names = served(text);
    for n in [
        "hub_n_total",
        "hub_l_bucket",
        "hub_l_sum",
        "hub_l_count",
        "hub_g",
        "hub_h",
    ] {
        assert!(names.contains(n), "{n}: {names:?}");
    }
}
