//! The dispatcher's escalation stage. Routing starts an escalation (or ends one, when the
//! problem resolves); each pass, every step that is due goes to whoever it names at the moment
//! the step was due, through its actions, as ordinary runs; then the escalation moves on.
//!
//! A step is sent once: its runs' keys name the escalation, pass, step, action and person, so a
//! second try inserts nothing, and only one instance moves the escalation on (a conditional
//! update). The runs are inserted first, so a crash between the two sends the step's runs at
//! the next pass rather than losing them.

use serde_json::json;

use super::{Inner, Settings};
use crate::clock::now_ms;
use crate::escalate::ack::{self, AckError};
use crate::escalate::tell::{self, Event, Tell};
use crate::escalate::{Recipient, Step};
use crate::people::{Actor, Role, Via};
use crate::store::{Advance, EscalationRow, NewRun, RunStart, StepRow, Store, StoreError};

/// How often a held escalation is looked at again.
const HOLD_RECHECK_MS: i64 = 5_000;
/// Escalations moved on in one pass at most.
const BATCH: i64 = 64;

/// A new escalation of `policy` for a problem, open, its first step due at `first_at`, with a
/// reply code no running escalation has.
async fn opening(
    store: &Store,
    (source, problem_key): (crate::domain::Source, &str),
    notification_id: i64,
    policy: &str,
    first_at: i64,
    now: i64,
) -> Result<EscalationRow, StoreError> {
    Ok(EscalationRow {
        id: 0,
        source,
        problem_key: problem_key.to_string(),
        notification_id,
        policy: policy.to_string(),
        state: "open".into(),
        round: 0,
        pass: 0,
        step: 0,
        next_at_ms: Some(first_at),
        held_by: None,
        code: crate::escalate::unused_code(store).await?,
        started_at_ms: now,
        updated_at_ms: now,
        acked_at_ms: None,
        acked_by: None,
        acked_via: None,
    })
}

/// Starts `policy` for a group at its first send, on its first member, due now (the group's wait
/// was its flap wait).
pub(super) async fn start_for_group(
    store: &Store,
    g: &crate::store::GroupRow,
    policy: &str,
    now: i64,
) -> Result<(), StoreError> {
    let started = store
        .start_escalation(
            opening(
                store,
                (g.source, &g.problem_key),
                g.notification_id,
                policy,
                now,
                now,
            )
            .await?,
        )
        .await?;
    if started {
        tracing::info!(group = g.id, policy, "escalation started for the group");
    }
    Ok(())
}

/// What routing found for a notification: start the escalation its route names (after the
/// route's flap wait), or end the running one when the problem resolved.
pub(super) async fn routed(
    store: &Store,
    tells: &Tell,
    n: &crate::store::StoredNotification,
    policy: Option<(&str, Option<std::time::Duration>)>,
    now: i64,
) -> Result<(), StoreError> {
    let note = &n.notification;
    if note.is_test {
        return Ok(());
    }
    if crate::store::is_closed(&note.state, false) {
        // The first member of a group carries the group's escalation, which ends with the group.
        if crate::group::carrying(store, note.source, &note.problem_key)
            .await?
            .is_some()
        {
            return Ok(());
        }
        // An acknowledged alert's silence ends with it.
        let silence = tells.silence_only();
        let acked = match silence.is_empty() {
            true => None,
            false => store
                .escalation_of(note.source, &note.problem_key)
                .await?
                .filter(|e| e.state == "acked"),
        };
        let ended = store
            .end_escalations(
                note.source,
                note.problem_key.clone(),
                "resolved".into(),
                now,
            )
            .await?;
        if ended > 0 {
            tracing::info!(
                source = %note.source, problem_id = note.problem_key.as_str(),
                "escalation stopped: the problem resolved"
            );
        }
        if let Some(e) = acked {
            tell::tell(store, &silence, &e, Event::Resolve, "the source").await?;
        }
        return Ok(());
    }
    if let Some((by, via)) = acknowledged_by(note) {
        return acknowledged(store, tells, note, by, via).await;
    }
    let Some((policy, wait)) = policy else {
        return Ok(());
    };
    let first_at = now + wait.map_or(0, |w| w.as_millis() as i64);
    let key = (note.source, note.problem_key.as_str());
    let started = store
        .start_escalation(opening(store, key, n.id, policy, first_at, now).await?)
        .await?;
    if started {
        tracing::info!(
            source = %note.source, problem_id = note.problem_key.as_str(), policy,
            "escalation started"
        );
    }
    Ok(())
}

