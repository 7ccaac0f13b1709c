//! `hub explain <payload-file>`: the whole pipeline as a dry run.
//!
//! Parses the payload as its source would, routes it (naming each route that matched and, for
//! each other one, the criterion that failed), applies what the dispatcher would (the silences in
//! the store, the maintenance windows in progress, flap waits, rate limits, the runs a comment
//! waits for), and shows every run it would start with its resolved argv, environment, URL and
//! body, and whether it would run now, wait, or be held. It runs nothing, sends nothing and writes
//! nothing; Dynatrace is not asked for details, so entities come from the payload itself.

use serde_json::{json, Value};

use crate::actions::route::{mismatch, route};
use crate::actions::{idem_key, run_id, Job, Problem, Registry};
use crate::config::Config;
use crate::domain::{Notification, Source};
use crate::noise::Quiet;
use crate::sources::Headers;
use crate::store::{RunStart, Store};

/// How long a dry run waits for the store before it goes on without the silences.
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a dry run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("{source} would refuse this payload: {error}")]
    Refused {
        source: Source,
        #[source]
        error: crate::sources::ParseError,
    },
    #[error(transparent)]
    Dispatcher(#[from] crate::dispatch::StartError),
}

pub async fn explain(config: &Config, body: &[u8], source: Source) -> Result<Value, ExplainError> {
    let notifications = source
        .read(&Headers::default(), body)
        .map_err(|error| ExplainError::Refused { source, error })?;
    let client = crate::dynatrace::Client::from_config(&config.dynatrace)
        .map_err(crate::dispatch::StartError::from)?;
    let registry = Registry::build(&config.actions, client.as_ref())
        .map_err(crate::dispatch::StartError::from)?;
    let now = crate::clock::now_ms();
    let (store, mut silences) = open_store(config).await;
    let quiet = match &store {
        Some(store) => match Quiet::now(store, &config.maintenance, now).await {
            Ok(q) => {
                silences = format!("read from the store: {} in force", q.active_silences());
                q
            }
            Err(e) => {
                silences = format!(
                    "not known: the store could not be read ({e}); only maintenance windows were applied"
                );
                Quiet::windows_only(&config.maintenance, now)
            }
        },
        None => Quiet::windows_only(&config.maintenance, now),
    };
    // The open groups a notification could join; without a store, every group would be new.
    let open_groups = match &store {
        Some(store) => store.groups(true, 10_000).await.unwrap_or_default(),
        None => Vec::new(),
    };
    let explained: Vec<Value> = notifications
        .iter()
        .map(|n| {
            let mut v = one(config, &registry, &quiet, n, now);
            v["groups"] = groups(config, &registry, n, &open_groups);
            v
        })
        .collect();
    Ok(json!({
        "notifications": explained,
        "routes": if config.actions.routes.is_some() { "as configured" } else { "none configured: every action for every notification" },
        "silences": silences,
        "maintenance_in_progress": quiet.windows_in_progress(),
        "note": "a dry run: nothing was run, sent or stored, and Dynatrace was not asked for details",
    }))
}

/// The group of each grouped route the notification matches: the open one it would join, or a
/// new one; a resolve leaves its groups instead.
fn groups(
    config: &Config,
    registry: &Registry,
    n: &Notification,
    open: &[crate::store::GroupRow],
) -> Value {
    let problem = Problem::arriving(n, config.dynatrace.tenant.as_deref());
    let decision = route(&config.actions, registry, &problem, n.is_test);
    let closed = crate::store::is_closed(&problem.state, false);
    let shown: Vec<Value> = decision
        .groups
        .iter()
        .map(|(i, key, spec)| {
            let name = crate::group::route_name(*i);
            let found = open.iter().find(|g| g.route == name && &g.key == key);
            let would = match (closed, found) {
                (true, _) => "leaves its groups: when every member has resolved, the group's RESOLVED send goes out".to_string(),
                (false, Some(g)) => format!(
                    "joins open group {} (first send {}); it goes out in the next update, at most one per {}",
                    g.id,
                    if g.sends > 0 { "made" } else { "still waiting" },
                    crate::keys::short_duration(spec.interval)
                ),
                (false, None) => format!(
                    "opens a new group: its first send goes out after {}",
                    crate::keys::short_duration(spec.wait)
                ),
            };
            json!({
                "route": i + 1,
                "group_route": name,
                "key": key,
                "actions": config.actions.routes.as_ref().and_then(|r| r.get(*i)).map(|r| r.actions.clone()),
                "open_group": found.map(|g| g.id),
                "would": would,
            })
        })
        .collect();
    json!(shown)
}

