//! Logs go to stderr and to `log_dir/log_file`, one line per event: `key=value` text, or with
//! `log_format: "json"` (or `HUB_LOG_FORMAT=json`) one JSON object with the same fields.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// One event, one line: a value with a newline (a `State` of `"OPEN\n2026-… INFO forged"`, say)
/// must not start a line of its own, and a control character must not reach a terminal. The
/// formatter writes each event whole, in one call, ending in its newline; every control character
/// before that end is written escaped (`\n`, `\r`, `\t`, `\x1b`…). Where colours are on, their
/// escape character is left alone.
pub struct Escaped<M> {
    inner: M,
    keep_escape: bool,
}

impl<M> Escaped<M> {
    pub fn new(inner: M, ansi: bool) -> Self {
        Escaped {
            inner,
            keep_escape: ansi,
        }
    }
}

impl<'a, M: tracing_subscriber::fmt::MakeWriter<'a>> tracing_subscriber::fmt::MakeWriter<'a>
    for Escaped<M>
{
    type Writer = EscapedWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        EscapedWriter {
            inner: self.inner.make_writer(),
            keep_escape: self.keep_escape,
        }
    }
}

pub struct EscapedWriter<W> {
    inner: W,
    keep_escape: bool,
}

impl<W: std::io::Write> std::io::Write for EscapedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let body = buf.strip_suffix(b"\n").unwrap_or(buf);
        let needs = |b: u8| (b < 0x20 && !(self.keep_escape && b == 0x1b)) || b == 0x7f;
        if !body.iter().any(|&b| needs(b)) {
            self.inner.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut out = Vec::with_capacity(buf.len() + 16);
        for &b in body {
            match b {
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                b if needs(b) => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
                b => out.push(b),
            }
        }
        out.extend_from_slice(&buf[body.len()..]);
        self.inner.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// How each event is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// `2026-12-02T05:00:00Z  INFO notification source=dynatrace problem_id="P-1" …`
    #[default]
    Text,
    /// `{"timestamp":"…","level":"INFO","message":"notification","source":"dynatrace",…}`
    Json,
}

/// A log format that is neither `text` nor `json`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("expected text or json")]
pub struct UnknownFormat;

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Format, UnknownFormat> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            _ => Err(UnknownFormat),
        }
    }
}

type BoxedLayer = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

/// One destination's layer in the chosen format. JSON escapes every control character itself;
/// the text lines go through [`Escaped`].
fn layer<W>(format: Format, writer: W, ansi: bool) -> BoxedLayer
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let writer = Escaped::new(writer, ansi);
    match format {
        Format::Text => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(ansi)
            .with_target(false)
            .boxed(),
        Format::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(writer)
            .with_target(false)
            .boxed(),
    }
}

/// Logs warnings and errors to stderr only (for commands that do not serve), as text unless
/// `HUB_LOG_FORMAT=json`.
pub fn init_stderr() {
    init_stderr_at(LevelFilter::WARN);
}

/// As [`init_stderr`], at `default` unless `HUB_LOG` names a level: commands whose last line
/// already says what failed (`hub poll` against a tenant that does not answer) keep their
/// retries to themselves unless asked.
pub fn init_stderr_at(default: LevelFilter) {
    let level = std::env::var("HUB_LOG")
        .ok()
        .and_then(|v| LevelFilter::from_str(&v).ok())
        .unwrap_or(default);
    let format = std::env::var("HUB_LOG_FORMAT")
        .ok()
        .and_then(|f| f.parse().ok())
        .unwrap_or_default();
    let ansi = format == Format::Text && std::io::stderr().is_terminal();
    let _ = tracing_subscriber::registry()
        .with(layer(format, std::io::stderr, ansi).with_filter(level))
        .try_init();
}

/// Logs to stderr and appends to the log file, creating its folder when missing.
pub fn init(log_dir: &Path, log_file: &str, format: Format) -> std::io::Result<()> {
    std::fs::create_dir_all(log_dir)?;
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_dir.join(log_file))?;
    let ansi = format == Format::Text && std::io::stderr().is_terminal();
    let layers = vec![
        layer(format, std::io::stderr, ansi)
            .with_filter(filter())
            .boxed(),
        layer(format, Mutex::new(file), false)
            .with_filter(filter())
            .boxed(),
    ];
    let _ = tracing_subscriber::registry().with(layers).try_init();
    Ok(())
}

/// Lets a repeated error through once per interval, counting the ones held back in between.
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    pub const fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(how many were held back since the last one)` when this one may be logged.
    pub fn ready(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.every)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// A [`Throttle`] shared by every thread that may log the same failure (every request, while the
/// disk is full).
pub struct SharedThrottle(Mutex<Throttle>);

impl SharedThrottle {
    pub const fn new(every: Duration) -> Self {
        SharedThrottle(Mutex::new(Throttle::new(every)))
    }

    /// As [`Throttle::ready`].
    pub fn ready(&self) -> Option<u64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).ready()
    }
}

/// An error and its causes on one line, each cause once: many errors already include their
/// source in their own message, so printing the chain as it is repeats the cause
/// ("… (os error 111): … (os error 111)"). A cause whose text the line holds already is left out.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_value_cannot_start_a_line_of_its_own() {
        let mut out = Vec::new();
        let mut w = EscapedWriter {
            inner: &mut out,
            keep_escape: false,
        };
        w.write_all(b"state=OPEN\n2026-12-02 INFO forged\r\x1b[31m\n")
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "state=OPEN\\n2026-12-02 INFO forged\\r\\x1b[31m\n"
        );
    }
}
