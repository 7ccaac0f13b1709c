//! The JSON API, mirroring the pages, and `/metrics`. Same credentials as the page; JSON errors.

use std::io::Cursor;

use rocket::http::{ContentType, Status};
use rocket::request::Request;
use rocket::response::{self, Responder, Response};
use rocket::{get, post, routes, Route, State};
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::ApiError;
use super::{view, App, JsonOk, StatusJson};
use crate::people::{Role, Via};

pub fn routes() -> Vec<Route> {
    routes![problems, problem, replay, feed, stats, metrics]
}

/// Problems newest first, 25 a page; `next` is the next page's URL (by key, so a deep page costs
/// what the first does). `?page=N` still works for the first 400 pages.
#[get("/api/problems?<page>&<before>")]
async fn problems(
    app: &State<App>,
    caller: Caller,
    page: Option<&str>,
    before: Option<&str>,
) -> Result<JsonOk, ApiError> {
    app.require(&caller, Role::Viewer, Via::Api).await?;
    let rows = app.store.problems(view::page_of(before, page)?).await?;
    let has_next = rows.len() as i64 > view::PER_PAGE;
    let rows: Vec<_> = rows.into_iter().take(view::PER_PAGE as usize).collect();
    let next = match rows.last() {
        Some(last) if has_next => json!(format!("/api/problems?before={}", last.newest_id)),
        _ => Value::Null,
    };
    Ok(JsonOk(json!({
        "per_page": view::PER_PAGE, "has_next": has_next, "next": next, "problems": rows
    })))
}

#[get("/api/problems/<id>?<source>")]
async fn problem(
    app: &State<App>,
    caller: Caller,
    id: &str,
    source: Option<&str>,
) -> Result<JsonOk, ApiError> {
    app.require(&caller, Role::Viewer, Via::Api).await?;
    let mut data = view::problem(app, id, source).await?;
    if let Value::Object(map) = &mut data {
        // The page's renderings; the API gives the data.
        map.remove("details");
        if let Some(Value::Array(runs)) = map.get_mut("runs") {
            for r in runs {
                r["outcome"] = r["outcome_json"].take();
                if let Value::Object(run) = r {
                    run.remove("outcome_json");
                    run.remove("outcome_parts");
                }
            }
        }
        if let Some(d) = map.remove("details_json") {
            map.insert("details".into(), d);
        }
    }
    Ok(JsonOk(data))
}

/// Schedules a replay. A JSON content type is required: a cross-site HTML form cannot send one,
/// so a page elsewhere cannot make a logged-in browser post here.
#[post("/api/problems/<id>/replay?<source>&<action>")]
async fn replay(
    app: &State<App>,
    caller: Caller,
    content_type: Option<&ContentType>,
    id: &str,
    source: Option<&str>,
    action: Option<&str>,
) -> Result<StatusJson, ApiError> {
    let actor = app.require(&caller, Role::Responder, Via::Api).await?;
    if !content_type.is_some_and(|c| c.is_json()) {
        return Err(ApiError::unsupported_media_type(
            "send Content-Type: application/json (a cross-site form cannot)",
        ));
    }
    let (source, scheduled) = view::replay(app, id, source, action).await?;
    tracing::info!(
        %source, problem_id = id, action, scheduled, manual = true,
        "replay requested through the API"
    );
    app.audit(
        &actor,
        "replay",
        &format!("{source}/{id}"),
        replay_detail(action, scheduled),
    )
    .await;
    Ok(StatusJson(
        Status::Accepted,
        json!({"status": "scheduled", "source": source, "problem_id": id, "runs": scheduled}),
    ))
}

#[get("/api/feed?<relative>")]
async fn feed(
    app: &State<App>,
    caller: Caller,
    relative: Option<&str>,
) -> Result<JsonOk, ApiError> {
    app.require(&caller, Role::Viewer, Via::Api).await?;
    let window = view::window(relative.unwrap_or("hour"))?;
    view::feed(app, window)
        .await
        .map(JsonOk)
        .map_err(ApiError::from)
}

#[get("/api/stats")]
async fn stats(app: &State<App>, caller: Caller) -> Result<JsonOk, ApiError> {
    app.require(&caller, Role::Viewer, Via::Api).await?;
    // The lists are the page's; none is read.
    let none = crate::store::Page::first(0);
    let mut data = view::status(app, none, none).await?;
    if let Value::Object(map) = &mut data {
        for page_only in [
            "chart",
            "notifications",
            "problems",
            "first_page",
            "has_next",
            "next",
            "windows",
            "uptime",
        ] {
            map.remove(page_only);
        }
    }
    Ok(JsonOk(data))
}

/// Prometheus text exposition.
pub struct Text(String);

impl<'r> Responder<'r, 'static> for Text {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        Response::build()
            .header(
                ContentType::new("text", "plain")
                    .with_params([("version", "0.0.4"), ("charset", "utf-8")]),
            )
            .sized_body(self.0.len(), Cursor::new(self.0))
            .ok()
    }
}

#[get("/metrics")]
async fn metrics(app: &State<App>, caller: Caller) -> Result<Text, ApiError> {
    app.require(&caller, Role::Viewer, Via::Api).await?;
    let heartbeats: Vec<String> = {
        let settings = app.settings.get();
        settings
            .config
            .heartbeats
            .iter()
            .map(|h| h.name.clone())
            .collect()
    };
    app.metrics
        .render(&app.store, &heartbeats)
        .await
        .map(Text)
        .map_err(ApiError::from)
}

/// What a replay's audit row says: which runs, how many.
pub(super) fn replay_detail(action: Option<&str>, scheduled: u64) -> String {
    format!(
        "{scheduled} run(s){}",
        action.map(|a| format!(" of {a}")).unwrap_or_default()
    )
}
