//! W3C Trace Context: the `traceparent` header a sender may send, that hub keeps with a
//! notification, and that hub sends on with the requests its actions make.
//!
//! Written here rather than taken from a tracing SDK: the format is one line of fixed fields
//! (<https://www.w3.org/TR/trace-context/#traceparent-header>), and hub needs only to read it,
//! write it and make ids.

use sha2::{Digest, Sha256};

/// Where a span sits: its trace, its own id, and whether the trace is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The `sampled` flag: a sender that does not record its trace gets no spans from hub either,
    /// though its ids are still sent on.
    pub sampled: bool,
}

impl SpanContext {
    /// A `traceparent` value, or `None` for anything else: a receiver that cannot read the header
    /// starts a trace of its own, as the recommendation says.
    pub fn parse(header: &str) -> Option<SpanContext> {
        let header = header.trim();
        let bytes = header.as_bytes();
        if bytes.len() < 55 || !header.is_ascii() {
            return None;
        }
        let version = hex_field::<1>(&header[0..2])?;
        match version[0] {
            // Version 255 is forbidden; version 00 is exactly 55 characters.
            0xff => return None,
            0x00 if bytes.len() != 55 => return None,
            // A later version may add fields after a dash; its first four read as version 00's.
            _ if bytes.len() > 55 && bytes[55] != b'-' => return None,
            _ => {}
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let trace_id = hex_field::<16>(&header[3..35])?;
        let span_id = hex_field::<8>(&header[36..52])?;
        let flags = hex_field::<1>(&header[53..55])?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(SpanContext {
            trace_id,
            span_id,
            sampled: flags[0] & 1 == 1,
        })
    }

    /// The header value naming this span as the parent.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{}",
            hex(&self.trace_id),
            hex(&self.span_id),
            if self.sampled { "01" } else { "00" }
        )
    }

    /// The first span of a new trace.
    pub fn root() -> SpanContext {
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&nonzero_u64().to_be_bytes());
        trace_id[8..].copy_from_slice(&fastrand::u64(..).to_be_bytes());
        SpanContext {
            trace_id,
            span_id: nonzero_u64().to_be_bytes(),
            sampled: true,
        }
    }

    /// A new span in the same trace.
    pub fn child(&self) -> SpanContext {
        SpanContext {
            span_id: nonzero_u64().to_be_bytes(),
            ..*self
        }
    }

    /// A span of this trace whose id anyone holding this context and `label` finds again: the
    /// routing of a stored notification, which the runs made from it (later, perhaps in another
    /// instance) name as their parent without its id being stored.
    pub fn derived(&self, label: &[u8]) -> SpanContext {
        let digest = Sha256::new()
            .chain_update(self.trace_id)
            .chain_update(self.span_id)
            .chain_update(label)
            .finalize();
        let mut span_id = [0u8; 8];
        span_id.copy_from_slice(&digest[..8]);
        if span_id == [0; 8] {
            span_id[7] = 1;
        }
        SpanContext { span_id, ..*self }
    }
}

fn nonzero_u64() -> u64 {
    fastrand::u64(1..)
}

/// Lower-case hex only: the recommendation's `HEXDIGLC`.
fn hex_field<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in text.as_bytes().chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

pub fn hex(bytes: &[u8]) -> String {
    crate::secret::hex(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIVEN: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_reads_and_writes_back_the_same() {
        let c = SpanContext::parse(GIVEN).expect("valid");
        assert_eq!(hex(&c.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&c.span_id), "00f067aa0ba902b7");
        assert!(c.sampled);
        assert_eq!(c.traceparent(), GIVEN);
        let unsampled = SpanContext::parse(&GIVEN.replace("-01", "-00")).expect("valid");
        assert!(!unsampled.sampled);
        assert!(unsampled.traceparent().ends_with("-00"));
    }

    #[test]
    fn a_later_version_is_read_by_its_first_fields() {
        let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next";
        let c = SpanContext::parse(later).expect("a later version is read");
        assert_eq!(c.traceparent(), GIVEN);
        assert!(SpanContext::parse(&format!("{}x", &later[..55])).is_none());
    }

    #[test]
    fn anything_else_is_no_traceparent() {
        for bad in [
            "",
            "$(touch x)",
            "../../etc/passwd",
            "<script>alert(1)</script>",
            // upper case, version ff, all-zero ids, a version 00 with more after it
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01",
        ] {
            assert_eq!(SpanContext::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn children_keep_the_trace_and_derived_ids_are_found_again() {
        let root = SpanContext::root();
        assert_ne!(root.trace_id, [0; 16]);
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
        assert_eq!(root.derived(b"route 7"), root.derived(b"route 7"));
        assert_ne!(root.derived(b"route 7"), root.derived(b"route 8"));
        assert_eq!(root.derived(b"route 7").trace_id, root.trace_id);
        assert_eq!(
            SpanContext::parse(&child.traceparent()),
            Some(child),
            "what hub writes, it reads"
        );
    }
}
