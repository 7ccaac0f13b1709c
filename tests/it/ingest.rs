//! The Dynatrace notification target over real HTTP against the real binary.

use serde_json::{json, Value};

use crate::support::{self, client, count, expect_error, fixture, post, JsonValue, PASSWORD, USER};

#[tokio::test]
async fn stores_the_notification_then_answers() {
    let (_tmp, hub) = support::start(json!({}));
    let c = client();
    let body = fixture("dynatrace/full-open.json");

    let r = post(&c, &hub.url("/"), body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json_value().await;
    assert_eq!(
        answer,
        json!({"status": "stored", "file": "P-2411021-OPEN.json"})
    );

    // Byte for byte, under the sample's name.
    assert_eq!(hub.received_files(), ["P-2411021-OPEN.json"]);
    assert_eq!(
        std::fs::read(hub.received().join("P-2411021-OPEN.json")).unwrap(),
        body
    );

    // The new path does the same.
    let minimal = fixture("dynatrace/minimal-resolved.json");
    let r = post(&c, &hub.url("/hooks/dynatrace"), minimal.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        std::fs::read(hub.received().join("85-RESOLVED.json")).unwrap(),
        minimal
    );

    let db = support::db(&hub.dir).await;
    let rows = db
        .rows(
            "SELECT source, problem_key, state, pid, is_test, body FROM notifications ORDER BY id",
            &[],
        )
        .await;
    assert_eq!(rows.len(), 2);
    let first = &rows[0];
    assert_eq!(first.get::<String>("source"), "dynatrace");
    assert_eq!(first.get::<String>("problem_key"), "P-2411021");
    assert_eq!(first.get::<String>("state"), "OPEN");
    assert_eq!(
        first.get::<Option<String>>("pid").as_deref(),
        Some("-5289617462338813532_1606920000000V2")
    );
    assert!(!first.get::<bool>("is_test"));
    assert_eq!(first.get::<Vec<u8>>("body"), body);
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_refused_and_nothing_is_written() {
    let (_tmp, hub) = support::start(json!({}));
    let c = client();
    let body = fixture("dynatrace/minimal-open.json");
    let attempts = [
        c.post(hub.url("/")),
        c.post(hub.url("/")).basic_auth(USER, Some("wrong")),
        c.post(hub.url("/")).basic_auth("someone", Some(PASSWORD)),
        c.post(hub.url("/hooks/dynatrace"))
            .basic_auth(USER, None::<&str>),
        c.post(hub.url("/"))
            .header("authorization", "Basic %%%garbage%%%"),
        c.post(hub.url("/")).bearer_auth(PASSWORD),
    ];
    for attempt in attempts {
        let r = attempt
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers().get("www-authenticate").unwrap(),
            "Basic realm=\"hub\""
        );
        expect_error(r, 401, "unauthorized").await;
    }
    assert!(hub.received_files().is_empty());
    assert_eq!(count(&hub.dir).await, 0);
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let (_tmp, hub) = support::start(json!({}));
    let c = client();
    let url = hub.url("/");
    let cases: Vec<(Vec<u8>, &str, u16, &str)> = vec![
        (
            b"this is not json".to_vec(),
            "application/json",
            400,
            "invalid_json",
        ),
        (
            b"{\"State\": \"OPEN\",".to_vec(),
            "application/json",
            400,
            "invalid_json",
        ),
        (
            vec![0xff, 0xfe, 0x00],
            "application/json",
            400,
            "invalid_json",
        ),
        (b"".to_vec(), "application/json", 400, "invalid_json"),
        (
            b"[1,2]".to_vec(),
            "application/json",
            422,
            "invalid_notification",
        ),
        (
            br#"{"ProblemID":"1","PID":"2"}"#.to_vec(),
            "application/json",
            422,
            "invalid_notification",
        ),
        (
            br#"{"State":"OPEN","PID":"2"}"#.to_vec(),
            "application/json",
            422,
            "invalid_notification",
        ),
        (
            br#"{"State":"OPEN","ProblemID":"1"}"#.to_vec(),
            "application/json",
            422,
            "invalid_notification",
        ),
        (
            br#"{"State":["OPEN"],"ProblemID":"1","PID":"2"}"#.to_vec(),
            "application/json",
            422,
            "invalid_notification",
        ),
        (
            br#"{"State":"OPEN","ProblemID":{"x":1},"PID":"2"}"#.to_vec(),
            "application/json",
            422,
            "invalid_notification",
        ),
        (
            br#"{"State":"OPEN","ProblemID":"1","PID":false}"#.to_vec(),
            "application/json",
            422,
            "invalid_notification",
        ),
        (
            b"State=OPEN&ProblemID=1&PID=2".to_vec(),
            "application/x-www-form-urlencoded",
            415,
            "unsupported_media_type",
        ),
        (
            b"--x\r\n".to_vec(),
            "multipart/form-data; boundary=x",
            415,
            "unsupported_media_type",
        ),
        (
            b"<State>OPEN</State>".to_vec(),
            "application/xml",
            415,
            "unsupported_media_type",
        ),
    ];
    for (body, content_type, status, error) in cases {
        let r = c
            .post(&url)
            .basic_auth(USER, Some(PASSWORD))
            .header("content-type", content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let answer = expect_error(r, status, error).await;
        // The reason never echoes the body back.
        assert!(!answer.to_string().contains("touch"), "{answer}");
    }

    // Over the 1 MiB default limit: 413, body never read to the end.
    let huge = format!(
        r#"{{"State":"OPEN","ProblemID":"1","PID":"2","Pad":"{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let r = post(&c, &url, huge).send().await.unwrap();
    expect_error(r, 413, "payload_too_large").await;

    assert!(hub.received_files().is_empty());
    assert_eq!(count(&hub.dir).await, 0);

    // Still serving, and a good notification still goes through.
    let r = post(&c, &url, fixture("dynatrace/minimal-open.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(hub.received_files(), ["85-OPEN.json"]);
}

#[tokio::test]
async fn body_limit_is_configurable() {
    let (_tmp, hub) = support::start(json!({"webhook": {"max_body_bytes": 2048}}));
    let c = client();
    let body = format!(
        r#"{{"State":"OPEN","ProblemID":"1","PID":"2","Pad":"{}"}}"#,
        "y".repeat(3000)
    );
    let r = post(&c, &hub.url("/"), body).send().await.unwrap();
    let answer = expect_error(r, 413, "payload_too_large").await;
    assert!(answer["detail"].as_str().unwrap().contains("2048"));
    let r = post(&c, &hub.url("/"), fixture("dynatrace/full-open.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn hostile_ids_cannot_leave_the_folder() {
    let (tmp, hub) = support::start(json!({}));
    let c = client();
    let hostile = [
        ("../../../../tmp/escape", "OPEN"),
        ("..", ".."),
        ("$(touch INJECTED)", "OPEN; rm -rf /"),
        ("a/b\\c", "OPEN"),
        ("<script>alert(1)</script>", "OPEN"),
    ];
    for (id, state) in hostile {
        let body = json!({"State": state, "ProblemID": id, "PID": "1"}).to_string();
        let r = post(&c, &hub.url("/"), body).send().await.unwrap();
        assert_eq!(r.status(), 200, "{id}");
    }
    let files = hub.received_files();
    assert_eq!(files.len(), hostile.len(), "{files:?}");
    for name in &files {
        assert!(
            name.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch)),
            "{name}"
        );
        assert!(name.ends_with(".json") && !name.starts_with('.'), "{name}");
    }
    assert!(
        files.contains(&"__touch_INJECTED_-OPEN__rm_-rf__.json".to_string()),
        "{files:?}"
    );
    // Nothing next to the folder, nothing run.
    let mut top = support::list_files(tmp.path());
    top.retain(|n| !n.starts_with("hub.db"));
    assert_eq!(
        top,
        ["config.json", "log", "problems_received", "problems_sent"]
    );
    assert!(!std::path::Path::new("/tmp/escape-OPEN.json").exists());
}

#[tokio::test]
async fn redelivery_is_a_duplicate_and_a_new_body_never_overwrites() {
    let (_tmp, hub) = support::start(json!({}));
    let c = client();
    let first = br#"{"State":"OPEN","ProblemID":"42","PID":"7","ProblemTitle":"CPU"}"#.to_vec();
    let second =
        br#"{"State":"OPEN","ProblemID":"42","PID":"7","ProblemTitle":"CPU saturation"}"#.to_vec();

    for expected in ["stored", "duplicate", "duplicate"] {
        let r = post(&c, &hub.url("/"), first.clone()).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let answer: Value = r.json_value().await;
        assert_eq!(answer["status"], expected);
        assert_eq!(answer["file"], "42-OPEN.json");
    }
    let r = post(&c, &hub.url("/"), second.clone())
        .send()
        .await
        .unwrap();
    let answer: Value = r.json_value().await;
    assert_eq!(
        answer,
        json!({"status": "stored", "file": "42-OPEN.2.json"})
    );

    assert_eq!(hub.received_files(), ["42-OPEN.2.json", "42-OPEN.json"]);
    assert_eq!(
        std::fs::read(hub.received().join("42-OPEN.json")).unwrap(),
        first
    );
    assert_eq!(
        std::fs::read(hub.received().join("42-OPEN.2.json")).unwrap(),
        second
    );

    let db = support::db(&hub.dir).await;
    let dups: Vec<i64> = db
        .rows("SELECT duplicates FROM notifications ORDER BY id", &[])
        .await
        .iter()
        .map(|r| r.get("duplicates"))
        .collect();
    assert_eq!(dups, [2, 0]);
}

#[tokio::test]
async fn test_notifications_are_stored_and_marked_exactly() {
    let (_tmp, hub) = support::start(json!({}));
    let c = client();
    let r = post(
        &c,
        &hub.url("/"),
        fixture("dynatrace/test-notification.json"),
    )
    .send()
    .await
    .unwrap();
    let answer: Value = r.json_value().await;
    assert_eq!(answer, json!({"status": "test", "file": "999-OPEN.json"}));

    let real =
        br#"{"State":"OPEN","ProblemID":"1999","PID":"5","ProblemTitle":"Disk full"}"#.to_vec();
    let answer: Value = post(&c, &hub.url("/"), real)
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(answer["status"], "stored");

    let db = support::db(&hub.dir).await;
    let flags: Vec<(String, bool)> = db
        .rows(
            "SELECT problem_key, is_test FROM notifications ORDER BY id",
            &[],
        )
        .await
        .iter()
        .map(|r| (r.get("problem_key"), r.get("is_test")))
        .collect();
    assert_eq!(
        flags,
        [("999".to_string(), true), ("1999".to_string(), false)]
    );
    assert!(hub.stderr().contains("test notification received"));
}

#[tokio::test]
async fn cannot_store_means_503_and_the_retry_is_stored() {
    let (_tmp, hub) = support::start(json!({}));
    let c = client();
    // Running as root defeats permission bits, so make the folder unusable by replacing it.
    let received = hub.received();
    std::fs::remove_dir_all(&received).unwrap();
    std::fs::write(&received, b"not a folder").unwrap();

    let body = fixture("dynatrace/minimal-open.json");
    let r = post(&c, &hub.url("/"), body.clone()).send().await.unwrap();
    expect_error(r, 503, "not_stored").await;

    // The operator fixes the folder; the sender's retry is answered 200 and the file appears.
    std::fs::remove_file(&received).unwrap();
    std::fs::create_dir(&received).unwrap();
    let r = post(&c, &hub.url("/"), body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(std::fs::read(received.join("85-OPEN.json")).unwrap(), body);
    assert_eq!(count(&hub.dir).await, 1);
}

#[tokio::test]
async fn start_up_writes_back_files_the_folder_lost() {
    let (tmp, mut hub) = support::start(json!({}));
    let c = client();
    let body = fixture("dynatrace/full-open.json");
    assert_eq!(
        post(&c, &hub.url("/"), body.clone())
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    hub.kill9();
    std::fs::remove_file(hub.received().join("P-2411021-OPEN.json")).unwrap();

    let config: Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("config.json")).unwrap()).unwrap();
    let hub = support::Hub::start_in(tmp.path(), &config, &[]);
    assert_eq!(
        std::fs::read(hub.received().join("P-2411021-OPEN.json")).unwrap(),
        body
    );
    assert!(
        hub.stderr().contains("wrote back files"),
        "{}",
        hub.stderr()
    );
}

#[tokio::test]
async fn sigterm_stops_cleanly() {
    let (_tmp, mut hub) = support::start(json!({}));
    let c = client();
    let r = post(&c, &hub.url("/"), fixture("dynatrace/minimal-open.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(hub.terminate(), Some(0));
    assert!(hub.stderr().contains("stopped"), "{}", hub.stderr());
}

#[tokio::test]
async fn health_needs_no_credentials() {
    let (_tmp, hub) = support::start(json!({}));
    let r = client().get(hub.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json_value().await, json!({"status": "ok"}));
    let r = client().get(hub.url("/no-such-page")).send().await.unwrap();
    expect_error(r, 404, "not_found").await;
}

#[tokio::test]
async fn logs_one_line_per_notification_and_never_a_secret() {
    let token = "dt0c01.SECRET-TOKEN-MARKER";
    let (tmp, hub) = support::start(json!({
        "dynatrace": {"tenant": "https://abc12345.live.dynatrace.com", "api_token": token}
    }));
    let c = client();
    post(&c, &hub.url("/"), fixture("dynatrace/full-open.json"))
        .send()
        .await
        .unwrap();
    c.post(hub.url("/"))
        .basic_auth(USER, Some("a-wrong-password-marker"))
        .body("{}")
        .send()
        .await
        .unwrap();
    let file = std::fs::read_to_string(tmp.path().join("log/hub.log")).unwrap();
    let line = file
        .lines()
        .find(|l| l.contains("P-2411021"))
        .expect("a line for the notification");
    assert!(
        line.contains("source=dynatrace") && line.contains("outcome=\"stored\""),
        "{line}"
    );
    assert!(line.contains("state=\"OPEN\""), "{line}");
    assert!(file.contains("outcome=\"rejected\" status=401"), "{file}");
    for text in [file, hub.stderr()] {
        for secret in [token, PASSWORD, "a-wrong-password-marker"] {
            assert!(!text.contains(secret), "{secret} leaked:\n{text}");
        }
    }
}

/// With `HUB_LOG_FORMAT=json` every line of the file and of stderr is one JSON object, with the
/// same fields as the text lines; a hostile value stays inside its string, and no secret appears.
#[tokio::test]
async fn json_logs_are_one_object_per_line_with_the_same_fields() {
    let token = "dt0c01.SECRET-TOKEN-MARKER";
    let (tmp, hub) = support::start_env(
        json!({
            "log_format": "text",
            "dynatrace": {"tenant": "https://abc12345.live.dynatrace.com", "api_token": token}
        }),
        &[("HUB_LOG_FORMAT", "json")],
    );
    let c = client();
    post(&c, &hub.url("/"), fixture("dynatrace/full-open.json"))
        .send()
        .await
        .unwrap();
    let hostile = json!({"State": "OPEN\n{\"level\":\"ERROR\"}", "ProblemID": "P-9", "PID": "1"});
    post(&c, &hub.url("/"), hostile.to_string())
        .send()
        .await
        .unwrap();
    c.post(hub.url("/"))
        .basic_auth(USER, Some("a-wrong-password-marker"))
        .body("{}")
        .send()
        .await
        .unwrap();
    let file = std::fs::read_to_string(tmp.path().join("log/hub.log")).unwrap();
    let events: Vec<Value> = file
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for e in &events {
        assert!(e["timestamp"].is_string() && e["level"].is_string(), "{e}");
    }
    let stored = events
        .iter()
        .find(|e| e["problem_id"] == "P-2411021")
        .expect("an event for the notification");
    assert_eq!(stored["message"], "notification");
    assert_eq!(stored["source"], "dynatrace");
    assert_eq!(stored["state"], "OPEN");
    assert_eq!(stored["outcome"], "stored");
    assert_eq!(stored["file"], "P-2411021-OPEN.json");
    assert_eq!(stored["remote"], "127.0.0.1");
    let forged = events
        .iter()
        .find(|e| e["problem_id"] == "P-9")
        .expect("an event for the hostile one");
    assert_eq!(forged["state"], "OPEN\n{\"level\":\"ERROR\"}");
    assert!(events
        .iter()
        .any(|e| e["outcome"] == "rejected" && e["status"] == 401));
    for line in hub.stderr().lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    for text in [file, hub.stderr()] {
        for secret in [token, PASSWORD, "a-wrong-password-marker"] {
            assert!(!text.contains(secret), "{secret} leaked:\n{text}");
        }
    }
}

#[tokio::test]
async fn secrets_can_come_from_the_environment() {
    let (_tmp, hub) = support::start_env(
        json!({"webhook": {"password": "change-me"}}),
        &[("HUB_WEBHOOK_PASSWORD", "from-the-environment")],
    );
    let c = client();
    let body = fixture("dynatrace/minimal-open.json");
    let r = post(&c, &hub.url("/"), body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 401, "the file's password no longer works");
    let r = c
        .post(hub.url("/"))
        .basic_auth(USER, Some("from-the-environment"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!hub.stderr().contains("EXAMPLE password"));
}

#[tokio::test]
async fn the_example_password_is_called_out_at_start() {
    let (_tmp, hub) = support::start(json!({"webhook": {"password": "change-me"}}));
    assert!(
        hub.stderr().contains("EXAMPLE password"),
        "{}",
        hub.stderr()
    );
}
