//! `hub run`: opens the store, repairs its folder, serves until told to stop.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use crate::config::Config;
use crate::live::Live;
use crate::reload::Reloader;
use crate::store::Store;

pub async fn run(config: Config, path: PathBuf) -> anyhow::Result<()> {
    // At once: from here on a SIGHUP reloads instead of ending the process.
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot watch for SIGHUP (reload)")?;
    // The same for SIGTERM and Ctrl-C: watched only once the listener runs, a SIGTERM that came
    // just after "listening" was logged ended the process at once, with no graceful stop (no
    // drain, no folder mark, no checkpoint).
    let stops = Stops::watch();
    // Before anything is touched: a second hub on this store would run the first one's in-flight
    // actions again.
    let _lock = crate::store::lock(&config.store)?;
    let listener = crate::web::bind(&config).await?;
    std::fs::create_dir_all(&config.dir_sent)
        .with_context(|| format!("cannot create dir_sent {}", config.dir_sent.display()))?;
    let open_files = crate::web::raise_open_file_limit();
    let mut store = open_store(&config).await?;
    store.set_file_slots(crate::web::file_slots(open_files));
    store.announce().await?;
    report_folder(&config, &store.check_folder().await?);
    report_unconfigured_runs(&config, &store).await?;
    if config.uses_example_password() {
        warn_example_password();
    }
    tracing::info!(summary = %config.summary(), "starting hub {}", env!("CARGO_PKG_VERSION"));
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    if config.dynatrace.tenant.is_none() {
        tracing::info!("dynatrace.tenant is not set: notifications are not enriched");
    }

    if let Some(telemetry) = &config.telemetry {
        crate::telemetry::start(telemetry, &config.store.instance)
            .context("cannot start exporting traces (telemetry)")?;
    }
    let dispatcher = crate::dispatch::Dispatcher::new(&config, store.clone())?;
    dispatcher.recover().await?;
    let retention = Arc::new(Live::new(config.retention));
    let tls = match &config.webhook.tls {
        Some(files) => Some(Arc::new(Live::new(crate::tls::server_config(files)?))),
        None => None,
    };
    let reloader = Arc::new(Reloader::new(
        path,
        config.clone(),
        crate::web::Settings::new(&config)?,
        dispatcher.settings(),
        retention.clone(),
        tls,
    ));
    tokio::spawn(crate::reload::on_sighup(
        reloader.clone(),
        hangups,
        store.clone(),
    ));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let pruned = crate::retention::Counters::default();
    let pruning = tokio::spawn(crate::retention::run(
        store.clone(),
        config.dir_sent.clone(),
        retention,
        pruned.clone(),
        stopped.clone(),
    ));
    let dispatching = tokio::spawn(dispatcher.run(stopped));

    let checkpoint = store.clone();
    let served = crate::web::serve(
        &config,
        listener,
        store,
        open_files,
        reloader,
        pruned,
        stops.next(),
    )
    .await;
    // The server has stopped taking notifications; now let running actions finish.
    let _ = stop.send(true);
    let _ = dispatching.await;
    let _ = pruning.await;
    match checkpoint.mark_folder().await {
        Ok(true) => {}
        Ok(false) => tracing::info!(
            "the received folder differs from the store; the next start compares them in full"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "cannot record the received folder's state; the next start compares it with the store in full")
        }
    }
    // Everything acknowledged goes into the database file itself, so that file alone is a whole
    // copy once hub has stopped.
    if let Err(e) = checkpoint.checkpoint().await {
        tracing::warn!(error = %e, "cannot empty the WAL at stop; hub.db-wal must stay beside hub.db");
    }
    if let Err(e) = checkpoint.leave().await {
        tracing::warn!(error = %e, "cannot leave the table of instances; a restart under this name waits a few seconds");
    }
    // The last notifications' spans, before the process and its queue are gone.
    crate::telemetry::flush(std::time::Duration::from_secs(3)).await;
    match served {
        Ok(()) => {
            tracing::info!("stopped");
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!(e)),
    }
}

