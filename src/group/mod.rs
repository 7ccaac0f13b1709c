//! Grouping: a route with `group` folds the problems it matches into groups by the values of
//! its `by` keys, and runs its actions once per group send instead of once per problem: the
//! first after `wait`, then one update per `interval` at most while members join, and one when
//! every member has resolved. The dispatcher makes the sends (`dispatch::group`); this module
//! holds what a group is made of and what its runs see.

pub mod config;

use serde::Serialize;
use serde_json::{json, Value};

pub use config::{By, GroupSpec};

use crate::actions::Problem;
use crate::store::{GroupRow, MemberRow};

/// The group key of `problem` under `by`: `name=value` per key, in the order given. Every problem
/// has one (a missing value is empty), so `"by": []` folds everything into one group.
pub fn key_of(by: &[By], problem: &Problem) -> String {
    by.iter()
        .map(|b| format!("{}={}", b.name(), b.value(problem)))
        .collect::<Vec<_>>()
        .join(",")
}

/// How routes name themselves in a group: their place in `routes`.
pub fn route_name(index: usize) -> String {
    format!("routes[{index}]")
}

/// The index a [`route_name`] names.
pub fn route_index(name: &str) -> Option<usize> {
    name.strip_prefix("routes[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// How a group's runs are keyed: the group, the send, the action and the target. The opening a
/// thread is looked for after is the notification before the group's first one, so a group's
/// sends share one thread and a later group of the same first problem starts its own.
pub fn run_key(group: &GroupRow, send: i64, action: &str, target: &str) -> String {
    format!(
        "{PREFIX}{}/{send}/{action}/{target}/after-{}",
        group.id,
        group.notification_id - 1
    )
}

const PREFIX: &str = "grp/";

/// The group and send a run's key names; `None` for any other run.
pub fn send_of(idem_key: &str) -> Option<(i64, i64)> {
    let mut parts = idem_key.strip_prefix(PREFIX)?.split('/');
    let id = parts.next()?.parse().ok()?;
    let send = parts.next()?.parse().ok()?;
    Some((id, send))
}

/// A member as templates, scripts and the API see it.
#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    pub source: String,
    pub problem_id: String,
    pub state: String,
    pub title: String,
}

/// What a group's send carries: `{{ group.* }}` in templates, the JSON a script reads.
#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    pub id: i64,
    pub key: String,
    pub route: String,
    /// Every member the send carries.
    pub count: usize,
    /// Those still open.
    pub open: usize,
    /// Those new since the last send.
    pub new: usize,
    /// `OPEN` for the first send and the updates, `RESOLVED` for the last.
    pub state: String,
    pub send: i64,
    pub problems: Vec<MemberView>,
}

impl GroupView {
    /// The view of send `send` of `group`: the members it carries (those a later send carries
    /// first are left out), whatever their state is now.
    pub fn of(group: &GroupRow, members: &[MemberRow], send: i64) -> GroupView {
        let carried: Vec<&MemberRow> = members
            .iter()
            .filter(|m| m.first_send.is_none_or(|f| f <= send))
            .collect();
        let open = carried.iter().filter(|m| m.state != "RESOLVED").count();
        GroupView {
            id: group.id,
            key: group.key.clone(),
            route: group.route.clone(),
            count: carried.len(),
            open,
            new: carried
                .iter()
                .filter(|m| m.first_send.is_none_or(|f| f == send))
                .count(),
            state: if open == 0 { "RESOLVED" } else { "OPEN" }.to_string(),
            send,
            problems: carried
                .iter()
                .map(|m| MemberView {
                    source: m.source.to_string(),
                    problem_id: m.problem_key.clone(),
                    state: m.state.clone(),
                    title: m.title.clone(),
                })
                .collect(),
        }
    }

    /// The problem a group's runs act on: the first member's, named and titled for the group, so
    /// every action (a PagerDuty dedup key, a Slack thread, a mail's subject) speaks of the group.
    pub fn problem(&self, first: &Problem) -> Problem {
        let mut p = first.clone();
        p.problem_id = format!("group-{}", self.id);
        p.pid = None;
        p.state = self.state.clone();
        let key = if self.key.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.key)
        };
        p.title = format!(
            "{} problem(s), {} open{key}: {}",
            self.count, self.open, first.title
        );
        p.tags = self
            .key
            .split(',')
            .filter(|kv| !kv.is_empty())
            .map(|kv| kv.replacen('=', ":", 1))
            .collect();
        p.entities = Vec::new();
        p.details = None;
        p
    }

    pub fn json(&self) -> Value {
        json!(self)
    }
}

