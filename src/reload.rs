//! Live reload: SIGHUP and `POST /-/reload` re-read `config.json`.
//!
//! The new config is read, checked and built whole beside the running one; only then are the web's
//! and the dispatcher's settings swapped, each in one step. A request or a run keeps the settings it
//! started with, so nothing in flight sees half of each. An invalid config changes nothing. Keys
//! that the listener or the store were built from at start keep their value until a restart, and
//! each reload names those that differ.

use std::path::PathBuf;
use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;

use crate::clock::now_ms;
use crate::config::{Config, ConfigError, RetentionConfig};
use crate::dispatch::SettingsHandle;
use crate::live::Live;

/// The reload gauges `/metrics` shows (Alertmanager's names).
pub struct ReloadStatus {
    pub successful: Gauge,
    pub succeeded_at: Gauge,
}

pub struct Reloader {
    path: PathBuf,
    /// The config hub started with: what the listener and the store were built from.
    started: Config,
    /// One reload at a time, so two cannot interleave their swaps.
    turn: tokio::sync::Mutex<()>,
    web: Arc<Live<crate::web::Settings>>,
    dispatch: SettingsHandle,
    retention: Arc<Live<Option<RetentionConfig>>>,
    /// The listener's certificate when it serves HTTPS.
    tls: Option<crate::web::Tls>,
    status: ReloadStatus,
}

/// What a reload that took effect left for a restart.
#[derive(Debug)]
pub struct Reloaded {
    pub restart_needed: Vec<&'static str>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Build(String),
}

impl Reloader {
    pub fn new(
        path: PathBuf,
        started: Config,
        web: crate::web::Settings,
        dispatch: SettingsHandle,
        retention: Arc<Live<Option<RetentionConfig>>>,
        tls: Option<crate::web::Tls>,
    ) -> Reloader {
        let status = ReloadStatus {
            successful: Gauge::default(),
            succeeded_at: Gauge::default(),
        };
        status.successful.set(1);
        status.succeeded_at.set(now_ms() / 1000);
        Reloader {
            path,
            started,
            turn: tokio::sync::Mutex::new(()),
            web: Arc::new(Live::new(web)),
            dispatch,
            retention,
            tls,
            status,
        }
    }

    pub fn web(&self) -> Arc<Live<crate::web::Settings>> {
        self.web.clone()
    }

    pub fn tls(&self) -> Option<crate::web::Tls> {
        self.tls.clone()
    }

    pub fn status(&self) -> &ReloadStatus {
        &self.status
    }

    /// Re-reads the config file; `why` names what asked, for the log.
    pub async fn reload(&self, why: &str) -> Result<Reloaded, ReloadError> {
        let _turn = self.turn.lock().await;
        let built = Config::load(&self.path)
            .map_err(ReloadError::from)
            .and_then(|config| {
                let web = crate::web::Settings::new(&config)
                    .map_err(|e| ReloadError::Build(e.to_string()))?;
                let dispatch = self
                    .dispatch
                    .prepare(&config)
                    .map_err(|e| ReloadError::Build(e.to_string()))?;
                // Read again even when the paths are the same: the files may be renewed ones.
                let tls = match (&self.tls, &config.webhook.tls) {
                    (Some(_), Some(files)) => Some(
                        crate::tls::server_config(files)
                            .map_err(|e| ReloadError::Build(e.to_string()))?,
                    ),
                    _ => None,
                };
                Ok((config, web, dispatch, tls))
            });
        let (config, web, dispatch, tls) = match built {
            Ok(b) => b,
            Err(e) => {
                self.status.successful.set(0);
                tracing::error!(
                    asked_by = why, config = %self.path.display(), error = %e,
                    "cannot reload the config; the running one stays in force"
                );
                return Err(e);
            }
        };
        let restart_needed = restart_needed(&self.started, &config);
        self.web.set(web);
        self.dispatch.put(dispatch);
        self.retention.set(config.retention);
        if let (Some(live), Some(tls)) = (&self.tls, tls) {
            live.set(tls);
        }
        self.status.successful.set(1);
        self.status.succeeded_at.set(now_ms() / 1000);
        tracing::info!(asked_by = why, summary = %config.summary(), "reloaded the config");
        if !restart_needed.is_empty() {
            tracing::warn!(
                keys = ?restart_needed,
                "these keys changed but only take effect at a restart; until then the values hub \
                 started with stay in force"
            );
        }
        Ok(Reloaded { restart_needed })
    }
}

/// Reloads at every SIGHUP (a service manager's reload) until the process ends.
pub async fn on_sighup(
    reloader: Arc<Reloader>,
    mut hangups: tokio::signal::unix::Signal,
    store: crate::store::Store,
) {
    // Who sent the signal is not known (a service manager's reload, or anyone who may signal the
    // process): the audit log says it was a signal, unverified, as it does a command's system user.
    let actor = crate::people::Actor {
        name: "SIGHUP".to_string(),
        role: crate::people::Role::Admin,
        token: None,
        verified: false,
        via: crate::people::Via::Signal,
        from: "local".to_string(),
    };
    while hangups.recv().await.is_some() {
        // The outcome is logged by `reload` itself.
        let outcome = match reloader.reload("SIGHUP").await {
            Ok(_) => "reloaded".to_string(),
            Err(e) => format!("refused: {e}"),
        };
        crate::people::audit::record(&store, &actor, "reload", "config", outcome).await;
    }
}

/// The keys that differ between `started` and `new` and are only read at start.
fn restart_needed(started: &Config, new: &Config) -> Vec<&'static str> {
    let (a, b) = (started, new);
    let (sa, sb) = (&a.store, &b.store);
    let secret = |s: &Option<crate::secret::Secret>| s.as_ref().map(|s| s.expose().to_string());
    [
        (
            "webhook.interface",
            a.webhook.interface != b.webhook.interface,
        ),
        ("webhook.port", a.webhook.port != b.webhook.port),
        (
            "webhook.max_body_bytes",
            a.webhook.max_body_bytes != b.webhook.max_body_bytes,
        ),
        (
            "webhook.header_timeout",
            a.webhook.header_timeout != b.webhook.header_timeout,
        ),
        (
            "webhook.body_timeout",
            a.webhook.body_timeout != b.webhook.body_timeout,
        ),
        (
            "webhook.max_connections",
            a.webhook.max_connections != b.webhook.max_connections,
        ),
        (
            "webhook.max_connections_per_client",
            a.webhook.max_connections_per_client != b.webhook.max_connections_per_client,
        ),
        (
            "store.url",
            sa.connect_url.expose() != sb.connect_url.expose(),
        ),
        (
            "store.password_env",
            secret(&sa.password) != secret(&sb.password),
        ),
        ("store.ca_file", sa.ca_file != sb.ca_file),
        ("store.instance", sa.instance != sb.instance),
        ("dispatch.lease_secs", sa.lease != sb.lease),
        ("dir_received", a.dir_received != b.dir_received),
        ("dir_sent", a.dir_sent != b.dir_sent),
        ("log_dir", a.log_dir != b.log_dir),
        ("log_file", a.log_file != b.log_file),
        ("log_format", a.log_format != b.log_format),
        ("telemetry", a.telemetry != b.telemetry),
    ]
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect()
}
