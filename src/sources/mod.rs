//! The monitoring systems hub receives from: one file per system behind [`SourcePlugin`], listed
//! once in [`sources!`] below. A source says where it is posted to, who may post, how its bytes
//! become notifications and how its senders expect to be answered; the web layer does the HTTP and
//! the store the keeping. No I/O here.

pub mod config;
pub mod gate;

use std::sync::Arc;

use serde_json::{json, Map, Value};

pub(crate) use crate::domain::text;
use crate::domain::Notification;
use crate::keys::Env;
use crate::keys::{Issues, Section};
pub use gate::{Gate, SourceAuth};

/// Lists the sources: each line is the enum variant, its module (whose name is the source's name
/// in config, URLs, files and metrics) and its colour on the status page's chart. Everything that
/// goes over every source (`Source::ALL`, config, routes, the chart, the parser fuzz test) follows.
macro_rules! sources {
    ($($variant:ident = $module:ident, $colour:literal;)*) => {
        $(pub mod $module;)*

        /// The monitoring system a notification came from.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Source {
            $($variant),*
        }

        impl Source {
            pub const ALL: &'static [Source] = &[$(Source::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Source::$variant => stringify!($module)),*
                }
            }

            /// Its bars on the status page's chart.
            pub fn colour(self) -> &'static str {
                match self {
                    $(Source::$variant => $colour),*
                }
            }

            /// The paths its senders post to.
            pub fn paths(self) -> &'static [&'static str] {
                match self {
                    $(Source::$variant => $module::PATHS),*
                }
            }

            /// The notifications a body carries, read as this source sends them, with no check of
            /// who sent it (for `hub import` and `hub explain`; a request goes through
            /// [`SourcePlugin::receive`]).
            pub fn read(self, headers: &Headers, body: &[u8]) -> Result<Vec<Notification>, ParseError> {
                match self {
                    $(Source::$variant => $module::read(headers, body)),*
                }
            }

            /// Builds the source from its `sources.<name>` entry, behind `gate`.
            pub(crate) fn build(
                self,
                gate: Gate,
                s: &mut Section,
                env: &Env,
                issues: &mut Issues,
            ) -> Arc<dyn SourcePlugin> {
                match self {
                    $(Source::$variant => $module::build(gate, s, env, issues)),*
                }
            }
        }
    };
}

sources! {
    Dynatrace = dynatrace, "#3465a4";
    Alertmanager = alertmanager, "#e9711c";
    Pagerduty = pagerduty, "#4e9a06";
    Monasca = monasca, "#a40000";
    Cloudstack = cloudstack, "#75507b";
    Ucloud = ucloud, "#c4a000";
    Opsgenie = opsgenie, "#06989a";
    Hub = hub, "#555753";
}

impl Source {
    pub fn parse(name: &str) -> Option<Source> {
        Source::ALL.iter().copied().find(|s| s.as_str() == name)
    }

    /// What its received files' names start with: none for Dynatrace, whose files keep the
    /// sample's `<ProblemID>-<State>.json`; the source's name for the others.
    pub fn file_prefix(self) -> Option<&'static str> {
        (self != Source::Dynatrace).then(|| self.as_str())
    }

    /// Whether `path` is one of its paths (a `<name>` segment of one stands for any segment).
    pub fn takes(self, path: &str) -> bool {
        self.paths().iter().any(|p| path_matches(p, path))
    }

    /// Whether its problems have details to fetch: Dynatrace's, from its Problems API.
    pub fn is_enriched(self) -> bool {
        self == Source::Dynatrace
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Source {
    type Err = UnknownSource;

    fn from_str(name: &str) -> Result<Source, UnknownSource> {
        Source::parse(name).ok_or_else(|| UnknownSource(name.to_string()))
    }
}

impl TryFrom<String> for Source {
    type Error = UnknownSource;

    fn try_from(name: String) -> Result<Source, UnknownSource> {
        name.parse()
    }
}

impl serde::Serialize for Source {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A source name that no source has.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown source {0:?} (known: {known})", known = Source::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))]
pub struct UnknownSource(pub String);

/// Why a body was refused; the web layer maps each kind to its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON at all (400).
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    /// JSON, but not the shape this source sends (422).
    #[error("{0}")]
    Invalid(String),
    /// JSON of the right shape with these fields wrong (422; PagerDuty's own answer lists them).
    #[error("{}", .0.join("; "))]
    Fields(Vec<String>),
}

/// Why a source refused a request before anything was stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Wrong or missing credentials or signature (401, with `scheme` as the challenge).
    #[error("{detail}")]
    Unauthorized {
        scheme: &'static str,
        detail: String,
    },
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The sender sends faster than its configured rate (429).
    #[error("{0}")]
    Throttled(String),
    /// The source's `rate_limit_per_minute` is spent (429 with `Retry-After`); nothing is read.
    #[error("{detail}")]
    OverRate {
        detail: String,
        retry_after_secs: u64,
    },
}