/// Who acknowledged, for a stored acknowledgement from a source that has them: an Opsgenie
/// client's (in the name its request gave) or a PagerDuty Events API `acknowledge` (which names
/// nobody: `pagerduty`).
fn acknowledged_by(note: &crate::domain::Notification) -> Option<(String, Via)> {
    if let Some(by) = crate::sources::opsgenie::acknowledged_by(note) {
        return Some((by, Via::Opsgenie));
    }
    let pagerduty = note.source == crate::domain::Source::Pagerduty
        && note.state == "ACKNOWLEDGED"
        && !note.is_test;
    pagerduty.then(|| ("pagerduty".to_string(), Via::Pagerduty))
}

/// A source's client acknowledged the problem: its escalation stops as with any other
/// acknowledgement, in the name the request gave (unverified: an API key names no person).
/// Routed in order, the acknowledgement comes after the create that started the escalation.
async fn acknowledged(
    store: &Store,
    tells: &Tell,
    note: &crate::domain::Notification,
    by: String,
    via: Via,
) -> Result<(), StoreError> {
    let actor = Actor {
        name: by,
        role: Role::Responder,
        token: None,
        verified: false,
        via,
        from: note.source.to_string(),
    };
    match ack::acknowledge(store, tells, &actor, note.source, &note.problem_key).await {
        Ok(_) => Ok(()),
        Err(AckError::Nothing(why)) => {
            tracing::info!(
                source = %note.source, problem_id = note.problem_key.as_str(), why,
                "acknowledgement changed no escalation"
            );
            Ok(())
        }
        Err(AckError::Store(e)) => Err(e),
    }
}

/// Sends every due step and moves its escalation on; how many were looked at.
pub(super) async fn tick(d: &Inner, s: &Settings) -> Result<usize, StoreError> {
    let now = now_ms();
    let due = d.store.due_escalations(now, BATCH).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let quiet = crate::noise::Quiet::now(&d.store, &s.maintenance, now).await?;
    for e in &due {
        let to = match next(d, s, &quiet, e, now).await? {
            Some(to) => to,
            None => continue,
        };
        d.store
            .advance_escalation(e.id, e.round, e.pass, e.step, to, now)
            .await?;
    }
    Ok(due.len())
}

/// Sends `e`'s due step (unless held or gone) and says where it goes next; `None` when it
/// stopped here (the problem resolved).
async fn next(
    d: &Inner,
    s: &Settings,
    quiet: &crate::noise::Quiet<'_>,
    e: &EscalationRow,
    now: i64,
) -> Result<Option<Advance>, StoreError> {
    let Some(policy) = s.escalation.policies.get(&e.policy) else {
        tracing::warn!(
            problem_id = e.problem_key.as_str(),
            policy = e.policy,
            "escalation stopped: its policy is no longer in the config"
        );
        return Ok(Some(Advance::Ended));
    };
    let latest = d
        .store
        .latest_notification(e.source, &e.problem_key)
        .await?;
    let Some(latest) = latest else {
        return Ok(Some(Advance::Ended));
    };
    let group = crate::group::carrying(&d.store, e.source, &e.problem_key).await?;
    if crate::store::is_closed(&latest.notification.state, false) && group.is_none() {
        d.store
            .end_escalations(e.source, e.problem_key.clone(), "resolved".into(), now)
            .await?;
        return Ok(None);
    }
    // A group's escalation is held by what holds the group's sends: silences and windows that
    // match the group's problem (its `by` values as tags), not only its first member.
    let mut problem = s.problem(&latest);
    if let Some(g) = &group {
        if let Some(view) = super::group::view(d, g.id, g.sends).await? {
            problem = view.problem(&problem);
        }
    }
    if let Some((holder, why)) = quiet.covering(&problem) {
        if e.held_by.as_deref() != Some(holder.as_str()) {
            tracing::info!(problem_id = e.problem_key.as_str(), why, "escalation held");
        }
        return Ok(Some(Advance::Held {
            by: holder,
            at_ms: now + HOLD_RECHECK_MS,
        }));
    }
    let Some(step) = policy.steps.get(e.step as usize) else {
        return Ok(Some(Advance::Ended));
    };
    // The step is someone's as of when it was due, so every instance picks the same people.
    let at = e.next_at_ms.unwrap_or(now);
    let people = whom(&d.store, s, step, at).await?;
    let opening = d.store.notification(e.notification_id).await?;
    let runs: Vec<NewRun> = step
        .actions
        .iter()
        .flat_map(|action| {
            people.iter().map(move |(id, name)| NewRun {
                idem_key: format!(
                    "esc/{}/{}/{}/{}/{action}/{id}/after-{}",
                    e.id, e.round, e.pass, e.step, e.notification_id
                ),
                action: action.clone(),
                target: format!("{}{id}", crate::actions::PERSON_TARGET),
                target_label: name.clone(),
                priority: 1,
                start: RunStart::Now,
            })
        })
        .collect();
    if people.is_empty() {
        tracing::warn!(
            problem_id = e.problem_key.as_str(),
            policy = e.policy,
            step = e.step + 1,
            "an escalation step names nobody on call now; it goes on to the next"
        );
    }
    d.store.insert_runs(&[(&opening, runs)]).await?;
    let notified: Vec<_> = people
        .iter()
        .map(|(id, name)| json!({"person": id, "name": name}))
        .collect();
    d.store
        .record_step(StepRow {
            escalation_id: e.id,
            round: e.round,
            pass: e.pass,
            step: e.step,
            started_at_ms: now,
            notified: json!(notified).to_string(),
            actions: json!(step.actions).to_string(),
        })
        .await?;
    tracing::info!(
        source = %e.source, problem_id = e.problem_key.as_str(), policy = e.policy,
        pass = e.pass + 1, step = e.step + 1, people = people.len(),
        "escalation step sent"
    );
    let at_ms = now + step.wait.as_millis() as i64;
    Ok(Some(if (e.step as usize) + 1 < policy.steps.len() {
        Advance::To {
            pass: e.pass,
            step: e.step + 1,
            at_ms,
        }
    } else if e.pass < i64::from(policy.repeat) {
        Advance::To {
            pass: e.pass + 1,
            step: 0,
            at_ms,
        }
    } else {
        Advance::Ended
    }))
}

