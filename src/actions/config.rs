//! The `actions`, `routes` and `dispatch` sections, and the sample's two integrations mapped onto them.
//!
//! Every action is named and `type`-tagged. Command lines are split into argv here, once, and every
//! template is compiled here, so a bad one is a config error at start and never a surprise at 3 a.m.

use std::path::Path;

use super::comment::CommentConfig;
use super::script::split_command;
use super::sms::SmsConfig;
use super::{ActionKind, ReadContext};
use crate::keys::{type_name, Env, Issues, Section};
use crate::secret::Secret;
use serde_json::Value;

/// Name of the action the sample's `incident_notification` becomes, and of its comment-back.
pub const LEGACY_SCRIPT: &str = "incident_notification";
pub const LEGACY_SMS: &str = "sms_notification";

#[derive(Debug, Clone)]
pub struct ActionConfig {
    pub name: String,
    pub kind: ActionKind,
    /// How many runs of this action may be in flight at once.
    pub max_concurrent: usize,
    /// How many runs may start a minute; the dispatcher holds the others back until there is
    /// room. `None` when the type applies its own limit or there is none.
    pub rate_limit_per_minute: Option<u32>,
    /// Set for the sample's integrations, which only ever acted on Dynatrace problems.
    pub dynatrace_only: bool,
    /// The actions hub runs for its own problem `action-failed-<name>` when a run of this one
    /// fails for good (with `dispatch.on_failure` when empty).
    pub on_failure: Vec<String>,
}

/// Which notifications run which actions. Every criterion given must match; within one, any value.
#[derive(Debug, Clone, Default)]
pub struct RouteConfig {
    pub sources: Vec<crate::domain::Source>,
    pub states: Vec<String>,
    pub severities: Vec<String>,
    pub tags: Vec<String>,
    pub actions: Vec<String>,
    /// Flap wait: this route's runs for an open problem wait this long, and do not happen at all
    /// when the problem resolves meanwhile.
    pub wait: Option<std::time::Duration>,
    /// `"P1"` (most urgent) to `"P5"`: the order this route's runs are taken in within an
    /// action. Unset, the problem's severity decides (see [`crate::actions::route::priority`]).
    pub priority: Option<u8>,
    /// The escalation policy an open problem this route matches climbs (see `crate::escalate`).
    pub escalate: Option<String>,
    /// Folds the problems it matches into groups, and runs its actions once per group send
    /// (see `crate::group`).
    pub group: Option<crate::group::GroupSpec>,
}

#[derive(Debug, Clone)]
pub struct DispatchConfig {
    pub first_retry_secs: u64,
    pub max_retry_secs: u64,
    /// Tries per run, the first included; a transient failure after the last one is final.
    pub max_attempts: u32,
    /// On SIGTERM, how long running actions may take to finish before they are left for the next start.
    pub shutdown_grace_secs: u64,
    /// How long a run claimed by one instance is held for it, renewed while it runs (see
    /// `StoreConfig::lease`).
    pub lease_secs: u64,
    /// The failure alarm's actions for every action that names none of its own.
    pub on_failure: Vec<String>,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            first_retry_secs: 1,
            max_retry_secs: 300,
            max_attempts: 10,
            shutdown_grace_secs: 10,
            lease_secs: 60,
            on_failure: Vec::new(),
        }
    }
}

/// What the three sections produce together.
#[derive(Debug, Clone, Default)]
pub struct Actions {
    pub actions: Vec<ActionConfig>,
    /// Actions given whose keys were refused: reported once, where they are, and not again by
    /// every route, fallback or heartbeat that names them as "no action is named".
    pub refused: Vec<String>,
    /// `None`: every action runs for every (non-test) notification.
    pub routes: Option<Vec<RouteConfig>>,
    pub dispatch: DispatchConfig,
}

impl Actions {
    pub fn get(&self, name: &str) -> Option<&ActionConfig> {
        self.actions.iter().find(|a| a.name == name)
    }

    /// Whether the config gives an action of this name, valid or not (see [`Actions::refused`]).
    pub fn is_given(&self, name: &str) -> bool {
        self.get(name).is_some() || self.refused.iter().any(|r| r == name)
    }

