//! HTTP: the only module that knows about it. Routes, guards and error answers.

mod api;
mod auth;
mod error;
mod escalation;
mod groups;
mod inbound;
mod ingest;
mod metrics;
mod noise;
mod openapi;
mod opsgenie;
mod page;
mod people;
mod server;
mod text;
mod triage;
mod view;

use std::io::Cursor;
use std::net::SocketAddr;

use rocket::config::{Config as RocketConfig, Ident, LogLevel};
use rocket::http::ContentType;
use rocket::request::Request;
use rocket::response::{self, Responder, Response};
use rocket::{catchers, get, routes, Build, Rocket};
use serde_json::{json, Value};

use crate::config::Config;
use crate::live::Live;
use crate::reload::Reloader;
use crate::store::Store;
pub use auth::{BasicAuth, Caller, Presented};
pub use error::ApiError;
pub use server::Tls;
use std::sync::Arc;

/// What every route can reach.
pub struct App {
    pub store: Store,
    /// Fixed at start, as the listener that enforces it first is.
    pub max_body_bytes: u64,
    pub metrics: metrics::Metrics,
    pub started: std::time::Instant,
    pub templates: page::Templates,
    /// What the config decides; replaced whole by a reload.
    pub settings: Arc<Live<Settings>>,
    pub reloader: Arc<Reloader>,
    /// Signs the page's own forms (see `page::replay`); new at every start.
    csrf_key: [u8; 32],
    /// Passwords that checked out lately (see `people::password`).
    pub remembered: crate::people::password::Remembered,
    /// Turns for the slow password check.
    pub password_checks: tokio::sync::Semaphore,
}

/// The web's part of the config, made ready to use. A request keeps the one it started with.
pub struct Settings {
    pub config: Config,
    pub sources: crate::config::SourcesConfig,
    pub client: Option<crate::dynatrace::Client>,
    /// The `status_page` login, an admin. Without that section, the webhook's credentials, as
    /// long as the config has no people: a sample's config keeps its one login, and once there
    /// are people a monitoring system's password no longer opens the page.
    pub status_page: Option<BasicAuth>,
}

impl Settings {
    pub fn new(config: &Config) -> Result<Settings, ServeError> {
        Ok(Settings {
            config: config.clone(),
            sources: config.sources.clone(),
            client: crate::dynatrace::Client::from_config(&config.dynatrace)?,
            status_page: match &config.viewer {
                Some((user, password)) => Some(BasicAuth::new(user, password)),
                None if config.people.people.is_empty() => Some(BasicAuth::new(
                    &config.webhook.username,
                    &config.webhook.password,
                )),
                None => None,
            },
        })
    }
}

impl App {
    /// The actions that tell a source what people did, as the config stands now.
    pub fn tells(&self) -> crate::escalate::tell::Tell {
        let settings = self.settings.get();
        crate::escalate::tell::Tell::of(&settings.config.actions, &settings.config.people)
    }

    pub fn csrf_token(&self) -> String {
        crate::secret::hex(&crate::secret::hmac_sha256(
            &self.csrf_key,
            &[b"hub page forms"],
        ))
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

/// A JSON answer with any status.
pub struct StatusJson(pub rocket::http::Status, pub Value);

impl<'r> Responder<'r, 'static> for StatusJson {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let body = self.1.to_string();
        Response::build()
            .status(self.0)
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
        Err(reason) => Err(ApiError::unavailable(reason.to_string())),
    }
}

/// Re-reads `config.json` (as SIGHUP does). 200 with what changed; 500 when the new config is
/// refused, which leaves the running one in force. Refused (403) when a browser says another
/// site's page sent it: a form there could otherwise post it with the viewer's saved login.
#[rocket::post("/-/reload")]
async fn reload(
    app: &rocket::State<App>,
    caller: Caller,
    origin: view::SameOrigin,
) -> Result<JsonOk, ApiError> {
    let actor = app
        .require(&caller, crate::people::Role::Admin, crate::people::Via::Api)
        .await?;
    if !origin.0 {
        return Err(ApiError::forbidden(
            "a reload is not taken from another site's page; POST it from hub's own host (curl, a \
             script) or send SIGHUP",
        ));
    }
    let done = app.reloader.reload("POST /-/reload").await;
    let outcome = match &done {
        Ok(_) => "reloaded".to_string(),
        Err(e) => format!("refused: {e}"),
    };
    app.audit(&actor, "reload", "config", outcome).await;
    match done {
        Ok(done) => Ok(JsonOk(json!({
            "status": "reloaded",
            "restart_needed": done.restart_needed,
        }))),
        Err(e) => Err(ApiError::reload_failed(format!(
            "{e}; the running config stays in force"
        ))),
    }
}

