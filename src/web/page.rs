//! The status page, the feed page and the problem pages: HTML rendered from `templates/` (compiled
//! into the binary), every value escaped, no external asset, and a Content-Security-Policy that
//! forbids scripts outright, so even a missed escape could not run one.

use std::io::Cursor;
use std::sync::OnceLock;
use std::time::Instant;

use rocket::form::{Form, FromForm};
use rocket::http::{ContentType, Header, Status};
use rocket::request::Request;
use rocket::response::{self, Redirect, Responder, Response};
use rocket::{get, post, routes, Route, State};
use serde_json::{json, Value};
use tera::Tera;

use super::auth::Caller;
use super::error::ApiError;
use super::triage;
use super::view;
use super::App;
use crate::dynatrace::Window;
use crate::people::{Role, Via};

pub fn routes() -> Vec<Route> {
    routes![index, feed, problem, confirm_replay, replay, audit]
}

/// The templates, compiled when the first page is asked for: a hub that only receives never
/// loads the template engine's code or keeps the compiled templates in memory.
#[derive(Default)]
pub struct Templates(OnceLock<Result<Tera, tera::Error>>);

impl Templates {
    fn compile() -> Result<Tera, tera::Error> {
        let mut tera = Tera::default();
        tera.add_raw_templates(vec![
            ("base.html", include_str!("../../templates/base.html")),
            ("index.html", include_str!("../../templates/index.html")),
            ("feed.html", include_str!("../../templates/feed.html")),
            ("problem.html", include_str!("../../templates/problem.html")),
            ("replay.html", include_str!("../../templates/replay.html")),
            ("error.html", include_str!("../../templates/error.html")),
            ("audit.html", include_str!("../../templates/audit.html")),
            ("ack.html", include_str!("../../templates/ack.html")),
            ("acked.html", include_str!("../../templates/acked.html")),
        ])?;
        Ok(tera)
    }

    pub(super) fn render(&self, name: &str, data: &Value) -> Result<Html, ApiError> {
        let tera = self
            .0
            .get_or_init(Templates::compile)
            .as_ref()
            .map_err(internal)?;
        let context = tera::Context::from_value(data.clone()).map_err(internal)?;
        tera.render(name, &context).map(Html).map_err(internal)
    }
}

fn internal(e: impl std::fmt::Debug) -> ApiError {
    tracing::error!(error = ?e, "cannot render a page");
    ApiError::internal("the page could not be rendered")
}

/// An HTML answer, with headers that keep it from running or embedding anything.
pub struct Html(String);

impl<'r> Responder<'r, 'static> for Html {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        Response::build()
            .header(ContentType::HTML)
            .header(Header::new(
                "Content-Security-Policy",
                "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
                 form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ))
            .header(Header::new("X-Content-Type-Options", "nosniff"))
            .header(Header::new("Referrer-Policy", "same-origin"))
            .header(Header::new("Cache-Control", "no-store"))
            .sized_body(self.0.len(), Cursor::new(self.0))
            .ok()
    }
}

#[derive(FromForm)]
struct IndexQuery<'r> {
    /// The sample's feed URL: `/?relativeTime=week`.
    #[field(name = "relativeTime")]
    relative_time: Option<&'r str>,
    page: Option<&'r str>,
    notifications_before: Option<&'r str>,
    show: Option<&'r str>,
    source: Option<&'r str>,
    severity: Option<&'r str>,
    outcome: Option<&'r str>,
    q: Option<&'r str>,
    refresh: Option<&'r str>,
}

