//! Matchers: which problems a silence, a maintenance window or a heartbeat covers. A matcher is a
//! key and a value that is exact or a `*` glob; a problem matches when every matcher does.

use serde::{Deserialize, Serialize};
use wildmatch::WildMatch;

use crate::actions::Problem;

/// The keys a matcher may test.
pub const KEYS: &[&str] = &[
    "source", "problem", "state", "severity", "tag", "entity", "title",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matcher {
    pub key: String,
    pub value: String,
}

/// Why a matcher cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    #[error("expected KEY=VALUE, found {0:?}")]
    Shape(String),
    #[error(
        "unknown matcher key {0:?} (known: source, problem, state, severity, tag, entity, title)"
    )]
    Key(String),
    #[error("matcher {0}= has an empty value")]
    Empty(String),
    #[error("a tag matcher is name:value, found {0:?}")]
    Tag(String),
    #[error("no matcher given: a silence must say what it covers")]
    None,
}

impl Matcher {
    pub fn new(key: &str, value: &str) -> Result<Matcher, MatcherError> {
        if !KEYS.contains(&key) {
            return Err(MatcherError::Key(key.to_string()));
        }
        if value.trim().is_empty() {
            return Err(MatcherError::Empty(key.to_string()));
        }
        if key == "tag" && !value.contains(':') && value != "*" {
            return Err(MatcherError::Tag(value.to_string()));
        }
        Ok(Matcher {
            key: key.to_string(),
            value: value.to_string(),
        })
    }

    /// `KEY=VALUE`, as `--match` takes it.
    pub fn parse(text: &str) -> Result<Matcher, MatcherError> {
        let (key, value) = text
            .split_once('=')
            .ok_or_else(|| MatcherError::Shape(text.to_string()))?;
        Matcher::new(key.trim(), value)
    }

    pub fn matches(&self, p: &Problem) -> bool {
        let glob = WildMatch::new(&self.value);
        // States and severities are written in capitals by one source and not by another.
        let folded = WildMatch::new(&self.value.to_ascii_uppercase());
        match self.key.as_str() {
            "source" => glob.matches(p.source.as_str()),
            "problem" => glob.matches(&p.problem_id) || glob.matches(&p.display_id()),
            "state" => folded.matches(&p.state.to_ascii_uppercase()),
            "severity" => folded.matches(&p.severity.to_ascii_uppercase()),
            "tag" => p.tags.iter().any(|t| glob.matches(t)),
            "entity" => p
                .entities
                .iter()
                .any(|e| glob.matches(&e.name) || glob.matches(&e.id)),
            "title" => glob.matches(&p.title),
            _ => false,
        }
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

/// Every matcher of a list matches (a list is never empty where it is used).
pub fn all_match(matchers: &[Matcher], p: &Problem) -> bool {
    !matchers.is_empty() && matchers.iter().all(|m| m.matches(p))
}

/// A config object's matchers: `{"tag": "env:prod", "source": "alertmanager"}`.
pub fn read_object(
    s: &mut crate::config::reader::Section,
    key: &'static str,
    issues: &mut crate::config::reader::Issues,
) -> Vec<Matcher> {
    let mut out = Vec::new();
    for (k, v) in s.entries(key, issues) {
        let path = format!("{}.{k}", s.path_of(key));
        match v.as_str() {
            Some(value) => match Matcher::new(&k, value) {
                Ok(m) => out.push(m),
                Err(e) => issues.push(path, e.to_string()),
            },
            None => issues.push(path, "expected a string (exact, or a * glob)"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Entity, Source};
    use serde_json::Value;

    fn problem() -> Problem {
        Problem {
            source: Source::Alertmanager,
            problem_id: "abc".into(),
            pid: None,
            state: "OPEN".into(),
            title: "Disk full on db-1".into(),
            severity: "critical".into(),
            impact: String::new(),
            tags: vec!["env:prod".into(), "alertname:Watchdog".into()],
            url: None,
            entities: vec![Entity::named("db-1", "host")],
            received_at_ms: 0,
            notification: Value::Null,
            details: None,
        }
    }

    #[test]
    fn exact_values_and_globs_match_and_all_must() {
        let p = problem();
        let m = |t: &str| Matcher::parse(t).unwrap();
        assert!(m("tag=env:prod").matches(&p));
        assert!(m("tag=alertname:Watch*").matches(&p));
        assert!(m("entity=db-*").matches(&p));
        assert!(m("severity=CRITICAL").matches(&p));
        assert!(m("title=Disk full*").matches(&p));
        assert!(!m("source=dynatrace").matches(&p));
        assert!(all_match(&[m("source=alertmanager"), m("state=open")], &p));
        assert!(!all_match(
            &[m("source=alertmanager"), m("state=RESOLVED")],
            &p
        ));
        assert!(!all_match(&[], &p), "an empty list covers nothing");
    }

    #[test]
    fn bad_matchers_are_refused() {
        assert_eq!(
            Matcher::parse("colour=red"),
            Err(MatcherError::Key("colour".into()))
        );
        assert!(matches!(
            Matcher::parse("source"),
            Err(MatcherError::Shape(_))
        ));
        assert!(matches!(
            Matcher::parse("title="),
            Err(MatcherError::Empty(_))
        ));
        assert!(matches!(
            Matcher::parse("tag=prod"),
            Err(MatcherError::Tag(_))
        ));
    }
}
