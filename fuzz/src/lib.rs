//! Helpers shared by the fuzz targets: the header-lines input format and the
//! checks every emitted header value must pass.
//!
//! # Input format of the header-map targets
//!
//! `b3_multi`, `propagator_*` (and `cli_decode`, through the CLI's own parser)
//! read their input as HTTP header lines, so that the seeds are readable and
//! libFuzzer's mutations stay meaningful: lines are split on `\n` (a trailing
//! `\r` is dropped), each line on its first `:`; one space after the colon is
//! dropped, everything else is kept byte for byte. Lines without a colon are
//! ignored. Names and values that `http` refuses are skipped when building a
//! [`HeaderMap`], so the map holds exactly what a server could receive.

use b3_propagation::baggage::MAX_BYTES;
use b3_propagation::codec::{b3_multi, b3_single, baggage, grpc_trace_bin, jaeger, traceparent};
use b3_propagation::propagator::MAX_OPAQUE_LEN;
use b3_propagation::request_id::MAX_LEN as REQUEST_ID_MAX_LEN;
use b3_propagation::tracestate::MAX_MEMBERS;
use b3_propagation::{
    Extractor, Propagator, RequestContext, RequestId, Sampling, SpanContext, TraceState, header,
};
use http::{HeaderMap, HeaderName, HeaderValue};

/// The `(name, value)` pairs of the header-lines input, raw.
pub fn header_lines(data: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    data.split(|&b| b == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        Some((name, value.strip_prefix(b" ").unwrap_or(value)))
    })
}

/// A [`HeaderMap`] of the header lines `http` accepts, repeated names appended in order.
pub fn header_map(data: &[u8]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in header_lines(data) {
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            map.append(name, value);
        }
    }
    map
}

/// The lines of the input, split on `\n`, for the codecs that take several field lines.
pub fn lines(data: &[u8]) -> Vec<&[u8]> {
    data.split(|&b| b == b'\n').collect()
}

/// Panic unless every byte is visible ASCII (`0x21..=0x7e`): no space, tab, CR, LF, NUL,
/// DEL or non-ASCII byte.
#[track_caller]
pub fn assert_token(what: &str, value: &[u8]) {
    if let Some(i) = value.iter().position(|&b| !(0x21..=0x7e).contains(&b)) {
        panic!(
            "{what}: byte {:#04x} at {i} is not visible ASCII in {:?}",
            value[i],
            String::from_utf8_lossy(value)
        );
    }
}

/// Panic unless every byte is visible ASCII or a space (`0x20..=0x7e`).
#[track_caller]
pub fn assert_text(what: &str, value: &[u8]) {
    if let Some(i) = value.iter().position(|&b| !(0x20..=0x7e).contains(&b)) {
        panic!(
            "{what}: byte {:#04x} at {i} is not visible ASCII or space in {:?}",
            value[i],
            String::from_utf8_lossy(value)
        );
    }
}

/// A `HeaderMap` seen only through the [`Extractor`] trait, without the one-pass scan the
/// propagator uses for a real `HeaderMap`: both paths must give the same answer.
#[derive(Debug)]
pub struct Plain<'a>(pub &'a HeaderMap);

impl<'b> Extractor for Plain<'b> {
    fn get(&self, name: &HeaderName) -> Option<&[u8]> {
        Extractor::get(self.0, name)
    }

    fn get_all_values<'a>(
        &'a self,
        name: &HeaderName,
    ) -> impl Iterator<Item = &'a [u8]> + use<'a, 'b> {
        self.0.get_all_values(name)
    }

    fn get_value(&self, name: &HeaderName) -> Option<HeaderValue> {
        self.0.get_value(name)
    }

    fn iter_headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.0.iter_headers()
    }
}

/// Panic unless two extractions found the same thing.
#[track_caller]
pub fn assert_same_context(a: &RequestContext, b: &RequestContext) {
    assert_eq!(a.remote(), b.remote(), "remote");
    assert_eq!(a.source(), b.source(), "source");
    assert_eq!(
        a.received_formats(),
        b.received_formats(),
        "received formats"
    );
    assert_eq!(a.tracestate(), b.tracestate(), "tracestate");
    assert_eq!(a.request_id(), b.request_id(), "request id");
    assert_eq!(a.baggage().entries(), b.baggage().entries(), "baggage");
    assert!(a.fields().eq(b.fields()), "fields");
    assert_eq!(a.errors(), b.errors(), "errors");
}

/// Panic unless the span-only extract of a `HeaderMap` (the first format looked up, the
/// others found in one walk, or looked up in a large map) agrees with the plain path: the
/// same context, format and errors.
#[track_caller]
pub fn assert_same_span(p: &Propagator, received: &HeaderMap) {
    let (mut scanned, mut plain) = (Vec::new(), Vec::new());
    assert_eq!(
        p.extract_span(received, |e| scanned.push(e)),
        p.extract_span(&Plain(received), |e| plain.push(e)),
        "extract_span: the scan and the plain path differ"
    );
    assert_eq!(scanned, plain, "extract_span: errors");
}

const PREFIXES: [&str; 3] = ["baggage-", "ot-baggage-", "uberctx-"];

