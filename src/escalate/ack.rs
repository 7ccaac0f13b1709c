//! Acknowledging, unacknowledging and resolving: one way to do each, whichever way a person came
//! in (the command line, the API, the page, a link, an SMS reply, a Slack button), each recorded
//! in the audit log.

use super::tell::{self, Event, Tell};
use crate::domain::Source;
use crate::people::audit::record;
use crate::people::Actor;
use crate::store::{EscalationRow, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AckError {
    /// The problem has no escalation that this would change.
    #[error("{0}")]
    Nothing(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Stops the problem's escalation: no further step is sent. The source hears of it through the
/// actions `tells` names.
pub async fn acknowledge(
    store: &Store,
    tells: &Tell,
    actor: &Actor,
    source: Source,
    problem_key: &str,
) -> Result<EscalationRow, AckError> {
    let now = crate::clock::now_ms();
    // A member of a group acknowledges the group's escalation, which its first member carries.
    let (source, problem_key) = match store.escalation_of(source, problem_key).await? {
        Some(_) => (source, problem_key.to_string()),
        None => match crate::group::first_of(store, source, problem_key).await? {
            Some(g) => (g.source, g.problem_key),
            None => (source, problem_key.to_string()),
        },
    };
    let problem_key = problem_key.as_str();
    let Some(e) = store
        .acknowledge(
            source,
            problem_key,
            actor.name.clone(),
            actor.via.as_str().to_string(),
            now,
        )
        .await?
    else {
        return Err(AckError::Nothing(
            match store.escalation_of(source, problem_key).await? {
                Some(e) if e.state == "acked" => format!(
                    "problem {problem_key} was acknowledged already, by {}",
                    e.acked_by.unwrap_or_default()
                ),
                Some(e) => format!("problem {problem_key}'s escalation is {}", e.state),
                None => format!("problem {problem_key} has no escalation to acknowledge"),
            },
        ));
    };
    tracing::info!(
        %source, problem_id = problem_key, by = actor.name, via = actor.via.as_str(),
        took_ms = now - e.started_at_ms, "acknowledged"
    );
    record(
        store,
        actor,
        "ack",
        &format!("{source}/{problem_key}"),
        answered(store, &e).await,
    )
    .await;
    told(store, tells, &e, Event::Ack, actor).await;
    Ok(e)
}

/// What an acknowledgement answered, for the audit log: the last step sent (the escalation's own
/// `pass` and `step` name the next one), or that none had gone out yet.
async fn answered(store: &Store, e: &EscalationRow) -> String {
    let sent = match store.escalation_steps(e.id).await {
        Ok(steps) => steps.into_iter().rev().find(|s| s.round == e.round),
        Err(err) => {
            tracing::warn!(error = %err, "cannot read an escalation's steps for the audit log");
            None
        }
    };
    match sent {
        Some(s) => format!(
            "escalation {} after pass {} step {}",
            e.policy,
            s.pass + 1,
            s.step + 1
        ),
        None => format!("escalation {} before its first step", e.policy),
    }
}

/// Inserts the runs that tell the source; the acknowledgement or resolve stands either way, so a
/// failure here is logged, not answered.
async fn told(store: &Store, tells: &Tell, e: &EscalationRow, event: Event, actor: &Actor) {
    let by = format!("{} via {}", tells.name_of(&actor.name), actor.via.as_str());
    match tell::tell(store, tells, e, event, &by).await {
        Ok(0) => {}
        Ok(runs) => tracing::info!(
            source = %e.source, problem_id = e.problem_key.as_str(), runs,
            event = event.state(), "telling the source"
        ),
        Err(err) => tracing::error!(
            source = %e.source, problem_id = e.problem_key.as_str(), error = %err,
            "cannot queue the runs that tell the source"
        ),
    }
}

/// Starts an acknowledged escalation again from its first step, and expires the Alertmanager
/// silence its acknowledgement made: the alert's other receivers hear of it again too.
pub async fn unacknowledge(
    store: &Store,
    tells: &Tell,
    actor: &Actor,
    source: Source,
    problem_key: &str,
) -> Result<EscalationRow, AckError> {
    let now = crate::clock::now_ms();
    let Some(e) = store.unacknowledge(source, problem_key, now).await? else {
        return Err(AckError::Nothing(format!(
            "problem {problem_key} has no acknowledged escalation"
        )));
    };
    record(
        store,
        actor,
        "unack",
        &format!("{source}/{problem_key}"),
        format!("escalation {} starts again at its first step", e.policy),
    )
    .await;
    // Of the sources, only a silence can be taken back: PagerDuty's events have no
    // unacknowledge, and a Dynatrace comment stays said.
    told(store, &tells.silence_only(), &e, Event::Unack, actor).await;
    store.committed().notify_one();
    Ok(e)
}

/// Ends the problem's escalation as resolved, in a person's name, and tells the source.
pub async fn resolve(
    store: &Store,
    tells: &Tell,
    actor: &Actor,
    source: Source,
    problem_key: &str,
) -> Result<u64, AckError> {
    let before = store.escalation_of(source, problem_key).await?;
    let ended = store
        .end_escalations(
            source,
            problem_key.to_string(),
            "resolved".into(),
            crate::clock::now_ms(),
        )
        .await?;
    if ended == 0 {
        return Err(AckError::Nothing(format!(
            "problem {problem_key} has no escalation running"
        )));
    }
    record(
        store,
        actor,
        "resolve",
        &format!("{source}/{problem_key}"),
        String::new(),
    )
    .await;
    if let Some(e) = before {
        told(store, tells, &e, Event::Resolve, actor).await;
    }
    Ok(ended)
}
