//! How the pages write ids in links and spans of time, shared by the status page's views.

use std::fmt::Write;

use crate::domain::Source;

/// Percent-encodes everything but unreserved characters, for ids in links.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        // '.' too: a segment of dots would be read as a path step by the browser.
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

pub fn problem_link(source: Source, key: &str) -> String {
    format!("/problems/{}?source={source}", encode(key))
}

/// A span of seconds as a person reads it at a glance: "4m 10s", "3h 2m", "2d 5h".
pub fn short_span(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60);
    match (d, h) {
        (0, 0) => format!("{m}m {}s", secs % 60),
        (0, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}
