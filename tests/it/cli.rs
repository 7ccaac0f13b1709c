//! `hub check-config` and `hub run` as an operator types them.

use std::process::Output;

use serde_json::json;

use crate::support::{self, config_with, hub_command};

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_shipped_config_is_valid() {
    let repo = env!("CARGO_MANIFEST_DIR");
    let out = hub_command(std::path::Path::new(repo))
        .arg("check-config")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first = stdout.lines().next().unwrap();
    assert!(
        first.contains("OK") && first.contains("listen 127.0.0.1:5000"),
        "{stdout}"
    );
    assert!(first.contains("store sqlite://hub.db"), "{stdout}");
    assert!(stdout.contains("example password"), "{stdout}");
}

#[test]
fn a_config_written_for_the_python_sample_loads_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        support::fixture("sample-config.json"),
    )
    .unwrap();
    // The sample's users keep the script beside config.json and name it bare.
    std::fs::write(dir.path().join("legacy_script.sh"), "#!/bin/sh\n").unwrap();
    let out = hub_command(dir.path())
        .arg("check-config")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("listen 0.0.0.0:5000"), "{stdout}");
    assert!(
        stdout.contains("(API v2, token set)")
            && stdout.contains("incident_notification (script)")
            && stdout.contains("sms_notification (sms)"),
        "{stdout}"
    );
    // Secrets are never printed.
    assert!(!stdout.contains("XXXXXXXXX8067df"), "{stdout}");
}

#[test]
fn every_problem_is_reported_at_once_with_its_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let bad = json!({
        "dynatrace": {"tenant": "abc12345.live.dynatrace.com", "api_token": 42},
        "webhook": {"username": "", "password": "top-secret-marker", "interface": "0.0.0.o",
                    "port": "5000", "max_body_bytes": 10, "colour": "blue"},
        "dir_received": ["x"],
        "incident_notification": {"active": "yes", "exec_unix": ""},
        "sms_notification": {"active": true, "to_number": [1]},
        "extra": true
    });
    std::fs::write(dir.path().join("config.json"), bad.to_string()).unwrap();
    let out = hub_command(dir.path())
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for path in [
        "dynatrace.tenant:",
        "dynatrace.api_token: expected a string, found a number",
        "webhook.username: missing",
        "webhook.interface:",
        "webhook.port: expected a whole number, found a string",
        "webhook.max_body_bytes: expected a whole number from 1024",
        "webhook.colour: unknown key",
        "dir_received: expected a string, found an array",
        "incident_notification.active: expected true or false",
        "sms_notification.to_number[0]: expected a phone number string",
        "sms_notification.twilio_account: missing",
        "sms_notification.twilio_token: missing",
        "extra: unknown key",
    ] {
        assert!(stderr.contains(path), "missing {path:?} in:\n{stderr}");
    }
    assert!(!stderr.contains("top-secret-marker"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn config_path_comes_from_the_flag_after_the_command_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("etc")).unwrap();
    std::fs::write(
        dir.path().join("etc/hub.json"),
        config_with(json!({})).to_string(),
    )
    .unwrap();

    let after = hub_command(dir.path())
        .args(["check-config", "--config", "etc/hub.json"])
        .output()
        .unwrap();
    assert!(after.status.success(), "{}", text(&after));
    let before = hub_command(dir.path())
        .args(["-c", "etc/hub.json", "check-config"])
        .output()
        .unwrap();
    assert!(before.status.success(), "{}", text(&before));
    let env = hub_command(dir.path())
        .arg("check-config")
        .env("HUB_CONFIG", "etc/hub.json")
        .output()
        .unwrap();
    assert!(env.status.success(), "{}", text(&env));

    let missing = hub_command(dir.path())
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing).contains("cannot read config file config.json"),
        "{}",
        text(&missing)
    );
}

#[test]
fn a_config_that_is_not_json_says_where() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), "{\n  \"webhook\": {,\n}").unwrap();
    let out = hub_command(dir.path())
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is not valid JSON") && stderr.contains("line 2"),
        "{stderr}"
    );
}

#[test]
fn run_refuses_a_bad_config_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        json!({"webhook": {"port": 99999}}).to_string(),
    )
    .unwrap();
    let out = hub_command(dir.path()).arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("webhook.port"), "{}", text(&out));
    assert_eq!(support::list_files(dir.path()), ["config.json"]);
}

#[test]
fn a_busy_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(json!({"webhook": {"port": port}}));
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let out = hub_command(dir.path()).arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let all = text(&out);
    assert!(
        all.contains(&format!("cannot serve on 127.0.0.1:{port}")),
        "{all}"
    );
    assert!(!all.contains("panicked"), "{all}");
}

#[test]
fn help_shows_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let out = hub_command(dir.path())
        .arg("--help")
        .env("HUB_WEBHOOK_PASSWORD", "env-secret-marker")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = text(&out);
    assert!(
        help.contains("check-config") && help.contains("--config"),
        "{help}"
    );
    assert!(!help.contains("env-secret-marker"));
}