/// Raises the open-file limit to what the system allows; returns the limit now in force.
pub fn raise_open_file_limit() -> u64 {
    server::raise_open_file_limit()
}

/// How many received files may wait for their names under this open-file limit.
pub fn file_slots(open_files: u64) -> usize {
    server::file_slots(open_files)
}

/// Takes `webhook.interface:webhook.port`, before anything else starts: a port that is taken is
/// a clear error at once.
pub async fn bind(config: &Config) -> Result<tokio::net::TcpListener, ServeError> {
    let addr = SocketAddr::new(config.webhook.interface, config.webhook.port);
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Why hub cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot serve on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read the listening address: {0}")]
    Address(#[source] std::io::Error),
    /// Rocket's own error must be read where it is made, so its text is kept.
    #[error("cannot prepare the routes: {0}")]
    Routes(String),
    #[error(transparent)]
    Dynatrace(#[from] crate::dynatrace::DynatraceError),
}

/// Serves the endpoints on `listener` until `stop` resolves (see [`server`] for the listener's
/// limits). Logs the address it listens on, which with port 0 is the one the system picked.
pub async fn serve(
    config: &Config,
    listener: tokio::net::TcpListener,
    store: Store,
    open_files: u64,
    reloader: Arc<Reloader>,
    pruned: crate::retention::Counters,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    let max_connections = server::connection_cap(config.webhook.max_connections, open_files);
    let per_client =
        server::per_client_cap(config.webhook.max_connections_per_client, max_connections);
    let (rocket, refused) = build(config, store, reloader.clone(), pruned)?;
    let client = rocket::local::asynchronous::Client::untracked(rocket)
        .await
        .map_err(|e| ServeError::Routes(e.to_string()))?;
    let addr = listener.local_addr().map_err(ServeError::Address)?;
    let tls = reloader.tls();
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(
        address = %addr, max_connections, max_connections_per_client = per_client,
        open_file_limit = open_files,
        "listening on {scheme}://{addr}"
    );
    let limits = server::Limits {
        header_timeout: config.webhook.header_timeout,
        body_timeout: config.webhook.body_timeout,
        max_body_bytes: config.webhook.max_body_bytes,
        per_client,
    };
    server::serve(
        listener,
        client,
        limits,
        max_connections,
        refused,
        tls,
        stop,
    )
    .await;
    Ok(())
}

/// Every route hub serves, all at `/`. The OpenAPI document's tests read them here.
fn routes() -> Vec<rocket::Route> {
    [
        routes![healthz, reload],
        ingest::routes(),
        opsgenie::routes(),
        page::routes(),
        api::routes(),
        groups::routes(),
        openapi::routes(),
        noise::routes(),
        people::routes(),
        escalation::routes(),
        inbound::routes(),
    ]
    .concat()
}

/// Builds the routes from the config, and what counts the listener's refusals. Rocket's own
/// config files, environment, logging and listener are not used: `config.json` is the one source
/// of settings, hub logs through `tracing`, and [`server`] listens.
fn build(
    config: &Config,
    store: Store,
    reloader: Arc<Reloader>,
    pruned: crate::retention::Counters,
) -> Result<(Rocket<Build>, Arc<server::RefusedLog>), ServeError> {
    let rocket_config = RocketConfig {
        address: config.webhook.interface,
        port: config.webhook.port,
        ident: Ident::try_new("hub").unwrap_or_default(),
        log_level: LogLevel::Off,
        cli_colors: false,
        ..RocketConfig::release_default()
    };
    let mut metrics = metrics::Metrics::default();
    metrics.register_reloads(reloader.status());
    metrics.register_pruned(&pruned);
    let refused = Arc::new(server::RefusedLog::new(metrics.refused_counter()));
    let app = App {
        store,
        max_body_bytes: config.webhook.max_body_bytes,
        metrics,
        started: std::time::Instant::now(),
        templates: page::Templates::default(),
        settings: reloader.web(),
        reloader,
        csrf_key: random_key(),
        remembered: Default::default(),
        password_checks: tokio::sync::Semaphore::new(auth::PASSWORD_CHECKS),
    };
    let rocket = rocket::custom(rocket_config)
        .manage(app)
        .mount("/", routes())
        .register("/", catchers![error::default_catcher]);
    Ok((rocket, refused))
}
