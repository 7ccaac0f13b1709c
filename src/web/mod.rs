//! HTTP: the only module that knows about it. Routes, guards and error answers.

mod auth;
mod error;
mod ingest;
mod sources;

use std::io::Cursor;
use std::net::SocketAddr;

use rocket::config::{Config as RocketConfig, Ident, LogLevel};
use rocket::fairing::AdHoc;
use rocket::http::ContentType;
use rocket::request::Request;
use rocket::response::{self, Responder, Response};
use rocket::{catchers, get, routes, Build, Rocket};
use serde_json::{json, Value};

use crate::config::Config;
use crate::store::Store;
pub use auth::{BasicAuth, Presented};
pub use error::ApiError;

/// What every route can reach.
pub struct App {
    pub store: Store,
    pub webhook_auth: BasicAuth,
    pub max_body_bytes: u64,
    pub sources: crate::config::SourcesConfig,
    pub pagerduty_rate: sources::RateLimiter,
}

/// A 200 answer with a JSON body.
pub struct JsonOk(pub Value);

impl<'r> Responder<'r, 'static> for JsonOk {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let body = self.0.to_string();
        Response::build()
            .header(ContentType::JSON)
            .sized_body(body.len(), Cursor::new(body))
            .ok()
    }
}

#[get("/healthz")]
fn healthz() -> JsonOk {
    JsonOk(json!({ "status": "ok" }))
}

/// Builds the server from the config. Rocket's own config files, environment and logging are not
/// used: `config.json` is the one source of settings, and hub logs through `tracing`.
pub fn build(config: &Config, store: Store) -> Rocket<Build> {
    let rocket_config = RocketConfig {
        address: config.webhook.interface,
        port: config.webhook.port,
        ident: Ident::try_new("hub").unwrap_or_default(),
        log_level: LogLevel::Off,
        cli_colors: false,
        ..RocketConfig::release_default()
    };
    let app = App {
        store,
        webhook_auth: BasicAuth::new(&config.webhook.username, &config.webhook.password),
        max_body_bytes: config.webhook.max_body_bytes,
        sources: config.sources.clone(),
        pagerduty_rate: sources::RateLimiter::default(),
    };
    rocket::custom(rocket_config)
        .manage(app)
        .mount("/", routes![healthz])
        .mount("/", ingest::routes())
        .mount("/", sources::routes())
        .register("/", catchers![error::default_catcher])
        .attach(AdHoc::on_liftoff("announce", |rocket| {
            Box::pin(async move {
                let addr = SocketAddr::new(rocket.config().address, rocket.config().port);
                tracing::info!(address = %addr, "listening on http://{addr}");
            })
        }))
}
