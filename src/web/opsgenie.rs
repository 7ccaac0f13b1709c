//! Opsgenie's requests that store no notification, behind the Opsgenie source's API keys and
//! answered as Opsgenie answers: an alert's notes (`POST /v2/alerts/{id}/notes`), kept in the
//! audit log since hub's problems have no notes, and heartbeat pings (`GET`, `POST`, `PUT` or
//! `PATCH /v2/heartbeats/{name}/ping`), beats of hub's heartbeat of that name. Both also under
//! `/hooks/opsgenie`, as the source's other paths are.

use std::time::Instant;

use percent_encoding::percent_decode_str;
use rocket::data::Data;
use rocket::http::{Method, Status};
use rocket::request::Request;
use rocket::route::{Handler, Outcome, Route};

use super::error::ApiError;
use super::ingest::{self, Answer};
use super::App;
use crate::domain::Source;
use crate::people::Via;
use crate::sources::opsgenie::{self, Call, PREFIX};
use crate::sources::{Failure, Headers, ParseError, Refusal, Reply, PATH};
use crate::store::AuditRow;

/// Opsgenie's limit on a note.
const MAX_NOTE: usize = 25_000;

pub fn routes() -> Vec<Route> {
    let mut routes = Vec::new();
    for prefix in ["", PREFIX] {
        routes.push(Route::new(
            Method::Post,
            &format!("{prefix}/v2/alerts/<identifier>/notes"),
            Genie::Note,
        ));
        for method in [Method::Get, Method::Post, Method::Put, Method::Patch] {
            routes.push(Route::new(
                method,
                &format!("{prefix}/v2/heartbeats/<name>/ping"),
                Genie::Ping,
            ));
        }
    }
    routes
}

#[derive(Clone, Copy)]
enum Genie {
    Note,
    Ping,
}

#[rocket::async_trait]
impl Handler for Genie {
    async fn handle<'r>(&self, req: &'r Request<'_>, data: Data<'r>) -> Outcome<'r> {
        let Some(app) = req.rocket().state::<App>() else {
            return Outcome::error(Status::InternalServerError);
        };
        Outcome::from(req, answer(app, *self, req, data).await)
    }
}

async fn answer(app: &App, kind: Genie, req: &Request<'_>, data: Data<'_>) -> Answer {
    let started = Instant::now();
    let headers = ingest::headers_of(req);
    let mut refusal = None;
    let done = match kind {
        Genie::Note => note(app, req, &headers, data, &mut refusal, started).await,
        Genie::Ping => ping(app, &headers, &mut refusal, started).await,
    };
    match done {
        Ok(reply) => Answer::Reply(reply),
        Err(e) => {
            let remote = req
                .client_ip()
                .map_or_else(|| "-".to_string(), |ip| ip.to_string());
            tracing::warn!(
                source = "opsgenie", status = e.status.code, error = e.error, detail = %e.detail,
                remote, "opsgenie request refused"
            );
            let failure = Failure {
                status: e.status.code,
                detail: &e.detail,
                refusal: refusal.as_ref(),
                took: started.elapsed(),
            };
            match opsgenie::refusal(&failure) {
                Some(reply) => Answer::Reply(reply),
                None => Answer::Error(e),
            }
        }
    }
}

/// The source is enabled and the request carries one of its keys.
fn allowed(app: &App, headers: &Headers, refusal: &mut Option<Refusal>) -> Result<(), ApiError> {
    let settings = app.settings.get();
    let plugin = settings.sources.get(Source::Opsgenie).ok_or_else(|| {
        ApiError::not_found(
            "the opsgenie source is not enabled (add sources.opsgenie to config.json)",
        )
    })?;
    plugin
        .gate()
        .check(headers)
        .and_then(|()| plugin.gate().admit())
        .map_err(|r| refused(r, refusal))
}

fn refused(r: Refusal, refusal: &mut Option<Refusal>) -> ApiError {
    *refusal = Some(r.clone());
    ApiError::from(r)
}

