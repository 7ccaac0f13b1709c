//! One module per monitoring system: pure functions from request bytes to notifications, no I/O.

pub mod dynatrace;

/// Why a body was refused; the web layer maps each kind to its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON at all (400).
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    /// JSON, but not the shape this source sends (422).
    #[error("{0}")]
    Invalid(String),
}

/// Parses a body as the named source sends it (for `hub explain`; the web layer calls each source's
/// own parser behind its endpoint).
pub fn parse(
    source: crate::domain::Source,
    body: &[u8],
) -> Result<crate::domain::Notification, ParseError> {
    match source {
        crate::domain::Source::Dynatrace => dynatrace::parse(body),
    }
}
