//! `hub run`: opens the store, repairs its folder, serves until told to stop.

use anyhow::Context;

use crate::config::Config;
use crate::store::Store;

pub async fn run(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.dir_sent)
        .with_context(|| format!("cannot create dir_sent {}", config.dir_sent.display()))?;
    let store = Store::open(&config.store.url, &config.dir_received).await?;
    let restored = store.restore_missing_files().await?;
    if restored > 0 {
        tracing::warn!(
            restored,
            folder = %config.dir_received.display(),
            "wrote back files the store had and the folder lacked"
        );
    }
    if config.uses_example_password() {
        warn_example_password();
    }
    tracing::info!(summary = %config.summary(), "starting hub {}", env!("CARGO_PKG_VERSION"));
    if config.dynatrace.tenant.is_none() {
        tracing::info!("dynatrace.tenant is not set: notifications are not enriched");
    }

    let dispatcher =
        crate::dispatch::Dispatcher::new(&config, store.clone()).map_err(anyhow::Error::msg)?;
    dispatcher.recover().await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let dispatching = tokio::spawn(dispatcher.run(stopped));

    let addr = format!("{}:{}", config.webhook.interface, config.webhook.port);
    let served = crate::web::build(&config, store)
        .map_err(anyhow::Error::msg)?
        .launch()
        .await;
    // The server has stopped taking notifications; now let running actions finish.
    let _ = stop.send(true);
    let _ = dispatching.await;
    match served {
        Ok(_) => {
            tracing::info!("stopped");
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!("cannot serve on {addr}: {}", e.kind())),
    }
}

fn warn_example_password() {
    let line = "*".repeat(78);
    tracing::warn!("{line}");
    tracing::warn!("webhook.password is the EXAMPLE password shipped in config.json.");
    tracing::warn!("Anyone who has read the example can post notifications to this hub.");
    tracing::warn!("Set a password of your own in config.json or in HUB_WEBHOOK_PASSWORD.");
    tracing::warn!("{line}");
}
