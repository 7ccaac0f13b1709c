//! Silences through the API and the status page, and heartbeats' beats.

use rocket::data::{Data, ToByteUnit};
use rocket::form::{Form, FromForm};
use rocket::http::{ContentType, Status};
use rocket::response::Redirect;
use rocket::{delete, get, post, routes, Route, State};
use serde_json::{json, Value};

use super::auth::{Caller, Presented};
use super::error::ApiError;
use super::{view, App, JsonOk, StatusJson};
use crate::clock::now_ms;
use crate::credentials::BasicAuth;
use crate::people::{Role, Via};
use crate::silences::{self, SilenceError};

pub fn routes() -> Vec<Route> {
    routes![list, add, expire, add_from_page, expire_from_page, beat]
}

impl From<SilenceError> for ApiError {
    fn from(e: SilenceError) -> Self {
        match e {
            SilenceError::Store(e) => ApiError::from(e),
            other => ApiError::invalid_silence(other.to_string()),
        }
    }
}

#[get("/api/silences")]
async fn list(app: &State<App>, caller: Caller) -> Result<JsonOk, ApiError> {
    app.require(&caller, Role::Viewer, Via::Api).await?;
    let settings = app.settings.get();
    Ok(JsonOk(
        silences::list(&app.store, &settings.config.maintenance).await?,
    ))
}

/// The largest silence the API takes: its matchers (each at most
/// [`crate::matcher::MAX_VALUE_CHARS`]), a comment of 1,000 characters and an author of 200 fit
/// with room to spare.
pub const MAX_SILENCE_BYTES: u64 = 16 * 1024;

/// Adds a silence: `{"matchers": ["tag=env:prod"], "duration": "2h", "comment": "…"}`. A JSON
/// content type is required, so a cross-site form cannot post one. A body over
/// [`MAX_SILENCE_BYTES`] is 413, as an oversized notification is, not a generic 400.
#[post("/api/silences", data = "<body>")]
async fn add(
    app: &State<App>,
    caller: Caller,
    content_type: Option<&ContentType>,
    body: Data<'_>,
) -> Result<StatusJson, ApiError> {
    let actor = app.require(&caller, Role::Responder, Via::Api).await?;
    if !content_type.is_some_and(|c| c.is_json()) {
        return Err(ApiError::unsupported_media_type(
            "send Content-Type: application/json",
        ));
    }
    let body = body
        .open(MAX_SILENCE_BYTES.bytes())
        .into_string()
        .await
        .map_err(|e| ApiError::invalid_silence(format!("cannot read the body: {e}")))?;
    if !body.is_complete() {
        return Err(ApiError::payload_too_large(format!(
            "a silence is at most {} KiB of JSON",
            MAX_SILENCE_BYTES / 1024
        )));
    }
    let mut request: silences::Request = serde_json::from_str(&body).map_err(|e| {
        ApiError::invalid_silence(format!("expected {{\"matchers\": [\"KEY=VALUE\", …], \"duration\" or \"until\", \"comment\", \"author\"?, \"renotify\"?}}: {e}"),
        )
    })?;
    let s = add_as(app, &actor, &mut request).await?;
    Ok(StatusJson(Status::Created, silences::shown(&s, now_ms())))
}

/// Adds a silence in the actor's name (see `Actor::author`), and records who did.
async fn add_as(
    app: &App,
    actor: &crate::people::Actor,
    request: &mut silences::Request,
) -> Result<crate::store::SilenceRow, ApiError> {
    request.author = actor.author(&request.author);
    let s = silences::add(&app.store, request).await?;
    app.store.committed().notify_one();
    let matchers: Vec<String> = s.matcher_list().iter().map(ToString::to_string).collect();
    app.audit(
        actor,
        "silence.add",
        &s.id,
        format!(
            "{} until {} ({})",
            matchers.join(" "),
            crate::clock::rfc3339(s.ends_at_ms),
            s.comment
        ),
    )
    .await;
    Ok(s)
}

async fn expire_one(app: &App, actor: &crate::people::Actor, id: &str) -> Result<Value, ApiError> {
    let Some(s) = app.store.silence(id).await? else {
        return Err(ApiError::not_found("no silence has this id"));
    };
    if !app.store.expire_silence(id.to_string(), now_ms()).await? {
        return Err(ApiError::ended("this silence has ended already"));
    }
    tracing::info!(silence = id, by = actor.name, "silence expired");
    app.store.committed().notify_one();
    app.audit(actor, "silence.expire", id, s.comment.clone())
        .await;
    Ok(json!({"status": "expired", "id": s.id}))
}

