//! The security policies of `spec/FACTS.md`, one table row per rule, checked the way an
//! operator would: what the `Propagator` accepts, what it refuses (a typed, inspectable
//! [`ParseError`]: format, field, kind) and what it then *writes* on the next hop through
//! `forward` and `inject`.
//!
//! - size limits at the exact limit (kept) and one byte over (refused), per header;
//! - `tracestate` over 32 members, `baggage` over 180 members / 8192 bytes;
//! - CR, LF, NUL, DEL and non-ASCII bytes in every tracing header and in baggage values,
//!   through `http::HeaderMap` (obs-text) and through a raw-bytes [`Extractor`] (anything);
//! - an untrusted edge ([`TrustPolicy::untrusted`]): client-forced sampling and debug,
//!   `x-envoy-force-trace`, `x-client-trace-id`, a client-chosen `x-request-id`.
//!
//! What the vectors (`tests/vectors.rs`) already assert about the decoded context is not
//! repeated; these tests add the error reason and the bytes written downstream.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;
use common::Raw;

use b3_propagation::baggage::{BaggageEntry, BaggageOrigin, BaggagePrefix};
use b3_propagation::codec::{baggage, jaeger};
use b3_propagation::error::{ErrorKind, Field};
use b3_propagation::request_id::TraceReason;
use b3_propagation::{
    ContextFormat, Format, ParseError, Propagator, RequestContext, Sampling, TraceFlags,
    TrustPolicy,
};
use http::{HeaderMap, HeaderName, HeaderValue};

const TRACE: &str = "463ac35c9f6413ad48485a3953bb6124";
const SPAN: &str = "a2fb4a1d1a96d312";
const PARENT: &str = "05e3ac9a4f6e3b90";
const TRACEPARENT: &str = "00-463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-01";

/// `(format, field, kind)` of an error: what an operator inspects.
type Reason = (Format, Option<Field>, ErrorKind);

fn reason(e: &ParseError) -> Reason {
    (e.format(), e.field(), e.kind())
}

fn reasons(cx: &RequestContext) -> Vec<Reason> {
    cx.errors().iter().map(reason).collect()
}

/// A `HeaderMap`, or `None` when `http` itself refuses one of the values.
fn header_map(pairs: &[(&str, Vec<u8>)]) -> Option<HeaderMap> {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_bytes(v).ok()?,
        );
    }
    Some(h)
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// Everything the next hop would receive: `forward` (Istio's model) and `inject` of a client
/// span of this hop's span (instrument mode), each into an empty map.
fn written(p: &Propagator, mut cx: RequestContext) -> [HeaderMap; 2] {
    let server = p.server_span(cx.remote());
    cx.set_local(server);
    cx.ensure_request_id();
    let mut forwarded = HeaderMap::new();
    p.forward(&cx, &mut forwarded);
    let mut injected = HeaderMap::new();
    p.inject(&p.client_span(&server), &cx, &mut injected);
    [forwarded, injected]
}

