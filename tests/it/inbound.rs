//! Acknowledging a page from a phone (Twilio's inbound-SMS webhook) and from Slack (the
//! Acknowledge button), against the real binary: signatures made here as Twilio and Slack make
//! them, the escalation and the audit log read from the store.

use std::path::Path;

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};

use crate::support::*;

const PUBLIC_URL: &str = "https://hub.example.com";
const TWILIO_TOKEN: &str = "twilio-auth-token-5e1f";
const SLACK_SECRET: &str = "slack-signing-secret-9c2d";
const ANA_PHONE: &str = "+15550001111";
const VI_PHONE: &str = "+15550002222";

/// Ana (a responder) and Vi (a viewer) with phones and Slack ids, an sms action (whose auth token
/// Twilio signs with), and every open problem escalating: its first step runs a script at once,
/// the next one waits an hour, so the escalation stays open while the test answers it.
fn config(dir: &Path) -> Value {
    script(dir, "note.sh", "exit 0");
    config_with(json!({
        "public_url": PUBLIC_URL,
        "slack": {"signing_secret": SLACK_SECRET},
        "people": {
            "ana": {"name": "Ana Lima", "phone": ANA_PHONE, "slack": "U0ANA", "role": "responder"},
            "vi": {"name": "Vi Viewer", "phone": VI_PHONE, "slack": "U0VI", "role": "viewer"}
        },
        "actions": {
            "text": {"type": "sms", "account_sid": "AC1", "auth_token": TWILIO_TOKEN,
                     "from": "+15005550006", "to": ["+15550009999"],
                     "api_url": "http://127.0.0.1:9"},
            "note": {"type": "script", "command": ["./note.sh"]}
        },
        "escalations": {"prod": {"steps": [
            {"notify": ["person:ana"], "actions": ["note"], "wait": "1h"},
            {"notify": ["person:ana"], "actions": ["note"], "wait": "1h"}
        ]}},
        "routes": [{"escalate": "prod"}]
    }))
}