    /// Whether `name` is some action's fallback: a fallback never raises an alarm about itself.
    pub fn is_fallback(&self, name: &str) -> bool {
        self.dispatch.on_failure.iter().any(|n| n == name)
            || self
                .actions
                .iter()
                .any(|a| a.on_failure.iter().any(|n| n == name))
    }

    /// The actions to run when `name` fails for good; empty when it raises no alarm.
    pub fn alarm_actions(&self, name: &str) -> &[String] {
        if self.is_fallback(name) {
            return &[];
        }
        match self.get(name) {
            Some(a) if !a.on_failure.is_empty() => &a.on_failure,
            Some(_) => &self.dispatch.on_failure,
            None => &[],
        }
    }
}

pub(crate) struct Legacy<'a> {
    pub incident: &'a IncidentNotification,
    pub sms: &'a SmsNotification,
    pub tenant_set: bool,
    pub webhook_user: &'a str,
}

pub(crate) fn read(
    root: &mut Section,
    legacy: Legacy,
    env: &Env,
    base: &Path,
    issues: &mut Issues,
) -> Actions {
    let mut actions = legacy_actions(&legacy, base, issues);
    let mut refused = Vec::new();
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
        match read_action(name.clone(), section, &legacy, env, base, issues) {
            Some(action) => actions.push(action),
            None => refused.push(name),
        }
    }

    // An action waits only for actions that exist and wait for nothing themselves, so no run can
    // wait for ever.
    for a in &actions {
        for other in a.kind.depends_on() {
            match actions.iter().find(|x| &x.name == other) {
                None if refused.contains(other) => {}
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

    let given: Vec<&str> = actions
        .iter()
        .map(|a| a.name.as_str())
        .chain(refused.iter().map(String::as_str))
        .collect();
    let routes = root.items("routes", issues).map(|items| {
        items
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                read_route(
                    Section::at(format!("routes[{i}]"), v, issues),
                    &given,
                    i,
                    issues,
                )
            })
            .collect()
    });
    let dispatch = read_dispatch(root.section("dispatch", issues), issues);
    check_fallbacks(&actions, &refused, &dispatch, issues);
    Actions {
        actions,
        refused,
        routes,
        dispatch,
    }
}

/// Every fallback exists, and no chain of fallbacks comes back to where it started. (At run time
/// a fallback never alarms about itself either: this keeps the config saying what happens.)
fn check_fallbacks(
    actions: &[ActionConfig],
    refused: &[String],
    dispatch: &DispatchConfig,
    issues: &mut Issues,
) {
    let exists = |n: &String| actions.iter().any(|a| &a.name == n) || refused.contains(n);
    for n in dispatch.on_failure.iter().filter(|n| !exists(n)) {
        issues.push("dispatch.on_failure", format!("no action is named {n:?}"));
    }
    for a in actions {
        let path = format!("actions.{}.on_failure", a.name);
        for n in a.on_failure.iter().filter(|n| !exists(n)) {
            issues.push(path.clone(), format!("no action is named {n:?}"));
        }
        // Follow the fallbacks' own fallbacks; reaching `a` again is a loop.
        let mut seen: Vec<&str> = Vec::new();
        let mut next: Vec<&str> = a.on_failure.iter().map(String::as_str).collect();
        while let Some(n) = next.pop() {
            if n == a.name {
                issues.push(
                    path.clone(),
                    format!(
                        "{} would raise an alarm about its own alarm: a cycle of fallbacks",
                        a.name
                    ),
                );
                break;
            }
            if seen.contains(&n) {
                continue;
            }
            seen.push(n);
            if let Some(f) = actions.iter().find(|x| x.name == n) {
                next.extend(f.on_failure.iter().map(String::as_str));
            }
        }
    }
}