/// The configured store, opened beside a running hub to read its silences, and what to say about
/// them. A SQLite file that is not there yet is not created (a dry run writes nothing): no silence
/// can be in force then. A store that cannot be opened is said so, and the dry run goes on.
async fn open_store(config: &Config) -> (Option<Store>, String) {
    if !config.store.is_postgres() && !config.store.sqlite_file().is_some_and(|f| f.exists()) {
        return (
            None,
            format!(
                "none: there is no store at {} yet, so no silence is in force",
                config.store.url
            ),
        );
    }
    match tokio::time::timeout(
        STORE_WAIT,
        Store::open_to_inspect(&config.store, &config.dir_received),
    )
    .await
    {
        Ok(Ok(store)) => (Some(store), String::new()),
        Ok(Err(e)) => (
            None,
            format!(
                "not known: cannot open the store ({}): {}; only maintenance windows were applied",
                crate::app::store_place(config),
                crate::logging::error_text(&anyhow::Error::from(e))
            ),
        ),
        Err(_) => (
            None,
            format!(
                "not known: the store ({}) did not answer within {} s; only maintenance windows were applied",
                crate::app::store_place(config),
                STORE_WAIT.as_secs()
            ),
        ),
    }
}

/// One line per run, for a person: what would happen to it and why.
pub fn summary(plan: &Value) -> String {
    let mut out = String::new();
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    if let Some(s) = plan["silences"].as_str() {
        out.push_str(&format!("silences: {s}\n"));
    }
    for n in plan["notifications"].as_array().into_iter().flatten() {
        let head = &n["notification"];
        out.push_str(&format!(
            "{} {} {}\n",
            text(&head["source"]),
            text(&head["problem_id"]),
            text(&head["state"])
        ));
        for r in n["route_matches"].as_array().into_iter().flatten() {
            let which = format!("route {}", r["route"]);
            match r["why_not"].as_str() {
                None => out.push_str(&format!("  {which} matched\n")),
                Some(why) => out.push_str(&format!("  {which} did not match: {why}\n")),
            }
        }
        for g in n["groups"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  group {} of route {}: {}\n",
                text(&g["key"]),
                g["route"],
                text(&g["would"])
            ));
        }
        for r in n["runs"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  {} → {}: {}\n",
                text(&r["action"]),
                text(&r["target"]),
                text(&r["verdict"])
            ));
        }
        for s in n["skipped"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  {}: not run: {}\n",
                text(&s["action"]),
                text(&s["why"])
            ));
        }
    }
    out
}

