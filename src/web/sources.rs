//! The endpoints of the sources besides Dynatrace. Each one: enabled? authenticated? a JSON body
//! within the size limit? signed, where the source signs? Then parse, store, and only then answer,
//! in the shape that source's sender expects.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::io::Cursor;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rocket::data::Data;
use rocket::http::{ContentType, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::response::{self, Responder, Response};
use rocket::{post, routes, Route, State};
use serde_json::{json, Value};

use super::auth::{check_source_auth, token_matches};
use super::error::ApiError;
use super::ingest::{check_json_content_type, parse_error, read_capped, store_error};
use super::App;
use crate::config::SourceConfig;
use crate::domain::{Notification, Source};
use crate::sources::{self, Headers, ParseError};
use crate::store::Accepted;

pub fn routes() -> Vec<Route> {
    routes![
        alertmanager,
        pagerduty_enqueue,
        pagerduty_hook,
        monasca_hook,
        monasca_openstack,
        cloudstack,
        ucloud
    ]
}

/// What every source endpoint reads from the request besides its body.
pub struct Meta {
    headers: Headers,
    content_type: Option<ContentType>,
    remote: String,
    started: Instant,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Meta {
    type Error = Infallible;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        Outcome::Success(Meta {
            headers: Headers(
                req.headers()
                    .iter()
                    .map(|h| (h.name().to_string(), h.value().to_string()))
                    .collect(),
            ),
            content_type: req.content_type().cloned(),
            remote: req
                .client_ip()
                .map_or_else(|| "-".to_string(), |ip| ip.to_string()),
            started: Instant::now(),
        })
    }
}

/// A JSON answer with any status.
pub struct Answer(pub Status, pub Value);

impl<'r> Responder<'r, 'static> for Answer {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let body = self.1.to_string();
        Response::build()
            .status(self.0)
            .header(ContentType::JSON)
            .sized_body(body.len(), Cursor::new(body))
            .ok()
    }
}

/// Events a minute per key, for PagerDuty's 429.
#[derive(Default)]
pub struct RateLimiter(Mutex<HashMap<String, VecDeque<Instant>>>);

impl RateLimiter {
    fn allow(&self, key: &str, per_minute: u32) -> bool {
        let now = Instant::now();
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let times = map.entry(key.to_string()).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            times.pop_front();
        }
        if times.len() >= per_minute as usize {
            return false;
        }
        times.push_back(now);
        true
    }
}

/// Everything before parsing: the source is on, the sender is who it says, the body is readable.
async fn admit(
    app: &App,
    source: Source,
    meta: &Meta,
    body: Data<'_>,
) -> Result<(SourceConfig, Vec<u8>), ApiError> {
    let Some(config) = app.sources.get(source) else {
        return Err(ApiError::new(
            Status::NotFound,
            "not_found",
            format!("the {source} source is not enabled (add sources.{source} to config.json)"),
        ));
    };
    if let Err(scheme) = check_source_auth(&config.auth, &meta.headers) {
        return Err(ApiError::unauthorized_for(
            scheme,
            format!("send the credentials configured in sources.{source}.auth"),
        ));
    }
    check_json_content_type(meta.content_type.as_ref())?;
    let bytes = read_capped(body, app.max_body_bytes).await?;
    if let (Source::Cloudstack, Some(secret)) = (source, &config.secret) {
        sources::cloudstack::verify(secret, &meta.headers, &bytes)
            .map_err(|e| ApiError::unauthorized_for("HMAC", e.to_string()))?;
    }
    Ok((config.clone(), bytes))
}

/// Stores what a request carried and logs each notification; the answer waits for this.
async fn store(
    app: &App,
    source: Source,
    meta: &Meta,
    notifications: Vec<Notification>,
) -> Result<Vec<Accepted>, ApiError> {
    let keys: Vec<(String, String)> = notifications
        .iter()
        .map(|n| (n.problem_key.clone(), n.state.clone()))
        .collect();
    let accepted = app
        .store
        .accept_all(notifications)
        .await
        .map_err(store_error)?;
    for ((key, state), a) in keys.iter().zip(&accepted) {
        let outcome = match a {
            Accepted::Stored { .. } => "stored",
            Accepted::Duplicate { .. } => "duplicate",
        };
        tracing::info!(
            %source, problem_id = ?key, state = ?state, outcome, file = a.file_name(),
            remote = %meta.remote, "notification"
        );
        app.metrics
            .answered(source, outcome, meta.started.elapsed().as_secs_f64());
    }
    Ok(accepted)
}

fn log_rejected(app: &App, source: Source, meta: &Meta, status: u16, detail: &str) {
    app.metrics
        .answered(source, "rejected", meta.started.elapsed().as_secs_f64());
    tracing::warn!(
        %source, outcome = "rejected", status, detail = %detail, remote = %meta.remote,
        "notification"
    );
}

