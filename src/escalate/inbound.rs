//! Answers that come back from a phone or from Slack: how Twilio and Slack sign the requests they
//! send hub, what a Slack button's request says, and TwiML to answer a text with. No HTTP here:
//! `web::inbound` reads the requests and answers them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::domain::Source;

/// Where Twilio posts the texts people send to hub's number, below `public_url`.
pub const TWILIO_PATH: &str = "/twilio/sms";
/// Where Slack posts a click of a message's button, below `public_url`.
pub const SLACK_PATH: &str = "/slack/interactions";
/// The `action_id` of the Acknowledge button on Slack messages.
pub const SLACK_ACK_ACTION: &str = "hub_ack";
/// How far a Slack request's timestamp may be from now: an older request is a replay.
pub const SLACK_MAX_SKEW_SECS: i64 = 5 * 60;

/// Twilio's `X-Twilio-Signature`: base64 of HMAC-SHA1 under the account's auth token, over the
/// URL Twilio posted to followed by every POST parameter, sorted by name, each as its name and
/// then its value, nothing between.
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut parts: Vec<&[u8]> = Vec::with_capacity(1 + 2 * sorted.len());
    parts.push(url.as_bytes());
    for (name, value) in sorted {
        parts.push(name.as_bytes());
        parts.push(value.as_bytes());
    }
    STANDARD.encode(crate::secret::hmac_sha1(auth_token.as_bytes(), &parts))
}

/// Whether `presented` is Twilio's signature of this request under one of `auth_tokens`
/// (compared in constant time).
pub fn twilio_signed(
    auth_tokens: &[&str],
    url: &str,
    params: &[(String, String)],
    presented: &str,
) -> bool {
    let presented = presented.trim().as_bytes();
    auth_tokens
        .iter()
        .filter(|t| !t.is_empty())
        .fold(false, |found, token| {
            let want = twilio_signature(token, url, params);
            found | bool::from(want.as_bytes().ct_eq(presented))
        })
}

/// Why a request said to be Slack's is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackRefusal {
    #[error("unsigned: X-Slack-Request-Timestamp and X-Slack-Signature are needed")]
    Unsigned,
    #[error("X-Slack-Request-Timestamp is more than five minutes from now: a replay is refused")]
    Stale,
    #[error("X-Slack-Signature is not Slack's signature of this request")]
    Forged,
}

/// Slack's `X-Slack-Signature`: `v0=` and the hex HMAC-SHA256 under the app's signing secret of
/// `v0:<timestamp>:<body>`.
pub fn slack_signature(signing_secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mac = crate::secret::hmac_sha256(
        signing_secret.as_bytes(),
        &[b"v0:", timestamp.as_bytes(), b":", body],
    );
    format!("v0={}", crate::secret::hex(&mac))
}

/// Checks a request said to be Slack's: signed, within five minutes of `now_secs`, and signed
/// with `signing_secret` (compared in constant time).
pub fn slack_verify(
    signing_secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_secs: i64,
) -> Result<(), SlackRefusal> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(SlackRefusal::Unsigned);
    };
    let at: i64 = timestamp.trim().parse().map_err(|_| SlackRefusal::Forged)?;
    if (now_secs - at).abs() > SLACK_MAX_SKEW_SECS {
        return Err(SlackRefusal::Stale);
    }
    let want = slack_signature(signing_secret, timestamp.trim(), body);
    if bool::from(want.as_bytes().ct_eq(signature.trim().as_bytes())) {
        Ok(())
    } else {
        Err(SlackRefusal::Forged)
    }
}

/// The value of a problem's Acknowledge button: `<source>/<problem id>`.
pub fn button_value(source: Source, problem_key: &str) -> String {
    format!("{source}/{problem_key}")
}

/// The problem a button's value names: its source when it says one, and its id.
pub fn problem_of(value: &str) -> (Option<Source>, &str) {
    match value.split_once('/') {
        Some((source, key)) if !key.is_empty() => match Source::parse(source) {
            Some(s) => (Some(s), key),
            None => (None, value),
        },
        _ => (None, value),
    }
}

/// A click of hub's Acknowledge button, as Slack's `block_actions` payload tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackClick {
    /// The Slack user id of who clicked.
    pub user: String,
    /// The button's value: the problem (see [`problem_of`]).
    pub value: String,
    /// Where Slack takes an answer to the click, shown where the button was.
    pub response_url: Option<String>,
    /// The message the button is on, so an answer can go into its thread.
    pub message_ts: Option<String>,
}

/// The click of hub's Acknowledge button in a `block_actions` payload; `None` for any other
/// interaction (another app's button, a menu, a shortcut), which hub leaves alone.
pub fn slack_click(payload: &Value) -> Option<SlackClick> {
    if payload.get("type").and_then(Value::as_str) != Some("block_actions") {
        return None;
    }
    let action = payload
        .get("actions")?
        .as_array()?
        .iter()
        .find(|a| a.get("action_id").and_then(Value::as_str) == Some(SLACK_ACK_ACTION))?;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    Some(SlackClick {
        user: text(payload.pointer("/user/id"))?,
        value: text(action.get("value"))?,
        response_url: text(payload.get("response_url")),
        message_ts: text(payload.pointer("/container/message_ts"))
            .or_else(|| text(payload.pointer("/message/ts"))),
    })
}

