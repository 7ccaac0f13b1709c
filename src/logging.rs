//! Logs go to stderr and to `log_dir/log_file`, as one key/value line per event.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The level comes from `HUB_LOG` (error, warn, info, debug, trace); default info. Only hub's own
/// events pass at debug and below: the libraries' are kept at warn so the file stays readable.
fn filter() -> Targets {
    let level = std::env::var("HUB_LOG")
        .ok()
        .and_then(|v| LevelFilter::from_str(&v).ok())
        .unwrap_or(LevelFilter::INFO);
    Targets::new()
        .with_default(LevelFilter::WARN.min(level))
        .with_target("hub", level)
}

/// Logs to stderr only (for commands that do not serve).
pub fn init_stderr() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_max_level(LevelFilter::WARN)
        .try_init();
}

/// Logs to stderr and appends to the log file, creating its folder when missing.
pub fn init(log_dir: &Path, log_file: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(log_dir)?;
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_dir.join(log_file))?;
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_filter(filter());
    let to_file = tracing_subscriber::fmt::layer()
        .with_writer(Mutex::new(file))
        .with_ansi(false)
        .with_target(false)
        .with_filter(filter());
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(to_file)
        .try_init();
    Ok(())
}
