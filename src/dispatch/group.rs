//! The dispatcher's grouping stage. Routing puts each open problem of a grouped route in its
//! group and takes a resolved one out; each pass, every group whose send is due gets it: the
//! route's actions run once, as ordinary runs, on the group's problem (see
//! [`crate::group::GroupView::problem`]).
//!
//! A send is made once: its runs' keys name the group and the send's number, so a second try
//! inserts nothing, and only one instance records the send (a conditional update on the number
//! of sends). The runs are inserted first, so a crash between the two makes the send at the
//! next pass rather than losing it.

use super::{Inner, Settings};
use crate::actions::Problem;
use crate::clock::now_ms;
use crate::group::{self, GroupSpec, GroupView};
use crate::store::{GroupChange, GroupJoin, GroupRow, NewRun, StoreError, StoredNotification};

/// Groups sent in one pass at most.
const BATCH: i64 = 32;

/// What routing found in a pass on grouped routes: an open problem joins the group of each
/// grouped route that matched; a resolved one leaves all of its groups. All of a pass's changes
/// go to the store at once, in the order their notifications came.
pub(super) async fn routed<'a>(
    d: &Inner,
    decided: impl Iterator<
        Item = (
            &'a StoredNotification,
            &'a Problem,
            &'a [(usize, String, GroupSpec)],
        ),
    >,
    now: i64,
) -> Result<(), StoreError> {
    let mut changes = Vec::new();
    let mut joined = Vec::new();
    for (n, problem, groups) in decided {
        let note = &n.notification;
        if note.is_test {
            continue;
        }
        if crate::store::is_closed(&note.state, false) {
            changes.push(GroupChange::Leave {
                source: note.source,
                problem_key: note.problem_key.clone(),
                now,
            });
            continue;
        }
        for (route, key, spec) in groups {
            joined.push((*route, key.as_str(), spec, note.problem_key.as_str()));
            changes.push(GroupChange::Join(GroupJoin {
                route: group::route_name(*route),
                key: key.clone(),
                source: note.source,
                problem_key: note.problem_key.clone(),
                notification_id: n.id,
                title: problem.headline(),
                now,
                wait_ms: spec.wait.as_millis() as i64,
                interval_ms: spec.interval.as_millis() as i64,
            }));
        }
    }
    if changes.is_empty() {
        return Ok(());
    }
    let done = d.store.change_groups(changes).await?;
    for ((route, key, spec, first), (id, _)) in joined
        .into_iter()
        .zip(done.into_iter().flatten())
        .filter(|(_, (_, opened))| *opened)
    {
        tracing::info!(
            group = id,
            route = group::route_name(route),
            key,
            first,
            wait_ms = spec.wait.as_millis() as u64,
            "group opened"
        );
    }
    Ok(())
}

/// Makes every due send; how many groups were looked at.
pub(super) async fn tick(d: &Inner, s: &Settings) -> Result<usize, StoreError> {
    let now = now_ms();
    let due = d.store.due_groups(now, BATCH).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let quiet = crate::noise::Quiet::now(&d.store, &s.maintenance, now).await?;
    for g in &due {
        send(d, s, &quiet, g, now).await?;
    }
    Ok(due.len())
}

async fn send(
    d: &Inner,
    s: &Settings,
    quiet: &crate::noise::Quiet<'_>,
    g: &GroupRow,
    now: i64,
) -> Result<(), StoreError> {
    let members = d.store.group_members(g.id).await?;
    let resolved = members.iter().all(|m| m.state == "RESOLVED");
    let route = group::route_index(&g.route)
        .and_then(|i| s.actions.routes.as_ref()?.get(i))
        .filter(|r| r.group.is_some());
    let Some(route) = route else {
        tracing::warn!(
            group = g.id,
            route = g.route.as_str(),
            "group closed: its route no longer groups in the config"
        );
        d.store
            .mark_group_sent(g.id, g.sends, false, true, now)
            .await?;
        return Ok(());
    };
    // Nothing joined or opened again since the last send, and not every member resolved: the
    // members that left wait for the last send.
    if !resolved && members.iter().all(|m| m.first_send.is_some()) {
        d.store
            .mark_group_sent(g.id, g.sends, false, false, now)
            .await?;
        return Ok(());
    }
    let number = g.sends + 1;
    let first = d.store.notification(g.notification_id).await?;
    let view = GroupView::of(g, &members, number);
    let problem = view.problem(&s.problem(&first));
    let covered = quiet.covering(&problem);
    let start = crate::noise::start_of(covered.as_ref(), None, resolved, now, now);
    let priority = route
        .priority
        .unwrap_or_else(|| crate::actions::route::priority(&problem));
    let mut runs = Vec::new();
    for name in &route.actions {
        let Some((_, action)) = s.registry.get(name) else {
            continue;
        };
        if let Some(why) = action.refuses(&problem) {
            tracing::info!(
                group = g.id,
                action = name.as_str(),
                why,
                "a group's action skipped"
            );
            continue;
        }
        runs.extend(action.targets(&problem).into_iter().map(|t| NewRun {
            idem_key: group::run_key(g, number, name, &t.id),
            action: name.clone(),
            target: t.id,
            target_label: t.label,
            priority,
            start: start.clone(),
        }));
    }
    let count = runs.len();
    d.store.insert_runs(&[(&first, runs)]).await?;
    // The group's escalation: started by its first send, ended by its last.
    if let Some(policy) = route
        .escalate
        .as_deref()
        .filter(|_| !s.escalation.policies.is_empty())
    {
        if resolved {
            d.store
                .end_escalations(g.source, g.problem_key.clone(), "resolved".into(), now)
                .await?;
        } else if number == 1 {
            super::escalate::start_for_group(&d.store, g, policy, now).await?;
        }
    }
    if d.store
        .mark_group_sent(g.id, g.sends, true, resolved, now)
        .await?
    {
        tracing::info!(
            group = g.id,
            key = g.key.as_str(),
            send = number,
            state = view.state.as_str(),
            members = view.count,
            open = view.open,
            new = view.new,
            runs = count,
            "group sent"
        );
    }
    Ok(())
}

/// The group a run of a send speaks for, as that send carries it.
pub(super) async fn view(d: &Inner, id: i64, send: i64) -> Result<Option<GroupView>, StoreError> {
    let Some(g) = d.store.group(id).await? else {
        return Ok(None);
    };
    let members = d.store.group_members(id).await?;
    Ok(Some(GroupView::of(&g, &members, send)))
}
