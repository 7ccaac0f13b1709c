//! Telling the source what people did: an acknowledgement or a resolve in hub becomes runs of
//! the actions that speak back to where the problem came from. A PagerDuty action that forwarded
//! the problem sends `acknowledge` (or `resolve`) on the same `dedup_key`; `dynatrace-sync`
//! comments on the Dynatrace problem or closes it; `alertmanager-silence` silences the alert until
//! it resolves or the acknowledgement is taken back.
//!
//! They are ordinary runs, inserted once (their keys name the escalation, its round and the
//! event), so they retry, show on the pages and survive a restart like any other. The dispatcher
//! gives such a run's problem the state the event stands for (see [`event_of`]).

use std::time::Duration;

use crate::actions::alertmanager_silence::{self, AlertmanagerSilenceConfig};
use crate::actions::config::{ActionConfig, Actions};
use crate::actions::{dynatrace_sync, episode_of, ActionKind};
use crate::domain::Source;
use crate::keys::{Issues, Section};
use crate::store::{EscalationRow, NewRun, RunStart, Store, StoreError};

/// What people did in hub that the source hears of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Ack,
    /// An acknowledgement taken back: the escalation pages again.
    Unack,
    Resolve,
}

impl Event {
    fn word(self) -> &'static str {
        match self {
            Event::Ack => "ack",
            Event::Unack => "unack",
            Event::Resolve => "resolve",
        }
    }

    /// The state the far side is told of.
    pub fn state(self) -> &'static str {
        match self {
            Event::Ack => "ACKNOWLEDGED",
            Event::Unack => "OPEN",
            Event::Resolve => "RESOLVED",
        }
    }
}

const PREFIX: &str = "tell/";

/// The event a run tells of, from its key; `None` for any other run.
pub fn event_of(idem_key: &str) -> Option<Event> {
    let rest = idem_key.strip_prefix(PREFIX)?;
    match rest.split('/').nth(2)? {
        "ack" => Some(Event::Ack),
        "unack" => Some(Event::Unack),
        "resolve" => Some(Event::Resolve),
        _ => None,
    }
}

/// Which configured actions speak back.
#[derive(Debug, Clone, Default)]
pub struct Tell {
    /// People's names by id, for what the source is told.
    names: std::collections::HashMap<String, String>,
    pagerduty: Vec<String>,
    dynatrace: bool,
    alertmanager: bool,
}

impl Tell {
    pub fn of(actions: &Actions, people: &crate::people::PeopleConfig) -> Tell {
        let mut t = Tell {
            names: people
                .people
                .iter()
                .map(|(id, p)| (id.clone(), p.name.clone()))
                .collect(),
            ..Tell::default()
        };
        for a in &actions.actions {
            match a.kind {
                ActionKind::Pagerduty(_) => t.pagerduty.push(a.name.clone()),
                ActionKind::DynatraceSync(_) => t.dynatrace = true,
                ActionKind::AlertmanagerSilence(_) => t.alertmanager = true,
                _ => {}
            }
        }
        t
    }

    /// Only what a resolve at the source itself needs: the silence expired.
    pub fn silence_only(&self) -> Tell {
        Tell {
            alertmanager: self.alertmanager,
            ..Tell::default()
        }
    }