/// The common answer: how many notifications were stored and how many were known already.
async fn generic(
    app: &App,
    source: Source,
    meta: Meta,
    body: Data<'_>,
) -> Result<Answer, ApiError> {
    let result = async {
        let (_, bytes) = admit(app, source, &meta, body).await?;
        let notifications = sources::parse(source, &meta.headers, &bytes).map_err(parse_error)?;
        let accepted = store(app, source, &meta, notifications).await?;
        let stored = accepted
            .iter()
            .filter(|a| matches!(a, Accepted::Stored { .. }))
            .count();
        let files: Vec<&str> = accepted.iter().map(Accepted::file_name).collect();
        Ok::<_, ApiError>(Answer(
            Status::Ok,
            json!({
                "status": if stored == 0 { "duplicate" } else { "stored" },
                "stored": stored,
                "duplicates": accepted.len() - stored,
                "files": files,
            }),
        ))
    }
    .await;
    if let Err(e) = &result {
        log_rejected(app, source, &meta, e.status.code, &e.detail);
    }
    result
}

#[post("/hooks/alertmanager", data = "<body>")]
async fn alertmanager(app: &State<App>, meta: Meta, body: Data<'_>) -> Result<Answer, ApiError> {
    generic(app, Source::Alertmanager, meta, body).await
}

#[post("/hooks/monasca", data = "<body>")]
async fn monasca_hook(app: &State<App>, meta: Meta, body: Data<'_>) -> Result<Answer, ApiError> {
    generic(app, Source::Monasca, meta, body).await
}

/// The path Monasca's webhook notifier examples use.
#[post("/openstack/alerts", data = "<body>")]
async fn monasca_openstack(
    app: &State<App>,
    meta: Meta,
    body: Data<'_>,
) -> Result<Answer, ApiError> {
    generic(app, Source::Monasca, meta, body).await
}

#[post("/hooks/cloudstack", data = "<body>")]
async fn cloudstack(app: &State<App>, meta: Meta, body: Data<'_>) -> Result<Answer, ApiError> {
    generic(app, Source::Cloudstack, meta, body).await
}

/// PagerDuty Events API v2's own path, so a PagerDuty client needs only a URL change.
#[post("/v2/enqueue", data = "<body>")]
async fn pagerduty_enqueue(
    app: &State<App>,
    meta: Meta,
    body: Data<'_>,
) -> Result<Answer, ApiError> {
    pagerduty(app, meta, body).await
}

#[post("/hooks/pagerduty", data = "<body>")]
async fn pagerduty_hook(app: &State<App>, meta: Meta, body: Data<'_>) -> Result<Answer, ApiError> {
    pagerduty(app, meta, body).await
}

/// Answers as PagerDuty does: 202 with the dedup key, 400 with the list of what is invalid, 429
/// when a routing key sends too fast.
/// Failures before the event is read (not enabled, auth, size) and storage failures keep hub's own
/// error shape.
async fn pagerduty(app: &App, meta: Meta, body: Data<'_>) -> Result<Answer, ApiError> {
    let source = Source::Pagerduty;
    let invalid = |errors: Vec<String>| {
        Answer(
            Status::BadRequest,
            json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors}),
        )
    };
    let (config, bytes) = match admit(app, source, &meta, body).await {
        Ok(x) => x,
        Err(e) => {
            log_rejected(app, source, &meta, e.status.code, &e.detail);
            return Err(e);
        }
    };
    let event = match sources::pagerduty::parse(&bytes) {
        Ok(event) => event,
        Err(e) => {
            log_rejected(app, source, &meta, 400, &e.to_string());
            return Ok(invalid(match e {
                ParseError::Fields(errors) => errors,
                other => vec![other.to_string()],
            }));
        }
    };
    if !config
        .routing_keys
        .iter()
        .any(|k| token_matches(Some(&event.routing_key), k))
    {
        log_rejected(app, source, &meta, 400, "unknown routing key");
        return Ok(invalid(vec![
            "'routing_key' is not one of this hub's integration keys".to_string(),
        ]));
    }
    if !app
        .pagerduty_rate
        .allow(&event.routing_key, config.rate_limit_per_minute)
    {
        log_rejected(app, source, &meta, 429, "rate limit");
        return Ok(Answer(
            Status::TooManyRequests,
            json!({"status": "throttle event",
                   "message": "Requests for this service are arriving too quickly. Please retry later."}),
        ));
    }
    let dedup_key = event.dedup_key.clone();
    store(app, source, &meta, vec![event.notification]).await?;
    Ok(Answer(
        Status::Accepted,
        json!({"status": "success", "message": "Event processed", "dedup_key": dedup_key}),
    ))
}

/// UCloud reads `RetCode`: 0 only once the alarm is stored; anything else makes it retry.
#[post("/hooks/ucloud", data = "<body>")]
async fn ucloud(app: &State<App>, meta: Meta, body: Data<'_>) -> Answer {
    let source = Source::Ucloud;
    let mut session = String::new();
    let result = async {
        let (_, bytes) = admit(app, source, &meta, body).await?;
        session = sources::ucloud::session_id(&bytes);
        let notification = sources::ucloud::parse(&bytes).map_err(parse_error)?;
        store(app, source, &meta, vec![notification]).await
    }
    .await;
    let result: Result<Vec<Accepted>, ApiError> = result;
    match result {
        Ok(_) => Answer(Status::Ok, json!({"SessionID": session, "RetCode": 0})),
        Err(e) => {
            log_rejected(app, source, &meta, e.status.code, &e.detail);
            Answer(
                e.status,
                json!({"SessionID": session, "RetCode": e.status.code, "Message": e.detail}),
            )
        }
    }
}
