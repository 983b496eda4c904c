//! Unit tests of the propagator.

use http::{HeaderMap, HeaderValue};

use super::*;
use crate::codec::b3_single;
use crate::codec::grpc_trace_bin::{self, is_base64};
use crate::context::SpanContext;
use crate::error::ErrorKind;
use crate::header;
use crate::request_context::RequestContext;

fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_static(v));
    }
    h
}

#[test]
fn from_otel_propagators() {
    let p = Propagator::from_otel_propagators("tracecontext, baggage").unwrap();
    assert_eq!(p.extract_order(), &[ContextFormat::TraceParent]);
    assert!(p.config.baggage);
    let p = Propagator::from_otel_propagators("b3multi,jaeger").unwrap();
    assert_eq!(
        p.extract_order(),
        &[
            ContextFormat::B3Single,
            ContextFormat::B3Multi,
            ContextFormat::Jaeger
        ]
    );
    assert!(p.inject_formats().contains(ContextFormat::B3Multi));
    assert!(!p.inject_formats().contains(ContextFormat::B3Single));
    assert!(!p.config.baggage);
    let p = Propagator::from_otel_propagators("none").unwrap();
    assert!(p.extract_order().is_empty());
    let e = Propagator::from_otel_propagators("tracecontext,xray").unwrap_err();
    assert_eq!(e.name(), "xray");
    assert!(e.to_string().contains("`xray`"));
    assert_eq!(
        Propagator::from_otel_propagators(" ")
            .unwrap()
            .extract_order()
            .len(),
        3
    );
}

#[test]
fn forward_is_verbatim() {
    let p = Propagator::default();
    let incoming = map(&[
        ("x-b3-traceid", "48485a3953bb6124"),
        ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ("x-b3-sampled", "1"),
        (
            "traceparent",
            "00-000000000000000048485a3953bb6124-a2fb4a1d1a96d312-01",
        ),
        ("tracestate", "a=1 , b=2"),
        ("x-request-id", "rid-1"),
        ("x-ot-span-context", "EhQJnDGAHCHrSIQRMTMgaXFrrbcYAQ=="),
        ("baggage", "k=v%20w"),
    ]);
    let cx = p.extract(&incoming);
    assert!(cx.errors().is_empty(), "{:?}", cx.errors());
    let mut out = HeaderMap::new();
    p.forward(&cx, &mut out);
    for name in [
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-sampled",
        "traceparent",
        "x-request-id",
        "x-ot-span-context",
        "baggage",
    ] {
        assert_eq!(out.get(name), incoming.get(name), "{name}");
    }
    assert_eq!(out["tracestate"], "a=1,b=2");
    assert!(out.get("x-b3-parentspanid").is_none());
}

#[test]
fn invalid_formats_are_not_forwarded() {
    let p = Propagator::default();
    let incoming = map(&[
        ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
        ("x-b3-traceid", "garbage"),
        ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ("x-ot-span-context", "bad value"),
    ]);
    let cx = p.extract(&incoming);
    assert_eq!(cx.errors().len(), 2);
    let mut out = HeaderMap::new();
    p.forward(&cx, &mut out);
    assert_eq!(out["b3"], incoming["b3"]);
    assert!(out.get("x-b3-traceid").is_none());
    assert!(out.get("x-ot-span-context").is_none());
}

