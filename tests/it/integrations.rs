//! Chat, paging and threads through the real binary: local servers stand in for Slack and Teams and
//! check each request as their documentation gives it; PagerDuty forwarding goes to a second hub,
//! which receives PagerDuty's Events API v2 itself.

use std::path::Path;

use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::{
    self, client, config_with, eventually, fixture, get_json, get_text, post, runs, script, Hub,
};

const HOSTILE: &str = "web's $(touch INJECTED) <b>01</b>";
const ROUTING_KEY: &str = "0123456789abcdef0123456789abcdef";

/// The full Dynatrace fixture (two entities, one with a hostile name) in `state`.
fn problem_in(state: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture("dynatrace/full-open.json")).unwrap();
    v["State"] = json!(state);
    serde_json::to_vec(&v).unwrap()
}

fn minimal(id: u32) -> Vec<u8> {
    json!({"State": "OPEN", "ProblemID": id.to_string(), "PID": format!("{id}V2"),
           "ProblemTitle": "Disk full"})
    .to_string()
    .into_bytes()
}

async fn deliver(hub: &Hub, body: Vec<u8>) {
    let r = post(&client(), &hub.url("/"), body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

/// Waits until the hub has `n` runs, all with `status`.
async fn runs_reach(dir: &Path, n: usize, status: &str) {
    eventually(&format!("{n} run(s) {status}"), async || {
        let r = runs(dir).await;
        r.len() == n && r.iter().all(|r| r.status == status)
    })
    .await;
}

/// The hub's runs once there are `n` and none is pending or running.
async fn final_runs(dir: &Path, n: usize) -> Vec<support::Run> {
    eventually(&format!("{n} final runs"), async || {
        let r = runs(dir).await;
        r.len() == n
            && r.iter()
                .all(|r| r.status != "pending" && r.status != "running")
    })
    .await;
    runs(dir).await
}

fn body_of(r: &Request) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

fn start(dir: &Path, actions: Value) -> Hub {
    Hub::start_in(
        dir,
        &config_with(json!({"actions": actions, "dispatch": {"first_retry_secs": 1}})),
        &[],
    )
}

#[tokio::test]
async fn slack_keeps_one_message_per_problem_updated_and_replied_in_its_thread() {
    let slack = MockServer::start().await;
    let posted = json!({"ok": true, "channel": "C0123", "ts": "1700000000.000100"});
    for m in ["chat.postMessage", "chat.update"] {
        Mock::given(method("POST"))
            .and(path(format!("/api/{m}")))
            .and(header("authorization", "Bearer xoxb-test-token"))
            .and(header("content-type", "application/json"))
            .respond_with(ResponseTemplate::new(200).set_body_json(&posted))
            .mount(&slack)
            .await;
    }
    let link = "https://example.slack.com/archives/C0123/p1700000000000100";
    Mock::given(method("GET"))
        .and(path("/api/chat.getPermalink"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"ok": true, "permalink": link})),
        )
        .mount(&slack)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let hub = start(
        dir.path(),
        json!({"chat": {"type": "slack", "token": "xoxb-test-token", "channel": "#ops",
                        "api_url": format!("{}/api", slack.uri())}}),
    );
    deliver(&hub, problem_in("OPEN")).await;
    runs_reach(dir.path(), 1, "succeeded").await;
    deliver(&hub, problem_in("RESOLVED")).await;
    runs_reach(dir.path(), 2, "succeeded").await;

    let calls: Vec<(String, Value)> = slack
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| (r.url.path().to_string(), body_of(r)))
        .collect();
    let paths: Vec<&str> = calls.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/api/chat.postMessage",
            "/api/chat.update",
            "/api/chat.postMessage"
        ]
    );
    let (open, update, reply) = (&calls[0].1, &calls[1].1, &calls[2].1);
    assert_eq!(open["channel"], "#ops");
    assert_eq!(open["text"], "[OPEN] Response time degradation (P-2411021)");
    assert_eq!(open["blocks"][0]["type"], "header");
    let shown = open["blocks"].to_string();
    assert!(
        shown.contains("web's $(touch INJECTED) &lt;b&gt;01&lt;/b&gt;") && !shown.contains("<b>"),
        "entity names are escaped: {shown}"
    );
    assert!(shown.contains("\"url\":\"https://abc12345.live.dynatrace.com/"));
    // Later states update the first message and reply under it.
    assert_eq!(
        (update["channel"].as_str(), update["ts"].as_str()),
        (Some("C0123"), Some("1700000000.000100"))
    );
    assert!(update["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap()
        .starts_with("RESOLVED"));
    assert_eq!(reply["thread_ts"], "1700000000.000100");
    assert_eq!(reply["text"], "P-2411021 is now RESOLVED");

    let (_, problem) = get_json(&hub, "/api/problems/P-2411021").await;
    assert_eq!(problem["threads"][0]["ref"], "C0123/1700000000.000100");
    assert_eq!(problem["threads"][0]["url"], link);
    // problems_sent/ shows each run's thread too (written a moment after each outcome).
    let sent = dir.path().join("problems_sent").join("P-2411021.json");
    eventually("the sent file with both runs' thread", async || {
        std::fs::read(&sent).ok().is_some_and(|b| {
            let v: Value = serde_json::from_slice(&b).unwrap_or_default();
            v["runs"].as_array().is_some_and(|r| {
                r.len() == 2
                    && r.iter()
                        .all(|r| r["thread"]["ref"] == "C0123/1700000000.000100")
            })
        })
    })
    .await;
    // Tera escapes `/` too (as &#x2F;), which a browser reads back as it was.
    let page = get_text(&hub, "/problems/P-2411021?source=dynatrace")
        .await
        .replace("&#x2F;", "/");
    assert!(
        page.contains(&format!(
            "<a href=\"{link}\" rel=\"noopener noreferrer\">C0123/1700000000.000100</a>"
        )),
        "{page}"
    );
    assert!(!dir.path().join("INJECTED").exists());
}