/// What became of one notification of a request once the store took it.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub problem_key: String,
    pub state: String,
    /// `stored`, `test` (stored; a sender's self-test, never acted on) or `duplicate`.
    pub outcome: &'static str,
    pub file: String,
    /// How long the request had taken when it was stored (Opsgenie's answers say).
    pub took: std::time::Duration,
}

/// A request that was not stored: its HTTP status, why, and the source's own reason if it gave one.
#[derive(Debug)]
pub struct Failure<'a> {
    pub status: u16,
    pub detail: &'a str,
    pub refusal: Option<&'a Refusal>,
    /// How long the request had taken when it was refused.
    pub took: std::time::Duration,
}

/// An answer in the shape a source's senders read.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    /// hub's own answer for a request of many notifications: how many were new, how many known.
    pub fn counts(receipts: &[Receipt]) -> Reply {
        let stored = receipts.iter().filter(|r| r.outcome != "duplicate").count();
        let files: Vec<&str> = receipts.iter().map(|r| r.file.as_str()).collect();
        Reply {
            status: 200,
            body: json!({
                "status": if stored == 0 { "duplicate" } else { "stored" },
                "stored": stored,
                "duplicates": receipts.len() - stored,
                "files": files,
            }),
        }
    }
}

/// One enabled source at run time, built from its config.
pub trait SourcePlugin: Send + Sync + std::fmt::Debug {
    fn source(&self) -> Source;
    /// Who may post (checked before the body is read).
    fn gate(&self) -> &Gate;
    /// What needs the whole body before it is read (CloudStack's signature).
    fn verify(&self, headers: &Headers, body: &[u8]) -> Result<(), Refusal> {
        let _ = (headers, body);
        Ok(())
    }
    /// The notifications a request carries, once this source accepts them (PagerDuty checks
    /// routing keys and its rate here).
    fn receive(&self, headers: &Headers, body: &[u8]) -> Result<Vec<Notification>, Refusal> {
        Ok(self.source().read(headers, body)?)
    }
    /// The answer once every notification of `body` is stored.
    fn accepted(&self, body: &[u8], receipts: &[Receipt]) -> Reply {
        let _ = body;
        Reply::counts(receipts)
    }
    /// The answer to a request that was not stored, where this source's senders read their own
    /// shape; `None` for hub's `{"error", "detail"}`. `body` is empty when it was not read.
    fn refused(&self, body: &[u8], failure: &Failure) -> Option<Reply> {
        let _ = (body, failure);
        None
    }
}

/// A source whose only settings are its gate, answered with [`Reply::counts`].
#[derive(Debug)]
pub struct Plain {
    source: Source,
    gate: Gate,
}

impl Plain {
    pub fn build(source: Source, gate: Gate) -> Arc<dyn SourcePlugin> {
        Arc::new(Plain { source, gate })
    }
}

impl SourcePlugin for Plain {
    fn source(&self) -> Source {
        self.source
    }

    fn gate(&self) -> &Gate {
        &self.gate
    }
}

/// Request headers, looked up without regard to case. A request's path and query come with them
/// as [`PATH`] and [`QUERY`], for a source whose URL names what it acts on (Opsgenie's
/// `/v2/alerts/{id}/close`).
#[derive(Debug, Clone, Default)]
pub struct Headers(pub Vec<(String, String)>);

/// The request's path, as sent (percent-encoded). HTTP/2 calls it so; no HTTP/1 header can have
/// this name (a `:` is not allowed in one), so no sender can forge it.
pub const PATH: &str = ":path";
/// The request's query, as sent, when it has one.
pub const QUERY: &str = ":query";

impl Headers {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Whether `path` matches `pattern`, segment by segment; a pattern's `<name>` segment matches any
/// one segment that is not empty (as the route made from it does).
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let (mut want, mut got) = (pattern.split('/'), path.split('/'));
    loop {
        match (want.next(), got.next()) {
            (None, None) => return true,
            (Some(w), Some(g)) if w.starts_with('<') && w.ends_with('>') && !g.is_empty() => {}
            (Some(w), Some(g)) if w == g => {}
            _ => return false,
        }
    }
}

/// Most JSON values one body may hold, and most objects among them. A parsed value takes many
/// times its bytes (an object about 600 bytes, an empty array 32), so without a bound a 64 MiB body
/// of small arrays or objects took gigabytes. The largest real payloads (an Alertmanager group of a
/// thousand alerts) hold a few tens of thousands of values.
pub const MAX_JSON_VALUES: usize = 1_000_000;
pub const MAX_JSON_OBJECTS: usize = 100_000;

