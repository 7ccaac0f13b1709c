//! Opsgenie's Alert API, the part senders use, so Alertmanager's `opsgenie_configs`, Grafana's
//! Opsgenie contact point or a script calling the API needs only a new URL: create
//! (`POST /v2/alerts`), close and acknowledge (`POST /v2/alerts/{id}/close|acknowledge`). Notes
//! and heartbeat pings store no notification; `web::opsgenie` takes them, with what is read here.
//!
//! The problem is the alert's `alias`; a create without one is a problem of its own. Opsgenie
//! handles every request it accepts: a create for an open alias counts on that alert, a create
//! for a closed one opens it again, however alike the bodies (Alertmanager sends the same bytes
//! each time an alert group fires). So a live request is stored as a notification of its own,
//! whatever its bytes (its identity is a fresh request id): a create for an open problem runs
//! nothing again (runs are keyed by opening), and one after a close is a new opening.

use std::sync::Arc;

use percent_encoding::percent_decode_str;
use serde_json::{json, Map, Value};

use super::{digest_id, object, text, Failure, Gate, Headers, ParseError, Receipt, Refusal};
use super::{Reply, Source, SourcePlugin, SourceAuth, MAX_KEY_LEN, PATH, QUERY};
use crate::domain::{Entity, Facts, Notification};
use crate::keys::Env;
use crate::keys::{Issues, Section};
use crate::secret::Secret;

/// Opsgenie's own paths (an `api_url` of `http://hub:5000/`), and the same under hub's
/// `/hooks/opsgenie` (`api_url: http://hub:5000/hooks/opsgenie/`).
pub const PATHS: &[&str] = &[
    "/v2/alerts",
    "/v2/alerts/<identifier>/close",
    "/v2/alerts/<identifier>/acknowledge",
    "/hooks/opsgenie/v2/alerts",
    "/hooks/opsgenie/v2/alerts/<identifier>/close",
    "/hooks/opsgenie/v2/alerts/<identifier>/acknowledge",
];

/// Where hub's own paths for Opsgenie begin; Opsgenie's own begin at the root.
pub const PREFIX: &str = "/hooks/opsgenie";

/// The priorities Opsgenie knows, most urgent first; P3 when a create gives none.
pub const PRIORITIES: &[&str] = &["P1", "P2", "P3", "P4", "P5"];
const DEFAULT_PRIORITY: &str = "P3";
/// Opsgenie keeps this much of an alert's message.
const MAX_MESSAGE: usize = 130;
/// Opsgenie's limit on the request owner's name.
const MAX_USER: usize = 100;
const IDENTIFIER_TYPES: &[&str] = &["id", "alias", "tiny"];
const RESPONDER_TYPES: &[&str] = &["team", "user", "escalation", "schedule"];
const VISIBLE_TO_TYPES: &[&str] = &["team", "user"];

/// Opsgenie's answer to a request it took.
const ACCEPTED: &str = "Request will be processed";
/// Opsgenie's answer to a body with errors, which it lists by field.
const NOT_PROCESSABLE: &str = "Request body is not processable. Please check the errors.";

/// What a request asks of an alert, from its path and query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Create,
    Close(String),
    Acknowledge(String),
    Note(String),
}

pub(super) fn read(headers: &Headers, body: &[u8]) -> Result<Vec<Notification>, ParseError> {
    notification(&call(headers)?, body, None).map(|n| vec![n])
}

/// `api_keys`: the keys senders send as `Authorization: GenieKey <key>` (at least one).
pub(super) fn build(
    gate: Gate,
    s: &mut Section,
    _: &Env,
    issues: &mut Issues,
) -> Arc<dyn SourcePlugin> {
    if gate.asks() {
        issues.push(
            s.path_of("auth"),
            "Opsgenie's senders authenticate with Authorization: GenieKey; list the keys in api_keys",
        );
    }
    let keys = s.string_list("api_keys", issues).unwrap_or_default();
    if keys.is_empty() {
        issues.push(
            s.path_of("api_keys"),
            "missing: the API keys senders send as Authorization: GenieKey <key>",
        );
    }
    for (i, key) in keys.iter().enumerate() {
        let at = format!("{}[{i}]", s.path_of("api_keys"));
        if key.contains('…') {
            issues.push(at, format!("{} (it contains \"…\"): put the real key here", crate::keys::PLACEHOLDER));
        } else if key.trim().is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            issues.push(at, "a key is one word: no blanks or control characters");
        }
    }
    let keys = keys.into_iter().map(Secret::new).collect();
    Arc::new(Opsgenie {
        gate: gate.with_auth(
            SourceAuth::GenieKey(keys),
            "send Authorization: GenieKey <key> with one of sources.opsgenie.api_keys",
        ),
    })
}

