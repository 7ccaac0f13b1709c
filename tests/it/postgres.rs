//! Several hubs on one PostgreSQL (a real PostgreSQL 15, started by the tests): each notification
//! stored once and each run done once whichever instance gets it, the whole cluster on every
//! instance's page, and the runs of an instance killed mid-run taken over when its lease ends.

// Shared with the store's own tests, some of whose helpers these tests do not need.
#[allow(dead_code)]
#[path = "../common/postgres.rs"]
pub(crate) mod pg;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{self, client, post, Hub, JsonValue};

/// A hub named `instance` in a folder of its own under `root`, on the database at `url`, with
/// `shared/received` as its received folder and a script that appends `start`/`done` lines.
fn hub(root: &Path, url: &str, instance: &str, lease_secs: u64) -> Hub {
    hub_with(root, url, instance, lease_secs, &[])
}

/// As [`hub`], with variables set for the process (libfaketime's).
fn hub_with(root: &Path, url: &str, instance: &str, lease_secs: u64, env: &[(&str, &str)]) -> Hub {
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
    Hub::start_in(&dir, &config, env)
}

/// The folder instances share, with a `note.sh` that appends `start <problem>`, waits `pause`
/// seconds, then appends `done <problem>` to the `runs.log` returned.
fn shared_with_note(root: &Path, pause: &str) -> (PathBuf, PathBuf) {
    let shared = root.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let log = shared.join("runs.log");
    support::script(
        &shared,
        "note.sh",
        &format!(
            "echo \"start $HUB_PROBLEM_ID\" >> {log}\nsleep {pause}\necho \"done $HUB_PROBLEM_ID\" >> {log}",
            log = log.display()
        ),
    );
    (shared, log)
}

