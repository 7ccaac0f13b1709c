//! Ingest endpoints: authenticate, read a capped body, parse, store, and only then answer.

use std::net::IpAddr;

use rocket::data::{ByteUnit, Data};
use rocket::http::{ContentType, Status};
use rocket::{post, routes, Route, State};
use serde_json::json;

use super::auth::Presented;
use super::error::ApiError;
use super::{App, JsonOk};
use crate::domain::Source;
use crate::sources::{self, ParseError};
use crate::store::{Accepted, StoreError};

pub fn routes() -> Vec<Route> {
    routes![dynatrace_root, dynatrace_hook]
}

/// The sample's path: Dynatrace custom integrations already point here.
#[post("/", data = "<body>")]
async fn dynatrace_root(
    app: &State<App>,
    auth: Presented,
    content_type: Option<&ContentType>,
    remote: Option<IpAddr>,
    body: Data<'_>,
) -> Result<JsonOk, ApiError> {
    dynatrace(app, auth, content_type, remote, body).await
}

#[post("/hooks/dynatrace", data = "<body>")]
async fn dynatrace_hook(
    app: &State<App>,
    auth: Presented,
    content_type: Option<&ContentType>,
    remote: Option<IpAddr>,
    body: Data<'_>,
) -> Result<JsonOk, ApiError> {
    dynatrace(app, auth, content_type, remote, body).await
}

async fn dynatrace(
    app: &App,
    auth: Presented,
    content_type: Option<&ContentType>,
    remote: Option<IpAddr>,
    body: Data<'_>,
) -> Result<JsonOk, ApiError> {
    let source = Source::Dynatrace;
    let started = std::time::Instant::now();
    let remote = remote.map_or_else(|| "-".to_string(), |ip| ip.to_string());
    let result = async {
        if !app.webhook_auth.allows(&auth) {
            return Err(ApiError::unauthorized());
        }
        check_json_content_type(content_type)?;
        let bytes = read_capped(body, app.max_body_bytes).await?;
        let notification = sources::dynatrace::parse(&bytes).map_err(parse_error)?;
        let is_test = notification.is_test;
        let (key, state) = (notification.problem_key.clone(), notification.state.clone());
        let accepted = app.store.accept(notification).await.map_err(store_error)?;
        let outcome = match (&accepted, is_test) {
            (Accepted::Duplicate { .. }, _) => "duplicate",
            (Accepted::Stored { .. }, true) => "test",
            (Accepted::Stored { .. }, false) => "stored",
        };
        tracing::info!(
            %source, problem_id = ?key, state = ?state, outcome, file = accepted.file_name(),
            remote = %remote, "notification"
        );
        app.metrics
            .answered(source, outcome, started.elapsed().as_secs_f64());
        if is_test && outcome == "test" {
            tracing::info!(%source, "test notification received; no actions run for it");
        }
        Ok(JsonOk(
            json!({ "status": outcome, "file": accepted.file_name() }),
        ))
    }
    .await;
    if let Err(e) = &result {
        app.metrics
            .answered(source, "rejected", started.elapsed().as_secs_f64());
        tracing::warn!(
            %source, outcome = "rejected", status = e.status.code, error = e.error,
            detail = %e.detail, remote = %remote, "notification"
        );
    }
    result
}

/// JSON bodies only. A missing Content-Type is accepted (some senders omit it); a form or any other
/// declared type is refused, since it is almost always a misconfigured sender (curl's default `-d`).
pub(super) fn check_json_content_type(content_type: Option<&ContentType>) -> Result<(), ApiError> {
    match content_type {
        None => Ok(()),
        Some(ct) if ct.is_json() || ct.sub().as_str().ends_with("+json") => Ok(()),
        Some(ct) => Err(ApiError::new(
            Status::UnsupportedMediaType,
            "unsupported_media_type",
            format!(
                "expected Content-Type: application/json, got {}/{}",
                ct.top(),
                ct.sub()
            ),
        )),
    }
}

pub(super) async fn read_capped(body: Data<'_>, limit: u64) -> Result<Vec<u8>, ApiError> {
    let capped = body
        .open(ByteUnit::from(limit))
        .into_bytes()
        .await
        .map_err(|e| {
            ApiError::new(
                Status::BadRequest,
                "bad_request",
                format!("cannot read body: {e}"),
            )
        })?;
    if !capped.is_complete() {
        return Err(ApiError::new(
            Status::PayloadTooLarge,
            "payload_too_large",
            format!("body is larger than the limit of {limit} bytes (webhook.max_body_bytes)"),
        ));
    }
    Ok(capped.into_inner())
}

pub(super) fn parse_error(e: ParseError) -> ApiError {
    match e {
        ParseError::NotJson(_) => ApiError::new(Status::BadRequest, "invalid_json", e.to_string()),
        ParseError::Invalid(_) | ParseError::Fields(_) => ApiError::new(
            Status::UnprocessableEntity,
            "invalid_notification",
            e.to_string(),
        ),
    }
}

pub(super) fn store_error(e: StoreError) -> ApiError {
    // Each refused notification has its own warning line; while the store refuses everything (a
    // full disk), why is said once per interval.
    static WHY: crate::logging::SharedThrottle =
        crate::logging::SharedThrottle::new(std::time::Duration::from_secs(10));
    if let Some(held_back) = WHY.ready() {
        tracing::error!(
            error = %e, similar_errors_since_last_line = held_back,
            "notification not stored; answering 503 so the sender retries"
        );
    }
    ApiError::new(
        Status::ServiceUnavailable,
        "not_stored",
        "the notification could not be stored durably; retry later",
    )
}
