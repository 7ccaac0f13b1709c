//! The core promise at the edges: every acknowledged notification kept, every action run, none run
//! twice by accident, when the input, the disk, the clock, the network or a second process is
//! hostile. Each test here failed before its fix.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{
    self, client, config_with, count, eventually, hub_command, lines, post, runs, script, Hub,
    PASSWORD, USER,
};

/// Appends one line per run to calls.log.
const RECORD: &str = r#"printf '%s %s\n' "$HUB_PROBLEM_ID" "$HUB_STATE" >> calls.log"#;

fn record_action() -> Value {
    json!({"actions": {"page": {"type": "script", "command": "./record.sh"}}})
}

fn dynatrace(problem: &str, state: &str) -> Vec<u8> {
    json!({"State": state, "ProblemID": problem, "PID": format!("-{problem}_1606920000000V2")})
        .to_string()
        .into_bytes()
}

async fn send(hub: &Hub, body: Vec<u8>) -> reqwest::Response {
    post(&client(), &hub.url("/"), body).send().await.unwrap()
}

/// A page or API answer, read with the viewer's credentials.
async fn viewed(hub: &Hub, path: &str) -> String {
    let r = client()
        .get(hub.url(path))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    r.text().await.unwrap()
}

fn calls(dir: &Path) -> Vec<String> {
    lines(&dir.join("calls.log"))
}

/// A raw HTTP exchange: writes `request`, reads until the server closes or answers.
fn raw(hub: &Hub, request: &[u8]) -> String {
    let addr = hub.base_url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// 1. An id long enough to pass the file system's 255 bytes once made into a file name: stored,
///    and hub starts again.
#[tokio::test]
async fn a_long_id_is_stored_under_a_name_that_fits_and_hub_starts_again() {
    let (dir, mut hub) = support::start(json!({"sources": {"ucloud": {}}}));
    // The longest id UCloud's checks let through: 120 + 1 + 120 characters.
    let body = json!({"SessionID": "s-1", "Region": "cn-north-03", "ResourceType": "uhost",
                      "ResourceId": "u".repeat(120), "MetricName": "m".repeat(120),
                      "AlarmTime": 1458733318, "RecoveryTime": 0});
    let r = client()
        .post(hub.url("/hooks/ucloud"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let files = hub.received_files();
    assert_eq!(files.len(), 1);
    assert!(
        files[0].len() <= 255 && files[0].starts_with("ucloud-uuu"),
        "{files:?}"
    );
    hub.terminate();
    std::fs::remove_file(hub.received().join(&files[0])).unwrap();
    let config: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    let hub = Hub::start_in(dir.path(), &config, &[]);
    eventually("the file written back", async || {
        hub.received_files() == files
    })
    .await;
}

/// 2. A second `hub run` on the same store says who holds it and exits before touching anything;
///    the first one's run is not started twice.
#[tokio::test]
async fn a_second_hub_on_the_same_store_exits_and_pages_nobody_twice() {
    sqlite_pass_only!("one hub per SQLite file; hubs share a PostgreSQL store by design");
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "record.sh", &format!("sleep 2\n{RECORD}"));
    let hub = Hub::start_in(dir.path(), &config_with(record_action()), &[]);
    assert_eq!(send(&hub, dynatrace("21", "OPEN")).await.status(), 200);
    eventually("the run in flight", async || {
        runs(dir.path())
            .await
            .first()
            .is_some_and(|r| r.status == "running")
    })
    .await;
    let second = hub_command(dir.path()).arg("run").output().unwrap();
    let said = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("in use by another hub (process {})", hub.pid())),
        "{said}"
    );
    assert!(!said.contains("in flight"), "{said}");
    eventually("the run done", async || {
        runs(dir.path())
            .await
            .first()
            .is_some_and(|r| r.status == "succeeded")
    })
    .await;
    // No second call must come, which no condition can show: a wait as long as a run takes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(calls(dir.path()), ["21 OPEN"]);
}