#[test]
fn ignored_values_are_not_forwarded_verbatim() {
    let p = Propagator::builder()
        .extract([
            ContextFormat::B3Multi,
            ContextFormat::TraceParent,
            ContextFormat::Jaeger,
        ])
        .build();
    let mut incoming = map(&[
        ("x-b3-sampled", "1"),
        ("x-b3-spanid", "not-an-id"),
        ("x-b3-flags", "2"),
        (
            "traceparent",
            "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future",
        ),
    ]);
    incoming.insert(
        "uber-trace-id",
        HeaderValue::from_bytes(b"0af7651916cd43dd8448eb211c80319c:b7ad6b7169203331:\xff:1")
            .unwrap(),
    );
    let cx = p.extract(&incoming);
    assert!(cx.errors().is_empty(), "{:?}", cx.errors());
    let mut out = HeaderMap::new();
    p.forward(&cx, &mut out);
    assert_eq!(out["x-b3-sampled"], "1");
    assert!(out.get("x-b3-spanid").is_none());
    assert!(out.get("x-b3-flags").is_none());
    assert_eq!(
        out["traceparent"],
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    assert_eq!(
        out["uber-trace-id"],
        "0af7651916cd43dd8448eb211c80319c:b7ad6b7169203331:0:1"
    );
}

#[test]
fn untrusted_edge_re_encodes_without_forcing() {
    let p = Propagator::builder()
        .trust(TrustPolicy::untrusted())
        .build();
    let incoming = map(&[
        ("x-b3-traceid", "48485a3953bb6124"),
        ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ("x-b3-flags", "1"),
        ("x-request-id", "4f9cf65f-1b6a-4c3b-8d0e-2a7c9b1e5d43"),
    ]);
    let cx = p.extract(&incoming);
    assert_eq!(cx.remote().unwrap().sampling(), Sampling::Deferred);
    assert!(cx.request_id().is_none());
    let mut out = HeaderMap::new();
    p.forward(&cx, &mut out);
    assert_eq!(out["x-b3-traceid"], "48485a3953bb6124");
    assert!(out.get("x-b3-flags").is_none());
    assert!(out.get("x-b3-sampled").is_none());
}

#[test]
fn untrusted_sampling_only_forwards_this_hops_trace() {
    let p = Propagator::builder()
        .trust(TrustPolicy::untrusted())
        .build();
    for incoming in [map(&[("b3", "0")]), map(&[("x-b3-flags", "1")])] {
        let mut cx = p.extract(&incoming);
        let server = p.server_span(cx.remote());
        cx.set_local(server);
        let mut out = HeaderMap::new();
        p.forward(&cx, &mut out);
        let trace = server.trace_id().unwrap().to_string();
        let sent = out
            .get("b3")
            .or(out.get("x-b3-traceid"))
            .unwrap()
            .to_str()
            .unwrap();
        assert!(sent.starts_with(&trace), "{sent} vs {trace}");
        assert!(out.get("x-b3-sampled").is_none() && out.get("x-b3-flags").is_none());
    }
}

#[test]
fn trusted_sampling_only_with_a_local_span_forwards_that_span() {
    // A caller that sent only its decision, at a hop with a span of its own: the calls name
    // that span, with the caller's decision, in the decision's format; without a local span
    // (a transparent hop) the decision goes on as it came.
    let p = Propagator::default();
    for (incoming, sampled) in [
        (map(&[("b3", "1")]), Some("1")),
        (map(&[("b3", "d")]), Some("d")),
        (map(&[("x-b3-sampled", "1")]), Some("1")),
        (map(&[("x-b3-sampled", "0")]), Some("0")),
    ] {
        let mut cx = p.extract(&incoming);
        let mut transparent = HeaderMap::new();
        p.forward(&cx, &mut transparent);
        assert_eq!(
            transparent, incoming,
            "a transparent hop re-sends it as it came"
        );
        let server = p.server_span(cx.remote());
        cx.set_local(server);
        let mut out = HeaderMap::new();
        p.forward(&cx, &mut out);
        let trace = server.trace_id().unwrap().to_string();
        let span = server.span_id().unwrap().to_string();
        match out.get("b3") {
            Some(b3) => {
                let b3 = b3.to_str().unwrap();
                assert!(b3.starts_with(&format!("{trace}-{span}")), "{b3}");
                assert!(b3.ends_with(&format!("-{}", sampled.unwrap())), "{b3}");
            }
            None => {
                assert_eq!(out["x-b3-traceid"], trace.as_str(), "{out:?}");
                assert_eq!(out["x-b3-spanid"], span.as_str(), "{out:?}");
                assert_eq!(
                    out.get("x-b3-sampled").map(|v| v.to_str().unwrap()),
                    sampled,
                    "{out:?}"
                );
            }
        }
    }
}

#[test]
fn forward_sends_b3_only_in_forms_its_peers_read() {
    let p = Propagator::default();
    let forward = |pairs: &[(&'static str, &'static str)]| {
        let cx = p.extract(&map(pairs));
        let mut out = HeaderMap::new();
        p.forward(&cx, &mut out);
        out
    };
    const T: &str = "80f198ee56343ba864fe8b2a57d3eff7";
    const S: &str = "e457b5a2e4d86bd1";
    // A zero parent is no parent.
    let out = forward(&[
        ("x-b3-traceid", T),
        ("x-b3-spanid", S),
        ("x-b3-parentspanid", "0000000000000000"),
        ("x-b3-sampled", "1"),
    ]);
    assert!(out.get("x-b3-parentspanid").is_none(), "{out:?}");
    assert_eq!(out["x-b3-sampled"], "1");
    // Debug wins over `x-b3-sampled: 0`, which is not sent beside it.
    let out = forward(&[
        ("x-b3-traceid", T),
        ("x-b3-spanid", S),
        ("x-b3-sampled", "0"),
        ("x-b3-flags", "1"),
    ]);
    assert_eq!(out["x-b3-flags"], "1");
    assert!(out.get("x-b3-sampled").is_none(), "{out:?}");
    // Legacy `True` goes on as `1`.
    let out = forward(&[
        ("x-b3-traceid", T),
        ("x-b3-spanid", S),
        ("x-b3-sampled", "True"),
    ]);
    assert_eq!(out["x-b3-traceid"], T);
    assert_eq!(out["x-b3-spanid"], S);
    assert_eq!(out["x-b3-sampled"], "1", "{out:?}");
    // A legacy decision alone goes on as it came, beside a caller's `traceparent`.
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let alone = [("x-b3-sampled", "true"), ("traceparent", tp)];
    assert_eq!(forward(&alone), map(&alone));
    // `{t}-{s}-{p}` goes on as `{t}-{s}`.
    let b3 = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-05e3ac9a4f6e3b90";
    let out = forward(&[("b3", b3)]);
    assert_eq!(out["b3"], format!("{T}-{S}").as_str(), "{out:?}");
    // Canonical values still go on byte for byte.
    let canonical = [
        ("x-b3-traceid", T),
        ("x-b3-spanid", S),
        ("x-b3-parentspanid", "05e3ac9a4f6e3b90"),
        ("x-b3-sampled", "1"),
    ];
    assert_eq!(forward(&canonical), map(&canonical));
}

#[test]
fn an_untrusted_edge_drops_the_clients_baggage() {
    let incoming = map(&[
        ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
        ("x-b3-spanid", "e457b5a2e4d86bd1"),
        ("baggage", "end-user=jason,tenant=blue"),
        ("baggage-user-agent", "Netscape"),
        ("uberctx-plan", "gold"),
    ]);
    let edge = Propagator::builder()
        .trust(TrustPolicy::untrusted())
        .prefixed_baggage(true)
        .build();
    let mut cx = edge.extract(&incoming);
    assert!(cx.rest().baggage.is_empty(), "{:?}", cx.rest().baggage);
    assert!(
        cx.errors().is_empty(),
        "a policy, not an error: {:?}",
        cx.errors()
    );
    // What the application sets at the edge still travels.
    cx.baggage_mut().set("region", "eu").unwrap();
    for forward in [true, false] {
        let mut out = HeaderMap::new();
        if forward {
            edge.forward(&cx, &mut out);
        } else {
            let span = edge.server_span(cx.remote());
            edge.inject(&span, &cx, &mut out);
        }
        assert_eq!(out["baggage"], "region=eu", "{out:?}");
        assert!(out.get("baggage-user-agent").is_none(), "{out:?}");
        assert!(out.get("uberctx-plan").is_none(), "{out:?}");
    }
    // Kept when the edge says so, and inside the mesh.
    for p in [
        Propagator::builder()
            .trust(TrustPolicy::untrusted().baggage(crate::InboundBaggage::Keep))
            .prefixed_baggage(true)
            .build(),
        Propagator::builder().prefixed_baggage(true).build(),
    ] {
        let cx = p.extract(&incoming);
        let keys: Vec<&str> = cx
            .rest()
            .baggage
            .entries()
            .iter()
            .map(|e| e.key.as_str())
            .collect();
        assert_eq!(keys, ["end-user", "tenant", "user-agent", "plan"]);
    }
}

#[test]
fn the_random_flag_goes_on_with_a_b3_winner_of_the_same_trace() {
    // Envoy's USE_B3_WITH_W3C_PROPAGATION: B3 and traceparent of one trace; B3 wins.
    let p = Propagator::default();
    let with = |flags: &str, trace: &str| {
        let mut headers = map(&[
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-sampled", "1"),
        ]);
        let tp = format!("00-{trace}-e457b5a2e4d86bd1-{flags}");
        headers.insert("traceparent", HeaderValue::from_str(&tp).unwrap());
        let cx = p.extract(&headers);
        let child = cx.remote().unwrap().child();
        let mut out = HeaderMap::new();
        p.inject(&child, &cx, &mut out);
        out["traceparent"].to_str().unwrap().to_owned()
    };
    const SAME: &str = "80f198ee56343ba864fe8b2a57d3eff7";
    assert!(with("03", SAME).ends_with("-03"), "kept");
    assert!(with("01", SAME).ends_with("-01"));
    // Another trace's flag says nothing of this one.
    assert!(with("03", "0af7651916cd43dd8448eb211c80319c").ends_with("-01"));
    assert!(super::extract::raw_random_bit(Some(
        b"00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-03"
    )));
    assert!(!super::extract::raw_random_bit(Some(
        b"00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-01"
    )));
    assert!(!super::extract::raw_random_bit(Some(b"00-short")));
    assert!(!super::extract::raw_random_bit(None));
    // Leading OWS, which the decoder tolerates, is skipped.
    assert!(super::extract::raw_random_bit(Some(
        b"  00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-03"
    )));
}

/// A carrier that is not a `HeaderMap`: the plain path, one lookup per name.
struct Plain<'a>(&'a HeaderMap);

