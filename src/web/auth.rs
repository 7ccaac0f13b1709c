//! The request guard that reads HTTP Basic credentials (compared in `crate::credentials`).

use std::convert::Infallible;

use rocket::request::{FromRequest, Outcome, Request};

pub use crate::credentials::{BasicAuth, Presented};

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Presented {
    type Error = Infallible;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Infallible> {
        Outcome::Success(Presented::parse(req.headers().get_one("Authorization")))
    }
}
