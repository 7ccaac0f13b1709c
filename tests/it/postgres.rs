//! Several hubs on one PostgreSQL (a real PostgreSQL 15, started by the tests): each notification
//! stored once and each run done once whichever instance gets it, the whole cluster on every
//! instance's page, and the runs of an instance killed mid-run taken over when its lease ends.

#[path = "../common/postgres.rs"]
mod pg;

use std::path::Path;

use serde_json::{json, Value};

use crate::support::{self, client, post, Hub, JsonValue};

/// A hub named `instance` in a folder of its own under `root`, on the database at `url`, with
/// `shared/received` as its received folder and a script that appends `start`/`done` lines.
fn hub(root: &Path, url: &str, instance: &str, lease_secs: u64) -> Hub {
    let dir = root.join(instance);
    std::fs::create_dir_all(&dir).unwrap();
    let shared = root.join("shared");
    let config = support::config_with(json!({
        "store": {"url": url, "instance": instance},
        "dir_received": shared.join("received"),
        "dispatch": {"lease_secs": lease_secs},
        "actions": {"note": {"type": "script", "command": [shared.join("note.sh")],
                              "max_concurrent": 4}}
    }));
    Hub::start_in(&dir, &config, &[])
}

fn body(i: usize) -> String {
    json!({"State": "OPEN", "ProblemID": format!("P-{i}"), "PID": format!("{i}V2")}).to_string()
}

/// Problem ids in lines of `log` that start with `what`.
fn lines_of(log: &Path, what: &str) -> Vec<String> {
    support::lines(log)
        .into_iter()
        .filter_map(|l| l.strip_prefix(what).map(|rest| rest.trim().to_string()))
        .collect()
}

#[tokio::test]
async fn two_hubs_on_one_store_store_each_notification_once_and_run_it_once() {
    let url = pg::database();
    let root = tempfile::tempdir().unwrap();
    let shared = root.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    support::script(
        &shared,
        "note.sh",
        &format!(
            "echo \"done $HUB_PROBLEM_ID\" >> {}/runs.log",
            shared.display()
        ),
    );
    let a = hub(root.path(), &url, "a", 60);
    let b = hub(root.path(), &url, "b", 60);
    let c = client();
    const N: usize = 40;
    let mut tasks = Vec::new();
    for i in 0..N {
        // Each delivery reaches both instances at once, as a sender retrying through a balancer.
        for target in [a.url("/"), b.url("/")] {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                let r = post(&c, &target, body(i)).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.json_value().await["status"].as_str().unwrap().to_string()
            }));
        }
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        match t.await {
            Ok(o) => outcomes.push(o),
            Err(e) => panic!("{e}\n{}\n{}", a.stderr(), b.stderr()),
        }
    }
    let stored = outcomes.iter().filter(|o| *o == "stored").count();
    let duplicate = outcomes.iter().filter(|o| *o == "duplicate").count();
    assert_eq!((stored, duplicate), (N, N), "{outcomes:?}");
    assert_eq!(
        pg::psql(&url, "SELECT COUNT(*) FROM notifications"),
        N.to_string()
    );

    let log = shared.join("runs.log");
    support::eventually("every run done", async || lines_of(&log, "done").len() >= N).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let mut done = lines_of(&log, "done");
    done.sort();
    done.dedup();
    assert_eq!(done.len(), N, "each problem's run once");
    assert_eq!(lines_of(&log, "done").len(), N, "and no run twice");
    assert_eq!(
        support::list_files(&shared.join("received")).len(),
        N,
        "one file per notification in the shared folder"
    );

    // Either instance shows the whole cluster.
    for h in [&a, &b] {
        let stats: Value = c
            .get(h.url("/api/stats"))
            .basic_auth(support::USER, Some(support::PASSWORD))
            .send()
            .await
            .unwrap()
            .json_value()
            .await;
        assert_eq!(stats["sources"][0]["received"], N, "{stats}");
        assert_eq!(stats["sources"][0]["duplicate"], N, "{stats}");
        assert_eq!(stats["actions"][0]["succeeded"], N, "{stats}");
        let names: Vec<&str> = stats["instances"]
            .as_array()
            .map(|l| l.iter().filter_map(|i| i["name"].as_str()).collect())
            .unwrap_or_default();
        assert!(names.contains(&"a") && names.contains(&"b"), "{stats}");
    }
}

/// `kill -9` of an instance with runs in flight: its leases end and the other instance takes the
/// runs over; every run completes, and only those in flight at the kill started twice.
#[tokio::test]
async fn a_killed_instances_runs_are_taken_over_when_its_lease_ends() {
    let url = pg::database();
    let root = tempfile::tempdir().unwrap();
    let shared = root.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let log = shared.join("runs.log");
    support::script(
        &shared,
        "note.sh",
        &format!(
            "echo \"start $HUB_PROBLEM_ID\" >> {log}\nsleep 1\necho \"done $HUB_PROBLEM_ID\" >> {log}",
            log = log.display()
        ),
    );
    let mut a = hub(root.path(), &url, "a", 5);
    let c = client();
    const N: usize = 8;
    for i in 0..N {
        let r = post(&c, &a.url("/"), body(i)).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    support::eventually("runs in flight on a", async || {
        !lines_of(&log, "start").is_empty()
    })
    .await;
    a.kill9();
    let in_flight: usize = pg::psql(
        &url,
        "SELECT COUNT(*) FROM action_runs WHERE status = 'running' AND instance = 'a'",
    )
    .parse()
    .unwrap();
    assert!(in_flight > 0, "the kill left runs in flight");
    let b = hub(root.path(), &url, "b", 5);
    support::eventually("every run done, by b", async || {
        pg::psql(
            &url,
            "SELECT COUNT(*) FROM action_runs WHERE status = 'succeeded'",
        ) == N.to_string()
    })
    .await;
    let mut done = lines_of(&log, "done");
    done.sort();
    done.dedup();
    assert_eq!(done.len(), N);
    let starts = lines_of(&log, "start").len();
    assert!(
        starts <= N + in_flight,
        "{starts} starts for {N} runs with {in_flight} in flight at the kill"
    );
    assert_eq!(
        pg::psql(
            &url,
            "SELECT COUNT(*) FROM action_attempts WHERE result = 'interrupted' AND instance = 'a'"
        ),
        in_flight.to_string()
    );
    assert!(b.stderr().contains("took over a run"), "{}", b.stderr());
}
