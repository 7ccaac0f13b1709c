//! `escalations`, `public_url`, `escalation_link_ttl` and `slack.signing_secret`: how a page
//! climbs until someone answers, and how answers reach hub.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::keys::{Env, Issues, Section};
use crate::people::PeopleConfig;
use crate::secret::Secret;

/// Whom a step notifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// Whoever is on call in the schedule when the step starts.
    Schedule(String),
    Person(String),
}

impl std::fmt::Display for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Recipient::Schedule(s) => write!(f, "schedule:{s}"),
            Recipient::Person(p) => write!(f, "person:{p}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    pub notify: Vec<Recipient>,
    /// The actions each person is notified through.
    pub actions: Vec<String>,
    /// How long to wait for an acknowledgement before the next step.
    pub wait: Duration,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub steps: Vec<Step>,
    /// Passes after the first: `repeat: 1` runs the steps twice.
    pub repeat: u32,
}

#[derive(Debug, Clone)]
pub struct EscalationConfig {
    pub policies: BTreeMap<String, Policy>,
    /// hub's address as people and Twilio reach it (`https://hub.example.com`), without a
    /// trailing slash; the base of acknowledgement links and of Twilio's signature.
    pub public_url: Option<String>,
    /// How long an acknowledgement link works.
    pub link_ttl: Duration,
    /// Slack's signing secret, for the Acknowledge button's requests.
    pub slack_signing_secret: Option<Secret>,
}

impl Default for EscalationConfig {
    fn default() -> Self {
        EscalationConfig {
            policies: BTreeMap::new(),
            public_url: None,
            link_ttl: DEFAULT_LINK_TTL,
            slack_signing_secret: None,
        }
    }
}

pub const DEFAULT_LINK_TTL: Duration = Duration::from_secs(24 * 3600);

/// Reads the keys; `actions` are the configured action names, `people` the people and schedules.
pub(crate) fn read(
    root: &mut Section,
    actions: &[&str],
    people: &PeopleConfig,
    env: &Env,
    issues: &mut Issues,
) -> EscalationConfig {
    let mut policies = BTreeMap::new();
    for (name, value) in root.entries("escalations", issues) {
        let mut s = Section::at(format!("escalations.{name}"), value, issues);
        if !crate::people::valid_id(&name) {
            issues.push(
                s.path(),
                "an escalation's name is letters, digits, '-', '_' and '.' (at most 64)",
            );
        }
        let policy = read_policy(name.clone(), &mut s, actions, people, issues);
        s.finish(issues);
        if let Some(p) = policy {
            policies.insert(name, p);
        }
    }
    let public_url = root.string("public_url", issues).and_then(|text| {
        let trimmed = text.trim().trim_end_matches('/').to_string();
        match reqwest::Url::parse(&trimmed) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                Some(trimmed)
            }
            _ => {
                issues.push(
                    "public_url",
                    format!(
                        "{text:?} is not an http(s) address such as \"https://hub.example.com\""
                    ),
                );
                None
            }
        }
    });
    let link_ttl = root
        .duration(
            "escalation_link_ttl",
            Duration::from_secs(1),
            Duration::from_secs(30 * 86_400),
            issues,
        )
        .unwrap_or(DEFAULT_LINK_TTL);
    let mut slack = root.section("slack", issues);
    let slack_signing_secret = env
        .get("HUB_SLACK_SIGNING_SECRET")
        .map(str::to_string)
        .or_else(|| slack.string("signing_secret", issues))
        .filter(|s| !s.is_empty())
        .map(Secret::new);
    slack.finish(issues);
    if !policies.is_empty() && public_url.is_none() {
        issues.push(
            "public_url",
            "missing: escalations send acknowledgement links, built on hub's address as people \
             reach it, such as \"https://hub.example.com\"",
        );
    }
    EscalationConfig {
        policies,
        public_url,
        link_ttl,
        slack_signing_secret,
    }
}

