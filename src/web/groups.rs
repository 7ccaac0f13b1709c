//! `GET /api/groups` and `GET /api/groups/ID`: the groups grouped routes made, with their
//! members. Viewer, like the rest of the API.

use rocket::{get, routes, Route, State};
use serde_json::json;

use super::auth::Caller;
use super::error::ApiError;
use super::{App, JsonOk};
use crate::people::{Role, Via};

/// Groups listed at most, newest first.
const LISTED: i64 = 100;

pub fn routes() -> Vec<Route> {
    routes![groups, group]
}

/// `?state=open` lists the open groups only.
#[get("/api/groups?<state>")]
async fn groups(app: &State<App>, caller: Caller, state: Option<&str>) -> Result<JsonOk, ApiError> {
    app.require(&caller, Role::Viewer, Via::Api).await?;
    let open_only = match state {
        None | Some("all") => false,
        Some("open") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "state must be open or all, not {other:?}"
            )))
        }
    };
    let listed = crate::group::listed(&app.store, open_only, LISTED).await?;
    Ok(JsonOk(json!({ "groups": listed })))
}

#[get("/api/groups/<id>")]
async fn group(app: &State<App>, caller: Caller, id: &str) -> Result<JsonOk, ApiError> {
    app.require(&caller, Role::Viewer, Via::Api).await?;
    let found = match id.parse::<i64>() {
        Ok(n) => app.store.group(n).await?,
        Err(_) => None,
    };
    let Some(g) = found else {
        return Err(ApiError::not_found(format!("no group {id:?}")));
    };
    let members = app.store.group_members(g.id).await?;
    Ok(JsonOk(crate::group::shown(&g, &members)))
}