/// Opens Dynatrace problem `id` and waits for its escalation: its reply code.
async fn open_problem(hub: &Hub, id: &str) -> String {
    let body = json!({"State": "OPEN", "ProblemID": id, "PID": format!("pid-{id}")});
    let r = post(&client(), &hub.url("/"), body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually(&format!("problem {id}'s escalation"), async || {
        escalation(&hub.dir, id).await.is_some()
    })
    .await;
    escalation(&hub.dir, id).await.unwrap().get("code")
}

async fn escalation(dir: &Path, id: &str) -> Option<Row> {
    db(dir)
        .await
        .optional_row(
            "SELECT state, code, acked_by, acked_via FROM escalations WHERE problem_key = $1",
            &[id.into()],
        )
        .await
}

async fn state(dir: &Path, id: &str) -> String {
    escalation(dir, id).await.unwrap().get("state")
}

async fn acks(dir: &Path) -> Vec<Row> {
    db(dir)
        .await
        .rows(
            "SELECT actor, via, from_addr, target FROM audit WHERE action = 'ack' ORDER BY id",
            &[],
        )
        .await
}

/// A form body, encoded as Twilio and Slack send theirs.
pub(crate) fn form(fields: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse("http://x/").unwrap();
    url.query_pairs_mut().extend_pairs(fields);
    url.query().unwrap_or_default().to_string()
}

/// Twilio's signature: base64 HMAC-SHA1 over the URL and the fields sorted by name.
pub(crate) fn twilio_signature(token: &str, url: &str, fields: &[(&str, &str)]) -> String {
    let mut sorted = fields.to_vec();
    sorted.sort();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A text to hub's number as Twilio posts it, signed with `token` over `url` (or not at all).
async fn text(hub: &Hub, from: &str, body: &str, signed: Option<(&str, &str)>) -> (u16, String) {
    let fields = [
        ("MessageSid", "SM0123456789abcdef"),
        ("AccountSid", "AC1"),
        ("From", from),
        ("To", "+15005550006"),
        ("Body", body),
    ];
    let mut request = client()
        .post(hub.url("/twilio/sms"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&fields));
    if let Some((token, url)) = signed {
        request = request.header("X-Twilio-Signature", twilio_signature(token, url, &fields));
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    if status == 200 {
        assert_eq!(
            r.headers()["content-type"].to_str().unwrap(),
            "application/xml"
        );
    }
    (status, r.text().await.unwrap())
}

const SIGNED_URL: &str = "https://hub.example.com/twilio/sms";

fn good() -> Option<(&'static str, &'static str)> {
    Some((TWILIO_TOKEN, SIGNED_URL))
}

fn twiml(message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>{message}</Message></Response>"
    )
}

#[tokio::test]
async fn a_text_with_the_code_from_a_persons_phone_acknowledges_its_page() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start_in(dir.path(), &config(dir.path()), &[]);
    let code = open_problem(&hub, "85").await;
    let reply = format!("ACK {code}");

    // Unsigned, signed with another token, or over another address: refused, nothing changes.
    for signed in [
        None,
        Some(("not-the-token", SIGNED_URL)),
        Some((TWILIO_TOKEN, "https://hub.example.com/twilio/sms?x=1")),
        Some((TWILIO_TOKEN, "http://hub.example.com/twilio/sms")),
    ] {
        let (status, body) = text(&hub, ANA_PHONE, &reply, signed).await;
        assert_eq!(status, 403, "{signed:?}: {body}");
    }
    // From a number no person has: an empty answer, nothing changes.
    let (status, body) = text(&hub, "+15557770000", &reply, good()).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>"
    );
    // A viewer may not acknowledge.
    let (status, body) = text(&hub, VI_PHONE, &reply, good()).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        twiml("acknowledging needs the responder role; vi is a viewer")
    );
    // No code, or a code no running page has.
    let (_, body) = text(&hub, ANA_PHONE, "yes I'm on it", good()).await;
    assert!(body.contains("hub found no code in this text"), "{body}");
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let (_, body) = text(&hub, ANA_PHONE, wrong, good()).await;
    assert_eq!(body, twiml(&format!("no running page has code {wrong}")));
    // A hostile text runs nothing and comes back as no markup.
    let (status, body) = text(
        &hub,
        ANA_PHONE,
        "<script>alert(1)</script> $(touch INJECTED) `touch INJECTED` & more",
        good(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        !body.contains("<script") && body.matches("<Message>").count() == 1,
        "{body}"
    );
    assert!(!dir.path().join("INJECTED").exists());
    assert_eq!(state(dir.path(), "85").await, "open");
    assert!(acks(dir.path()).await.is_empty());

    // Ana's reply with the code acknowledges.
    let (status, body) = text(&hub, ANA_PHONE, &reply, good()).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        twiml("acknowledged by Ana Lima via SMS: dynatrace problem 85, escalation prod stops")
    );
    let e = escalation(dir.path(), "85").await.unwrap();
    assert_eq!(e.get::<String>("state"), "acked");
    assert_eq!(e.get::<Option<String>>("acked_by").as_deref(), Some("ana"));
    assert_eq!(e.get::<Option<String>>("acked_via").as_deref(), Some("sms"));
    let audit = acks(dir.path()).await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].get::<String>("actor"), "ana");
    assert_eq!(audit[0].get::<String>("via"), "sms");
    assert_eq!(audit[0].get::<String>("from_addr"), "+15*****1111");
    assert_eq!(audit[0].get::<String>("target"), "dynatrace/85");

    // The same text again: the page is acknowledged already, so no running page has that code.
    let (_, body) = text(&hub, ANA_PHONE, &code, good()).await;
    assert_eq!(body, twiml(&format!("no running page has code {code}")));
    assert_eq!(acks(dir.path()).await.len(), 1);

    // Too large, or not a form.
    let huge = "x".repeat(20 * 1024);
    let r = client()
        .post(hub.url("/twilio/sms"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("From", ANA_PHONE), ("Body", &huge)]))
        .send()
        .await
        .unwrap();
    expect_error(r, 413, "payload_too_large").await;
    let r = client()
        .post(hub.url("/twilio/sms"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    expect_error(r, 415, "unsupported_media_type").await;
}

pub(crate) fn slack_signature(secret: &str, ts: &str, body: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{ts}:{body}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("v0={hex}")
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A click as Slack posts it: `payload=<JSON>`, signed with `secret` at `ts` (or not at all).
async fn click(hub: &Hub, payload: &Value, signed: Option<(&str, i64)>) -> (u16, Value) {
    let body = form(&[("payload", &payload.to_string())]);
    let mut request = client()
        .post(hub.url("/slack/interactions"))
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some((secret, ts)) = signed {
        let ts = ts.to_string();
        request = request
            .header("X-Slack-Signature", slack_signature(secret, &ts, &body))
            .header("X-Slack-Request-Timestamp", ts);
    }
    let r = request.body(body).send().await.unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_str(&r.text().await.unwrap()).unwrap(),
    )
}

pub(crate) fn ack_click(user: &str, value: &str) -> Value {
    json!({
        "type": "block_actions",
        "user": {"id": user, "username": "someone"},
        "container": {"type": "message", "message_ts": "1700000000.000100"},
        // Not Slack's: hub answers only at Slack's own addresses, so this one is left alone.
        "response_url": "https://hooks.example.com/actions/T0/1/x",
        "actions": [{"type": "button", "action_id": "hub_ack", "value": value}]
    })
}

#[tokio::test]
async fn a_click_of_the_acknowledge_button_acknowledges_its_page() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start_in(dir.path(), &config(dir.path()), &[]);
    open_problem(&hub, "85").await;
    let now = now_secs();
    let payload = ack_click("U0ANA", "dynatrace/85");

    // Unsigned, signed with another secret, or six minutes old (or ahead): refused.
    for signed in [
        None,
        Some(("another-secret", now)),
        Some((SLACK_SECRET, now - 6 * 60)),
        Some((SLACK_SECRET, now + 6 * 60)),
    ] {
        let (status, body) = click(&hub, &payload, signed).await;
        assert_eq!(status, 403, "{signed:?}: {body}");
        assert_eq!(body["error"], "forbidden");
    }
    let (_, body) = click(&hub, &payload, Some((SLACK_SECRET, now - 6 * 60))).await;
    assert!(
        body["detail"].as_str().unwrap().contains("replay"),
        "{body}"
    );
    // A Slack user no person has, a viewer, another app's button: nothing changes.
    let (status, body) = click(
        &hub,
        &ack_click("U0NOBODY", "dynatrace/85"),
        Some((SLACK_SECRET, now)),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["text"], "you are no person hub knows");
    let (_, body) = click(
        &hub,
        &ack_click("U0VI", "dynatrace/85"),
        Some((SLACK_SECRET, now)),
    )
    .await;
    assert_eq!(
        body["text"],
        "acknowledging needs the responder role; vi is a viewer"
    );
    let mut other = payload.clone();
    other["actions"][0]["action_id"] = json!("something_else");
    let (status, _) = click(&hub, &other, Some((SLACK_SECRET, now))).await;
    assert_eq!(status, 200);
    assert_eq!(state(dir.path(), "85").await, "open");
    assert!(acks(dir.path()).await.is_empty());

    // Ana's click acknowledges, in the channel's thread of the message.
    let (status, body) = click(&hub, &payload, Some((SLACK_SECRET, now))).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["text"],
        "acknowledged by Ana Lima via Slack: dynatrace problem 85, escalation prod stops"
    );
    assert_eq!(body["response_type"], "in_channel");
    assert_eq!(body["thread_ts"], "1700000000.000100");
    let e = escalation(dir.path(), "85").await.unwrap();
    assert_eq!(e.get::<String>("state"), "acked");
    assert_eq!(
        e.get::<Option<String>>("acked_via").as_deref(),
        Some("slack")
    );
    let audit = acks(dir.path()).await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].get::<String>("via"), "slack");
    assert_eq!(audit[0].get::<String>("from_addr"), "slack:U0ANA");

    // A second click says who acknowledged it.
    let (_, body) = click(&hub, &payload, Some((SLACK_SECRET, now))).await;
    assert_eq!(body["text"], "problem 85 was acknowledged already, by ana");
    // A button whose value is the problem's id alone finds its source.
    open_problem(&hub, "86").await;
    let (_, body) = click(&hub, &ack_click("U0ANA", "86"), Some((SLACK_SECRET, now))).await;
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .starts_with("acknowledged by Ana Lima"),
        "{body}"
    );
    assert_eq!(state(dir.path(), "86").await, "acked");

    let huge = json!({"type": "block_actions", "pad": "x".repeat(100 * 1024)});
    let r = client()
        .post(hub.url("/slack/interactions"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("payload", &huge.to_string())]))
        .send()
        .await
        .unwrap();
    expect_error(r, 413, "payload_too_large").await;
}

#[tokio::test]
async fn without_public_url_or_signing_secret_nothing_is_believed() {
    let (_dir, hub) = start(json!({
        "actions": {"text": {"type": "sms", "account_sid": "AC1", "auth_token": TWILIO_TOKEN,
                             "from": "+15005550006", "to": ["+15550009999"],
                             "api_url": "http://127.0.0.1:9"}}
    }));
    let (status, body) = text(&hub, ANA_PHONE, "123456", good()).await;
    assert_eq!(status, 403);
    assert!(body.contains("public_url is needed"), "{body}");
    let (status, body) = click(
        &hub,
        &ack_click("U0ANA", "dynatrace/85"),
        Some((SLACK_SECRET, now_secs())),
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("slack.signing_secret is needed"),
        "{body}"
    );
}