/// Resolves at SIGTERM (a service manager's stop) or Ctrl-C.
/// SIGTERM and Ctrl-C, watched from the start of `hub run`.
struct Stops {
    term: Option<tokio::signal::unix::Signal>,
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl Stops {
    fn watch() -> Stops {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate())
            .map_err(
                |e| tracing::warn!(error = %e, "cannot watch for SIGTERM; stop hub with Ctrl-C"),
            )
            .ok();
        let interrupt = signal(SignalKind::interrupt()).ok();
        Stops { term, interrupt }
    }

    /// The first of them to come.
    async fn next(mut self) {
        tokio::select! {
            _ = next_of(self.term.as_mut()) => tracing::info!("SIGTERM: stopping"),
            _ = next_of(self.interrupt.as_mut()) => tracing::info!("interrupted: stopping"),
        }
    }
}

/// The signal's next delivery; never, for a signal that could not be watched.
async fn next_of(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// Says what the start-up check of the received folder found.
fn report_folder(config: &Config, check: &crate::store::FolderCheck) {
    let folder = config.dir_received.display();
    if check.as_left {
        tracing::info!(folder = %folder, "the received folder and the store are as the last clean stop left them");
        return;
    }
    if check.restored > 0 {
        tracing::warn!(
            restored = check.restored,
            folder = %folder,
            "wrote back files the store had and the folder lacked"
        );
    }
    for problem in &check.unwritable {
        tracing::error!(folder = %folder, problem = %problem, "cannot write back a received file; hub goes on without it");
    }
    if !check.unknown.is_empty() {
        let shown: Vec<&str> = check.unknown.iter().take(5).map(String::as_str).collect();
        tracing::warn!(
            files = check.unknown.len(),
            folder = %folder,
            examples = ?shown,
            "the received folder holds notification files the store does not have (left by the \
             Python sample, or kept only in a WAL that was lost). `hub import {folder}` stores \
             them (as history: no action runs for them); files already stored are skipped"
        );
    }
}

/// Runs of an action that is no longer configured wait, silently, until it is back: say so.
async fn report_unconfigured_runs(config: &Config, store: &Store) -> anyhow::Result<()> {
    for (action, waiting) in store.waiting_runs_by_action().await? {
        if !config.actions.actions.iter().any(|a| a.name == action) {
            tracing::warn!(
                action = %action, runs = waiting,
                "runs of an action that is no longer in the config wait until it is configured again"
            );
        }
    }
    Ok(())
}

fn warn_example_password() {
    let line = "*".repeat(78);
    tracing::warn!("{line}");
    tracing::warn!("webhook.password is the EXAMPLE password shipped in config.json.");
    tracing::warn!("Anyone who has read the example can post notifications to this hub.");
    tracing::warn!("Set a password of your own in config.json or in HUB_WEBHOOK_PASSWORD.");
    tracing::warn!("{line}");
}

/// Opens the configured store for a command or the service, and says which store an error is
/// about: a PostgreSQL driver's "Connection refused" names neither host nor port.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    Store::open(&config.store, &config.dir_received)
        .await
        .with_context(|| format!("cannot open the store ({})", store_place(config)))
}

/// As [`open_store`], changing none of the store's tables (see `Store::open_to_inspect`).
pub async fn inspect_store(config: &Config) -> anyhow::Result<Store> {
    Store::open_to_inspect(&config.store, &config.dir_received)
        .await
        .with_context(|| format!("cannot open the store ({})", store_place(config)))
}

/// Where the store is, fit to show (no password): `PostgreSQL at HOST:PORT, database DB` or
/// `SQLite file FILE`.
pub fn store_place(config: &Config) -> String {
    let url = &config.store.url;
    if !config.store.is_postgres() {
        let file = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        return format!("SQLite file {file}");
    }
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("localhost");
            let port = u.port().unwrap_or(5432);
            let db = u.path().trim_start_matches('/');
            if db.is_empty() {
                format!("PostgreSQL at {host}:{port}")
            } else {
                format!("PostgreSQL at {host}:{port}, database {db}")
            }
        }
        Err(_) => format!("PostgreSQL {url}"),
    }
}
