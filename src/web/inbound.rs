//! Acknowledging from a phone or from Slack: Twilio's inbound-SMS webhook (`POST /twilio/sms`)
//! and Slack's interactivity requests (`POST /slack/interactions`, the Acknowledge button).
//!
//! Neither carries hub's credentials: each is believed only with its sender's signature over the
//! exact request (Twilio's under an sms action's auth token, Slack's under `slack.signing_secret`),
//! and acts in the name of the person whose phone number or Slack user id the config has. Anything
//! else is answered without changing anything.

use std::borrow::Cow;
use std::convert::Infallible;
use std::io::Cursor;
use std::time::Duration;

use rocket::data::{Data, ToByteUnit};
use rocket::http::{ContentType, RawStr};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::response::{self, Responder, Response};
use rocket::{post, routes, Route, State};
use serde_json::{json, Value};

use super::error::ApiError;
use super::{App, JsonOk};
use crate::actions::mask_number;
use crate::actions::slack::escape;
use crate::actions::ActionKind;
use crate::domain::Source;
use crate::escalate::ack::{acknowledge, AckError};
use crate::escalate::inbound::{self as signed, SlackClick, SLACK_PATH, TWILIO_PATH};
use crate::people::{Actor, Person, Role, Via};
use crate::store::{Store, StoreError};

pub fn routes() -> Vec<Route> {
    routes![twilio_sms, slack_interactions]
}

/// The largest text Twilio posts: a message's fields, a few KiB.
const MAX_TWILIO_BODY: u64 = 16 * 1024;
/// The largest click Slack posts: it carries the whole message the button is on.
const MAX_SLACK_BODY: u64 = 64 * 1024;

/// The headers Twilio and Slack sign with.
pub struct Signatures {
    twilio: Option<String>,
    slack_timestamp: Option<String>,
    slack: Option<String>,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Signatures {
    type Error = Infallible;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Infallible> {
        let header = |name: &str| req.headers().get_one(name).map(str::to_string);
        Outcome::Success(Signatures {
            twilio: header("X-Twilio-Signature"),
            slack_timestamp: header("X-Slack-Request-Timestamp"),
            slack: header("X-Slack-Signature"),
        })
    }
}

/// A TwiML answer: what Twilio texts back, if anything.
pub struct Twiml(String);

impl Twiml {
    fn say(message: impl AsRef<str>) -> Twiml {
        Twiml(signed::twiml(Some(message.as_ref())))
    }

    fn nothing() -> Twiml {
        Twiml(signed::twiml(None))
    }
}

impl<'r> Responder<'r, 'static> for Twiml {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        Response::build()
            .header(ContentType::new("application", "xml"))
            .sized_body(self.0.len(), Cursor::new(self.0))
            .ok()
    }
}

/// The body, whole, up to `limit` bytes: signatures cover the exact bytes.
async fn read_body(
    content_type: Option<&ContentType>,
    body: Data<'_>,
    limit: u64,
) -> Result<Vec<u8>, ApiError> {
    if !content_type.is_some_and(|c| c.is_form()) {
        return Err(ApiError::unsupported_media_type(
            "send Content-Type: application/x-www-form-urlencoded",
        ));
    }
    let read = body
        .open(limit.bytes())
        .into_bytes()
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot read the body: {e}")))?;
    if !read.is_complete() {
        return Err(ApiError::payload_too_large(format!(
            "at most {} KiB",
            limit / 1024
        )));
    }
    Ok(read.into_inner())
}

