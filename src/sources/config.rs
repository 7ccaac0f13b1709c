//! The `sources` section: which monitoring systems besides Dynatrace may post, and how each one
//! proves who it is. An entry's presence enables its endpoint; without the section, hub is the
//! sample's Dynatrace target and nothing more. Each source reads its own keys (see `crate::sources`).

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::credentials::BasicAuth;
use crate::keys::Env;
use crate::keys::{Issues, Section};
use crate::secret::Secret;
use crate::sources::{gate, Gate, Source, SourceAuth, SourcePlugin};

/// The enabled sources, Dynatrace first; and the others unconfigured, which refuse every request
/// but still answer it in the shape their senders read (UCloud's `RetCode`).
#[derive(Debug, Clone, Default)]
pub struct SourcesConfig {
    pub enabled: Vec<Arc<dyn SourcePlugin>>,
    disabled: Vec<Arc<dyn SourcePlugin>>,
}

impl SourcesConfig {
    pub fn get(&self, source: Source) -> Option<&Arc<dyn SourcePlugin>> {
        self.enabled.iter().find(|p| p.source() == source)
    }

    /// The source's answers, whether or not it is enabled.
    pub fn answering(&self, source: Source) -> Option<&Arc<dyn SourcePlugin>> {
        self.get(source)
            .or_else(|| self.disabled.iter().find(|p| p.source() == source))
    }
}

pub(crate) fn read(
    root: &mut Section,
    webhook: (&str, &Secret),
    env: &Env,
    issues: &mut Issues,
) -> SourcesConfig {
    let empty = Value::Object(Map::new());
    let dynatrace = Gate::new(
        SourceAuth::Basic(BasicAuth::new(webhook.0, webhook.1)),
        "send HTTP Basic credentials matching webhook.username and webhook.password",
    );
    let mut always = Section::at("sources.dynatrace".to_string(), &empty, issues);
    let mut enabled = vec![Source::Dynatrace.build(dynatrace, &mut always, env, issues)];
    for (name, value) in root.entries("sources", issues) {
        let path = format!("sources.{name}");
        let source = match Source::parse(&name) {
            Some(Source::Dynatrace) => {
                issues.push(
                    path,
                    "Dynatrace is always on; its credentials are webhook.username and webhook.password",
                );
                continue;
            }
            Some(Source::Hub) => {
                issues.push(
                    path,
                    "hub's own problems (heartbeats, failure alarms) are always on and take no entry",
                );
                continue;
            }
            Some(s) => s,
            None => {
                let known: Vec<&str> = Source::ALL
                    .iter()
                    .filter(|s| !matches!(s, Source::Dynatrace | Source::Hub))
                    .map(|s| s.as_str())
                    .collect();
                issues.push(
                    path,
                    format!("unknown source (known: {})", known.join(", ")),
                );
                continue;
            }
        };
        let mut s = Section::at(path, value, issues);
        let mut gate = gate::read(&mut s, env, issues);
        // PagerDuty's own limit is per routing key, as PagerDuty's is (see its source).
        if source != Source::Pagerduty {
            let per_minute = s.integer("rate_limit_per_minute", 1, 1_000_000, issues);
            gate = gate.limited(per_minute.map(|n| n as u32));
        }
        enabled.push(source.build(gate, &mut s, env, issues));
        s.finish(issues);
    }
    let disabled = Source::ALL
        .iter()
        .filter(|s| !enabled.iter().any(|p| p.source() == **s))
        .map(|s| {
            // What an empty entry lacks is not this config's problem: the source stays off.
            let mut ignored = Issues::default();
            let mut entry = Section::at(format!("sources.{s}"), &empty, &mut ignored);
            let gate = Gate::new(SourceAuth::None, "");
            s.build(gate, &mut entry, env, &mut ignored)
        })
        .collect();
    SourcesConfig { enabled, disabled }
}
