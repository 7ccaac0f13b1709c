//! The normalized notification every source produces and the store keeps.

/// The monitoring system a notification came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Dynatrace,
}

impl Source {
    pub const ALL: &'static [Source] = &[Source::Dynatrace];

    pub fn parse(name: &str) -> Option<Source> {
        Source::ALL.iter().copied().find(|s| s.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Dynatrace => "dynatrace",
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One notification as received: who sent it, which problem and state it speaks of, and the raw
/// body byte for byte (the store keeps the bytes; the fields are what hub needs to act on them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub source: Source,
    /// The problem's identity within its source (Dynatrace: `ProblemID`).
    pub problem_key: String,
    /// The state the notification reports (Dynatrace: `OPEN`, `RESOLVED`, …).
    pub state: String,
    /// Dynatrace's internal problem id, the one its API takes.
    pub pid: Option<String>,
    pub title: Option<String>,
    /// A sender's self-test: stored and answered, never acted on.
    pub is_test: bool,
    pub body: Vec<u8>,
}
