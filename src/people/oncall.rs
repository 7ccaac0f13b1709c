//! Who is on call, overrides, and API tokens, as the command line and the API both ask for them:
//! one set of checks, one audit row per change, whichever way a person came in.

use serde_json::{json, Value};

use super::audit::record;
use super::schedule::{parse_time, rfc3339_in, Override, Schedule};
use super::{tokens, Actor, PeopleConfig, Role};
use crate::store::{OverrideRow, Store, StoreError, TokenRow};

/// Why a request about people could not be done; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum PeopleError {
    /// A value that cannot be used (a time, a role, a duration).
    #[error("{0}")]
    Invalid(String),
    /// A schedule, person, override or token that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The actor's role does not allow it.
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn schedule<'a>(people: &'a PeopleConfig, name: &str) -> Result<&'a Schedule, PeopleError> {
    people.schedules.get(name).ok_or_else(|| {
        let known: Vec<&str> = people.schedules.keys().map(String::as_str).collect();
        PeopleError::NotFound(if known.is_empty() {
            format!("no schedule {name:?}: the config has no schedules")
        } else {
            format!("no schedule {name:?} (the config has {})", known.join(", "))
        })
    })
}

fn as_overrides(rows: &[OverrideRow]) -> Vec<Override> {
    rows.iter()
        .map(|o| Override {
            id: o.id.clone(),
            person: o.person.clone(),
            from_ms: o.from_ms,
            until_ms: o.until_ms,
            created_at_ms: o.created_at_ms,
        })
        .collect()
}

/// Who is on call at `at` (now when `None`) in one schedule or in all: `[{"schedule", "person",
/// "name", "until", "override"}]`, times in each schedule's zone.
pub async fn on_call(
    store: &Store,
    people: &PeopleConfig,
    only: Option<&str>,
    at: Option<&str>,
    now_ms: i64,
) -> Result<Vec<Value>, PeopleError> {
    let chosen: Vec<&Schedule> = match only {
        Some(name) => vec![schedule(people, name)?],
        None => people.schedules.values().collect(),
    };
    let mut out = Vec::new();
    for s in chosen {
        let at_ms = match at {
            Some(text) => parse_time(text, &s.zone, now_ms).map_err(PeopleError::Invalid)?,
            None => now_ms,
        };
        let rows = store.overrides(Some(s.name.clone()), at_ms).await?;
        let now = s.on_call(&as_overrides(&rows), at_ms);
        out.push(json!({
            "schedule": s.name,
            "timezone": s.zone.name(),
            "at": rfc3339_in(&s.zone, at_ms),
            "person": now.person,
            "name": now.person.as_deref().map(|p| people.name_of(p)),
            "until": rfc3339_in(&s.zone, now.until_ms),
            "override": now.by_override,
        }));
    }
    Ok(out)
}

/// Who is on call in `schedule` at `at_ms`, overrides considered.
pub async fn who(
    store: &Store,
    schedule: &Schedule,
    at_ms: i64,
) -> Result<Option<String>, StoreError> {
    let rows = store.overrides(Some(schedule.name.clone()), at_ms).await?;
    Ok(schedule.on_call(&as_overrides(&rows), at_ms).person)
}

/// Puts `person` on call in `schedule_name` from `from` until `until`, in the actor's name.
pub async fn add_override(
    store: &Store,
    people: &PeopleConfig,
    actor: &Actor,
    schedule_name: &str,
    person: &str,
    from: &str,
    until: &str,
) -> Result<OverrideRow, PeopleError> {
    needs(actor, Role::Responder)?;
    let s = schedule(people, schedule_name)?;
    if !people.people.contains_key(person) {
        return Err(PeopleError::Invalid(format!(
            "{person:?} is no person of the config"
        )));
    }
    let now = crate::clock::now_ms();
    let from_ms =
        parse_time(from, &s.zone, now).map_err(|e| PeopleError::Invalid(format!("from: {e}")))?;
    let until_ms =
        parse_time(until, &s.zone, now).map_err(|e| PeopleError::Invalid(format!("until: {e}")))?;
    if until_ms <= from_ms {
        return Err(PeopleError::Invalid("until must be after from".into()));
    }
    if until_ms - from_ms > 366 * 86_400_000 {
        return Err(PeopleError::Invalid(
            "an override lasts at most a year".into(),
        ));
    }
    let row = OverrideRow {
        id: format!("ovr-{}", &tokens::mint().id[..12]),
        schedule: s.name.clone(),
        person: person.to_string(),
        from_ms,
        until_ms,
        created_at_ms: now,
        created_by: actor.name.clone(),
        removed_at_ms: None,
    };
    store.add_override(row.clone()).await?;
    record(
        store,
        actor,
        "override.add",
        &s.name,
        format!(
            "{person} from {} until {} ({})",
            rfc3339_in(&s.zone, from_ms),
            rfc3339_in(&s.zone, until_ms),
            row.id
        ),
    )
    .await;
    Ok(row)
}

pub async fn remove_override(store: &Store, actor: &Actor, id: &str) -> Result<(), PeopleError> {
    needs(actor, Role::Responder)?;
    if !store
        .remove_override(id.to_string(), crate::clock::now_ms())
        .await?
    {
        return Err(PeopleError::NotFound(format!(
            "no override {id:?} in force (removed already, or never made)"
        )));
    }
    record(store, actor, "override.remove", id, String::new()).await;
    Ok(())
}

