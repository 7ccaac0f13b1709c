//! The command line: `hub run`, `hub check-config`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError};

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
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => check_config(&cli.config),
        Command::Run => run(&cli.config),
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(crate::app::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