/// Every byte written is visible ASCII, space or HTAB: no CR, LF, NUL, DEL, other control
/// character or obs-text reaches the next hop.
fn assert_clean(what: &str, maps: &[HeaderMap]) {
    for m in maps {
        for (name, v) in m {
            assert!(
                v.as_bytes()
                    .iter()
                    .all(|&c| c == b'\t' || (0x20..=0x7e).contains(&c)),
                "{what}: {name}: {v:?} carries a hostile byte"
            );
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------
// Size limits: the exact limit is kept, one byte more is refused with `TooLong` (or the
// format's own reason) and nothing of the refused value is written.
// ---------------------------------------------------------------------------------------

/// One size rule: a value of exactly `limit` bytes and one of `limit + 1`.
struct Limit {
    rule: &'static str,
    /// The FACTS.md section (or "library" for a limit FACTS does not set).
    facts: &'static str,
    header: &'static str,
    /// Other headers the rule needs (a `traceparent` for `tracestate`, ...).
    with: Vec<(&'static str, Vec<u8>)>,
    /// The value of size `n`: `n` bytes, or `n` members for a member-count rule.
    value: fn(usize) -> Vec<u8>,
    limit: usize,
    /// The reason for `limit + 1`.
    over: Reason,
    /// What `forward` writes for the header at `limit + 1` (`None`: nothing).
    over_written: fn(&[u8]) -> Option<Vec<u8>>,
}

/// `a=xxx…` padded to `len` bytes, then `,b=v`: `len + 4` bytes joined.
fn two_members(total: usize) -> Vec<u8> {
    let mut v = b"a=".to_vec();
    v.resize(total - 4, b'x');
    v.extend_from_slice(b",b=v");
    v
}

fn first_member(v: &[u8]) -> Option<Vec<u8>> {
    v.split(|&c| c == b',').next().map(<[u8]>::to_vec)
}

#[rustfmt::skip]
fn limits() -> Vec<Limit> {
    let tp = || vec![("traceparent", b(TRACEPARENT))];
    vec![
        Limit {
            rule: "b3 single header: at most 68 bytes (32+1+16+3+16)",
            facts: "§3 Invalid: a total length over 68",
            header: "b3", with: vec![],
            value: |n| {
                // 68 bytes: {t32}-{s16}-1-{p16}; one more byte lengthens the parent.
                let mut v = format!("{TRACE}-{SPAN}-1-{PARENT}").into_bytes();
                v.resize(n, b'0');
                v
            },
            limit: 68,
            over: (Format::B3Single, None, ErrorKind::TooLong { len: 69, max: 68 }),
            over_written: |_| None,
        },
        Limit {
            rule: "traceparent version 00: exactly 55 bytes",
            facts: "§6 Version 00 is exactly 55 characters; trailing data is invalid",
            header: "traceparent", with: vec![],
            value: |n| {
                let mut v = b(TRACEPARENT);
                v.resize(n, b'0');
                v
            },
            limit: 55,
            over: (Format::TraceParent, None, ErrorKind::TrailingData),
            over_written: |_| None,
        },
        Limit {
            rule: "traceparent of a future version: at most 512 bytes",
            facts: "library (traceparent::MAX_LEN); FACTS §6 sets no bound",
            header: "traceparent", with: vec![],
            value: |n| {
                let mut v = b("cc-463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-01-");
                v.resize(n, b'x');
                v
            },
            limit: 512,
            over: (Format::TraceParent, None, ErrorKind::TooLong { len: 513, max: 512 }),
            over_written: |_| None,
        },
        Limit {
            rule: "x-request-id: 1..=255 bytes, longer is rejected (not truncated)",
            facts: "§9 POLICY for our RequestId",
            header: "x-request-id", with: vec![],
            value: |n| vec![b'a'; n],
            limit: 255,
            over: (Format::RequestId, None, ErrorKind::TooLong { len: 256, max: 255 }),
            // Treated as absent: the hop writes the id it generated instead.
            over_written: |_| None,
        },
        Limit {
            rule: "tracestate key: at most 256 characters, else the whole header is discarded",
            facts: "§7 Key / Invalid members (POLICY: discard all of it)",
            header: "tracestate", with: tp(),
            value: |n| {
                let mut v = b"ok=1,".to_vec();
                v.extend(std::iter::repeat_n(b'k', n - 7));
                v.extend_from_slice(b"=1");
                v
            },
            limit: 256 + 7,
            over: (Format::TraceState, Some(Field::Key), ErrorKind::TooLong { len: 257, max: 256 }),
            over_written: |_| None,
        },
        Limit {
            rule: "tracestate value: at most 256 characters, else the whole header is discarded",
            facts: "§7 Value / Invalid members (POLICY: discard all of it)",
            header: "tracestate", with: tp(),
            value: |n| {
                let mut v = b"ok=1,k=".to_vec();
                v.extend(std::iter::repeat_n(b'v', n - 7));
                v
            },
            limit: 256 + 7,
            over: (Format::TraceState, Some(Field::Value), ErrorKind::TooLong { len: 257, max: 256 }),
            over_written: |_| None,
        },
        Limit {
            rule: "tracestate: at most 32 members; 33 discards the whole header (not trimmed)",
            facts: "§7 Member limit / Invalid members",
            header: "tracestate", with: tp(),
            // Here the "length" is the member count.
            value: |n| (0..n).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join(",").into_bytes(),
            limit: 32,
            over: (Format::TraceState, None, ErrorKind::TooManyMembers { max: 32 }),
            over_written: |_| None,
        },
        Limit {
            rule: "baggage: at most 180 members; the 181st and later are dropped whole",
            facts: "§8 Limits (POLICY: count <= 180)",
            header: "baggage", with: vec![],
            value: |n| (0..n).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join(",").into_bytes(),
            limit: 180,
            over: (Format::Baggage, None, ErrorKind::TooManyMembers { max: 180 }),
            // The first 180 members, unchanged.
            over_written: |v| {
                let kept: Vec<&[u8]> = v.split(|&c| c == b',').take(180).collect();
                Some(kept.join(&b","[..]))
            },
        },
        Limit {
            rule: "baggage: at most 8192 bytes joined; the member crossing it is dropped whole",
            facts: "§8 Limits (POLICY: joined size <= 8192; MUST NOT propagate partial members)",
            header: "baggage", with: vec![],
            // The first member alone is over 4096 bytes: the old per-member limit is gone.
            value: two_members,
            limit: 8192,
            over: (Format::Baggage, None, ErrorKind::TooLong { len: 8193, max: 8192 }),
            over_written: first_member,
        },
        Limit {
            rule: "baggage: one member of 8192 bytes is kept (no 4096-byte member limit); 8193 is dropped",
            facts: "§8 Limits (commit 002e9cd removed the 4096-byte member limit)",
            header: "baggage", with: vec![],
            value: |n| {
                let mut v = b"a=".to_vec();
                v.resize(n, b'x');
                v
            },
            limit: 8192,
            over: (Format::Baggage, None, ErrorKind::TooLong { len: 8193, max: 8192 }),
            over_written: |_| None,
        },
        Limit {
            rule: "x-ot-span-context (forwarded verbatim): at most 4096 bytes",
            facts: "library (propagator::MAX_OPAQUE_LEN); FACTS §10 forwards verbatim, sets no bound",
            header: "x-ot-span-context", with: vec![],
            value: |n| vec![b'A'; n],
            limit: 4096,
            over: (Format::OtSpanContext, None, ErrorKind::TooLong { len: 4097, max: 4096 }),
            over_written: |_| None,
        },
        Limit {
            rule: "grpc-trace-bin (forwarded verbatim): at most 4096 bytes",
            facts: "library (propagator::MAX_OPAQUE_LEN); FACTS §12 forwards verbatim, sets no bound",
            header: "grpc-trace-bin", with: vec![],
            value: |n| vec![b'A'; n],
            limit: 4096,
            over: (Format::GrpcTraceBin, None, ErrorKind::TooLong { len: 4097, max: 4096 }),
            over_written: |_| None,
        },
    ]
}

#[test]
fn size_limits_exact_limit_kept_one_over_refused() {
    let p = Propagator::default();
    for row in limits() {
        let name = HeaderName::from_static(row.header);
        for (n, refused) in [(row.limit, false), (row.limit + 1, true)] {
            let value = (row.value)(n);
            let what = format!("{} [{}] at {n}", row.rule, row.facts);
            // Member-count rules count members, the others bytes.
            if !matches!(row.over.2, ErrorKind::TooManyMembers { .. }) {
                assert_eq!(value.len(), n, "{what}: test value length");
            }
            let mut pairs = row.with.clone();
            pairs.push((row.header, value.clone()));
            let cx = p.extract(&header_map(&pairs).unwrap());
            let errors = reasons(&cx);
            let [forwarded, injected] = written(&p, cx);
            assert_clean(&what, &[forwarded.clone(), injected]);
            let out = forwarded.get(&name).map(|v| v.as_bytes().to_vec());
            if refused {
                assert_eq!(errors, vec![row.over], "{what}");
                if matches!(row.header, "x-request-id" | "traceparent") {
                    // Treated as absent: the hop writes the id / trace it started, never
                    // the refused value.
                    assert_ne!(out.as_deref(), Some(&value[..]), "{what}");
                } else {
                    assert_eq!(out, (row.over_written)(&value), "{what}");
                }
            } else {
                assert_eq!(errors, vec![], "{what}");
                let out = out.unwrap_or_else(|| panic!("{what}: not forwarded"));
                if row.header == "traceparent" && value.starts_with(b"cc-") {
                    // A future version is re-emitted as version 00 with the 4 fields (§6).
                    assert_eq!(out, b(TRACEPARENT), "{what}");
                } else {
                    assert_eq!(out, value, "{what}");
                }
            }
        }
    }
}

#[test]
fn codec_only_size_limits() {
    // uber-trace-id is opt-in (not in the default extract order): its codec bounds the input
    // at 256 bytes (library limit; FACTS §13 sets none). The parent field is not validated, so
    // it is the field that grows here.
    let value = |n: usize| {
        let mut v = format!("{TRACE}:{SPAN}:").into_bytes();
        v.resize(n - 2, b'0');
        v.extend_from_slice(b":1");
        v
    };
    assert!(jaeger::decode(&value(256)).is_ok());
    let e = jaeger::decode(&value(257)).unwrap_err();
    assert_eq!(
        reason(&e),
        (
            Format::Jaeger,
            None,
            ErrorKind::TooLong { len: 257, max: 256 }
        )
    );
}

#[test]
fn baggage_limits_count_every_baggage_header_combined() {
    // FACTS §8: "counting all baggage headers combined". Two field lines, 8192 bytes joined
    // with the comma between them: kept; 8193: the second line's member is dropped whole.
    let p = Propagator::default();
    for (total, kept) in [(8192, 2), (8193, 1)] {
        let joined = two_members(total);
        let (first, second) = joined.split_at(total - 4);
        let h = header_map(&[
            ("baggage", first.to_vec()),
            ("baggage", second[1..].to_vec()),
        ])
        .unwrap();
        let cx = p.extract(&h);
        assert_eq!(cx.baggage().len(), kept, "{total}");
        let expect_errors = if kept == 2 {
            vec![]
        } else {
            vec![(
                Format::Baggage,
                None,
                ErrorKind::TooLong {
                    len: 8193,
                    max: 8192,
                },
            )]
        };
        assert_eq!(reasons(&cx), expect_errors, "{total}");
        let [forwarded, _] = written(&p, cx);
        let out = forwarded["baggage"].as_bytes();
        assert!(out.len() <= 8192, "{total}: {} bytes written", out.len());
        // Whole members only.
        for m in out.split(|&c| c == b',') {
            assert!(m == first || m == b"b=v", "{total}: partial member written");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Hostile bytes: CR, LF, NUL, DEL, obs-text and raw UTF-8 in every tracing header never
// reach the next hop. FACTS §1 (lower-hex only), §2-§3 (grammar), §6-§8 (grammar, octets),
// §9 (request id: control characters, DEL, non-ASCII rejected), §10/§12 (opaque values).
// ---------------------------------------------------------------------------------------

/// The hostile byte sequences: CR, LF, NUL, DEL, obs-text bytes, and `é` as raw UTF-8.
const HOSTILE: [&[u8]; 8] = [
    b"\r",
    b"\n",
    b"\0",
    b"\x7f",
    b"\x80",
    b"\xff",
    "é".as_bytes(),
    b"\r\nx-b3-flags: 1",
];

/// One header to poison: the valid headers it travels with, the header, its valid value and
/// the byte index replaced by the hostile sequence.
struct Poison {
    facts: &'static str,
    propagator: fn() -> Propagator,
    with: Vec<(&'static str, Vec<u8>)>,
    header: &'static str,
    value: &'static str,
    at: usize,
    /// The error the hostile byte `c` at index `i` gives, `None` when the rules ignore the
    /// value (it must then still not be written).
    expect: fn(u8, usize) -> Option<Reason>,
}

fn bad_char(format: Format, field: Option<Field>) -> impl Fn(u8, usize) -> Reason {
    move |byte, index| (format, field, ErrorKind::InvalidCharacter { byte, index })
}

#[rustfmt::skip]
fn poisons() -> Vec<Poison> {
    let default: fn() -> Propagator = Propagator::default;
    let ids = || vec![("x-b3-traceid", b(TRACE)), ("x-b3-spanid", b(SPAN)), ("x-b3-sampled", b("1"))];
    vec![
        Poison { facts: "§3 grammar (lower-hex)", propagator: default, with: vec![],
            header: "b3", value: "463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-1", at: 5,
            expect: |c, i| Some(bad_char(Format::B3Single, Some(Field::TraceId))(c, i)) },
        Poison { facts: "§3 grammar (lower-hex)", propagator: default, with: vec![],
            header: "b3", value: "463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-1", at: 40,
            expect: |c, i| Some(bad_char(Format::B3Single, Some(Field::SpanId))(c, i)) },
        Poison { facts: "§3 sampling value other than 0, 1 or d", propagator: default, with: vec![],
            header: "b3", value: "463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-1", at: 50,
            expect: |_, _| Some((Format::B3Single, Some(Field::Sampling), ErrorKind::InvalidSampling)) },
        Poison { facts: "§2 x-b3-traceid lower-hex", propagator: default,
            with: vec![("x-b3-spanid", b(SPAN)), ("x-b3-sampled", b("1"))],
            header: "x-b3-traceid", value: TRACE, at: 3,
            expect: |c, i| Some(bad_char(Format::B3Multi, Some(Field::TraceId))(c, i)) },
        Poison { facts: "§2 x-b3-spanid lower-hex", propagator: default,
            with: vec![("x-b3-traceid", b(TRACE)), ("x-b3-sampled", b("1"))],
            header: "x-b3-spanid", value: SPAN, at: 3,
            expect: |c, i| Some(bad_char(Format::B3Multi, Some(Field::SpanId))(c, i)) },
        Poison { facts: "§2 a malformed parent id makes the context invalid", propagator: default,
            with: ids(), header: "x-b3-parentspanid", value: PARENT, at: 3,
            expect: |c, i| Some(bad_char(Format::B3Multi, Some(Field::ParentSpanId))(c, i)) },
        Poison { facts: "§2 an invalid x-b3-sampled drops the whole B3 context", propagator: default,
            with: vec![("x-b3-traceid", b(TRACE)), ("x-b3-spanid", b(SPAN))],
            header: "x-b3-sampled", value: "1", at: 0,
            expect: |_, _| Some((Format::B3Multi, Some(Field::Sampling), ErrorKind::InvalidSampling)) },
        // "Absent or any other value can be ignored": no error, but never written either.
        Poison { facts: "§2 x-b3-flags other than 1 is ignored", propagator: default,
            with: ids(), header: "x-b3-flags", value: "1", at: 0,
            expect: |_, _| None },
        // "A span id that arrives without a trace id is ignored": a sampling-only context.
        Poison { facts: "§2 a span id without a trace id is ignored", propagator: default,
            with: vec![("x-b3-sampled", b("1"))],
            header: "x-b3-spanid", value: SPAN, at: 3,
            expect: |_, _| None },
        Poison { facts: "§2 a parent id without a trace id is ignored", propagator: default,
            with: vec![("x-b3-sampled", b("1"))],
            header: "x-b3-parentspanid", value: PARENT, at: 3,
            expect: |_, _| None },
        Poison { facts: "§6 grammar (HEXDIGLC)", propagator: default, with: vec![],
            header: "traceparent", value: TRACEPARENT, at: 10,
            expect: |c, i| Some(bad_char(Format::TraceParent, Some(Field::TraceId))(c, i)) },
        // A higher version: "ignore the rest", "re-emit as version 00 with only the 4 fields".
        Poison { facts: "§6 Higher version: ignore the rest, re-emit as 00", propagator: default, with: vec![],
            header: "traceparent",
            value: "cc-463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-01-future", at: 58,
            expect: |_, _| None },
        Poison { facts: "§7 Value (nblk-chr) / Invalid members: discard all", propagator: default,
            with: vec![("traceparent", b(TRACEPARENT))],
            header: "tracestate", value: "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7", at: 25,
            expect: |c, _| Some((Format::TraceState, Some(Field::Value),
                ErrorKind::InvalidCharacter { byte: c, index: 7 })) },
        Poison { facts: "§7 Key / Invalid members: discard all", propagator: default,
            with: vec![("traceparent", b(TRACEPARENT))],
            header: "tracestate", value: "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7", at: 19,
            expect: |c, _| Some((Format::TraceState, Some(Field::Key),
                ErrorKind::InvalidCharacter { byte: c, index: 1 })) },
        Poison { facts: "§8 baggage-octet; POLICY drop only the invalid member", propagator: default,
            with: vec![], header: "baggage", value: "k1=v1,k2=abc,k3=v3", at: 10,
            expect: |c, _| Some((Format::Baggage, Some(Field::Value),
                ErrorKind::InvalidCharacter { byte: c, index: 1 })) },
        Poison { facts: "§8 key = token; POLICY drop only the invalid member", propagator: default,
            with: vec![], header: "baggage", value: "k1=v1,k2=abc,k3=v3", at: 7,
            expect: |c, _| Some((Format::Baggage, Some(Field::Key),
                ErrorKind::InvalidCharacter { byte: c, index: 1 })) },
        Poison { facts: "§8 property value = baggage-octets", propagator: default,
            with: vec![], header: "baggage", value: "k1=v1;p=abc,k3=v3", at: 9,
            expect: |c, _| Some((Format::Baggage, Some(Field::Value),
                ErrorKind::InvalidCharacter { byte: c, index: 1 })) },
        Poison { facts: "§8 Prefixed baggage (value raw, visible ASCII)", propagator: default,
            with: vec![], header: "baggage-user", value: "abc", at: 1,
            expect: |c, i| Some(bad_char(Format::Baggage, Some(Field::Value))(c, i)) },
        Poison { facts: "§8 Prefixed baggage (value raw, visible ASCII)", propagator: default,
            with: vec![], header: "ot-baggage-user", value: "abc", at: 1,
            expect: |c, i| Some(bad_char(Format::Baggage, Some(Field::Value))(c, i)) },
        Poison { facts: "§8 Prefixed baggage (value raw, visible ASCII)", propagator: default,
            with: vec![], header: "uberctx-user", value: "abc", at: 1,
            expect: |c, i| Some(bad_char(Format::Baggage, Some(Field::Value))(c, i)) },
        Poison { facts: "§9 POLICY: control characters, DEL, non-ASCII rejected", propagator: default,
            with: vec![], header: "x-request-id", value: "4f9cf65f-1b6a-4c3b-8d0e-2a7c9b1e5d43", at: 9,
            expect: |c, i| Some(bad_char(Format::RequestId, None)(c, i)) },
        Poison { facts: "§10 forwarded verbatim (only if it is a visible-ASCII token)", propagator: default,
            with: vec![], header: "x-ot-span-context", value: "EhQJnDGAHCHrSIQRMTMgaXFrrbcYAQ==", at: 4,
            expect: |c, i| Some(bad_char(Format::OtSpanContext, None)(c, i)) },
        Poison { facts: "§12 forwarded verbatim (only if it is base64)", propagator: default,
            with: vec![], header: "grpc-trace-bin", value: "AABL+S81d7NNpqPOkp0ADkc2ATTwZ6oLqQK3AgE", at: 4,
            expect: |c, i| Some(bad_char(Format::GrpcTraceBin, None)(c, i)) },
        Poison { facts: "§13 POLICY: lower-hex trace id", propagator: with_jaeger, with: vec![],
            header: "uber-trace-id", value: "463ac35c9f6413ad48485a3953bb6124:a2fb4a1d1a96d312:0:1", at: 3,
            expect: |c, i| Some(bad_char(Format::Jaeger, Some(Field::TraceId))(c, i)) },
        // "The parent is not validated and is reported as null": accepted, but not written.
        Poison { facts: "§13 POLICY: the parent is not validated", propagator: with_jaeger, with: vec![],
            header: "uber-trace-id", value: "463ac35c9f6413ad48485a3953bb6124:a2fb4a1d1a96d312:0:1", at: 50,
            expect: |_, _| None },
    ]
}

fn with_jaeger() -> Propagator {
    Propagator::builder()
        .extract([
            ContextFormat::B3Single,
            ContextFormat::B3Multi,
            ContextFormat::TraceParent,
            ContextFormat::Jaeger,
        ])
        .inject([ContextFormat::B3Multi, ContextFormat::Jaeger])
        .build()
}

#[test]
fn hostile_bytes_in_any_tracing_header_are_never_written() {
    let mut checked = 0;
    for row in poisons() {
        for hostile in HOSTILE {
            let mut value = row.value.as_bytes().to_vec();
            value.splice(row.at..=row.at, hostile.iter().copied());
            let mut pairs = row.with.clone();
            pairs.push((row.header, value.clone()));
            let what = format!(
                "{} [{}] {:?}",
                row.header,
                row.facts,
                String::from_utf8_lossy(&value)
            );
            for trust in [TrustPolicy::trusted(), TrustPolicy::untrusted()] {
                let p = (row.propagator)().to_builder().trust(trust).build();
                // Through `http::HeaderMap` when `http` accepts the bytes (obs-text), and
                // through raw bytes always (CR, LF, NUL, DEL too).
                let carriers: Vec<RequestContext> = header_map(&pairs)
                    .map(|h| p.extract(&h))
                    .into_iter()
                    .chain([p.extract(&Raw::new(&pairs))])
                    .collect();
                for cx in carriers {
                    let errors = reasons(&cx);
                    // A single hostile byte gives the exact reason; a longer sequence moves
                    // field boundaries, so only the format is certain.
                    match ((row.expect)(hostile[0], row.at), hostile.len()) {
                        (Some(e), 1) => {
                            assert!(errors.contains(&e), "{what}: {errors:?}, want {e:?}");
                        }
                        (Some(e), _) => assert!(
                            errors.iter().any(|r| r.0 == e.0),
                            "{what}: {errors:?}, want a {:?} error",
                            e.0
                        ),
                        (None, 1) => assert_eq!(errors, vec![], "{what}"),
                        (None, _) => {}
                    }
                    let maps = written(&p, cx);
                    assert_clean(&what, &maps);
                    for m in &maps {
                        for (name, v) in m {
                            assert!(
                                !contains(v.as_bytes(), hostile),
                                "{what}: {name}: {v:?} carries the hostile bytes"
                            );
                        }
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 400, "{checked}");
}

#[test]
fn baggage_values_with_control_or_non_ascii_characters_are_percent_encoded() {
    // FACTS §8: values are percent-decoded on extract; on inject "Code points outside
    // baggage-octet MUST be encoded" (upper-case hex).
    let p = Propagator::default();
    let h = header_map(&[("baggage", b("k=%0D%0A%00%7F%C3%A9%20x,j=1"))]).unwrap();
    let mut cx = p.extract(&h);
    assert_eq!(reasons(&cx), vec![]);
    assert_eq!(cx.baggage().get("k"), Some("\r\n\0\u{7f}é x"));
    // Forwarded as received while unchanged ...
    let [forwarded, _] = written(&p, cx.clone());
    assert_eq!(forwarded["baggage"], "k=%0D%0A%00%7F%C3%A9%20x,j=1");
    // ... and re-encoded once the application changed it.
    cx.baggage_mut().insert("app", "tab\there\u{0}é");
    let [forwarded, injected] = written(&p, cx);
    for out in [&forwarded, &injected] {
        assert_eq!(
            out["baggage"],
            "k=%0D%0A%00%7F%C3%A9%20x,j=1,app=tab%09here%00%C3%A9"
        );
    }

    // Entries the application builds: a key that is not a token is skipped, never written.
    let mut cx = RequestContext::new();
    cx.baggage_mut().insert("bad\r\nkey", "v");
    cx.baggage_mut()
        .push(BaggageEntry::new("ok", "\u{7f}").with_property("p\n", Some("x".to_owned())));
    let [forwarded, injected] = written(&p, cx);
    assert_clean("application baggage", &[forwarded.clone(), injected]);
    assert_eq!(forwarded["baggage"], "ok=%7F");

    // Prefixed entries are written raw (FACTS §8): a value that is not visible ASCII is not
    // written at all (as on extract), rather than sent as obs-text.
    for value in ["Amélie", "a\rb", "a\nb", "a\0b", "a\u{7f}b"] {
        let mut cx = RequestContext::new();
        cx.baggage_mut().push(BaggageEntry {
            key: "user".to_owned(),
            value: value.to_owned(),
            properties: Vec::new(),
            origin: BaggageOrigin::Prefixed(BaggagePrefix::Baggage),
        });
        let [forwarded, injected] = written(&p, cx);
        assert_clean(value, &[forwarded.clone(), injected.clone()]);
        assert!(forwarded.get("baggage-user").is_none(), "{value:?}");
        assert!(injected.get("baggage-user").is_none(), "{value:?}");
    }
    let (bag, dropped) = baggage::decode_lines([&b"k=caf\xc3\xa9"[..]]);
    assert!(bag.is_empty());
    assert_eq!(
        reason(&dropped.unwrap()),
        (
            Format::Baggage,
            Some(Field::Value),
            ErrorKind::InvalidCharacter {
                byte: 0xc3,
                index: 3
            }
        )
    );
}

#[test]
fn duplicate_hostile_lines_do_not_smuggle_a_second_value() {
    // FACTS §2 "First value wins"; §6 "Two traceparent field lines: invalid"; §9 "First value
    // wins". A second, hostile line is never what is written.
    let p = Propagator::default();
    let h = header_map(&[
        ("x-b3-traceid", b(TRACE)),
        ("x-b3-traceid", b"\xff\xfe".to_vec()),
        ("x-b3-spanid", b(SPAN)),
        ("x-b3-sampled", b("0")),
        ("x-b3-sampled", b("1")),
        ("x-request-id", b("rid-1")),
        ("x-request-id", b"\x80evil".to_vec()),
        ("traceparent", b(TRACEPARENT)),
        ("traceparent", b(TRACEPARENT)),
    ])
    .unwrap();
    let cx = p.extract(&h);
    assert_eq!(cx.remote().unwrap().sampling(), Sampling::Deny);
    assert!(
        reasons(&cx).contains(&(Format::TraceParent, None, ErrorKind::Duplicate)),
        "{:?}",
        cx.errors()
    );
    let [forwarded, injected] = written(&p, cx);
    assert_clean("duplicates", &[forwarded.clone(), injected.clone()]);
    for out in [&forwarded, &injected] {
        assert_eq!(out.get_all("x-b3-traceid").iter().count(), 1);
        assert_eq!(out["x-b3-sampled"], "0");
        assert_eq!(out["x-request-id"], "rid-1");
    }
    assert_eq!(forwarded["x-b3-traceid"], TRACE);
}

// ---------------------------------------------------------------------------------------
// The untrusted edge: clients keep their trace ids but cannot force sampling or debug, nor
// choose the request id. FACTS §9 POLICY ("At an untrusted edge, regenerate [the request id]
// unless configured to preserve, mirroring Envoy"), §6 ("only restart at trust boundaries"),
// §14 (Envoy edge: an external x-request-id is replaced, incoming B3 ids still honoured);
// DESIGN.md "edge trust policy (ignore inbound sampling/debug, regenerate request id)".
// ---------------------------------------------------------------------------------------

const CLIENT_UUID: &str = "4f9cf65f-1b6a-bc3b-8d0e-2a7c9b1e5d43"; // Envoy ClientForced nibble

struct Edge {
    rule: &'static str,
    headers: Vec<(&'static str, Vec<u8>)>,
    /// The sampling a trusted hop sees (the contrast: the client did ask for it).
    trusted: Option<Sampling>,
    /// Whether the client's trace id is kept (ids are honoured at the edge).
    keeps_trace: bool,
}

#[rustfmt::skip]
fn edge_rows() -> Vec<Edge> {
    let ids = |extra: &[(&'static str, &str)]| {
        let mut v = vec![("x-b3-traceid", b(TRACE)), ("x-b3-spanid", b(SPAN))];
        v.extend(extra.iter().map(|(k, x)| (*k, b(x))));
        v
    };
    vec![
        Edge { rule: "x-b3-flags: 1 (debug) with ids", headers: ids(&[("x-b3-flags", "1")]),
            trusted: Some(Sampling::Debug), keeps_trace: true },
        Edge { rule: "x-b3-flags: 1 alone (sampling-only debug)", headers: vec![("x-b3-flags", b("1"))],
            trusted: Some(Sampling::Debug), keeps_trace: false },
        Edge { rule: "x-b3-flags: 1 beats x-b3-sampled: 0", headers: ids(&[("x-b3-flags", "1"), ("x-b3-sampled", "0")]),
            trusted: Some(Sampling::Debug), keeps_trace: true },
        Edge { rule: "x-b3-sampled: 1 with ids", headers: ids(&[("x-b3-sampled", "1")]),
            trusted: Some(Sampling::Accept), keeps_trace: true },
        Edge { rule: "x-b3-sampled: true (legacy) with ids", headers: ids(&[("x-b3-sampled", "true")]),
            trusted: Some(Sampling::Accept), keeps_trace: true },
        Edge { rule: "x-b3-sampled: 1 alone", headers: vec![("x-b3-sampled", b("1"))],
            trusted: Some(Sampling::Accept), keeps_trace: false },
        Edge { rule: "x-b3-sampled: 0 with ids (a client cannot switch tracing off either)",
            headers: ids(&[("x-b3-sampled", "0")]), trusted: Some(Sampling::Deny), keeps_trace: true },
        Edge { rule: "b3: {t}-{s}-d", headers: vec![("b3", format!("{TRACE}-{SPAN}-d").into_bytes())],
            trusted: Some(Sampling::Debug), keeps_trace: true },
        Edge { rule: "b3: {t}-{s}-d-{p}", headers: vec![("b3", format!("{TRACE}-{SPAN}-d-{PARENT}").into_bytes())],
            trusted: Some(Sampling::Debug), keeps_trace: true },
        Edge { rule: "b3: d", headers: vec![("b3", b("d"))], trusted: Some(Sampling::Debug), keeps_trace: false },
        Edge { rule: "b3: 1", headers: vec![("b3", b("1"))], trusted: Some(Sampling::Accept), keeps_trace: false },
        Edge { rule: "traceparent sampled flag 01", headers: vec![("traceparent", b(TRACEPARENT))],
            trusted: Some(Sampling::Accept), keeps_trace: true },
        Edge { rule: "traceparent flags 03 (sampled + random)",
            headers: vec![("traceparent", format!("00-{TRACE}-{SPAN}-03").into_bytes())],
            trusted: Some(Sampling::Accept), keeps_trace: true },
        Edge { rule: "x-envoy-force-trace (Envoy removes it from external requests)",
            headers: vec![("x-envoy-force-trace", b("true"))], trusted: None, keeps_trace: false },
        Edge { rule: "x-client-trace-id (Envoy: client-forced trace)",
            headers: vec![("x-client-trace-id", b("client-forced-1"))], trusted: None, keeps_trace: false },
        Edge { rule: "x-envoy-force-trace + x-client-trace-id + a ClientForced request id",
            headers: vec![("x-envoy-force-trace", b("true")), ("x-client-trace-id", b("c-1")),
                ("x-request-id", b(CLIENT_UUID))],
            trusted: None, keeps_trace: false },
    ]
}

#[test]
fn untrusted_edge_ignores_client_forced_sampling_and_debug() {
    let edge = Propagator::builder()
        .trust(TrustPolicy::untrusted())
        .build();
    let inner = Propagator::default();
    for row in edge_rows() {
        let h = header_map(&row.headers).unwrap();
        let what = row.rule;

        // The contrast: a trusted hop inside the mesh honours what the client asked.
        let trusted = inner.extract(&h);
        assert_eq!(
            trusted.remote().map(|r| r.sampling()),
            row.trusted,
            "{what}"
        );

        let cx = edge.extract(&h);
        assert_eq!(reasons(&cx), vec![], "{what}");
        // Inbound sampling and debug become deferred: the edge decides.
        let sampling = cx.remote().map_or(Sampling::Deferred, |r| r.sampling());
        assert_eq!(sampling, Sampling::Deferred, "{what}");
        assert_eq!(
            cx.remote()
                .and_then(|r| r.trace_id())
                .map(|t| t.to_string()),
            row.keeps_trace.then(|| TRACE.to_owned()),
            "{what}: the client's trace id is kept iff it sent one"
        );
        // The request id is never the client's.
        assert!(cx.request_id().is_none(), "{what}");

        let server = edge.server_span(cx.remote());
        assert_eq!(server.sampling(), Sampling::Deferred, "{what}");
        let maps = written(&edge, cx);
        // The trace goes on: the client's when it sent ids, else the one started here
        // (forward mode included: a sampling-only context the policy dropped is no context).
        let trace = if row.keeps_trace {
            TRACE.to_owned()
        } else {
            maps[1]["x-b3-traceid"].to_str().unwrap().to_owned()
        };
        assert_eq!(row.keeps_trace, trace == TRACE, "{what}");
        assert_clean(what, &maps);
        for out in &maps {
            assert!(out.get("x-b3-flags").is_none(), "{what}: {out:?}");
            assert!(out.get("x-b3-sampled").is_none(), "{what}: {out:?}");
            assert!(out.get("x-envoy-force-trace").is_none(), "{what}");
            assert!(out.get("x-client-trace-id").is_none(), "{what}");
            if let Some(b3) = out.get("b3") {
                // `{t}-{s}` only: no sampling field at all.
                assert_eq!(
                    b3.as_bytes().iter().filter(|&&c| c == b'-').count(),
                    1,
                    "{what}: {b3:?}"
                );
            }
            if let Some(tp) = out.get("traceparent") {
                let flags = u8::from_str_radix(&tp.to_str().unwrap()[53..55], 16).unwrap();
                assert_eq!(flags & TraceFlags::SAMPLED.bits(), 0, "{what}: {tp:?}");
            }
            let rid = out["x-request-id"].to_str().unwrap();
            assert_ne!(rid, CLIENT_UUID, "{what}");
            let generated = b3_propagation::RequestId::parse(rid.as_bytes()).unwrap();
            assert!(generated.is_uuid(), "{what}: {rid}");
            assert_eq!(
                generated.trace_reason(),
                TraceReason::NotTraceable,
                "{what}"
            );
            assert!(
                out.get("x-b3-traceid")
                    .or(out.get("b3"))
                    .or(out.get("traceparent"))
                    .is_some_and(|v| contains(v.as_bytes(), trace.as_bytes())),
                "{what}: the trace continues: {out:?}"
            );
        }
    }
}

#[test]
fn untrusted_edge_regenerates_a_client_chosen_request_id() {
    // FACTS §9: at an untrusted edge, regenerate (Envoy `use_remote_address: true`, §14: "an
    // external x-request-id is replaced, even a valid UUID"); inside the mesh, keep it
    // verbatim; with `keep_request_id_only` (Envoy's preserve_external_request_id), keep it
    // but start a new trace.
    let h = header_map(&[
        ("x-request-id", b(CLIENT_UUID)),
        ("b3", format!("{TRACE}-{SPAN}-1").into_bytes()),
    ])
    .unwrap();

    let edge = Propagator::builder()
        .trust(TrustPolicy::untrusted())
        .build();
    let mut cx = edge.extract(&h);
    assert!(cx.request_id().is_none());
    let generated = cx.ensure_request_id().clone();
    assert_ne!(generated.as_str(), CLIENT_UUID);
    assert!(generated.is_uuid());
    assert_eq!(generated.trace_reason(), TraceReason::NotTraceable);

    let inner = Propagator::default();
    let cx = inner.extract(&h);
    assert_eq!(cx.request_id().unwrap().as_str(), CLIENT_UUID);
    assert_eq!(
        cx.request_id().unwrap().trace_reason(),
        TraceReason::ClientForced
    );
    let [forwarded, _] = written(&inner, cx);
    assert_eq!(forwarded["x-request-id"], CLIENT_UUID);

    let preserve = Propagator::builder()
        .trust(TrustPolicy::keep_request_id_only())
        .build();
    let cx = preserve.extract(&h);
    assert!(cx.remote().is_none(), "inbound context ignored");
    assert_eq!(cx.request_id().unwrap().as_str(), CLIENT_UUID);
    let [forwarded, injected] = written(&preserve, cx);
    for out in [&forwarded, &injected] {
        assert_eq!(out["x-request-id"], CLIENT_UUID);
        assert!(out.get("b3").is_none());
        assert!(out.get("x-b3-sampled").is_none());
        assert_ne!(out["x-b3-traceid"], TRACE);
    }

    // A hostile id at the edge is refused with its reason, like anywhere else.
    let cx = edge.extract(&header_map(&[("x-request-id", b"rid\x80".to_vec())]).unwrap());
    assert_eq!(
        reasons(&cx),
        vec![(
            Format::RequestId,
            None,
            ErrorKind::InvalidCharacter {
                byte: 0x80,
                index: 3
            }
        )]
    );
}