/// Answers as Opsgenie does: 202 `{"result", "took", "requestId"}`; 422 with the errors by field;
/// any other refusal with its status and `{"message", "took", "requestId"}`, except a wrong or
/// missing key, which keeps hub's 401 and its `WWW-Authenticate: GenieKey`.
#[derive(Debug)]
struct Opsgenie {
    gate: Gate,
}

impl SourcePlugin for Opsgenie {
    fn source(&self) -> Source {
        Source::Opsgenie
    }

    fn gate(&self) -> &Gate {
        &self.gate
    }

    fn receive(&self, headers: &Headers, body: &[u8]) -> Result<Vec<Notification>, Refusal> {
        let call = call(headers)?;
        Ok(vec![notification(&call, body, Some(&request_id_fresh()))?])
    }

    fn accepted(&self, body: &[u8], receipts: &[Receipt]) -> Reply {
        let took = receipts.first().map_or(0.0, |r| r.took.as_secs_f64());
        // An alert created without an alias is named by the answer's request id, so its sender
        // can close it (`identifierType=id`).
        let unnamed = receipts
            .first()
            .filter(|r| r.state == "OPEN" && alias_of(body).is_none())
            .map(|r| r.problem_key.clone());
        Reply {
            status: 202,
            body: result(ACCEPTED, took, unnamed),
        }
    }

    fn refused(&self, _: &[u8], failure: &Failure) -> Option<Reply> {
        refusal(failure)
    }
}

/// Opsgenie's shape of a refusal (hub's own for a wrong or missing key); also for a source that
/// is not enabled.
pub fn refusal(failure: &Failure) -> Option<Reply> {
    let took = failure.took.as_secs_f64();
    let (status, body) = match failure.refusal {
        // hub's own answers: the challenge, and `Retry-After` for a sender over its rate.
        Some(Refusal::Unauthorized { .. } | Refusal::OverRate { .. }) => return None,
        Some(Refusal::Parse(ParseError::Fields(errors))) => {
            let mut body = message(NOT_PROCESSABLE, took);
            body["errors"] = Value::Object(by_field(errors));
            (422, body)
        }
        _ => (failure.status, message(failure.detail, took)),
    };
    Some(Reply { status, body })
}

/// Opsgenie's answer to a request it took: `{"result", "took", "requestId"}`, with a fresh request
/// id unless `request_id` is given.
pub fn result(text: &str, took: f64, request_id: Option<String>) -> Value {
    shaped("result", text, took, request_id)
}

/// Opsgenie's answer to a request it refused: `{"message", "took", "requestId"}`.
pub fn message(text: &str, took: f64) -> Value {
    shaped("message", text, took, None)
}

fn shaped(key: &str, text: &str, took: f64, request_id: Option<String>) -> Value {
    // Opsgenie gives seconds to the millisecond.
    let took = (took * 1000.0).round() / 1000.0;
    json!({key: text, "took": took, "requestId": request_id.unwrap_or_else(request_id_fresh)})
}

/// Errors written `field: what is wrong`, as Opsgenie lists them: `{"priority": "…"}`.
fn by_field(errors: &[String]) -> Map<String, Value> {
    errors
        .iter()
        .map(|e| match e.split_once(": ") {
            Some((field, what)) => (field.to_string(), Value::String(what.to_string())),
            None => ("body".to_string(), Value::String(e.clone())),
        })
        .collect()
}

