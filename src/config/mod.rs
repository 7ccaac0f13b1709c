//! Loads and validates `config.json`.
//!
//! The keys of Dynatrace's "Custom-Webhook-Python" sample load unchanged; the keys hub adds have
//! defaults, so a sample config works as it is. Secrets may come from the environment instead of the
//! file (see [`SECRET_ENV`]). Every problem is reported at once, each named by its key path.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub use crate::actions::config::{
    ActionConfig, Actions, DispatchConfig, IncidentNotification, RouteConfig, SmsNotification,
};
pub use crate::actions::ActionKind;
pub use crate::dynatrace::config::DynatraceConfig;
pub use crate::keys::ConfigIssue;
use crate::keys::Env;
use crate::keys::{duplicate_keys, Issues, Section, PLACEHOLDER};
pub use crate::retention::config::RetentionConfig;
pub use crate::sources::config::SourcesConfig;
pub use crate::store::config::StoreConfig;

use crate::secret::Secret;

/// Secret keys that an environment variable may set instead of the file; the variable wins.
/// The name is `HUB_` and the key path in capitals with `.` as `_`.
pub const SECRET_ENV: &[(&str, &str)] = &[
    ("HUB_WEBHOOK_PASSWORD", "webhook.password"),
    ("HUB_STATUS_PAGE_PASSWORD", "status_page.password"),
    ("HUB_DYNATRACE_API_TOKEN", "dynatrace.api_token"),
    (
        "HUB_SMS_NOTIFICATION_TWILIO_TOKEN",
        "sms_notification.twilio_token",
    ),
];

/// Passwords that ship in example configs (ours and the sample's); hub warns loudly when one is used.
pub const EXAMPLE_PASSWORDS: &[&str] = &["s3cr3t", "change-me"];

pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
/// Paging never waits on Dynatrace for longer than this by default.
const MAX_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Config {
    pub dynatrace: DynatraceConfig,
    pub webhook: ListenerConfig,
    pub store: StoreConfig,
    pub dir_received: PathBuf,
    pub dir_sent: PathBuf,
    pub log_dir: PathBuf,
    pub log_file: String,
    /// `text` (default) or `json`; `HUB_LOG_FORMAT` wins over the file.
    pub log_format: crate::logging::Format,
    pub incident_notification: IncidentNotification,
    pub sms_notification: SmsNotification,
    pub actions: Actions,
    pub sources: SourcesConfig,
    /// Who may read the status page, the API and the metrics; `None`: the webhook credentials.
    pub viewer: Option<(String, Secret)>,
    /// `None`: nothing is ever deleted.
    pub retention: Option<RetentionConfig>,
    /// Recurring silences.
    pub maintenance: Vec<crate::noise::config::Maintenance>,
    pub heartbeats: Vec<crate::noise::config::Heartbeat>,
    /// `people`, `auth` and `schedules`.
    pub people: crate::people::PeopleConfig,
    /// `escalations`, `public_url`, `escalation_link_ttl`, `slack`.
    pub escalation: crate::escalate::EscalationConfig,
    /// `telemetry`: where traces go; `None`: nowhere (the default).
    pub telemetry: Option<crate::telemetry::TelemetryConfig>,
}

/// The `webhook` section (the sample's name for it): hub's own listener, its credentials and
/// limits. Not the `webhook` action's config, which is `actions::webhook::WebhookConfig`.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub username: String,
    pub password: Secret,
    pub interface: IpAddr,
    pub port: u16,
    pub max_body_bytes: u64,
    /// A request's headers must arrive within this (and an idle connection is closed after it).
    pub header_timeout: std::time::Duration,
    /// A request's body must arrive within this.
    pub body_timeout: std::time::Duration,
    /// Open connections at most; `None`: what the open-file limit allows.
    pub max_connections: Option<usize>,
    /// Open connections at most from one client address (an IPv6 client: its /64); `None`: a
    /// quarter of the connection cap, so one sender holding slow connections leaves room for the
    /// others.
    pub max_connections_per_client: Option<usize>,
    /// `webhook.tls`: serve HTTPS with these files; `None`: plain HTTP.
    pub tls: Option<crate::tls::TlsFiles>,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("config file {path} has {} problem(s):\n{}", issues.len(), list(issues))]
    Invalid {
        path: PathBuf,
        issues: Vec<ConfigIssue>,
    },
}

