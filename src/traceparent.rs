//! W3C Trace Context `traceparent`: parsed and formatted in one place. A leaf module.

use crate::ids::{SpanId, TraceId};

/// The name of the span field that carries a remote parent: a W3C `traceparent`
/// (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`), given when a root span is created.
///
/// The span joins the remote trace (its trace id, with the remote span as its parent and
/// `parent_is_remote` set), and the parent-based samplers follow the remote sampled flag
/// (bit `01` of the flags). An invalid value is ignored: the span starts a new trace, as the
/// W3C Trace Context specification says. The field is only read on spans without a local
/// parent. Recording it later (`span.record("traceparent", header)`, on a span that declared
/// the field as `traceparent = tracing::field::Empty`) does what
/// [`OffloadSpanExt::set_parent_traceparent`](crate::OffloadSpanExt::set_parent_traceparent)
/// does; `tracing` drops a recorded value for a field the span did not declare.
///
/// ```
/// use tracing_offload::TRACEPARENT_FIELD;
/// assert_eq!(TRACEPARENT_FIELD, "traceparent");
/// let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// let _span = tracing::info_span!("request", traceparent = header);
/// ```
pub const TRACEPARENT_FIELD: &str = "traceparent";

/// A parent span in another process, from a W3C `traceparent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RemoteParent {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) sampled: bool,
}

/// Parses a W3C `traceparent` (Trace Context level 1): version `00` is exactly 55 characters;
/// a higher version may carry more after a `-`; version `ff`, upper-case hex and all-zero ids
/// are invalid.
pub(crate) fn parse_traceparent(s: &str) -> Option<RemoteParent> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 55 {
        return None;
    }
    // Check bytes before slicing: the first 55 are then ASCII, so the slices below are on
    // char boundaries whatever the input.
    let well_formed = b[..55].iter().enumerate().all(|(i, c)| match i {
        2 | 35 | 52 => *c == b'-',
        _ => matches!(c, b'0'..=b'9' | b'a'..=b'f'),
    });
    if !well_formed {
        return None;
    }
    let (version, trace, span, flags) = (&s[..2], &s[3..35], &s[36..52], &s[53..55]);
    match version {
        "ff" => return None,
        "00" if b.len() != 55 => return None,
        _ if b.len() > 55 && b[55] != b'-' => return None,
        _ => {}
    }
    let trace_id = TraceId::from_hex(trace).filter(|t| t.is_valid())?;
    let span_id = SpanId::from_hex(span).filter(|s| s.is_valid())?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(RemoteParent {
        trace_id,
        span_id,
        sampled: flags & 1 == 1,
    })
}

/// Formats a W3C `traceparent` (version `00`): `00-<trace id>-<span id>-<flags>`, the flags
/// `01` when sampled and `00` when not.
pub(crate) fn format_traceparent(trace_id: TraceId, span_id: SpanId, sampled: bool) -> String {
    let mut out = String::with_capacity(55);
    out.push_str("00-");
    out.push_str(std::str::from_utf8(&trace_id.to_hex()).unwrap_or_default());
    out.push('-');
    out.push_str(std::str::from_utf8(&span_id.to_hex()).unwrap_or_default());
    out.push_str(if sampled { "-01" } else { "-00" });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_follows_w3c_trace_context() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let p = parse_traceparent(ok).unwrap();
        assert_eq!(p.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.span_id.to_string(), "00f067aa0ba902b7");
        assert!(p.sampled);
        assert!(
            !parse_traceparent(&ok.replace("-01", "-00"))
                .unwrap()
                .sampled
        );
        assert!(
            parse_traceparent(&ok.replace("-01", "-03"))
                .unwrap()
                .sampled
        );
        // A later version may carry more fields.
        assert!(parse_traceparent(&format!("01{}-extra", &ok[2..])).is_some());
        for bad in [
            "",
            "garbage",
            &ok[..54],
            &format!("{ok}-extra"),
            &format!("ff{}", &ok[2..]),
            &ok.to_uppercase(),
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473é-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0é",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01é",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_formatted_traceparent_parses_back() {
        let t = TraceId::from_u128(0x4bf92f3577b34da6a3ce929d0e0e4736);
        let s = SpanId::from_u64(0x00f067aa0ba902b7);
        for sampled in [true, false] {
            let header = format_traceparent(t, s, sampled);
            assert_eq!(header.len(), 55);
            let p = parse_traceparent(&header).unwrap();
            assert_eq!((p.trace_id, p.span_id, p.sampled), (t, s, sampled));
        }
    }
}