/// 3. With the tenant unreachable, actions run after `dynatrace.enrich_wait` on the notification
///    alone, while the details are still being asked for.
#[tokio::test]
async fn paging_does_not_wait_on_an_unreachable_dynatrace() {
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "record.sh", RECORD);
    let tenant = format!("http://127.0.0.1:{}", support::free_port());
    let mut patch = record_action();
    patch["dynatrace"] = json!({"tenant": tenant, "api_token": "dt0c01.x", "enrich_wait": "1s"});
    let hub = Hub::start_in(dir.path(), &config_with(patch), &[]);
    assert_eq!(send(&hub, dynatrace("31", "OPEN")).await.status(), 200);
    eventually("the page without details", async || {
        calls(dir.path()) == ["31 OPEN"]
    })
    .await;
    let db = support::db(dir.path()).await;
    let status: String = db
        .row("SELECT status FROM enrichments", &[])
        .await
        .get("status");
    assert_eq!(status, "pending", "the details are still asked for");
    assert!(
        hub.stderr().contains("with_details=false"),
        "{}",
        hub.stderr()
    );
}

/// 4 and 10. A file that cannot be written is a 503 that stores and runs nothing, and health says
///    so; a deleted folder is made again and the next notification is stored.
#[tokio::test]
async fn a_503_stores_nothing_runs_nothing_and_health_says_why() {
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "record.sh", RECORD);
    let hub = Hub::start_in(dir.path(), &config_with(record_action()), &[]);
    let received = hub.received();
    std::fs::remove_dir_all(&received).unwrap();
    std::fs::write(&received, b"not a folder").unwrap();
    let r = send(&hub, dynatrace("41", "OPEN")).await;
    support::expect_error(r, 503, "not_stored").await;
    let health = client().get(hub.url("/healthz")).send().await.unwrap();
    support::expect_error(health, 503, "unavailable").await;
    assert_eq!(count(dir.path()).await, 0);
    // Nothing must run, which no condition can show: a wait long enough for a run to start.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(runs(dir.path()).await.is_empty());
    assert!(calls(dir.path()).is_empty());

    // The folder deleted while hub runs: made again, and health is ok.
    std::fs::remove_file(&received).unwrap();
    let r = send(&hub, dynatrace("41", "OPEN")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(hub.received_files(), ["41-OPEN.json"]);
    std::fs::remove_dir_all(&received).unwrap();
    let health = client().get(hub.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(received.is_dir());
    eventually("one run", async || calls(dir.path()) == ["41 OPEN"]).await;
}

/// 5 and 8. A file hub did not write is never replaced; at start hub says the folder holds files
///    the store lacks, and `hub import` takes them as history, idempotently.
#[tokio::test]
async fn files_hub_did_not_write_are_kept_and_imported_once() {
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "record.sh", RECORD);
    let received = dir.path().join("problems_received");
    std::fs::create_dir_all(&received).unwrap();
    let sample = dynatrace("51", "OPEN");
    std::fs::write(received.join("51-OPEN.json"), &sample).unwrap();
    std::fs::write(received.join("notes.json"), b"not a notification").unwrap();
    let config = config_with(record_action());
    let mut hub = Hub::start_in(dir.path(), &config, &[]);
    eventually("the warning", async || hub.stderr().contains("hub import")).await;
    let newer = json!({"State": "OPEN", "ProblemID": "51", "PID": "-51_1606920000000V2", "x": 1})
        .to_string();
    assert_eq!(send(&hub, newer.into_bytes()).await.status(), 200);
    assert_eq!(
        std::fs::read(received.join("51-OPEN.json")).unwrap(),
        sample
    );
    assert!(received.join("51-OPEN.2.json").is_file());
    eventually("one run", async || calls(dir.path()).len() == 1).await;
    hub.terminate();

    // From another folder too: the sample kept its files elsewhere.
    let elsewhere = dir.path().join("old_received");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(
        elsewhere.join("52-RESOLVED.json"),
        dynatrace("52", "RESOLVED"),
    )
    .unwrap();
    for folder in ["problems_received", "old_received"] {
        let out = hub_command(dir.path())
            .args(["import", folder])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{said}");
        if folder == "problems_received" {
            assert!(
                said.contains("stored   51-OPEN.json as 51-OPEN.json"),
                "{said}"
            );
            assert!(
                said.contains("skipped  51-OPEN.2.json: already stored"),
                "{said}"
            );
            assert!(
                said.contains("skipped  notes.json: not a dynatrace notification"),
                "{said}"
            );
            assert!(said.contains("imported 1 of 3"), "{said}");
        } else {
            assert!(
                said.contains("stored   52-RESOLVED.json as 52-RESOLVED.json"),
                "{said}"
            );
        }
    }
    let again = hub_command(dir.path())
        .args(["import", "problems_received"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&again.stdout);
    assert!(said.contains("imported 0 of 4"), "{said}");
    assert_eq!(count(dir.path()).await, 3);

    let hub = Hub::start_in(dir.path(), &config, &[]);
    eventually("the start-up check's warning", async || {
        hub.stderr().contains("files=")
    })
    .await;
    // Only the file that is no notification is still named.
    let log = hub.stderr();
    assert!(
        log.contains("files=1") && !log.contains("51-OPEN.json"),
        "{log}"
    );
    // Imported history has no plan to route: no run can come of it.
    support::all_routed(dir.path()).await;
    assert_eq!(
        runs(dir.path()).await.len(),
        1,
        "imported history runs nothing"
    );
    assert_eq!(calls(dir.path()).len(), 1);
}

/// 6 and 10. Clients that never finish their headers or bodies are cut off and counted; the cap
///    keeps room; `/healthz` answers again; a request with both framings is refused.
#[tokio::test]
async fn slow_clients_are_cut_off_and_health_stays_reachable() {
    // All from one address: its share is the whole cap here, so the cap itself is what is tested.
    let (dir, hub) = support::start(json!({"webhook": {
        "header_timeout": "1s", "body_timeout": "1s", "max_connections": 20,
        "max_connections_per_client": 20}}));
    let addr = hub.base_url.trim_start_matches("http://").to_string();
    let mut slow = Vec::new();
    for _ in 0..30 {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n").unwrap();
        slow.push(s);
    }
    // Every slow connection is closed by hub: a read ends.
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
    }
    let health = client().get(hub.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let partial_body = raw(
        &hub,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"State\"",
    );
    assert!(partial_body.starts_with("HTTP/1.1 408"), "{partial_body}");

    let basic = format!(
        "Basic {}",
        base64_encode(format!("{USER}:{PASSWORD}").as_bytes())
    );
    let body = String::from_utf8(dynatrace("61", "OPEN")).unwrap();
    let smuggled = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: {basic}\r\nContent-Type: application/json\r\n\
         Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let answer = raw(&hub, smuggled.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(count(dir.path()).await, 0);

    let metrics = viewed(&hub, "/metrics").await;
    let counted = |reason: &str| -> u64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "hub_connections_refused_total{{reason=\"{reason}\"}}"
                ))
            })
            .and_then(|l| l.split_whitespace().last())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    assert!(counted("header_timeout") >= 20, "{metrics}");
    assert!(counted("connection_limit") >= 10, "{metrics}");
    assert_eq!(counted("body_timeout"), 1, "{metrics}");
    assert_eq!(
        counted("content_length_and_transfer_encoding"),
        1,
        "{metrics}"
    );
    let log = hub.stderr();
    assert!(
        log.contains("request headers did not arrive in time"),
        "{log}"
    );
    assert!(log.contains("every connection slot is taken"), "{log}");
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// 7. A store that refuses writes (as a full disk does): the dispatcher backs off and logs a few
///    lines, not thousands; when writes go through again every run completes, none twice.
#[tokio::test]
async fn a_store_that_refuses_writes_is_waited_out_without_running_twice() {
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "record.sh", &format!("{RECORD}\nsleep 1"));
    let hub = Hub::start_in(dir.path(), &config_with(record_action()), &[]);
    assert_eq!(send(&hub, dynatrace("71", "OPEN")).await.status(), 200);
    eventually("the first run started", async || {
        calls(dir.path()).len() == 1
    })
    .await;
    let db = support::db(dir.path()).await;
    if db.is_postgres() {
        db.batch(
            "CREATE FUNCTION refuse_writes() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN RAISE EXCEPTION 'could not extend file' USING ERRCODE = 'disk_full'; END $$;
             CREATE TRIGGER refuse_writes BEFORE UPDATE ON action_runs
             FOR EACH ROW EXECUTE FUNCTION refuse_writes();",
        )
        .await;
    } else {
        db.batch(
            "CREATE TRIGGER refuse_writes BEFORE UPDATE ON action_runs
             BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
        )
        .await;
    }
    assert_eq!(send(&hub, dynatrace("72", "OPEN")).await.status(), 200);
    let before = hub.stderr().lines().count();
    // What is measured is how much hub logs in a while, so the wait is the test.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during = hub.stderr().lines().count() - before;
    assert!(during <= 12, "{during} lines in 4 s:\n{}", hub.stderr());
    if db.is_postgres() {
        db.batch("DROP TRIGGER refuse_writes ON action_runs").await;
    } else {
        db.batch("DROP TRIGGER refuse_writes").await;
    }
    eventually("both runs succeeded", async || {
        let r = runs(dir.path()).await;
        r.len() == 2 && r.iter().all(|r| r.status == "succeeded")
    })
    .await;
    let mut done = calls(dir.path());
    done.sort();
    assert_eq!(done, ["71 OPEN", "72 OPEN"]);
}

