//! Routing: which actions run for a problem, and on which targets.

use super::config::{Actions, RouteConfig};
use super::{Problem, Registry, Target};
use crate::domain::Source;

/// An action chosen for a problem, with what it fans out to.
pub struct Chosen {
    pub action: String,
    pub targets: Vec<Target>,
    /// The flap wait of the routes that chose it: set when every one of them has a wait (the
    /// shortest), so a route without one is never delayed by another's.
    pub wait: Option<std::time::Duration>,
    /// How urgent its runs are within the action: 1 (most) to 5 (see [`priority`]).
    pub priority: u8,
}

/// The most urgent level, what a route's `"P1"` gives.
pub const MOST_URGENT: u8 = 1;
/// Opsgenie's default, for a problem whose severity says nothing urgent.
pub const DEFAULT_PRIORITY: u8 = 3;

/// How urgent a problem's runs are when no route that chose the action sets a priority: outages
/// and errors (Dynatrace's AVAILABILITY and ERROR, a `critical` or `error` alert, hub's own
/// problems) first, then the rest.
pub fn priority(problem: &Problem) -> u8 {
    severity_priority(&problem.severity)
}

/// [`priority`] by the severity alone (the status page ranks problems with it too). A severity
/// that is a priority already (`P1`…`P5`, an Opsgenie alert's) is that priority.
pub fn severity_priority(severity: &str) -> u8 {
    const URGENT: [&str; 3] = ["availability", "error", "critical"];
    if let [b'P' | b'p', level @ b'1'..=b'5'] = severity.as_bytes() {
        return level - b'0';
    }
    if URGENT.iter().any(|u| severity.eq_ignore_ascii_case(u)) {
        MOST_URGENT
    } else {
        DEFAULT_PRIORITY
    }
}

/// The routing decision, with a reason for every action left out (for `hub explain` and logs).
#[derive(Default)]
pub struct Decision {
    pub chosen: Vec<Chosen>,
    pub skipped: Vec<(String, String)>,
    /// The escalation policy of the first matching route that names one, with that route's
    /// flap wait.
    pub escalate: Option<(String, Option<std::time::Duration>)>,
    /// The grouped routes that match: each one's index, the group key the problem has there,
    /// and its `group`.
    pub groups: Vec<(usize, String, crate::group::GroupSpec)>,
}