/// A fresh request id: a random UUID (version 4), as Opsgenie's are.
pub fn request_id_fresh() -> String {
    let mut b = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = crate::secret::hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// What the request's path and query ask; a create when there is no path (a body read from a
/// file, by `hub import` or `hub explain`).
pub fn call(headers: &Headers) -> Result<Call, ParseError> {
    let Some(path) = headers.get(PATH) else {
        return Ok(Call::Create);
    };
    let path = path.strip_prefix(PREFIX).unwrap_or(path);
    let rest = path.trim_end_matches('/');
    if rest == "/v2/alerts" {
        return Ok(Call::Create);
    }
    let wrong = || ParseError::Invalid(format!("{path} is not an Opsgenie alert request hub takes"));
    let rest = rest.strip_prefix("/v2/alerts/").ok_or_else(wrong)?;
    let (raw, verb) = rest.rsplit_once('/').ok_or_else(wrong)?;
    identifier_type(headers.get(QUERY))?;
    let id = identifier(raw)?;
    match verb {
        "close" => Ok(Call::Close(id)),
        "acknowledge" => Ok(Call::Acknowledge(id)),
        "notes" => Ok(Call::Note(id)),
        _ => Err(wrong()),
    }
}

/// `identifierType` of the query: `id` (Opsgenie's default), `alias` or `tiny`. All three name
/// the problem by its id in hub, which is the alert's alias (or, for an alert created without
/// one, its create's request id).
fn identifier_type(query: Option<&str>) -> Result<(), ParseError> {
    for pair in query.unwrap_or_default().split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "identifierType" {
            continue;
        }
        let value = percent_decode_str(value).decode_utf8_lossy();
        if !IDENTIFIER_TYPES.contains(&value.as_ref()) {
            return Err(ParseError::Fields(vec![format!(
                "identifierType: should be one of [ {} ]",
                IDENTIFIER_TYPES.join(", ")
            )]));
        }
    }
    Ok(())
}

/// The alert's identifier from its path segment, decoded; refused when it could not be a
/// problem's id (empty, too long, not UTF-8, with control characters).
fn identifier(raw: &str) -> Result<String, ParseError> {
    let bad = |what: &str| ParseError::Fields(vec![format!("identifier: {what}")]);
    let id = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| bad("is not UTF-8"))?;
    check_id(&id).map_err(|e| bad(&e))?;
    Ok(id.into_owned())
}

/// Why `id` cannot be a problem's id, if it cannot. Any other text can: it is never a file name
/// or a command as it is (files are named from it made safe).
fn check_id(id: &str) -> Result<(), String> {
    if id.trim().is_empty() {
        return Err("is empty".into());
    }
    if id.chars().count() > MAX_KEY_LEN {
        return Err(format!(
            "is longer than {MAX_KEY_LEN} characters (hub's longest problem id)"
        ));
    }
    if id.chars().any(char::is_control) {
        return Err("holds control characters".into());
    }
    Ok(())
}

/// The create's alias, when it gives one (an empty one is none, as Opsgenie has it).
fn alias_of(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("alias")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
}

/// The notification a request of `call` carries. `request` is a live request's fresh id: its
/// identity, and the problem's id for a create without an alias; without it (a file read again)
/// the body is the identity, and names such a problem.
pub fn notification(
    call: &Call,
    body: &[u8],
    request: Option<&str>,
) -> Result<Notification, ParseError> {
    let (key, state, obj) = match call {
        Call::Create => {
            let obj = object(body, "an Opsgenie alert")?;
            let key = check_create(&obj)?
                .or_else(|| request.map(str::to_string))
                .unwrap_or_else(|| digest_id(body));
            (key, "OPEN", obj)
        }
        Call::Close(id) => (id.clone(), "RESOLVED", action_body(body)?),
        Call::Acknowledge(id) => (id.clone(), "ACKNOWLEDGED", action_body(body)?),
        Call::Note(_) => {
            return Err(ParseError::Invalid(
                "a note is not a notification".to_string(),
            ))
        }
    };
    let facts = if state == "OPEN" {
        facts(&obj)
    } else {
        Facts::default()
    };
    Ok(Notification {
        source: Source::Opsgenie,
        problem_key: key,
        state: state.to_string(),
        pid: None,
        title: Some(facts.title.clone()).filter(|t| !t.is_empty()),
        is_test: false,
        body: body.to_vec(),
        facts,
        identity: request.map(|r| format!("opsgenie request {r}").into_bytes()),
        trace: None,
    })
}

/// The body of a close, an acknowledge or a note: optional (an empty body is none), else an
/// object whose `user`, `source` and `note` are strings.
pub fn action_body(body: &[u8]) -> Result<Map<String, Value>, ParseError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let obj = object(body, "an Opsgenie alert action")?;
    let mut errors = Vec::new();
    for key in ["user", "source", "note"] {
        strings(&obj, key, &mut errors);
    }
    if errors.is_empty() {
        Ok(obj)
    } else {
        Err(ParseError::Fields(errors))
    }
}

