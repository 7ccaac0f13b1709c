//! Hostile values and neighbours through the real binary: a store password in any shape never
//! shown, one `hub run` per database file whatever path names it, work bounded for values made to
//! be slow, and a share of the listener for every sender.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::postgres::pg;
use crate::support::{config_with, get_json, get_text, hub_command, Hub};

/// Everything a hub shows about itself: its stderr, its log file, its page, `/api/stats` and
/// `/metrics`.
async fn shown(hub: &Hub, dir: &Path) -> String {
    let (status, stats) = get_json(hub, "/api/stats").await;
    assert_eq!(status, 200, "{stats}");
    let log = std::fs::read_to_string(dir.join("log/hub.log")).unwrap_or_default();
    format!(
        "{}\n{log}\n{}\n{stats}\n{}",
        hub.stderr(),
        get_text(hub, "/").await,
        get_text(hub, "/metrics").await
    )
}

/// `hub check-config` on `config` in `dir`: its exit code and everything it printed.
fn check_config(dir: &Path, config: &Value) -> (Option<i32>, String) {
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let out = hub_command(dir).arg("check-config").output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), printed)
}

/// 5. A store URL's password, in its user part with a raw `/`, `@` or `%`, or in its query, is
/// shown nowhere: not by check-config, the start line (text or JSON), the log file, the page,
/// `/api/stats` or `/metrics`; the URL is still shown, masked.
#[tokio::test]
async fn a_store_password_is_shown_nowhere() {
    sqlite_pass_only!("starts its own PostgreSQL; the SQLite pass ran it");
    const SECRET: &str = "Pw-7f3q";
    // The server trusts local connections, so each URL connects whatever its password.
    let with_password = {
        let url = pg::database();
        let (head, tail) = url.split_once('@').unwrap();
        format!("{head}:{SECRET}/a%2@{tail}")
    };
    let in_query = format!(
        "{}?sslmode=disable&password={SECRET}&application_name=hub",
        pg::database()
    );
    for (url, format) in [(with_password, "text"), (in_query, "json")] {
        let dir = tempfile::tempdir().unwrap();
        let config = config_with(json!({"store": {"url": url}, "log_format": format}));
        let (code, checked) = check_config(dir.path(), &config);
        assert_eq!(code, Some(0), "{checked}");
        let hub = Hub::start_in(dir.path(), &config, &[]);
        let everything = format!("{checked}\n{}", shown(&hub, dir.path()).await);
        assert!(!everything.contains(SECRET), "{url} shown: {everything}");
        assert!(
            everything.contains("postgres:***@127.0.0.1") || everything.contains("password=***"),
            "the URL is shown, masked: {everything}"
        );
    }
    // A raw `@` in the password: what is shown before any connection is masked too.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("postgres://hub:{SECRET}@x@db/hub");
    let (_, checked) = check_config(dir.path(), &config_with(json!({"store": {"url": url}})));
    assert!(!checked.contains(SECRET), "{checked}");
    assert!(checked.contains("postgres://hub:***@db/hub"), "{checked}");
}

