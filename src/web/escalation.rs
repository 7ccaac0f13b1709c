//! Acknowledging over HTTP: the API, the problem page's button, and the link a page carries.
//!
//! The link needs no login: it is signed, names one escalation and one person, and ends after
//! `escalation_link_ttl`. Its GET only shows a page with a button, because mail and chat
//! link scanners open every GET; only the button's POST acknowledges.

use rocket::form::{Form, FromForm};
use rocket::http::ContentType;
use rocket::response::Redirect;
use rocket::{get, post, routes, Route, State};
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::ApiError;
use super::page::{Html, PageError};
use super::{view, App, JsonOk};
use crate::escalate::ack::{self, AckError};
use crate::escalate::{Link, LinkError};
use crate::people::{Actor, Role, Via};

pub fn routes() -> Vec<Route> {
    routes![
        api_ack,
        api_unack,
        api_resolve,
        page_ack,
        page_unack,
        link_page,
        link_ack
    ]
}

impl From<AckError> for ApiError {
    fn from(e: AckError) -> Self {
        match e {
            AckError::Nothing(d) => ApiError::nothing_to_acknowledge(d),
            AckError::Store(e) => ApiError::from(e),
        }
    }
}

fn json_only(content_type: Option<&ContentType>) -> Result<(), ApiError> {
    if content_type.is_some_and(|c| c.is_json()) {
        Ok(())
    } else {
        Err(ApiError::unsupported_media_type(
            "send Content-Type: application/json (a cross-site form cannot)",
        ))
    }
}

/// What the API answers about an escalation after a change: who acknowledged by name, as the
/// problem's escalation reads, and by id.
fn shown(app: &App, e: &crate::store::EscalationRow) -> Value {
    let people = &app.settings.get().config.people;
    json!({
        "source": e.source, "problem_id": e.problem_key, "policy": e.policy, "state": e.state,
        "acked_by": e.acked_by.as_deref().map(|p| people.name_of(p)),
        "acked_by_id": e.acked_by, "acked_via": e.acked_via,
        "acked_at": e.acked_at_ms.map(crate::clock::rfc3339),
    })
}

/// Stops the problem's escalation: 200 with it, 409 when it has none running.
#[post("/api/problems/<id>/ack?<source>")]
async fn api_ack(
    app: &State<App>,
    caller: Caller,
    content_type: Option<&ContentType>,
    id: &str,
    source: Option<&str>,
) -> Result<JsonOk, ApiError> {
    let actor = app.require(&caller, Role::Responder, Via::Api).await?;
    json_only(content_type)?;
    let source = view::resolve_source(app, id, source).await?;
    let e = ack::acknowledge(&app.store, &app.tells(), &actor, source, id).await?;
    Ok(JsonOk(shown(app, &e)))
}

/// Starts an acknowledged escalation again from its first step.
#[post("/api/problems/<id>/unack?<source>")]
async fn api_unack(
    app: &State<App>,
    caller: Caller,
    content_type: Option<&ContentType>,
    id: &str,
    source: Option<&str>,
) -> Result<JsonOk, ApiError> {
    let actor = app.require(&caller, Role::Responder, Via::Api).await?;
    json_only(content_type)?;
    let source = view::resolve_source(app, id, source).await?;
    let e = ack::unacknowledge(&app.store, &app.tells(), &actor, source, id).await?;
    Ok(JsonOk(shown(app, &e)))
}

/// Ends the problem's escalation as resolved, in the caller's name.
#[post("/api/problems/<id>/resolve?<source>")]
async fn api_resolve(
    app: &State<App>,
    caller: Caller,
    content_type: Option<&ContentType>,
    id: &str,
    source: Option<&str>,
) -> Result<JsonOk, ApiError> {
    let actor = app.require(&caller, Role::Responder, Via::Api).await?;
    json_only(content_type)?;
    let source = view::resolve_source(app, id, source).await?;
    ack::resolve(&app.store, &app.tells(), &actor, source, id).await?;
    Ok(JsonOk(
        json!({"status": "resolved", "source": source, "problem_id": id}),
    ))
}

#[derive(FromForm)]
struct CsrfForm<'r> {
    csrf: &'r str,
}

async fn from_page(
    app: &App,
    caller: &Caller,
    origin: &view::SameOrigin,
    csrf: &str,
) -> Result<Actor, ApiError> {
    let actor = app.require(caller, Role::Responder, Via::Page).await?;
    if !origin.0 || !app.csrf_matches(csrf) {
        return Err(ApiError::forbidden(
            "this form must be sent from hub's own problem page",
        ));
    }
    Ok(actor)
}

