//! The one ingest handler, mounted at every path of every source: is the source enabled, may this
//! sender post, is the body JSON within the size limit, does the source accept it? Then store, and
//! only then answer, in the shape that source's senders read.

use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;

use rocket::data::{ByteUnit, Data};
use rocket::http::{ContentType, Method, Status};
use rocket::request::Request;
use rocket::response::{self, Responder};
use rocket::route::{Handler, Outcome, Route};

use super::error::ApiError;
use super::{App, StatusJson};
use crate::domain::Notification;
use crate::sources::{Failure, Headers, Receipt, Refusal, Reply, Source, PATH, QUERY};
use crate::store::Accepted;
use crate::telemetry::{Kind, Span, SpanContext};

/// A route for each path of each source; a source that is not enabled answers 404 saying so.
pub fn routes() -> Vec<Route> {
    Source::ALL
        .iter()
        .flat_map(|&source| {
            source
                .paths()
                .iter()
                .map(move |path| Route::new(Method::Post, path, Ingest(source)))
        })
        .collect()
}

#[derive(Clone)]
struct Ingest(Source);

/// An ingest request's body as the listener read it, kept in the request for its route to take.
struct HandedOver(Mutex<Option<Bytes>>);

/// Gives an ingest request (a POST to a source's path) its body without copying it: Rocket's
/// in-process requests take their body only as a copy (`LocalRequest::set_body` copies the bytes
/// into a `Vec` of its own), and a route reads it out of Rocket's `Data` only as another (through
/// `tokio::io::copy`'s buffer). So the body is kept in the request's local cache, which the route
/// takes it from, and Rocket's body stays empty. Any other request's body is given back, for
/// Rocket's `Data`, which the other routes' guards (forms, JSON) read.
pub(super) fn hand_over(req: &Request<'_>, body: Bytes) -> Result<(), Bytes> {
    let path = req.uri().path();
    let ingest = req.method() == Method::Post && Source::ALL.iter().any(|s| s.takes(path.as_str()));
    if !ingest {
        return Err(body);
    }
    req.local_cache(|| HandedOver(Mutex::new(Some(body))));
    Ok(())
}

/// The body [`hand_over`] kept, taken out of the request; `None` for a request that came another
/// way (with its body in Rocket's `Data`).
fn handed_over(req: &Request<'_>) -> Option<Bytes> {
    let kept = req.local_cache(|| HandedOver(Mutex::new(None)));
    kept.0.lock().unwrap_or_else(|p| p.into_inner()).take()
}

#[rocket::async_trait]
impl Handler for Ingest {
    async fn handle<'r>(&self, req: &'r Request<'_>, data: Data<'r>) -> Outcome<'r> {
        let Some(app) = req.rocket().state::<App>() else {
            return Outcome::error(Status::InternalServerError);
        };
        Outcome::from(req, receive(app, self.0, req, data).await)
    }
}

/// Who sent a request, for its log lines and metrics.
struct Sender {
    source: Source,
    remote: String,
    started: Instant,
    /// The request's span, when traces are on: what it stores belongs to its trace.
    trace: Option<SpanContext>,
}