impl<'b> crate::carrier::Extractor for Plain<'b> {
    fn get(&self, name: &http::HeaderName) -> Option<&[u8]> {
        crate::carrier::Extractor::get(self.0, name)
    }

    fn get_all_values<'a>(
        &'a self,
        name: &http::HeaderName,
    ) -> impl Iterator<Item = &'a [u8]> + use<'a, 'b> {
        crate::carrier::Extractor::get_all_values(self.0, name)
    }

    fn iter_headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        crate::carrier::Extractor::iter_headers(self.0)
    }
}

#[test]
fn extract_span_takes_the_random_flag_as_extract_does() {
    let p = Propagator::default();
    const SAME: &str = "80f198ee56343ba864fe8b2a57d3eff7";
    let random = |tp: &str, padding: usize| {
        let mut headers = map(&[
            ("x-b3-traceid", SAME),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-sampled", "1"),
        ]);
        headers.insert("traceparent", HeaderValue::from_str(tp).unwrap());
        // Past the walk's limit, the span-only extract looks the headers up.
        for i in 0..padding {
            headers.insert(
                http::HeaderName::from_bytes(format!("x-pad-{i}").as_bytes()).unwrap(),
                HeaderValue::from_static("1"),
            );
        }
        let full = p.extract(&headers).remote().unwrap().trace_flags();
        let scanned = p.extract_span(&headers, |_| {}).unwrap();
        let plain = p.extract_span(&Plain(&headers), |_| {}).unwrap();
        assert_eq!(scanned.1, ContextFormat::B3Multi);
        assert_eq!(
            scanned.0.trace_flags(),
            full,
            "{tp:?}, {padding} more lines"
        );
        assert_eq!(plain.0.trace_flags(), full, "{tp:?}, {padding} more lines");
        full.contains(crate::TraceFlags::RANDOM)
    };
    for padding in [0, 60] {
        assert!(random(&format!("00-{SAME}-e457b5a2e4d86bd1-03"), padding));
        // OWS before the value, which the decoder tolerates, does not hide the flag.
        assert!(random(
            &format!(" \t00-{SAME}-e457b5a2e4d86bd1-03"),
            padding
        ));
        assert!(!random(&format!("00-{SAME}-e457b5a2e4d86bd1-01"), padding));
        // Another trace's flag says nothing of this one.
        assert!(!random(
            "00-0af7651916cd43dd8448eb211c80319c-e457b5a2e4d86bd1-03",
            padding
        ));
    }
}

