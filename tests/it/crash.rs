//! Durability: what was acknowledged survives `kill -9`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::json;
use tokio::sync::Semaphore;

use crate::support::{self, client, post};

/// `kill -9` while 32 clients are still sending: every notification acknowledged before the kill
/// is on disk, whole, in the folder and in the store; a client that got no answer may or may not
/// find its notification stored (it retries, and a duplicate is recognised). After a restart every
/// stored notification has its file again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_notification_survives_kill_9_at_full_load() {
    const TOTAL: usize = 3000;
    const CLIENTS: usize = 32;
    const KILL_AFTER: usize = 300;
    let (tmp, mut hub) = support::start(json!({}));
    let c = client();
    let url = hub.url("/");
    let gate = Arc::new(Semaphore::new(CLIENTS));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..TOTAL {
        let (c, url, gate, answered) = (c.clone(), url.clone(), gate.clone(), answered.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            let body = json!({
                "State": "OPEN", "ProblemID": format!("P-{i}"), "PID": format!("{i}V2"),
                "ProblemTitle": format!("crash test {i}"), "ImpactedEntities": [{"name": "host-{i}"}]
            })
            .to_string();
            let status = post(&c, &url, body.clone()).send().await.map(|r| r.status().as_u16());
            if matches!(status, Ok(200)) {
                answered.fetch_add(1, Ordering::SeqCst);
            }
            (i, body, status)
        }));
    }
    while answered.load(Ordering::SeqCst) < KILL_AFTER {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    hub.kill9();
    let mut acknowledged = Vec::new();
    for t in tasks {
        let (i, body, status) = t.await.unwrap();
        if matches!(status, Ok(200)) {
            acknowledged.push((i, body));
        }
    }
    assert!(
        acknowledged.len() >= KILL_AFTER && acknowledged.len() < TOTAL,
        "the kill came in the middle of the load: {} of {TOTAL} acknowledged",
        acknowledged.len()
    );

    // Every acknowledged notification is on disk, whole, in the folder and in the store.
    let db = support::db(tmp.path()).await;
    for (i, body) in &acknowledged {
        let file = hub.received().join(format!("P-{i}-OPEN.json"));
        let on_disk = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(on_disk, body.as_bytes(), "file for P-{i}");
        let stored: Vec<u8> = db
            .row(
                "SELECT body FROM notifications WHERE problem_key = $1 AND state = 'OPEN'",
                &[format!("P-{i}").into()],
            )
            .await
            .get("body");
        assert_eq!(stored, body.as_bytes(), "row for P-{i}");
    }
    assert!(
        hub.received_files().iter().all(|n| !n.starts_with('.')),
        "no temporary file left behind"
    );

    // hub starts again on what the kill left, and writes back any file the kill cut off.
    let config = support::config_with(json!({}));
    let hub = support::Hub::start_in(tmp.path(), &config, &[]);
    let r = client().get(hub.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let stored = support::count(tmp.path()).await;
    assert!(stored >= acknowledged.len() as i64);
    assert_eq!(hub.received_files().len() as i64, stored);
}

/// A `kill -9` in the middle of a burst of runs: after a restart every run completes, and the only
/// runs that happen twice are those that were in flight at the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn actions_survive_kill_9_and_only_runs_in_flight_repeat() {
    const TOTAL: usize = 200;
    let tmp = tempfile::tempdir().unwrap();
    support::script(
        tmp.path(),
        "slow.sh",
        "sleep 0.05\necho \"$HUB_RUN_ID\" >> runs.log",
    );
    let config = support::config_with(json!({
        "actions": {"slow": {"type": "script", "command": ["./slow.sh"], "max_concurrent": 4}}
    }));
    let mut hub = support::Hub::start_in(tmp.path(), &config, &[]);
    let bodies: Vec<String> = (0..TOTAL)
        .map(|i| {
            json!({"State": "OPEN", "ProblemID": format!("K-{i}"), "PID": format!("{i}V2")})
                .to_string()
        })
        .collect();
    let send_all = |url: String| {
        let bodies = bodies.clone();
        tokio::spawn(async move {
            let c = client();
            let gate = Arc::new(Semaphore::new(16));
            let mut tasks = Vec::new();
            for body in bodies {
                let (c, url, gate) = (c.clone(), url.clone(), gate.clone());
                tasks.push(tokio::spawn(async move {
                    let _permit = gate.acquire_owned().await.unwrap();
                    let _ = post(&c, &url, body).send().await;
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        })
    };
    let burst = send_all(hub.url("/"));
    let log = tmp.path().join("runs.log");
    support::eventually("runs under way", async || support::lines(&log).len() >= 20).await;
    hub.kill9();
    let _ = burst.await;

    let db = support::db(tmp.path()).await;
    let in_flight: Vec<String> = db
        .rows(
            "SELECT idem_key FROM action_runs WHERE status = 'running'",
            &[],
        )
        .await
        .iter()
        .map(|r| r.get("idem_key"))
        .collect();
    assert!(
        in_flight.len() <= 4,
        "at most max_concurrent in flight: {in_flight:?}"
    );
    let in_flight: Vec<String> = in_flight.iter().map(|k| hub::actions::run_id(k)).collect();
    // Scripts started before the kill finish on their own.
    support::eventually("the scripts started before the kill to end", async || {
        !anything_runs_in(tmp.path())
    })
    .await;

    // The senders retry what was not acknowledged; hub picks up where it stopped.
    let hub = support::Hub::start_in(tmp.path(), &config, &[]);
    send_all(hub.url("/")).await.unwrap();
    support::eventually("every run done", async || {
        let r = support::runs(tmp.path()).await;
        r.len() == TOTAL && r.iter().all(|r| r.status == "succeeded")
    })
    .await;
    let mut counts = std::collections::HashMap::new();
    for line in support::lines(&log) {
        *counts.entry(line).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), TOTAL, "every run ran");
    for (id, n) in &counts {
        if *n > 1 {
            assert!(
                in_flight.contains(id),
                "{id} ran {n} times but was not in flight at the kill"
            );
            assert_eq!(*n, 2, "{id}");
        }
    }
}

/// Whether a process still runs in `dir` (a script the hub there started).
fn anything_runs_in(dir: &std::path::Path) -> bool {
    let dir = dir.canonicalize().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .any(|p| std::fs::read_link(p.path().join("cwd")).is_ok_and(|cwd| cwd == dir))
}

/// A file cut short (as a power cut can leave one) is written again from the store at start.
#[tokio::test]
async fn a_file_cut_short_is_restored_at_start() {
    let (tmp, mut hub) = support::start(json!({}));
    let body = support::fixture("dynatrace/full-open.json");
    let r = post(&client(), &hub.url("/"), body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    hub.kill9();
    let file = tmp.path().join("problems_received/P-2411021-OPEN.json");
    std::fs::write(&file, b"").unwrap();
    let config = support::config_with(json!({}));
    let mut hub = support::Hub::start_in(tmp.path(), &config, &[]);
    assert_eq!(std::fs::read(&file).unwrap(), body);

    // After a clean stop the files are on the disk and the folder is not compared again, unless
    // it changed: a file removed, say, or the folder touched to ask for the full comparison.
    hub.terminate();
    // What the stop said of the folder, for the message if the next start compares it anyway.
    let stopped = hub.stderr();
    let config = support::config_with(json!({}));
    let mut hub = support::Hub::start_in(tmp.path(), &config, &[]);
    assert!(
        hub.stderr().contains("as the last clean stop left them"),
        "the start:\n{}\nthe stop before it:\n{stopped}",
        hub.stderr()
    );
    hub.terminate();
    std::fs::write(&file, b"").unwrap();
    let touched = std::process::Command::new("touch")
        .arg(tmp.path().join("problems_received"))
        .status()
        .unwrap();
    assert!(touched.success());
    let hub = support::Hub::start_in(tmp.path(), &config, &[]);
    assert!(!hub.stderr().contains("as the last clean stop left them"));
    assert_eq!(std::fs::read(&file).unwrap(), body);
}

/// `problems_sent/` files are not synced one by one; a file that a crash left missing, empty or
/// older than its problem's last change is written again at start.
#[tokio::test]
async fn sent_files_left_behind_their_problem_are_rewritten_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    support::script(tmp.path(), "ok.sh", "exit 0");
    let config = support::config_with(json!({
        "actions": {"ok": {"type": "script", "command": ["./ok.sh"]}}
    }));
    let mut hub = support::Hub::start_in(tmp.path(), &config, &[]);
    for id in ["S-1", "S-2", "S-3", "S-4"] {
        let body = json!({"State": "OPEN", "ProblemID": id, "PID": format!("{id}V2")});
        let r = post(&client(), &hub.url("/"), body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let sent = tmp.path().join("problems_sent");
    let done = |name: &str| {
        let v: serde_json::Value = std::fs::read(sent.join(name))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        v["runs"][0]["status"] == "succeeded"
    };
    support::eventually("every run in problems_sent/", async || {
        ["S-1", "S-2", "S-3", "S-4"]
            .iter()
            .all(|id| done(&format!("{id}.json")))
    })
    .await;
    hub.terminate();

    std::fs::remove_file(sent.join("S-1.json")).unwrap();
    std::fs::write(sent.join("S-2.json"), b"").unwrap();
    // What a power cut can leave: the content from before the run finished, with its old time.
    let stale = std::fs::File::options()
        .write(true)
        .truncate(true)
        .open(sent.join("S-3.json"))
        .unwrap();
    std::io::Write::write_all(&mut &stale, br#"{"runs":[{"status":"pending"}]}"#).unwrap();
    stale
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
        .unwrap();
    drop(stale);
    let untouched = std::fs::metadata(sent.join("S-4.json"))
        .unwrap()
        .modified()
        .unwrap();

    let _hub = support::Hub::start_in(tmp.path(), &config, &[]);
    support::eventually("the three files rewritten", async || {
        ["S-1", "S-2", "S-3"]
            .iter()
            .all(|id| done(&format!("{id}.json")))
    })
    .await;
    let after = std::fs::metadata(sent.join("S-4.json"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(after, untouched, "a file that is up to date is left alone");
}