/// The status page: the instance's health, then the problems that need a person (worst first,
/// filtered by the query), then what this hub is doing and how it is set up.
#[get("/?<q..>")]
async fn index(app: &State<App>, caller: Caller, q: IndexQuery<'_>) -> Result<Html, ApiError> {
    let actor = app.require(&caller, Role::Viewer, Via::Page).await?;
    if let Some(window) = q.relative_time {
        return feed_page(app, window).await;
    }
    let filters = triage::Filters::parse(&triage::Raw {
        show: q.show,
        source: q.source,
        severity: q.severity,
        outcome: q.outcome,
        q: q.q,
        refresh: q.refresh,
    })?;
    let notifications = view::page_of(q.notifications_before, q.page)?;
    // The problems are the triage list's, read below; the page keeps no list of its own.
    let mut data = view::status(app, crate::store::Page::first(0), notifications).await?;
    let quiet = super::noise::page_data(app).await?;
    for key in ["silences", "maintenance", "heartbeats"] {
        data[key] = quiet[key].clone();
    }
    if let (Value::Object(data), Value::Object(triage)) =
        (&mut data, triage::problems(app, &filters).await?)
    {
        data.extend(triage);
    }
    data["health"] = triage::health(app);
    data["next"] = json!(format!(
        "/?notifications_before={}{}",
        data["notifications_next"].as_i64().unwrap_or(1),
        filters.query().replacen('?', "&", 1)
    ));
    // A wallboard only shows: it offers no form, so a screen left logged in changes nothing.
    data["read_only"] = json!(filters.refresh.is_some());
    data["csrf"] = json!(app.csrf_token());
    signed_in(app, &actor, &mut data);
    data["oncall"] = super::people::page_data(app).await?;
    app.templates.render("index.html", &data)
}

#[get("/feed?<relative>")]
async fn feed(app: &State<App>, caller: Caller, relative: Option<&str>) -> Result<Html, ApiError> {
    app.require(&caller, Role::Viewer, Via::Page).await?;
    feed_page(app, relative.unwrap_or("hour")).await
}

async fn feed_page(app: &App, window: &str) -> Result<Html, ApiError> {
    let window: Window = view::window(window)?;
    let mut data = match view::feed(app, window).await {
        Ok(feed) => feed,
        Err(error) => json!({"error": error.to_string(), "problems": [], "counts": {}}),
    };
    data["window"] = json!(window.name());
    data["windows"] = json!(view::window_names());
    app.templates.render("feed.html", &data)
}

/// An error from a page's route: a browser (one that asks for HTML) gets a page saying what is
/// wrong, with the same status; anything else gets the JSON every other error is.
pub struct PageError(ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> PageError {
        PageError(e)
    }
}

impl<'r> Responder<'r, 'static> for PageError {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        let wants_html = req
            .headers()
            .get("Accept")
            .any(|a| a.to_ascii_lowercase().contains("text/html"));
        // A 401 keeps its JSON and challenge: the browser shows its login prompt for it.
        let app = req.rocket().state::<App>();
        match app {
            Some(app) if wants_html && self.0.status != Status::Unauthorized => {
                let data = json!({
                    "status": self.0.status.code,
                    "reason": self.0.status.reason_lossy(),
                    "error": self.0.error,
                    "detail": self.0.detail,
                });
                match app.templates.render("error.html", &data) {
                    Ok(page) => {
                        let mut response = page.respond_to(req)?;
                        response.set_status(self.0.status);
                        Ok(response)
                    }
                    Err(e) => e.respond_to(req),
                }
            }
            _ => self.0.respond_to(req),
        }
    }
}

#[get("/problems/<id>?<source>")]
async fn problem(
    app: &State<App>,
    caller: Caller,
    id: &str,
    source: Option<&str>,
) -> Result<Html, PageError> {
    let actor = app.require(&caller, Role::Viewer, Via::Page).await?;
    let mut data = view::problem(app, id, source).await?;
    signed_in(app, &actor, &mut data);
    data["csrf"] = json!(app.csrf_token());
    let shown_source = data["source"].as_str().unwrap_or_default().to_string();
    for (key, verb) in [("ack_post", "ack"), ("unack_post", "unack")] {
        data[key] = json!(format!(
            "/problems/{}/{verb}?source={}",
            view::encode(id),
            view::encode(&shown_source)
        ));
    }
    let source = data["source"].as_str().unwrap_or_default().to_string();
    data["replay_url"] = json!(replay_url(id, &source, None));
    let actions: Vec<Value> = data["replay_actions"]
        .as_array()
        .map(|names| {
            names
                .iter()
                .filter_map(Value::as_str)
                .map(|a| json!({"action": a, "url": replay_url(id, &source, Some(a))}))
                .collect()
        })
        .unwrap_or_default();
    data["replay_actions"] = json!(actions);
    Ok(app.templates.render("problem.html", &data)?)
}

/// Who the page is for, and whether to show the forms that change something: a viewer sees
/// none (they would only answer 403).
fn signed_in(app: &App, actor: &crate::people::Actor, data: &mut Value) {
    data["me"] = super::people::actor_json(app, actor);
    data["may_respond"] = json!(actor.may(Role::Responder));
}

