//! Counting-allocator proof of the hot-path allocation budget:
//! - extract of B3 multi, B3 single, `traceparent` (+ `tracestate`) and `x-request-id`
//!   (into a new context or into one where it is kept)
//!   allocates nothing, and neither does decoding the rest of it later (what forward needs);
//! - inject allocates once per format that carries ids: B3 multi encodes its two or three ids
//!   into one buffer its header values share, `b3` and `traceparent` are one value each
//!   (sampling values are static, forwarded values are shared).
//!
//! Header values here are built as hyper builds them for a received request: they share
//! their bytes (`Bytes` slices of the read buffer), so cloning one does not allocate.
#![allow(unsafe_code)] // the counting allocator below; nothing else

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use b3_propagation::{ContextFormat, Propagator, RequestContext, RequestId};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: delegates every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn count<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let before = ALLOCS.with(Cell::get);
    let out = f();
    (ALLOCS.with(Cell::get) - before, out)
}

/// A request as Envoy delivers it: ~10 ordinary headers plus the tracing ones.
fn envoy_request(tracing: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(32);
    let ordinary = [
        ("host", "frontend.default.svc.cluster.local:8080"),
        ("user-agent", "curl/8.5.0"),
        ("accept", "*/*"),
        ("accept-encoding", "gzip, deflate"),
        ("content-type", "application/json"),
        ("content-length", "0"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-for", "10.0.0.7"),
        ("x-envoy-expected-rq-timeout-ms", "15000"),
        ("x-envoy-attempt-count", "1"),
    ];
    for (k, v) in ordinary.iter().chain(tracing) {
        let value =
            HeaderValue::from_maybe_shared(Bytes::from_static(v.as_bytes())).expect("valid");
        h.append(HeaderName::from_static(k), value);
    }
    h
}

const RID: (&str, &str) = ("x-request-id", "4f9cf65f-1b6a-9c3b-8d0e-2a7c9b1e5d43");

#[test]
fn extract_allocates_nothing() {
    let p = Propagator::default();
    // Warm up the thread-local state (RNG) once.
    let _ = p.server_span(None);
    let cases: [(&str, Vec<(&'static str, &'static str)>); 4] = [
        (
            "b3 multi",
            vec![
                RID,
                ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
                ("x-b3-spanid", "a2fb4a1d1a96d312"),
                ("x-b3-parentspanid", "0020000000000001"),
                ("x-b3-sampled", "1"),
            ],
        ),
        (
            "b3 single",
            vec![
                RID,
                (
                    "b3",
                    "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
                ),
            ],
        ),
        (
            "traceparent",
            vec![
                RID,
                (
                    "traceparent",
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                ),
                ("tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
            ],
        ),
        ("x-request-id only", vec![RID]),
    ];
    for (name, tracing) in cases {
        let headers = envoy_request(&tracing);
        let (n, cx) = count(|| p.extract(&headers));
        assert_eq!(n, 0, "{name}: extract allocated {n} times");
        assert!(cx.request_id().is_some(), "{name}");
        // The rest (values to forward, errors), decoded when first asked for: nothing either.
        let (n, errors) = count(|| cx.errors().len());
        assert_eq!(n, 0, "{name}: decoding the rest allocated {n} times");
        assert_eq!(errors, 0, "{name}: {:?}", cx.errors());
        // The codec-level and span-only paths too.
        let (n, span) = count(|| p.extract_span(&headers, |_| {}));
        assert_eq!(n, 0, "{name}: extract_span allocated");
        assert_eq!(span.is_some(), name != "x-request-id only");
        // Deriving this hop's span and a client span allocates nothing either.
        let (n, _) = count(|| {
            let server = p.server_span(cx.remote());
            p.client_span(&server)
        });
        assert_eq!(n, 0, "{name}: span derivation allocated");
        // Extracting into a context where it is kept (a request's trace) allocates nothing.
        let mut kept = b3_propagation::RequestContext::new();
        let (n, ()) = count(|| p.extract_into(&headers, &mut kept));
        assert_eq!(n, 0, "{name}: extract_into allocated {n} times");
        assert_eq!(kept.request_id(), cx.request_id(), "{name}");
        drop(cx);
    }
}

#[test]
fn inject_allocates_once_per_id_carrying_format() {
    let p = Propagator::default();
    let headers = envoy_request(&[
        RID,
        ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
        ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ("x-b3-sampled", "1"),
        (
            "traceparent",
            "00-463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-01",
        ),
        ("tracestate", "rojo=00f067aa0ba902b7"),
    ]);
    let cx = p.extract(&headers);
    let client = p.client_span(&p.server_span(cx.remote()));
    let mut out = HeaderMap::with_capacity(32);
    let (n, ()) = count(|| p.inject(&client, &cx, &mut out));
    // Written: x-b3-traceid, x-b3-spanid, x-b3-parentspanid (3 new values sharing one
    // buffer), x-b3-sampled (static), traceparent (1 new value), tracestate and x-request-id
    // (shared).
    assert_eq!(out.len(), 7);
    assert_eq!(n, 2, "inject allocated {n} times for 2 id-carrying formats");

    // B3 multi alone: its ids share one buffer.
    let multi = Propagator::builder()
        .inject([ContextFormat::B3Multi])
        .build();
    let mut out = HeaderMap::with_capacity(32);
    let (n, ()) = count(|| multi.inject(&client, &RequestContext::new(), &mut out));
    assert_eq!(out.len(), 4);
    assert_eq!(n, 1, "b3 multi: one buffer for three ids");
    assert_eq!(
        out["x-b3-spanid"],
        client.span_id().unwrap().to_hex().as_str()
    );
    assert_eq!(
        out["x-b3-parentspanid"],
        client.parent_span_id().unwrap().to_hex().as_str()
    );

    // Forward mode re-sends the received values: nothing new at all.
    let mut out = HeaderMap::with_capacity(32);
    let (n, ()) = count(|| p.forward(&cx, &mut out));
    assert_eq!(out["x-b3-traceid"], headers["x-b3-traceid"]);
    assert_eq!(n, 0, "forward allocated {n} times");

    // B3 single and a sampling-only context.
    let single = Propagator::builder()
        .inject([ContextFormat::B3Single])
        .build();
    let mut out = HeaderMap::with_capacity(32);
    let (n, ()) = count(|| single.inject(&client, &RequestContext::new(), &mut out));
    assert_eq!(n, 1, "one b3 value");
    let deny = b3_propagation::SpanContext::sampling_only(b3_propagation::Sampling::Deny);
    let (n, ()) = count(|| single.inject(&deny, &RequestContext::new(), &mut out));
    assert_eq!(n, 0, "b3: 0 is static");
}

#[test]
fn request_id_generation_is_one_allocation() {
    let _ = RequestId::generate(); // warm up the thread-local RNG
    let (n, id) = count(RequestId::generate);
    assert!(id.is_uuid());
    assert_eq!(n, 1);
}