/// Panic unless every header a propagator wrote is one it may write, holds visible ASCII
/// and spaces only, stays within the limits of FACTS.md, and decodes with our own decoder.
/// Returns the span contexts the interpreted context headers carry, by header name.
#[track_caller]
pub fn check_outgoing(out: &HeaderMap) -> Vec<(&'static str, SpanContext)> {
    let mut contexts = Vec::new();
    for (name, value) in out {
        let n = name.as_str();
        let b = value.as_bytes();
        let prefixed = PREFIXES
            .iter()
            .any(|p| n.len() > p.len() && n.starts_with(p));
        if prefixed {
            // A prefixed baggage value is forwarded raw and may hold an HTAB (decode_prefixed
            // accepts `0x20..=0x7e` and HTAB: the policy of tests/security.rs). Nothing else.
            assert_text(
                n,
                &b.iter()
                    .copied()
                    .filter(|&c| c != b'\t')
                    .collect::<Vec<_>>(),
            );
        } else {
            assert_text(n, b);
        }
        assert_eq!(out.get_all(name).iter().count(), 1, "{n} sent twice");
        let len_at_most = |max: usize| assert!(b.len() <= max, "{n} is {} bytes > {max}", b.len());
        match n {
            "b3" => {
                len_at_most(b3_single::MAX_LEN);
                contexts.push(("b3", b3_single::decode(b).expect("b3 we sent decodes")));
            }
            "x-b3-traceid" | "x-b3-spanid" | "x-b3-parentspanid" | "x-b3-sampled"
            | "x-b3-flags" => {}
            "traceparent" => {
                len_at_most(traceparent::MAX_LEN);
                let tp = traceparent::decode(b).expect("traceparent we sent decodes");
                contexts.push(("traceparent", tp.context));
            }
            "tracestate" => {
                let ts = TraceState::parse_lines([b]).expect("tracestate we sent parses");
                assert!(ts.len() <= MAX_MEMBERS);
                assert!(
                    out.contains_key(header::TRACEPARENT),
                    "tracestate without traceparent"
                );
            }
            "baggage" => {
                len_at_most(MAX_BYTES);
                let (_, dropped) = baggage::decode_lines([b]);
                assert!(
                    dropped.is_none(),
                    "baggage we sent has an invalid member: {dropped:?}"
                );
            }
            "x-request-id" => {
                len_at_most(REQUEST_ID_MAX_LEN);
                RequestId::parse(b).expect("x-request-id we sent is valid");
            }
            "uber-trace-id" => {
                len_at_most(jaeger::MAX_LEN);
                contexts.push((
                    "uber-trace-id",
                    jaeger::decode(b).expect("uber-trace-id we sent decodes"),
                ));
            }
            "grpc-trace-bin" => {
                len_at_most(MAX_OPAQUE_LEN);
                if let Ok(cx) = grpc_trace_bin::decode(b) {
                    contexts.push(("grpc-trace-bin", cx));
                }
            }
            "x-ot-span-context"
            | "x-cloud-trace-context"
            | "sw8"
            | "x-datadog-trace-id"
            | "x-datadog-parent-id"
            | "x-datadog-sampling-priority" => {
                len_at_most(MAX_OPAQUE_LEN);
                assert_token(n, b);
            }
            _ => {
                assert!(prefixed, "unexpected header {n}");
                let entry = baggage::decode_prefixed(n, b).expect("a prefixed name");
                entry.expect("prefixed baggage we sent is valid");
            }
        }
    }
    if out.keys().any(|k| k.as_str().starts_with("x-b3-")) {
        let cx = b3_multi::extract(out)
            .expect("some x-b3-* header present")
            .expect("x-b3-* we sent decode");
        contexts.push(("x-b3-*", cx));
    }
    contexts
}