/// The problem page's *Acknowledge* button.
#[post("/problems/<id>/ack?<source>", data = "<form>")]
async fn page_ack(
    app: &State<App>,
    caller: Caller,
    origin: view::SameOrigin,
    id: &str,
    source: Option<&str>,
    form: Form<CsrfForm<'_>>,
) -> Result<Redirect, ApiError> {
    let actor = from_page(app, &caller, &origin, form.csrf).await?;
    let source = view::resolve_source(app, id, source).await?;
    ack::acknowledge(&app.store, &app.tells(), &actor, source, id).await?;
    Ok(Redirect::to(view::problem_link(source, id)))
}

#[post("/problems/<id>/unack?<source>", data = "<form>")]
async fn page_unack(
    app: &State<App>,
    caller: Caller,
    origin: view::SameOrigin,
    id: &str,
    source: Option<&str>,
    form: Form<CsrfForm<'_>>,
) -> Result<Redirect, ApiError> {
    let actor = from_page(app, &caller, &origin, form.csrf).await?;
    let source = view::resolve_source(app, id, source).await?;
    ack::unacknowledge(&app.store, &app.tells(), &actor, source, id).await?;
    Ok(Redirect::to(view::problem_link(source, id)))
}

/// The link's escalation and person, or 403 saying only that the link cannot be used.
async fn link_of(app: &App, token: &str) -> Result<(Link, crate::store::EscalationRow), ApiError> {
    let refused = |why: &str| {
        ApiError::forbidden(format!(
            "{why}; open the problem on hub's page, or acknowledge with the code by SMS"
        ))
    };
    let key = app
        .store
        .shared_key(crate::escalate::LINK_KEY, crate::escalate::fresh_key())
        .await?;
    let link = Link::verify(token, &key, crate::clock::now_ms()).map_err(|e| match e {
        LinkError::Expired => refused("this link has expired"),
        LinkError::Forged => refused("this is not a link hub made"),
    })?;
    let Some(e) = app.store.escalation(link.escalation_id).await? else {
        return Err(refused("this is not a link hub made"));
    };
    Ok((link, e))
}

/// The link's page: what it acknowledges, and a button. Changes nothing.
#[get("/ack/<token>")]
async fn link_page(app: &State<App>, token: &str) -> Result<Html, PageError> {
    let (link, e) = link_of(app, token).await?;
    let settings = app.settings.get();
    let data = json!({
        "problem_id": e.problem_key,
        "source": e.source,
        "state": e.state,
        "person": settings.config.people.name_of(&link.person),
        "acked_by": e.acked_by.as_deref().map(|p| settings.config.people.name_of(p)),
        "acked_via": e.acked_via,
        "post_url": format!("/ack/{}", view::encode(token)),
    });
    Ok(app.templates.render("ack.html", &data)?)
}

/// The link page's button: acknowledges in the name of the person the link was sent to.
#[post("/ack/<token>")]
async fn link_ack(
    app: &State<App>,
    token: &str,
    caller: Caller,
    origin: view::SameOrigin,
) -> Result<Html, PageError> {
    if !origin.0 {
        return Err(ApiError::forbidden(
            "this form must be sent from hub's own acknowledgement page",
        )
        .into());
    }
    let (link, e) = link_of(app, token).await?;
    let settings = app.settings.get();
    let Some(person) = settings.config.people.people.get(&link.person) else {
        return Err(ApiError::forbidden(
            "the person this link was sent to is no longer in the config",
        )
        .into());
    };
    let actor = Actor {
        name: person.id.clone(),
        role: person.role,
        token: None,
        verified: true,
        via: Via::Link,
        from: caller.from(),
    };
    if !actor.may(Role::Responder) {
        return Err(ApiError::needs_role(Role::Responder, &actor).into());
    }
    let result = ack::acknowledge(&app.store, &app.tells(), &actor, e.source, &e.problem_key).await;
    let (done, note) = match result {
        Ok(_) => (true, None),
        Err(AckError::Nothing(why)) => (false, Some(why)),
        Err(AckError::Store(err)) => return Err(ApiError::from(err).into()),
    };
    let data = json!({
        "problem_id": e.problem_key,
        "source": e.source,
        "done": done,
        "note": note,
        "person": person.name,
    });
    Ok(app.templates.render("acked.html", &data)?)
}
