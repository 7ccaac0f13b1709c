//! The command line: `hub run`, `hub check-config`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError};
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

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the webhook endpoints (the default when no command is given).
    Run,
    /// Validate the configuration: list every problem and exit 1, or print a summary and exit 0.
    CheckConfig,
    /// Show Dynatrace's problem feed and whether hub received a notification for each problem.
    Poll {
        /// How far back: hour, 2hours, 6hours, day, 3days, week, month.
        #[arg(long, default_value = "hour", value_parser = parse_window)]
        relative: Window,
        /// Print one JSON document instead of a table.
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
}

fn parse_window(s: &str) -> Result<Window, String> {
    s.parse()
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => check_config(&cli.config),
        Command::Run => run(&cli.config),
        Command::Poll { relative, json } => api_command(&cli.config, |c, store_url| {
            Box::pin(crate::poll::poll(c, store_url, relative, json))
        }),
        Command::Problem { pid, json } => api_command(&cli.config, move |c, _| {
            Box::pin(crate::poll::problem(c, pid, json))
        }),
    }
}

type ApiFuture = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<String>>>>;

/// Runs a command that talks to Dynatrace: prints its output and exits 0, or prints a one-line
/// reason (never a stack trace, never the token) and exits 1.
fn api_command(
    path: &std::path::Path,
    command: impl FnOnce(Client, String) -> ApiFuture,
) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return report_config_error(&e),
    };
    crate::logging::init_stderr();
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
    let Some(runtime) = runtime(tokio::runtime::Builder::new_current_thread()) else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(command(client, config.store.url.clone())) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
            println!("{}: OK: {}", path.display(), config.summary());
            if config.uses_example_password() {
                println!("warning: webhook.password is the example password; change it before exposing hub");
            }
            ExitCode::SUCCESS
        }
        Err(e) => report_config_error(&e),
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
    if let Err(e) = crate::logging::init(&config.log_dir, &config.log_file) {
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
    match runtime.block_on(crate::app::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
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