fn read_policy(
    name: String,
    s: &mut Section,
    actions: &[&str],
    people: &PeopleConfig,
    issues: &mut Issues,
) -> Option<Policy> {
    let items = s.items("steps", issues).unwrap_or_default();
    if items.is_empty() {
        issues.push(
            s.path_of("steps"),
            "missing: at least one step, such as {\"notify\": [\"schedule:primary\"], \"actions\": [\"text-person\"], \"wait\": \"5m\"}",
        );
    }
    let mut steps = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let mut st = Section::at(format!("{}[{i}]", s.path_of("steps")), item, issues);
        let notify_path = st.path_of("notify");
        let mut notify = Vec::new();
        for (j, text) in st
            .string_list("notify", issues)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let at = format!("{notify_path}[{j}]");
            match text.split_once(':') {
                Some(("schedule", s)) if people.schedules.contains_key(s) => {
                    notify.push(Recipient::Schedule(s.to_string()))
                }
                Some(("person", p)) if people.people.contains_key(p) => {
                    notify.push(Recipient::Person(p.to_string()))
                }
                Some(("schedule", s)) => {
                    issues.push(at, format!("no schedule {s:?} in \"schedules\""))
                }
                Some(("person", p)) => issues.push(at, format!("no person {p:?} in \"people\"")),
                _ => issues.push(
                    at,
                    format!("{text:?}: name \"schedule:NAME\" or \"person:ID\""),
                ),
            }
        }
        if notify.is_empty() {
            issues.push(notify_path, "missing: whom this step notifies");
        }
        let step_actions = st.string_list("actions", issues).unwrap_or_default();
        if step_actions.is_empty() {
            issues.push(
                st.path_of("actions"),
                "missing: the actions that notify each person",
            );
        }
        for a in &step_actions {
            if !actions.contains(&a.as_str()) {
                issues.push(st.path_of("actions"), format!("no action is named {a:?}"));
            }
        }
        let wait = st.duration(
            "wait",
            Duration::from_secs(1),
            Duration::from_secs(7 * 86_400),
            issues,
        );
        if st.value("wait").is_none() {
            issues.push(
                st.path_of("wait"),
                "missing: how long to wait for an acknowledgement, such as \"5m\"",
            );
        }
        st.finish(issues);
        if let Some(wait) = wait {
            steps.push(Step {
                notify,
                actions: step_actions,
                wait,
            });
        }
    }
    let repeat = s.integer("repeat", 0, 100, issues).unwrap_or(0) as u32;
    (!steps.is_empty()).then_some(Policy {
        name,
        steps,
        repeat,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read_json(v: serde_json::Value) -> (EscalationConfig, Vec<String>) {
        let mut issues = Issues::default();
        let mut root = Section::root(&v, &mut issues);
        let people = crate::people::config::read(&mut root, &mut issues);
        let esc = read(
            &mut root,
            &["text", "mail"],
            &people,
            &Env(&[]),
            &mut issues,
        );
        (esc, issues.0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn a_policy_reads_and_names_what_is_wrong() {
        let base = json!({
            "people": {"cy": {}, "ana": {}},
            "schedules": {"primary": {"rotation": {"people": ["ana"], "every": "1d", "start": "2026-01-01"}}},
            "public_url": "https://hub.example.com/",
            "escalations": {"prod": {"steps": [
                {"notify": ["schedule:primary"], "actions": ["text", "mail"], "wait": "5m"},
                {"notify": ["person:cy"], "actions": ["text"], "wait": 1}
            ], "repeat": 2}}
        });
        let (esc, issues) = read_json(base);
        assert!(issues.is_empty(), "{issues:?}");
        let p = &esc.policies["prod"];
        assert_eq!(p.steps.len(), 2);
        assert_eq!(p.repeat, 2);
        assert_eq!(p.steps[1].wait, Duration::from_secs(1));
        assert_eq!(esc.public_url.as_deref(), Some("https://hub.example.com"));
        assert_eq!(esc.link_ttl, DEFAULT_LINK_TTL);

        let (_, issues) = read_json(json!({
            "people": {"cy": {}},
            "escalations": {"x": {"steps": [
                {"notify": ["schedule:nope", "person:zed", "cy", "$(touch x)"], "actions": ["page"], "wait": "0s"}
            ], "repeat": -1}},
            "public_url": "ftp://x",
            "escalation_link_ttl": "0s"
        }));
        let all = issues.join("\n");
        for path in [
            "escalations.x.steps[0].notify[0]",
            "escalations.x.steps[0].notify[1]",
            "escalations.x.steps[0].notify[2]",
            "escalations.x.steps[0].notify[3]",
            "escalations.x.steps[0].actions",
            "escalations.x.steps[0].wait",
            "escalations.x.repeat",
            "public_url",
            "escalation_link_ttl",
        ] {
            assert!(all.contains(path), "{path} missing from:\n{all}");
        }
    }
}
