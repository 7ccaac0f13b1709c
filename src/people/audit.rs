//! The audit log: every change a person makes, with when, who, through what and from where.
//! Rows are never pruned (retention leaves them), so they outlive what they speak of.

use crate::people::Actor;
use crate::store::{AuditRow, Store};

/// Records a change. The change is made already: a failure to record it is logged, not
/// answered as the change's failure.
pub async fn record(store: &Store, actor: &Actor, action: &str, target: &str, detail: String) {
    let row = AuditRow {
        id: 0,
        at_ms: crate::clock::now_ms(),
        actor: actor.name.clone(),
        token_id: actor.token.clone(),
        verified: actor.verified,
        via: actor.via.as_str().to_string(),
        from_addr: actor.from.clone(),
        action: action.to_string(),
        target: target.to_string(),
        detail,
    };
    if let Err(e) = store.record_audit(row).await {
        tracing::error!(error = %e, action, target, actor = actor.name, "cannot record a change in the audit log");
    }
}