#[tokio::test]
async fn a_resolve_right_after_the_open_continues_its_thread_and_starts_no_second_one() {
    let slack = MockServer::start().await;
    let posted = json!({"ok": true, "channel": "C0123", "ts": "1700000000.000100"});
    for m in ["chat.postMessage", "chat.update"] {
        Mock::given(path(format!("/api/{m}")))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(&posted)
                    .set_delay(std::time::Duration::from_millis(300)),
            )
            .mount(&slack)
            .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let hub = start(
        dir.path(),
        json!({"chat": {"type": "slack", "token": "xoxb-t", "channel": "#ops",
                        "api_url": format!("{}/api", slack.uri())}}),
    );
    deliver(&hub, problem_in("OPEN")).await;
    deliver(&hub, problem_in("RESOLVED")).await;
    runs_reach(dir.path(), 2, "succeeded").await;
    let posts: Vec<Value> = slack
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/api/chat.postMessage")
        .map(body_of)
        .collect();
    let top_level = posts
        .iter()
        .filter(|b| b.get("thread_ts").is_none())
        .count();
    assert_eq!(top_level, 1, "one message per problem: {posts:?}");
}

#[tokio::test]
async fn slack_errors_are_sorted_by_slack_s_own_codes() {
    let slack = MockServer::start().await;
    Mock::given(path("/revoked/chat.postMessage"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"ok": false, "error": "invalid_auth"})),
        )
        .mount(&slack)
        .await;
    Mock::given(path("/busy/chat.postMessage"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(json!({"ok": false, "error": "ratelimited"})),
        )
        .up_to_n_times(1)
        .mount(&slack)
        .await;
    Mock::given(path("/busy/chat.postMessage"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": true, "channel": "C1", "ts": "1.2"})),
        )
        .mount(&slack)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let action = |base: &str| {
        json!({"type": "slack", "token": "xoxb-t", "channel": "C1",
               "api_url": format!("{}/{base}", slack.uri())})
    };
    let hub = start(
        dir.path(),
        json!({"revoked": action("revoked"), "busy": action("busy")}),
    );
    deliver(&hub, minimal(7)).await;
    let r = final_runs(dir.path(), 2).await;
    let revoked = r.iter().find(|r| r.action == "revoked").unwrap();
    assert_eq!(
        (revoked.status.as_str(), revoked.attempts),
        ("failed", 1),
        "{revoked:?}"
    );
    assert_eq!(
        revoked.last_error.as_deref(),
        Some("Slack chat.postMessage: invalid_auth")
    );
    let busy = r.iter().find(|r| r.action == "busy").unwrap();
    assert_eq!(
        (busy.status.as_str(), busy.attempts),
        ("succeeded", 2),
        "{busy:?}"
    );
    drop(hub);
}

#[tokio::test]
async fn teams_gets_an_adaptive_card_per_state_and_the_resolve_card_names_the_first() {
    let teams = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/webhookb2/abc"))
        .and(header("content-type", "application/json"))
        .respond_with(ResponseTemplate::new(200).set_body_string("1"))
        .mount(&teams)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let hub = start(
        dir.path(),
        json!({"channel": {"type": "teams", "webhook_url": format!("{}/webhookb2/abc", teams.uri())}}),
    );
    deliver(&hub, problem_in("OPEN")).await;
    runs_reach(dir.path(), 1, "succeeded").await;
    deliver(&hub, problem_in("RESOLVED")).await;
    runs_reach(dir.path(), 2, "succeeded").await;
    let cards: Vec<Value> = teams
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(body_of)
        .collect();
    assert_eq!(cards.len(), 2);
    for card in &cards {
        assert_eq!(card["type"], "message");
        let a = &card["attachments"][0];
        assert_eq!(a["contentType"], "application/vnd.microsoft.card.adaptive");
        assert_eq!(a["content"]["type"], "AdaptiveCard");
        assert_eq!(a["content"]["version"], "1.4");
        assert_eq!(a["content"]["actions"][0]["type"], "Action.OpenUrl");
        assert!(
            !card.to_string().contains("<b>"),
            "markup is escaped: {card}"
        );
    }
    let open = cards[0].to_string();
    let resolve = cards[1].to_string();
    assert!(open.contains("OPEN: Response time degradation") && !open.contains("Follows"));
    let (_, problem) = get_json(&hub, "/api/problems/P-2411021").await;
    let first = problem["threads"][0]["ref"].as_str().unwrap().to_string();
    assert!(first.starts_with("run_"), "{first}");
    assert!(
        resolve.contains("RESOLVED: Response time degradation") && resolve.contains(&first),
        "{resolve}"
    );
}

#[tokio::test]
async fn pagerduty_forwarding_opens_and_resolves_one_incident_on_a_second_hub() {
    let dir_b = tempfile::tempdir().unwrap();
    let receiver = Hub::start_in(
        dir_b.path(),
        &config_with(json!({"sources": {"pagerduty": {"routing_keys": [ROUTING_KEY]}}})),
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let hub = start(
        dir.path(),
        json!({"page": {"type": "pagerduty", "routing_key": ROUTING_KEY,
                        "api_url": receiver.base_url}}),
    );
    deliver(&hub, problem_in("OPEN")).await;
    runs_reach(dir.path(), 1, "succeeded").await;
    deliver(&hub, problem_in("RESOLVED")).await;
    runs_reach(dir.path(), 2, "succeeded").await;

    let key = "dynatrace/P-2411021";
    let (status, incident) = get_json(
        &receiver,
        &format!("/api/problems/{}?source=pagerduty", key.replace('/', "%2F")),
    )
    .await;
    assert_eq!(status, 200, "{incident}");
    assert_eq!(incident["state"], "RESOLVED");
    let events: Vec<Value> = incident["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| serde_json::from_str(n["body"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "one incident, opened then resolved");
    let trigger = &events[0];
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["dedup_key"], key);
    assert_eq!(
        trigger["payload"]["summary"],
        "Response time degradation (P-2411021)"
    );
    assert_eq!(trigger["payload"]["severity"], "warning");
    assert_eq!(trigger["payload"]["source"], "checkout-service");
    let at = trigger["payload"]["timestamp"].as_str().unwrap();
    assert!(
        at.len() >= 20 && at.as_bytes()[10] == b'T' && at.ends_with('Z'),
        "RFC 3339: {at}"
    );
    assert_eq!(trigger["payload"]["custom_details"]["entities"][1], HOSTILE);
    assert!(trigger["links"][0]["href"]
        .as_str()
        .unwrap()
        .starts_with("https://abc12345"));
    assert_eq!(
        events[1],
        json!({"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": key})
    );
    let (_, problem) = get_json(&hub, "/api/problems/P-2411021").await;
    assert_eq!(problem["threads"][0]["ref"], key);
}

#[tokio::test]
async fn pagerduty_answers_429_as_later_and_400_as_never() {
    let pd = MockServer::start().await;
    Mock::given(path("/busy/v2/enqueue"))
        .respond_with(ResponseTemplate::new(429))
        .up_to_n_times(1)
        .mount(&pd)
        .await;
    Mock::given(path("/busy/v2/enqueue"))
        .respond_with(ResponseTemplate::new(202).set_body_json(
            json!({"status": "success", "message": "Event processed", "dedup_key": "pd-key-1"}),
        ))
        .mount(&pd)
        .await;
    Mock::given(path("/bad/v2/enqueue"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "status": "invalid event", "message": "Event object is invalid",
            "errors": ["Length of 'routing_key' is incorrect (should be 32 characters)"]})))
        .mount(&pd)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let action = |base: &str| {
        json!({"type": "pagerduty", "routing_key": ROUTING_KEY,
               "api_url": format!("{}/{base}", pd.uri())})
    };
    let hub = start(
        dir.path(),
        json!({"busy": action("busy"), "bad": action("bad")}),
    );
    deliver(&hub, minimal(8)).await;
    let r = final_runs(dir.path(), 2).await;
    let busy = r.iter().find(|r| r.action == "busy").unwrap();
    assert_eq!(
        (busy.status.as_str(), busy.attempts),
        ("succeeded", 2),
        "{busy:?}"
    );
    let bad = r.iter().find(|r| r.action == "bad").unwrap();
    assert_eq!(
        (bad.status.as_str(), bad.attempts),
        ("failed", 1),
        "{bad:?}"
    );
    assert!(
        bad.last_error
            .as_deref()
            .unwrap()
            .contains("Length of 'routing_key' is incorrect"),
        "{bad:?}"
    );
    // The key PagerDuty answered with is the thread the next event uses.
    let (_, problem) = get_json(&hub, "/api/problems/8").await;
    assert_eq!(problem["threads"][0]["ref"], "pd-key-1");
}

