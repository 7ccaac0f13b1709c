//! The `sources` section: which monitoring systems besides Dynatrace may post, and how each one
//! proves who it is. An entry's presence enables its endpoint; without the section, hub is the
//! sample's Dynatrace target and nothing more.

use serde_json::Value;

use super::actions::{secret, Env};
use super::reader::{type_name, Issues, Section};
use crate::domain::Source;
use crate::secret::Secret;

#[derive(Debug, Clone, Default)]
pub struct SourcesConfig {
    pub enabled: Vec<(Source, SourceConfig)>,
}

impl SourcesConfig {
    pub fn get(&self, source: Source) -> Option<&SourceConfig> {
        self.enabled
            .iter()
            .find(|(s, _)| *s == source)
            .map(|(_, c)| c)
    }
}

#[derive(Debug, Clone, Default)]
pub struct SourceConfig {
    pub auth: SourceAuth,
    /// PagerDuty: the integration keys events must carry.
    pub routing_keys: Vec<Secret>,
    /// PagerDuty: events a minute per routing key before 429.
    pub rate_limit_per_minute: u32,
    /// CloudStack: the webhook's secret key; deliveries must carry its signature.
    pub secret: Option<Secret>,
}

#[derive(Debug, Clone, Default)]
pub enum SourceAuth {
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// `Authorization: Basic …`.
    Basic { username: String, password: Secret },
    /// `X-Auth-Token: <token>` (OpenStack's header).
    Token(Secret),
}

pub(super) fn read(root: &mut Section, env: &Env, issues: &mut Issues) -> SourcesConfig {
    let mut enabled = Vec::new();
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
            Some(s) => s,
            None => {
                let known: Vec<&str> = Source::ALL[1..].iter().map(|s| s.as_str()).collect();
                issues.push(
                    path,
                    format!("unknown source (known: {})", known.join(", ")),
                );
                continue;
            }
        };
        let mut s = Section::at(path, value, issues);
        let config = read_one(source, &mut s, env, issues);
        s.finish(issues);
        enabled.push((source, config));
    }
    SourcesConfig { enabled }
}

fn read_one(source: Source, s: &mut Section, env: &Env, issues: &mut Issues) -> SourceConfig {
    let auth = read_auth(s, env, issues);
    let mut c = SourceConfig {
        auth,
        ..SourceConfig::default()
    };
    match source {
        Source::Pagerduty => {
            let keys = s.string_list("routing_keys", issues).unwrap_or_default();
            if keys.is_empty() {
                issues.push(
                    s.path_of("routing_keys"),
                    "missing: the 32-character integration keys senders use",
                );
            }
            for k in &keys {
                if k.chars().count() != 32 {
                    issues.push(
                        s.path_of("routing_keys"),
                        "every routing key is 32 characters, as PagerDuty's are",
                    );
                }
            }
            c.routing_keys = keys.into_iter().map(Secret::new).collect();
            c.rate_limit_per_minute = s
                .integer("rate_limit_per_minute", 1, 100_000, issues)
                .unwrap_or(120) as u32;
        }
        Source::Cloudstack => {
            let secret = secret(s, "secret", "secret_env", env, issues);
            c.secret = Some(secret).filter(|s| !s.is_empty());
        }
        _ => {}
    }
    c
}

fn read_auth(s: &mut Section, env: &Env, issues: &mut Issues) -> SourceAuth {
    let path = s.path_of("auth");
    let Some(value) = s.value("auth") else {
        return SourceAuth::None;
    };
    let Value::Object(map) = value else {
        issues.push(
            path,
            format!(
                "expected an object such as {{\"bearer\": \"…\"}}, found {}",
                type_name(value)
            ),
        );
        return SourceAuth::None;
    };
    if map.len() != 1 {
        issues.push(
            path,
            "give exactly one of bearer, basic, token (or none for no auth)",
        );
        return SourceAuth::None;
    }
    let mut a = Section::at(path.clone(), value, issues);
    let auth = if map.contains_key("none") {
        let _ = a.value("none");
        SourceAuth::None
    } else if map.contains_key("bearer") || map.contains_key("bearer_env") {
        SourceAuth::Bearer(required_secret(&mut a, "bearer", "bearer_env", env, issues))
    } else if map.contains_key("token") || map.contains_key("token_env") {
        SourceAuth::Token(required_secret(&mut a, "token", "token_env", env, issues))
    } else if map.contains_key("basic") {
        let mut b = a.section("basic", issues);
        let username = b.string("username", issues).unwrap_or_default();
        if username.is_empty() || username.contains(':') {
            issues.push(b.path_of("username"), "missing, or contains ':'");
        }
        let password = required_secret(&mut b, "password", "password_env", env, issues);
        b.finish(issues);
        SourceAuth::Basic { username, password }
    } else {
        SourceAuth::None
    };
    a.finish(issues);
    auth
}

fn required_secret(
    s: &mut Section,
    key: &'static str,
    env_key: &'static str,
    env: &Env,
    issues: &mut Issues,
) -> Secret {
    let v = secret(s, key, env_key, env, issues);
    if v.is_empty() {
        issues.push(s.path_of(key), "missing: the secret senders must present");
    }
    v
}
