//! `decode --text`: what the headers say, for people: the context and the header it came
//! from, the valid headers that lost to it, and every rejected header by its exact name with
//! the reason.

use std::fmt::Write as _;

use b3_propagation::error::{ErrorKind, Field, ParseError};
use b3_propagation::{Extractor, Format, SpanContext, TraceId, header};

use crate::{CONTEXT_ORDER, Decoded, Headers, Issue, decode_all};

/// The exact header a parse error is about: `x-b3-traceid` rather than `x-b3-*`.
#[must_use]
pub(crate) fn header_of(e: &ParseError) -> &'static str {
    match (e.format(), e.field()) {
        (Format::B3Multi, Some(Field::TraceId)) => "x-b3-traceid",
        (Format::B3Multi, Some(Field::SpanId)) => "x-b3-spanid",
        (Format::B3Multi, Some(Field::ParentSpanId)) => "x-b3-parentspanid",
        (Format::B3Multi, Some(Field::Sampling)) => "x-b3-sampled",
        (f, _) => f.header_name(),
    }
}

/// Why a header was rejected, without the `invalid … header:` prefix of its `Display`.
pub(crate) fn reason(e: &ParseError) -> String {
    if e.format() == Format::B3Multi && e.kind() == ErrorKind::MissingField {
        return match e.field() {
            Some(Field::TraceId) => {
                "missing: x-b3-spanid or x-b3-parentspanid was sent without it".to_owned()
            }
            Some(Field::SpanId) => "missing: x-b3-traceid was sent without it".to_owned(),
            _ => "missing".to_owned(),
        };
    }
    let message = e.to_string();
    let prefix = format!("invalid {} header: ", e.format().header_name());
    let rest = message.strip_prefix(&prefix).unwrap_or(&message);
    match e.field() {
        // The header name says which B3 field; other formats keep the part of the value.
        Some(f) if e.format() == Format::B3Multi => rest
            .strip_prefix(&format!("{f}: "))
            .unwrap_or(rest)
            .to_owned(),
        _ => rest.to_owned(),
    }
}

/// The headers a winning context was read from.
fn source_headers(h: &Headers, f: Format) -> String {
    if f != Format::B3Multi {
        return f.header_name().to_owned();
    }
    let present: Vec<String> = [
        header::X_B3_TRACE_ID,
        header::X_B3_SPAN_ID,
        header::X_B3_PARENT_SPAN_ID,
        header::X_B3_SAMPLED,
        header::X_B3_FLAGS,
    ]
    .iter()
    .filter(|n| h.get(n).is_some())
    .map(|n| n.as_str().to_owned())
    .collect();
    present.join(", ")
}

fn context_lines(out: &mut String, cx: &SpanContext) {
    match cx.trace_id() {
        Some(t) => {
            let width = if t.is_64bit() { "64-bit" } else { "128-bit" };
            let _ = writeln!(out, "  trace id        {} ({width})", t.to_hex32());
        }
        None => {
            let _ = writeln!(out, "  trace id        none (a sampling decision only)");
        }
    }
    let id = |v: Option<String>| v.unwrap_or_else(|| "none".to_owned());
    let _ = writeln!(
        out,
        "  span id         {}",
        id(cx.span_id().map(|s| s.to_string()))
    );
    let _ = writeln!(
        out,
        "  parent span id  {}",
        id(cx.parent_span_id().map(|s| s.to_string()))
    );
    let _ = writeln!(out, "  sampling        {}", cx.sampling().as_str());
}

/// How a valid context that lost compares with the winner.
fn compared(lost: &Decoded, won: &Decoded) -> String {
    let (l, w) = (&lost.context, &won.context);
    let hex =
        |t: Option<TraceId>| t.map_or_else(|| "none".to_owned(), |t| t.to_hex32().to_string());
    if l.trace_id() != w.trace_id() {
        format!(
            "it names another trace, {}: the senders disagree (a proxy that read only one \
             format started a trace of its own)",
            hex(l.trace_id())
        )
    } else if l.span_id() != w.span_id() {
        format!(
            "same trace, another span id ({}): one of them was not updated at the last hop",
            l.span_id()
                .map_or_else(|| "none".to_owned(), |s| s.to_string())
        )
    } else {
        "it agrees with it".to_owned()
    }
}