fn one(config: &Config, registry: &Registry, quiet: &Quiet, n: &Notification, now: i64) -> Value {
    let problem = Problem::arriving(n, config.dynatrace.tenant.as_deref());
    let decision = route(&config.actions, registry, &problem, n.is_test);
    let route_matches: Vec<Value> = config
        .actions
        .routes
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| {
            let why_not = mismatch(r, &problem);
            json!({
                "route": i + 1,
                "actions": r.actions,
                "matched": why_not.is_none(),
                "why_not": why_not,
                "wait": r.wait.map(crate::keys::short_duration),
                "priority": r.priority.map(|p| format!("P{p}")),
            })
        })
        .collect();
    // What the dispatcher would apply to every run of this notification, arriving now.
    let covered = quiet.covering(&problem);
    let closed = crate::store::is_closed(&problem.state, false);
    let chosen_names: Vec<&str> = decision.chosen.iter().map(|c| c.action.as_str()).collect();
    let mut runs = Vec::new();
    for chosen in &decision.chosen {
        let Some((action_config, action)) = registry.get(&chosen.action) else {
            continue;
        };
        let start = crate::noise::start_of(covered.as_ref(), chosen.wait, closed, now, now);
        // A comment waits for the runs it reports; routing chose it only because one of those
        // actions was chosen too.
        let waits_for: Vec<&str> = action
            .depends_on()
            .iter()
            .map(String::as_str)
            .filter(|d| chosen_names.contains(d))
            .collect();
        let rate_limit = action_config
            .rate_limit_per_minute
            .map(|n| format!("at most {n} a minute (rate_limit_per_minute)"));
        let (start_kind, verdict, held_by, until) =
            verdict(&start, &waits_for, rate_limit.as_deref());
        for target in &chosen.targets {
            let key = idem_key(&problem, &chosen.action, target, None);
            let job = Job {
                run_id: run_id(&key),
                attempt: 1,
                problem: &problem,
                target: target.clone(),
                reports: Vec::new(),
                thread: None,
                escalated: None,
                group: None,
                trace: None,
            };
            // The key ends with the target; a phone number there is shown masked, as everywhere.
            let masked = crate::actions::mask_number(&target.id);
            let shown_key = match key.strip_suffix(target.id.as_str()) {
                Some(head) if !target.id.is_empty() && target.label == masked => {
                    format!("{head}{masked}")
                }
                _ => key.clone(),
            };
            runs.push(json!({
                "action": chosen.action,
                "type": action_config.kind.type_name(),
                "target": target.label,
                "idempotency_key": shown_key,
                "run_id": job.run_id,
                "priority": format!("P{}", chosen.priority),
                "start": start_kind,
                "verdict": verdict,
                "held_by": held_by,
                "until": until,
                "waits_for": waits_for,
                "rate_limit": rate_limit,
                "would": action.explain(&job),
            }));
        }
    }
    let skipped: Vec<Value> = decision
        .skipped
        .iter()
        .map(|(a, why)| json!({"action": a, "why": why}))
        .collect();
    let mut shown = serde_json::to_value(&problem).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut shown {
        map.remove("notification");
    }
    json!({
        "notification": {
            "source": n.source,
            "problem_id": n.problem_key,
            "state": n.state,
            "pid": n.pid,
            "test": n.is_test,
        },
        "problem": shown,
        "route_matches": route_matches,
        "runs": runs,
        "skipped": skipped,
    })
}

/// How a run would start, in a word (`now`, `wait`, `held`), in words for a person, what holds it,
/// and until when it waits.
fn verdict(
    start: &RunStart,
    waits_for: &[&str],
    rate_limit: Option<&str>,
) -> (&'static str, String, Option<String>, Option<String>) {
    let (kind, mut text, held_by, until) = match start {
        RunStart::Silenced { held_by, note } => (
            "held",
            format!("would be held by {held_by} ({note})"),
            Some(held_by.clone()),
            None,
        ),
        RunStart::Held { until_ms, note, .. } => {
            let until = crate::clock::rfc3339(*until_ms);
            (
                "wait",
                format!("would wait until {until} ({note})"),
                Some("wait".to_string()),
                Some(until),
            )
        }
        RunStart::Suppressed { note } => {
            ("suppressed", format!("would not run ({note})"), None, None)
        }
        RunStart::Now => ("now", "would run now".to_string(), None, None),
    };
    if kind != "held" {
        if !waits_for.is_empty() {
            let after = format!(
                "the runs it reports ({}) have finished",
                waits_for.join(", ")
            );
            // Not "now": the dispatcher starts it only once those are final.
            text = match kind {
                "now" => format!("would run once {after}"),
                _ => format!("{text}, then once {after}"),
            };
        }
        if let Some(limit) = rate_limit {
            // A dry run cannot know how full the action's minute is.
            text.push_str(&format!("; {limit}, later when the minute is full"));
        }
    }
    (kind, text, held_by, until)
}
