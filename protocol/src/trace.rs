//! W3C trace context (`traceparent`): what a producer stores with a task so
//! that the supervisor's spans of its wait and its run join the producer's
//! trace (docs/tracing-and-errors.md).

use std::fmt;

/// A parsed `traceparent` header value: version `00`, a 16-byte trace id
/// and an 8-byte parent span id in lowercase hex, and the trace flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    /// 32 lowercase hex digits, not all zero.
    pub trace_id: String,
    /// 16 lowercase hex digits, not all zero: the span this one is a child of.
    pub parent_id: String,
    /// 2 hex digits (`01`: sampled).
    pub flags: String,
}

impl TraceParent {
    /// Reads `00-<trace id>-<parent id>-<flags>`; anything else is refused
    /// with the reason.
    pub fn parse(text: &str) -> Result<TraceParent, String> {
        let parts: Vec<&str> = text.split('-').collect();
        let [version, trace_id, parent_id, flags] = parts.as_slice() else {
            return Err("not four fields 00-TRACEID-PARENTID-FLAGS".to_owned());
        };
        let hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if *version != "00" {
            return Err(format!("version {version:?} is not 00"));
        }
        if !hex(trace_id, 32) || trace_id.bytes().all(|b| b == b'0') {
            return Err(
                "the trace id is not 32 lowercase hex digits (and not all zero)".to_owned(),
            );
        }
        if !hex(parent_id, 16) || parent_id.bytes().all(|b| b == b'0') {
            return Err(
                "the parent id is not 16 lowercase hex digits (and not all zero)".to_owned(),
            );
        }
        if !hex(flags, 2) {
            return Err("the flags are not 2 hex digits".to_owned());
        }
        Ok(TraceParent {
            trace_id: (*trace_id).to_owned(),
            parent_id: (*parent_id).to_owned(),
            flags: (*flags).to_owned(),
        })
    }

    /// The same trace with `span_id` as the parent: what a child of span
    /// `span_id` is given.
    pub fn child_of(&self, span_id: &str) -> TraceParent {
        TraceParent {
            parent_id: span_id.to_owned(),
            ..self.clone()
        }
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{}-{}-{}", self.trace_id, self.parent_id, self.flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_w3c_traceparent_is_read_and_written_back() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tp = TraceParent::parse(text).expect("valid");
        assert_eq!(tp.to_string(), text);
        assert_eq!(
            tp.child_of("1111111111111111").to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01"
        );
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        ] {
            assert!(TraceParent::parse(bad).is_err(), "{bad}");
        }
    }
}
