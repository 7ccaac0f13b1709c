//! `hub hash-password`, `hub token`, `hub oncall` and `hub audit`: people on the command line.

use std::time::Duration;

use clap::Subcommand;
use serde_json::Value;

use crate::config::Config;
use crate::people::oncall;
use crate::people::{Actor, Role, Via};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make an API token for a person and print its id and the token, once; only its hash is kept.
    Create {
        /// The person (an id of "people" in the config).
        #[arg(long)]
        person: String,
        /// Less than the person's role (viewer, responder); never more. Default: theirs.
        #[arg(long)]
        role: Option<String>,
        /// How long it works (90d, 12h, 30s). Default: until revoked.
        #[arg(long, value_parser = crate::keys::parse_duration)]
        expires: Option<Duration>,
    },
    /// Every token, with its person, role and state; never the token itself.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Stop a token from working, now.
    Revoke { id: String },
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct OncallArgs {
    #[command(subcommand)]
    pub command: Option<OncallCommand>,
    /// One schedule (default: every schedule).
    pub schedule: Option<String>,
    /// Who was or will be on call then: RFC 3339 with an offset, or YYYY-MM-DDTHH:MM in the
    /// schedule's zone.
    #[arg(long)]
    pub at: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum OncallCommand {
    /// Put a person on call instead of the rotation, from one time until another.
    Override {
        schedule: String,
        #[arg(long)]
        person: String,
        /// RFC 3339 with an offset, YYYY-MM-DDTHH:MM in the schedule's zone, or now.
        #[arg(long)]
        from: String,
        #[arg(long)]
        until: String,
    },
    /// The overrides in force or to come.
    Overrides {
        schedule: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Remove an override now.
    Remove { id: String },
}

/// Who the command line acts as: `--as PERSON` with that person's role, else the system user as
/// an admin (whoever can run hub here can read its config and its store), recorded as
/// unverified.
pub fn actor(config: &Config, as_person: Option<&str>) -> anyhow::Result<Actor> {
    let user = ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        // SAFETY: getuid has no preconditions and cannot fail.
        .unwrap_or_else(|| format!("uid {}", unsafe { libc::getuid() }));
    match as_person {
        Some(id) => {
            let Some(p) = config.people.people.get(id) else {
                anyhow::bail!("--as {id:?}: no such person in the config's \"people\"");
            };
            Ok(Actor {
                name: p.id.clone(),
                role: p.role,
                token: None,
                verified: true,
                via: Via::Cli,
                from: format!("local (system user {user})"),
            })
        }
        None => Ok(Actor {
            name: user,
            role: Role::Admin,
            token: None,
            verified: false,
            via: Via::Cli,
            from: "local".into(),
        }),
    }
}

/// The command line's actor, if their role allows what the command does (`what`, as the error
/// says it); else an error naming the role needed.
pub fn require(
    config: &Config,
    as_person: Option<&str>,
    needed: Role,
    what: &str,
) -> anyhow::Result<Actor> {
    let actor = actor(config, as_person)?;
    if !actor.may(needed) {
        anyhow::bail!(
            "{what} needs the {needed} role; {} is {}",
            actor.label(),
            actor.role
        );
    }
    Ok(actor)
}

/// `hub hash-password`: a password from standard input, its argon2id hash on standard output.
pub fn hash_password() -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
        .map_err(|e| anyhow::anyhow!("cannot read the password from standard input: {e}"))?;
    let password = crate::people::password::from_input(text).map_err(anyhow::Error::msg)?;
    crate::people::password::hash(&password).map_err(anyhow::Error::msg)
}

pub async fn token(
    config: Config,
    as_person: Option<String>,
    command: TokenCommand,
) -> anyhow::Result<String> {
    let actor = actor(&config, as_person.as_deref())?;
    let store = crate::app::open_store(&config).await?;
    match command {
        TokenCommand::Create {
            person,
            role,
            expires,
        } => {
            let (row, token) = oncall::create_token(
                &store,
                &config.people,
                &actor,
                &person,
                role.as_deref(),
                expires,
            )
            .await?;
            eprintln!(
                "token {} for {} as {}{}; it is shown this once, keep it now",
                row.id,
                row.person,
                row.role,
                row.expires_at_ms
                    .map(|e| format!(", until {}", crate::clock::rfc3339(e)))
                    .unwrap_or_default()
            );
            Ok(format!("{}\t{token}", row.id))
        }
        TokenCommand::List { json } => {
            let now = crate::clock::now_ms();
            let rows: Vec<Value> = store
                .tokens()
                .await?
                .iter()
                .map(|t| oncall::shown_token(t, now))
                .collect();
            if json {
                return Ok(serde_json::to_string_pretty(&rows)?);
            }
            let mut out = format!(
                "{:<17} {:<12} {:<10} {:<8} {:<21} EXPIRES\n",
                "ID", "PERSON", "ROLE", "STATE", "CREATED"
            );
            for t in &rows {
                out.push_str(&format!(
                    "{:<17} {:<12} {:<10} {:<8} {:<21} {}\n",
                    text(t, "id"),
                    text(t, "person"),
                    text(t, "role"),
                    text(t, "state"),
                    text(t, "created"),
                    text(t, "expires"),
                ));
            }
            if rows.is_empty() {
                out.push_str("(no token yet: hub token create --person ID)\n");
            }
            Ok(out.trim_end().to_string())
        }
        TokenCommand::Revoke { id } => {
            oncall::revoke_token(&store, &actor, &id).await?;
            Ok(format!("revoked {id}"))
        }
    }
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or("-").to_string()
}

pub async fn on_call(
    config: Config,
    as_person: Option<String>,
    args: OncallArgs,
) -> anyhow::Result<String> {
    let store = crate::app::open_store(&config).await?;
    let people = &config.people;
    match args.command {
        None => {
            if people.schedules.is_empty() {
                anyhow::bail!("the config has no schedules (see \"schedules\" in the README)");
            }
            let list = oncall::on_call(
                &store,
                people,
                args.schedule.as_deref(),
                args.at.as_deref(),
                crate::clock::now_ms(),
            )
            .await?;
            if args.json {
                return Ok(serde_json::to_string_pretty(&list)?);
            }
            let mut out = String::new();
            for s in &list {
                let who = match (s["person"].as_str(), s["name"].as_str()) {
                    (Some(id), Some(name)) if id != name => format!("{name} ({id})"),
                    (Some(id), _) => id.to_string(),
                    (None, _) => "nobody (the rotation has not started)".into(),
                };
                let by = if s["override"].is_string() {
                    " by override"
                } else {
                    ""
                };
                out.push_str(&format!(
                    "{}: {who}{by}, until {}\n",
                    text(s, "schedule"),
                    text(s, "until")
                ));
            }
            Ok(out.trim_end().to_string())
        }
        Some(OncallCommand::Override {
            schedule,
            person,
            from,
            until,
        }) => {
            let actor = actor(&config, as_person.as_deref())?;
            let row =
                oncall::add_override(&store, people, &actor, &schedule, &person, &from, &until)
                    .await?;
            let shown = oncall::shown_override(people, &row);
            Ok(format!(
                "{}: {} on call in {} from {} until {}",
                row.id,
                text(&shown, "name"),
                row.schedule,
                text(&shown, "from"),
                text(&shown, "until")
            ))
        }
        Some(OncallCommand::Overrides { schedule, json }) => {
            let rows = store.overrides(schedule, crate::clock::now_ms()).await?;
            let shown: Vec<Value> = rows
                .iter()
                .map(|o| oncall::shown_override(people, o))
                .collect();
            if json {
                return Ok(serde_json::to_string_pretty(&shown)?);
            }
            let mut out = String::new();
            for o in &shown {
                out.push_str(&format!(
                    "{:<16} {:<12} {:<12} {} → {}  (by {})\n",
                    text(o, "id"),
                    text(o, "schedule"),
                    text(o, "person"),
                    text(o, "from"),
                    text(o, "until"),
                    text(o, "created_by")
                ));
            }
            if shown.is_empty() {
                out.push_str("(no override in force or to come)\n");
            }
            Ok(out.trim_end().to_string())
        }
        Some(OncallCommand::Remove { id }) => {
            let actor = actor(&config, as_person.as_deref())?;
            oncall::remove_override(&store, &actor, &id).await?;
            Ok(format!("removed {id}"))
        }
    }
}

pub async fn audit(config: Config, since: Option<String>, json: bool) -> anyhow::Result<String> {
    let store = crate::app::open_store(&config).await?;
    let from =
        oncall::since_ms(since.as_deref(), crate::clock::now_ms()).map_err(anyhow::Error::msg)?;
    let rows: Vec<Value> = store
        .audit(from, 100_000)
        .await?
        .iter()
        .map(oncall::shown_audit)
        .collect();
    if json {
        return Ok(serde_json::to_string_pretty(&rows)?);
    }
    let mut out = format!(
        "{:<20} {:<24} {:<5} {:<15} {:<16} {:<22} DETAIL\n",
        "AT", "WHO", "VIA", "FROM", "ACTION", "TARGET"
    );
    for a in &rows {
        let mut who = text(a, "actor");
        if let Some(t) = a["token"].as_str() {
            who = format!("{who} (token {t})");
        } else if a["verified"] == Value::Bool(false) {
            who = format!("{who} (unverified)");
        }
        out.push_str(&format!(
            "{:<20} {:<24} {:<5} {:<15} {:<16} {:<22} {}\n",
            text(a, "at"),
            who,
            text(a, "via"),
            text(a, "from"),
            text(a, "action"),
            text(a, "target"),
            text(a, "detail")
        ));
    }
    if rows.is_empty() {
        out.push_str("(no change recorded in that time)\n");
    }
    Ok(out.trim_end().to_string())
}

/// `hub ack`, `hub unack` and `hub resolve`.
pub async fn ack(
    config: Config,
    as_person: Option<String>,
    verb: &str,
    source: crate::domain::Source,
    problem_id: String,
) -> anyhow::Result<String> {
    use crate::escalate::ack;
    let what = match verb {
        "ack" => "an acknowledgement",
        "unack" => "an unacknowledgement",
        _ => "a resolve",
    };
    let actor = require(&config, as_person.as_deref(), Role::Responder, what)?;
    let store = crate::app::open_store(&config).await?;
    let tells = crate::escalate::tell::Tell::of(&config.actions, &config.people);
    let done = match verb {
        "ack" => ack::acknowledge(&store, &tells, &actor, source, &problem_id)
            .await
            .map(|e| {
                format!(
                    "acknowledged {problem_id} ({}): no further step is sent",
                    e.policy
                )
            }),
        "unack" => ack::unacknowledge(&store, &tells, &actor, source, &problem_id)
            .await
            .map(|e| {
                format!(
                    "{problem_id} ({}) pages again from its first step",
                    e.policy
                )
            }),
        _ => ack::resolve(&store, &tells, &actor, source, &problem_id)
            .await
            .map(|_| format!("resolved {problem_id}: its escalation stopped")),
    };
    done.map_err(|e| anyhow::anyhow!("{e}"))
}
