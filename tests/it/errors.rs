//! Errors that help: each says its cause once, names what it is about, and is not followed by a
//! second, false one. Against the real binary, its config loader and real sockets.

use std::path::Path;

use serde_json::{json, Value};

use crate::support::{
    check_config, client, config_with, eventually, fixture, free_port, hub_command, post, runs,
    script, Hub,
};

fn hub(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = hub_command(dir).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write_config(dir: &Path, config: &Value) {
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

/// A PostgreSQL store nobody listens for: the error names host and port, and says the refusal
/// once; `check-config --connect` tries it and fails the same way.
#[test]
fn a_store_that_cannot_be_reached_is_named_and_its_cause_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_port();
    write_config(
        d,
        &config_with(json!({"store": {"url": format!("postgres://hub@127.0.0.1:{port}/hub")}})),
    );
    let (code, _, err) = hub(d, &["silence", "list"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("PostgreSQL at 127.0.0.1:{port}")),
        "{err}"
    );
    assert_eq!(err.matches("os error 111").count(), 1, "{err}");

    let (code, out, err) = hub(d, &["check-config", "--connect"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains(": OK: "), "the config itself is fine: {out}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert_eq!(err.matches("os error 111").count(), 1, "{err}");

    // A SQLite file that cannot be opened (a folder in its place): its cause once too.
    std::fs::create_dir(d.join("folder.db")).unwrap();
    write_config(
        d,
        &config_with(json!({"store": {"url": "sqlite://folder.db"}})),
    );
    let (code, _, err) = hub(d, &["silence", "list"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        err.matches("unable to open database file").count(),
        1,
        "{err}"
    );

    // A store that opens says so; one not made yet is not made by checking.
    write_config(d, &config_with(json!({})));
    let (code, out, _) = hub(d, &["check-config", "--connect"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("does not exist yet"), "{out}");
    assert!(!d.join("hub.db").exists());
    let (code, _, err) = hub(d, &["silence", "list"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = hub(d, &["check-config", "--connect"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("store: OK: opened SQLite file hub.db"),
        "{out}"
    );
}

#[test]
fn config_errors_are_said_once_and_in_an_operators_words() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, err) = check_config(
        d,
        &config_with(json!({
            "actions": {"page": {"type": "pager-thing"}},
            "routes": [{"actions": ["page"]}],
            "dispatch": {"on_failure": ["page"]},
            "maintenance": [
                {"name": "short", "match": {"tag": "env:prod"}, "cron": "0 2 * * *",
                 "duration": "10s"},
                {"name": "sunday", "match": {"tag": "env:prod"}, "cron": "0 2 * * SUNDAY",
                 "duration": "1h"}
            ],
            "heartbeats": {"backup": {"every": "0s", "actions": ["page"]}}
        })),
    );
    assert_eq!(code, Some(1));
    // The action's own error, not also "no action is named" from a route, a fallback or a
    // heartbeat that names it.
    assert!(err.contains("actions.page.type"), "{err}");
    assert!(!err.contains("no action is named"), "{err}");
    // Out of range, and not also missing.
    assert!(
        err.contains("maintenance[0].duration: must be from 1m"),
        "{err}"
    );
    assert!(
        err.contains("heartbeats.backup.every: must be from 1s"),
        "{err}"
    );
    assert!(!err.contains("missing"), "{err}");
    // croner's refusal as an operator would put it.
    assert!(err.contains("SUNDAY: use SUN or 0"), "{err}");
    assert!(!err.contains("Component error"), "{err}");
}

#[test]
fn placeholder_secrets_from_the_readme_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = check_config(
        dir.path(),
        &config_with(json!({
            "webhook": {"password": "…"},
            "actions": {"chat": {"type": "slack", "token": "xoxb-…", "channel": "#ops"}}
        })),
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains("webhook.password: a placeholder copied from the README"),
        "{err}"
    );
    assert!(err.contains("actions.chat.token: a placeholder"), "{err}");
    assert!(!err.contains("xoxb"), "the value is not repeated: {err}");
}

/// `hub replay` exits 1 when a run it ran failed; it, and the other commands that serve nothing,
/// run without the webhook's password; CLI durations read as config durations do.
#[tokio::test]
async fn store_commands_need_no_password_and_replay_says_when_a_run_failed() {
    sqlite_pass_only!(
        "replay runs the runs itself, with no hub running, and hub backup copies the store, on \
         SQLite only"
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    script(d, "fail.sh", "echo refused >&2\nexit 1");
    let mut config = config_with(json!({"actions": {"page": {"type": "script",
                                                             "command": "./fail.sh"}}}));
    let mut hub_run = Hub::start_in(d, &config, &[]);
    let r = post(
        &client(),
        &hub_run.url("/"),
        fixture("dynatrace/minimal-open.json"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    eventually("the run to fail", async || {
        runs(d).await.first().is_some_and(|r| r.status == "failed")
    })
    .await;
    hub_run.terminate();

    config["webhook"]
        .as_object_mut()
        .unwrap()
        .remove("password");
    write_config(d, &config);
    let problem = runs(d).await;
    assert_eq!(problem.len(), 1);
    let (code, out, err) = hub(d, &["replay", "85"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("1 replayed run(s) failed"), "{err}");
    assert!(err.contains("failed (attempt 2, manual)"), "{err}");

    for args in [
        vec!["silence", "list"],
        vec!["export", "--dir", "out", "--since", "600"],
        vec!["export", "--dir", "out2", "--since", " 1h 30m "],
        vec!["prune", "--dry-run", "--max-age", "90d"],
        vec!["backup", "copy.db"],
    ] {
        let (code, out, err) = hub(d, &args);
        assert_eq!(code, Some(0), "{args:?}: {out}{err}");
    }
    // A bare number of seconds, as in the config.
    let (code, _, err) = hub(
        d,
        &[
            "silence",
            "add",
            "--match",
            "tag=env:prod",
            "--duration",
            "3600",
            "--comment",
            "window",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    // Serving still needs it.
    let (code, err) = check_config(d, &config);
    assert_eq!(code, Some(1));
    assert!(err.contains("webhook.password: missing"), "{err}");
}
