//! The one place that turns failures into HTTP answers: a status and a short JSON reason.

use std::io::Cursor;

use rocket::http::{ContentType, Header, Status};
use rocket::request::Request;
use rocket::response::{self, Responder, Response};
use serde_json::json;

use super::view::FeedError;
use crate::dynatrace::UnknownWindow;
use crate::logging::SharedThrottle;
use crate::sources::{ParseError, Refusal, Source, UnknownSource};
use crate::store::StoreError;
use std::time::Duration;

/// An error answer: `{"error": <short code>, "detail": <one sentence>}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: Status,
    pub error: &'static str,
    pub detail: String,
    /// Adds `WWW-Authenticate` with this scheme, so clients know what to send.
    pub challenge: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: Status, error: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            error,
            detail: detail.into(),
            challenge: None,
        }
    }

    pub fn unauthorized_for(scheme: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            challenge: Some(scheme),
            ..ApiError::new(Status::Unauthorized, "unauthorized", detail)
        }
    }
}

impl<'r> Responder<'r, 'static> for ApiError {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let body = json!({ "error": self.error, "detail": self.detail }).to_string();
        let mut response = Response::build();
        response
            .status(self.status)
            .header(ContentType::JSON)
            .sized_body(body.len(), Cursor::new(body));
        if let Some(scheme) = self.challenge {
            response.header(Header::new(
                "WWW-Authenticate",
                format!("{scheme} realm=\"hub\""),
            ));
        }
        response.ok()
    }
}

/// A source's refusal: 401 with its challenge, 400 for what is not JSON, 422 for JSON that is not
/// a notification, 429 for a sender over its rate.
impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> ApiError {
        match refusal {
            Refusal::Unauthorized { scheme, detail } => ApiError::unauthorized_for(scheme, detail),
            Refusal::Parse(e @ ParseError::NotJson(_)) => {
                ApiError::new(Status::BadRequest, "invalid_json", e.to_string())
            }
            Refusal::Parse(e) => ApiError::new(
                Status::UnprocessableEntity,
                "invalid_notification",
                e.to_string(),
            ),
            Refusal::Throttled(detail) => {
                ApiError::new(Status::TooManyRequests, "rate_limited", detail)
            }
        }
    }
}

/// The store failed: 503 either way. A notification that was not stored tells its sender to retry
/// (each refused one has its own warning line; while the store refuses everything, a full disk,
/// why is said once per interval); anything else is a read that failed.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        if matches!(e, StoreError::NotStored(_) | StoreError::Closed) {
            static WHY: SharedThrottle = SharedThrottle::new(Duration::from_secs(10));
            if let Some(held_back) = WHY.ready() {
                tracing::error!(
                    error = %e, similar_errors_since_last_line = held_back,
                    "notification not stored; answering 503 so the sender retries"
                );
            }
            return ApiError::new(
                Status::ServiceUnavailable,
                "not_stored",
                "the notification could not be stored durably; retry later",
            );
        }
        tracing::error!(error = %e, "cannot read the store");
        ApiError::new(
            Status::ServiceUnavailable,
            "store_unavailable",
            "the store cannot be read right now",
        )
    }
}

/// A feed window from a query that is none: 400, without repeating what was sent.
impl From<UnknownWindow> for ApiError {
    fn from(e: UnknownWindow) -> ApiError {
        ApiError::new(Status::BadRequest, "invalid_window", e.to_string())
    }
}

/// A source from a query that is none: 400, without repeating what was sent.
impl From<UnknownSource> for ApiError {
    fn from(_: UnknownSource) -> ApiError {
        let known: Vec<&str> = Source::ALL.iter().map(|s| s.as_str()).collect();
        ApiError::new(
            Status::BadRequest,
            "invalid_source",
            format!("unknown source; use one of {}", known.join(", ")),
        )
    }
}

/// The feed could not be fetched: 502 when Dynatrace is not there (or not configured), 503 when
/// the store could not be read.
impl From<FeedError> for ApiError {
    fn from(e: FeedError) -> ApiError {
        match e {
            FeedError::Store(e) => e.into(),
            e => ApiError::new(Status::BadGateway, "dynatrace_unavailable", e.to_string()),
        }
    }
}

/// JSON answers for everything no route handled (unknown path, wrong method, …).
#[rocket::catch(default)]
pub fn default_catcher(status: Status, _req: &Request<'_>) -> ApiError {
    let error = match status.code {
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "payload_too_large",
        400..=499 => "bad_request",
        _ => "internal_error",
    };
    ApiError::new(status, error, status.reason_lossy())
}