#[tokio::test]
async fn runs_over_a_rate_limit_wait_and_say_why() {
    let slack = MockServer::start().await;
    Mock::given(path("/hook"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let hub = start(
        dir.path(),
        json!({"chat": {"type": "slack", "webhook_url": format!("{}/hook", slack.uri()),
                        "rate_limit_per_minute": 1}}),
    );
    deliver(&hub, minimal(1)).await;
    deliver(&hub, minimal(2)).await;
    eventually("one sent, one held back", async || {
        let r = runs(dir.path()).await;
        r.len() == 2
            && r.iter().any(|r| r.status == "succeeded")
            && r.iter().any(|r| {
                r.status == "pending"
                    && r.attempts == 0
                    && r.last_error
                        .as_deref()
                        .is_some_and(|e| e.starts_with("held back by rate_limit_per_minute (1)"))
            })
    })
    .await;
    assert_eq!(slack.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn script_and_webhook_threads_reach_the_next_run() {
    let receiver = MockServer::start().await;
    Mock::given(path("/tickets"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"ticket": {"id": "T-9"}})))
        .mount(&receiver)
        .await;
    let dir = tempfile::tempdir().unwrap();
    script(
        dir.path(),
        "ticket.sh",
        r#"printf '%s\n' "$HUB_STATE:${HUB_THREAD_REF:-none}" >> threads.log
[ "$HUB_STATE" = OPEN ] && echo "hub-ref: INC-7<b>"
exit 0"#,
    );
    let hub = start(
        dir.path(),
        json!({
            "ticket": {"type": "script", "command": "./ticket.sh"},
            "hook": {"type": "webhook", "url": format!("{}/tickets", receiver.uri()),
                     "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                     "thread_pointer": "/ticket/id"}
        }),
    );
    deliver(&hub, minimal(5)).await;
    runs_reach(dir.path(), 2, "succeeded").await;
    let mut resolved: Value = serde_json::from_slice(&minimal(5)).unwrap();
    resolved["State"] = json!("RESOLVED");
    deliver(&hub, serde_json::to_vec(&resolved).unwrap()).await;
    runs_reach(dir.path(), 4, "succeeded").await;
    assert_eq!(
        support::lines(&dir.path().join("threads.log")),
        ["OPEN:none", "RESOLVED:INC-7<b>"]
    );
    let page = get_text(&hub, "/problems/5?source=dynatrace").await;
    assert!(page.contains("<code>INC-7&lt;b&gt;</code>"), "{page}");
    let bodies: Vec<Value> = receiver
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(body_of)
        .collect();
    assert_eq!(bodies[0]["thread_ref"], Value::Null);
    assert_eq!(bodies[1]["thread_ref"], "T-9");
}

#[test]
fn bad_integration_keys_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(json!({
        "actions": {
            "both": {"type": "slack", "token": "xoxb-1", "channel": "C1",
                     "webhook_url": "https://hooks.slack.com/services/x"},
            "neither": {"type": "slack"},
            "nochannel": {"type": "slack", "token": "xoxb-1"},
            "short": {"type": "pagerduty", "routing_key": "abc"},
            "nourl": {"type": "teams"},
            "badurl": {"type": "teams", "webhook_url": "$(touch x)"},
            "zero": {"type": "slack", "webhook_url": "https://h.example/x", "rate_limit_per_minute": 0},
            "pointer": {"type": "webhook", "url": "https://h.example/x",
                        "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "thread_pointer": "id"}
        }
    }));
    let (code, err) = support::check_config(dir.path(), &config);
    assert_eq!(code, Some(1));
    for expected in [
        "actions.both.webhook_url: give either token and channel",
        "actions.neither.token: missing",
        "actions.nochannel.channel: missing",
        "actions.short.routing_key: a PagerDuty routing key is 32 characters",
        "actions.nourl.webhook_url: missing",
        "actions.badurl.webhook_url: expected an http:// or https:// URL",
        "actions.zero.rate_limit_per_minute",
        "actions.pointer.thread_pointer: \"id\" is not a JSON pointer",
    ] {
        assert!(err.contains(expected), "{expected:?} not in:\n{err}");
    }
    assert!(!dir.path().join("x").exists());
    assert!(
        !err.contains("touch x"),
        "a webhook URL is a credential: {err}"
    );
}

#[tokio::test]
async fn test_action_sends_one_run_prints_the_answer_and_records_nothing() {
    let slack = MockServer::start().await;
    Mock::given(path("/api/chat.postMessage"))
        .and(header("authorization", "Bearer xoxb-ok"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": true, "channel": "C9", "ts": "9.9"})),
        )
        .mount(&slack)
        .await;
    Mock::given(path("/api/chat.postMessage"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"ok": false, "error": "invalid_auth"})),
        )
        .mount(&slack)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let action = |token: &str| {
        json!({"type": "slack", "token": token, "channel": "C9",
               "api_url": format!("{}/api", slack.uri())})
    };
    let config =
        config_with(json!({"actions": {"chat": action("xoxb-ok"), "old": action("xoxb-revoked")}}));
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let hub = |args: &[&str]| {
        let out = support::hub_command(dir.path())
            .arg("test-action")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = hub(&["chat", "--state", "resolved"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["state"], "RESOLVED");
    assert_eq!(shown["answer"]["result"], "succeeded");
    assert_eq!(shown["answer"]["thread"], "C9/9.9");
    assert!(!out.contains("xoxb-ok"), "the token is never printed");
    let sent = body_of(&slack.received_requests().await.unwrap()[0]);
    assert_eq!(
        sent["text"],
        "[RESOLVED] hub test-action: a sample problem (P-TEST)"
    );

    let (code, out, _) = hub(&["old"]);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("Slack chat.postMessage: invalid_auth"),
        "{out}"
    );

    let (code, _, err) = hub(&["ghost"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("no action is named \"ghost\" (configured: chat, old)"),
        "{err}"
    );
    let (code, _, err) = hub(&["chat", "--state", "$(touch x)"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("expected a state such as OPEN"), "{err}");
    let (code, _, err) = hub(&["chat", "--problem", "missing.json"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot read missing.json"), "{err}");

    // Nothing was recorded: no store, no folders.
    for never in ["hub.db", "problems_received", "problems_sent", "x"] {
        assert!(!dir.path().join(never).exists(), "{never}");
    }
    let posts = slack.received_requests().await.unwrap();
    assert_eq!(
        posts.iter().filter(|r| r.method.as_str() == "POST").count(),
        2
    );
}