async fn receive(app: &App, source: Source, req: &Request<'_>, data: Data<'_>) -> Answer {
    let headers = headers_of(req);
    let remote = req
        .client_ip()
        .map_or_else(|| "-".to_string(), |ip| ip.to_string());
    let span = crate::telemetry::on().then(|| ingest_span(source, req, &headers, &remote));
    let sender = Sender {
        source,
        remote,
        started: Instant::now(),
        trace: span.as_ref().map(|s| s.context),
    };
    let settings = app.settings.get();
    let plugin = settings.sources.get(source);
    let mut body = Bytes::new();
    let mut refusal = None;
    let result = async {
        let plugin = plugin.ok_or_else(|| {
            ApiError::not_found(format!(
                "the {source} source is not enabled (add sources.{source} to config.json)"
            ))
        })?;
        let refused = |r: Refusal, refusal: &mut Option<Refusal>| {
            *refusal = Some(r.clone());
            ApiError::from(r)
        };
        plugin
            .gate()
            .check(&headers)
            .map_err(|r| refused(r, &mut refusal))?;
        plugin
            .gate()
            .admit()
            .map_err(|r| refused(r, &mut refusal))?;
        check_json_content_type(req.content_type())?;
        body = match handed_over(req) {
            Some(body) => within(body, app.max_body_bytes)?,
            None => read_capped(data, app.max_body_bytes).await?,
        };
        plugin
            .verify(&headers, &body)
            .map_err(|r| refused(r, &mut refusal))?;
        let notifications = plugin
            .receive(&headers, &body)
            .map_err(|r| refused(r, &mut refusal))?;
        let receipts = store(app, &sender, notifications).await?;
        let problems = span.is_some().then(|| problem_ids(&receipts));
        Ok::<_, ApiError>((plugin.accepted(&body, &receipts), problems))
    }
    .await;
    match result {
        Ok((reply, problems)) => {
            if let Some(mut span) = span {
                span.set("http.response.status_code", i64::from(reply.status));
                if let Some((problems, outcome)) = problems {
                    set_problems(&mut span, problems);
                    span.set("hub.outcome", outcome);
                }
                span.end();
            }
            Answer::Reply(reply)
        }
        Err(e) => {
            let failure = Failure {
                status: e.status.code,
                detail: &e.detail,
                refusal: refusal.as_ref(),
                took: sender.started.elapsed(),
            };
            let own = settings
                .sources
                .answering(source)
                .and_then(|p| p.refused(&body, &failure));
            let status = own.as_ref().map_or(e.status.code, |r| r.status);
            let outcome = match refusal {
                Some(Refusal::OverRate { .. } | Refusal::Throttled(_)) => "rate_limited",
                _ => "rejected",
            };
            app.metrics
                .answered(source, outcome, sender.started.elapsed().as_secs_f64());
            tracing::warn!(
                %source, outcome, status, error = e.error, detail = %e.detail,
                remote = %sender.remote, "notification"
            );
            if let Some(mut span) = span {
                span.set("http.response.status_code", i64::from(status));
                span.set("hub.outcome", outcome);
                span.set("error.type", e.error);
                // As HTTP servers do: a sender's mistake (4xx) is not a failure of hub's.
                if status >= 500 {
                    span.fail(e.detail.clone());
                }
                span.end();
            }
            match own {
                Some(reply) => Answer::Reply(reply),
                None => Answer::Error(e),
            }
        }
    }
}

/// The span of one ingest request: a child of the sender's `traceparent` when it sent a valid
/// one, else the first of a new trace.
fn ingest_span(source: Source, req: &Request<'_>, headers: &Headers, remote: &str) -> Span {
    let parent = headers.get("traceparent").and_then(SpanContext::parse);
    let mut span = Span::start(format!("ingest {source}"), Kind::Server, parent);
    span.set("hub.source", source.as_str());
    span.set("http.request.method", "POST");
    span.set("url.path", req.uri().path().to_string());
    span.set("client.address", remote.to_string());
    span
}

/// The problems a request carried, and what became of it (`stored` when anything was).
fn problem_ids(receipts: &[Receipt]) -> (Vec<String>, &'static str) {
    let ids = distinct(receipts.iter().map(|r| &r.problem_key));
    let outcome = if receipts.iter().any(|r| r.outcome == "stored") {
        "stored"
    } else {
        receipts.first().map_or("empty", |r| r.outcome)
    };
    (ids, outcome)
}

/// Each problem id once, in the order they came.
fn distinct<'a>(keys: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for key in keys {
        if !ids.contains(key) {
            ids.push(key.clone());
        }
    }
    ids
}

/// `hub.problem_id`: one problem's id; a request with several (an Alertmanager group) names
/// them all in `hub.problem_ids`.
fn set_problems(span: &mut Span, mut problems: Vec<String>) {
    if problems.len() == 1 {
        span.set("hub.problem_id", problems.remove(0));
    } else {
        span.set("hub.notifications", problems.len());
        span.set("hub.problem_ids", problems);
    }
}

/// A request's headers, with its path and query under the names no header can have (see
/// [`crate::sources::PATH`]).
pub(super) fn headers_of(req: &Request<'_>) -> Headers {
    let mut headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|h| (h.name().to_string(), h.value().to_string()))
        .collect();
    headers.push((PATH.to_string(), req.uri().path().to_string()));
    if let Some(query) = req.uri().query() {
        headers.push((QUERY.to_string(), query.to_string()));
    }
    Headers(headers)
}

/// The heartbeats whose `match` covers one of these notifications.
fn heartbeats_fed(app: &App, notifications: &[Notification]) -> Vec<String> {
    let settings = app.settings.get();
    let config = &settings.config;
    let watching: Vec<_> = config
        .heartbeats
        .iter()
        .filter(|h| !h.matchers.is_empty())
        .collect();
    if watching.is_empty() {
        return Vec::new();
    }
    let mut fed: Vec<String> = Vec::new();
    for n in notifications.iter().filter(|n| !n.is_test) {
        let problem = crate::actions::Problem::arriving(n, config.dynatrace.tenant.as_deref());
        for h in &watching {
            if !fed.contains(&h.name) && crate::matcher::all_match(&h.matchers, &problem) {
                fed.push(h.name.clone());
            }
        }
    }
    fed
}

