//! Loads and validates `config.json`.
//!
//! The keys of Dynatrace's "Custom-Webhook-Python" sample load unchanged; the keys hub adds have
//! defaults, so a sample config works as it is. Secrets may come from the environment instead of the
//! file (see [`SECRET_ENV`]). Every problem is reported at once, each named by its key path.

pub mod actions;
pub mod noise;
pub(crate) mod reader;
pub mod sources;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub use crate::actions::ActionKind;
pub use actions::{ActionConfig, Actions, DispatchConfig, RouteConfig};
pub use reader::ConfigIssue;
use reader::{duplicate_keys, type_name, Issues, Section};
pub(crate) use reader::{secret, Env};
pub use sources::SourcesConfig;

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
pub const DEFAULT_ENRICH_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
const MAX_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Config {
    pub dynatrace: DynatraceConfig,
    pub webhook: WebhookConfig,
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
    pub maintenance: Vec<noise::Maintenance>,
    pub heartbeats: Vec<noise::Heartbeat>,
}

/// `retention`: how long problems that ended are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionConfig {
    /// A problem that ended, and has had nothing to do, for longer than this is deleted.
    pub max_age: std::time::Duration,
    /// How often a pass looks for such problems.
    pub interval: std::time::Duration,
}

#[derive(Debug, Clone)]
pub struct DynatraceConfig {
    /// Base URL of the environment; `None` when not configured (no enrichment).
    pub tenant: Option<String>,
    pub api_token: Secret,
    /// Problems API version: 2 (default) or 1 for old Managed clusters.
    pub api_version: u8,
    pub connect_timeout_secs: u64,
    pub timeout_secs: u64,
    /// Tries per API call, the first included.
    pub max_attempts: u32,
    /// The longest hub waits for a rate limit to reset before trying again.
    pub max_rate_limit_wait_secs: u64,
    /// How long actions wait for a problem's details before they run on the notification alone.
    pub enrich_wait: std::time::Duration,
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
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

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `sqlite://FILE` or `postgres://USER@HOST:PORT/DB`, as it may be shown: a password in it
    /// is `***` here.
    pub url: String,
    /// The URL as given, password included (from the file or `HUB_STORE_URL`).
    pub connect_url: Secret,
    /// From `store.password_env`; wins over a password in the URL.
    pub password: Option<Secret>,
    /// `store.ca_file`: the CA certificates (PEM) a PostgreSQL server's certificate is checked
    /// against instead of the Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// This instance's name among those sharing a PostgreSQL store (`store.instance`, default the
    /// host name); shown on the page and in logs.
    pub instance: String,
    /// How long a claimed run is held for the instance running it before another may take it
    /// over (`dispatch.lease_secs`); renewed while the action runs.
    pub lease: std::time::Duration,
}

impl StoreConfig {
    pub fn is_postgres(&self) -> bool {
        is_postgres_url(&self.url)
    }
}

fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// A store URL as it may be shown (check-config, the start line, the page, `/api/stats`): the
/// password in its user part and the value of any query key naming a password replaced by `***`.
///
/// This is the one place a store URL is made fit to show, and it must hold for a password of any
/// character, written raw as operators do (`pa/ss`, `p@ss`, `50%`). So it masks more than any
/// parser takes: the user part runs to the *last* `@` before the query (tokio-postgres stops at
/// the first, the WHATWG parser at the first `/`), and a password value runs to the next `&`
/// that starts a known option. A URL it cannot read loses more of itself, never the password.
pub(crate) fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL (`sqlite:hub.db`, or a libpq `key=value` string given by mistake).
        return if url.to_ascii_lowercase().contains("pass") {
            "(not shown: it may hold a password)".to_string()
        } else {
            url.to_string()
        };
    };
    match user_part(rest) {
        Some((colon, at)) => {
            // A `?` in the part taken for a password may have been the query's start (an `@` in
            // a query value): then what follows is the query's rest, and is masked as one.
            let after = &rest[at + 1..];
            let after = if rest[colon..at].contains('?') && !after.contains('?') {
                mask_query(&format!("?{after}"))[1..].to_string()
            } else {
                mask_query(after)
            };
            format!("{scheme}://{}:***@{after}", &rest[..colon])
        }
        None => format!("{scheme}://{}", mask_query(rest)),
    }
}

