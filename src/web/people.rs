//! People over HTTP: who is on call, overrides, API tokens, the audit log, a schedule's calendar.

use rocket::data::{Data, ToByteUnit};
use rocket::form::{Form, FromForm};
use rocket::http::{ContentType, Status};
use rocket::response::Redirect;
use rocket::{delete, get, post, routes, Route, State};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::ApiError;
use super::{view, App, JsonOk, StatusJson};
use crate::clock::now_ms;
use crate::people::oncall::{self, PeopleError};
use crate::people::{Actor, Role, Via};

pub fn routes() -> Vec<Route> {
    routes![
        whoami,
        on_call,
        overrides,
        add_override,
        remove_override,
        add_override_from_page,
        remove_override_from_page,
        calendar,
        audit,
        tokens,
        create_token,
        revoke_token,
    ]
}

impl From<PeopleError> for ApiError {
    fn from(e: PeopleError) -> Self {
        match e {
            PeopleError::Invalid(d) => ApiError::invalid(d),
            PeopleError::NotFound(d) => ApiError::not_found(d),
            PeopleError::Forbidden(d) => ApiError::forbidden(d),
            PeopleError::Store(e) => ApiError::from(e),
        }
    }
}

/// The largest body these endpoints take: a few names and times.
const MAX_BODY: u64 = 4 * 1024;

/// Reads a small JSON body; a JSON content type is required, so a cross-site form cannot post it.
async fn json_body<T: for<'de> Deserialize<'de>>(
    content_type: Option<&ContentType>,
    body: Data<'_>,
    shape: &str,
) -> Result<T, ApiError> {
    if !content_type.is_some_and(|c| c.is_json()) {
        return Err(ApiError::unsupported_media_type(
            "send Content-Type: application/json",
        ));
    }
    let body = body
        .open(MAX_BODY.bytes())
        .into_string()
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot read the body: {e}")))?;
    if !body.is_complete() {
        return Err(ApiError::payload_too_large(format!(
            "at most {} KiB of JSON",
            MAX_BODY / 1024
        )));
    }
    serde_json::from_str(&body).map_err(|e| ApiError::invalid(format!("expected {shape}: {e}")))
}

/// Who the request signed in as, and what they may do.
#[get("/api/whoami")]
async fn whoami(app: &State<App>, caller: Caller) -> Result<JsonOk, ApiError> {
    let actor = app.require(&caller, Role::Viewer, Via::Api).await?;
    Ok(JsonOk(actor_json(app, &actor)))
}

pub fn actor_json(app: &App, actor: &Actor) -> Value {
    let settings = app.settings.get();
    json!({
        "id": actor.name,
        "name": settings.config.people.name_of(&actor.name),
        "role": actor.role.as_str(),
        "token": actor.token,
    })
}

/// Who is on call now (or `at`), in every schedule or one.
#[get("/api/oncall?<at>&<schedule>")]
async fn on_call(
    app: &State<App>,
    caller: Caller,
    at: Option<&str>,
    schedule: Option<&str>,
) -> Result<JsonOk, ApiError> {
    app.require(&caller, Role::Viewer, Via::Api).await?;
    let settings = app.settings.get();
    let list = oncall::on_call(&app.store, &settings.config.people, schedule, at, now_ms()).await?;
    Ok(JsonOk(json!({ "oncall": list })))
}