#[delete("/api/silences/<id>")]
async fn expire(app: &State<App>, caller: Caller, id: &str) -> Result<JsonOk, ApiError> {
    let actor = app.require(&caller, Role::Responder, Via::Api).await?;
    expire_one(app, &actor, id).await.map(JsonOk)
}

#[derive(FromForm)]
struct SilenceForm<'r> {
    csrf: &'r str,
    /// One KEY=VALUE per line.
    matchers: &'r str,
    duration: &'r str,
    comment: &'r str,
    author: &'r str,
}

fn from_page(app: &App, origin: &view::SameOrigin, csrf: &str) -> Result<(), ApiError> {
    if !origin.0 || !app.csrf_matches(csrf) {
        return Err(ApiError::forbidden(
            "this form must be sent from hub's own status page",
        ));
    }
    Ok(())
}

/// The status page's form; the same checks as the API, and the page's token.
#[post("/silences", data = "<form>")]
async fn add_from_page(
    app: &State<App>,
    caller: Caller,
    origin: view::SameOrigin,
    form: Form<SilenceForm<'_>>,
) -> Result<Redirect, ApiError> {
    let actor = app.require(&caller, Role::Responder, Via::Page).await?;
    from_page(app, &origin, form.csrf)?;
    let mut request = silences::Request {
        matchers: form
            .matchers
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
        duration: Some(form.duration.to_string()),
        until: None,
        comment: form.comment.to_string(),
        author: form.author.to_string(),
        renotify: None,
    };
    add_as(app, &actor, &mut request).await?;
    Ok(Redirect::to("/#silences"))
}

#[derive(FromForm)]
struct ExpireForm<'r> {
    csrf: &'r str,
}

#[post("/silences/<id>/expire", data = "<form>")]
async fn expire_from_page(
    app: &State<App>,
    caller: Caller,
    origin: view::SameOrigin,
    id: &str,
    form: Form<ExpireForm<'_>>,
) -> Result<Redirect, ApiError> {
    let actor = app.require(&caller, Role::Responder, Via::Page).await?;
    from_page(app, &origin, form.csrf)?;
    expire_one(app, &actor, id).await?;
    Ok(Redirect::to("/#silences"))
}

/// A beat, with the webhook's credentials (what monitoring already sends with).
#[post("/heartbeats/<name>")]
async fn beat(app: &State<App>, auth: Presented, name: &str) -> Result<JsonOk, ApiError> {
    let settings = app.settings.get();
    let c = &settings.config;
    if !BasicAuth::new(&c.webhook.username, &c.webhook.password).allows(&auth) {
        return Err(ApiError::unauthorized_for(
            "Basic",
            "send HTTP Basic credentials matching webhook.username and webhook.password",
        ));
    }
    if !c.heartbeats.iter().any(|h| h.name == name) {
        return Err(ApiError::unknown_heartbeat(
            "no heartbeat has this name in the config",
        ));
    }
    app.store.beat(name.to_string(), now_ms()).await?;
    Ok(JsonOk(json!({"status": "beat", "heartbeat": name})))
}

/// The page's lists: silences in force or ended within a day, maintenance windows, heartbeats.
pub async fn page_data(app: &App) -> Result<Value, ApiError> {
    let settings = app.settings.get();
    let c = &settings.config;
    let mut listed = silences::list(&app.store, &c.maintenance).await?;
    let beats = app.store.beats().await?;
    let mut heartbeats = Vec::new();
    for hb in &c.heartbeats {
        let last = beats.iter().find(|(n, _)| n == &hb.name).map(|(_, t)| *t);
        let open = crate::own::is_open(&app.store, &crate::heartbeat::problem_id(&hb.name)).await?;
        heartbeats.push(json!({
            "name": hb.name,
            "every": crate::keys::short_duration(hb.every),
            "grace": crate::keys::short_duration(hb.grace),
            "last_beat": last.map_or_else(|| "none yet".to_string(), crate::clock::utc),
            "state": if open { "silent" } else { "ok" },
            "problem": view::problem_link(crate::domain::Source::Hub, &crate::heartbeat::problem_id(&hb.name)),
        }));
    }
    listed["heartbeats"] = json!(heartbeats);
    Ok(listed)
}