/// Where the `:` before a password and the `@` after it are in what follows `scheme://`.
fn user_part(rest: &str) -> Option<(usize, usize)> {
    let first_at = rest.find('@')?;
    let query = rest[first_at..]
        .find('?')
        .map_or(rest.len(), |q| first_at + q);
    let at = rest[..query].rfind('@')?;
    let colon = rest[..at].find(':')?;
    // A user name holds none of these; a `:` after one is a port, and the `@` is in the query.
    if rest[..colon].contains(['/', '?', '#']) {
        return None;
    }
    Some((colon, at))
}

/// The options tokio-postgres reads from a URL's query (and libpq's file options): a `&` starts
/// a new pair only before one of these, so a raw `&` in a password stays in the masked value.
const URL_OPTIONS: &[&str] = &[
    "user",
    "password",
    "dbname",
    "options",
    "application_name",
    "sslmode",
    "sslnegotiation",
    "sslcert",
    "sslkey",
    "sslrootcert",
    "sslpassword",
    "passfile",
    "host",
    "hostaddr",
    "port",
    "connect_timeout",
    "tcp_user_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
];

/// `s` with the value of every query pair whose key names a password (`password`, `sslpassword`,
/// percent-encoded or not) replaced by `***`.
fn mask_query(s: &str) -> String {
    let Some(q) = s.find('?') else {
        return s.to_string();
    };
    let (head, query) = s.split_at(q + 1);
    let mut pairs = Vec::new();
    let mut start = 0;
    for (i, _) in query.match_indices('&') {
        let starts_option = query[i + 1..]
            .split_once('=')
            .is_some_and(|(key, _)| URL_OPTIONS.contains(&percent_decoded(key).as_str()));
        if starts_option {
            pairs.push(&query[start..i]);
            start = i + 1;
        }
    }
    pairs.push(&query[start..]);
    let pairs: Vec<String> = pairs
        .into_iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if percent_decoded(key).to_ascii_lowercase().contains("pass") => {
                format!("{key}=***")
            }
            _ => pair.to_string(),
        })
        .collect();
    format!("{head}{}", pairs.join("&"))
}

/// A query key as tokio-postgres reads it (`pass%77ord` is `password`); bytes that do not decode
/// stay as they are.
fn percent_decoded(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let (h, l) = (hex(h).unwrap_or(0), hex(l).unwrap_or(0));
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The machine's host name, the default instance name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "hub".to_string())
}

#[derive(Debug, Clone)]
pub struct IncidentNotification {
    pub active: bool,
    pub exec_win: String,
    pub exec_unix: String,
    /// The `script` action's other keys, which the section takes too.
    pub options: crate::actions::script::ScriptOptions,
    pub max_concurrent: usize,
}