/// A schedule's overrides in force or to come.
#[get("/api/schedules/<name>/overrides")]
async fn overrides(app: &State<App>, caller: Caller, name: &str) -> Result<JsonOk, ApiError> {
    app.require(&caller, Role::Viewer, Via::Api).await?;
    let settings = app.settings.get();
    let people = &settings.config.people;
    if !people.schedules.contains_key(name) {
        return Err(ApiError::not_found(format!("no schedule {name:?}")));
    }
    let rows = app
        .store
        .overrides(Some(name.to_string()), now_ms())
        .await?;
    let shown: Vec<Value> = rows
        .iter()
        .map(|o| oncall::shown_override(people, o))
        .collect();
    Ok(JsonOk(json!({ "overrides": shown })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOverride {
    person: String,
    from: String,
    until: String,
}

/// `{"person": "bo", "from": "2026-12-24T18:00", "until": "2026-12-27T09:00"}`.
#[post("/api/schedules/<name>/overrides", data = "<body>")]
async fn add_override(
    app: &State<App>,
    caller: Caller,
    content_type: Option<&ContentType>,
    name: &str,
    body: Data<'_>,
) -> Result<StatusJson, ApiError> {
    let actor = app.require(&caller, Role::Responder, Via::Api).await?;
    let o: NewOverride = json_body(
        content_type,
        body,
        "{\"person\": ID, \"from\": TIME, \"until\": TIME}",
    )
    .await?;
    let settings = app.settings.get();
    let people = &settings.config.people;
    let row = oncall::add_override(
        &app.store, people, &actor, name, &o.person, &o.from, &o.until,
    )
    .await?;
    Ok(StatusJson(
        Status::Created,
        oncall::shown_override(people, &row),
    ))
}

#[delete("/api/overrides/<id>")]
async fn remove_override(app: &State<App>, caller: Caller, id: &str) -> Result<JsonOk, ApiError> {
    let actor = app.require(&caller, Role::Responder, Via::Api).await?;
    oncall::remove_override(&app.store, &actor, id).await?;
    Ok(JsonOk(json!({"status": "removed", "id": id})))
}

#[derive(FromForm)]
struct OverrideForm<'r> {
    csrf: &'r str,
    person: &'r str,
    from: &'r str,
    until: &'r str,
}

fn from_page(app: &App, origin: &view::SameOrigin, csrf: &str) -> Result<(), ApiError> {
    if !origin.0 || !app.csrf_matches(csrf) {
        return Err(ApiError::forbidden(
            "this form must be sent from hub's own status page",
        ));
    }
    Ok(())
}

/// The status page's override form.
#[post("/schedules/<name>/overrides", data = "<form>")]
async fn add_override_from_page(
    app: &State<App>,
    caller: Caller,
    origin: view::SameOrigin,
    name: &str,
    form: Form<OverrideForm<'_>>,
) -> Result<Redirect, ApiError> {
    let actor = app.require(&caller, Role::Responder, Via::Page).await?;
    from_page(app, &origin, form.csrf)?;
    let settings = app.settings.get();
    oncall::add_override(
        &app.store,
        &settings.config.people,
        &actor,
        name,
        form.person,
        form.from,
        form.until,
    )
    .await?;
    Ok(Redirect::to("/#oncall"))
}

#[derive(FromForm)]
struct CsrfForm<'r> {
    csrf: &'r str,
}

#[post("/overrides/<id>/remove", data = "<form>")]
async fn remove_override_from_page(
    app: &State<App>,
    caller: Caller,
    origin: view::SameOrigin,
    id: &str,
    form: Form<CsrfForm<'_>>,
) -> Result<Redirect, ApiError> {
    let actor = app.require(&caller, Role::Responder, Via::Page).await?;
    from_page(app, &origin, form.csrf)?;
    oncall::remove_override(&app.store, &actor, id).await?;
    Ok(Redirect::to("/#oncall"))
}

/// How far back and ahead a calendar shows shifts.
const CALENDAR_BACK_MS: i64 = 14 * 86_400_000;
const CALENDAR_AHEAD_MS: i64 = 90 * 86_400_000;

/// A text/calendar answer.
pub struct Calendar(String);

impl<'r> rocket::response::Responder<'r, 'static> for Calendar {
    fn respond_to(self, _: &'r rocket::Request<'_>) -> rocket::response::Result<'static> {
        rocket::Response::build()
            .header(ContentType::new("text", "calendar").with_params(("charset", "utf-8")))
            .header(rocket::http::Header::new("Cache-Control", "no-store"))
            .sized_body(self.0.len(), std::io::Cursor::new(self.0))
            .ok()
    }
}