/// 8. After SIGTERM everything acknowledged is in `hub.db` itself, not only in its WAL.
#[tokio::test]
async fn a_graceful_stop_leaves_everything_in_hub_db() {
    sqlite_pass_only!("checks SQLite's write-ahead log");
    let (dir, mut hub) = support::start(json!({}));
    for i in 0..30 {
        assert_eq!(
            send(&hub, dynatrace(&format!("8{i}"), "OPEN"))
                .await
                .status(),
            200
        );
    }
    assert_eq!(hub.terminate(), Some(0));
    let wal = dir.path().join("hub.db-wal");
    assert_eq!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0), 0);
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(dir.path().join("hub.db"), copy.path().join("hub.db")).unwrap();
    assert_eq!(count(copy.path()).await, 30);
}

/// 10. A value with a newline cannot forge a log line.
#[tokio::test]
async fn a_newline_in_a_value_cannot_forge_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "record.sh", RECORD);
    let hub = Hub::start_in(dir.path(), &config_with(record_action()), &[]);
    let body = json!({"State": "OPEN\nFORGED INFO all good", "ProblemID": "101", "PID": "-1_1V2"});
    let r = send(&hub, body.to_string().into_bytes()).await;
    let status = r.status().as_u16();
    eventually("the run", async || {
        !calls(dir.path()).is_empty() || status != 200
    })
    .await;
    let log_file = dir.path().join("log/hub.log");
    eventually("the value in the log file", async || {
        std::fs::read_to_string(&log_file).is_ok_and(|log| log.contains("FORGED"))
    })
    .await;
    let log = std::fs::read_to_string(&log_file).unwrap();
    assert!(
        !log.lines()
            .chain(hub.stderr().lines())
            .any(|l| l.starts_with("FORGED")),
        "{log}"
    );
}