#[derive(Debug, Clone)]
pub struct SmsNotification {
    pub active: bool,
    pub twilio_account: String,
    pub twilio_token: Secret,
    pub twilio_number: String,
    pub to_numbers: Vec<String>,
    /// The `sms` action's other keys, which the section takes too.
    pub options: crate::actions::sms::SmsOptions,
    pub max_concurrent: usize,
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
        Config::load_checked(path, true)
    }

    /// As [`Config::load`], for commands that run no action (`hub poll` without
    /// `--run-actions`, `hub problem`): a script missing from this folder is no reason to refuse.
    pub fn load_without_running(path: &Path) -> Result<Config, ConfigError> {
        Config::load_checked(path, false)
    }

    fn load_checked(path: &Path, runs_actions: bool) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let env: Vec<(String, String)> = std::env::vars().collect();
        let base = std::env::current_dir().unwrap_or_default();
        let parsed = match Config::from_str(&text, &env, &base) {
            Err(ConfigParseError::Invalid(issues)) if !runs_actions => {
                let left: Vec<ConfigIssue> =
                    issues.into_iter().filter(|i| !i.missing_program).collect();
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
        let config = read(&doc, env, base, &mut issues);
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
            "listen {}:{}, store {}, received {}, sent {}, log {}, dynatrace {}, sources {}, actions {}, retention {}",
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
                    reader::short_duration(r.max_age),
                    reader::short_duration(r.interval)
                ),
                None => "none (everything is kept)".to_string(),
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

    let dynatrace = read_dynatrace(root.section("dynatrace", issues), issues);
    let webhook = read_webhook(root.section("webhook", issues), base, issues);
    let mut store = read_store(root.section("store", issues), env, base, issues);

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

    let incident_notification =
        read_incident(root.section("incident_notification", issues), base, issues);
    let sms_notification = read_sms(root.section("sms_notification", issues), issues);

    let actions = actions::read(
        &mut root,
        actions::Legacy {
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

    let sources = sources::read(
        &mut root,
        (&webhook.username, &webhook.password),
        &Env(env),
        issues,
    );
    let viewer = read_viewer(root.section("status_page", issues), issues);
    let retention = match root.value("retention") {
        Some(_) => read_retention(root.section("retention", issues), issues),
        None => None,
    };
    let maintenance = noise::read_maintenance(&mut root, issues);
    let heartbeats = noise::read_heartbeats(&mut root, &actions, issues);

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
    }
}

fn read_retention(mut s: Section, issues: &mut Issues) -> Option<RetentionConfig> {
    const HOUR: std::time::Duration = std::time::Duration::from_secs(3600);
    const DAY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
    // At least an hour: "90s" typed for "90d" must not delete what just resolved.
    let max_age = s.duration("max_age", HOUR, DAY * 36_500, issues);
    if s.value("max_age").is_none() {
        issues.push(
            s.path_of("max_age"),
            "required with retention: how long a problem that ended is kept, such as \"90d\"",
        );
    }
    let interval = s
        .duration("interval", std::time::Duration::from_secs(1), DAY, issues)
        .unwrap_or(std::time::Duration::from_secs(600));
    s.finish(issues);
    Some(RetentionConfig {
        max_age: max_age?,
        interval,
    })
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

fn read_dynatrace(mut s: Section, issues: &mut Issues) -> DynatraceConfig {
    let tenant = s.string("tenant", issues).filter(|t| !t.trim().is_empty());
    if let Some(t) = &tenant {
        let lower = t.to_ascii_lowercase();
        if !(lower.starts_with("https://") || lower.starts_with("http://")) || t.contains(' ') {
            issues.push(
                s.path_of("tenant"),
                format!(
                    "expected a URL such as https://abc12345.live.dynatrace.com or https://host/e/<env-id>, found {t:?}"
                ),
            );
        }
    }
    let api_token = Secret::new(s.string("api_token", issues).unwrap_or_default());
    let api_version = s.integer("api_version", 1, 2, issues).unwrap_or(2) as u8;
    let connect_timeout_secs = s
        .integer("connect_timeout_secs", 1, 300, issues)
        .unwrap_or(5);
    let timeout_secs = s.integer("timeout_secs", 1, 600, issues).unwrap_or(30);
    let max_attempts = s.integer("max_attempts", 1, 20, issues).unwrap_or(4) as u32;
    let max_rate_limit_wait_secs = s
        .integer("max_rate_limit_wait_secs", 0, 3600, issues)
        .unwrap_or(60);
    let enrich_wait = s
        .duration(
            "enrich_wait",
            std::time::Duration::ZERO,
            std::time::Duration::from_secs(24 * 3600),
            issues,
        )
        .unwrap_or(DEFAULT_ENRICH_WAIT);
    s.finish(issues);
    DynatraceConfig {
        tenant,
        api_token,
        api_version,
        connect_timeout_secs,
        timeout_secs,
        max_attempts,
        max_rate_limit_wait_secs,
        enrich_wait,
    }
}

fn read_webhook(mut s: Section, base: &Path, issues: &mut Issues) -> WebhookConfig {
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
        issues.push(
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
    WebhookConfig {
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

fn read_store(
    mut s: Section,
    env: &[(String, String)],
    base: &Path,
    issues: &mut Issues,
) -> StoreConfig {
    let in_file = s.string("url", issues);
    let from_env = env
        .iter()
        .find(|(k, _)| k == "HUB_STORE_URL")
        .map(|(_, v)| v.clone());
    let url = from_env
        .or(in_file)
        .unwrap_or_else(|| "sqlite://hub.db".to_string());
    if is_postgres_url(&url) {
        let authority = url.split_once("://").map_or("", |(_, rest)| rest);
        if authority.split('/').nth(1).is_none_or(str::is_empty) {
            issues.push(
                s.path_of("url"),
                "name the database, such as postgres://hub@db.example:5432/hub",
            );
        }
    } else if !url.starts_with("sqlite:") {
        issues.push(
            s.path_of("url"),
            format!(
                "expected a SQLite URL such as sqlite://hub.db or a PostgreSQL one such as \
                 postgres://hub@db.example:5432/hub, found {:?}",
                without_password(&url)
            ),
        );
    } else if url.contains(":memory:") || url.contains("mode=memory") {
        issues.push(
            s.path_of("url"),
            "an in-memory store forgets every notification when hub stops; name a file, such as sqlite://hub.db",
        );
    }
    let password = match s.string("password_env", issues) {
        Some(var) => match env.iter().find(|(k, _)| *k == var) {
            Some((_, v)) if !v.is_empty() => Some(Secret::new(v.clone())),
            _ => {
                issues.push(
                    s.path_of("password_env"),
                    format!("environment variable {var} is not set"),
                );
                None
            }
        },
        None => None,
    };
    let ca_file = s.string("ca_file", issues).map(|f| base.join(f));
    if let Some(f) = &ca_file {
        if !f.exists() {
            issues.push(
                s.path_of("ca_file"),
                format!("no such file: {}", f.display()),
            );
        } else if let Err(e) = crate::tls::ca_certificates(f) {
            // Read here with a cap, so a file that could never be a CA is refused at load.
            issues.push(s.path_of("ca_file"), e.to_string());
        }
    }
    let instance = s.string("instance", issues).unwrap_or_else(host_name);
    if instance.is_empty()
        || instance.len() > 64
        || !instance
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        issues.push(
            s.path_of("instance"),
            "letters, digits, '-', '_' and '.' only, 64 at most",
        );
    }
    s.finish(issues);
    StoreConfig {
        url: without_password(&url),
        connect_url: Secret::new(url),
        password,
        ca_file,
        instance,
        lease: std::time::Duration::from_secs(DispatchConfig::default().lease_secs),
    }
}

fn read_incident(mut s: Section, base: &Path, issues: &mut Issues) -> IncidentNotification {
    let active = s.bool("active", issues).unwrap_or(false);
    let exec_win = s.string("exec_win", issues).unwrap_or_default();
    let exec_unix = s.string("exec_unix", issues).unwrap_or_default();
    let options = crate::actions::script::read_options(&mut s, base, issues);
    let max_concurrent = read_max_concurrent(&mut s, issues);
    let needed = if cfg!(windows) {
        ("exec_win", &exec_win)
    } else {
        ("exec_unix", &exec_unix)
    };
    if active && needed.1.trim().is_empty() {
        issues.push(
            s.path_of(needed.0),
            "missing: the command to run when incident_notification is active",
        );
    }
    s.finish(issues);
    IncidentNotification {
        active,
        exec_win,
        exec_unix,
        options,
        max_concurrent,
    }
}

fn read_max_concurrent(s: &mut Section, issues: &mut Issues) -> usize {
    s.integer("max_concurrent", 1, 256, issues).unwrap_or(4) as usize
}

fn read_sms(mut s: Section, issues: &mut Issues) -> SmsNotification {
    let active = s.bool("active", issues).unwrap_or(false);
    let twilio_account = s.string("twilio_account", issues).unwrap_or_default();
    let twilio_token = Secret::new(s.string("twilio_token", issues).unwrap_or_default());
    let twilio_number = s.string("twilio_number", issues).unwrap_or_default();
    let options = crate::actions::sms::read_options(&mut s, issues);
    let max_concurrent = read_max_concurrent(&mut s, issues);
    let to_path = s.path_of("to_number");
    let to_numbers = match s.value("to_number") {
        None => Vec::new(),
        Some(Value::String(n)) if n.is_empty() => Vec::new(),
        Some(Value::String(n)) => vec![n.clone()],
        Some(Value::Array(items)) => {
            let mut numbers = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(n) if !n.is_empty() => numbers.push(n.clone()),
                    other => issues.push(
                        format!("{to_path}[{i}]"),
                        format!("expected a phone number string, found {}", type_name(other)),
                    ),
                }
            }
            numbers
        }
        Some(other) => {
            issues.push(
                to_path.clone(),
                format!(
                    "expected a phone number or a list of them, found {}",
                    type_name(other)
                ),
            );
            Vec::new()
        }
    };
    if active {
        for (key, empty) in [
            ("twilio_account", twilio_account.is_empty()),
            ("twilio_token", twilio_token.is_empty()),
            ("twilio_number", twilio_number.is_empty()),
            ("to_number", to_numbers.is_empty()),
        ] {
            if empty {
                issues.push(
                    s.path_of(key),
                    "missing: required when sms_notification is active",
                );
            }
        }
    }
    s.finish(issues);
    SmsNotification {
        active,
        twilio_account,
        twilio_token,
        twilio_number,
        to_numbers,
        options,
        max_concurrent,
    }
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

    /// A password of any character, in the user part or the query, is never shown, and what is
    /// shown still names the host and database.
    #[test]
    fn a_store_urls_password_is_masked_whatever_it_holds() {
        let cases = [
            (
                "postgres://hub:pa/ss@db:5432/hub",
                "postgres://hub:***@db:5432/hub",
            ),
            ("postgres://hub:p@ss@db/hub", "postgres://hub:***@db/hub"),
            (
                "postgres://hub:p%40ss%2F@db/hub",
                "postgres://hub:***@db/hub",
            ),
            ("postgres://hub:pa?ss#x@db/hub", "postgres://hub:***@db/hub"),
            ("postgres://hub:@db/hub", "postgres://hub:***@db/hub"),
            (
                "postgres://hub@db/hub?password=SeCrEt",
                "postgres://hub@db/hub?password=***",
            ),
            (
                "postgres://db/hub?sslmode=require&password=a&b/c@d&application_name=x",
                "postgres://db/hub?sslmode=require&password=***&application_name=x",
            ),
            (
                "postgres://db/hub?pass%77ord=SeCrEt",
                "postgres://db/hub?pass%77ord=***",
            ),
            (
                "postgres://hub:one@db/hub?sslpassword=two",
                "postgres://hub:***@db/hub?sslpassword=***",
            ),
            ("sqlite://hub.db", "sqlite://hub.db"),
            ("sqlite:hub.db", "sqlite:hub.db"),
            ("host=db password=x", "(not shown: it may hold a password)"),
        ];
        for (url, shown) in cases {
            assert_eq!(without_password(url), shown, "{url}");
        }
        // Where the query holds an `@` and a `:` comes before it, more is hidden, nothing leaks.
        let odd = without_password("postgres://db:5432/hub?application_name=a@b&password=Z9");
        assert!(!odd.contains("Z9") && !odd.contains("5432/hub?"), "{odd}");
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
