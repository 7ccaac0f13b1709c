//! The `actions`, `routes` and `dispatch` sections, and the sample's two integrations mapped onto them.
//!
//! Every action is named and `type`-tagged. Command lines are split into argv here, once, and every
//! template is compiled here, so a bad one is a config error at start and never a surprise at 3 a.m.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::reader::{Issues, Section};
use super::{IncidentNotification, SmsNotification};
use crate::secret::Secret;

/// Name of the action the sample's `incident_notification` becomes, and of its comment-back.
pub const LEGACY_SCRIPT: &str = "incident_notification";
pub const LEGACY_SMS: &str = "sms_notification";
pub const TWILIO_API_URL: &str = "https://api.twilio.com";

#[derive(Debug, Clone)]
pub struct ActionConfig {
    pub name: String,
    pub kind: ActionKind,
    /// How many runs of this action may be in flight at once.
    pub max_concurrent: usize,
    /// Set for the sample's integrations, which only ever acted on Dynatrace problems.
    pub dynatrace_only: bool,
}

#[derive(Debug, Clone)]
pub enum ActionKind {
    Script(ScriptConfig),
    Sms(SmsConfig),
    Comment(CommentConfig),
    Webhook(WebhookActionConfig),
}

impl ActionKind {
    /// The actions this one waits for (see `crate::actions::Action::depends_on`).
    pub fn depends_on(&self) -> &[String] {
        match self {
            ActionKind::Comment(c) => &c.after,
            _ => &[],
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            ActionKind::Script(_) => "script",
            ActionKind::Sms(_) => "sms",
            ActionKind::Comment(_) => "comment",
            ActionKind::Webhook(_) => "webhook",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ScriptConfig {
    /// The program and its fixed arguments, split once at load; never handed to a shell.
    pub argv: Vec<String>,
    pub options: ScriptOptions,
}

#[derive(Debug, Clone)]
pub struct SmsConfig {
    pub account_sid: String,
    pub auth_token: Secret,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    pub to: Vec<String>,
    pub options: SmsOptions,
}

#[derive(Debug, Clone)]
pub struct CommentConfig {
    /// The actions whose outcomes this comment reports; it runs once they have all finished.
    pub after: Vec<String>,
    /// The v1 API's `user` field.
    pub user: String,
}

#[derive(Debug, Clone)]
pub struct WebhookActionConfig {
    pub url: String,
    pub secret: Secret,
    pub template: Option<String>,
    pub timeout_secs: u64,
}

/// Which notifications run which actions. Every criterion given must match; within one, any value.
#[derive(Debug, Clone, Default)]
pub struct RouteConfig {
    pub sources: Vec<crate::domain::Source>,
    pub states: Vec<String>,
    pub severities: Vec<String>,
    pub tags: Vec<String>,
    pub actions: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct DispatchConfig {
    pub first_retry_secs: u64,
    pub max_retry_secs: u64,
    /// Tries per run, the first included; a transient failure after the last one is final.
    pub max_attempts: u32,
    /// On SIGTERM, how long running actions may take to finish before they are left for the next start.
    pub shutdown_grace_secs: u64,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            first_retry_secs: 1,
            max_retry_secs: 300,
            max_attempts: 10,
            shutdown_grace_secs: 10,
        }
    }
}

/// What the three sections produce together.
#[derive(Debug, Clone, Default)]
pub struct Actions {
    pub actions: Vec<ActionConfig>,
    /// `None`: every action runs for every (non-test) notification.
    pub routes: Option<Vec<RouteConfig>>,
    pub dispatch: DispatchConfig,
}

impl Actions {
    pub fn get(&self, name: &str) -> Option<&ActionConfig> {
        self.actions.iter().find(|a| a.name == name)
    }
}

/// Environment given to [`read`] for `*_env` keys.
pub(crate) struct Env<'a>(pub &'a [(String, String)]);

impl Env<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub(super) struct Legacy<'a> {
    pub incident: &'a IncidentNotification,
    pub sms: &'a SmsNotification,
    pub tenant_set: bool,
    pub webhook_user: &'a str,
}