/// Why these tests run in the SQLite pass only: each starts the PostgreSQL it needs (and some
/// stop and start it), so the PostgreSQL pass would run them again as they were.
const OWN_SERVER: &str = "starts its own PostgreSQL; the SQLite pass ran it";

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
    sqlite_pass_only!(OWN_SERVER);
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
    // A run done twice would add a line later, which no condition can rule out: a wait for it.
    tokio::time::sleep(Duration::from_millis(500)).await;
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

    // An instance with no shared folder writes the folders from the store; again, it replaces
    // nothing, and a different file under a notification's name is kept.
    let exported = root.path().join("exported");
    std::fs::create_dir_all(exported.join("problems_received")).unwrap();
    std::fs::write(
        exported.join("problems_received/P-0-OPEN.json"),
        b"someone else's",
    )
    .unwrap();
    let export = || {
        support::hub_command(&root.path().join("b"))
            .args(["export", "--dir", exported.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = export();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains(&format!(
            "problems_received: {} written, 0 already there, 1 kept",
            N - 1
        )) && summary.contains(&format!("problems_sent: {N} of {N} written")),
        "{summary}"
    );
    assert_eq!(
        std::fs::read(exported.join("problems_received/P-0-OPEN.json")).unwrap(),
        b"someone else's"
    );
    assert_eq!(
        std::fs::read(exported.join("problems_received/P-7-OPEN.json")).unwrap(),
        body(7).as_bytes()
    );
    assert_eq!(
        support::list_files(&exported.join("problems_sent")).len(),
        N
    );
    let again = String::from_utf8_lossy(&export().stdout).to_string();
    assert!(
        again.contains(&format!("0 written, {} already there, 1 kept", N - 1)),
        "{again}"
    );
    let recent = support::hub_command(&root.path().join("b"))
        .args([
            "export",
            "--dir",
            exported.to_str().unwrap(),
            "--since",
            "forever",
        ])
        .output()
        .unwrap();
    assert!(!recent.status.success(), "a bad --since is refused");
}

/// A second hub under the name of one that runs is refused at start, before it takes anything;
/// after a graceful stop the name is free again at once.
#[tokio::test]
async fn two_live_instances_may_not_share_a_name() {
    sqlite_pass_only!(OWN_SERVER);
    let url = pg::database();
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("shared")).unwrap();
    support::script(&root.path().join("shared"), "note.sh", "true");
    let mut a = hub(root.path(), &url, "a", 60);
    let twin = root.path().join("twin");
    std::fs::create_dir_all(&twin).unwrap();
    std::fs::copy(root.path().join("a/config.json"), twin.join("config.json")).unwrap();
    let out = support::hub_command(&twin).arg("run").output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another hub runs as instance \"a\""),
        "{stderr}"
    );
    assert_eq!(a.terminate(), Some(0));
    // Starting at all is the check: hub() waits until it listens.
    let again = hub(root.path(), &url, "a", 60);
    let health = client().get(again.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

/// `kill -9` of an instance with runs in flight: its leases end and the other instance takes the
/// runs over; every run completes, and only those in flight at the kill started twice.
#[tokio::test]
async fn a_killed_instances_runs_are_taken_over_when_its_lease_ends() {
    sqlite_pass_only!(OWN_SERVER);
    let url = pg::database();
    let root = tempfile::tempdir().unwrap();
    let (_, log) = shared_with_note(root.path(), "1");
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

/// Sends notifications `0..n` through `url` from `clients` clients at once, each retried after a
/// non-2xx answer or a broken connection as a sender does; returns the ones answered 2xx, with
/// how many answers were 503 and when the last of those came.
async fn load(
    url: String,
    n: usize,
    clients: usize,
    answered: Arc<AtomicUsize>,
) -> (Vec<usize>, usize, Option<Instant>) {
    let next = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(Mutex::new((0usize, None::<Instant>)));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (url, next, answered, refused) =
            (url.clone(), next.clone(), answered.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            let c = client();
            let mut acknowledged = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return acknowledged;
                }
                for _ in 0..100 {
                    match post(&c, &url, body(i)).send().await {
                        Ok(r) if r.status().is_success() => {
                            acknowledged.push(i);
                            answered.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Ok(r) => {
                            if r.status() == 503 {
                                let mut g = refused.lock().unwrap();
                                g.0 += 1;
                                g.1 = Some(Instant::now());
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            }
        }));
    }
    let mut acknowledged = Vec::new();
    for t in tasks {
        acknowledged.extend(t.await.unwrap());
    }
    let (count, last) = *refused.lock().unwrap();
    (acknowledged, count, last)
}

/// Every acknowledged notification is in the store, once, and whole in the folder.
fn assert_kept(url: &str, received: &Path, acknowledged: &[usize]) {
    let listed = pg::psql(url, "SELECT problem_key FROM notifications");
    let stored: Vec<&str> = listed.lines().collect();
    let unique: HashSet<&str> = stored.iter().copied().collect();
    assert_eq!(unique.len(), stored.len(), "a notification stored twice");
    for i in acknowledged {
        let key = format!("P-{i}");
        assert!(unique.contains(key.as_str()), "{key} not in the store");
        let file = received.join(format!("{key}-OPEN.json"));
        let on_disk = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(on_disk, body(*i), "{key} in the folder");
    }
}

/// Two hubs behind a real HAProxy, 32 clients sending 2,000 notifications, `kill -9` of one
/// instance in the middle: every notification answered 2xx is in the database and the folder,
/// every run completes (the survivor takes over the dead one's leased runs), and only runs in
/// flight at the kill ran twice.
#[tokio::test]
async fn two_hubs_behind_haproxy_lose_nothing_when_one_is_killed() {
    sqlite_pass_only!(OWN_SERVER);
    const N: usize = 2000;
    let url = pg::database();
    let root = tempfile::tempdir().unwrap();
    let (shared, log) = shared_with_note(root.path(), "0.01");
    let mut a = hub(root.path(), &url, "a", 5);
    let b = hub(root.path(), &url, "b", 5);
    let port = support::free_port();
    let cfg = root.path().join("haproxy.cfg");
    let backend = |h: &Hub| h.base_url.trim_start_matches("http://").to_string();
    std::fs::write(
        &cfg,
        format!(
            "defaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n  \
             retries 3\n  option redispatch\n\
             frontend hub\n  bind 127.0.0.1:{port}\n  default_backend hubs\n\
             backend hubs\n  balance roundrobin\n  option httpchk GET /healthz\n  \
             server a {} check inter 500ms fall 2 rise 2\n  server b {} check inter 500ms fall 2 rise 2\n",
            backend(&a),
            backend(&b)
        ),
    )
    .unwrap();
    let _haproxy = support::Running(
        std::process::Command::new("haproxy")
            .args(["-db", "-f", cfg.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("haproxy (apt-get install haproxy; tools/test does it)"),
    );
    let front = format!("http://127.0.0.1:{port}/");
    support::eventually("haproxy listening", async || {
        client()
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_ok()
    })
    .await;

    let answered = Arc::new(AtomicUsize::new(0));
    let sending = tokio::spawn(load(front, N, 32, answered.clone()));
    support::eventually("a third answered", async || {
        answered.load(Ordering::Relaxed) >= N / 3
    })
    .await;
    a.kill9();
    let in_flight: usize = pg::psql(
        &url,
        "SELECT COUNT(*) FROM action_runs WHERE status = 'running' AND instance = 'a'",
    )
    .parse()
    .unwrap();
    let (acknowledged, _, _) = sending.await.unwrap();
    assert_eq!(
        acknowledged.len(),
        N,
        "every notification was answered 2xx in the end"
    );
    assert_kept(&url, &shared.join("received"), &acknowledged);

    support::eventually("every run done", async || {
        pg::psql(
            &url,
            "SELECT COUNT(*) FROM action_runs WHERE status = 'succeeded'",
        ) == N.to_string()
    })
    .await;
    let done: HashSet<String> = lines_of(&log, "done").into_iter().collect();
    assert_eq!(done.len(), N);
    let starts = lines_of(&log, "start").len();
    assert!(
        starts <= N + in_flight,
        "{starts} starts for {N} runs, {in_flight} in flight on a at the kill"
    );
    assert!(b.stderr().contains("listening"));
}

/// PostgreSQL stops at once in the middle of a load (a crash, a failover) and comes back: hub
/// answers 503 while it is away, so senders retry, nothing acknowledged is lost, and ingest is
/// back within seconds without a restart of hub.
#[tokio::test]
async fn a_postgres_outage_under_load_loses_nothing() {
    sqlite_pass_only!(OWN_SERVER);
    const N: usize = 1000;
    let url = pg::database();
    let root = tempfile::tempdir().unwrap();
    let shared = root.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    support::script(&shared, "note.sh", "true");
    let a = hub(root.path(), &url, "a", 60);
    let answered = Arc::new(AtomicUsize::new(0));
    let sending = tokio::spawn(load(a.url("/"), N, 16, answered.clone()));
    support::eventually("a fifth answered", async || {
        answered.load(Ordering::Relaxed) >= N / 5
    })
    .await;
    let outage = tokio::task::spawn_blocking(|| {
        pg::outage(Duration::from_secs(2));
        Instant::now()
    });
    let back = outage.await.unwrap();
    let (acknowledged, refused, last_refusal) = sending.await.unwrap();
    assert_eq!(acknowledged.len(), N);
    assert!(refused > 0, "the outage was answered with 503s");
    let last = last_refusal.unwrap();
    assert!(
        last < back + Duration::from_secs(10),
        "503s went on for {:?} after PostgreSQL was back",
        last.saturating_duration_since(back)
    );
    assert_kept(&url, &shared.join("received"), &acknowledged);
    // The next heartbeat (every 2 s) sees the database again.
    healthy_again(&a).await;
}

/// Waits until the hub's `/healthz` answers 200 again, with no notification sent to it.
async fn healthy_again(hub: &Hub) {
    support::eventually("/healthz 200 again", async || {
        client()
            .get(hub.url("/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
}

/// Waits until all `n` runs succeeded, then checks that each started exactly once.
async fn every_run_once(url: &str, log: &Path, n: usize) {
    support::eventually("every run done", async || {
        pg::psql(
            url,
            "SELECT COUNT(*) FROM action_runs WHERE status = 'succeeded'",
        ) == n.to_string()
    })
    .await;
    let starts = lines_of(log, "start");
    let unique: HashSet<&String> = starts.iter().collect();
    assert_eq!(unique.len(), n);
    assert_eq!(starts.len(), n, "a run ran twice: {starts:?}");
}

/// Debian's libfaketime (package `faketime`), which moves a process's clock.
fn faketime() -> String {
    let found = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
    ]
    .iter()
    .map(|d| Path::new(d).join("faketime/libfaketime.so.1"))
    .find(|p| p.exists());
    found
        .expect("libfaketime (apt-get install faketime; tools/test does it)")
        .display()
        .to_string()
}

/// One instance's clock five minutes ahead, another's five minutes behind, a third's right; runs
/// that take a second under a 5 s lease: every run runs once, since leases and takeovers follow the
/// database's clock, and the instances whose clocks are off say so.
#[tokio::test]
async fn instances_whose_clocks_are_minutes_off_run_every_run_once() {
    sqlite_pass_only!(OWN_SERVER);
    const N: usize = 48;
    let url = pg::database();
    let root = tempfile::tempdir().unwrap();
    let (_, log) = shared_with_note(root.path(), "1");
    let lib = faketime();
    let skewed = |offset| {
        [
            ("LD_PRELOAD", lib.as_str()),
            ("FAKETIME", offset),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ]
    };
    let ahead = hub_with(root.path(), &url, "ahead", 5, &skewed("+5m"));
    let behind = hub_with(root.path(), &url, "behind", 5, &skewed("-5m"));
    let right = hub(root.path(), &url, "right", 5);
    let hubs = [&ahead, &behind, &right];
    let c = client();
    for i in 0..N {
        let r = post(&c, &hubs[i % 3].url("/"), body(i))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    every_run_once(&url, &log, N).await;
    assert!(!right.stderr().contains("took over"), "{}", right.stderr());

    for (hub, sign) in [(&ahead, -1.0), (&behind, 1.0)] {
        assert!(
            hub.stderr().contains("off from the store's"),
            "{}",
            hub.stderr()
        );
        let metrics = support::get_text(hub, "/metrics").await;
        let offset: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("hub_clock_offset_seconds "))
            .unwrap_or_else(|| panic!("no clock offset in {metrics}"))
            .parse()
            .unwrap();
        assert!(
            (offset * sign - 300.0).abs() < 5.0,
            "offset {offset} s for a clock 5 minutes off"
        );
        assert!(support::get_text(hub, "/")
            .await
            .contains("off from the store's"));
    }
    assert!(!right.stderr().contains("off from the store's"));
}

/// PostgreSQL away for longer than the lease while runs are in flight on two live instances:
/// their scripts finish during the outage, their outcomes are recorded once it is back, and no
/// instance takes over the other's runs meanwhile: every run runs once.
#[tokio::test]
async fn an_outage_longer_than_the_lease_runs_nothing_twice() {
    sqlite_pass_only!(OWN_SERVER);
    const N: usize = 16;
    let url = pg::database();
    let root = tempfile::tempdir().unwrap();
    let (_, log) = shared_with_note(root.path(), "3");
    let a = hub(root.path(), &url, "a", 5);
    let b = hub(root.path(), &url, "b", 5);
    let c = client();
    for i in 0..N {
        let h = if i % 2 == 0 { &a } else { &b };
        let r = post(&c, &h.url("/"), body(i)).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    support::eventually("runs in flight on both", async || {
        lines_of(&log, "start").len() >= 6
    })
    .await;
    tokio::task::spawn_blocking(|| pg::outage(Duration::from_secs(8)))
        .await
        .unwrap();
    every_run_once(&url, &log, N).await;
    for h in [&a, &b] {
        assert!(!h.stderr().contains("took over"), "{}", h.stderr());
    }
}

/// The README's HAProxy configuration in front of two hubs, through a database restart: while the
/// database is away senders get a 503 (not a closed connection), and once it is back requests
/// through HAProxy succeed again within 10 s, with no request sent to an instance directly.
#[tokio::test]
async fn behind_the_readmes_haproxy_requests_succeed_again_soon_after_a_database_restart() {
    sqlite_pass_only!(OWN_SERVER);
    let url = pg::database();
    let root = tempfile::tempdir().unwrap();
    let shared = root.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    support::script(&shared, "note.sh", "true");
    let a = hub(root.path(), &url, "a", 60);
    let b = hub(root.path(), &url, "b", 60);
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```\ndefaults\n")
        .expect("the README's HAProxy example")
        + 4;
    let end = start + readme[start..].find("```").unwrap();
    let port = support::free_port();
    let backend = |h: &Hub| h.base_url.trim_start_matches("http://").to_string();
    let cfg_text = readme[start..end]
        .replace("bind :5000", &format!("bind 127.0.0.1:{port}"))
        .replace("10.0.0.11:5000", &backend(&a))
        .replace("10.0.0.12:5000", &backend(&b));
    let cfg = root.path().join("haproxy.cfg");
    std::fs::write(&cfg, cfg_text).unwrap();
    let check = std::process::Command::new("haproxy")
        .args(["-c", "-f", cfg.to_str().unwrap()])
        .output()
        .expect("haproxy (apt-get install haproxy; tools/test does it)");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let _haproxy = support::Running(
        std::process::Command::new("haproxy")
            .args(["-db", "-f", cfg.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let front = format!("http://127.0.0.1:{port}/");
    let c = client();
    let mut i = 0;
    support::eventually("a notification through haproxy", async || {
        i += 1;
        post(&c, &front, body(i))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;

    let outage = tokio::task::spawn_blocking(|| {
        pg::outage(Duration::from_secs(8));
        Instant::now()
    });
    support::eventually("the database down", async || !pg::is_up()).await;
    // Each instance's last write fails, as it would under traffic.
    for h in [&a, &b] {
        let r = post(&c, &h.url("/"), body(1000)).send().await.unwrap();
        assert_eq!(r.status(), 503);
    }
    // Once HAProxy has seen both fail their checks, it answers 503 itself.
    let mut refused = None;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let answer = post(&c, &front, body(1001)).send().await;
        match answer {
            // A hub's own 503 says `not_stored`; HAProxy's, once no instance is up, does not.
            Ok(r) if r.status() == 503 => {
                if !r.text().await.unwrap_or_default().contains("not_stored") {
                    refused = Some(503);
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => panic!("haproxy closed the connection instead of answering: {e}"),
        }
    }
    assert_eq!(
        refused,
        Some(503),
        "haproxy's own 503 while every hub is down"
    );
    let back = outage.await.unwrap();
    let mut through = None;
    while back.elapsed() < Duration::from_secs(10) {
        if post(&c, &front, body(2000))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            through = Some(back.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        through.is_some(),
        "no request through haproxy succeeded within 10 s of the database's return"
    );
    for h in [&a, &b] {
        healthy_again(h).await;
    }
}

/// No page waits behind noise with several instances either: two hubs on one PostgreSQL, a slow
/// action saturated on both with 200 runs queued, then a page to another action runs at once.
#[tokio::test]
async fn two_hubs_run_a_page_while_a_slow_action_has_200_runs_queued() {
    sqlite_pass_only!(OWN_SERVER);
    let url = pg::database();
    let root = tempfile::tempdir().unwrap();
    let shared = root.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let paged = shared.join("paged.log");
    support::script(&shared, "slow.sh", "sleep 120");
    support::script(
        &shared,
        "page.sh",
        &format!("echo \"$HUB_PROBLEM_ID\" >> {}", paged.display()),
    );
    let start = |instance: &str| {
        let dir = root.path().join(instance);
        std::fs::create_dir_all(&dir).unwrap();
        let config = support::config_with(json!({
            "store": {"url": url, "instance": instance},
            "dir_received": shared.join("received"),
            "dispatch": {"shutdown_grace_secs": 0},
            "actions": {
                "slow": {"type": "script", "command": [shared.join("slow.sh")], "max_concurrent": 2},
                "pager": {"type": "script", "command": [shared.join("page.sh")]}
            },
            "routes": [
                {"severities": ["PERFORMANCE"], "actions": ["slow"]},
                {"severities": ["AVAILABILITY"], "actions": ["pager"]}
            ]
        }));
        Hub::start_in(&dir, &config, &[])
    };
    let (a, b) = (start("a"), start("b"));
    let c = client();
    for i in 0..200 {
        let h = if i % 2 == 0 { &a } else { &b };
        let body = json!({"State": "OPEN", "ProblemID": format!("N-{i}"), "PID": format!("{i}V2"),
                          "ProblemSeverity": "PERFORMANCE"});
        let r = post(&c, &h.url("/"), body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    support::eventually("the storm routed", async || {
        pg::psql(
            &url,
            "SELECT COUNT(*) FROM action_runs WHERE action = 'slow'",
        ) == "200"
    })
    .await;
    let page = json!({"State": "OPEN", "ProblemID": "P-URGENT", "PID": "9V2",
                      "ProblemSeverity": "AVAILABILITY"});
    let r = post(&c, &b.url("/"), page.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    support::eventually("the page ran", async || {
        support::lines(&paged) == ["P-URGENT"]
    })
    .await;
    let waiting: i64 = pg::psql(
        &url,
        "SELECT COUNT(*) FROM action_runs WHERE action = 'slow' AND status = 'pending'",
    )
    .parse()
    .unwrap();
    assert!(waiting >= 196, "{waiting} slow runs still queued");
}

/// Commands that only read beside a running hub change nothing of a database hub has not made
/// its tables in: `check-config --connect` says so, and `hub explain` goes on without silences.
#[tokio::test]
async fn reading_commands_leave_a_database_hub_never_used_as_it_was() {
    sqlite_pass_only!(OWN_SERVER);
    let url = pg::database();
    let dir = tempfile::tempdir().unwrap();
    let config = support::config_with(json!({"store": {"url": url, "instance": "reader"}}));
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let tables = || {
        pg::psql(
            &url,
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'",
        )
    };
    assert_eq!(tables(), "0");

    let out = support::hub_command(dir.path())
        .args(["check-config", "--connect"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("start `hub run` once"), "{said}");

    let payload = dir.path().join("p.json");
    std::fs::write(&payload, body(1)).unwrap();
    let out = support::hub_command(dir.path())
        .args(["explain", payload.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(tables(), "0", "a reading command made tables");
}