/// 10. A body of many tiny values is refused before it is parsed.
#[tokio::test]
async fn a_body_of_countless_values_is_refused_before_parsing() {
    let (dir, hub) = support::start(json!({"webhook": {"max_body_bytes": 8 * 1024 * 1024}}));
    let mut body = b"[".to_vec();
    for _ in 0..1_500_000 {
        body.extend_from_slice(b"[],");
    }
    body.extend_from_slice(b"[]]");
    let r = send(&hub, body).await;
    let answer = support::expect_error(r, 422, "invalid_notification").await;
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .contains("more JSON values"),
        "{answer}"
    );
    assert_eq!(count(dir.path()).await, 0);
}

/// 10. Runs of an action taken out of the config are named at start and on the page.
#[tokio::test]
async fn runs_of_a_removed_action_are_named() {
    let dir = tempfile::tempdir().unwrap();
    script(dir.path(), "later.sh", "exit 75");
    let config = config_with(
        json!({"actions": {"later": {"type": "script", "command": "./later.sh"}},
                                    "dispatch": {"first_retry_secs": 60}}),
    );
    let mut hub = Hub::start_in(dir.path(), &config, &[]);
    assert_eq!(send(&hub, dynatrace("102", "OPEN")).await.status(), 200);
    eventually("a retry pending", async || {
        runs(dir.path())
            .await
            .first()
            .is_some_and(|r| r.attempts == 1 && r.status == "pending")
    })
    .await;
    hub.terminate();
    let hub = Hub::start_in(dir.path(), &config_with(json!({})), &[]);
    eventually("the warning", async || {
        hub.stderr().contains("no longer in the config")
    })
    .await;
    let page = viewed(&hub, "/").await;
    assert!(
        page.contains("no longer configured: 1 run(s) wait"),
        "{page}"
    );
}