/// The audit log as a page: the last 30 days, newest first.
#[get("/audit?<since>")]
async fn audit(app: &State<App>, caller: Caller, since: Option<&str>) -> Result<Html, ApiError> {
    let actor = app.require(&caller, Role::Viewer, Via::Page).await?;
    let now = crate::clock::now_ms();
    let from = crate::people::oncall::since_ms(since, now).map_err(ApiError::invalid)?;
    let rows = app.store.audit(from, 2_000).await?;
    let shown: Vec<Value> = rows
        .iter()
        .map(crate::people::oncall::shown_audit)
        .collect();
    let mut data = json!({"audit": shown, "since": crate::clock::rfc3339(from)});
    signed_in(app, &actor, &mut data);
    app.templates.render("audit.html", &data)
}

/// The confirmation page's address: a GET, which changes nothing.
fn replay_url(id: &str, source: &str, action: Option<&str>) -> String {
    let mut url = format!(
        "/problems/{}/replay?source={}",
        view::encode(id),
        view::encode(source)
    );
    if let Some(a) = action {
        url.push_str("&action=");
        url.push_str(&view::encode(a));
    }
    url
}

/// The replay's second step: what would run again (and so page again), and a form that says
/// yes. Only its form's POST schedules anything.
#[get("/problems/<id>/replay?<source>&<action>")]
async fn confirm_replay(
    app: &State<App>,
    caller: Caller,
    id: &str,
    source: Option<&str>,
    action: Option<&str>,
) -> Result<Html, PageError> {
    app.require(&caller, Role::Responder, Via::Page).await?;
    let (source, runs) = view::replayable(app, id, source, action).await?;
    let runs: Vec<Value> = runs
        .iter()
        .map(|r| {
            json!({"action": r.action, "target": r.target_label, "state": r.state,
                   "status": r.status, "attempts": r.attempts})
        })
        .collect();
    let data = json!({
        "problem_id": id,
        "source": source,
        "action": action,
        "runs": runs,
        "csrf": app.csrf_token(),
        "post_url": format!("/problems/{}/replay?source={}", view::encode(id), view::encode(source.as_str())),
        "back": view::problem_link(source, id),
    });
    Ok(app.templates.render("replay.html", &data)?)
}

#[derive(FromForm)]
struct ReplayForm<'r> {
    csrf: &'r str,
    /// `yes` from the confirmation page; without it nothing runs and the browser is sent there.
    confirm: Option<&'r str>,
    action: Option<&'r str>,
}

/// The replay's last step. Basic auth alone does not stop a cross-site form post (the browser
/// sends the credentials along), so the form carries a token only this hub's own page knows, and
/// an `Origin` from another site is refused. A post without the confirmation (an old page's
/// button, a form elsewhere) schedules nothing: it leads to the confirmation page.
#[post("/problems/<id>/replay?<source>", data = "<form>")]
async fn replay(
    app: &State<App>,
    caller: Caller,
    origin: view::SameOrigin,
    id: &str,
    source: Option<&str>,
    form: Form<ReplayForm<'_>>,
) -> Result<Redirect, PageError> {
    let actor = app.require(&caller, Role::Responder, Via::Page).await?;
    if !origin.0 || !app.csrf_matches(form.csrf) {
        return Err(
            ApiError::forbidden("this form must be sent from hub's own problem page").into(),
        );
    }
    let action = form.action.filter(|a| !a.is_empty());
    if form.confirm != Some("yes") {
        return Ok(Redirect::to(replay_url(
            id,
            source.unwrap_or_default(),
            action,
        )));
    }
    let started = Instant::now();
    let (source, scheduled) = view::replay(app, id, source, action).await?;
    tracing::info!(
        %source, problem_id = id, action, scheduled, manual = true,
        took_ms = started.elapsed().as_millis() as u64,
        "replay requested from the status page"
    );
    app.audit(
        &actor,
        "replay",
        &format!("{source}/{id}"),
        super::api::replay_detail(action, scheduled),
    )
    .await;
    Ok(Redirect::to(format!(
        "/problems/{}?source={}",
        view::encode(id),
        view::encode(source.as_str())
    )))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_templates_compile() {
        super::Templates::compile().unwrap();
    }
}
