//! `hub explain` tells what the real ingest does: the same payloads, once as a dry run and once
//! through a running hub, with a silence in force, a maintenance window covering now, a route with
//! a flap wait and a plain route.

use std::path::Path;

use serde_json::{json, Value};

use crate::support::{client, config_with, eventually, hub_command, post, script, Hub};

const WITNESS: &str = r#"printf '%s\n' "$HUB_PROBLEM_ID" >> calls.log"#;

fn payload(id: &str, severity: &str, tags: &str) -> Vec<u8> {
    json!({"State": "OPEN", "ProblemID": id, "PID": format!("{id}V2"), "ProblemTitle": "Disk full",
           "ProblemSeverity": severity, "Tags": tags})
    .to_string()
    .into_bytes()
}

fn explain(dir: &Path, file: &str) -> (Value, String) {
    let out = hub_command(dir).args(["explain", file]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    (serde_json::from_slice(&out.stdout).unwrap(), err)
}

#[tokio::test]
async fn explain_and_the_real_ingest_agree() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    script(d, "witness.sh", WITNESS);
    let config = config_with(json!({
        "actions": {"page": {"type": "script", "command": "./witness.sh"},
                    "slow": {"type": "script", "command": "./witness.sh",
                             "rate_limit_per_minute": 30}},
        "routes": [
            {"tags": ["team:web", "team:muted", "env:maint"], "actions": ["page"]},
            {"severities": ["PERFORMANCE"], "actions": ["slow"], "wait": "10m"}
        ],
        "maintenance": [{"name": "patching", "match": {"tag": "env:maint"},
                         "cron": "* * * * *", "duration": "1h"}]
    }));
    let hub = Hub::start_in(d, &config, &[]);
    let out = hub_command(d)
        .args([
            "silence",
            "add",
            "--match",
            "problem=P-MUTED",
            "--duration",
            "1h",
        ])
        .args(["--comment", "deploying"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let silence = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(silence.starts_with("sil_"), "{silence}");

    let cases = [
        ("P-PLAIN", "ERROR", "team:web", "now", None),
        (
            "P-FLAP",
            "PERFORMANCE",
            "team:db",
            "wait",
            Some("wait".to_string()),
        ),
        (
            "P-MUTED",
            "ERROR",
            "team:muted",
            "held",
            Some(silence.clone()),
        ),
        (
            "P-MAINT",
            "ERROR",
            "env:maint",
            "held",
            Some("maintenance:patching".to_string()),
        ),
    ];
    for (id, severity, tags, start, held_by) in &cases {
        let file = format!("{id}.json");
        std::fs::write(d.join(&file), payload(id, severity, tags)).unwrap();
        let (plan, summary) = explain(d, &file);
        let n = &plan["notifications"][0];
        let runs = n["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 1, "{id}: {plan:#}");
        assert_eq!(runs[0]["start"], *start, "{id}: {plan:#}");
        assert_eq!(runs[0]["held_by"].as_str(), held_by.as_deref(), "{id}");
        let verdict = runs[0]["verdict"].as_str().unwrap();
        match *start {
            "now" => assert!(verdict.starts_with("would run now"), "{verdict}"),
            "wait" => {
                assert!(verdict.starts_with("would wait until"), "{verdict}");
                assert!(verdict.contains("flap wait"), "{verdict}");
                assert!(verdict.contains("at most 30 a minute"), "{verdict}");
            }
            _ => assert!(
                verdict.starts_with(&format!("would be held by {}", held_by.as_deref().unwrap())),
                "{verdict}"
            ),
        }
        assert!(summary.contains(verdict), "{summary}");
        assert!(
            plan["silences"].as_str().unwrap().contains("1 in force"),
            "{plan:#}"
        );
        // Every route is named, matched or with the criterion that failed.
        let routes = n["route_matches"].as_array().unwrap();
        assert_eq!(routes.len(), 2);
        if *id == "P-FLAP" {
            assert!(
                routes[0]["why_not"].as_str().unwrap().contains("tags"),
                "{routes:?}"
            );
            assert_eq!(routes[1]["matched"], true);
            assert!(summary.contains("route 1 did not match: the problem has none of the tags"));
        } else {
            assert_eq!(routes[0]["matched"], true);
            assert!(
                routes[1]["why_not"]
                    .as_str()
                    .unwrap()
                    .contains("severity \"ERROR\""),
                "{routes:?}"
            );
        }

        let r = post(&client(), &hub.url("/"), payload(id, severity, tags))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }

    // What the hub did with each, read from its store beside it.
    let real = async || -> Vec<(String, String, Option<String>)> {
        let rows = crate::support::db(d)
            .await
            .rows(
                "SELECT problem_key, status, held_by FROM action_runs ORDER BY id",
                &[],
            )
            .await;
        rows.iter()
            .map(|r| (r.get("problem_key"), r.get("status"), r.get("held_by")))
            .collect()
    };
    eventually(
        "every notification routed and the plain one run",
        async || {
            let r = real().await;
            r.len() == 4 && r.iter().any(|(p, s, _)| p == "P-PLAIN" && s == "succeeded")
        },
    )
    .await;
    for (id, _, _, start, held_by) in &cases {
        let r = real().await;
        let (_, status, real_held_by) = r.iter().find(|(p, _, _)| p == id).unwrap();
        let agrees = match *start {
            "now" => status == "succeeded" && real_held_by.is_none(),
            "wait" => status == "pending" && real_held_by.as_deref() == Some("wait"),
            _ => status == "silenced" && real_held_by == held_by,
        };
        assert!(
            agrees,
            "{id}: explain said {start} {held_by:?}, hub did {status} {real_held_by:?}"
        );
    }
    assert_eq!(crate::support::lines(&d.join("calls.log")), ["P-PLAIN"]);
}

#[test]
fn explain_says_when_it_cannot_read_the_silences() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("not-a-database")).unwrap();
    let config = config_with(json!({
        "store": {"url": "sqlite://not-a-database"},
        "actions": {"page": {"type": "script", "command": "/bin/true"}}
    }));
    std::fs::write(d.join("config.json"), config.to_string()).unwrap();
    std::fs::write(d.join("p.json"), payload("P-1", "ERROR", "team:web")).unwrap();
    let (plan, _) = explain(d, "p.json");
    let said = plan["silences"].as_str().unwrap();
    assert!(said.contains("cannot open the store"), "{said}");
    assert_eq!(plan["notifications"][0]["runs"][0]["start"], "now");

    // No store yet: none is made, and no silence can be in force.
    let config =
        config_with(json!({"actions": {"page": {"type": "script", "command": "/bin/true"}}}));
    std::fs::write(d.join("config.json"), config.to_string()).unwrap();
    let (plan, _) = explain(d, "p.json");
    assert!(
        plan["silences"].as_str().unwrap().contains("no store"),
        "{plan:#}"
    );
    assert!(!d.join("hub.db").exists());
}

/// A comment waits for the runs it reports: explain says so, and what it waits for.
#[test]
fn explain_says_a_comment_waits_for_the_runs_it_reports() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = config_with(json!({
        "dynatrace": {"tenant": "https://abc12345.live.dynatrace.com", "api_token": "dt0c01.token"},
        "actions": {"page": {"type": "script", "command": "/bin/true"},
                    "note": {"type": "comment", "after": ["page"]}}
    }));
    std::fs::write(d.join("config.json"), config.to_string()).unwrap();
    std::fs::write(d.join("p.json"), payload("P-1", "ERROR", "team:web")).unwrap();
    let (plan, summary) = explain(d, "p.json");
    let runs = plan["notifications"][0]["runs"].as_array().unwrap();
    let note = runs
        .iter()
        .find(|r| r["action"] == "note")
        .expect("a comment run");
    assert_eq!(note["start"], "now");
    assert_eq!(note["waits_for"], json!(["page"]));
    let verdict = note["verdict"].as_str().unwrap();
    assert_eq!(
        verdict,
        "would run once the runs it reports (page) have finished"
    );
    assert!(summary.contains(verdict), "{summary}");
}