/// `/schedules/primary.ics?token=…`: the schedule's shifts, two weeks back and 90 days ahead, for
/// a calendar to subscribe to. Calendars cannot send headers, so the API token is in the query.
#[get("/schedules/<file>?<token>")]
async fn calendar(app: &State<App>, file: &str, token: Option<&str>) -> Result<Calendar, ApiError> {
    let Some(token) = token else {
        return Err(ApiError::unauthorized_for(
            "Bearer",
            "add ?token= with an API token (hub token create)",
        ));
    };
    app.token_actor(token, Via::Api).await?;
    let Some(name) = file.strip_suffix(".ics") else {
        return Err(ApiError::not_found(
            "a schedule's calendar is /schedules/NAME.ics",
        ));
    };
    let settings = app.settings.get();
    let people = &settings.config.people;
    let Some(schedule) = people.schedules.get(name) else {
        return Err(ApiError::not_found(format!("no schedule {name:?}")));
    };
    let now = now_ms();
    let rows = app
        .store
        .overrides(Some(name.to_string()), now - CALENDAR_BACK_MS)
        .await?;
    let overrides: Vec<crate::people::schedule::Override> = rows
        .iter()
        .map(|o| crate::people::schedule::Override {
            id: o.id.clone(),
            person: o.person.clone(),
            from_ms: o.from_ms,
            until_ms: o.until_ms,
            created_at_ms: o.created_at_ms,
        })
        .collect();
    let segments = schedule.segments(&overrides, now - CALENDAR_BACK_MS, now + CALENDAR_AHEAD_MS);
    Ok(Calendar(crate::people::schedule::ics(
        schedule,
        &segments,
        |id| people.name_of(id),
        now,
    )))
}

/// The audit log, newest first.
#[get("/api/audit?<since>&<limit>")]
async fn audit(
    app: &State<App>,
    caller: Caller,
    since: Option<&str>,
    limit: Option<u32>,
) -> Result<JsonOk, ApiError> {
    app.require(&caller, Role::Viewer, Via::Api).await?;
    let from = oncall::since_ms(since, now_ms()).map_err(ApiError::invalid)?;
    let limit = i64::from(limit.unwrap_or(500).clamp(1, 5_000));
    let rows = app.store.audit(from, limit).await?;
    let shown: Vec<Value> = rows.iter().map(oncall::shown_audit).collect();
    Ok(JsonOk(json!({ "audit": shown })))
}

#[get("/api/tokens")]
async fn tokens(app: &State<App>, caller: Caller) -> Result<JsonOk, ApiError> {
    app.require(&caller, Role::Admin, Via::Api).await?;
    let now = now_ms();
    let rows = app.store.tokens().await?;
    let shown: Vec<Value> = rows.iter().map(|t| oncall::shown_token(t, now)).collect();
    Ok(JsonOk(json!({ "tokens": shown })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    person: String,
    role: Option<String>,
    expires: Option<String>,
}

/// `{"person": "ana", "role": "viewer", "expires": "90d"}`; the answer holds the token, once.
#[post("/api/tokens", data = "<body>")]
async fn create_token(
    app: &State<App>,
    caller: Caller,
    content_type: Option<&ContentType>,
    body: Data<'_>,
) -> Result<StatusJson, ApiError> {
    let actor = app.require(&caller, Role::Admin, Via::Api).await?;
    let t: NewToken = json_body(
        content_type,
        body,
        "{\"person\": ID, \"role\"?: ROLE, \"expires\"?: DURATION}",
    )
    .await?;
    let expires = t
        .expires
        .as_deref()
        .map(crate::keys::parse_duration)
        .transpose()
        .map_err(ApiError::invalid)?;
    let settings = app.settings.get();
    let (row, token) = oncall::create_token(
        &app.store,
        &settings.config.people,
        &actor,
        &t.person,
        t.role.as_deref(),
        expires,
    )
    .await?;
    let mut shown = oncall::shown_token(&row, now_ms());
    shown["token"] = json!(token);
    Ok(StatusJson(Status::Created, shown))
}

#[delete("/api/tokens/<id>")]
async fn revoke_token(app: &State<App>, caller: Caller, id: &str) -> Result<JsonOk, ApiError> {
    let actor = app.require(&caller, Role::Admin, Via::Api).await?;
    oncall::revoke_token(&app.store, &actor, id).await?;
    Ok(JsonOk(json!({"status": "revoked", "id": id})))
}

/// The status page's "On call" section: each schedule's person now and until when, the overrides
/// in force or to come, and the people an override may name.
pub async fn page_data(app: &App) -> Result<Value, ApiError> {
    let settings = app.settings.get();
    let people = &settings.config.people;
    let now = now_ms();
    let schedules = oncall::on_call(&app.store, people, None, None, now).await?;
    let rows = app.store.overrides(None, now).await?;
    let overrides: Vec<Value> = rows
        .iter()
        .map(|o| oncall::shown_override(people, o))
        .collect();
    let persons: Vec<Value> = people
        .people
        .values()
        .map(|p| json!({"id": p.id, "name": p.name}))
        .collect();
    Ok(json!({"schedules": schedules, "overrides": overrides, "people": persons}))
}
