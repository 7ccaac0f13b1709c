//! A span as hub records it: started, given attributes, ended, then handed to the exporter.

use std::borrow::Cow;

use super::SpanContext;

/// OTLP's span kinds (the numbers are the protocol's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Internal = 1,
    /// A request hub answered.
    Server = 2,
    /// A request hub made.
    Client = 3,
}

/// An attribute's value. Names and values known when hub is built are borrowed, not copied:
/// a span is made on the path of every request.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Str(Cow<'static, str>),
    Int(i64),
    List(Vec<String>),
}

impl From<&'static str> for Attr {
    fn from(s: &'static str) -> Attr {
        Attr::Str(Cow::Borrowed(s))
    }
}

impl From<String> for Attr {
    fn from(s: String) -> Attr {
        Attr::Str(Cow::Owned(s))
    }
}

impl From<i64> for Attr {
    fn from(i: i64) -> Attr {
        Attr::Int(i)
    }
}

impl From<usize> for Attr {
    fn from(i: usize) -> Attr {
        Attr::Int(i64::try_from(i).unwrap_or(i64::MAX))
    }
}

impl From<Vec<String>> for Attr {
    fn from(l: Vec<String>) -> Attr {
        Attr::List(l)
    }
}

#[derive(Debug, Clone)]
pub struct Span {
    pub context: SpanContext,
    pub parent: Option<[u8; 8]>,
    pub name: Cow<'static, str>,
    pub kind: Kind,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attributes: Vec<(&'static str, Attr)>,
    /// Set when what the span covers failed: OTLP's status `ERROR` with this message.
    pub error: Option<String>,
}

impl Span {
    /// A span starting now, as a child of `parent` (`None`: the first of its trace).
    pub fn start(
        name: impl Into<Cow<'static, str>>,
        kind: Kind,
        parent: Option<SpanContext>,
    ) -> Span {
        let context = parent.map_or_else(SpanContext::root, |p| p.child());
        Span::with_context(name, kind, context, parent.map(|p| p.span_id))
    }

    /// A span with an id already chosen (see [`SpanContext::derived`]).
    pub fn with_context(
        name: impl Into<Cow<'static, str>>,
        kind: Kind,
        context: SpanContext,
        parent: Option<[u8; 8]>,
    ) -> Span {
        Span {
            context,
            parent,
            name: name.into(),
            kind,
            start_ns: now_ns(),
            end_ns: 0,
            attributes: Vec::new(),
            error: None,
        }
    }

    pub fn set(&mut self, key: &'static str, value: impl Into<Attr>) {
        self.attributes.push((key, value.into()));
    }

    pub fn fail(&mut self, message: impl Into<String>) {
        self.error = Some(message.into());
    }

    /// Ends the span now and hands it to the exporter; a span of an unsampled trace is dropped.
    pub fn end(mut self) {
        self.end_ns = now_ns().max(self.start_ns);
        if self.context.sampled {
            super::export(self);
        }
    }
}

/// Nanoseconds since the Unix epoch, as OTLP counts time.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
