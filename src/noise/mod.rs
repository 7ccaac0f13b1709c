//! Quiet when it should be: silences and maintenance windows cover runs as they are routed, and
//! when one ends, the runs it held for problems still open in the same state run then.

pub mod config;

use crate::actions::Problem;
use crate::matcher::{all_match, Matcher};
use crate::store::{is_closed, RunRow, RunStart, SilenceRow, Store, StoreError};
use config::Maintenance;

/// What covers runs right now: the active silences and the maintenance windows in progress.
pub struct Quiet<'a> {
    silences: Vec<(SilenceRow, Vec<Matcher>)>,
    windows: Vec<&'a Maintenance>,
}

impl<'a> Quiet<'a> {
    pub async fn now(
        store: &Store,
        maintenance: &'a [Maintenance],
        now: i64,
    ) -> Result<Quiet<'a>, StoreError> {
        let silences = store
            .silences(now)
            .await?
            .into_iter()
            .filter(|s| s.is_active(now))
            .map(|s| {
                let m = s.matcher_list();
                (s, m)
            })
            .collect();
        let windows = maintenance
            .iter()
            .filter(|w| w.window_at(now).is_some())
            .collect();
        Ok(Quiet { silences, windows })
    }

    /// What covers `p`, if anything: the holder to record on its runs and a note saying why.
    pub fn covering(&self, p: &Problem) -> Option<(String, String)> {
        if let Some((s, _)) = self.silences.iter().find(|(_, m)| all_match(m, p)) {
            return Some((
                s.id.clone(),
                format!("silenced by {} ({}: {})", s.id, s.author, s.comment),
            ));
        }
        self.windows
            .iter()
            .find(|w| all_match(&w.matchers, p))
            .map(|w| {
                (
                    w.holder(),
                    format!("silenced by maintenance window {}", w.name),
                )
            })
    }

    pub fn active_silences(&self) -> usize {
        self.silences.len()
    }

    /// The maintenance windows in progress alone, for a dry run that cannot read the silences
    /// (no store yet, or one that cannot be opened).
    pub fn windows_only(maintenance: &'a [Maintenance], now: i64) -> Quiet<'a> {
        Quiet {
            silences: Vec::new(),
            windows: maintenance
                .iter()
                .filter(|w| w.window_at(now).is_some())
                .collect(),
        }
    }

    /// The names of the maintenance windows in progress.
    pub fn windows_in_progress(&self) -> Vec<&str> {
        self.windows.iter().map(|w| w.name.as_str()).collect()
    }
}

/// How a chosen action's runs start: silenced when something covers the problem; held for a
/// route's flap wait (counted from the notification's arrival) while the problem is open; else
/// now. A pure rule, so a dry run (`hub explain`) and the dispatcher decide alike.
pub fn start_of(
    covered: Option<&(String, String)>,
    wait: Option<std::time::Duration>,
    problem_closed: bool,
    received_at_ms: i64,
    now: i64,
) -> RunStart {
    if let Some((held_by, note)) = covered {
        return RunStart::Silenced {
            held_by: held_by.clone(),
            note: note.clone(),
        };
    }
    let Some(wait) = wait else {
        return RunStart::Now;
    };
    if problem_closed {
        return RunStart::Now;
    }
    let shown = crate::keys::short_duration(wait);
    RunStart::Held {
        until_ms: (received_at_ms + wait.as_millis() as i64).max(now),
        held_by: "wait".into(),
        note: format!("flap wait: runs in {shown} unless the problem resolves first"),
    }
}

/// Handles what ended: silences that ended or were expired, and maintenance windows not in
/// progress. Returns how many runs it put back in the queue.
pub async fn settle(
    store: &Store,
    maintenance: &[Maintenance],
    tenant: Option<&str>,
    now: i64,
) -> Result<usize, StoreError> {
    let ended = store.silences_to_settle(now).await?;
    let holders = store.holders().await?;
    // Once a second on an idle hub: read nothing more when nothing ended and nothing is held.
    if ended.is_empty() && holders.is_empty() {
        return Ok(0);
    }
    let quiet = Quiet::now(store, maintenance, now).await?;
    let mut released = 0;
    for s in ended {
        let why = format!("silence {} ended", s.id);
        released += settle_holder(store, &quiet, &s.id, s.renotify, &why, tenant).await?;
        store.settle_silence(s.id, now).await?;
    }
    // Every holder runs are still held by, whatever ended it: a window not in progress or no
    // longer configured (a reload), a silence settled while another instance was routing under
    // it, one that is gone.
    for holder in holders {
        let (renotify, why) = match holder.strip_prefix("maintenance:") {
            Some(name) => match maintenance.iter().find(|w| w.name == name) {
                Some(w) if w.window_at(now).is_some() => continue,
                Some(_) => (true, format!("maintenance window {name} ended")),
                None => (
                    true,
                    format!("maintenance window {name} is no longer configured"),
                ),
            },
            None => match store.silence(&holder).await? {
                Some(s) if s.settled_at_ms.is_none() => continue,
                Some(s) => (s.renotify, format!("silence {} ended", s.id)),
                None => (false, String::new()),
            },
        };
        released += settle_holder(store, &quiet, &holder, renotify, &why, tenant).await?;
    }
    Ok(released)
}

/// The runs `holder` silenced: those whose problem is still open in the same state run now
/// (unless `renotify` is off, or something else still covers them); the others are let go.
async fn settle_holder(
    store: &Store,
    quiet: &Quiet<'_>,
    holder: &str,
    renotify: bool,
    why: &str,
    tenant: Option<&str>,
) -> Result<usize, StoreError> {
    let runs: Vec<RunRow> = store.held_runs(holder).await?;
    let (mut release, mut let_go) = (Vec::new(), Vec::new());
    for run in runs {
        let latest = store
            .latest_notification(run.source, &run.problem_key)
            .await?;
        let still_open = latest.as_ref().is_some_and(|n| {
            n.notification.state == run.state
                && !is_closed(&n.notification.state, n.notification.is_test)
        });
        match latest {
            Some(n) if renotify && still_open => {
                let problem = Problem::from_stored(&n).with_tenant_link(tenant);
                match quiet.covering(&problem) {
                    Some((other, _)) => store.rehold_runs(vec![run.id], other).await?,
                    None => release.push(run.id),
                }
            }
            _ => let_go.push(run.id),
        }
    }
    let n = release.len();
    if n > 0 {
        tracing::info!(
            runs = n,
            holder,
            "a silence ended; the runs it held for open problems run now"
        );
        store
            .release_runs(
                release,
                true,
                format!("{why}: the problem is still open, so it runs now"),
            )
            .await?;
    }
    if !let_go.is_empty() {
        store.release_runs(let_go, false, String::new()).await?;
    }
    Ok(n)
}