/// Whether a `response_url` is Slack's own, so hub posts the answer to a click there and nowhere
/// else (the payload is signed, but an answer leaves hub only for Slack).
pub fn is_slack_response_url(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| {
        u.scheme() == "https"
            && u.port().is_none()
            && u.host_str()
                .is_some_and(|h| h == "slack.com" || h.ends_with(".slack.com"))
    })
}

/// Text made safe inside XML: the five characters that could end it or start markup, escaped.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters other than tab and line ends are not allowed in XML 1.0.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// TwiML that answers a text with `message`, or with nothing.
pub fn twiml(message: Option<&str>) -> String {
    match message {
        Some(m) => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>{}</Message></Response>",
            xml_escape(m)
        ),
        None => "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn twilio_signs_as_its_documentation_shows() {
        // The worked example of Twilio's "Webhooks security" page.
        let params = pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let token = "12345";
        assert_eq!(
            twilio_signature(token, url, &params),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        // Sorted by name whatever the order they came in.
        let mut shuffled = params.clone();
        shuffled.reverse();
        assert!(twilio_signed(
            &["other", token],
            url,
            &shuffled,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        assert!(!twilio_signed(
            &["other"],
            url,
            &params,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        assert!(!twilio_signed(&[token], url, &params, ""));
        assert!(!twilio_signed(
            &[""],
            url,
            &params,
            &twilio_signature("", url, &params)
        ));
        let mut changed = params.clone();
        changed[2].1 = "9999".into();
        assert!(!twilio_signed(
            &[token],
            url,
            &changed,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
    }

    #[test]
    fn slack_signs_as_its_documentation_shows() {
        // The worked example of Slack's "Verifying requests from Slack" page.
        let secret = "8f742231b10e8888abcd99yyyzzz85a5";
        let ts = "1531420618";
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let sig = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(slack_signature(secret, ts, body), sig);
        let now = 1_531_420_618;
        assert_eq!(
            slack_verify(secret, Some(ts), Some(sig), body, now + 60),
            Ok(())
        );
        assert_eq!(
            slack_verify(secret, Some(ts), Some(sig), body, now + 301),
            Err(SlackRefusal::Stale)
        );
        assert_eq!(
            slack_verify(secret, Some(ts), Some(sig), body, now - 301),
            Err(SlackRefusal::Stale)
        );
        assert_eq!(
            slack_verify("other", Some(ts), Some(sig), body, now),
            Err(SlackRefusal::Forged)
        );
        assert_eq!(
            slack_verify(secret, Some(ts), Some(sig), b"token=x", now),
            Err(SlackRefusal::Forged)
        );
        assert_eq!(
            slack_verify(secret, Some("soon"), Some(sig), body, now),
            Err(SlackRefusal::Forged)
        );
        assert_eq!(
            slack_verify(secret, None, Some(sig), body, now),
            Err(SlackRefusal::Unsigned)
        );
    }

    #[test]
    fn a_click_names_who_and_which_problem() {
        let payload = json!({
            "type": "block_actions",
            "user": {"id": "U024BE7LH", "username": "ana"},
            "container": {"type": "message", "message_ts": "1700000000.000100"},
            "response_url": "https://hooks.slack.com/actions/T0/1/x",
            "actions": [
                {"action_id": "other", "value": "x"},
                {"action_id": "hub_ack", "value": "dynatrace/85"}
            ]
        });
        let click = slack_click(&payload).unwrap();
        assert_eq!(click.user, "U024BE7LH");
        assert_eq!(problem_of(&click.value), (Some(Source::Dynatrace), "85"));
        assert_eq!(click.message_ts.as_deref(), Some("1700000000.000100"));
        assert!(is_slack_response_url(
            click.response_url.as_deref().unwrap()
        ));

        let mut other = payload.clone();
        other["actions"] = json!([{"action_id": "other", "value": "x"}]);
        assert_eq!(slack_click(&other), None);
        other = payload.clone();
        other["type"] = json!("view_submission");
        assert_eq!(slack_click(&other), None);
        other = payload;
        other["user"] = json!(null);
        assert_eq!(slack_click(&other), None);

        assert_eq!(problem_of("85"), (None, "85"));
        assert_eq!(problem_of("alerts/a/b"), (None, "alerts/a/b"));
        assert_eq!(problem_of("alertmanager/"), (None, "alertmanager/"));
        assert_eq!(
            problem_of(&button_value(Source::Alertmanager, "a/b")),
            (Some(Source::Alertmanager), "a/b")
        );
        for url in [
            "http://hooks.slack.com/actions/x",
            "https://hooks.slack.com.evil.example/x",
            "https://evil.example/?hooks.slack.com",
            "https://hooks.slack.com:8443/x",
            "not a url",
        ] {
            assert!(!is_slack_response_url(url), "{url}");
        }
    }

    #[test]
    fn twiml_text_is_escaped() {
        assert_eq!(
            twiml(Some("a <script>&'\"</Message> \u{7}$(touch x)")),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>a &lt;script&gt;&amp;&apos;&quot;&lt;/Message&gt; $(touch x)</Message></Response>"
        );
        assert!(twiml(None).ends_with("<Response></Response>"));
    }
}
