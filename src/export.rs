//! `hub export --dir DIR [--since DURATION]`: writes `problems_received/` and `problems_sent/`
//! from the store, for an instance whose folders are not the ones the others write (several hubs
//! on PostgreSQL without a shared folder), or to rebuild them after a disk was lost.
//!
//! A received file already there with the same bytes is left alone; one with other bytes is kept
//! and reported, never replaced. Sent files are views and are written again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::clock::now_ms;
use crate::config::Config;
use crate::store::files;

/// Notifications read from the store at a time.
const BATCH: i64 = 500;

/// What became of the received files.
#[derive(Default)]
struct Tally {
    written: usize,
    unchanged: usize,
    kept: usize,
    failed: usize,
}

pub async fn export(
    config: Config,
    dir: PathBuf,
    since: Option<Duration>,
) -> anyhow::Result<String> {
    let since_ms = since.map_or(0, |d| now_ms() - d.as_millis() as i64);
    let received = dir.join("problems_received");
    let sent = dir.join("problems_sent");
    for folder in [&received, &sent] {
        std::fs::create_dir_all(folder)
            .map_err(|e| anyhow::anyhow!("cannot make {}: {e}", folder.display()))?;
    }
    let store = crate::app::open_store(&config).await?;
    eprintln!(
        "exporting {} to {}",
        match since {
            Some(d) => format!("the last {}", crate::keys::short_duration(d)),
            None => "everything".to_string(),
        },
        dir.display()
    );
    let mut tally = Tally::default();
    let mut after = 0;
    loop {
        let batch = store.export_batch(after, since_ms, BATCH).await?;
        let Some((last, _, _)) = batch.last() else {
            break;
        };
        after = *last;
        let target = received.clone();
        let counted = tokio::task::spawn_blocking(move || {
            let mut t = Tally::default();
            for (_, name, body) in batch {
                write_received(&target, &name, &body, &mut t);
            }
            t
        })
        .await?;
        let before = tally.written + tally.unchanged + tally.kept + tally.failed;
        tally.written += counted.written;
        tally.unchanged += counted.unchanged;
        tally.kept += counted.kept;
        tally.failed += counted.failed;
        let done = tally.written + tally.unchanged + tally.kept + tally.failed;
        if done / 1000 > before / 1000 {
            eprintln!("… {done} notification(s)");
        }
    }
    let problems: Vec<_> = store
        .last_sent_changes()
        .await?
        .into_iter()
        .filter(|(_, _, changed)| *changed >= since_ms)
        .map(|(source, key, _)| (source, key))
        .collect();
    let (mut sent_written, mut sent_failed) = (0, 0);
    for chunk in problems.chunks(64) {
        for view in store.sent_views(chunk).await?.into_iter().flatten() {
            let threads = store.threads(view.source, &view.problem_key).await?;
            let (name, bytes, dated) = crate::dispatch::sent::render(view, &threads)?;
            match files::write_view_dated(&sent, &name, &bytes, dated) {
                Ok(()) => sent_written += 1,
                Err(e) => {
                    sent_failed += 1;
                    println!("failed   problems_sent/{name}: {e}");
                }
            }
        }
    }
    let summary = format!(
        "problems_received: {} written, {} already there, {} kept (another file under the name), \
         {} failed; problems_sent: {sent_written} of {} written",
        tally.written,
        tally.unchanged,
        tally.kept,
        tally.failed,
        problems.len()
    );
    // A script that exports and then copies the folders must not take a partial export for a
    // whole one: any file that could not be written fails the command (each is listed above).
    if tally.failed + sent_failed > 0 {
        anyhow::bail!(
            "{summary}: {} file(s) could not be written",
            tally.failed + sent_failed
        );
    }
    Ok(summary)
}

fn write_received(dir: &Path, name: &str, body: &[u8], t: &mut Tally) {
    match std::fs::read(dir.join(name)) {
        Ok(there) if there == body => t.unchanged += 1,
        Ok(_) => {
            t.kept += 1;
            println!("kept     problems_received/{name}: a different file is there; not replaced");
        }
        Err(_) => match files::write_view(dir, name, body) {
            Ok(()) => t.written += 1,
            Err(e) => {
                t.failed += 1;
                println!("failed   problems_received/{name}: {e}");
            }
        },
    }
}