/// `hub run` in `dir` with `config`, which must end within 10 s: its exit code and stderr.
fn run_to_end(dir: &Path, config: &Value) -> (Option<i32>, String) {
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let mut child = hub_command(dir)
        .arg("run")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("a second hub kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// 3. One lock per database file: a second `hub run` on the store of a running one, through a
/// symlink, a hard link or a path with `./` in it, exits at once naming the process that holds it.
#[tokio::test]
async fn a_second_hub_through_another_path_to_the_store_exits_at_once() {
    sqlite_pass_only!("one hub per SQLite file, whatever path names it");
    let first = tempfile::tempdir().unwrap();
    let hub = Hub::start_in(first.path(), &config_with(json!({})), &[]);
    let db = first.path().join("hub.db");
    let other = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&db, other.path().join("link.db")).unwrap();
    std::fs::hard_link(&db, other.path().join("hard.db")).unwrap();
    let dotted = format!("sqlite://{}/./hub.db", first.path().display());
    for url in ["sqlite://link.db", "sqlite://hard.db", &dotted] {
        let (code, said) = run_to_end(other.path(), &config_with(json!({"store": {"url": url}})));
        assert_eq!(code, Some(1), "{url}: {said}");
        assert!(
            said.contains(&format!("in use by another hub (process {})", hub.pid())),
            "{url}: {said}"
        );
    }
    assert!(
        !other.path().join("hard.db-wal").exists(),
        "the second hub opened nothing"
    );
}

/// A PagerDuty Events v2 trigger whose dedup key (the problem's id) is `key`.
fn trigger(key: &str) -> String {
    json!({"routing_key": ROUTING_KEY, "event_action": "trigger", "dedup_key": key,
           "payload": {"summary": "disk full", "source": "db-1", "severity": "critical"}})
    .to_string()
}

const ROUTING_KEY: &str = "R0UT1NGKEYR0UT1NGKEYR0UT1NGKEY12";

/// 8. Ids of 245 to 255 characters (a PagerDuty dedup key may be 255): each problem's `problems_sent/` file is written, under a name
/// that fits 255 bytes; and `hub export` exits non-zero when a file cannot be written.
#[tokio::test]
async fn every_name_in_problems_sent_fits_and_a_failed_export_says_so() {
    let dir = tempfile::tempdir().unwrap();
    crate::support::script(dir.path(), "ok.sh", "exit 0");
    let config = config_with(json!({
        "sources": {"pagerduty": {"routing_keys": [ROUTING_KEY]}},
        "actions": {"page": {"type": "script", "command": ["./ok.sh"]}}}));
    let mut hub = Hub::start_in(dir.path(), &config, &[]);
    let ids: Vec<String> = (245..=255).map(|n| "P".repeat(n)).collect();
    for id in &ids {
        let r = crate::support::client()
            .post(hub.url("/v2/enqueue"))
            .header("content-type", "application/json")
            .body(trigger(id))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    }
    let sent = dir.path().join("problems_sent");
    // Without the hidden temporary names a rewrite uses for a moment.
    let listed = |dir: &Path| -> Vec<String> {
        crate::support::list_files(dir)
            .into_iter()
            .filter(|n| !n.starts_with('.'))
            .collect()
    };
    crate::support::eventually("a sent file for each problem", async || {
        listed(&sent).len() == ids.len()
    })
    .await;
    let names = listed(&sent);
    assert!(
        names
            .iter()
            .all(|n| n.len() <= 255 && n.starts_with("pagerduty-PPP")),
        "{names:?}"
    );
    assert!(
        !hub.stderr().contains("File name too long"),
        "{}",
        hub.stderr()
    );
    hub.terminate();

    let export = |to: &Path| {
        hub_command(dir.path())
            .args(["export", "--dir", to.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let good = tempfile::tempdir().unwrap();
    let out = export(good.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(listed(&good.path().join("problems_sent")), names);
    // A folder where one problem's file should go: that file cannot be written.
    let bad = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(bad.path().join("problems_sent").join(&names[0])).unwrap();
    let out = export(bad.path());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("failed   problems_sent/{}", names[0])),
        "{said}"
    );
    assert!(said.contains("1 file(s) could not be written"), "{said}");
}

/// 8. `POST /-/reload` refuses what a browser says another site's page sent (403), as the page's
/// forms do, and takes it from curl; a silence over its size limit is 413; check-config warns of a
/// maintenance window whose cron never fires.
#[tokio::test]
async fn cross_site_reloads_big_silences_and_dead_crons_are_answered() {
    let (dir, hub) = crate::support::start(json!({}));
    let reload = |headers: &[(&str, &str)]| {
        let mut r = crate::support::client()
            .post(hub.url("/-/reload"))
            .basic_auth(crate::support::USER, Some(crate::support::PASSWORD));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send()
    };
    for cross in [
        &[("Origin", "https://evil.example")][..],
        &[("Sec-Fetch-Site", "cross-site")][..],
        &[("Referer", "https://evil.example/page")][..],
    ] {
        let r = reload(cross).await.unwrap();
        crate::support::expect_error(r, 403, "forbidden").await;
    }
    let r = reload(&[]).await.unwrap();
    assert_eq!(r.status(), 200, "curl's reload");
    let own = hub.base_url.clone();
    let r = reload(&[("Origin", own.as_str()), ("Sec-Fetch-Site", "same-origin")])
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the page's own");

    let silence = |comment: String| {
        crate::support::client()
            .post(hub.url("/api/silences"))
            .basic_auth(crate::support::USER, Some(crate::support::PASSWORD))
            .header("content-type", "application/json")
            .body(
                json!({"matchers": ["tag=env:prod"], "duration": "1h", "comment": comment})
                    .to_string(),
            )
            .send()
    };
    let r = silence("x".repeat(20_000)).await.unwrap();
    let e = crate::support::expect_error(r, 413, "payload_too_large").await;
    assert!(e.to_string().contains("16 KiB"), "{e}");
    let r = silence("x".repeat(1_001)).await.unwrap();
    crate::support::expect_error(r, 400, "invalid_silence").await;
    assert_eq!(silence("patching".into()).await.unwrap().status(), 201);

    let (code, said) = check_config(
        dir.path(),
        &config_with(json!({"maintenance": [
            {"name": "never", "match": {"tag": "env:prod"}, "cron": "0 0 30 2 *", "duration": "1h"},
            {"name": "sundays", "match": {"tag": "env:prod"}, "cron": "0 2 * * SUN", "duration": "1h"}]})),
    );
    assert_eq!(code, Some(0), "a warning, not an error: {said}");
    assert!(
        said.contains("warning: maintenance[0].cron: \"0 0 30 2 *\" names no time that ever comes"),
        "{said}"
    );
    assert!(!said.contains("maintenance[1]"), "{said}");
}

/// 7. A share for every sender: an attacker on 127.0.0.2 opening slow connections (headers never
/// finished) gets its share of the listener, by default a quarter of `max_connections`, and no
/// more; senders on 127.0.0.1 still get through.
#[tokio::test]
async fn one_address_holding_slow_connections_leaves_room_for_the_others() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_dir, hub) = crate::support::start(json!({"webhook": {
        "max_connections": 8, "header_timeout": "60s"}}));
    let addr: std::net::SocketAddr = hub.base_url.trim_start_matches("http://").parse().unwrap();
    let mut attacker = Vec::new();
    for _ in 0..10 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut stream = socket.connect(addr).await.unwrap();
        let _ = stream.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n").await;
        attacker.push(stream);
    }
    // Past its share each is closed at once; the ones it holds stay open, waiting.
    let mut held = 0;
    for stream in &mut attacker {
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await {
            Err(_) => held += 1,
            Ok(Ok(0)) | Ok(Err(_)) => {}
            Ok(Ok(n)) => panic!("an answer to a request never finished: {n} bytes"),
        }
    }
    assert_eq!(held, 2, "a quarter of max_connections (8)");
    // Two senders at once, three notifications each, all stored; one client, so its (at most
    // two) connections are 127.0.0.1's share, and the metrics come over one of them.
    let client = crate::support::client();
    let send = |i: usize| {
        let (client, url) = (client.clone(), hub.url("/"));
        async move {
            for j in 0..3 {
                let body = json!({"State": "OPEN", "ProblemID": format!("P-{i}{j}"),
                                  "PID": format!("{i}{j}V2")});
                let r = crate::support::post(&client, &url, body.to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        }
    };
    tokio::join!(send(1), send(2));
    let metrics = client
        .get(hub.url("/metrics"))
        .basic_auth(crate::support::USER, Some(crate::support::PASSWORD))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("hub_connections_refused_total{reason=\"client_connection_limit\"} 8"),
        "{metrics}"
    );
    drop(attacker);

    let dir = tempfile::tempdir().unwrap();
    for (webhook, says) in [
        (
            json!({"max_connections": 8, "max_connections_per_client": 9}),
            "webhook.max_connections_per_client: 9 is more than webhook.max_connections (8)",
        ),
        (
            json!({"max_connections_per_client": 0}),
            "webhook.max_connections_per_client:",
        ),
    ] {
        let (code, said) = check_config(dir.path(), &config_with(json!({"webhook": webhook})));
        assert_eq!(code, Some(1), "{said}");
        assert!(said.contains(says), "{said}");
    }
}
