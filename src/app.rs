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
    if config.incident_notification.active || config.sms_notification.active {
        tracing::warn!(
            "incident_notification and sms_notification are validated, but this version does not \
             run actions yet: notifications are stored and answered only"
        );
    }

    match crate::dynatrace::Client::from_config(&config.dynatrace)? {
        Some(client) => {
            let dispatcher = crate::dispatch::Dispatcher {
                wake: store.committed(),
                store: store.clone(),
                client,
                dir_sent: config.dir_sent.clone(),
            };
            tokio::spawn(dispatcher.run());
        }
        None => tracing::info!("dynatrace.tenant is not set: notifications are not enriched"),
    }

    let addr = format!("{}:{}", config.webhook.interface, config.webhook.port);
    match crate::web::build(&config, store).launch().await {
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