/// Parses a body as JSON after checking, in one pass over the bytes, that it holds no more values
/// and objects than the bounds above: what parsing can take is bounded before it starts.
pub(crate) fn json(body: &[u8]) -> Result<Value, ParseError> {
    let (mut values, mut objects) = (1usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b',' => values += 1,
            b'{' => {
                values += 1;
                objects += 1;
            }
            _ => {}
        }
    }
    if values > MAX_JSON_VALUES || objects > MAX_JSON_OBJECTS {
        return Err(ParseError::Invalid(format!(
            "the body holds more JSON values than hub accepts ({MAX_JSON_VALUES} values, \
             {MAX_JSON_OBJECTS} objects at most)"
        )));
    }
    serde_json::from_slice(body).map_err(|e| ParseError::NotJson(e.to_string()))
}

/// The body as a JSON object, or why not.
pub(crate) fn object(body: &[u8], what: &str) -> Result<Map<String, Value>, ParseError> {
    match json(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ParseError::Invalid(format!(
            "expected a JSON object ({what})"
        ))),
        Err(e) => Err(e),
    }
}

/// Longest problem id and state accepted from any source, so every file name stays within limits.
pub(crate) const MAX_KEY_LEN: usize = 255;

/// A required string field that is present, non-empty and not too long; else a message for it.
pub(crate) fn required_text(
    obj: &Map<String, Value>,
    path: &str,
    key: &str,
    max: usize,
    errors: &mut Vec<String>,
) -> String {
    match obj.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= max => s.clone(),
        Some(Value::String(s)) if !s.trim().is_empty() => {
            errors.push(format!("{path}{key} is longer than {max} characters"));
            String::new()
        }
        Some(Value::String(_)) | None | Some(Value::Null) => {
            errors.push(format!("{path}{key} is missing or blank"));
            String::new()
        }
        Some(_) => {
            errors.push(format!("{path}{key} must be a string"));
            String::new()
        }
    }
}

/// A short, stable id from bytes (for senders that send none).
pub(crate) fn digest_id(bytes: &[u8]) -> String {
    crate::secret::short_sha256(bytes, 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every real delivery of a source kept in `tests/fixtures/<source>/`.
    fn fixtures(source: Source) -> Vec<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(source.as_str());
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                // Beside the deliveries: the headers they came with, and signature vectors.
                name.ends_with(".json")
                    && !name.ends_with(".headers.json")
                    && !name.contains("vectors")
            })
            .collect();
        files.sort();
        files.iter().map(|p| std::fs::read(p).unwrap()).collect()
    }

    #[test]
    fn paths_match_segment_by_segment() {
        let p = "/v2/alerts/<identifier>/close";
        assert!(path_matches(p, "/v2/alerts/a%2Fb/close"));
        for other in [
            "/v2/alerts//close",
            "/v2/alerts/a/b/close",
            "/v2/alerts/a/close/",
            "/v2/alerts/a",
            "/v2/alerts",
        ] {
            assert!(!path_matches(p, other), "{other}");
        }
        assert!(path_matches("/hooks/ucloud", "/hooks/ucloud"));
        assert!(!path_matches("/hooks/ucloud", "/hooks/ucloud2"));
        assert!(Source::Opsgenie.takes("/hooks/opsgenie/v2/alerts/x/acknowledge"));
        assert!(!Source::Opsgenie.takes("/v2/alerts/x/notes"));
    }

    /// No byte string makes any source's parser panic: truncations, mutations and garbage of every
    /// source's real fixtures, plus random bytes, each given to every source.
    #[test]
    fn no_input_panics_any_parser() {
        let headers = Headers(vec![("X-CS-Event-ID".into(), "e-1".into())]);
        let mut rng = fastrand::Rng::with_seed(7);
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for source in Source::ALL {
            let found = fixtures(*source);
            assert!(!found.is_empty(), "no fixture for {source}");
            // The first fixture is a valid delivery of its source.
            assert!(
                source.read(&headers, &found[0]).is_ok(),
                "{source}'s first fixture does not parse"
            );
            for f in found.iter().take(2) {
                for cut in 0..f.len() {
                    inputs.push(f[..cut].to_vec());
                }
                for _ in 0..300 {
                    let mut m = f.to_vec();
                    for _ in 0..rng.usize(1..8) {
                        let i = rng.usize(..m.len());
                        m[i] = rng.u8(..);
                    }
                    inputs.push(m);
                }
            }
        }
        for _ in 0..2000 {
            let len = rng.usize(..256);
            inputs.push((0..len).map(|_| rng.u8(..)).collect());
        }
        for input in &inputs {
            for source in Source::ALL {
                let _ = source.read(&headers, input);
            }
        }
    }
}
