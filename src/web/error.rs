//! The one place that turns failures into HTTP answers: a status and a short JSON reason.

use std::io::Cursor;

use rocket::http::{ContentType, Header, Status};
use rocket::request::Request;
use rocket::response::{self, Responder, Response};
use serde_json::json;

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
    /// Adds `Retry-After` (seconds): when a sender over its rate may send again.
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    fn new(status: Status, error: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            error,
            detail: detail.into(),
            challenge: None,
            retry_after_secs: None,
        }
    }

    /// Nothing has this id or name.
    pub fn not_found(detail: impl Into<String>) -> Self {
        ApiError::new(Status::NotFound, "not_found", detail)
    }

    /// A request hub cannot read.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        ApiError::new(Status::BadRequest, "bad_request", detail)
    }

    /// Known, but not allowed this (a cross-site form, say).
    pub fn forbidden(detail: impl Into<String>) -> Self {
        ApiError::new(Status::Forbidden, "forbidden", detail)
    }

    /// A body that is not declared as JSON.
    pub fn unsupported_media_type(detail: impl Into<String>) -> Self {
        ApiError::new(
            Status::UnsupportedMediaType,
            "unsupported_media_type",
            detail,
        )
    }

    /// A body over its limit; the detail says which.
    pub fn payload_too_large(detail: impl Into<String>) -> Self {
        ApiError::new(Status::PayloadTooLarge, "payload_too_large", detail)
    }

    /// hub cannot take a notification now: the sender goes elsewhere or retries.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        ApiError::new(Status::ServiceUnavailable, "unavailable", detail)
    }

    /// A silence that cannot be made as asked; nothing was created.
    pub fn invalid_silence(detail: impl Into<String>) -> Self {
        ApiError::new(Status::BadRequest, "invalid_silence", detail)
    }

    /// A silence asked to end that had ended already.
    pub fn ended(detail: impl Into<String>) -> Self {
        ApiError::new(Status::Conflict, "ended", detail)
    }

    /// A reload refused: the running config stays in force.
    pub fn reload_failed(detail: impl Into<String>) -> Self {
        ApiError::new(Status::InternalServerError, "reload_failed", detail)
    }

    /// A replay of what has no run to replay.
    pub fn nothing_to_replay(detail: impl Into<String>) -> Self {
        ApiError::new(Status::Conflict, "nothing_to_replay", detail)
    }

    /// An acknowledgement of a problem with no escalation it would change.
    pub fn nothing_to_acknowledge(detail: impl Into<String>) -> Self {
        ApiError::new(Status::Conflict, "nothing_to_acknowledge", detail)
    }

    /// A beat for a heartbeat the config does not have.
    pub fn unknown_heartbeat(detail: impl Into<String>) -> Self {
        ApiError::new(Status::NotFound, "unknown_heartbeat", detail)
    }

    /// A failure of hub's own, not the request's.
    pub fn internal(detail: impl Into<String>) -> Self {
        ApiError::new(Status::InternalServerError, "internal_error", detail)
    }

    /// Signed in, but the role does not allow this; the detail names the role needed.
    pub fn needs_role(needed: crate::people::Role, actor: &crate::people::Actor) -> Self {
        ApiError::new(
            Status::Forbidden,
            "forbidden",
            format!(
                "this needs the {needed} role; {} is {} {}",
                actor.label(),
                if actor.role == crate::people::Role::Admin {
                    "an"
                } else {
                    "a"
                },
                actor.role
            ),
        )
    }

    /// A schedule, person or token the request names that the config or store does not have, or
    /// a value that cannot be used for one; nothing was changed.
    pub fn invalid(detail: impl Into<String>) -> Self {
        ApiError::new(Status::BadRequest, "invalid", detail)
    }

    pub fn unauthorized_for(scheme: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            challenge: Some(scheme),
            ..ApiError::new(Status::Unauthorized, "unauthorized", detail)
        }
    }
}

/// The body of every error answer, the routes' and the listener's alike.
pub fn body(error: &str, detail: &str) -> String {
    json!({ "error": error, "detail": detail }).to_string()
}

impl<'r> Responder<'r, 'static> for ApiError {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let body = body(self.error, &self.detail);
        let mut response = Response::build();
        response
            .status(self.status)
            .header(ContentType::JSON)
            .sized_body(body.len(), Cursor::new(body));
        if let Some(secs) = self.retry_after_secs {
            response.header(Header::new("Retry-After", secs.to_string()));
        }
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
            Refusal::OverRate {
                detail,
                retry_after_secs,
            } => ApiError {
                retry_after_secs: Some(retry_after_secs),
                ..ApiError::new(Status::TooManyRequests, "rate_limited", detail)
            },
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

/// Why the feed cannot be shown; the page shows it in place of the feed.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("dynatrace.tenant is not set in config.json")]
    NoTenant,
    #[error(transparent)]
    Dynatrace(#[from] crate::dynatrace::DynatraceError),
    #[error(transparent)]
    Store(#[from] StoreError),
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