/// `decode --text`: the context and where it came from, the valid headers that were ignored
/// (a format earlier in the order won) and each rejected header, by its exact name, with the
/// reason; then tracestate, baggage and the request id.
#[must_use]
pub fn decode_text(h: &Headers, only: Option<Format>) -> String {
    let d = decode_all(h, only);
    let mut out = String::new();
    match &d.context {
        Some(c) => {
            let _ = writeln!(
                out,
                "context: from {} ({})",
                source_headers(h, c.format),
                c.format.name()
            );
            context_lines(&mut out, &c.context);
            if c.format == Format::TraceParent {
                let _ = writeln!(
                    out,
                    "  trace flags     {} (version {:02x})",
                    c.context.trace_flags(),
                    c.version.unwrap_or(0)
                );
            }
        }
        None => {
            let _ = writeln!(out, "context: none (no valid trace header)");
        }
    }
    if let Some(won) = &d.context {
        let order: Vec<&str> = CONTEXT_ORDER
            .iter()
            .map(|f| match f {
                Format::B3Multi => "x-b3-traceid/x-b3-spanid",
                f => f.header_name(),
            })
            .collect();
        for lost in &d.ignored {
            let _ = writeln!(
                out,
                "ignored: {}: valid, but {} comes first (the first valid wins, in the order {}); {}",
                source_headers(h, lost.format),
                source_headers(h, won.format),
                order.join(", "),
                compared(lost, won)
            );
        }
    }
    for issue in &d.errors {
        match issue {
            Issue::Parse(e) => {
                let _ = writeln!(
                    out,
                    "rejected: {}: {} [{}]",
                    header_of(e),
                    reason(e),
                    e.kind().as_str()
                );
            }
            Issue::TracestateWithoutTraceparent => {
                let _ = writeln!(
                    out,
                    "rejected: tracestate: discarded, there is no valid traceparent [no_traceparent]"
                );
            }
            Issue::Prefixed(name, Some(e)) => {
                let _ = writeln!(
                    out,
                    "rejected: {name}: {} [{}]",
                    reason(e),
                    e.kind().as_str()
                );
            }
            Issue::Prefixed(name, None) => {
                let _ = writeln!(out, "rejected: {name}: no key after the prefix [empty]");
            }
        }
    }
    if let Some(ts) = &d.tracestate {
        let members: Vec<String> = ts.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(
            out,
            "tracestate: {}",
            if members.is_empty() {
                "none".to_owned()
            } else {
                members.join(",")
            }
        );
    }
    if !d.baggage.is_empty() {
        let entries: Vec<String> = d
            .baggage
            .iter()
            .map(|e| format!("{}={}", e.key, e.value))
            .collect();
        let _ = writeln!(out, "baggage: {}", entries.join(", "));
    }
    match &d.request_id {
        Some(id) => {
            let sampling = id
                .stable_sampling_value()
                .map_or_else(|| "none".to_owned(), |v| v.to_string());
            let _ = writeln!(
                out,
                "request id: {} (Envoy reads trace reason {}, stable sampling value {sampling})",
                id.as_str(),
                id.trace_reason().as_str(),
            );
        }
        None if only.is_none_or(|f| f == Format::RequestId) => {
            let _ = writeln!(out, "request id: none");
        }
        None => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(lines: &[&str]) -> String {
        let mut h = Headers::default();
        for l in lines {
            h.push_line(l).unwrap();
        }
        decode_text(&h, None)
    }

    #[test]
    fn the_exact_b3_header_is_named() {
        let out = text(&[
            "x-b3-traceid: 80f198ee56343ba864fe8b2a57d3eff7",
            "x-b3-spanid: E457B5A2E4D86BD1",
            "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ]);
        assert!(
            out.contains("rejected: x-b3-spanid: invalid character 'E' at byte 0"),
            "{out}"
        );
        assert!(out.contains("context: from traceparent"), "{out}");
        assert!(!out.contains("x-b3-*"), "{out}");
    }

    #[test]
    fn a_valid_header_that_lost_says_why() {
        let out = text(&[
            "b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1",
            "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "x-request-id: 3d48b776-a796-92d9-8cd9-55cf73e43c5e",
        ]);
        assert!(out.contains("context: from b3 (b3-single)"), "{out}");
        assert!(
            out.contains("ignored: traceparent: valid, but b3 comes first"),
            "{out}"
        );
        assert!(
            out.contains("another trace, 0af7651916cd43dd8448eb211c80319c"),
            "{out}"
        );
        assert!(
            out.contains("request id: 3d48b776-a796-92d9-8cd9-55cf73e43c5e"),
            "{out}"
        );
    }

    #[test]
    fn missing_b3_fields_are_named() {
        let out = text(&["x-b3-traceid: 80f198ee56343ba864fe8b2a57d3eff7"]);
        assert!(
            out.contains("rejected: x-b3-spanid: missing: x-b3-traceid was sent without it"),
            "{out}"
        );
        let out = text(&["tracestate: a=b"]);
        assert!(out.contains("rejected: tracestate"), "{out}");
        assert!(out.contains("context: none"), "{out}");
    }
}