/// A form body's fields, decoded, in the order sent.
fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    let decode = |s: &str| -> String {
        match RawStr::new(s).url_decode_lossy() {
            Cow::Borrowed(b) => b.to_string(),
            Cow::Owned(o) => o,
        }
    };
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Twilio's inbound-SMS webhook: a text whose body is a running escalation's reply code (alone or
/// after `ACK`) acknowledges it in the name of the person whose number sent it.
#[post("/twilio/sms", data = "<body>")]
async fn twilio_sms(
    app: &State<App>,
    signatures: Signatures,
    content_type: Option<&ContentType>,
    body: Data<'_>,
) -> Result<Twiml, ApiError> {
    let body = read_body(content_type, body, MAX_TWILIO_BODY).await?;
    let settings = app.settings.get();
    let config = &settings.config;
    let Some(public_url) = config.escalation.public_url.as_deref() else {
        return Err(ApiError::forbidden(
            "Twilio's signature cannot be checked: public_url is needed, hub's address as Twilio \
             reaches it",
        ));
    };
    let tokens: Vec<&str> = config
        .actions
        .actions
        .iter()
        .filter_map(|a| match &a.kind {
            ActionKind::Sms(sms) => Some(sms.auth_token.expose()),
            _ => None,
        })
        .filter(|t| !t.is_empty())
        .collect();
    if tokens.is_empty() {
        return Err(ApiError::forbidden(
            "Twilio's signature cannot be checked: no sms action has a Twilio auth token",
        ));
    }
    let Some(signature) = signatures.twilio.as_deref() else {
        return Err(ApiError::forbidden(
            "unsigned: X-Twilio-Signature is needed",
        ));
    };
    let fields = form_fields(&body);
    let url = format!("{public_url}{TWILIO_PATH}");
    if !signed::twilio_signed(&tokens, &url, &fields, signature) {
        tracing::warn!(
            url,
            "refused a text said to be Twilio's: its signature is not one of the sms actions' \
             auth tokens over public_url"
        );
        return Err(ApiError::forbidden(
            "X-Twilio-Signature is not Twilio's signature of this request",
        ));
    }
    let from = field(&fields, "From").unwrap_or_default();
    let text = field(&fields, "Body").unwrap_or_default();
    let masked = mask_number(from);
    let Some(person) = config.people.by_phone(from) else {
        tracing::info!(
            from = masked,
            message_sid = field(&fields, "MessageSid").unwrap_or_default(),
            "a text from a number no person has; nothing done"
        );
        return Ok(Twiml::nothing());
    };
    if let Some(refused) = needs_responder(person) {
        return Ok(Twiml::say(refused));
    }
    let Some(code) = crate::escalate::code_in(text) else {
        return Ok(Twiml::say(
            "hub found no code in this text: reply with the 6-digit code of the page, alone or \
             after ACK",
        ));
    };
    let answer = async {
        let Some(e) = app.store.escalation_by_code(&code).await? else {
            return Ok(format!("no running page has code {code}"));
        };
        let actor = actor(person, Via::Sms, masked);
        let (_, text) = answer_ack(app, &actor, person, e.source, &e.problem_key).await?;
        Ok::<_, StoreError>(text)
    };
    match answer.await {
        Ok(text) => Ok(Twiml::say(text)),
        Err(e) => {
            tracing::error!(error = %e, "cannot acknowledge a text's page: the store failed");
            Ok(Twiml::say(
                "hub cannot record this right now; try again in a minute",
            ))
        }
    }
}

/// Slack's interactivity requests: a click of hub's Acknowledge button acknowledges the problem's
/// escalation in the name of the person whose Slack user id clicked.
#[post("/slack/interactions", data = "<body>")]
async fn slack_interactions(
    app: &State<App>,
    signatures: Signatures,
    content_type: Option<&ContentType>,
    body: Data<'_>,
) -> Result<JsonOk, ApiError> {
    let body = read_body(content_type, body, MAX_SLACK_BODY).await?;
    let settings = app.settings.get();
    let config = &settings.config;
    let Some(secret) = config.escalation.slack_signing_secret.as_ref() else {
        return Err(ApiError::forbidden(
            "Slack's signature cannot be checked: slack.signing_secret is needed",
        ));
    };
    let now_secs = crate::clock::now_ms() / 1000;
    if let Err(refusal) = signed::slack_verify(
        secret.expose(),
        signatures.slack_timestamp.as_deref(),
        signatures.slack.as_deref(),
        &body,
        now_secs,
    ) {
        tracing::warn!(path = SLACK_PATH, why = %refusal, "refused a request said to be Slack's");
        return Err(ApiError::forbidden(refusal.to_string()));
    }
    let fields = form_fields(&body);
    let payload: Value = field(&fields, "payload")
        .and_then(|p| serde_json::from_str(p).ok())
        .ok_or_else(|| ApiError::bad_request("expected payload=<JSON>, as Slack sends it"))?;
    let Some(click) = signed::slack_click(&payload) else {
        // Another interaction (another button, a shortcut): Slack only needs to hear 200.
        return Ok(JsonOk(json!({})));
    };
    let Some(person) = config.people.by_slack(&click.user) else {
        tracing::info!(
            slack_user = click.user,
            "the Acknowledge button was clicked by a Slack user no person has; nothing done"
        );
        return Ok(tell_slack(&click, "you are no person hub knows", false));
    };
    if let Some(refused) = needs_responder(person) {
        return Ok(tell_slack(&click, &refused, false));
    }
    let (source, key) = signed::problem_of(&click.value);
    let actor = actor(person, Via::Slack, format!("slack:{}", click.user));
    let answer = async {
        let source = match source {
            Some(s) => Some(s),
            None => escalating_source(&app.store, key).await?,
        };
        match source {
            Some(source) => answer_ack(app, &actor, person, source, key).await,
            None => Ok((
                false,
                format!("problem {key} has no escalation to acknowledge"),
            )),
        }
    };
    let (done, text) = answer.await?;
    Ok(tell_slack(&click, &text, done))
}

/// Why `person` may not acknowledge, if they may not.
fn needs_responder(person: &Person) -> Option<String> {
    (person.role < Role::Responder).then(|| {
        format!(
            "acknowledging needs the responder role; {} is a {}",
            person.id, person.role
        )
    })
}

fn actor(person: &Person, via: Via, from: String) -> Actor {
    Actor {
        name: person.id.clone(),
        role: person.role,
        token: None,
        verified: true,
        via,
        from,
    }
}

/// Acknowledges the problem's escalation as `actor`: whether it was, and the sentence to answer
/// with.
async fn answer_ack(
    app: &App,
    actor: &Actor,
    person: &Person,
    source: Source,
    key: &str,
) -> Result<(bool, String), StoreError> {
    let via = match actor.via {
        Via::Sms => "SMS",
        Via::Slack => "Slack",
        other => other.as_str(),
    };
    match acknowledge(&app.store, &app.tells(), actor, source, key).await {
        Ok(e) => Ok((
            true,
            format!(
                "acknowledged by {} via {via}: {} problem {}, escalation {} stops",
                person.name, e.source, e.problem_key, e.policy
            ),
        )),
        Err(AckError::Nothing(why)) => Ok((false, why)),
        Err(AckError::Store(e)) => Err(e),
    }
}

/// The source whose escalation of the problem `key` is running, or else whose latest escalation
/// of it there is (to say how it ended): for a button whose value names no source.
async fn escalating_source(store: &Store, key: &str) -> Result<Option<Source>, StoreError> {
    let mut ended = None;
    for &source in Source::ALL {
        if let Some(e) = store.escalation_of(source, key).await? {
            if matches!(e.state.as_str(), "open" | "ended") {
                return Ok(Some(source));
            }
            ended.get_or_insert(source);
        }
    }
    Ok(ended)
}

/// The answer to a click: Slack ignores a `block_actions` request's answer beyond its status, so
/// the text also goes to the click's `response_url` (when it is Slack's), to whoever clicked
/// alone, or, for an acknowledgement, to the channel, in the message's thread.
fn tell_slack(click: &SlackClick, text: &str, to_channel: bool) -> JsonOk {
    let text = escape(text);
    let mut message = json!({
        "response_type": if to_channel { "in_channel" } else { "ephemeral" },
        "replace_original": false,
        "text": text,
    });
    if to_channel {
        if let Some(ts) = &click.message_ts {
            message["thread_ts"] = json!(ts);
        }
    }
    if let Some(url) = click
        .response_url
        .clone()
        .filter(|u| signed::is_slack_response_url(u))
    {
        let body = message.clone();
        tokio::spawn(async move {
            let timeout = Duration::from_secs(10);
            let sent = match reqwest::Client::builder().timeout(timeout).build() {
                Ok(http) => crate::actions::http::post_json(&http, &url, &body, timeout)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = sent {
                tracing::warn!(error = %e, "cannot answer a Slack click at its response_url");
            }
        });
    }
    JsonOk(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_are_decoded() {
        let fields = form_fields(b"From=%2B15550001111&Body=ACK+123456&&Empty=&Bare");
        assert_eq!(
            fields,
            [
                ("From".to_string(), "+15550001111".to_string()),
                ("Body".to_string(), "ACK 123456".to_string()),
                ("Empty".to_string(), String::new()),
                ("Bare".to_string(), String::new()),
            ]
        );
        assert_eq!(field(&fields, "Body"), Some("ACK 123456"));
        assert_eq!(field(&fields, "To"), None);
    }
}