pub(crate) fn valid_name(name: &str) -> bool {
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
        rate_limit_per_minute: None,
        dynatrace_only: true,
        on_failure: Vec::new(),
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
                rate_limit_per_minute: None,
                dynatrace_only: true,
                on_failure: Vec::new(),
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
            rate_limit_per_minute: None,
            dynatrace_only: true,
            on_failure: Vec::new(),
        });
        if legacy.tenant_set {
            out.push(comment(LEGACY_SMS));
        }
    }
    out
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
    let ctx = ReadContext {
        env,
        base,
        webhook_user: legacy.webhook_user,
        tenant_set: legacy.tenant_set,
    };
    // The types hub makes itself are not offered.
    let made_by_hub = [
        <crate::actions::dynatrace_sync::DynatraceSyncConfig as crate::actions::ActionType>::TYPE,
        <crate::actions::alertmanager_silence::AlertmanagerSilenceConfig as crate::actions::ActionType>::TYPE,
    ];
    let known = ActionKind::TYPES
        .iter()
        .filter(|t| !made_by_hub.contains(t))
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    let kind = match kind_name.as_deref() {
        Some(type_name) => match ActionKind::read(type_name, &mut s, &ctx, issues) {
            Some(kind) => kind,
            None => {
                issues.push(
                    type_path,
                    format!("unknown action type {type_name:?} (known: {known})"),
                );
                None
            }
        },
        None => {
            issues.push(type_path, format!("missing: one of {known}"));
            None
        }
    };
    let (default_rate, own_rate) = kind_name
        .as_deref()
        .map_or((None, false), ActionKind::rate_limit_of);
    let rate_limit_per_minute = if own_rate {
        None
    } else {
        s.integer("rate_limit_per_minute", 1, 100_000, issues)
            .map(|n| n as u32)
            .or(default_rate)
    };
    let on_failure = s.string_list("on_failure", issues).unwrap_or_default();
    s.finish(issues);
    Some(ActionConfig {
        name,
        kind: kind?,
        max_concurrent,
        rate_limit_per_minute,
        dynatrace_only: false,
        on_failure,
    })
}

fn read_route(mut s: Section, given: &[&str], index: usize, issues: &mut Issues) -> RouteConfig {
    let mut list = |s: &mut Section, key| s.string_list(key, issues).unwrap_or_default();
    let sources = list(&mut s, "sources");
    let route = RouteConfig {
        sources: sources.iter().filter_map(|s| s.parse().ok()).collect(),
        states: list(&mut s, "states"),
        severities: list(&mut s, "severities"),
        tags: list(&mut s, "tags"),
        actions: list(&mut s, "actions"),
        wait: s.duration(
            "wait",
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(86_400),
            issues,
        ),
        priority: read_priority(&mut s, issues),
        escalate: s.string("escalate", issues),
        group: match s.value("group") {
            Some(_) => crate::group::config::read(s.section("group", issues), issues),
            None => None,
        },
    };
    if route.group.is_some() && route.wait.is_some() {
        issues.push(
            format!("routes[{index}].wait"),
            "a grouped route waits with group.wait: its first send goes out then, and a group \
             whose problems all resolved before sends nothing",
        );
    }
    if route.group.is_some() && route.actions.is_empty() {
        issues.push(
            format!("routes[{index}].group"),
            "a grouped route needs actions to run for its groups",
        );
    }
    if route.actions.is_empty() && route.escalate.is_none() {
        issues.push(
            format!("routes[{index}].actions"),
            "missing: the names of the actions this route runs (or an escalate)",
        );
    }
    for name in &route.actions {
        if !given.contains(&name.as_str()) {
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

/// A route's `priority`: Opsgenie's P1 (most urgent) to P5, which teams moving from it know.
fn read_priority(s: &mut Section, issues: &mut Issues) -> Option<u8> {
    let value = s.string("priority", issues)?;
    let level = value
        .strip_prefix(['P', 'p'])
        .and_then(|n| n.parse::<u8>().ok())
        .filter(|n| (1..=5).contains(n));
    if level.is_none() {
        issues.push(
            s.path_of("priority"),
            format!("{value:?} is not a priority: use P1 (most urgent), P2, P3, P4 or P5"),
        );
    }
    level
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
        lease_secs: s
            .integer("lease_secs", 5, 3600, issues)
            .unwrap_or(d.lease_secs),
        on_failure: s.string_list("on_failure", issues).unwrap_or_default(),
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

/// The sample's `incident_notification` section.
pub(crate) fn read_incident(
    mut s: Section,
    base: &Path,
    issues: &mut Issues,
) -> IncidentNotification {
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

pub(crate) fn read_sms(mut s: Section, issues: &mut Issues) -> SmsNotification {
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