/// 10. A retry set far ahead by a clock that jumped and came back never waits longer than
///     `dispatch.max_retry_secs` from now.
#[tokio::test]
async fn a_retry_set_by_a_clock_that_jumped_ahead_is_not_held() {
    let dir = tempfile::tempdir().unwrap();
    script(
        dir.path(),
        "once.sh",
        &format!("{RECORD}\n[ -f failed ] && exit 0\ntouch failed\nexit 75"),
    );
    let config = config_with(
        json!({"actions": {"page": {"type": "script", "command": "./once.sh"}},
                                    "dispatch": {"first_retry_secs": 1, "max_retry_secs": 2}}),
    );
    let hub = Hub::start_in(dir.path(), &config, &[]);
    assert_eq!(send(&hub, dynatrace("103", "OPEN")).await.status(), 200);
    eventually("the first attempt failed", async || {
        runs(dir.path())
            .await
            .first()
            .is_some_and(|r| r.attempts == 1 && r.status == "pending")
    })
    .await;
    // What a clock a year ahead at the moment of scheduling would have written.
    support::db(dir.path())
        .await
        .execute(
            "UPDATE action_runs SET next_attempt_at_ms = next_attempt_at_ms + $1",
            &[(365 * 86_400_000_i64).into()],
        )
        .await;
    eventually("the retry", async || {
        runs(dir.path())
            .await
            .first()
            .is_some_and(|r| r.status == "succeeded")
    })
    .await;
    drop(hub);
}

/// 10. `hub explain` shows no phone number and no key in a webhook URL.
#[test]
fn explain_masks_numbers_and_url_keys() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(json!({"actions": {
        "text": {"type": "sms", "account_sid": "AC123", "auth_token": "tok",
                 "from": "+15005550006", "to": ["+4915112341111"]},
        "hook": {"type": "webhook", "url": "https://chat.example/in?key=SECRETKEY42",
                 "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}}));
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    std::fs::write(dir.path().join("p.json"), dynatrace("104", "OPEN")).unwrap();
    let out = hub_command(dir.path())
        .args(["explain", "p.json"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    for secret in ["4915112341111", "15005550006", "SECRETKEY42", "tok\""] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(
        shown.contains("+49*****1111") && shown.contains("key=***"),
        "{shown}"
    );
}

/// 10. `hub poll` runs no script, so a missing one is no reason to refuse.
#[test]
fn poll_runs_without_the_incident_script() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(json!({
        "dynatrace": {"tenant": format!("http://127.0.0.1:{}", support::free_port()), "api_token": "t"},
        "incident_notification": {"active": true, "exec_unix": "./missing.sh"}}));
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let out = hub_command(dir.path())
        .args(["poll", "--relative", "hour"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!said.contains("missing.sh"), "{said}");
    assert!(said.contains("cannot read the problem feed"), "{said}");
    let run = hub_command(dir.path())
        .args(["poll", "--relative", "hour", "--run-actions"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&run.stderr).contains("missing.sh"));
}
