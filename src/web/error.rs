//! The one place that turns failures into HTTP answers: a status and a short JSON reason.

use std::io::Cursor;

use rocket::http::{ContentType, Header, Status};
use rocket::request::Request;
use rocket::response::{self, Responder, Response};
use serde_json::json;

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

    pub fn unauthorized() -> Self {
        ApiError::unauthorized_for(
            "Basic",
            "send HTTP Basic credentials matching webhook.username and webhook.password",
        )
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