#[test]
fn forward_sends_another_traces_traceparent_with_its_tracestate() {
    // B3 wins; the `traceparent` beside it is of another trace, with its own `tracestate`.
    let p = Propagator::default();
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let received = |tracestate: &'static str| {
        map(&[
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-sampled", "1"),
            ("traceparent", tp),
            ("tracestate", tracestate),
        ])
    };
    let headers = received("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
    let cx = p.extract(&headers);
    assert_eq!(cx.source(), Some(ContextFormat::B3Multi));
    assert!(
        cx.tracestate().is_empty(),
        "not the context's own tracestate"
    );
    let mut out = HeaderMap::new();
    p.forward(&cx, &mut out);
    assert_eq!(out["traceparent"], tp);
    assert_eq!(out["tracestate"], "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
    assert_eq!(out["x-b3-traceid"], "80f198ee56343ba864fe8b2a57d3eff7");
    // From any carrier alike.
    let mut plain = HeaderMap::new();
    p.forward(&p.extract(&Plain(&headers)), &mut plain);
    assert_eq!(plain, out);
    // What the application sets is the only tracestate sent.
    let mut cx = p.extract(&headers);
    cx.set_tracestate(crate::TraceState::default());
    let mut out = HeaderMap::new();
    p.forward(&cx, &mut out);
    assert_eq!(out["traceparent"], tp);
    assert!(!out.contains_key("tracestate"), "{out:?}");

    // A valid one in another form than one `k=v,k=v` line goes on normalised, from any
    // carrier alike.
    let ows = received("congo=t61rcWkgMzE, rojo=00f067aa0ba902b7");
    for cx in [p.extract(&ows), p.extract(&Plain(&ows))] {
        let mut out = HeaderMap::new();
        p.forward(&cx, &mut out);
        assert_eq!(out["traceparent"], tp);
        assert_eq!(out["tracestate"], "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
        assert!(cx.errors().is_empty(), "{:?}", cx.errors());
        // And what the application sets replaces it.
        let mut cx = cx;
        cx.set_tracestate(crate::TraceState::default());
        let mut out = HeaderMap::new();
        p.forward(&cx, &mut out);
        assert!(!out.contains_key("tracestate"), "{out:?}");
    }

    // An invalid one is reported, and not sent.
    let cx = p.extract(&received("not a tracestate"));
    let mut out = HeaderMap::new();
    p.forward(&cx, &mut out);
    assert_eq!(out["traceparent"], tp);
    assert!(!out.contains_key("tracestate"), "{out:?}");
    assert!(
        cx.errors()
            .iter()
            .any(|e| e.format() == crate::Format::TraceState),
        "{:?}",
        cx.errors()
    );
}

#[test]
fn opaque_grpc_trace_bin_must_be_base64() {
    let p = Propagator::default();
    let cx = p.extract(&map(&[(
        "grpc-trace-bin",
        "AABL+S81d7NNpqPOkp0ADkc2ATTwZ6oLqQK3AgE",
    )]));
    assert!(cx.received_header(&header::GRPC_TRACE_BIN).is_some());
    let cx = p.extract(&map(&[("grpc-trace-bin", "not-base64!")]));
    assert!(cx.received_header(&header::GRPC_TRACE_BIN).is_none());
    assert_eq!(cx.errors()[0].kind(), ErrorKind::InvalidBase64);
    assert!(is_base64(b"AAE="));
    assert!(!is_base64(b"A"));
    assert!(!is_base64(b"A="));
}

#[test]
fn opaque_headers_do_not_pass_an_untrusted_edge() {
    // A sampled LightStep context and a sampled OpenCensus one: a client's decision that an
    // untrusted edge cannot re-decide, so it does not forward them (a bad one is still
    // reported).
    let headers = [
        ("x-ot-span-context", "EhQJnDGAHCHrSIQRMTMgaXFrrbcYAQ=="),
        ("grpc-trace-bin", "AABL+S81d7NNpqPOkp0ADkc2ATTwZ6oLqQK3AgE"),
    ];
    let trusted = Propagator::default().extract(&map(&headers));
    assert!(
        trusted
            .received_header(&header::X_OT_SPAN_CONTEXT)
            .is_some()
    );
    assert!(trusted.received_header(&header::GRPC_TRACE_BIN).is_some());
    for trust in [
        TrustPolicy::untrusted(),
        TrustPolicy::keep_request_id_only(),
    ] {
        let p = Propagator::builder().trust(trust).build();
        let cx = p.extract(&map(&headers));
        assert!(cx.received_header(&header::X_OT_SPAN_CONTEXT).is_none());
        assert!(cx.received_header(&header::GRPC_TRACE_BIN).is_none());
        let mut out = HeaderMap::new();
        p.forward(&cx, &mut out);
        assert!(out.get("x-ot-span-context").is_none());
        assert!(out.get("grpc-trace-bin").is_none());
        let cx = p.extract(&map(&[("grpc-trace-bin", "not-base64!")]));
        assert_eq!(cx.errors()[0].kind(), ErrorKind::InvalidBase64);
    }
}

#[test]
fn keep_request_id_only() {
    let p = Propagator::builder()
        .trust(TrustPolicy::keep_request_id_only())
        .build();
    let cx = p.extract(&map(&[("b3", "1"), ("x-request-id", "abc")]));
    assert!(cx.remote().is_none());
    assert_eq!(cx.request_id().unwrap().as_str(), "abc");
}

#[test]
fn span_semantics() {
    let remote =
        b3_single::decode(b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90")
            .unwrap();
    let shared = Propagator::builder()
        .span_semantics(SpanSemantics::Shared)
        .build();
    assert_eq!(shared.server_span(Some(&remote)), remote);
    let child = Propagator::default().server_span(Some(&remote));
    assert_eq!(child.parent_span_id(), remote.span_id());
    assert_eq!(child.trace_id(), remote.trace_id());
    let root = Propagator::default().server_span(None);
    assert_eq!(root.parent_span_id(), None);
    assert_eq!(root.sampling(), Sampling::Deferred);
    assert!(root.trace_flags().contains(crate::TraceFlags::RANDOM));
    let deny = Propagator::default().server_span(Some(&SpanContext::sampling_only(Sampling::Deny)));
    assert_eq!(deny.sampling(), Sampling::Deny);
}

#[test]
fn tracestate_needs_matching_traceparent() {
    let p = Propagator::default();
    let cx = p.extract(&map(&[
        ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        ("tracestate", "rojo=1"),
    ]));
    assert!(cx.tracestate().is_empty());
    let cx = p.extract(&map(&[
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        ("tracestate", "rojo=1"),
        ("tracestate", "congo=2"),
    ]));
    assert_eq!(cx.tracestate().header_value().unwrap(), "rojo=1,congo=2");
}

/// An inject over a carrier that holds a stale `tracestate` writes the context's own, or
/// removes it when the context has none (or is sampling-only).
#[test]
fn inject_replaces_or_removes_a_stale_tracestate() {
    let p = Propagator::builder()
        .inject([ContextFormat::TraceParent])
        .build();
    let with_state = p.extract(&map(&[
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("tracestate", "rojo=1"),
    ]));
    let without_state = p.extract(&map(&[(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )]));
    for (cx, want) in [(&with_state, Some("rojo=1")), (&without_state, None)] {
        let span = cx.span().expect("span");
        let mut out = map(&[("tracestate", "stale=1"), ("content-type", "x/y")]);
        p.inject(&span, cx, &mut out);
        assert_eq!(
            out.get("tracestate").map(|v| v.to_str().unwrap()),
            want,
            "{out:?}"
        );
        assert_eq!(
            out["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(out["content-type"], "x/y");
    }
}

/// Context headers a call already held (an incoming request copied into it by hand): another
/// span, a debug flag a client forced, formats this propagator does not write.
const COPIED: &[(&str, &str)] = &[
    ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d"),
    ("x-b3-flags", "1"),
    (
        "uber-trace-id",
        "80f198ee56343ba864fe8b2a57d3eff7:e457b5a2e4d86bd1:0:1",
    ),
    (
        "traceparent",
        "00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-01",
    ),
    ("tracestate", "stale=1"),
    ("grpc-trace-bin", "AABAAAAAAAAAAAAAAAAAAAAAAQIDBAUGBwgCAQ=="),
    ("content-type", "application/grpc"),
    ("x-tenant", "t-1"),
];

#[test]
fn inject_and_forward_own_the_context_headers() {
    let p = Propagator::default();
    let incoming = map(&[
        ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
        ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ("x-b3-sampled", "1"),
    ]);
    let cx = p.extract(&incoming);
    let span = p.client_span(&cx.span().unwrap());
    // Inject: this hop's span in the inject formats, and no other context.
    let mut out = map(COPIED);
    p.inject(&span, &cx, &mut out);
    // Forward: the received headers, and no other context.
    let mut forwarded = map(COPIED);
    p.forward(&cx, &mut forwarded);
    for out in [&out, &forwarded] {
        for gone in [
            "b3",
            "x-b3-flags",
            "uber-trace-id",
            "tracestate",
            "grpc-trace-bin",
        ] {
            assert!(out.get(gone).is_none(), "{gone}: {out:?}");
        }
        assert_eq!(out["x-b3-traceid"], "463ac35c9f6413ad48485a3953bb6124");
        assert_eq!(out["x-b3-sampled"], "1");
        assert_eq!(out["content-type"], "application/grpc");
        assert_eq!(out["x-tenant"], "t-1");
        assert_eq!(out.get_all("x-b3-spanid").iter().count(), 1);
    }
    assert_eq!(
        out["x-b3-spanid"],
        span.span_id().unwrap().to_string().as_str()
    );
    assert_eq!(
        &out["traceparent"].to_str().unwrap()[36..52],
        out["x-b3-spanid"]
    );
    assert_eq!(forwarded["x-b3-spanid"], "a2fb4a1d1a96d312");
    assert!(forwarded.get("traceparent").is_none(), "not received");

    // The same through a carrier that is not a `HeaderMap` (each name removed).
    let mut generic = Generic(map(COPIED));
    p.inject(&span, &cx, &mut generic);
    assert!(generic.0.get("b3").is_none() && generic.0.get("uber-trace-id").is_none());
    assert_eq!(generic.0["content-type"], "application/grpc");
}

/// A carrier with only `set` and `remove`: the default `remove_context_headers`.
struct Generic(HeaderMap);

impl crate::Injector for Generic {
    fn set(&mut self, name: &http::HeaderName, value: HeaderValue) {
        self.0.insert(name.clone(), value);
    }

    fn remove(&mut self, name: &http::HeaderName) {
        self.0.remove(name);
    }
}

#[test]
fn an_untrusted_edge_forwards_no_copied_decision() {
    // A client sent its ids, and a forced decision in formats the edge does not read
    // (`uber-trace-id`, a second `b3`-family header it ignores); the application copied
    // every header into its call by hand. The edge forwards its own reading only.
    let p = Propagator::builder()
        .trust(TrustPolicy::untrusted())
        .build();
    let client = [
        ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
        ("x-b3-spanid", "e457b5a2e4d86bd1"),
        (
            "traceparent",
            "00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-01",
        ),
        (
            "uber-trace-id",
            "80f198ee56343ba864fe8b2a57d3eff7:e457b5a2e4d86bd1:0:3",
        ),
    ];
    let cx = p.extract(&map(&client));
    assert_eq!(cx.remote().unwrap().sampling(), Sampling::Deferred);
    let mut out = map(&client);
    p.forward(&cx, &mut out);
    assert!(out.get("uber-trace-id").is_none(), "{out:?}");
    assert!(out.get("x-b3-sampled").is_none(), "{out:?}");
    assert!(
        out["traceparent"].to_str().unwrap().ends_with("-00"),
        "{out:?}"
    );
    assert_eq!(out["x-b3-traceid"], "80f198ee56343ba864fe8b2a57d3eff7");
}

/// A new trace carries W3C's random-trace-id flag only when its id generator says its ids are
/// random (the flag promises at least the right-most 7 bytes are): the default generator, of
/// either width, does; a sequential one does not.
#[test]
fn new_traces_are_flagged_random_only_by_a_random_generator() {
    #[derive(Debug, Default)]
    struct Sequential(std::sync::atomic::AtomicU64);
    impl IdGenerator for Sequential {
        fn new_trace_id(&self) -> crate::TraceId {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            crate::TraceId::from_u128(u128::from(n) << 64 | u128::from(n)).unwrap()
        }
        fn new_span_id(&self) -> crate::SpanId {
            crate::SpanId::from_u64(7).unwrap()
        }
    }
    let random = |p: &Propagator| {
        [
            p.new_root(Sampling::Accept),
            p.server_span(None),
            p.client_span(&SpanContext::sampling_only(Sampling::Accept)),
        ]
        .iter()
        .all(|cx| cx.trace_flags().contains(crate::TraceFlags::RANDOM))
    };
    assert!(random(&Propagator::default()));
    assert!(random(
        &Propagator::builder()
            .id_generator(RandomIdGenerator::with_64bit_trace_ids())
            .build()
    ));
    let sequential = Propagator::builder()
        .id_generator(Sequential::default())
        .build();
    let root = sequential.new_root(Sampling::Accept);
    assert!(!root.trace_flags().contains(crate::TraceFlags::RANDOM));
    assert!(!sequential.id_generator().trace_ids_are_random());
    // A caller's flag still goes on: the generator only speaks for the traces it starts.
    let caller = crate::codec::traceparent::decode(
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03",
    )
    .unwrap()
    .context;
    assert!(
        sequential
            .client_span(&caller)
            .trace_flags()
            .contains(crate::TraceFlags::RANDOM)
    );
}

#[test]
fn a_root_decision_travels_alone_and_never_overrides_a_caller() {
    let p = Propagator::builder()
        .inject([ContextFormat::B3Single, ContextFormat::TraceParent])
        .build();
    // A root dropped here: the decision alone, in the formats that can say it.
    let mut cx = RequestContext::new();
    assert_eq!(cx.sampling(), Sampling::Deferred);
    cx.decide_sampling(Sampling::Deny);
    assert_eq!(cx.sampling(), Sampling::Deny);
    cx.decide_sampling(Sampling::Accept);
    assert_eq!(cx.sampling(), Sampling::Deny, "the first decision stands");
    assert!(cx.span().is_none(), "no span to name");
    let mut out = HeaderMap::new();
    p.forward(&cx, &mut out);
    assert_eq!(out["b3"], "0", "{out:?}");
    assert!(!out.contains_key("traceparent"), "{out:?}");
    // A span of this hop's wins over the decision.
    let root = SpanContext::new_root(Sampling::Accept);
    cx.set_local(root);
    let mut out = HeaderMap::new();
    p.forward(&cx, &mut out);
    assert_eq!(out["b3"], b3_single::encode(&root).expect("ids"), "{out:?}");

    // A caller's own decision, or its decision alone, is never overridden; "deferred" decides
    // nothing.
    for received in [
        &[
            ("x-b3-traceid", "463ac35c9f6413ad"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ("x-b3-sampled", "1"),
        ][..],
        &[("b3", "1")][..],
    ] {
        let mut cx = p.extract(&map(received));
        cx.decide_sampling(Sampling::Deny);
        assert_eq!(cx.sampling(), Sampling::Accept, "{received:?}");
        let mut out = HeaderMap::new();
        p.forward(&cx, &mut out);
        assert!(!out.values().any(|v| v == "0"), "{received:?}: {out:?}");
    }
    let mut cx = RequestContext::new();
    cx.decide_sampling(Sampling::Deferred);
    let mut out = HeaderMap::new();
    p.forward(&cx, &mut out);
    assert!(!out.contains_key("b3"), "{out:?}");

    // An extract into a context that held a decision starts afresh.
    let mut cx = RequestContext::new();
    cx.decide_sampling(Sampling::Deny);
    p.extract_into(&HeaderMap::new(), &mut cx);
    assert_eq!(cx.sampling(), Sampling::Deferred);
}

/// A `grpc-trace-bin` received but not extracted is kept as an opaque value; when the inject
/// set writes `grpc-trace-bin` for this call's span, the received one does not replace it (two
/// spans, even two traces, in one call). Without `grpc-trace-bin` in the inject set it is
/// forwarded as it came.
#[test]
fn a_received_grpc_trace_bin_does_not_replace_the_one_written() {
    let caller = grpc_trace_bin::encode(&SpanContext::new_root(Sampling::Accept)).expect("ids");
    let mut received = map(&[
        ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
        ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ("x-b3-sampled", "1"),
    ]);
    received.insert(header::GRPC_TRACE_BIN, caller.clone());
    let ours = SpanContext::new_root(Sampling::Accept);
    let with_bin = Propagator::builder()
        .inject([ContextFormat::B3Multi, ContextFormat::GrpcTraceBin])
        .build();
    let cx = with_bin.extract(&received);
    assert!(
        !cx.received_formats().contains(ContextFormat::GrpcTraceBin),
        "kept as an opaque value, not extracted"
    );
    let mut out = HeaderMap::new();
    with_bin.inject(&ours, &cx, &mut out);
    assert_eq!(
        out[header::GRPC_TRACE_BIN],
        grpc_trace_bin::encode(&ours).expect("ids"),
        "{out:?}"
    );
    assert_eq!(out.get_all(header::GRPC_TRACE_BIN).iter().count(), 1);

    // A trace that starts here, forwarded: the span this hop names, in both formats.
    let mut only_bin = HeaderMap::new();
    only_bin.insert(header::GRPC_TRACE_BIN, caller.clone());
    let mut cx = with_bin.extract(&only_bin);
    cx.set_local(ours);
    let mut out = HeaderMap::new();
    with_bin.forward(&cx, &mut out);
    assert_eq!(
        out[header::GRPC_TRACE_BIN],
        grpc_trace_bin::encode(&ours).expect("ids"),
        "{out:?}"
    );

    // Not in the inject set: forwarded as it came.
    let plain = Propagator::builder()
        .inject([ContextFormat::B3Multi])
        .build();
    let cx = plain.extract(&received);
    let mut out = HeaderMap::new();
    plain.inject(&ours, &cx, &mut out);
    assert_eq!(out[header::GRPC_TRACE_BIN], caller, "{out:?}");
}

/// A carrier that is gRPC metadata gets no header gRPC cannot carry: a prefixed baggage key
/// with a character outside `[0-9a-z_.-]`, a value with a tab. The `baggage` header keeps
/// every entry, and an HTTP carrier gets them all.
#[test]
fn grpc_metadata_gets_only_what_grpc_carries() {
    struct Grpc(HeaderMap);
    impl crate::carrier::Injector for Grpc {
        fn set(&mut self, name: &http::HeaderName, value: HeaderValue) {
            self.0.insert(name.clone(), value);
        }
        fn remove(&mut self, name: &http::HeaderName) {
            self.0.remove(name);
        }
        fn is_grpc_metadata(&mut self) -> bool {
            true
        }
    }
    let mut received = map(&[
        ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
        ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ("x-b3-sampled", "1"),
        ("baggage-a*b", "x"),
        ("baggage-ok", "fine"),
    ]);
    received.insert("uberctx-tab", HeaderValue::from_static("a\tb"));
    let p = Propagator::default();
    let cx = p.extract(&received);
    let span = SpanContext::new_root(Sampling::Accept);

    let mut grpc = Grpc(HeaderMap::new());
    p.inject(&span, &cx, &mut grpc);
    let grpc = grpc.0;
    assert_eq!(grpc["baggage-ok"], "fine", "{grpc:?}");
    assert!(!grpc.contains_key("baggage-a*b"), "{grpc:?}");
    assert!(!grpc.contains_key("uberctx-tab"), "{grpc:?}");
    for (name, value) in &grpc {
        assert!(
            crate::carrier::grpc_metadata_ok(name.as_str(), value.as_bytes()),
            "{name}: {value:?}"
        );
    }

    let mut http = HeaderMap::new();
    p.inject(&span, &cx, &mut http);
    assert_eq!(http["baggage-a*b"], "x", "{http:?}");
    assert_eq!(http["uberctx-tab"], "a\tb", "{http:?}");
}

/// A propagator whose trust policy refuses the caller's context clears the opaque headers of
/// other tracers from the carrier before writing (a handler that copied the incoming request
/// onto its call would otherwise pass on the context the policy refused); a trusting one
/// leaves headers the application wrote itself alone.
#[test]
fn a_refused_context_leaves_no_opaque_header_behind() {
    let copied = || {
        let mut out = map(&[
            (
                "x-ot-span-context",
                "463ac35c9f6413ad;a2fb4a1d1a96d312;0000000000000000;cs",
            ),
            ("sw8", "1-abc-def-0-svc-inst-ep-host"),
            ("x-datadog-trace-id", "1234"),
            ("content-type", "application/json"),
        ]);
        out.insert("x-b3-spanid", HeaderValue::from_static("a2fb4a1d1a96d312"));
        out
    };
    let cx = RequestContext::new();
    let span = SpanContext::new_root(Sampling::Accept);
    let edge = Propagator::builder()
        .trust(TrustPolicy::untrusted())
        .build();
    for write in [0, 1] {
        let mut out = copied();
        if write == 0 {
            edge.inject(&span, &cx, &mut out);
        } else {
            edge.forward(&cx, &mut out);
        }
        for gone in ["x-ot-span-context", "sw8", "x-datadog-trace-id"] {
            assert!(!out.contains_key(gone), "{gone}: {out:?}");
        }
        assert_eq!(out["content-type"], "application/json");
    }
    let trusting = Propagator::default();
    let mut out = copied();
    trusting.inject(&span, &cx, &mut out);
    assert!(out.contains_key("x-ot-span-context"), "{out:?}");
    assert!(out.contains_key("sw8"), "{out:?}");
    assert_ne!(
        out["x-b3-spanid"], "a2fb4a1d1a96d312",
        "context headers are always ours"
    );
}
