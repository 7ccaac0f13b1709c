//! Running it for a year: backup while serving, live reload, the service unit.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;

use crate::support::{self, config_with, get_json, hub_command, Hub};

fn dynatrace_body(id: usize) -> String {
    json!({"State": "OPEN", "ProblemID": format!("B-{id}"), "PID": format!("pid-{id}"),
           "ProblemTitle": "backup load"})
    .to_string()
}

/// Posts numbered notifications on four connections until `stop`; records each one acknowledged.
fn load(
    hub: &Hub,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<HashSet<usize>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..4)
        .map(|worker| {
            let (client, url) = (support::client(), hub.url("/"));
            let (stop, acked) = (stop.clone(), acked.clone());
            tokio::spawn(async move {
                let mut id = worker;
                while !stop.load(Ordering::Relaxed) {
                    let r = support::post(&client, &url, dynatrace_body(id))
                        .send()
                        .await;
                    if r.is_ok_and(|r| r.status() == 200) {
                        acked.lock().unwrap().insert(id);
                    }
                    id += 4;
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_taken_under_load_holds_everything_acknowledged_before_it() {
    sqlite_pass_only!("hub backup copies a SQLite store; PostgreSQL has pg_dump");
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start_in(dir.path(), &config_with(json!({})), &[]);
    let (stop, acked) = (Arc::new(AtomicBool::new(false)), Arc::default());
    let workers = load(&hub, stop.clone(), Arc::clone(&acked));
    support::eventually("some notifications acknowledged", async || {
        acked.lock().unwrap().len() >= 300
    })
    .await;

    let before: HashSet<usize> = acked.lock().unwrap().clone();
    let backup_dir = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        hub_command(&backup_dir)
            .args(["backup", "copy.db"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let during = acked.lock().unwrap().len();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("wrote copy.db") && stdout.contains(" s"),
        "{stdout}"
    );

    let copy = rusqlite::Connection::open(dir.path().join("copy.db")).unwrap();
    let check: String = copy
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let keys: HashSet<String> = copy
        .prepare("SELECT problem_key FROM notifications")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for id in &before {
        assert!(
            keys.contains(&format!("B-{id}")),
            "B-{id} acknowledged before the backup, not in it"
        );
    }
    assert!(during > before.len(), "the load went on during the backup");
    drop(copy);
    let copy_bytes = std::fs::read(dir.path().join("copy.db")).unwrap();

    // Never over a file: a second backup to the same name writes nothing.
    let again = hub_command(dir.path())
        .args(["backup", "copy.db"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("copy.db exists"), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("copy.db")).unwrap(),
        copy_bytes
    );
    assert!(!dir.path().join("copy.db.partial").exists());
    hub.terminate();

    // A hub starts from the copy as it is, and answers a notification it holds as a duplicate.
    let restored = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.path().join("copy.db"),
        restored.path().join("restored.db"),
    )
    .unwrap();
    let config = config_with(json!({"store": {"url": "sqlite://restored.db"}}));
    let hub = Hub::start_in(restored.path(), &config, &[]);
    let first = *before.iter().next().unwrap();
    let r = support::post(&support::client(), &hub.url("/"), dynatrace_body(first))
        .send()
        .await
        .unwrap();
    let answer = r.text().await.unwrap();
    assert!(answer.contains("\"status\":\"duplicate\""), "{answer}");
}

#[test]
fn a_backup_names_what_is_wrong_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let write = |config: serde_json::Value| {
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap()
    };
    write(config_with(json!({})));
    // No store yet.
    let out = hub_command(dir.path())
        .args(["backup", "copy.db"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("there is no store at hub.db"));
    // A folder that does not exist.
    std::fs::write(dir.path().join("hub.db"), b"").unwrap();
    let out = hub_command(dir.path())
        .args(["backup", "missing/copy.db"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error:"));
    // PostgreSQL has tools of its own.
    write(config_with(
        json!({"store": {"url": "postgres://hub@127.0.0.1:1/hub"}}),
    ));
    let out = hub_command(dir.path())
        .args(["backup", "copy.db"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pg_dump"), "{err}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        !left.iter().any(|n| n.to_string_lossy().starts_with("copy")),
        "{left:?}"
    );
}

#[test]
fn the_service_unit_passes_systemd_analyze_verify() {
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/hub.service"))
            .unwrap();
    for line in [
        "ExecStart=hub run",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillSignal=SIGTERM",
        "User=hub",
        "StateDirectory=hub",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
    ] {
        assert!(shipped.lines().any(|l| l == line), "{line} missing");
    }
    // The unit as shipped, with the binary where this build put it rather than where systemd's
    // search path would find it (/usr/local/bin, /usr/bin): verify checks it exists.
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("hub.service");
    std::fs::write(
        &unit,
        shipped.replace(
            "ExecStart=hub run",
            &format!("ExecStart={} run", support::hub_bin()),
        ),
    )
    .unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (Debian package systemd)");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    // It warns of an unknown key but still succeeds: a warning is a failure here.
    assert!(said.trim().is_empty(), "{said}");
}

fn sighup(hub: &Hub) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &hub.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn metric(hub: &Hub, name: &str) -> String {
    metric_as(hub, "viewer", "view-pass-1", name).await
}

async fn metric_as(hub: &Hub, user: &str, password: &str, name: &str) -> String {
    let text = support::client()
        .get(hub.url("/metrics"))
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")).map(str::to_string))
        .unwrap_or_else(|| panic!("{name} not in {text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_takes_new_actions_and_credentials_and_refuses_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    support::script(
        dir.path(),
        "old.sh",
        "sleep 1; echo \"old $HUB_PROBLEM_ID\" >> ran.log",
    );
    support::script(
        dir.path(),
        "new.sh",
        "echo \"new $HUB_PROBLEM_ID\" >> ran.log",
    );
    let with = |command: &str, extra: serde_json::Value| {
        let mut c = config_with(
            json!({"actions": {"page": {"type": "script", "command": [command]}},
                                       "status_page": {"username": "viewer", "password": "view-pass-1"}}),
        );
        if let (Some(c), serde_json::Value::Object(extra)) = (c.as_object_mut(), extra) {
            for (k, v) in extra {
                c.insert(k, v);
            }
        }
        c
    };
    let first = with("./old.sh", json!({}));
    let hub = Hub::start_in(dir.path(), &first, &[]);
    let client = support::client();
    let deliver = async |id: &str, password: &str| {
        client
            .post(hub.url("/"))
            .basic_auth(support::USER, Some(password))
            .header("content-type", "application/json")
            .body(json!({"State": "OPEN", "ProblemID": id, "PID": format!("pid-{id}")}).to_string())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(deliver("R-1", support::PASSWORD).await, 200);
    let log = dir.path().join("ran.log");
    support::eventually("the old script started", async || {
        support::runs(dir.path())
            .await
            .iter()
            .any(|r| r.status == "running")
    })
    .await;

    // A new script, a new webhook password and a new port, while R-1's run is in flight.
    let mut second = with("./new.sh", json!({}));
    second["webhook"]["password"] = json!("second-password-9");
    second["webhook"]["port"] = json!(1);
    support::write_config(dir.path(), &second);
    sighup(&hub);
    // The warning naming the key that needs a restart follows the line that says it reloaded.
    support::eventually("reloaded, naming webhook.port", async || {
        let said = hub.stderr();
        said.contains("reloaded the config") && said.contains("webhook.port")
    })
    .await;
    // The audit log has it, as a signal's: who sent it is not known.
    let db = support::db(dir.path()).await;
    let sql = "SELECT actor, via, detail FROM audit WHERE action = 'reload'";
    support::eventually("the reload in the audit log", async || {
        !db.rows(sql, &[]).await.is_empty()
    })
    .await;
    let reloads = db.rows(sql, &[]).await;
    assert_eq!(reloads.len(), 1);
    assert_eq!(
        (
            reloads[0].get::<String>("actor"),
            reloads[0].get::<String>("via"),
            reloads[0].get::<String>("detail")
        ),
        ("SIGHUP".into(), "signal".into(), "reloaded".into())
    );
    // Still listening where it started; the old password is refused, the new one taken.
    assert_eq!(deliver("R-2", support::PASSWORD).await, 401);
    assert_eq!(deliver("R-2", "second-password-9").await, 200);
    support::eventually("both runs done", async || support::lines(&log).len() == 2).await;
    // The run in flight finished with the script it started with; the next one ran the new one.
    let mut ran = support::lines(&log);
    ran.sort();
    assert_eq!(ran, vec!["new R-2", "old R-1"]);

    // A config that does not parse changes nothing and says why.
    std::fs::write(dir.path().join("config.json"), "{ not json").unwrap();
    let reload = |user: &'static str, password: &'static str| {
        client
            .post(hub.url("/-/reload"))
            .basic_auth(user, Some(password))
            .send()
    };
    let refused = reload("viewer", "view-pass-1").await.unwrap();
    let body = support::expect_error(refused, 500, "reload_failed").await;
    assert!(
        body["detail"].as_str().unwrap().contains("config.json"),
        "{body}"
    );
    assert_eq!(deliver("R-3", "second-password-9").await, 200);
    assert_eq!(metric(&hub, "hub_config_last_reload_successful").await, "0");
    // So does a config that parses but is invalid, and a reload asked without credentials.
    let mut invalid = second.clone();
    invalid["actions"]["page"]["command"] = json!(["./missing.sh"]);
    support::write_config(dir.path(), &invalid);
    support::expect_error(
        reload("viewer", "wrong").await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    support::expect_error(
        reload("viewer", "view-pass-1").await.unwrap(),
        500,
        "reload_failed",
    )
    .await;

    // Fixed, and asked over HTTP: it takes, and the gauges say so.
    let mut third = second.clone();
    third["webhook"]["port"] = first["webhook"]["port"].clone();
    support::write_config(dir.path(), &third);
    let ok = reload("viewer", "view-pass-1").await.unwrap();
    assert_eq!(ok.status(), 200);
    let ok: serde_json::Value = serde_json::from_str(&ok.text().await.unwrap()).unwrap();
    assert_eq!(ok["restart_needed"], json!([]), "{ok}");
    assert_eq!(metric(&hub, "hub_config_last_reload_successful").await, "1");
    let at: i64 = metric(&hub, "hub_config_last_reload_success_timestamp_seconds")
        .await
        .parse()
        .unwrap();
    assert!((at - time_now()).abs() < 60, "{at}");
}

fn time_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread")]
async fn reloads_under_load_refuse_no_connection_and_lose_no_notification() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start_in(dir.path(), &config_with(json!({})), &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<HashSet<usize>>> = Arc::default();
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let (client, url) = (support::client(), hub.url("/"));
            let (stop, acked, failures) = (stop.clone(), Arc::clone(&acked), failures.clone());
            tokio::spawn(async move {
                let mut id = worker;
                while !stop.load(Ordering::Relaxed) {
                    match support::post(&client, &url, dynatrace_body(id))
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == 200 => {
                            acked.lock().unwrap().insert(id);
                        }
                        Ok(r) => failures
                            .lock()
                            .unwrap()
                            .push(format!("{id}: {}", r.status())),
                        Err(e) => failures.lock().unwrap().push(format!("{id}: {e}")),
                    }
                    id += 4;
                }
            })
        })
        .collect();
    // One reload after another while the load goes on: twenty at least, and until the load has
    // been answered a few hundred times.
    let mut reloads = 0;
    while reloads < 20 || (acked.lock().unwrap().len() < 300 && reloads < 1000) {
        sighup(&hub);
        reloads += 1;
        support::eventually("the reload", async || {
            hub.stderr().matches("reloaded the config").count() >= reloads
        })
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(*failures.lock().unwrap(), Vec::<String>::new());
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 100, "{}", acked.len());
    assert_eq!(support::count(dir.path()).await, acked.len() as i64);
}

/// Makes every notification of the store at `dir` look `days` older.
async fn age(dir: &std::path::Path, days: i64) {
    support::db(dir)
        .await
        .execute(
            "UPDATE notifications SET received_at_ms = received_at_ms - $1",
            &[(days * 86_400_000).into()],
        )
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_prunes_problems_that_ended_long_ago_and_keeps_open_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub::start_in(dir.path(), &config_with(json!({})), &[]);
    let client = support::client();
    for (id, state) in [("P-A", "OPEN"), ("P-A", "RESOLVED"), ("P-B", "OPEN")] {
        let body = json!({"State": state, "ProblemID": id, "PID": format!("pid-{id}")});
        let r = support::post(&client, &hub.url("/"), body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    support::eventually("routed", async || {
        support::db(dir.path())
            .await
            .count("plans WHERE status = 'pending'")
            .await
            == 0
    })
    .await;
    hub.terminate();
    age(dir.path(), 100).await;
    let received = dir.path().join("problems_received");
    let files = || support::list_files(&received);
    assert_eq!(files().len(), 3);

    // By hand: without a max age it says what to give; a dry run deletes nothing.
    let prune = |args: &[&str]| {
        hub_command(dir.path())
            .arg("prune")
            .args(args)
            .output()
            .unwrap()
    };
    let out = prune(&["--dry-run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-age"));
    let out = prune(&["--max-age", "30m"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 1h"));
    let out = prune(&["--dry-run", "--max-age", "90d"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("would remove 1 problems") && said.contains("2 notifications"),
        "{said}"
    );
    assert_eq!(files().len(), 3);
    let out = prune(&["--max-age", "200d"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed 0 problems"));

    // In the background, every interval.
    let config = config_with(json!({"retention": {"max_age": "90d", "interval": "1s"}}));
    let hub = Hub::start_in(dir.path(), &config, &[]);
    assert!(
        hub.stderr().contains("retention 90d (checked every 1s)"),
        "{}",
        hub.stderr()
    );
    support::eventually("P-A pruned", async || files().len() == 1).await;
    assert_eq!(files(), vec!["P-B-OPEN.json"]);
    let db = support::db(dir.path()).await;
    let left: Vec<String> = db
        .rows("SELECT problem_key FROM notifications", &[])
        .await
        .iter()
        .map(|r| r.get("problem_key"))
        .collect();
    assert_eq!(left, vec!["P-B"]);
    support::eventually("counted", async || {
        metric_as(
            &hub,
            support::USER,
            support::PASSWORD,
            "hub_pruned_problems_total",
        )
        .await
            == "1"
    })
    .await;
    assert_eq!(
        metric_as(
            &hub,
            support::USER,
            support::PASSWORD,
            "hub_pruned_notifications_total"
        )
        .await,
        "2"
    );
    assert!(
        hub.stderr().contains("pruned problems that ended"),
        "{}",
        hub.stderr()
    );
}

#[test]
fn a_retention_that_would_delete_too_much_or_makes_no_sense_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (retention, says) in [
        (json!({}), "retention.max_age: required"),
        (
            json!({"max_age": "90s"}),
            "retention.max_age: must be from 1h",
        ),
        (
            json!({"max_age": "90d", "interval": "soon"}),
            "retention.interval: expected a duration",
        ),
        (
            json!({"max_age": "90d", "maxage": "1d"}),
            "retention.maxage",
        ),
        (json!("90d"), "retention"),
    ] {
        let config = config_with(json!({"retention": retention}));
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        let out = hub_command(dir.path())
            .arg("check-config")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{retention}: {err}");
        assert!(err.contains(says), "{retention}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_pages_follow_next_by_key_and_see_every_problem_once() {
    let (_dir, hub) = support::start(json!({}));
    let client = support::client();
    // 60 problems; 20 of them get a second notification later, which moves them to the top.
    for i in 0..80 {
        let (id, state) = if i < 60 {
            (i, "OPEN")
        } else {
            ((i - 60) * 3, "RESOLVED")
        };
        let body =
            json!({"State": state, "ProblemID": format!("D-{id}"), "PID": format!("pid-{id}")});
        let r = support::post(&client, &hub.url("/"), body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let mut seen = Vec::new();
    let mut next = Some("/api/problems".to_string());
    while let Some(path) = next {
        let (status, page) = get_json(&hub, &path).await;
        assert_eq!(status, 200, "{page}");
        for p in page["problems"].as_array().unwrap() {
            seen.push((
                p["problem_key"].as_str().unwrap().to_string(),
                p["state"].as_str().unwrap().to_string(),
            ));
        }
        next = page["next"].as_str().map(str::to_string);
    }
    assert_eq!(seen.len(), 60, "{seen:?}");
    let unique: HashSet<&String> = seen.iter().map(|(k, _)| k).collect();
    assert_eq!(unique.len(), 60);
    // Newest first: the resolved ones (their newest notification came last), latest first.
    assert_eq!(seen[0], ("D-57".to_string(), "RESOLVED".to_string()));
    assert_eq!(seen[19], ("D-0".to_string(), "RESOLVED".to_string()));
    assert_eq!(seen[20].0, "D-59");
    assert_eq!(seen[59].0, "D-1");

    // The first way still works for shallow pages, and agrees.
    let (_, second) = get_json(&hub, "/api/problems?page=1").await;
    assert_eq!(second["problems"][0]["problem_key"], seen[25].0.as_str());
    for bad in [
        "/api/problems?before=abc",
        "/api/problems?before=-3",
        "/api/problems?page=401",
    ] {
        let (status, body) = get_json(&hub, bad).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("bad_request")),
            "{bad}: {body}"
        );
    }

    // The status page links its older notifications, which show the rest; the problems above
    // them are the open ones, worst first, on every page.
    let html = |path: &str| {
        let (client, url) = (support::client(), hub.url(path));
        async move {
            client
                .get(url)
                .basic_auth(support::USER, Some(support::PASSWORD))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let notifications = |page: &str| {
        page.split("id=\"notifications\"")
            .nth(1)
            .unwrap()
            .split("</table>")
            .next()
            .unwrap()
            .to_string()
    };
    let first = html("/").await;
    let older: String = first
        .split("?notifications_before=")
        .nth(1)
        .unwrap()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let second = html(&format!("/?notifications_before={older}")).await;
    assert!(
        notifications(&second).contains(">D-33<") && !notifications(&second).contains(">D-57<"),
        "{second}"
    );
    assert!(second.contains("href=\"/\">newest"), "{second}");
}

/// Every script the README and the unit's install steps name is shipped, and runs.
#[test]
fn the_scripts_the_readme_names_exist() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let unit = std::fs::read_to_string(root.join("contrib/hub.service")).unwrap();
    let mut named: Vec<&str> = readme
        .split("scripts/")
        .chain(unit.split("scripts/"))
        .skip(1)
        .filter_map(|rest| {
            rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .next()
        })
        .filter(|name| name.ends_with(".sh"))
        .collect();
    named.sort_unstable();
    named.dedup();
    assert!(
        named.contains(&"page.sh") && named.contains(&"legacy_script.sh"),
        "{named:?}"
    );
    for name in named {
        let out = std::process::Command::new(root.join("scripts").join(name))
            .args(["--team", "ops", "db-1", "CPU saturation"])
            .output()
            .unwrap_or_else(|e| panic!("scripts/{name}: {e}"));
        assert!(out.status.success(), "scripts/{name}: {out:?}");
    }
}

/// The README's service steps, followed in a scratch root: the binary, the shipped config and the
/// scripts installed where the steps put them, the unit (pointing into the root) verified, then
/// hub started as the unit starts it (its working directory, `HUB_CONFIG`) on the shipped config
/// with only its port moved to a free one; the README's first notification runs the shipped
/// script.
#[tokio::test]
async fn the_readmes_service_steps_give_a_hub_that_starts_and_runs_the_shipped_script() {
    let root_dir = tempfile::tempdir().unwrap();
    let root = root_dir.path();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let steps = readme
        .split("## Run it as a service")
        .nth(1)
        .and_then(|s| s.split("```sh\n").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("the README's service steps");
    // What the steps install, read from the steps themselves.
    let scripts: Vec<&str> = steps
        .lines()
        .find(|l| l.contains("-t /var/lib/hub/scripts"))
        .expect("a step that installs the scripts")
        .split_whitespace()
        .filter(|w| w.starts_with("scripts/"))
        .collect();
    assert!(!scripts.is_empty(), "{steps}");
    assert!(steps.contains("install -m 0640 -g hub config.json /etc/hub/config.json"));
    assert!(steps.contains("install -m 0755 target/release/hub /usr/local/bin/hub"));

    let bin = root.join("usr/local/bin/hub");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(support::hub_bin(), &bin).unwrap();
    let work = root.join("var/lib/hub");
    std::fs::create_dir_all(work.join("scripts")).unwrap();
    for s in &scripts {
        std::fs::copy(repo.join(s), work.join(s)).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.join("config.json")).unwrap()).unwrap();
    config["webhook"]["port"] = serde_json::json!(0);
    let etc = root.join("etc/hub");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("config.json"), config.to_string()).unwrap();

    let shipped = std::fs::read_to_string(repo.join("contrib/hub.service")).unwrap();
    let unit = root.join("hub.service");
    std::fs::write(
        &unit,
        shipped
            .replace(
                "ExecStart=hub run",
                &format!("ExecStart={} run", bin.display()),
            )
            .replace(
                "/etc/hub/config.json",
                etc.join("config.json").to_str().unwrap(),
            ),
    )
    .unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (Debian package systemd)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // As the unit runs it: `hub run` in the state directory, the config from HUB_CONFIG.
    let config_path = etc.join("config.json");
    let hub = Hub::start_in(
        &work,
        &serde_json::json!({"not": "read: HUB_CONFIG names the installed config"}),
        &[("HUB_CONFIG", config_path.to_str().unwrap())],
    );
    let answer = support::client()
        .post(hub.url("/"))
        .basic_auth("dynatrace", Some("change-me"))
        .header("content-type", "application/json")
        .body(r#"{"State":"OPEN","ProblemID":"P-1042","PID":"-52896_1606920000000V2","ProblemTitle":"CPU saturation"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(work.join("problems_received/P-1042-OPEN.json").exists());
    support::eventually("the shipped script ran", async || {
        std::fs::read_to_string(work.join("problems_sent/P-1042.json"))
            .is_ok_and(|t| t.contains("succeeded"))
    })
    .await;
}
