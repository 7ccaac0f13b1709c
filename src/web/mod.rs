//! HTTP: the only module that knows about it. Routes, guards and error answers.

mod api;
mod auth;
mod error;
mod ingest;
mod metrics;
mod page;
mod sources;
mod view;

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
    pub metrics: metrics::Metrics,
    pub config: Config,
    pub client: Option<crate::dynatrace::Client>,
    pub started: std::time::Instant,
    pub templates: page::Templates,
    /// Who may read the page, the API and the metrics.
    pub viewer: BasicAuth,
    /// Signs the page's own forms (see `page::replay`); new at every start.
    csrf_key: [u8; 32],
}

impl App {
    pub fn viewer_allows(&self, presented: &Presented) -> Result<(), ApiError> {
        if self.viewer.allows(presented) {
            Ok(())
        } else {
            Err(ApiError::unauthorized_for(
                "Basic",
                "send HTTP Basic credentials (status_page, else webhook username and password)",
            ))
        }
    }

    pub fn csrf_token(&self) -> String {
        crate::secret::hmac_sha256(&self.csrf_key, &[b"hub page forms"])
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    pub fn csrf_matches(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.csrf_token()
            .as_bytes()
            .ct_eq(presented.as_bytes())
            .into()
    }
}

/// 32 unpredictable bytes from the operating system.
fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    let read = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut key));
    if read.is_err() {
        key.iter_mut().for_each(|b| *b = fastrand::u8(..));
    }
    key
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

/// Healthy means a notification posted now would be stored: the store takes writes and the
/// received folder is there. A load balancer then sends senders elsewhere instead of into 503s.
#[get("/healthz")]
fn healthz(app: &rocket::State<App>) -> Result<JsonOk, ApiError> {
    match app.store.health() {
        Ok(()) => Ok(JsonOk(json!({ "status": "ok" }))),
        Err(reason) => Err(ApiError::new(
            rocket::http::Status::ServiceUnavailable,
            "unavailable",
            reason,
        )),
    }
}

/// Builds the server from the config. Rocket's own config files, environment and logging are not
/// used: `config.json` is the one source of settings, and hub logs through `tracing`.
pub fn build(config: &Config, store: Store) -> Result<Rocket<Build>, String> {
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
        metrics: metrics::Metrics::default(),
        config: config.clone(),
        client: crate::dynatrace::Client::from_config(&config.dynatrace)
            .map_err(|e| e.to_string())?,
        started: std::time::Instant::now(),
        templates: page::Templates::default(),
        viewer: match &config.viewer {
            Some((user, password)) => BasicAuth::new(user, password),
            None => BasicAuth::new(&config.webhook.username, &config.webhook.password),
        },
        csrf_key: random_key(),
    };
    Ok(rocket::custom(rocket_config)
        .manage(app)
        .mount("/", routes![healthz])
        .mount("/", ingest::routes())
        .mount("/", sources::routes())
        .mount("/", page::routes())
        .mount("/", api::routes())
        .register("/", catchers![error::default_catcher])
        .attach(AdHoc::on_liftoff("announce", |rocket| {
            Box::pin(async move {
                let addr = SocketAddr::new(rocket.config().address, rocket.config().port);
                tracing::info!(address = %addr, "listening on http://{addr}");
            })
        })))
}