pub fn route(actions: &Actions, registry: &Registry, problem: &Problem, is_test: bool) -> Decision {
    let mut d = Decision::default();
    if is_test {
        for a in &actions.actions {
            d.skipped.push((
                a.name.clone(),
                "a sender's test notification runs no action".into(),
            ));
        }
        return d;
    }
    let mut matched: Vec<&str> = Vec::new();
    // Per action chosen by routes: its flap wait and the most urgent priority a route set.
    let mut waits: Vec<(&str, Option<std::time::Duration>, Option<u8>)> = Vec::new();
    // hub's own problems run the actions they list, and what a route for source hub names;
    // routes that name no source do not reach them.
    let listed: Vec<&str> = match problem.source {
        Source::Hub => problem
            .notification
            .get("actions")
            .and_then(serde_json::Value::as_array)
            .map(|a| a.iter().filter_map(serde_json::Value::as_str).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    for a in &actions.actions {
        let reason = if a.kind.tells_source() {
            Some("runs when someone acknowledges or resolves in hub, not by routing".to_string())
        } else if problem.source == Source::Hub {
            let by_route = actions.routes.iter().flatten().any(|r| {
                r.sources.contains(&Source::Hub)
                    && r.actions.iter().any(|n| n == &a.name)
                    && matches(r, problem)
            });
            (!listed.contains(&a.name.as_str()) && !by_route).then(|| {
                "hub's own problem: it does not list this action, and no route for source hub names it"
                    .to_string()
            })
        } else if a.dynatrace_only {
            (problem.source != Source::Dynatrace)
                .then(|| "the sample's integrations act on Dynatrace problems only".to_string())
        } else {
            match &actions.routes {
                None => None,
                Some(routes) => {
                    let naming = |r: &&RouteConfig| r.actions.iter().any(|n| n == &a.name);
                    let named: Vec<&RouteConfig> = routes
                        .iter()
                        .filter(naming)
                        .filter(|r| r.group.is_none())
                        .collect();
                    let grouped = routes
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.group.is_some() && naming(r) && matches(r, problem))
                        .map(|(i, _)| crate::group::route_name(i))
                        .collect::<Vec<_>>();
                    if !grouped.is_empty() && !named.iter().any(|r| matches(r, problem)) {
                        Some(format!(
                            "runs once per group of {}, not per problem",
                            grouped.join(", ")
                        ))
                    } else if named.is_empty() {
                        Some("no route names this action".into())
                    } else if !named.iter().any(|r| matches(r, problem)) {
                        Some("no route that names this action matches".into())
                    } else {
                        let hits: Vec<&&RouteConfig> =
                            named.iter().filter(|r| matches(r, problem)).collect();
                        let wait = if hits.iter().all(|r| r.wait.is_some()) {
                            hits.iter().filter_map(|r| r.wait).min()
                        } else {
                            None
                        };
                        let urgent = hits.iter().filter_map(|r| r.priority).min();
                        waits.push((a.name.as_str(), wait, urgent));
                        None
                    }
                }
            }
        };
        match reason {
            Some(r) => d.skipped.push((a.name.clone(), r)),
            None => matched.push(&a.name),
        }
    }
    if problem.source != Source::Hub {
        d.groups = actions
            .routes
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, r)| {
                let spec = r.group.as_ref()?;
                matches(r, problem)
                    .then(|| (i, crate::group::key_of(&spec.by, problem), spec.clone()))
            })
            .collect();
        // A grouped route's escalation belongs to the group: its first send starts it.
        d.escalate = actions.routes.iter().flatten().find_map(|r| {
            if r.group.is_some() {
                return None;
            }
            let policy = r.escalate.as_ref()?;
            matches(r, problem).then(|| (policy.clone(), r.wait))
        });
    }
    for a in &actions.actions {
        if !matched.contains(&a.name.as_str()) {
            continue;
        }
        let Some((_, action)) = registry.get(&a.name) else {
            continue;
        };
        let waits_for = action.depends_on();
        let skip = action.refuses(problem).or_else(|| {
            (!waits_for.is_empty() && !waits_for.iter().any(|n| matched.contains(&n.as_str())))
                .then(|| "none of the actions it reports runs".to_string())
        });
        if let Some(reason) = skip {
            d.skipped.push((a.name.clone(), reason));
            continue;
        }
        let targets = action.targets(problem);
        if targets.is_empty() {
            d.skipped.push((a.name.clone(), "nothing to act on".into()));
            continue;
        }
        let by_route = waits.iter().find(|(n, _, _)| *n == a.name);
        let wait = by_route.and_then(|(_, w, _)| *w);
        d.chosen.push(Chosen {
            action: a.name.clone(),
            targets,
            wait,
            priority: by_route
                .and_then(|(_, _, p)| *p)
                .unwrap_or_else(|| priority(problem)),
        });
    }
    d
}

fn matches(r: &RouteConfig, p: &Problem) -> bool {
    mismatch(r, p).is_none()
}

/// Why route `r` does not match `p`: the first of its criteria that fails, in words; `None` when
/// it matches. [`route`] decides with it, and `hub explain` shows it, so the two cannot disagree.
pub fn mismatch(r: &RouteConfig, p: &Problem) -> Option<String> {
    let listed = |list: &[String]| {
        list.iter()
            .map(|v| format!("{v:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if p.source == Source::Hub && !r.sources.contains(&Source::Hub) {
        return Some("hub's own problems reach only routes that name source hub".into());
    }
    if !r.sources.is_empty() && !r.sources.contains(&p.source) {
        let names: Vec<String> = r.sources.iter().map(ToString::to_string).collect();
        return Some(format!(
            "source {} is not one of {}",
            p.source,
            names.join(", ")
        ));
    }
    if !r.states.is_empty() && !r.states.iter().any(|s| s.eq_ignore_ascii_case(&p.state)) {
        return Some(format!(
            "state {:?} is not one of {}",
            p.state,
            listed(&r.states)
        ));
    }
    if !r.severities.is_empty()
        && !r
            .severities
            .iter()
            .any(|s| s.eq_ignore_ascii_case(&p.severity))
    {
        return Some(format!(
            "severity {:?} is not one of {}",
            p.severity,
            listed(&r.severities)
        ));
    }
    if !r.tags.is_empty() && !r.tags.iter().any(|t| p.tags.iter().any(|pt| pt == t)) {
        return Some(format!(
            "the problem has none of the tags {}",
            listed(&r.tags)
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_priority_as_severity_is_that_priority() {
        for (severity, want) in [
            ("P1", 1),
            ("p2", 2),
            ("P5", 5),
            ("AVAILABILITY", MOST_URGENT),
            ("critical", MOST_URGENT),
            ("P0", DEFAULT_PRIORITY),
            ("P12", DEFAULT_PRIORITY),
            ("warning", DEFAULT_PRIORITY),
        ] {
            assert_eq!(severity_priority(severity), want, "{severity}");
        }
    }
}