pub(super) fn read(
    root: &mut Section,
    legacy: Legacy,
    env: &Env,
    base: &Path,
    issues: &mut Issues,
) -> Actions {
    let mut actions = legacy_actions(&legacy, base, issues);
    for (name, value) in root.entries("actions", issues) {
        let path = format!("actions.{name}");
        if !valid_name(&name) {
            issues.push(
                path.clone(),
                "action names may use only letters, digits, '-' and '_' (at most 64)",
            );
        }
        if actions.iter().any(|a| a.name == name) {
            issues.push(
                path.clone(),
                "this name is taken by the action the sample's section becomes",
            );
        }
        let section = Section::at(path, value, issues);
        if let Some(action) = read_action(name, section, &legacy, env, base, issues) {
            actions.push(action);
        }
    }

    // An action waits only for actions that exist and wait for nothing themselves, so no run can
    // wait for ever.
    for a in &actions {
        for other in a.kind.depends_on() {
            match actions.iter().find(|x| &x.name == other) {
                None => issues.push(
                    format!("actions.{}.after", a.name),
                    format!("no action is named {other:?}"),
                ),
                Some(x) if !x.kind.depends_on().is_empty() => issues.push(
                    format!("actions.{}.after", a.name),
                    format!(
                        "{other:?} waits for other actions itself; name the actions it waits for"
                    ),
                ),
                Some(_) => {}
            }
        }
    }

    let routes = root.items("routes", issues).map(|items| {
        items
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                read_route(
                    Section::at(format!("routes[{i}]"), v, issues),
                    &actions,
                    i,
                    issues,
                )
            })
            .collect()
    });
    let dispatch = read_dispatch(root.section("dispatch", issues), issues);
    Actions {
        actions,
        routes,
        dispatch,
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The sample's sections, as actions: each integration followed by its comment-back, as the sample
/// did, but a failure of one no longer hides the other.
fn legacy_actions(legacy: &Legacy, base: &Path, issues: &mut Issues) -> Vec<ActionConfig> {
    let mut out = Vec::new();
    let comment = |after: &str| ActionConfig {
        name: format!("{after}_comment"),
        kind: ActionKind::Comment(CommentConfig {
            after: vec![after.to_string()],
            user: legacy.webhook_user.to_string(),
        }),
        max_concurrent: 4,
        dynatrace_only: true,
    };
    if legacy.incident.active {
        let (key, line) = if cfg!(windows) {
            ("incident_notification.exec_win", &legacy.incident.exec_win)
        } else {
            (
                "incident_notification.exec_unix",
                &legacy.incident.exec_unix,
            )
        };
        if let Some(argv) = split_command(key, line, base, issues) {
            out.push(ActionConfig {
                name: LEGACY_SCRIPT.to_string(),
                kind: ActionKind::Script(legacy.incident.options.clone().with_argv(argv)),
                max_concurrent: legacy.incident.max_concurrent,
                dynatrace_only: true,
            });
            if legacy.tenant_set {
                out.push(comment(LEGACY_SCRIPT));
            }
        }
    }
    let sms = legacy.sms;
    if sms.active {
        out.push(ActionConfig {
            name: LEGACY_SMS.to_string(),
            kind: ActionKind::Sms(SmsConfig {
                account_sid: sms.twilio_account.clone(),
                auth_token: sms.twilio_token.clone(),
                from: Some(sms.twilio_number.clone()),
                messaging_service_sid: None,
                to: sms.to_numbers.clone(),
                options: sms.options.clone(),
            }),
            max_concurrent: sms.max_concurrent,
            dynatrace_only: true,
        });
        if legacy.tenant_set {
            out.push(comment(LEGACY_SMS));
        }
    }
    out
}

/// Splits a configured command line into argv the way a POSIX shell would quote it, without ever
/// running one. A relative program path is taken from the folder hub starts in, as the sample did.
fn split_command(key: &str, line: &str, base: &Path, issues: &mut Issues) -> Option<Vec<String>> {
    match shell_words::split(line) {
        Ok(argv) if argv.is_empty() => {
            issues.push(key, "must name the program to run");
            None
        }
        Ok(argv) => resolve_program(key, argv, base, issues),
        Err(e) => {
            issues.push(key, format!("cannot split the command line: {e}"));
            None
        }
    }
}

fn resolve_program(
    key: &str,
    mut argv: Vec<String>,
    base: &Path,
    issues: &mut Issues,
) -> Option<Vec<String>> {
    let program = Path::new(&argv[0]);
    let path_like = argv[0].contains('/') || argv[0].contains('\\');
    if !path_like {
        // The sample's users keep the script beside config.json and name it bare.
        let beside = base.join(program);
        if beside.is_file() {
            argv[0] = beside.to_string_lossy().into_owned();
        } else if !on_path(&argv[0]) {
            issues.push_missing_program(
                key,
                format!(
                    "program {:?} is neither in {} nor on PATH",
                    argv[0],
                    base.display()
                ),
            );
            return None;
        }
        return Some(argv);
    }
    let full = if program.is_absolute() {
        program.to_path_buf()
    } else {
        base.join(program)
    };
    if !full.is_file() {
        issues.push_missing_program(key, format!("program not found: {}", full.display()));
        return None;
    }
    argv[0] = full.to_string_lossy().into_owned();
    Some(argv)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

fn read_action(
    name: String,
    mut s: Section,
    legacy: &Legacy,
    env: &Env,
    base: &Path,
    issues: &mut Issues,
) -> Option<ActionConfig> {
    let type_path = s.path_of("type");
    let kind_name = s.string("type", issues);
    let max_concurrent = s.integer("max_concurrent", 1, 256, issues).unwrap_or(4) as usize;
    let kind = match kind_name.as_deref() {
        Some("script") => read_script(&mut s, base, issues).map(ActionKind::Script),
        Some("sms") => Some(ActionKind::Sms(read_sms(&mut s, env, issues))),
        Some("comment") => Some(ActionKind::Comment(CommentConfig {
            after: s.string_list("after", issues).unwrap_or_default(),
            user: s
                .string("user", issues)
                .unwrap_or_else(|| legacy.webhook_user.to_string()),
        })),
        Some("webhook") => Some(ActionKind::Webhook(read_webhook(&mut s, env, issues))),
        Some(other) => {
            issues.push(
                type_path,
                format!("unknown action type {other:?} (known: script, sms, comment, webhook)"),
            );
            None
        }
        None => {
            issues.push(type_path, "missing: one of script, sms, comment, webhook");
            None
        }
    };
    if let Some(ActionKind::Comment(c)) = &kind {
        if c.after.is_empty() {
            issues.push(
                s.path_of("after"),
                "missing: the names of the actions this comment reports",
            );
        }
        if !legacy.tenant_set {
            issues.push(
                s.path(),
                "a comment action needs dynatrace.tenant and dynatrace.api_token",
            );
        }
    }
    s.finish(issues);
    Some(ActionConfig {
        name,
        kind: kind?,
        max_concurrent,
        dynatrace_only: false,
    })
}

fn read_script(s: &mut Section, base: &Path, issues: &mut Issues) -> Option<ScriptConfig> {
    let key = s.path_of("command");
    let argv = match s.value("command") {
        None => {
            issues.push(
                key.clone(),
                "missing: the program to run (a string or a list)",
            );
            None
        }
        Some(Value::String(line)) => split_command(&key, line, base, issues),
        Some(Value::Array(_)) => match s.string_list("command", issues) {
            Some(argv) if !argv.is_empty() => resolve_program(&key, argv, base, issues),
            _ => {
                issues.push(key.clone(), "must name the program to run");
                None
            }
        },
        Some(_) => {
            issues.push(
                key.clone(),
                "expected a command line or a list of arguments",
            );
            None
        }
    };
    let options = read_script_options(s, base, issues);
    Some(options.with_argv(argv?))
}

/// A script's keys besides its command, shared by the `script` action and the sample's
/// `incident_notification` section.
#[derive(Debug, Clone)]
pub struct ScriptOptions {
    /// Per-entity arguments (templates); `None` means the sample's one message argument.
    pub args: Option<Vec<String>>,
    pub workdir: Option<PathBuf>,
    pub timeout_secs: u64,
    pub kill_grace_secs: u64,
    pub max_output_bytes: usize,
    pub env: Vec<(String, String)>,
}

impl Default for ScriptOptions {
    fn default() -> Self {
        ScriptOptions {
            args: None,
            workdir: None,
            timeout_secs: 30,
            kill_grace_secs: 5,
            max_output_bytes: 16 * 1024,
            env: Vec::new(),
        }
    }
}

impl ScriptOptions {
    fn with_argv(self, argv: Vec<String>) -> ScriptConfig {
        ScriptConfig {
            argv,
            options: self,
        }
    }
}

pub(super) fn read_script_options(
    s: &mut Section,
    base: &Path,
    issues: &mut Issues,
) -> ScriptOptions {
    let defaults = ScriptOptions::default();
    let args = s.string_list("args", issues);
    for (i, t) in args.iter().flatten().enumerate() {
        check_template(&format!("{}[{i}]", s.path_of("args")), t, issues);
    }
    let workdir = s.string("workdir", issues).map(|w| base.join(w));
    if let Some(w) = &workdir {
        if !w.is_dir() {
            issues.push(
                s.path_of("workdir"),
                format!("not a folder: {}", w.display()),
            );
        }
    }
    let timeout_secs = s
        .integer("timeout_secs", 1, 86_400, issues)
        .unwrap_or(defaults.timeout_secs);
    let kill_grace_secs = s
        .integer("kill_grace_secs", 0, 600, issues)
        .unwrap_or(defaults.kill_grace_secs);
    let max_output_bytes = s
        .integer("max_output_bytes", 0, 16 * 1024 * 1024, issues)
        .map_or(defaults.max_output_bytes, |n| n as usize);
    let mut env = Vec::new();
    for (k, v) in s.entries("env", issues) {
        match v {
            Value::String(v) if !k.is_empty() && !k.contains('=') => env.push((k, v.clone())),
            _ => issues.push(
                format!("{}.{k}", s.path_of("env")),
                "expected a string value under a variable name",
            ),
        }
    }
    ScriptOptions {
        args,
        workdir,
        timeout_secs,
        kill_grace_secs,
        max_output_bytes,
        env,
    }
}

/// A secret given in the file or, by `<key>_env`, named as an environment variable.
pub(crate) fn secret(
    s: &mut Section,
    key: &'static str,
    env_key: &'static str,
    env: &Env,
    issues: &mut Issues,
) -> Secret {
    let direct = s.string(key, issues);
    match s.string(env_key, issues) {
        Some(var) => match env.get(&var) {
            Some(v) if !v.is_empty() => Secret::new(v),
            _ => {
                issues.push(
                    s.path_of(env_key),
                    format!("environment variable {var} is not set"),
                );
                Secret::default()
            }
        },
        None => Secret::new(direct.unwrap_or_default()),
    }
}

fn read_sms(s: &mut Section, env: &Env, issues: &mut Issues) -> SmsConfig {
    let account_sid = s.string("account_sid", issues).unwrap_or_default();
    let auth_token = secret(s, "auth_token", "auth_token_env", env, issues);
    let from = s.string("from", issues).filter(|f| !f.is_empty());
    let messaging_service_sid = s
        .string("messaging_service_sid", issues)
        .filter(|f| !f.is_empty());
    let to = s.string_list("to", issues).unwrap_or_default();
    let options = read_sms_options(s, issues);
    for (key, missing) in [
        ("account_sid", account_sid.is_empty()),
        ("auth_token", auth_token.is_empty()),
        ("to", to.is_empty()),
    ] {
        if missing {
            issues.push(s.path_of(key), "missing: required for an sms action");
        }
    }
    if from.is_none() == messaging_service_sid.is_none() {
        issues.push(
            s.path_of("from"),
            "give exactly one of from (a Twilio number) and messaging_service_sid",
        );
    }
    SmsConfig {
        account_sid,
        auth_token,
        from,
        messaging_service_sid,
        to,
        options,
    }
}

/// An SMS's keys besides its credentials and numbers, shared by the `sms` action and the sample's
/// `sms_notification` section.
#[derive(Debug, Clone)]
pub struct SmsOptions {
    pub api_url: String,
    pub template: Option<String>,
    pub rate_limit_per_minute: u32,
    pub timeout_secs: u64,
}

impl Default for SmsOptions {
    fn default() -> Self {
        SmsOptions {
            api_url: TWILIO_API_URL.to_string(),
            template: None,
            rate_limit_per_minute: 10,
            timeout_secs: 15,
        }
    }
}

pub(super) fn read_sms_options(s: &mut Section, issues: &mut Issues) -> SmsOptions {
    let defaults = SmsOptions::default();
    let api_url = s.string("api_url", issues).unwrap_or(defaults.api_url);
    check_url(&s.path_of("api_url"), &api_url, issues);
    let template = s.string("template", issues);
    if let Some(t) = &template {
        check_template(&s.path_of("template"), t, issues);
    }
    let rate_limit_per_minute = s
        .integer("rate_limit_per_minute", 1, 10_000, issues)
        .map_or(defaults.rate_limit_per_minute, |n| n as u32);
    let timeout_secs = s
        .integer("timeout_secs", 1, 600, issues)
        .unwrap_or(defaults.timeout_secs);
    SmsOptions {
        api_url,
        template,
        rate_limit_per_minute,
        timeout_secs,
    }
}

fn read_webhook(s: &mut Section, env: &Env, issues: &mut Issues) -> WebhookActionConfig {
    let url = s.string("url", issues).unwrap_or_default();
    check_url(&s.path_of("url"), &url, issues);
    let secret = secret(s, "secret", "secret_env", env, issues);
    if let Err(e) = crate::actions::webhook::Signer::new(&secret) {
        issues.push(s.path_of("secret"), e.to_string());
    }
    let template = s.string("template", issues);
    if let Some(t) = &template {
        check_template(&s.path_of("template"), t, issues);
    }
    let timeout_secs = s.integer("timeout_secs", 1, 600, issues).unwrap_or(15);
    WebhookActionConfig {
        url,
        secret,
        template,
        timeout_secs,
    }
}

fn check_url(path: &str, url: &str, issues: &mut Issues) {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => issues.push(
            path,
            format!("expected an http:// or https:// URL, found {url:?}"),
        ),
    }
}

fn check_template(path: &str, source: &str, issues: &mut Issues) {
    if let Err(e) = crate::template::Template::new(source) {
        issues.push(path, format!("bad template: {e}"));
    }
}

fn read_route(
    mut s: Section,
    actions: &[ActionConfig],
    index: usize,
    issues: &mut Issues,
) -> RouteConfig {
    let mut list = |s: &mut Section, key| s.string_list(key, issues).unwrap_or_default();
    let sources = list(&mut s, "sources");
    let route = RouteConfig {
        sources: sources.iter().filter_map(|s| s.parse().ok()).collect(),
        states: list(&mut s, "states"),
        severities: list(&mut s, "severities"),
        tags: list(&mut s, "tags"),
        actions: list(&mut s, "actions"),
    };
    if route.actions.is_empty() {
        issues.push(
            format!("routes[{index}].actions"),
            "missing: the names of the actions this route runs",
        );
    }
    for name in &route.actions {
        if !actions.iter().any(|a| &a.name == name) {
            issues.push(
                format!("routes[{index}].actions"),
                format!("no action is named {name:?}"),
            );
        }
    }
    for source in &sources {
        if let Err(e) = source.parse::<crate::domain::Source>() {
            issues.push(format!("routes[{index}].sources"), e.to_string());
        }
    }
    s.finish(issues);
    route
}

fn read_dispatch(mut s: Section, issues: &mut Issues) -> DispatchConfig {
    let d = DispatchConfig::default();
    let c = DispatchConfig {
        first_retry_secs: s
            .integer("first_retry_secs", 1, 3600, issues)
            .unwrap_or(d.first_retry_secs),
        max_retry_secs: s
            .integer("max_retry_secs", 1, 86_400, issues)
            .unwrap_or(d.max_retry_secs),
        max_attempts: s
            .integer("max_attempts", 1, 1000, issues)
            .map(|v| v as u32)
            .unwrap_or(d.max_attempts),
        shutdown_grace_secs: s
            .integer("shutdown_grace_secs", 0, 3600, issues)
            .unwrap_or(d.shutdown_grace_secs),
    };
    if c.max_retry_secs < c.first_retry_secs {
        issues.push(
            s.path_of("max_retry_secs"),
            "must not be less than first_retry_secs",
        );
    }
    s.finish(issues);
    c
}