/// An override as the API and the command line show it.
pub fn shown_override(people: &PeopleConfig, o: &OverrideRow) -> Value {
    let zone = people.schedules.get(&o.schedule).map(|s| s.zone.clone());
    let time = |ms| match &zone {
        Some(z) => rfc3339_in(z, ms),
        None => crate::clock::rfc3339(ms),
    };
    json!({
        "id": o.id, "schedule": o.schedule, "person": o.person,
        "name": people.name_of(&o.person), "from": time(o.from_ms), "until": time(o.until_ms),
        "created_by": o.created_by, "created": crate::clock::rfc3339(o.created_at_ms),
    })
}

/// Makes an API token for `person`: never a role above theirs. Returns its row and the token,
/// which is shown this once.
pub async fn create_token(
    store: &Store,
    people: &PeopleConfig,
    actor: &Actor,
    person: &str,
    role: Option<&str>,
    expires: Option<std::time::Duration>,
) -> Result<(TokenRow, String), PeopleError> {
    needs(actor, Role::Admin)?;
    let Some(p) = people.people.get(person) else {
        return Err(PeopleError::Invalid(format!(
            "{person:?} is no person of the config"
        )));
    };
    let role = match role {
        None => p.role,
        Some(text) => Role::parse(text).ok_or_else(|| {
            PeopleError::Invalid(format!("{text:?} is not a role: {}", Role::NAMES))
        })?,
    };
    if role > p.role {
        return Err(PeopleError::Invalid(format!(
            "{person} is {} {}: a token of theirs cannot be {role}",
            if p.role == Role::Admin { "an" } else { "a" },
            p.role
        )));
    }
    let now = crate::clock::now_ms();
    let expires_at_ms = match expires {
        None => None,
        Some(d) if d.as_secs() == 0 => {
            return Err(PeopleError::Invalid("--expires must be at least 1s".into()))
        }
        Some(d) => Some(now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))),
    };
    let minted = tokens::mint();
    let row = TokenRow {
        id: minted.id,
        person: person.to_string(),
        role: role.as_str().to_string(),
        digest: minted.digest,
        created_at_ms: now,
        created_by: actor.name.clone(),
        expires_at_ms,
        revoked_at_ms: None,
    };
    store.add_token(row.clone()).await?;
    record(
        store,
        actor,
        "token.create",
        &row.id,
        format!(
            "for {person} as {role}{}",
            expires_at_ms
                .map(|e| format!(", expires {}", crate::clock::rfc3339(e)))
                .unwrap_or_default()
        ),
    )
    .await;
    Ok((row, minted.token))
}

pub async fn revoke_token(store: &Store, actor: &Actor, id: &str) -> Result<(), PeopleError> {
    needs(actor, Role::Admin)?;
    if store.token(id).await?.is_none() {
        return Err(PeopleError::NotFound(format!("no token has the id {id:?}")));
    }
    if !store
        .revoke_token(id.to_string(), crate::clock::now_ms())
        .await?
    {
        return Err(PeopleError::Invalid(format!(
            "token {id} was revoked already"
        )));
    }
    record(store, actor, "token.revoke", id, String::new()).await;
    Ok(())
}

/// A token as lists show it: never its digest.
pub fn shown_token(t: &TokenRow, now_ms: i64) -> Value {
    let state = if t.revoked_at_ms.is_some() {
        "revoked"
    } else if !t.live(now_ms) {
        "expired"
    } else {
        "active"
    };
    json!({
        "id": t.id, "person": t.person, "role": t.role, "state": state,
        "created": crate::clock::rfc3339(t.created_at_ms), "created_by": t.created_by,
        "expires": t.expires_at_ms.map(crate::clock::rfc3339),
        "revoked": t.revoked_at_ms.map(crate::clock::rfc3339),
    })
}

fn needs(actor: &Actor, role: Role) -> Result<(), PeopleError> {
    if actor.may(role) {
        Ok(())
    } else {
        Err(PeopleError::Forbidden(format!(
            "this needs the {role} role; {} is {}",
            actor.label(),
            actor.role
        )))
    }
}

/// An audit row as the API, the page and the command line show it.
pub fn shown_audit(a: &crate::store::AuditRow) -> Value {
    json!({
        "at": crate::clock::rfc3339(a.at_ms), "actor": a.actor, "token": a.token_id,
        "verified": a.verified, "via": a.via, "from": a.from_addr, "action": a.action,
        "target": a.target, "detail": a.detail,
    })
}

/// `since`: how long ago (`7d`) or an RFC 3339 time; 30 days when not given.
pub fn since_ms(since: Option<&str>, now: i64) -> Result<i64, String> {
    match since {
        None => Ok(now - 30 * 86_400_000),
        Some(text) => match chrono::DateTime::parse_from_rfc3339(text.trim()) {
            Ok(t) => Ok(t.timestamp_millis()),
            Err(_) => crate::keys::parse_duration(text)
                .map(|d| now - i64::try_from(d.as_millis()).unwrap_or(i64::MAX).min(now))
                .map_err(|_| {
                    format!("since: {text:?} is neither a duration (7d) nor an RFC 3339 time")
                }),
        },
    }
}