fn list(issues: &[ConfigIssue]) -> String {
    issues
        .iter()
        .map(|i| format!("  - {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Reads the file, applies secrets from the process environment, validates everything.
    /// Relative folders are resolved against the working directory, as the sample did.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_checked(path, true, true)
    }

    /// As [`Config::load`], for commands that run no action (`hub poll` without
    /// `--run-actions`, `hub problem`): a script missing from this folder is no reason to refuse.
    pub fn load_without_running(path: &Path) -> Result<Config, ConfigError> {
        Config::load_checked(path, false, false)
    }

    /// As [`Config::load`], for commands that work on the store and serve nothing (`hub silence`,
    /// `hub replay`, `hub prune`, `hub export`, `hub import`): the webhook's password is no reason
    /// to refuse. `runs_actions` as for [`Config::load_without_running`].
    pub fn load_for_store(path: &Path, runs_actions: bool) -> Result<Config, ConfigError> {
        Config::load_checked(path, runs_actions, false)
    }

    fn load_checked(path: &Path, runs_actions: bool, serves: bool) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let env: Vec<(String, String)> = std::env::vars().collect();
        let base = std::env::current_dir().unwrap_or_default();
        let parsed = match Config::from_str(&text, &env, &base) {
            Err(ConfigParseError::Invalid(issues)) if !runs_actions || !serves => {
                let left: Vec<ConfigIssue> = issues
                    .into_iter()
                    .filter(|i| runs_actions || !i.missing_program)
                    .filter(|i| serves || !i.serving_only)
                    .collect();
                if left.is_empty() {
                    Config::from_str_unchecked(&text, &env, &base)
                } else {
                    Err(ConfigParseError::Invalid(left))
                }
            }
            other => other,
        };
        parsed.map_err(|e| match e {
            ConfigParseError::Json(source) => ConfigError::Json {
                path: path.to_path_buf(),
                source,
            },
            ConfigParseError::Invalid(issues) => ConfigError::Invalid {
                path: path.to_path_buf(),
                issues,
            },
        })
    }

    /// The pure part of [`Config::load`]: text, environment and base folder in, config or issues out.
    pub fn from_str(
        text: &str,
        env: &[(String, String)],
        base: &Path,
    ) -> Result<Config, ConfigParseError> {
        let mut doc: Value = serde_json::from_str(text).map_err(ConfigParseError::Json)?;
        if !doc.is_object() {
            let mut issues = Issues::default();
            Section::root(&doc, &mut issues);
            return Err(ConfigParseError::Invalid(issues.0));
        }
        apply_secret_env(&mut doc, env);
        let mut issues = Issues::default();
        for path in duplicate_keys(text) {
            issues.push(
                path,
                "given more than once; keep one (JSON readers would silently take the last)",
            );
        }
        placeholders(&doc, "", &mut issues);
        let config = read(&doc, env, base, &mut issues);
        // A placeholder is the cause of whatever else its key's reader says of it ("missing",
        // "not valid base64"): say it alone.
        let placeholder_keys: Vec<String> = issues
            .0
            .iter()
            .filter(|i| i.message.contains(PLACEHOLDER))
            .map(|i| i.path.trim_end_matches("_env").to_string())
            .collect();
        issues
            .0
            .retain(|i| i.message.contains(PLACEHOLDER) || !placeholder_keys.contains(&i.path));
        if issues.0.is_empty() {
            Ok(config)
        } else {
            Err(ConfigParseError::Invalid(issues.0))
        }
    }

    /// The config as read, whatever issues were found; for [`Config::load_without_running`]
    /// once the only issues left are ones it may ignore.
    fn from_str_unchecked(
        text: &str,
        env: &[(String, String)],
        base: &Path,
    ) -> Result<Config, ConfigParseError> {
        let mut doc: Value = serde_json::from_str(text).map_err(ConfigParseError::Json)?;
        apply_secret_env(&mut doc, env);
        Ok(read(&doc, env, base, &mut Issues::default()))
    }

    /// What is allowed but almost surely a mistake, one line each with its key path: shown by
    /// check-config and logged at start. A maintenance window whose cron never fires (`0 0 30 2 *`,
    /// the 30th of February) is valid cron, and would silence nothing, ever, without a word.
    pub fn warnings(&self) -> Vec<String> {
        self.maintenance
            .iter()
            .enumerate()
            .filter(|(_, m)| m.never_fires())
            .map(|(i, m)| {
                format!(
                    "maintenance[{i}].cron: {:?} names no time that ever comes (a date no month \
                     has?), so the window {} never opens",
                    m.pattern, m.name
                )
            })
            .collect()
    }

    /// Whether the webhook password is one of the published example passwords.
    pub fn uses_example_password(&self) -> bool {
        EXAMPLE_PASSWORDS.contains(&self.webhook.password.expose())
    }

    /// A one-line description of what this config sets up; carries no secret.
    pub fn summary(&self) -> String {
        let tenant = match &self.dynatrace.tenant {
            Some(t) if self.dynatrace.api_token.is_empty() => format!("{t} (no API token)"),
            Some(t) => format!("{t} (API v{}, token set)", self.dynatrace.api_version),
            None => "not configured".to_string(),
        };
        format!(
            "listen {}:{}, store {}, received {}, sent {}, log {}, dynatrace {}, sources {}, actions {}, retention {}, traces {}",
            self.webhook.interface,
            self.webhook.port,
            if self.store.is_postgres() {
                format!("{} as instance {}", self.store.url, self.store.instance)
            } else {
                self.store.url.clone()
            },
            self.dir_received.display(),
            self.dir_sent.display(),
            self.log_path().display(),
            tenant,
            self.source_list(),
            self.action_list(),
            match &self.retention {
                Some(r) => format!(
                    "{} (checked every {})",
                    crate::keys::short_duration(r.max_age),
                    crate::keys::short_duration(r.interval)
                ),
                None => "none (everything is kept)".to_string(),
            },
            match &self.telemetry {
                Some(t) => t.traces_url(),
                None => "off".to_string(),
            },
        )
    }

    /// The sources that may post: Dynatrace always, the others when configured.
    pub fn source_list(&self) -> String {
        self.sources
            .enabled
            .iter()
            .map(|s| s.source().as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `name (type), …` or `none`.
    pub fn action_list(&self) -> String {
        if self.actions.actions.is_empty() {
            return "none".to_string();
        }
        self.actions
            .actions
            .iter()
            .map(|a| format!("{} ({})", a.name, a.kind.type_name()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn log_path(&self) -> PathBuf {
        self.log_dir.join(&self.log_file)
    }
}

#[derive(Debug)]
pub enum ConfigParseError {
    Json(serde_json::Error),
    Invalid(Vec<ConfigIssue>),
}

/// Keys whose value is a credential (by the end of their name).
const SECRET_KEYS: [&str; 7] = [
    "password",
    "token",
    "secret",
    "bearer",
    "routing_key",
    "integration_key",
    "webhook_url",
];

/// Refuses a credential left as the README writes it (`"…"`, `"xoxb-…"`): copied as is, hub
/// would start, and every call would fail at 3 a.m. with an authentication error far from here.
fn placeholders(v: &Value, path: &str, issues: &mut Issues) {
    let at = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match v {
        Value::Object(map) => {
            for (key, value) in map {
                let secret = SECRET_KEYS.iter().any(|k| key.ends_with(k));
                match value {
                    Value::String(text) if secret && text.contains('…') => issues.push(
                        at(key),
                        format!(
                            "{PLACEHOLDER} (it contains \"…\"): put the real value here, or \
                             name an environment variable with the key's _env form"
                        ),
                    ),
                    _ => placeholders(value, &at(key), issues),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                placeholders(item, &format!("{path}[{i}]"), issues);
            }
        }
        _ => {}
    }
}

fn apply_secret_env(doc: &mut Value, env: &[(String, String)]) {
    for (var, key_path) in SECRET_ENV {
        let Some((_, value)) = env.iter().find(|(k, _)| k == var) else {
            continue;
        };
        let Some((section, key)) = key_path.split_once('.') else {
            continue;
        };
        let Value::Object(root) = doc else { return };
        let entry = root
            .entry(section.to_string())
            .or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(map) = entry {
            map.insert(key.to_string(), Value::String(value.clone()));
        }
    }
}

fn read(doc: &Value, env: &[(String, String)], base: &Path, issues: &mut Issues) -> Config {
    let mut root = Section::root(doc, issues);

    let dynatrace = crate::dynatrace::config::read(root.section("dynatrace", issues), issues);
    let webhook = read_webhook(root.section("webhook", issues), base, issues);
    let mut store = crate::store::config::read(root.section("store", issues), env, base, issues);

    let mut folder = |root: &mut Section, key: &'static str, default: &str| {
        let path = root.path_of(key);
        let value = root
            .string(key, issues)
            .unwrap_or_else(|| default.to_string());
        if value.trim().is_empty() {
            issues.push(path, "must not be empty");
        }
        base.join(value)
    };
    let dir_received = folder(&mut root, "dir_received", "problems_received");
    let dir_sent = folder(&mut root, "dir_sent", "problems_sent");
    let log_dir = folder(&mut root, "log_dir", "log");

    let log_file = root
        .string("log_file", issues)
        .unwrap_or_else(|| "hub.log".to_string());
    if log_file.trim().is_empty() {
        issues.push("log_file", "must not be empty");
    }
    let log_format = read_log_format(&mut root, env, issues);

    let incident_notification = crate::actions::config::read_incident(
        root.section("incident_notification", issues),
        base,
        issues,
    );
    let sms_notification =
        crate::actions::config::read_sms(root.section("sms_notification", issues), issues);

    let mut actions = crate::actions::config::read(
        &mut root,
        crate::actions::config::Legacy {
            incident: &incident_notification,
            sms: &sms_notification,
            tenant_set: dynatrace.tenant.is_some() && !dynatrace.api_token.is_empty(),
            webhook_user: &webhook.username,
        },
        &Env(env),
        base,
        issues,
    );
    store.lease = std::time::Duration::from_secs(actions.dispatch.lease_secs);

    let sources = crate::sources::config::read(
        &mut root,
        (&webhook.username, &webhook.password),
        &Env(env),
        issues,
    );
    let viewer = read_viewer(root.section("status_page", issues), issues);
    let retention = match root.value("retention") {
        Some(_) => crate::retention::config::read(root.section("retention", issues), issues),
        None => None,
    };
    let maintenance = crate::noise::config::read_maintenance(&mut root, issues);
    let heartbeats = crate::noise::config::read_heartbeats(&mut root, &actions, issues);
    let people = crate::people::config::read(&mut root, issues);
    let names: Vec<&str> = actions.actions.iter().map(|a| a.name.as_str()).collect();
    let escalation = crate::escalate::config::read(&mut root, &names, &people, &Env(env), issues);
    for (policy, p) in &escalation.policies {
        for (i, step) in p.steps.iter().enumerate() {
            for name in &step.actions {
                if actions.get(name).is_some_and(|a| a.kind.addresses_others()) {
                    issues.push(
                        format!("escalations.{policy}.steps[{i}].actions"),
                        format!(
                            "{name:?} sends to its own recipients; a step pages whoever it \
                             notifies through an sms, email or slack action with \"to\": \"person\""
                        ),
                    );
                }
            }
        }
    }
    for (i, route) in actions.routes.iter().flatten().enumerate() {
        if let Some(name) = &route.escalate {
            if !escalation.policies.contains_key(name) {
                issues.push(
                    format!("routes[{i}].escalate"),
                    format!("no escalation is named {name:?} in \"escalations\""),
                );
            }
        }
    }

    let telemetry = crate::telemetry::read(root.section("telemetry", issues), &Env(env), issues);
    let silence =
        crate::escalate::tell::read_alertmanager(root.section("alertmanager", issues), issues);
    crate::escalate::tell::add_actions(&mut actions, dynatrace.sync, silence, issues);

    if dir_received == dir_sent {
        issues.push("dir_sent", "must be a different folder from dir_received");
    }
    root.finish(issues);

    Config {
        dynatrace,
        webhook,
        store,
        dir_received,
        dir_sent,
        log_dir,
        log_file,
        log_format,
        incident_notification,
        sms_notification,
        actions,
        sources,
        viewer,
        retention,
        maintenance,
        heartbeats,
        people,
        escalation,
        telemetry,
    }
}

fn read_viewer(mut s: Section, issues: &mut Issues) -> Option<(String, Secret)> {
    let username = s.string("username", issues).filter(|u| !u.is_empty());
    let password = s.string("password", issues).filter(|p| !p.is_empty());
    s.finish(issues);
    match (username, password) {
        (None, None) => None,
        (Some(u), Some(p)) if !u.contains(':') => Some((u, Secret::new(p))),
        (Some(_), Some(_)) => {
            issues.push("status_page.username", "must not contain ':'");
            None
        }
        _ => {
            issues.push(
                "status_page",
                "give both username and password (or neither, to use the webhook's)",
            );
            None
        }
    }
}

fn read_webhook(mut s: Section, base: &Path, issues: &mut Issues) -> ListenerConfig {
    let username = s.string("username", issues).unwrap_or_default();
    if username.is_empty() {
        issues.push(
            s.path_of("username"),
            "missing: the Basic auth user name senders use",
        );
    } else if username.contains(':') {
        issues.push(
            s.path_of("username"),
            "must not contain ':' (Basic auth cannot carry it)",
        );
    }
    let password = Secret::new(s.string("password", issues).unwrap_or_default());
    if password.is_empty() {
        issues.push_serving_only(
            s.path_of("password"),
            "missing: set it in the file or in HUB_WEBHOOK_PASSWORD",
        );
    }
    let interface = match s.string("interface", issues) {
        None => IpAddr::from([127, 0, 0, 1]),
        Some(text) => match text.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) if text == "localhost" => IpAddr::from([127, 0, 0, 1]),
            Err(_) => {
                issues.push(
                    s.path_of("interface"),
                    format!("expected an IP address such as 127.0.0.1 or 0.0.0.0, found {text:?}"),
                );
                IpAddr::from([127, 0, 0, 1])
            }
        },
    };
    let port = s.integer("port", 0, 65535, issues).unwrap_or(5000) as u16;
    let max_body_bytes = s
        .integer("max_body_bytes", 1024, MAX_MAX_BODY_BYTES, issues)
        .unwrap_or(DEFAULT_MAX_BODY_BYTES);
    let second = std::time::Duration::from_secs(1);
    let hour = std::time::Duration::from_secs(3600);
    let header_timeout = s
        .duration("header_timeout", second, hour, issues)
        .unwrap_or(std::time::Duration::from_secs(10));
    let body_timeout = s
        .duration("body_timeout", second, hour, issues)
        .unwrap_or(std::time::Duration::from_secs(30));
    let max_connections = s
        .integer("max_connections", 1, 1_000_000, issues)
        .map(|n| n as usize);
    let max_connections_per_client = s
        .integer("max_connections_per_client", 1, 1_000_000, issues)
        .map(|n| n as usize);
    if let (Some(all), Some(each)) = (max_connections, max_connections_per_client) {
        if each > all {
            issues.push(
                s.path_of("max_connections_per_client"),
                format!(
                    "{each} is more than webhook.max_connections ({all}); at most that (the \
                     same value turns the per-client cap off)"
                ),
            );
        }
    }
    let tls = match s.value("tls") {
        Some(_) => read_tls(s.section("tls", issues), base, issues),
        None => None,
    };
    s.finish(issues);
    ListenerConfig {
        username,
        password,
        interface,
        port,
        max_body_bytes,
        header_timeout,
        body_timeout,
        max_connections,
        max_connections_per_client,
        tls,
    }
}

/// `webhook.tls`: both files, readable, and a pair that a sender's handshake would accept today.
fn read_tls(mut s: Section, base: &Path, issues: &mut Issues) -> Option<crate::tls::TlsFiles> {
    let mut file = |key: &'static str, what: &str| {
        let found = s.string(key, issues).filter(|f| !f.trim().is_empty());
        if found.is_none() {
            issues.push(s.path_of(key), format!("required with webhook.tls: {what}"));
        }
        found.map(|f| base.join(f))
    };
    let cert = file(
        "cert",
        "the PEM file of the certificate (then any intermediates)",
    );
    let key = file("key", "the PEM file of the certificate's private key");
    let path = s.path().to_string();
    s.finish(issues);
    let files = crate::tls::TlsFiles {
        cert: cert?,
        key: key?,
    };
    if let Err(e) = crate::tls::server_config(&files) {
        issues.push(path, e.to_string());
        return None;
    }
    Some(files)
}

/// `log_format`, or `HUB_LOG_FORMAT`, which wins: `text` or `json`.
fn read_log_format(
    root: &mut Section,
    env: &[(String, String)],
    issues: &mut Issues,
) -> crate::logging::Format {
    let in_file = root.string("log_format", issues);
    let from_env = env
        .iter()
        .find(|(k, _)| k == "HUB_LOG_FORMAT")
        .map(|(_, v)| v.clone());
    let (key, value) = match (from_env, in_file) {
        (Some(v), _) => ("HUB_LOG_FORMAT", v),
        (None, Some(v)) => ("log_format", v),
        (None, None) => return crate::logging::Format::default(),
    };
    value.parse().unwrap_or_else(|e| {
        issues.push(key, format!("{e}, found {value:?}"));
        crate::logging::Format::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load(doc: Value, env: &[(&str, &str)]) -> Result<Config, ConfigParseError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_str(&doc.to_string(), &env, Path::new("/srv/hub"))
    }

    fn issues(doc: Value) -> Vec<String> {
        match load(doc, &[]) {
            Err(ConfigParseError::Invalid(issues)) => {
                issues.iter().map(|i| i.to_string()).collect()
            }
            other => panic!("expected issues, got {other:?}"),
        }
    }

    #[test]
    fn placeholder_secrets_are_refused_in_the_file_and_in_variables() {
        let doc = json!({"webhook": {"username": "u", "password": "p"},
                         "actions": {"chat": {"type": "slack", "token_env": "SLACK_TOKEN",
                                              "channel": "#ops"},
                                     "hook": {"type": "webhook", "url": "https://x.example/in",
                                              "secret": "whsec_…"}}});
        let found = match load(doc, &[("SLACK_TOKEN", "xoxb-…")]) {
            Err(ConfigParseError::Invalid(issues)) => {
                issues.iter().map(|i| i.to_string()).collect::<Vec<_>>()
            }
            other => panic!("expected issues, got {other:?}"),
        };
        assert!(
            found.iter().any(|i| i.starts_with(
                "actions.chat.token_env: environment variable \
                 SLACK_TOKEN holds a placeholder"
            )),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|i| i.starts_with("actions.hook.secret: a placeholder")),
            "{found:?}"
        );
        assert!(
            !found
                .iter()
                .any(|i| i.contains("whsec_") || i.contains("xoxb")),
            "{found:#?}"
        );
    }

    #[test]
    fn minimal_config_gets_sane_defaults() {
        let c = load(json!({"webhook": {"username": "u", "password": "p"}}), &[]).unwrap();
        assert_eq!(c.webhook.interface.to_string(), "127.0.0.1");
        assert_eq!(c.webhook.port, 5000);
        assert_eq!(c.webhook.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(c.store.url, "sqlite://hub.db");
        assert_eq!(c.dir_received, Path::new("/srv/hub/problems_received"));
        assert_eq!(c.log_path(), Path::new("/srv/hub/log/hub.log"));
        assert!(c.dynatrace.tenant.is_none());
        assert!(!c.incident_notification.active && !c.sms_notification.active);
    }

    #[test]
    fn the_log_format_comes_from_the_file_or_the_environment() {
        use crate::logging::Format;
        let base = json!({"webhook": {"username": "u", "password": "p"}});
        assert_eq!(load(base.clone(), &[]).unwrap().log_format, Format::Text);
        let mut json_file = base.clone();
        json_file["log_format"] = json!("json");
        assert_eq!(
            load(json_file.clone(), &[]).unwrap().log_format,
            Format::Json
        );
        let env = [("HUB_LOG_FORMAT", "text")];
        assert_eq!(load(json_file, &env).unwrap().log_format, Format::Text);
        let mut bad = base.clone();
        bad["log_format"] = json!("xml");
        assert_eq!(
            issues(bad),
            ["log_format: expected text or json, found \"xml\""]
        );
        match load(base, &[("HUB_LOG_FORMAT", "<script>")]) {
            Err(ConfigParseError::Invalid(found)) => assert_eq!(
                found[0].to_string(),
                "HUB_LOG_FORMAT: expected text or json, found \"<script>\""
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn secrets_from_the_environment_win_and_never_print() {
        let c = load(
            json!({"webhook": {"username": "u", "password": "file"}}),
            &[
                ("HUB_WEBHOOK_PASSWORD", "from-env"),
                ("HUB_DYNATRACE_API_TOKEN", "dt0c01.tok"),
            ],
        )
        .unwrap();
        assert_eq!(c.webhook.password.expose(), "from-env");
        assert_eq!(c.dynatrace.api_token.expose(), "dt0c01.tok");
        let shown = format!("{c:?} {}", c.summary());
        assert!(
            !shown.contains("from-env") && !shown.contains("dt0c01.tok"),
            "{shown}"
        );

        // A password only in the environment is enough.
        let c = load(
            json!({"webhook": {"username": "u"}}),
            &[("HUB_WEBHOOK_PASSWORD", "only-env")],
        )
        .unwrap();
        assert_eq!(c.webhook.password.expose(), "only-env");
    }

    #[test]
    fn the_sample_sections_take_the_typed_actions_options() {
        let c = load(
            json!({"webhook": {"username": "u", "password": "p"},
                   "incident_notification": {"active": true, "exec_unix": "/bin/true",
                       "args": ["{{ problem.title }}"], "timeout_secs": 5, "env": {"TEAM": "ops"},
                       "max_concurrent": 2},
                   "sms_notification": {"active": true, "twilio_account": "AC1", "twilio_token": "t",
                       "twilio_number": "+1", "to_number": "+2",
                       "api_url": "http://gateway.example:8080", "template": "{{ problem.title }}",
                       "rate_limit_per_minute": 30, "timeout_secs": 3}}),
            &[],
        )
        .unwrap();
        let script = c.actions.get("incident_notification").unwrap();
        let ActionKind::Script(sc) = &script.kind else {
            panic!("{script:?}")
        };
        assert_eq!(
            sc.options.args.as_deref(),
            Some(&["{{ problem.title }}".to_string()][..])
        );
        assert_eq!((sc.options.timeout_secs, script.max_concurrent), (5, 2));
        assert_eq!(sc.options.env, [("TEAM".to_string(), "ops".to_string())]);
        let sms = c.actions.get("sms_notification").unwrap();
        let ActionKind::Sms(sm) = &sms.kind else {
            panic!("{sms:?}")
        };
        assert_eq!(sm.options.api_url, "http://gateway.example:8080");
        assert_eq!(
            (sm.options.rate_limit_per_minute, sm.options.timeout_secs),
            (30, 3)
        );

        // Bad values are named by their path in the section; unknown keys still are errors.
        let found = issues(json!({"webhook": {"username": "u", "password": "p"},
            "incident_notification": {"exec_unix": "/bin/true", "timeout_secs": 0,
                                      "args": ["{{ oops"], "shell": true},
            "sms_notification": {"api_url": "ftp://x", "rate_limit_per_minute": "many"}}));
        for expected in [
            "incident_notification.timeout_secs:",
            "incident_notification.args[0]:",
            "incident_notification.shell: unknown key",
            "sms_notification.api_url:",
            "sms_notification.rate_limit_per_minute:",
        ] {
            assert!(
                found.iter().any(|f| f.starts_with(expected)),
                "{expected} not in {found:#?}"
            );
        }
    }

    #[test]
    fn several_sms_recipients_are_accepted() {
        let c = load(
            json!({"webhook": {"username": "u", "password": "p"},
                   "sms_notification": {"active": true, "twilio_account": "AC1", "twilio_token": "t",
                                        "twilio_number": "+1", "to_number": ["+2", "+3"]}}),
            &[],
        )
        .unwrap();
        assert_eq!(c.sms_notification.to_numbers, ["+2", "+3"]);
    }

    /// A PostgreSQL store: its password from the URL, `HUB_STORE_URL` or `store.password_env`,
    /// never shown; the instance's name and the lease from the config.
    #[test]
    fn a_postgres_store_keeps_its_password_out_of_sight() {
        let base = json!({"webhook": {"username": "u", "password": "p"},
                          "store": {"url": "postgres://hub:pw-in-url@db:5432/hub", "instance": "a-1"},
                          "dispatch": {"lease_secs": 30}});
        let c = load(base.clone(), &[]).unwrap();
        assert!(c.store.is_postgres());
        assert_eq!(c.store.url, "postgres://hub:***@db:5432/hub");
        assert_eq!(
            c.store.connect_url.expose(),
            "postgres://hub:pw-in-url@db:5432/hub"
        );
        assert_eq!(c.store.instance, "a-1");
        assert_eq!(c.store.lease, std::time::Duration::from_secs(30));
        assert!(!c.summary().contains("pw-in-url"));
        assert!(!format!("{c:?}").contains("pw-in-url"));

        let env = [
            ("HUB_STORE_URL", "postgresql://other:env-pw@db2/hub2"),
            ("DB_PASSWORD", "from-env"),
        ];
        let mut with_env = base.clone();
        with_env["store"]["password_env"] = json!("DB_PASSWORD");
        let c = load(with_env, &env).unwrap();
        assert_eq!(c.store.url, "postgresql://other:***@db2/hub2");
        assert_eq!(c.store.password.as_ref().unwrap().expose(), "from-env");

        let mut bad = base;
        bad["store"] = json!({"url": "postgres://hub@db:5432", "password_env": "NOPE",
                              "instance": "a b/../$(x)"});
        let found = issues(bad);
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(
            found[0].starts_with("store.url: name the database"),
            "{found:#?}"
        );
        assert!(found[1].starts_with("store.password_env: environment variable NOPE"));
        assert!(found[2].starts_with("store.instance: letters, digits"));
    }

    #[test]
    fn problems_are_all_reported_by_path() {
        let found = issues(json!({
            "webhook": {"username": "a:b", "port": -1},
            "dir_received": "same", "dir_sent": "same",
            "store": {"url": "mysql://x"}
        }));
        let expected = [
            "webhook.username: must not contain ':'",
            "webhook.password: missing",
            "webhook.port: expected a whole number from 0 to 65535, found -1",
            "store.url: expected a SQLite URL such as sqlite://hub.db or a PostgreSQL one",
            "dir_sent: must be a different folder",
        ];
        for e in expected {
            assert!(
                found.iter().any(|f| f.starts_with(e)),
                "{e} not in {found:#?}"
            );
        }
        assert_eq!(found.len(), expected.len(), "{found:#?}");
        for url in ["sqlite::memory:", "sqlite://x.db?mode=memory"] {
            let found = issues(json!({"webhook": {"username": "u", "password": "p"},
                                      "store": {"url": url}}));
            assert!(
                found.len() == 1 && found[0].starts_with("store.url: an in-memory store forgets"),
                "{url}: {found:#?}"
            );
        }
        assert_eq!(
            issues(json!([1])),
            ["(top level): expected an object, found an array"]
        );
    }

    #[test]
    fn a_key_given_twice_is_refused() {
        let text = r#"{"webhook": {"username": "u", "password": "p", "port": 5000},
                       "actions": {"a": {"type": "script", "command": "true", "command": "false"}},
                       "webhook": {"username": "u", "password": "p", "port": 5001}}"#;
        let found = match Config::from_str(text, &[], Path::new("/srv/hub")) {
            Err(ConfigParseError::Invalid(issues)) => issues
                .iter()
                .filter(|i| i.message.starts_with("given more than once"))
                .map(|i| i.path.clone())
                .collect::<Vec<_>>(),
            other => panic!("expected issues, got {other:?}"),
        };
        assert_eq!(found, ["actions.a.command", "webhook"]);
    }
}
