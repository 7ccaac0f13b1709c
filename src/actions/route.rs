//! Routing: which actions run for a problem, and on which targets.

use super::{Problem, Registry, Target};
use crate::config::{Actions, RouteConfig};
use crate::domain::Source;

/// An action chosen for a problem, with what it fans out to.
pub struct Chosen {
    pub action: String,
    pub targets: Vec<Target>,
}

/// The routing decision, with a reason for every action left out (for `hub explain` and logs).
#[derive(Default)]
pub struct Decision {
    pub chosen: Vec<Chosen>,
    pub skipped: Vec<(String, String)>,
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
    for a in &actions.actions {
        let reason = if a.dynatrace_only {
            (problem.source != Source::Dynatrace)
                .then(|| "the sample's integrations act on Dynatrace problems only".to_string())
        } else {
            match &actions.routes {
                None => None,
                Some(routes) => {
                    let named: Vec<&RouteConfig> = routes
                        .iter()
                        .filter(|r| r.actions.iter().any(|n| n == &a.name))
                        .collect();
                    if named.is_empty() {
                        Some("no route names this action".into())
                    } else if !named.iter().any(|r| matches(r, problem)) {
                        Some("no route that names this action matches".into())
                    } else {
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
        d.chosen.push(Chosen {
            action: a.name.clone(),
            targets,
        });
    }
    d
}

fn matches(r: &RouteConfig, p: &Problem) -> bool {
    let any = |list: &[String], f: &dyn Fn(&String) -> bool| list.is_empty() || list.iter().any(f);
    (r.sources.is_empty() || r.sources.contains(&p.source))
        && any(&r.states, &|s| s.eq_ignore_ascii_case(&p.state))
        && any(&r.severities, &|s| s.eq_ignore_ascii_case(&p.severity))
        && any(&r.tags, &|t| p.tags.iter().any(|pt| pt == t))
}