/// The open group whose escalation `problem` carries: the problem is the group's first member,
/// and the group has sent. Such an escalation lasts as long as the group, not the problem.
pub async fn carrying(
    store: &crate::store::Store,
    source: crate::domain::Source,
    problem_key: &str,
) -> Result<Option<GroupRow>, crate::store::StoreError> {
    Ok(store
        .groups_of(source, problem_key)
        .await?
        .into_iter()
        .find(|g| g.state == "open" && g.source == source && g.problem_key == problem_key))
}

/// The first member of the open group `problem` is in, when it is another problem: where the
/// group's escalation is acknowledged.
pub async fn first_of(
    store: &crate::store::Store,
    source: crate::domain::Source,
    problem_key: &str,
) -> Result<Option<GroupRow>, crate::store::StoreError> {
    Ok(store
        .groups_of(source, problem_key)
        .await?
        .into_iter()
        .find(|g| g.state == "open" && !(g.source == source && g.problem_key == problem_key)))
}

/// A group as the API and `hub groups` show it: when it opened and sent, and its members
/// (each member's problem id and state), the first one being the problem its runs hang on.
pub fn shown(g: &GroupRow, members: &[MemberRow]) -> Value {
    let time = |ms: Option<i64>| ms.map(crate::clock::rfc3339);
    json!({
        "id": g.id,
        "route": g.route,
        "key": g.key,
        "state": g.state,
        "opened_at": crate::clock::rfc3339(g.opened_at_ms),
        "sends": g.sends,
        "last_sent_at": time(g.last_sent_at_ms),
        "next_send_at": time(g.next_send_at_ms),
        "resolved_at": time(g.resolved_at_ms),
        "first": {"source": g.source, "problem_id": g.problem_key},
        "count": members.len(),
        "open": members.iter().filter(|m| m.state != "RESOLVED").count(),
        "members": members.iter().map(|m| json!({
            "source": m.source, "problem_id": m.problem_key, "state": m.state, "title": m.title,
            "joined_at": crate::clock::rfc3339(m.joined_at_ms), "first_send": m.first_send,
        })).collect::<Vec<_>>(),
    })
}

/// The newest groups (open ones only when asked), with their members.
pub async fn listed(
    store: &crate::store::Store,
    open_only: bool,
    limit: i64,
) -> Result<Vec<Value>, crate::store::StoreError> {
    let groups = store.groups(open_only, limit).await?;
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    // Two reads for the whole list, not one more per group.
    let mut by_group: std::collections::HashMap<i64, Vec<MemberRow>> =
        std::collections::HashMap::new();
    for m in store
        .members_of_groups(groups.iter().map(|g| g.id).collect())
        .await?
    {
        by_group.entry(m.group_id).or_default().push(m);
    }
    Ok(groups
        .iter()
        .map(|g| shown(g, by_group.get(&g.id).map_or(&[][..], Vec::as_slice)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runs_key_names_its_group_and_send() {
        let g = GroupRow {
            id: 7,
            route: "routes[0]".into(),
            key: "alertname=Down".into(),
            state: "open".into(),
            source: crate::domain::Source::Alertmanager,
            problem_key: "f1".into(),
            notification_id: 40,
            opened_at_ms: 0,
            next_send_at_ms: None,
            last_sent_at_ms: None,
            sends: 0,
            resolved_at_ms: None,
        };
        let key = run_key(&g, 2, "page", "");
        assert_eq!(key, "grp/7/2/page//after-39");
        assert_eq!(send_of(&key), Some((7, 2)));
        assert_eq!(crate::actions::episode_of(&key), Some(39));
        assert_eq!(send_of("esc/7/0/0/0/sms/person:ana"), None);
        assert_eq!(route_index(&route_name(12)), Some(12));
        assert_eq!(route_index("routes[x]"), None);
    }
}