/// Who a close, acknowledge or note says made it: its `user`, else the integration.
pub fn user_of(obj: &Map<String, Value>) -> String {
    let user: String = text(obj, "user").trim().chars().take(MAX_USER).collect();
    if user.is_empty() {
        "opsgenie".to_string()
    } else {
        user
    }
}

/// Who acknowledged, for a stored Opsgenie acknowledgement: hub acknowledges the problem's
/// escalation in this name (see `dispatch::escalate`). `None` for anything else.
pub fn acknowledged_by(n: &Notification) -> Option<String> {
    if n.source != Source::Opsgenie || n.state != "ACKNOWLEDGED" || n.is_test {
        return None;
    }
    Some(action_body(&n.body).map_or_else(|_| "opsgenie".to_string(), |o| user_of(&o)))
}

/// A field that must be a string when given.
fn strings(obj: &Map<String, Value>, key: &str, errors: &mut Vec<String>) {
    match obj.get(key) {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(_) => errors.push(format!("{key}: should be a string")),
    }
}

/// A field that must be a list of strings when given.
fn string_list(obj: &Map<String, Value>, key: &str, errors: &mut Vec<String>) {
    match obj.get(key) {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
        Some(_) => errors.push(format!("{key}: should be a list of strings")),
    }
}

/// Checks a create as Opsgenie does; its alias when it gives one.
fn check_create(obj: &Map<String, Value>) -> Result<Option<String>, ParseError> {
    let mut errors = Vec::new();
    match obj.get("message") {
        Some(Value::String(m)) if !m.trim().is_empty() => {}
        Some(Value::String(_)) | None | Some(Value::Null) => {
            errors.push("message: Message can not be empty.".to_string())
        }
        Some(_) => errors.push("message: should be a string".to_string()),
    }
    let alias = match obj.get("alias") {
        None | Some(Value::Null) => None,
        Some(Value::String(a)) if a.is_empty() => None,
        Some(Value::String(a)) => match check_id(a) {
            Ok(()) => Some(a.clone()),
            Err(e) => {
                errors.push(format!("alias: {e}"));
                None
            }
        },
        Some(_) => {
            errors.push("alias: should be a string".to_string());
            None
        }
    };
    for key in ["description", "entity", "source", "user", "note"] {
        strings(obj, key, &mut errors);
    }
    match obj.get("priority") {
        None | Some(Value::Null) => {}
        Some(Value::String(p)) if p.is_empty() || PRIORITIES.contains(&p.as_str()) => {}
        Some(_) => errors.push(format!(
            "priority: should be one of [ {} ]",
            PRIORITIES.join(", ")
        )),
    }
    string_list(obj, "tags", &mut errors);
    string_list(obj, "actions", &mut errors);
    match obj.get("details") {
        None | Some(Value::Null) => {}
        Some(Value::Object(d)) if d.values().all(Value::is_string) => {}
        Some(_) => errors.push("details: should be an object of strings".to_string()),
    }
    recipients(obj, "responders", RESPONDER_TYPES, &mut errors);
    recipients(obj, "visibleTo", VISIBLE_TO_TYPES, &mut errors);
    if errors.is_empty() {
        Ok(alias)
    } else {
        Err(ParseError::Fields(errors))
    }
}

/// `responders` and `visibleTo`: lists of `{"type", "id" | "name" | "username"}`.
fn recipients(obj: &Map<String, Value>, key: &str, types: &[&str], errors: &mut Vec<String>) {
    let items = match obj.get(key) {
        None | Some(Value::Null) => return,
        Some(Value::Array(items)) => items,
        Some(_) => {
            errors.push(format!("{key}: should be a list"));
            return;
        }
    };
    let named = |r: &Map<String, Value>| {
        ["id", "name", "username"]
            .iter()
            .any(|k| r.get(*k).and_then(Value::as_str).is_some_and(|v| !v.is_empty()))
    };
    for item in items {
        let ok = item.as_object().is_some_and(|r| {
            r.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| types.contains(&t))
                && named(r)
        });
        if !ok {
            errors.push(format!(
                "{key}: each should have a type of [ {} ] and an id, name or username",
                types.join(", ")
            ));
            return;
        }
    }
}