/// Stores what a request carried and logs each notification; the answer waits for this.
async fn store(
    app: &App,
    sender: &Sender,
    notifications: Vec<Notification>,
) -> Result<Vec<Receipt>, ApiError> {
    let described: Vec<(String, String, bool)> = notifications
        .iter()
        .map(|n| (n.problem_key.clone(), n.state.clone(), n.is_test))
        .collect();
    let beats = heartbeats_fed(app, &notifications);
    let mut notifications = notifications;
    let span = sender.trace.map(|ingest| {
        let traceparent = ingest.traceparent();
        for n in &mut notifications {
            n.trace = Some(traceparent.clone());
        }
        let mut span = Span::start("store", Kind::Internal, Some(ingest));
        span.set("hub.source", sender.source.as_str());
        span.set("db.system.name", app.store.kind());
        set_problems(&mut span, distinct(described.iter().map(|(key, _, _)| key)));
        span
    });
    let accepted = app.store.accept_all(notifications).await;
    if let Some(mut span) = span {
        match &accepted {
            Ok(a) => {
                let duplicates = a
                    .iter()
                    .filter(|a| matches!(a, Accepted::Duplicate { .. }))
                    .count();
                span.set("hub.stored", a.len() - duplicates);
                span.set("hub.duplicates", duplicates);
            }
            Err(e) => span.fail(e.to_string()),
        }
        span.end();
    }
    let accepted = accepted?;
    // A redelivery beats too: Alertmanager sends an always-firing Watchdog identically.
    for name in beats {
        // The notification is stored: a beat that cannot be written must not make its sender
        // send it again.
        if let Err(e) = app.store.beat(name.clone(), crate::clock::now_ms()).await {
            tracing::error!(heartbeat = name.as_str(), error = %e, "cannot record a heartbeat's beat");
        }
    }
    let source = sender.source;
    let receipts: Vec<Receipt> = described
        .into_iter()
        .zip(accepted)
        .map(|((problem_key, state, is_test), a)| {
            let outcome = match (&a, is_test) {
                (Accepted::Duplicate { .. }, _) => "duplicate",
                (Accepted::Stored { .. }, true) => "test",
                (Accepted::Stored { .. }, false) => "stored",
            };
            Receipt {
                problem_key,
                state,
                outcome,
                file: a.file_name().to_string(),
                took: sender.started.elapsed(),
            }
        })
        .collect();
    for r in &receipts {
        tracing::info!(
            %source, problem_id = r.problem_key.as_str(), state = r.state.as_str(), outcome = r.outcome,
            file = r.file, remote = %sender.remote, "notification"
        );
        app.metrics
            .answered(source, r.outcome, sender.started.elapsed().as_secs_f64());
        if r.outcome == "test" {
            tracing::info!(%source, "test notification received; no actions run for it");
        }
    }
    Ok(receipts)
}

/// A source's own answer, or hub's error answer.
pub(super) enum Answer {
    Reply(Reply),
    Error(ApiError),
}

impl<'r> Responder<'r, 'static> for Answer {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        match self {
            Answer::Error(e) => e.respond_to(req),
            Answer::Reply(Reply { status, body }) => {
                StatusJson(Status::new(status), body).respond_to(req)
            }
        }
    }
}

/// JSON bodies only. A missing Content-Type is accepted (some senders omit it); a form or any other
/// declared type is refused, since it is almost always a misconfigured sender (curl's default `-d`).
pub(super) fn check_json_content_type(content_type: Option<&ContentType>) -> Result<(), ApiError> {
    match content_type {
        None => Ok(()),
        Some(ct) if ct.is_json() || ct.sub().as_str().ends_with("+json") => Ok(()),
        Some(ct) => Err(ApiError::unsupported_media_type(format!(
            "expected Content-Type: application/json, got {}/{}",
            ct.top(),
            ct.sub()
        ))),
    }
}

/// The body, unless it is over the limit (the listener reads one byte past it, so that shows).
fn within(body: Bytes, limit: u64) -> Result<Bytes, ApiError> {
    if body.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(body)
}

pub(super) async fn read_capped(body: Data<'_>, limit: u64) -> Result<Bytes, ApiError> {
    let capped = body
        .open(ByteUnit::from(limit))
        .into_bytes()
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot read body: {e}")))?;
    if !capped.is_complete() {
        return Err(too_large(limit));
    }
    Ok(Bytes::from(capped.into_inner()))
}

fn too_large(limit: u64) -> ApiError {
    ApiError::payload_too_large(format!(
        "body is larger than the limit of {limit} bytes (webhook.max_body_bytes)"
    ))
}