/// A note on an alert: one row of the audit log (`note`, on `opsgenie/<id>`), written before the
/// answer, so a 202 means it is kept.
async fn note(
    app: &App,
    req: &Request<'_>,
    headers: &Headers,
    data: Data<'_>,
    refusal: &mut Option<Refusal>,
    started: Instant,
) -> Result<Reply, ApiError> {
    allowed(app, headers, refusal)?;
    ingest::check_json_content_type(req.content_type())?;
    let body = ingest::read_capped(data, app.max_body_bytes).await?;
    let (id, obj) = read_note(headers, &body).map_err(|e| refused(e.into(), refusal))?;
    let user = opsgenie::user_of(&obj);
    let text = crate::domain::text(&obj, "note");
    let row = AuditRow {
        id: 0,
        at_ms: crate::clock::now_ms(),
        actor: user.clone(),
        token_id: None,
        // An API key names an integration, not a person.
        verified: false,
        via: Via::Opsgenie.as_str().to_string(),
        from_addr: req
            .client_ip()
            .map_or_else(|| "unknown".to_string(), |ip| ip.to_string()),
        action: "note".to_string(),
        target: format!("{}/{id}", Source::Opsgenie),
        detail: text,
    };
    app.store.record_audit(row).await?;
    tracing::info!(
        source = "opsgenie",
        problem_id = id.as_str(),
        by = user.as_str(),
        "note kept"
    );
    Ok(Reply {
        status: 202,
        body: opsgenie::result(
            "Request will be processed",
            started.elapsed().as_secs_f64(),
            None,
        ),
    })
}

/// A note's alert and body, checked as Opsgenie checks them: `note` is required.
fn read_note(
    headers: &Headers,
    body: &[u8],
) -> Result<(String, serde_json::Map<String, serde_json::Value>), ParseError> {
    let Call::Note(id) = opsgenie::call(headers)? else {
        return Err(ParseError::Invalid("not a note's path".to_string()));
    };
    let obj = opsgenie::action_body(body)?;
    let note = crate::domain::text(&obj, "note");
    if note.trim().is_empty() {
        return Err(ParseError::Fields(vec![
            "note: Note can not be empty.".to_string()
        ]));
    }
    if note.chars().count() > MAX_NOTE {
        return Err(ParseError::Fields(vec![format!(
            "note: should be at most {MAX_NOTE} characters"
        )]));
    }
    Ok((id, obj))
}

/// A ping: a beat of hub's heartbeat of that name. Opsgenie answers a ping for any name; hub
/// answers 404 for a name its config has not, so a sender that pings the wrong one learns it.
async fn ping(
    app: &App,
    headers: &Headers,
    refusal: &mut Option<Refusal>,
    started: Instant,
) -> Result<Reply, ApiError> {
    allowed(app, headers, refusal)?;
    let name = heartbeat_name(headers.get(PATH).unwrap_or_default());
    let settings = app.settings.get();
    let known = name
        .as_deref()
        .is_some_and(|n| settings.config.heartbeats.iter().any(|h| h.name == n));
    let Some(name) = name.filter(|_| known) else {
        return Err(ApiError::unknown_heartbeat(
            "no heartbeat has this name in hub's config (heartbeats)",
        ));
    };
    app.store.beat(name.clone(), crate::clock::now_ms()).await?;
    tracing::info!(
        source = "opsgenie",
        heartbeat = name.as_str(),
        "heartbeat ping"
    );
    Ok(Reply {
        status: 202,
        body: opsgenie::result(
            "PONG - Heartbeat received",
            started.elapsed().as_secs_f64(),
            None,
        ),
    })
}

/// The heartbeat's name from `/v2/heartbeats/{name}/ping`, decoded.
fn heartbeat_name(path: &str) -> Option<String> {
    let path = path.strip_prefix(PREFIX).unwrap_or(path);
    let raw = path
        .strip_prefix("/v2/heartbeats/")?
        .strip_suffix("/ping")?;
    percent_decode_str(raw)
        .decode_utf8()
        .ok()
        .map(|n| n.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_names_its_heartbeat() {
        assert_eq!(
            heartbeat_name("/v2/heartbeats/nightly-backup/ping").as_deref(),
            Some("nightly-backup")
        );
        assert_eq!(
            heartbeat_name("/hooks/opsgenie/v2/heartbeats/a%20b/ping").as_deref(),
            Some("a b")
        );
        assert_eq!(heartbeat_name("/v2/heartbeats/%FF/ping"), None);
        assert_eq!(heartbeat_name("/v2/alerts/x/ping"), None);
    }
}