/// A create's facts: its message as the title, its priority as the severity (`P1`…`P5`, which
/// routes match and which orders its runs), its tags with its details as `key:value` and its
/// responders as `responder:<type>:<name>`, its entity, and a `url` detail as its link.
fn facts(obj: &Map<String, Value>) -> Facts {
    let title: String = text(obj, "message").trim().chars().take(MAX_MESSAGE).collect();
    let priority = Some(text(obj, "priority"))
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| DEFAULT_PRIORITY.to_string());
    let list = |key: &str| -> Vec<String> {
        obj.get(key)
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut tags = list("tags");
    if let Some(details) = obj.get("details").and_then(Value::as_object) {
        tags.extend(
            details
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}:{v}"))),
        );
    }
    if let Some(responders) = obj.get("responders").and_then(Value::as_array) {
        tags.extend(responders.iter().filter_map(|r| {
            let kind = r.get("type")?.as_str()?;
            let name = ["name", "username", "id"]
                .iter()
                .find_map(|k| r.get(*k).and_then(Value::as_str).filter(|v| !v.is_empty()))?;
            Some(format!("responder:{kind}:{name}"))
        }));
    }
    let entity = text(obj, "entity");
    // Grafana puts its alert rule's address there.
    let url = obj
        .get("details")
        .and_then(|d| d.get("url"))
        .and_then(Value::as_str)
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .map(str::to_string);
    Facts {
        title,
        severity: priority,
        impact: String::new(),
        tags,
        url,
        entities: if entity.trim().is_empty() {
            Vec::new()
        } else {
            vec![Entity::named(&entity, "entity")]
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(path: &str) -> Headers {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let mut h = vec![(PATH.to_string(), path.to_string())];
        if !query.is_empty() {
            h.push((QUERY.to_string(), query.to_string()));
        }
        Headers(h)
    }

    /// The config issues of a `sources.opsgenie` entry.
    fn issues_of(entry: Value) -> Vec<String> {
        let mut issues = Issues::default();
        let mut s = Section::at("sources.opsgenie".into(), &entry, &mut issues);
        let gate = super::super::gate::read(&mut s, &Env(&[]), &mut issues);
        let _ = build(gate, &mut s, &Env(&[]), &mut issues);
        s.finish(&mut issues);
        issues.0.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn its_keys_are_required_and_one_word_each() {
        assert!(issues_of(json!({"api_keys": ["k1", "k2"]})).is_empty());
        for (entry, path) in [
            (json!({}), "sources.opsgenie.api_keys"),
            (json!({"api_keys": []}), "sources.opsgenie.api_keys"),
            (json!({"api_keys": ["k1", "two words"]}), "sources.opsgenie.api_keys[1]"),
            (json!({"api_keys": [""]}), "sources.opsgenie.api_keys[0]"),
            (json!({"api_keys": ["3f1c…"]}), "sources.opsgenie.api_keys[0]"),
            (json!({"api_keys": ["k"], "auth": {"bearer": "t"}}), "sources.opsgenie.auth"),
            (json!({"api_keys": ["k"], "routing_keys": ["x"]}), "sources.opsgenie.routing_keys"),
        ] {
            let issues = issues_of(entry.clone());
            assert!(
                issues.iter().any(|i| i.starts_with(path)),
                "{entry}: {issues:?}"
            );
        }
    }

    #[test]
    fn paths_name_the_call_and_the_alert() {
        assert_eq!(call(&Headers::default()), Ok(Call::Create));
        assert_eq!(call(&at("/v2/alerts")), Ok(Call::Create));
        assert_eq!(call(&at("/hooks/opsgenie/v2/alerts")), Ok(Call::Create));
        assert_eq!(
            call(&at("/v2/alerts/abc/close?identifierType=alias")),
            Ok(Call::Close("abc".into()))
        );
        assert_eq!(
            call(&at("/hooks/opsgenie/v2/alerts/a%2Fb%20c/acknowledge")),
            Ok(Call::Acknowledge("a/b c".into()))
        );
        assert_eq!(
            call(&at("/v2/alerts/..%2Fx/notes?identifierType=tiny")),
            Ok(Call::Note("../x".into()))
        );
        for bad in [
            "/v2/alerts/x/close?identifierType=name",
            "/v2/alerts/%FF/close",
            "/v2/alerts/a%0Ab/close",
            "/v2/alerts/%20/close",
            "/v2/alerts/x/delete",
            "/v3/alerts",
        ] {
            assert!(call(&at(bad)).is_err(), "{bad}");
        }
        let long = format!("/v2/alerts/{}/close", "a".repeat(MAX_KEY_LEN + 1));
        assert!(call(&at(&long)).is_err());
    }

    #[test]
    fn a_create_is_checked_as_opsgenie_checks_it() {
        let ok = br#"{"message":"disk full","alias":"$(touch x)","priority":"P1","tags":["env:prod"],
            "details":{"host":"db1"},"entity":"db1","responders":[{"type":"team","name":"ops"}]}"#;
        let n = notification(&Call::Create, ok, Some("r-1")).unwrap();
        assert_eq!((n.problem_key.as_str(), n.state.as_str()), ("$(touch x)", "OPEN"));
        assert_eq!(n.facts.severity, "P1");
        assert_eq!(
            n.facts.tags,
            ["env:prod", "host:db1", "responder:team:ops"]
        );
        assert_eq!(n.facts.entities[0].name, "db1");
        assert_eq!(n.identity.as_deref(), Some(&b"opsgenie request r-1"[..]));
        // Without an alias: the request's id, or (read from a file) the body's digest.
        let bare = br#"{"message":"m"}"#;
        assert_eq!(notification(&Call::Create, bare, Some("r-2")).unwrap().problem_key, "r-2");
        let again = notification(&Call::Create, bare, None).unwrap();
        assert_eq!(again.problem_key, digest_id(bare));
        assert_eq!(again.facts.severity, "P3");
        for (bad, field) in [
            (&br#"{"message":""}"#[..], "message"),
            (br#"{"message":"m","priority":"P6"}"#, "priority"),
            (br#"{"message":"m","priority":1}"#, "priority"),
            (br#"{"message":"m","tags":"a"}"#, "tags"),
            (br#"{"message":"m","details":{"a":1}}"#, "details"),
            (br#"{"message":"m","alias":7}"#, "alias"),
            (br#"{"message":"m","responders":[{"type":"robot","name":"x"}]}"#, "responders"),
            (br#"{"message":"m","visibleTo":[{"type":"team"}]}"#, "visibleTo"),
        ] {
            match notification(&Call::Create, bad, None) {
                Err(ParseError::Fields(e)) => {
                    assert!(e.iter().any(|e| e.starts_with(field)), "{e:?}")
                }
                other => panic!("{}: {other:?}", String::from_utf8_lossy(bad)),
            }
        }
        assert!(matches!(
            notification(&Call::Create, b"[]", None),
            Err(ParseError::Invalid(_))
        ));
        assert!(matches!(
            notification(&Call::Create, b"{", None),
            Err(ParseError::NotJson(_))
        ));
    }

    #[test]
    fn close_and_acknowledge_name_their_alert_and_who_acted() {
        let n = notification(&Call::Close("a".into()), b"", Some("r")).unwrap();
        assert_eq!((n.problem_key.as_str(), n.state.as_str()), ("a", "RESOLVED"));
        let n = notification(
            &Call::Acknowledge("a".into()),
            br#"{"user":"Ana Lima","note":"on it"}"#,
            None,
        )
        .unwrap();
        assert_eq!(n.state, "ACKNOWLEDGED");
        assert_eq!(acknowledged_by(&n).as_deref(), Some("Ana Lima"));
        let anonymous = notification(&Call::Acknowledge("a".into()), b"{}", None).unwrap();
        assert_eq!(acknowledged_by(&anonymous).as_deref(), Some("opsgenie"));
        assert!(notification(&Call::Close("a".into()), br#"{"user":1}"#, None).is_err());
        assert!(notification(&Call::Close("a".into()), b"[1]", None).is_err());
    }

    #[test]
    fn answers_have_opsgenie_shape() {
        let a = result(ACCEPTED, 0.0123, None);
        assert_eq!(a["result"], ACCEPTED);
        assert_eq!(a["took"], 0.012);
        let id = a["requestId"].as_str().unwrap();
        assert_eq!((id.len(), &id[14..15]), (36, "4"));
        let refused = Refusal::Parse(ParseError::Fields(vec![
            "priority: should be one of [ P1 ]".into(),
        ]));
        let reply = refusal(&Failure {
            status: 422,
            detail: "x",
            refusal: Some(&refused),
            took: std::time::Duration::ZERO,
        })
        .unwrap();
        assert_eq!(reply.status, 422);
        assert_eq!(reply.body["errors"]["priority"], "should be one of [ P1 ]");
        assert_eq!(reply.body["message"], NOT_PROCESSABLE);
    }
}
