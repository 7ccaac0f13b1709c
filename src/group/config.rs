//! A route's `group`: `by` (the keys that make a group), `wait` (before the first send) and
//! `interval` (between two sends), as Alertmanager's `group_by`, `group_wait` and
//! `group_interval`, with the same defaults.

use std::time::Duration;

use crate::actions::Problem;
use crate::keys::{Issues, Section};

pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

/// A key a group is made by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum By {
    Source,
    Severity,
    Title,
    Entity,
    Problem,
    /// `tag:NAME`: the value of the problem's tag `NAME:value` (a label, for Alertmanager).
    Tag(String),
}

impl By {
    pub fn parse(text: &str) -> Option<By> {
        Some(match text {
            "source" => By::Source,
            "severity" => By::Severity,
            "title" => By::Title,
            "entity" => By::Entity,
            "problem" => By::Problem,
            _ => By::Tag(
                text.strip_prefix("tag:")
                    .filter(|n| !n.is_empty())?
                    .to_string(),
            ),
        })
    }

    pub fn name(&self) -> String {
        match self {
            By::Source => "source".into(),
            By::Severity => "severity".into(),
            By::Title => "title".into(),
            By::Entity => "entity".into(),
            By::Problem => "problem".into(),
            By::Tag(name) => name.clone(),
        }
    }

    pub fn value(&self, p: &Problem) -> String {
        match self {
            By::Source => p.source.to_string(),
            By::Severity => p.severity.clone(),
            By::Title => p.title.clone(),
            By::Entity => p
                .entities
                .first()
                .map(|e| {
                    if e.name.is_empty() {
                        e.id.clone()
                    } else {
                        e.name.clone()
                    }
                })
                .unwrap_or_default(),
            By::Problem => p.problem_id.clone(),
            By::Tag(name) => p
                .tags
                .iter()
                .find_map(|t| {
                    let (k, v) = t.split_once(':')?;
                    (k == name).then(|| v.to_string())
                })
                .unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    pub by: Vec<By>,
    pub wait: Duration,
    pub interval: Duration,
}

/// Reads a route's `group`, when it has one.
pub(crate) fn read(mut s: Section, issues: &mut Issues) -> Option<GroupSpec> {
    let by_path = s.path_of("by");
    let by = match s.string_list("by", issues) {
        Some(list) => list
            .iter()
            .filter_map(|k| {
                let by = By::parse(k);
                if by.is_none() {
                    issues.push(
                        by_path.clone(),
                        format!(
                            "unknown key {k:?}: use source, severity, title, entity, problem or tag:NAME"
                        ),
                    );
                }
                by
            })
            .collect(),
        None => {
            issues.push(
                by_path,
                "missing: the keys that make a group (\"by\": [] folds everything into one)",
            );
            Vec::new()
        }
    };
    let wait = s
        .duration("wait", Duration::ZERO, Duration::from_secs(86_400), issues)
        .unwrap_or(DEFAULT_WAIT);
    let interval = s
        .duration(
            "interval",
            Duration::from_secs(1),
            Duration::from_secs(86_400),
            issues,
        )
        .unwrap_or(DEFAULT_INTERVAL);
    s.finish(issues);
    Some(GroupSpec { by, wait, interval })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_refuse() {
        assert_eq!(
            By::parse("tag:alertname"),
            Some(By::Tag("alertname".into()))
        );
        assert_eq!(By::parse("source"), Some(By::Source));
        assert_eq!(By::parse("tag:"), None);
        assert_eq!(By::parse("$(touch x)"), None);
        assert_eq!(By::parse("../"), None);
    }
}