/// The people a step names at `at`: its persons, and whoever is on call in its schedules then
/// (each once, in the order named).
async fn whom(
    store: &Store,
    s: &Settings,
    step: &Step,
    at: i64,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for r in &step.notify {
        let id = match r {
            Recipient::Person(p) => Some(p.clone()),
            Recipient::Schedule(name) => match s.people.schedules.get(name) {
                Some(schedule) => crate::people::oncall::who(store, schedule, at).await?,
                None => None,
            },
        };
        if let Some(id) = id {
            if !out.iter().any(|(known, _)| *known == id) {
                out.push((id.clone(), s.people.name_of(&id)));
            }
        }
    }
    Ok(out)
}

/// What an escalation's run adds to its job (whom, which step, how to answer); `None` for any
/// other run.
pub(super) async fn context(
    d: &Inner,
    s: &Settings,
    run: &crate::store::RunRow,
) -> Result<Option<crate::actions::Escalated>, StoreError> {
    let Some(rest) = run.idem_key.strip_prefix("esc/") else {
        return Ok(None);
    };
    let mut parts = rest.split('/');
    let mut number = || parts.next().and_then(|p| p.parse::<i64>().ok());
    let (Some(id), Some(_round), Some(pass), Some(step)) = (number(), number(), number(), number())
    else {
        return Ok(None);
    };
    let person_id = run
        .target
        .strip_prefix(crate::actions::PERSON_TARGET)
        .unwrap_or(&run.target);
    let person = match s.people.people.get(person_id) {
        Some(p) => crate::actions::PersonView {
            id: p.id.clone(),
            name: p.name.clone(),
            email: p.email.clone(),
            phone: p.phone.clone(),
            slack: p.slack.clone(),
        },
        // Taken out of the config since: the run says so when it needs what is gone.
        None => crate::actions::PersonView {
            id: person_id.to_string(),
            name: run.target_label.clone(),
            ..Default::default()
        },
    };
    let code = d
        .store
        .escalation(id)
        .await?
        .map(|e| e.code)
        .unwrap_or_default();
    let key = d
        .link_key
        .get_or_try_init(|| {
            d.store
                .shared_key(crate::escalate::LINK_KEY, crate::escalate::fresh_key())
        })
        .await?;
    let link = crate::escalate::Link {
        escalation_id: id,
        person: person.id.clone(),
        expires_ms: now_ms() + s.escalation.link_ttl.as_millis() as i64,
    }
    .sign(key);
    let base = s.escalation.public_url.as_deref().unwrap_or_default();
    Ok(Some(crate::actions::Escalated {
        person,
        step: step + 1,
        pass: pass + 1,
        ack_url: format!("{base}/ack/{link}"),
        ack_code: code,
    }))
}
