//! Heartbeats, a dead-man's switch: when no beat came within `every + grace`, hub opens its own
//! problem `heartbeat-<name>` and runs the heartbeat's actions; the next beat resolves it. A beat
//! is a `POST /heartbeats/<name>` or a stored notification the heartbeat's `match` covers. The
//! clock starts at hub's start, so a restart does not open every heartbeat at once.

use serde_json::{json, Value};

use crate::noise::config::Heartbeat;
use crate::own::{self, Own};
use crate::store::{Store, StoreError};

pub fn problem_id(name: &str) -> String {
    format!("heartbeat-{name}")
}

/// Opens what went silent and resolves what beat again.
pub async fn check(
    store: &Store,
    heartbeats: &[Heartbeat],
    started_ms: i64,
    now: i64,
) -> Result<(), StoreError> {
    if heartbeats.is_empty() {
        return Ok(());
    }
    let beats = store.beats().await?;
    for hb in heartbeats {
        let stored = beats.iter().find(|(n, _)| n == &hb.name).map(|(_, t)| *t);
        let last = stored.unwrap_or(0).max(started_ms);
        let allowed = (hb.every + hb.grace).as_millis() as i64;
        let deadline = last + allowed;
        let id = problem_id(&hb.name);
        if now > deadline {
            let silent_for = crate::keys::short_duration(std::time::Duration::from_millis(
                (now - last).max(0) as u64,
            ));
            let own = Own {
                kind: "heartbeat",
                problem_id: id,
                title: format!("heartbeat {} is silent: no beat for {silent_for}", hb.name),
                actions: hb.actions.clone(),
                detail: json!({"heartbeat": hb.name, "last_beat_ms": stored,
                               "every": crate::keys::short_duration(hb.every),
                               "grace": crate::keys::short_duration(hb.grace)}),
            };
            own::open(store, &own, deadline).await?;
        } else if let Some(beat) = stored {
            // Open for a beat that was missed: a beat after the one it waited from resolves it.
            if let Some(latest) = store
                .latest_notification(crate::domain::Source::Hub, &id)
                .await?
            {
                // A beat after the one it opened for (none: any beat) resolves it, whatever the
                // config says now.
                let opened: Value =
                    serde_json::from_slice(&latest.notification.body).unwrap_or(Value::Null);
                let missed = opened
                    .pointer("/detail/last_beat_ms")
                    .and_then(Value::as_i64)
                    .unwrap_or(i64::MIN);
                if latest.notification.state == "OPEN" && beat > missed {
                    own::resolve(store, &id, json!({"heartbeat": hb.name, "beat_ms": beat}))
                        .await?;
                }
            }
        }
    }
    Ok(())
}