    /// A person's name, or the id itself for anyone else (`status_page`, a system user).
    pub fn name_of<'a>(&'a self, id: &'a str) -> &'a str {
        self.names.get(id).map_or(id, String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.pagerduty.is_empty() && !self.dynatrace && !self.alertmanager
    }
}

/// Inserts the runs that tell `e`'s source of `event`, done `by` (a person, and how); how many
/// were new.
pub async fn tell(
    store: &Store,
    tell: &Tell,
    e: &EscalationRow,
    event: Event,
    by: &str,
) -> Result<usize, StoreError> {
    if tell.is_empty() {
        return Ok(0);
    }
    let Some(latest) = store.latest_notification(e.source, &e.problem_key).await? else {
        return Ok(0);
    };
    let runs = store.problem_runs(e.source, &e.problem_key).await?;
    // The opening the problem is in: its threads (PagerDuty's dedup key, a silence) are this one's.
    // An escalation's keys name the notification it started on, not an opening, so only routed
    // runs tell.
    let routed = |r: &&crate::store::RunRow| {
        !r.idem_key.starts_with(PREFIX) && !r.idem_key.starts_with("esc/")
    };
    let after = runs
        .iter()
        .filter(routed)
        .max_by_key(|r| r.id)
        .and_then(|r| episode_of(&r.idem_key));
    let key = |action: &str, target: &str| {
        let key = format!(
            "{PREFIX}{}/{}/{}/{action}/{target}",
            e.id,
            e.round,
            event.word()
        );
        match after {
            Some(a) => format!("{key}/after-{a}"),
            None => key,
        }
    };
    let label = match event {
        Event::Ack => format!("acknowledged by {by}"),
        Event::Unack => format!("unacknowledged by {by}"),
        Event::Resolve => format!("resolved by {by}"),
    };
    let run = |action: &str, target: &str| NewRun {
        idem_key: key(action, target),
        action: action.to_string(),
        target: target.to_string(),
        target_label: label.clone(),
        priority: 1,
        start: RunStart::Now,
    };
    let mut new = Vec::new();
    for action in &tell.pagerduty {
        // Each target the action sent this opening to, once.
        let mut targets: Vec<&str> = runs
            .iter()
            .filter(routed)
            .filter(|r| &r.action == action && episode_of(&r.idem_key) == after)
            .map(|r| r.target.as_str())
            .collect();
        targets.sort_unstable();
        targets.dedup();
        new.extend(targets.into_iter().map(|t| run(action, t)));
    }
    if tell.dynatrace && e.source == Source::Dynatrace && latest.notification.pid.is_some() {
        new.push(run(dynatrace_sync::NAME, ""));
    }
    if tell.alertmanager && e.source == Source::Alertmanager {
        new.push(run(alertmanager_silence::NAME, ""));
    }
    if new.is_empty() {
        return Ok(0);
    }
    let inserted = store
        .insert_runs(&[(&latest, new)])
        .await?
        .first()
        .copied()
        .unwrap_or(0);
    store.committed().notify_one();
    Ok(inserted)
}

/// Reads `alertmanager` (`url`, `silence_on_ack`, `silence_for`, `timeout_secs`): the action
/// that silences acknowledged alerts, when asked for.
pub(crate) fn read_alertmanager(
    mut s: Section,
    issues: &mut Issues,
) -> Option<AlertmanagerSilenceConfig> {
    let url = s.string("url", issues).filter(|u| !u.trim().is_empty());
    let on = s.bool("silence_on_ack", issues).unwrap_or(false);
    let silence_for = s
        .duration(
            "silence_for",
            Duration::from_secs(60),
            Duration::from_secs(90 * 24 * 3600),
            issues,
        )
        .unwrap_or(Duration::from_secs(24 * 3600));
    let timeout_secs = s.integer("timeout_secs", 1, 600, issues).unwrap_or(15);
    if let Some(u) = &url {
        let lower = u.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) || u.contains(' ') {
            issues.push(
                s.path_of("url"),
                format!("expected Alertmanager's base URL such as http://alertmanager:9093, found {u:?}"),
            );
        }
    }
    if on && url.is_none() {
        issues.push(
            s.path_of("url"),
            "missing: the Alertmanager to create silences in (silence_on_ack is set)",
        );
    }
    s.finish(issues);
    Some(AlertmanagerSilenceConfig {
        url: url?,
        silence_for,
        timeout_secs,
    })
    .filter(|_| on)
}

/// Adds the actions that tell sources what people did, as `dynatrace.sync` and `alertmanager`
/// ask; a configured action may not take their names.
pub(crate) fn add_actions(
    actions: &mut Actions,
    dynatrace_sync: bool,
    alertmanager: Option<AlertmanagerSilenceConfig>,
    issues: &mut Issues,
) {
    let mut add = |name: &str, kind: ActionKind, why: &str, issues: &mut Issues| {
        if actions.is_given(name) {
            issues.push(
                format!("actions.{name}"),
                format!("the name {name:?} is hub's own while {why} is set; choose another"),
            );
            return;
        }
        actions.actions.push(ActionConfig {
            name: name.to_string(),
            kind,
            max_concurrent: 4,
            rate_limit_per_minute: None,
            dynatrace_only: false,
            on_failure: Vec::new(),
        });
    };
    if dynatrace_sync {
        add(
            dynatrace_sync::NAME,
            ActionKind::DynatraceSync(dynatrace_sync::DynatraceSyncConfig),
            "dynatrace.sync",
            issues,
        );
    }
    if let Some(c) = alertmanager {
        add(
            alertmanager_silence::NAME,
            ActionKind::AlertmanagerSilence(c),
            "alertmanager.silence_on_ack",
            issues,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runs_key_names_its_event() {
        assert_eq!(event_of("tell/3/0/ack/pd//after-7"), Some(Event::Ack));
        assert_eq!(
            event_of("tell/3/1/resolve/dynatrace-sync/"),
            Some(Event::Resolve)
        );
        assert_eq!(event_of("esc/3/0/0/0/sms/person:ana"), None);
        assert_eq!(event_of("dynatrace/P-1/OPEN/pd/"), None);
    }
}