/// Extract, forward and instrument one request with `p`, checking every outgoing header
/// and that forwarding is faithful (the next hop extracts what this one did).
/// Returns the extracted context and the two outgoing header maps (forward, inject).
#[track_caller]
pub fn run_propagator(
    p: &Propagator,
    received: &HeaderMap,
) -> (RequestContext, HeaderMap, HeaderMap) {
    let mut cx = p.extract(received);
    let plain = p.extract(&Plain(received));
    assert_same_context(&cx, &plain);
    // Extracted into a context that held another request's (the server layer's path): the
    // same context, nothing of the old one left.
    let mut into = p.extract(&Plain(received));
    into.ensure_request_id();
    into.set_local(SpanContext::new_root(Sampling::Accept));
    p.extract_into(received, &mut into);
    assert_eq!(into.local(), None, "extract_into kept the old local span");
    assert_same_context(&into, &plain);
    assert_same_span(p, received);
    if let Some(id) = cx.request_id() {
        assert_eq!(received.get(header::X_REQUEST_ID), Some(id.header_value()));
    }

    let mut forwarded = HeaderMap::new();
    p.forward(&cx, &mut forwarded);
    // The map's headers captured in one pass and decoded on demand forward exactly what the
    // plain path, everything decoded at once, does.
    let mut forwarded_plain = HeaderMap::new();
    p.forward(&plain, &mut forwarded_plain);
    assert_eq!(forwarded, forwarded_plain, "forward: the two paths differ");
    check_outgoing(&forwarded);
    let next = p.extract(&forwarded);
    // The context survives forwarding: ids, sampling and trace-id width. (A deferred `b3`
    // that has to be re-encoded loses its parent by policy, FACTS §3.)
    // A sampling-only context whose decision is deferred says nothing: it may vanish.
    let key = |c: Option<&SpanContext>| {
        c.filter(|c| !(c.is_sampling_only() && c.sampling() == Sampling::Deferred))
            .map(|c| {
                (
                    c.trace_id(),
                    c.trace_id().map(|t| t.is_64bit()),
                    c.span_id(),
                    c.sampling(),
                )
            })
    };
    assert_eq!(
        key(next.remote()),
        key(cx.remote()),
        "forward changed the context: {forwarded:?}"
    );
    assert_eq!(
        next.tracestate(),
        cx.tracestate(),
        "forward changed tracestate"
    );
    assert_eq!(
        next.request_id(),
        cx.request_id(),
        "forward changed the request id"
    );
    let w3c = |c: &RequestContext| {
        c.baggage()
            .entries()
            .iter()
            .filter(|e| e.origin == b3_propagation::baggage::BaggageOrigin::W3c)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert!(
        w3c(&cx).starts_with(&w3c(&next)),
        "forward changed the W3C baggage: {forwarded:?}"
    );

    let server = p.server_span(cx.remote());
    if let Some(remote) = cx.remote().filter(|r| !r.is_sampling_only()) {
        assert_eq!(
            server.trace_id(),
            remote.trace_id(),
            "the server span left the trace"
        );
    }
    cx.set_local(server);
    cx.ensure_request_id();
    let client = p.client_span(&server);
    assert_eq!(client.trace_id(), server.trace_id());
    assert_eq!(client.parent_span_id(), server.span_id());
    let mut injected = HeaderMap::new();
    p.inject(&client, &cx, &mut injected);
    let contexts = check_outgoing(&injected);
    for (name, sent) in &contexts {
        if *name == "grpc-trace-bin"
            && !p
                .inject_formats()
                .contains(b3_propagation::ContextFormat::GrpcTraceBin)
        {
            continue; // forwarded verbatim, not this span
        }
        assert_eq!(
            sent.trace_id(),
            client.trace_id(),
            "{name} carries another trace"
        );
        assert_eq!(
            sent.span_id(),
            client.span_id(),
            "{name} carries another span"
        );
    }
    assert!(injected.contains_key(header::X_REQUEST_ID));
    (cx, forwarded, injected)
}

fn is_lower_hex_id(id: &str, len: usize) -> bool {
    id.len() == len
        && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && id.bytes().any(|b| b != b'0')
}

/// Panic unless every span a collector parser returned is normalised (32 lower-hex trace
/// id, 16 lower-hex span id and parent, none all zero), and the collector's Zipkin API view
/// of them ([`collector::zipkin_view`]: a 64-bit trace id at 16 hex, any other at 32, the
/// server half of a shared span `shared: true`) survives a round trip through its own Zipkin
/// v2 JSON back to the stored form.
#[track_caller]
pub fn check_spans(spans: &[collector::ZipkinSpan]) {
    for s in spans {
        assert!(
            is_lower_hex_id(&s.trace_id, 32),
            "trace id {:?}",
            s.trace_id
        );
        assert!(is_lower_hex_id(&s.id, 16), "span id {:?}", s.id);
        if let Some(p) = &s.parent_id {
            assert!(is_lower_hex_id(p, 16), "parent id {p:?}");
        }
    }
    let view = collector::zipkin_view(spans.to_vec());
    assert_eq!(view.len(), spans.len(), "the view keeps every span");
    let mut expected = spans.to_vec();
    for (shown, stored) in view.iter().zip(expected.iter_mut()) {
        let want = stored
            .trace_id
            .strip_prefix("0000000000000000")
            .unwrap_or(&stored.trace_id);
        assert_eq!(shown.trace_id, want, "the view's trace id width");
        assert!(
            is_lower_hex_id(&shown.trace_id, 16) || is_lower_hex_id(&shown.trace_id, 32),
            "shown trace id {:?}",
            shown.trace_id
        );
        assert!(
            !stored.shared || shown.shared,
            "the view never clears a shared flag"
        );
        // Parsing the view restores the stored ids; the shared flag is the view's.
        stored.shared = shown.shared;
    }
    let json = serde_json::to_vec(&view).expect("spans serialise");
    let back = collector::parse_zipkin_json(&json).expect("our own Zipkin JSON parses");
    assert_eq!(
        back,
        expected,
        "Zipkin JSON round trip of {}",
        String::from_utf8_lossy(&json)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lines_split_on_the_first_colon() {
        let pairs: Vec<_> = header_lines(b"b3: 1\r\nno colon\nx:a: b\n").collect();
        assert_eq!(
            pairs,
            vec![(&b"b3"[..], &b"1"[..]), (&b"x"[..], &b"a: b"[..])]
        );
    }
}
