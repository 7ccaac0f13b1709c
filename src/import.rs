//! `hub import DIR`: stores notification files (the Python sample's `problems_received/`, or files
//! a lost WAL left without their rows) as history: shown on the page and in the API, never acted on.
//!
//! Idempotent: a file whose notification is stored already is skipped, so running it twice, or
//! over a folder hub itself writes, takes each notification once.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::domain::Source;
use crate::sources::Headers;
use crate::store::{Accepted, Store};

/// What became of one file.
enum Fate {
    Stored(Vec<String>),
    AlreadyStored(Vec<String>),
    Refused(String),
}

pub async fn import(config: Config, dir: PathBuf, source: Source) -> anyhow::Result<String> {
    let files = notification_files(&dir)?;
    let store = crate::app::open_store(&config).await?;
    // As at `hub run`'s start: learns which names in the folder are taken by files it does not hold.
    store.check_folder().await?;
    // Files of hub's own folder are kept where they are, as the notifications' files.
    let own_folder = same_folder(&dir, store.dir_received());
    let total = files.len();
    eprintln!(
        "importing {total} file(s) from {} as {source}",
        dir.display()
    );
    let (mut stored, mut already, mut refused) = (0, 0, 0);
    for (i, path) in files.iter().enumerate() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match import_one(&store, path, &name, source, own_folder).await {
            Fate::Stored(names) => {
                stored += 1;
                println!("stored   {name} as {}", names.join(", "));
            }
            Fate::AlreadyStored(names) => {
                already += 1;
                println!("skipped  {name}: already stored (as {})", names.join(", "));
            }
            Fate::Refused(why) => {
                refused += 1;
                println!("skipped  {name}: {why}");
            }
        }
        if (i + 1) % 1000 == 0 {
            eprintln!("… {} of {total} files", i + 1);
        }
    }
    Ok(format!(
        "imported {stored} of {total} file(s) as history (no action runs for them); skipped \
         {already} already stored and {refused} that are not {source} notifications"
    ))
}

async fn import_one(store: &Store, path: &Path, name: &str, source: Source, own: bool) -> Fate {
    let body = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return Fate::Refused(format!("cannot read it: {e}")),
    };
    let notifications = match source.read(&Headers::default(), &body) {
        Ok(n) => n,
        Err(e) => return Fate::Refused(format!("not a {source} notification: {e}")),
    };
    let adopt = (own && notifications.len() == 1 && notifications[0].body == body)
        .then(|| name.to_string());
    match store.import(notifications, adopt).await {
        Ok(accepted) => {
            let names: Vec<String> = accepted.iter().map(|a| a.file_name().to_string()).collect();
            if accepted
                .iter()
                .any(|a| matches!(a, Accepted::Stored { .. }))
            {
                Fate::Stored(names)
            } else {
                Fate::AlreadyStored(names)
            }
        }
        Err(e) => Fate::Refused(format!("cannot store it: {e}")),
    }
}

/// The JSON files of a folder (not hidden ones, which are hub's temporary files), by name.
fn notification_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot read folder {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            name.ends_with(".json") && !name.starts_with('.')
        })
        .collect();
    files.sort();
    Ok(files)
}

fn same_folder(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
