//! Quiet when it should be, loud when it must: silences, maintenance windows, flap wait,
//! heartbeats and failure alarms, end to end against the real binary. A script that appends a line
//! per run is the witness.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{
    check_config, client, config_with, eventually, expect_error, fixture, get_json, get_text,
    hub_command, lines, merge, post, runs, script, Hub, PASSWORD, USER,
};

const WITNESS: &str = r#"printf '%s %s %s %s\n' "$HUB_SOURCE" "$HUB_PROBLEM_ID" "$HUB_STATE" "$HUB_ENTITY_NAME" >> calls.log"#;

fn start(dir: &Path, patch: Value) -> Hub {
    script(dir, "witness.sh", WITNESS);
    let mut base = json!({"actions": {"page": {"type": "script", "command": "./witness.sh"}}});
    merge(&mut base, patch);
    let config = config_with(base);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    Hub::start_in(dir, &config, &[])
}

fn calls(dir: &Path) -> Vec<String> {
    lines(&dir.join("calls.log"))
}

fn minimal(id: &str, state: &str) -> Vec<u8> {
    json!({"State": state, "ProblemID": id, "PID": format!("{id}V2"), "ProblemTitle": "Disk full"})
        .to_string()
        .into_bytes()
}

async fn deliver(hub: &Hub, body: Vec<u8>) {
    let r = post(&client(), &hub.url("/"), body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

fn hub_cli(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = hub_command(dir).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_silence_runs_nothing_and_its_expiry_runs_what_it_held() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(dir.path(), json!({}));
    let d = dir.path();

    // Bad input creates nothing.
    for (args, says) in [
        (
            vec!["--match", "colour=red", "--duration", "1h"],
            "unknown matcher key",
        ),
        (
            vec!["--match", "tag=env:prod", "--duration", "0s"],
            "more than zero",
        ),
        (
            vec!["--match", "tag=env:prod", "--until", "2001-01-01T00:00:00Z"],
            "in the future",
        ),
        (
            vec!["--match", "tag=env:prod", "--duration", "$(touch x)"],
            "expected such as",
        ),
    ] {
        let mut all = vec!["silence", "add", "--comment", "patching"];
        all.extend(args);
        let (code, _, err) = hub_cli(d, &all);
        assert_eq!(code, Some(1), "{all:?}");
        assert!(err.contains(says), "{says:?} not in {err}");
    }
    assert!(!d.join("x").exists());
    let api = |p: &str| client().post(hub.url(p)).basic_auth(USER, Some(PASSWORD));
    let r = api("/api/silences")
        .header("content-type", "application/json")
        .body(r#"{"matchers": [], "duration": "1h", "comment": "x"}"#)
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "invalid_silence").await;
    let r = api("/api/silences")
        .header("content-type", "application/json")
        .body("<script>garbage")
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "invalid_silence").await;
    let r = client()
        .post(hub.url("/api/silences"))
        .header("content-type", "application/json")
        .body(r#"{"matchers": ["tag=env:prod"], "duration": "1h", "comment": "x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let (_, listed) = get_json(&hub, "/api/silences").await;
    assert_eq!(listed["silences"], json!([]), "nothing was created");

    let (code, id, err) = hub_cli(
        d,
        &[
            "silence",
            "add",
            "--match",
            "tag=env:prod",
            "--match",
            "entity=checkout-*",
            "--duration",
            "1h",
            "--comment",
            "patching",
            "--author",
            "ops",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(id.starts_with("sil_"), "{id}");

    deliver(&hub, fixture("dynatrace/full-open.json")).await;
    eventually("two silenced runs", async || {
        let r = runs(d).await;
        r.len() == 2 && r.iter().all(|r| r.status == "silenced")
    })
    .await;
    let r = runs(d).await;
    assert!(r[0]
        .last_error
        .as_deref()
        .unwrap()
        .starts_with(&format!("silenced by {id} (ops: patching)")));
    assert!(calls(d).is_empty(), "a silenced run runs nothing");
    let (_, listed) = get_json(&hub, "/api/silences").await;
    assert_eq!(listed["silences"][0]["state"], "active");
    assert_eq!(
        listed["silences"][0]["matchers"],
        json!(["tag=env:prod", "entity=checkout-*"])
    );
    let metrics = get_text(&hub, "/metrics").await;
    assert!(metrics.contains("hub_silences_active 1"), "{metrics}");
    assert!(
        metrics.contains(r#"hub_action_runs{action="page",outcome="silenced"} 2"#),
        "{metrics}"
    );

    // Expired while the problem is still open: what it held runs now.
    let (code, out, err) = hub_cli(d, &["silence", "expire", &id]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("expired"));
    eventually("the held runs ran", async || calls(d).len() == 2).await;
    let (code, _, err) = hub_cli(d, &["silence", "expire", &id]);
    assert_eq!(code, Some(1));
    assert!(err.contains("ended already"), "{err}");
    let r = client()
        .delete(hub.url("/api/silences/sil_nope"))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    expect_error(r, 404, "not_found").await;
    let (code, table, _) = hub_cli(d, &["silence", "list"]);
    assert_eq!(code, Some(0));
    assert!(table.contains(&id) && table.contains("expired"), "{table}");
}

#[tokio::test]
async fn a_silence_added_without_renotify_lets_what_it_held_go() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(dir.path(), json!({}));
    let d = dir.path();
    let r = client()
        .post(hub.url("/api/silences"))
        .basic_auth(USER, Some(PASSWORD))
        .header("content-type", "application/json")
        .body(r#"{"matchers": ["problem=P-7"], "duration": "1h", "comment": "known", "renotify": false}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let id = serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    deliver(&hub, minimal("7", "OPEN")).await;
    eventually("silenced", async || {
        runs(d).await.iter().any(|r| r.status == "silenced")
    })
    .await;
    let r = client()
        .delete(hub.url(&format!("/api/silences/{id}")))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    eventually("the silence's end handled", async || {
        crate::support::db(d)
            .await
            .count("silences WHERE settled_at_ms IS NOT NULL")
            .await
            == 1
    })
    .await;
    assert!(calls(d).is_empty(), "nothing renotified");
    assert_eq!(runs(d).await[0].status, "silenced");
}

#[tokio::test]
async fn a_maintenance_window_that_covers_now_silences_and_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hub = start(
        d,
        json!({"maintenance": [{"name": "always", "match": {"tag": "env:*"},
                                "cron": "* * * * *", "duration": "1h",
                                "timezone": "Europe/Berlin"}]}),
    );
    deliver(&hub, fixture("dynatrace/full-open.json")).await;
    deliver(&hub, minimal("9", "OPEN")).await;
    eventually("routed", async || runs(d).await.len() == 3).await;
    eventually("the untagged problem ran", async || calls(d).len() == 1).await;
    let r = runs(d).await;
    let silenced: Vec<_> = r.iter().filter(|r| r.status == "silenced").collect();
    assert_eq!(silenced.len(), 2, "{r:?}");
    assert_eq!(
        silenced[0].last_error.as_deref(),
        Some("silenced by maintenance window always")
    );
    let (code, out, _) = hub_cli(d, &["silence", "list", "--json"]);
    assert_eq!(code, Some(0));
    let listed: Value = serde_json::from_str(&out).unwrap();
    let w = &listed["maintenance"][0];
    assert_eq!(
        (w["name"].as_str(), w["timezone"].as_str()),
        (Some("always"), Some("Europe/Berlin"))
    );
    assert!(
        w["active_until"].is_string() && w["next_start"].is_string(),
        "{w}"
    );
}

#[tokio::test]
async fn a_flap_inside_the_wait_runs_nothing_and_one_outside_it_runs_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The route pages on OPEN only: its resolve chooses nothing, yet still ends the wait.
    let mut hub = start(
        d,
        json!({"routes": [{"actions": ["page"], "states": ["OPEN"], "wait": "3s"}]}),
    );
    deliver(&hub, minimal("1", "OPEN")).await;
    deliver(&hub, minimal("1", "RESOLVED")).await;
    eventually("the open's run suppressed", async || {
        let r = runs(d).await;
        r.len() == 1 && r[0].status == "suppressed"
    })
    .await;
    assert_eq!(
        runs(d).await[0].last_error.as_deref(),
        Some("resolved within its flap wait")
    );

    // Opened again: a new opening, which waits and then runs.
    let mut reopened: Value = serde_json::from_slice(&minimal("1", "OPEN")).unwrap();
    reopened["ProblemTitle"] = json!("Disk full again");
    deliver(&hub, serde_json::to_vec(&reopened).unwrap()).await;
    deliver(&hub, minimal("2", "OPEN")).await;
    eventually("both held", async || runs(d).await.len() == 3).await;
    // Held runs are in the store: a restart keeps them.
    hub.terminate();
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap();
    let hub = Hub::start_in(d, &config, &[]);
    eventually("the open problems ran after their wait", async || {
        let mut c = calls(d);
        c.sort();
        c == ["dynatrace 1 OPEN ", "dynatrace 2 OPEN "]
    })
    .await;
    crate::support::all_routed(d).await;
    eventually("every run final", async || {
        runs(d)
            .await
            .iter()
            .all(|r| r.status != "pending" && r.status != "running")
    })
    .await;
    assert_eq!(calls(d).len(), 2, "the flap ran nothing");
    drop(hub);
}

#[tokio::test]
async fn a_missed_heartbeat_opens_a_problem_and_a_beat_resolves_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hub = start(
        d,
        json!({"heartbeats": {"nightly": {"every": "2s", "grace": "1s", "actions": ["page"]}}}),
    );
    let beat = |name: &str, auth: bool| {
        let r = client().post(hub.url(&format!("/heartbeats/{name}")));
        if auth {
            r.basic_auth(USER, Some(PASSWORD))
        } else {
            r
        }
    };
    assert_eq!(
        beat("nightly", false)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    expect_error(
        beat("nope", true).send().await.unwrap(),
        404,
        "unknown_heartbeat",
    )
    .await;
    expect_error(
        beat("..%2F..%2Fetc", true).send().await.unwrap(),
        404,
        "unknown_heartbeat",
    )
    .await;
    eventually("the silent heartbeat opened", async || {
        calls(d) == ["hub heartbeat-nightly OPEN "]
    })
    .await;
    let (_, problem) = get_json(&hub, "/api/problems/heartbeat-nightly?source=hub").await;
    assert_eq!(problem["state"], "OPEN");
    assert!(problem["title"]
        .as_str()
        .unwrap()
        .starts_with("heartbeat nightly is silent"));
    let page = get_text(&hub, "/").await;
    assert!(
        page.contains("<td>nightly</td>") && page.contains(">silent</a>"),
        "{page}"
    );

    assert_eq!(
        beat("nightly", true)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    eventually("a beat resolved it", async || calls(d).len() == 2).await;
    assert_eq!(calls(d)[1], "hub heartbeat-nightly RESOLVED ");
    let metrics = get_text(&hub, "/metrics").await;
    assert!(
        metrics.contains(r#"hub_heartbeat_last_seconds{name="nightly"}"#),
        "{metrics}"
    );
    // Silent again: a new episode opens again.
    eventually("silent a second time", async || calls(d).len() == 3).await;
    assert_eq!(calls(d)[2], "hub heartbeat-nightly OPEN ");
}

#[tokio::test]
async fn a_permanent_failure_alarms_once_and_a_success_resolves_it() {
    let receiver = MockServer::start().await;
    Mock::given(path("/hook"))
        .respond_with(ResponseTemplate::new(400))
        .up_to_n_times(2)
        .mount(&receiver)
        .await;
    Mock::given(path("/hook"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hub = start(
        d,
        json!({
            "actions": {"hook": {"type": "webhook", "url": format!("{}/hook", receiver.uri()),
                                 "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                                 "on_failure": ["page"]}},
            "routes": [{"actions": ["hook"], "sources": ["dynatrace"]}]
        }),
    );
    deliver(&hub, minimal("1", "OPEN")).await;
    eventually("the alarm ran", async || {
        calls(d) == ["hub action-failed-hook OPEN "]
    })
    .await;
    deliver(&hub, minimal("2", "OPEN")).await;
    eventually("the second failure", async || {
        runs(d)
            .await
            .iter()
            .filter(|r| r.action == "hook" && r.status == "failed")
            .count()
            == 2
    })
    .await;
    deliver(&hub, minimal("3", "OPEN")).await;
    eventually("the success resolved the alarm", async || {
        calls(d).len() == 2
    })
    .await;
    assert_eq!(
        calls(d),
        [
            "hub action-failed-hook OPEN ",
            "hub action-failed-hook RESOLVED "
        ],
        "one alarm for two failures"
    );
    let (_, alarm) = get_json(&hub, "/api/problems/action-failed-hook?source=hub").await;
    assert_eq!(alarm["state"], "RESOLVED");
    assert!(
        alarm["title"]
            .as_str()
            .unwrap()
            .contains("receiver answered 400"),
        "{alarm}"
    );
}

#[test]
fn noise_config_mistakes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(json!({
        "actions": {
            "a": {"type": "script", "command": "/bin/true", "on_failure": ["b"]},
            "b": {"type": "script", "command": "/bin/true", "on_failure": ["a"]},
            "c": {"type": "script", "command": "/bin/true", "on_failure": ["ghost"]}
        },
        "routes": [{"actions": ["a"], "wait": "0s"}],
        "maintenance": [
            {"name": "bad-cron", "match": {"tag": "env:prod"}, "cron": "every sunday", "duration": "2h"},
            {"name": "bad-zone", "match": {"colour": "red"}, "cron": "0 2 * * SUN", "duration": "2h",
             "timezone": "Mars/Olympus"}
        ],
        "heartbeats": {"nightly": {"every": "1h", "actions": ["ghost"]}, "../x": {"actions": []}}
    }));
    let (code, err) = check_config(dir.path(), &config);
    assert_eq!(code, Some(1));
    for expected in [
        "actions.a.on_failure: a would raise an alarm about its own alarm",
        "actions.c.on_failure: no action is named \"ghost\"",
        "routes[0].wait",
        "maintenance[0].cron: \"every sunday\" is not a cron pattern",
        "maintenance[1].match.colour: unknown matcher key",
        "maintenance[1].timezone: \"Mars/Olympus\" is not an IANA time zone",
        "heartbeats.nightly.actions: no action is named \"ghost\"",
        "heartbeats.../x: heartbeat names may use only",
        "heartbeats.../x.every: missing",
    ] {
        assert!(err.contains(expected), "{expected:?} not in:\n{err}");
    }
}

#[tokio::test]
async fn the_status_page_form_adds_and_expires_silences_with_its_token_only() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(dir.path(), json!({}));
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = no_redirect
        .get(hub.url("/"))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    let form = |token: &str| {
        no_redirect
            .post(hub.url("/silences"))
            .basic_auth(USER, Some(PASSWORD))
            .form(&[
                ("csrf", token),
                ("matchers", "source=alertmanager\ntag=alertname:Watch*"),
                ("duration", "30m"),
                ("comment", "<script>alert(1)</script>"),
                ("author", "ops"),
            ])
    };
    assert_eq!(form("forged").send().await.unwrap().status().as_u16(), 403);
    let (_, listed) = get_json(&hub, "/api/silences").await;
    assert_eq!(listed["silences"], json!([]));
    let r = form(&csrf).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let (_, listed) = get_json(&hub, "/api/silences").await;
    let s = &listed["silences"][0];
    assert_eq!(
        s["matchers"],
        json!(["source=alertmanager", "tag=alertname:Watch*"])
    );
    let page = get_text(&hub, "/").await;
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt;")
            && !page.contains("<script>alert"),
        "the comment is text on the page"
    );
    let id = s["id"].as_str().unwrap();
    let r = no_redirect
        .post(hub.url(&format!("/silences/{id}/expire")))
        .basic_auth(USER, Some(PASSWORD))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let (_, listed) = get_json(&hub, "/api/silences").await;
    assert_eq!(listed["silences"][0]["state"], "expired");
}

#[tokio::test]
async fn notifications_a_heartbeat_matches_are_beats_redeliveries_included() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hub = start(
        d,
        json!({"heartbeats": {"watchdog": {"every": "2s", "grace": "1s",
                                           "match": {"title": "Watchdog*"}, "actions": ["page"]}},
               "routes": [{"actions": ["page"], "sources": ["hub"]}]}),
    );
    let watchdog =
        json!({"State": "OPEN", "ProblemID": "1", "PID": "1V2", "ProblemTitle": "Watchdog"})
            .to_string()
            .into_bytes();
    // The same body again and again, as a sender repeats an always-firing alert: stored once,
    // answered duplicate, and a beat each time.
    for _ in 0..5 {
        deliver(&hub, watchdog.clone()).await;
        // The beats' pace is what is tested: one a second, for longer than every + grace.
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    assert!(calls(d).is_empty(), "fed, so never silent: {:?}", calls(d));
    eventually("silent once the beats stop", async || {
        calls(d) == ["hub heartbeat-watchdog OPEN "]
    })
    .await;
}
