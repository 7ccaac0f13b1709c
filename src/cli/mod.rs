//! The command line: `hub run`, `hub check-config`, `hub poll`, `hub problem`, `hub replay`,
//! `hub explain`, `hub import`, `hub export`, `hub backup`, `hub prune`, and people's commands
//! (`people`: `hub hash-password`, `hub token`, `hub oncall`, `hub audit`), and what a package
//! installs beside the binary (`shell`: `hub completions`, `hub man`).

mod people;
mod shell;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError};
use crate::domain::Source;
use crate::dynatrace::{Client, Window};

#[derive(Debug, Parser)]
#[command(
    name = "hub",
    version,
    about = "Receives monitoring notifications durably and runs your actions on them"
)]
pub struct Cli {
    /// The configuration file; relative folders in it are resolved against the working directory.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "HUB_CONFIG",
        default_value = "config.json"
    )]
    pub config: PathBuf,

    /// Act as this person (an id of "people"), with their role; recorded in the audit log.
    /// Without it, commands that change something act as the system user, recorded as
    /// unverified.
    #[arg(long = "as", global = true, value_name = "PERSON")]
    pub as_person: Option<String>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the endpoints and the status page, and run the actions (the default when no command
    /// is given).
    Run,
    /// Validate the configuration: list every problem and exit 1, or print a summary and exit 0.
    CheckConfig {
        /// Also open the store (connect to PostgreSQL, or open the SQLite file) and say whether
        /// that works.
        #[arg(long)]
        connect: bool,
    },
    /// Show Dynatrace's problem feed and whether hub received a notification for each problem.
    Poll {
        /// How far back: hour, 2hours, 6hours, day, 3days, week, month.
        #[arg(long, default_value = "hour")]
        relative: Window,
        /// Print one JSON document instead of a table.
        #[arg(long)]
        json: bool,
        /// Also run the configured actions for every problem hub has not handled in its current
        /// status, as if Dynatrace had sent the notification (what the sample's poll did).
        #[arg(long)]
        run_actions: bool,
    },
    /// Run a problem's actions again, on purpose (recorded as manual attempts).
    Replay {
        /// The problem's id as its notification carried it (Dynatrace: the {ProblemID} number).
        problem_id: String,
        /// Only this action's runs.
        #[arg(long)]
        action: Option<String>,
        #[arg(long, default_value = "dynatrace")]
        source: Source,
    },
    /// Dry-run a payload through the pipeline: parsed notification, routes, and what every action
    /// would run or send. Runs nothing, sends nothing, stores nothing.
    Explain {
        /// A file with the request body as the monitoring system would send it ('-' for stdin).
        payload: PathBuf,
        #[arg(long, default_value = "dynatrace")]
        source: Source,
    },
    /// Send one run of an action now, with a sample problem (or a payload file), and print what
    /// was sent and what the far side answered. Records nothing: no run, no thread, no outcome.
    TestAction {
        /// The action's name in config.json.
        name: String,
        /// The problem's state for this run (OPEN, ACKNOWLEDGED, RESOLVED…).
        #[arg(long)]
        state: Option<String>,
        /// A file with a notification as its sender posts it, instead of the sample problem.
        #[arg(long)]
        problem: Option<PathBuf>,
        /// The sender's format of --problem.
        #[arg(long, default_value = "dynatrace")]
        source: Source,
    },
    /// Store the notification files of a folder (the Python sample's problems_received/, say) as
    /// history: shown on the page and in the API, never acted on. Files already stored are
    /// skipped, so it is safe to run again.
    Import {
        /// The folder whose *.json files are notifications as their sender posted them.
        dir: PathBuf,
        /// Which sender's format the files are in.
        #[arg(long, default_value = "dynatrace")]
        source: Source,
    },
    /// Write problems_received/ and problems_sent/ from the store into a folder (for an instance
    /// with no shared folder, or to rebuild lost folders). Files already there are not replaced.
    Export {
        /// The folder to write problems_received/ and problems_sent/ into.
        #[arg(long)]
        dir: PathBuf,
        /// Only notifications received, and problems changed, this long ago or since (30s, 10m,
        /// 12h, 90d).
        #[arg(long, value_parser = crate::keys::parse_duration)]
        since: Option<Duration>,
    },
    /// Write a consistent copy of the SQLite store while hub runs; `store.url = "sqlite://FILE"`
    /// starts from the copy as it is. Never replaces a file. (On PostgreSQL, use pg_dump.)
    Backup {
        /// The new file to write.
        file: PathBuf,
    },
    /// Delete, now, the problems that ended longer ago than retention.max_age (or --max-age) and
    /// have nothing left to do, with their notifications, runs and files.
    Prune {
        /// Count what would be deleted, and delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Instead of retention.max_age (at least 1h; such as 90d).
        #[arg(long, value_parser = crate::keys::parse_duration)]
        max_age: Option<Duration>,
    },
    /// Silences: add one, list them (with the maintenance windows), or end one now.
    Silence {
        #[command(subcommand)]
        command: SilenceCommand,
    },
    /// Acknowledge a problem: its escalation stops, nobody else is paged for it.
    Ack {
        /// The problem's id as its notification carried it.
        problem_id: String,
        #[arg(long, default_value = "dynatrace")]
        source: Source,
    },
    /// Start an acknowledged problem's escalation again from its first step.
    Unack {
        problem_id: String,
        #[arg(long, default_value = "dynatrace")]
        source: Source,
    },
    /// End a problem's escalation as resolved.
    Resolve {
        problem_id: String,
        #[arg(long, default_value = "dynatrace")]
        source: Source,
    },
    /// Read a password from standard input (one trailing new line dropped) and print its argon2id
    /// hash, for a person's "password_hash".
    HashPassword,
    /// API tokens: create one for a person, list them, or revoke one.
    Token {
        #[command(subcommand)]
        command: people::TokenCommand,
    },
    /// Who is on call now (or --at a time), and overrides of the rotation.
    Oncall(people::OncallArgs),
    /// The changes people made: silences, replays, overrides, tokens, reloads.
    Audit {
        /// How far back (7d, 12h) or since when (RFC 3339). Default: 30d.
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The groups grouped routes made: their key, state, sends and members.
    Groups {
        /// Only the groups still open.
        #[arg(long)]
        open: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show one problem's details from the Dynatrace API.
    Problem {
        /// The problem's PID (Dynatrace's {PID} placeholder, v2 problemId). PIDs often start with
        /// '-', which is accepted as is.
        #[arg(allow_hyphen_values = true)]
        pid: String,
        /// Print the API's JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Print the completion script for a shell (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell whose completion script to print.
        shell: clap_complete::Shell,
    },
    /// Print hub's manual page (roff: hub man | man -l -).
    Man {
        /// Instead, write hub.1 and one page per command (hub-run.1, hub-silence-add.1, …) into
        /// this folder, creating it.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SilenceCommand {
    /// Silence what every --match covers, for --duration or --until; prints the new silence's id.
    Add {
        /// KEY=VALUE, exact or a * glob; keys: source, problem, state, severity, tag (name:value),
        /// entity (name or id), title. Every one must match.
        #[arg(long = "match", value_name = "KEY=VALUE", required = true)]
        matchers: Vec<String>,
        /// How long from now (30m, 2h, 1d).
        #[arg(long, conflicts_with = "until")]
        duration: Option<String>,
        /// Until when (RFC 3339, such as 2026-12-24T08:00:00Z).
        #[arg(long)]
        until: Option<String>,
        /// Why: shown wherever the silence is.
        #[arg(long, required = true)]
        comment: String,
        /// On whose behalf, kept after the name of who ran it (--as, else the system user).
        #[arg(long)]
        author: Option<String>,
        /// When it ends, do not run what it held for problems still open.
        #[arg(long)]
        no_renotify: bool,
    },
    /// Silences in force or ended within a day, and the maintenance windows with their next start.
    List {
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// End a silence now; what it held for problems still open runs then.
    Expire { id: String },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let as_person = cli.as_person.clone();
    match cli.command.unwrap_or(Command::Run) {
        Command::HashPassword => print_result(people::hash_password()),
        // Neither reads the config: a package build runs them where there is none.
        Command::Completions { shell } => exit_with(shell::emit(shell::completions(shell))),
        Command::Man { dir: None } => exit_with(shell::emit(shell::man_page())),
        Command::Man { dir: Some(dir) } => exit_with(
            shell::write_man_pages(&dir)
                .map(|names| eprintln!("wrote {} pages into {}", names.len(), dir.display())),
        ),
        Command::Ack { problem_id, source } => store_command(&cli.config, false, move |config| {
            Box::pin(people::ack(config, as_person, "ack", source, problem_id))
        }),
        Command::Unack { problem_id, source } => store_command(&cli.config, false, move |config| {
            Box::pin(people::ack(config, as_person, "unack", source, problem_id))
        }),
        Command::Resolve { problem_id, source } => {
            store_command(&cli.config, false, move |config| {
                Box::pin(people::ack(
                    config, as_person, "resolve", source, problem_id,
                ))
            })
        }
        Command::Token { command } => store_command(&cli.config, false, move |config| {
            Box::pin(people::token(config, as_person, command))
        }),
        Command::Oncall(args) => store_command(&cli.config, false, move |config| {
            Box::pin(people::on_call(config, as_person, args))
        }),
        Command::Audit { since, json } => store_command(&cli.config, false, move |config| {
            Box::pin(people::audit(config, since, json))
        }),
        Command::Groups { open, json } => store_command(&cli.config, false, move |config| {
            Box::pin(groups(config, open, json))
        }),
        Command::CheckConfig { connect } => check_config(&cli.config, connect),
        Command::Run => run(&cli.config),
        Command::Poll {
            relative,
            json,
            run_actions,
        } => api_command(&cli.config, run_actions, move |c, config| {
            Box::pin(async move {
                if !run_actions {
                    return crate::poll::poll(c, config, relative, json, run_actions).await;
                }
                let actor = people::require(
                    &config,
                    as_person.as_deref(),
                    crate::people::Role::Responder,
                    "poll --run-actions",
                )?;
                let store = crate::app::open_store(&config).await?;
                let window = relative;
                let done = crate::poll::poll(c, config, relative, json, run_actions).await?;
                crate::people::audit::record(
                    &store,
                    &actor,
                    "poll.run_actions",
                    &format!("{window:?}"),
                    String::new(),
                )
                .await;
                Ok(done)
            })
        }),
        Command::Problem { pid, json } => api_command(&cli.config, false, move |c, _| {
            Box::pin(crate::poll::problem(c, pid, json))
        }),
        Command::Replay {
            problem_id,
            action,
            source,
        } => store_command(&cli.config, true, move |config| {
            Box::pin(async move {
                let actor = people::require(
                    &config,
                    as_person.as_deref(),
                    crate::people::Role::Responder,
                    "a replay",
                )?;
                crate::replay::replay(config, source, &problem_id, action.as_deref(), &actor).await
            })
        }),
        Command::Explain { payload, source } => explain(&cli.config, &payload, source),
        Command::Import { dir, source } => store_command(&cli.config, false, move |config| {
            Box::pin(async move {
                let actor = people::require(
                    &config,
                    as_person.as_deref(),
                    crate::people::Role::Admin,
                    "an import",
                )?;
                let store = crate::app::open_store(&config).await?;
                let target = dir.display().to_string();
                let done = crate::import::import(config, dir, source).await?;
                let summary = done.lines().last().unwrap_or_default().to_string();
                crate::people::audit::record(&store, &actor, "import", &target, summary).await;
                Ok(done)
            })
        }),
        Command::Backup { file } => backup(&cli.config, &file),
        Command::TestAction {
            name,
            state,
            problem,
            source,
        } => test_action(&cli.config, &name, state, problem, source),
        Command::Silence { command } => store_command(&cli.config, false, move |config| {
            Box::pin(silence(config, as_person, command))
        }),
        Command::Prune { dry_run, max_age } => store_command(&cli.config, false, move |config| {
            Box::pin(async move {
                if dry_run {
                    return prune_now(config, max_age, dry_run).await;
                }
                let actor = people::require(
                    &config,
                    as_person.as_deref(),
                    crate::people::Role::Admin,
                    "a prune",
                )?;
                let store = crate::app::open_store(&config).await?;
                let done = prune_now(config, max_age, dry_run).await?;
                let summary = done.lines().last().unwrap_or_default().to_string();
                crate::people::audit::record(&store, &actor, "prune", "store", summary).await;
                Ok(done)
            })
        }),
        Command::Export { dir, since } => store_command(&cli.config, false, move |config| {
            Box::pin(crate::export::export(config, dir, since))
        }),
    }
}

async fn silence(
    config: Config,
    as_person: Option<String>,
    command: SilenceCommand,
) -> anyhow::Result<String> {
    let store = crate::app::open_store(&config).await?;
    let actor = people::actor(&config, as_person.as_deref())?;
    let changes = !matches!(command, SilenceCommand::List { .. });
    if changes && !actor.may(crate::people::Role::Responder) {
        anyhow::bail!(
            "silences need the responder role; {} is {}",
            actor.label(),
            actor.role
        );
    }
    match command {
        SilenceCommand::Add {
            matchers,
            duration,
            until,
            comment,
            author,
            no_renotify,
        } => {
            let author = actor.author(author.as_deref().unwrap_or_default());
            let request = crate::silences::Request {
                matchers,
                duration,
                until,
                comment,
                author,
                renotify: Some(!no_renotify),
            };
            let s = crate::silences::add(&store, &request).await?;
            let matchers: Vec<String> = s.matcher_list().iter().map(ToString::to_string).collect();
            crate::people::audit::record(
                &store,
                &actor,
                "silence.add",
                &s.id,
                format!(
                    "{} until {} ({})",
                    matchers.join(" "),
                    crate::clock::rfc3339(s.ends_at_ms),
                    s.comment
                ),
            )
            .await;
            eprintln!(
                "silenced {} until {}",
                s.matcher_list()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
                crate::clock::rfc3339(s.ends_at_ms)
            );
            Ok(s.id)
        }
        SilenceCommand::List { json } => {
            let listed = crate::silences::list(&store, &config.maintenance).await?;
            if json {
                return Ok(serde_json::to_string_pretty(&listed)?);
            }
            Ok(silence_table(&listed))
        }
        SilenceCommand::Expire { id } => {
            let Some(found) = store.silence(&id).await? else {
                anyhow::bail!("no silence has the id {id:?} (hub silence list shows them)");
            };
            if !store
                .expire_silence(id.clone(), crate::clock::now_ms())
                .await?
            {
                anyhow::bail!("silence {id} has ended already");
            }
            crate::people::audit::record(&store, &actor, "silence.expire", &id, found.comment)
                .await;
            Ok(format!(
                "expired {id}; what it held for problems still open runs within a few seconds"
            ))
        }
    }
}

fn silence_table(listed: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or("-").to_string();
    let joined = |v: &serde_json::Value| {
        v["matchers"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    };
    let mut out = format!(
        "{:<21} {:<7} {:<20} {:<12} {:<30} COMMENT\n",
        "ID", "STATE", "ENDS", "AUTHOR", "MATCHERS"
    );
    let silences = listed["silences"].as_array().cloned().unwrap_or_default();
    for s in &silences {
        out.push_str(&format!(
            "{:<21} {:<7} {:<20} {:<12} {:<30} {}\n",
            text(s, "id"),
            text(s, "state"),
            text(s, "ends"),
            text(s, "author"),
            joined(s),
            text(s, "comment")
        ));
    }
    if silences.is_empty() {
        out.push_str("(no silence in force or ended within a day)\n");
    }
    let windows = listed["maintenance"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !windows.is_empty() {
        out.push_str("\nMAINTENANCE WINDOW     CRON               ZONE             DURATION  NOW                       NEXT START\n");
        for w in &windows {
            let now = match w["active_until"].as_str() {
                Some(end) => format!("active until {end}"),
                None => "-".into(),
            };
            out.push_str(&format!(
                "{:<22} {:<18} {:<16} {:<9} {:<25} {}\n",
                text(w, "name"),
                text(w, "cron"),
                text(w, "timezone"),
                text(w, "duration"),
                now,
                text(w, "next_start")
            ));
        }
    }
    out.trim_end().to_string()
}

fn explain(path: &std::path::Path, payload: &std::path::Path, source: Source) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return report_config_error(&e),
    };
    let body = if payload == std::path::Path::new("-") {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map(|_| buf)
    } else {
        std::fs::read(payload)
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", payload.display());
            return ExitCode::FAILURE;
        }
    };
    let Some(runtime) = runtime(tokio::runtime::Builder::new_multi_thread()) else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(crate::explain::explain(&config, &body, source)) {
        Ok(v) => {
            // The plan as JSON for scripts on stdout, and in a few lines for a person on stderr.
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            eprint!("{}", crate::explain::summary(&v));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a command on the store beside (or instead of) a running hub.
/// Such a command serves nothing, so it needs no webhook password; only `runs_actions` (replay)
/// needs the actions' programs.
fn store_command(
    path: &std::path::Path,
    runs_actions: bool,
    command: impl FnOnce(Config) -> ApiFuture,
) -> ExitCode {
    let config = match Config::load_for_store(path, runs_actions) {
        Ok(c) => c,
        Err(e) => return report_config_error(&e),
    };
    crate::logging::init_stderr();
    let Some(runtime) = runtime(tokio::runtime::Builder::new_multi_thread()) else {
        return ExitCode::FAILURE;
    };
    print_result(runtime.block_on(command(config)))
}

/// Exit 0, or 1 with the error on one line.
fn exit_with(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", crate::logging::error_text(&e));
            ExitCode::FAILURE
        }
    }
}

fn print_result(result: anyhow::Result<String>) -> ExitCode {
    match result {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", crate::logging::error_text(&e));
            ExitCode::FAILURE
        }
    }
}

type ApiFuture = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<String>>>>;

/// Runs a command that talks to Dynatrace: prints its output and exits 0, or prints a one-line
/// reason (never a stack trace, never the token) and exits 1.
fn api_command(
    path: &std::path::Path,
    runs_actions: bool,
    command: impl FnOnce(Client, Config) -> ApiFuture,
) -> ExitCode {
    let loaded = if runs_actions {
        Config::load(path)
    } else {
        Config::load_without_running(path)
    };
    let config = match loaded {
        Ok(c) => c,
        Err(e) => return report_config_error(&e),
    };
    // The feed's last line says what failed; each retry before it is shown with HUB_LOG=warn.
    crate::logging::init_stderr_at(tracing_subscriber::filter::LevelFilter::ERROR);
    let client = match Client::from_config(&config.dynatrace) {
        Ok(Some(client)) => client,
        Ok(None) => {
            eprintln!("error: dynatrace.tenant is not set in {}", path.display());
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(runtime) = runtime(tokio::runtime::Builder::new_multi_thread()) else {
        return ExitCode::FAILURE;
    };
    print_result(runtime.block_on(command(client, config)))
}

fn test_action(
    path: &std::path::Path,
    name: &str,
    state: Option<String>,
    problem: Option<PathBuf>,
    source: Source,
) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return report_config_error(&e),
    };
    if let Some(s) = &state {
        let valid = !s.is_empty()
            && s.len() <= 64
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            eprintln!("error: --state {s:?}: expected a state such as OPEN or RESOLVED");
            return ExitCode::FAILURE;
        }
    }
    let body = match &problem {
        Some(file) => match std::fs::read(file) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", file.display());
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    crate::logging::init_stderr();
    let Some(runtime) = runtime(tokio::runtime::Builder::new_multi_thread()) else {
        return ExitCode::FAILURE;
    };
    let payload = body.as_deref().map(|b| (b, source));
    let state = state.map(|s| s.to_ascii_uppercase());
    match runtime.block_on(crate::test_action::test_action(
        &config,
        name,
        state.as_deref(),
        payload,
    )) {
        Ok(report) => {
            for run in &report.runs {
                println!("{}", serde_json::to_string_pretty(run).unwrap_or_default());
            }
            let sent = report.runs.len();
            if report.all_succeeded {
                eprintln!(
                    "test-action {name}: {sent} run(s) sent and answered; nothing was recorded"
                );
                ExitCode::SUCCESS
            } else {
                eprintln!("test-action {name}: not every run succeeded (see answer above); nothing was recorded");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn backup(path: &std::path::Path, file: &std::path::Path) -> ExitCode {
    let config = match Config::load_for_store(path, false) {
        Ok(c) => c,
        Err(e) => return report_config_error(&e),
    };
    eprintln!("backing up {} to {} …", config.store.url, file.display());
    print_result(crate::store::backup(&config.store, file).map(|b| {
        format!(
            "wrote {}: {} notifications, {:.1} MiB, in {:.1} s",
            b.path.display(),
            b.notifications,
            b.bytes as f64 / (1024.0 * 1024.0),
            b.took.as_secs_f64()
        )
    }))
}

fn check_config(path: &std::path::Path, connect: bool) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
            println!("{}: OK: {}", path.display(), config.summary());
            if config.uses_example_password() {
                println!("warning: webhook.password is the example password; change it before exposing hub");
            }
            for warning in config.warnings() {
                println!("warning: {warning}");
            }
            if connect {
                return check_store(&config);
            }
            ExitCode::SUCCESS
        }
        Err(e) => report_config_error(&e),
    }
}

/// `check-config --connect`: opens the store as `hub run` would, and says whether it can.
fn check_store(config: &Config) -> ExitCode {
    let place = crate::app::store_place(config);
    if !config.store.is_postgres() {
        // Opening a SQLite file that is not there would create it: check-config changes nothing.
        let file = config.store.sqlite_file().unwrap_or_default();
        if !file.exists() {
            let folder = match file.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => std::path::Path::new("."),
            };
            if folder.is_dir() {
                println!("store: {place} does not exist yet; hub run creates it");
                return ExitCode::SUCCESS;
            }
            eprintln!(
                "error: store: {place}: the folder {} does not exist",
                folder.display()
            );
            return ExitCode::FAILURE;
        }
    }
    let Some(runtime) = runtime(tokio::runtime::Builder::new_multi_thread()) else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(crate::app::inspect_store(config)) {
        Ok(_) => {
            println!("store: OK: opened {place}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", crate::logging::error_text(&e));
            ExitCode::FAILURE
        }
    }
}

fn report_config_error(e: &ConfigError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

fn run(path: &std::path::Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return report_config_error(&e),
    };
    if let Err(e) = crate::logging::init(&config.log_dir, &config.log_file, config.log_format) {
        crate::logging::init_stderr();
        eprintln!(
            "error: cannot open log file {}: {e}",
            config.log_path().display()
        );
        return ExitCode::FAILURE;
    }
    let Some(runtime) = runtime(tokio::runtime::Builder::new_multi_thread()) else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(crate::app::run(config, path.to_path_buf())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{}", crate::logging::error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// Builds the async runtime, or says why it cannot.
fn runtime(mut builder: tokio::runtime::Builder) -> Option<tokio::runtime::Runtime> {
    builder
        .enable_all()
        .build()
        .map_err(|e| eprintln!("error: cannot start the async runtime: {e}"))
        .ok()
}

/// `hub prune [--dry-run] [--max-age D]`: one pass now, with progress on stderr.
async fn prune_now(config: Config, max_age: Option<Duration>, dry: bool) -> anyhow::Result<String> {
    let Some(max_age) = max_age.or(config.retention.map(|r| r.max_age)) else {
        anyhow::bail!(
            "no retention.max_age in the config: give one there, or here with --max-age (such as 90d)"
        );
    };
    if max_age < Duration::from_secs(3600) {
        anyhow::bail!("--max-age must be at least 1h: a problem that just ended is kept");
    }
    let store = crate::app::open_store(&config).await?;
    let age = crate::keys::short_duration(max_age);
    eprintln!(
        "{} problems that ended more than {age} ago …",
        if dry { "looking for" } else { "pruning" }
    );
    let mut shown = 0;
    let totals = crate::retention::pass(
        &store,
        &config.dir_sent,
        max_age,
        dry,
        Duration::ZERO,
        |t| {
            if t.problems >= shown + 1000 {
                shown = t.problems;
                eprintln!(
                    "… {} problems, {} notifications",
                    t.problems, t.notifications
                );
            }
        },
    )
    .await?;
    let verb = if dry { "would remove" } else { "removed" };
    Ok(format!(
        "{verb} {} problems that ended more than {age} ago: {} notifications (and their files in {}), \
         {} runs{}",
        totals.problems,
        totals.notifications,
        config.dir_received.display(),
        totals.runs,
        if dry { " (dry run: nothing was deleted)" } else { "" }
    ))
}

/// `hub groups`: one line per group, newest first; `--json` as `GET /api/groups`.
async fn groups(config: Config, open: bool, json: bool) -> anyhow::Result<String> {
    let store = crate::app::open_store(&config).await?;
    let listed = crate::group::listed(&store, open, 1000).await?;
    if json {
        return Ok(serde_json::to_string_pretty(
            &serde_json::json!({ "groups": listed }),
        )?);
    }
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    };
    let mut out = format!(
        "{:<6} {:<9} {:<8} {:<6} {:<6} {:<20} {:<20} KEY\n",
        "ID", "STATE", "MEMBERS", "OPEN", "SENDS", "OPENED", "LAST SENT"
    );
    for g in &listed {
        out.push_str(&format!(
            "{:<6} {:<9} {:<8} {:<6} {:<6} {:<20} {:<20} {} ({})\n",
            text(&g["id"]),
            text(&g["state"]),
            text(&g["count"]),
            text(&g["open"]),
            text(&g["sends"]),
            text(&g["opened_at"]),
            text(&g["last_sent_at"]),
            text(&g["key"]),
            text(&g["route"])
        ));
    }
    if listed.is_empty() {
        out.push_str("(no group yet: a route with \"group\" makes them)\n");
    }
    Ok(out.trim_end().to_string())
}
