//! Regressions found by the cargo-fuzz targets in `fuzz/` (`propagator_extract`,
//! `baggage`): what the propagator forwards is visible ASCII and spaces only, within the
//! limits of FACTS.md, even when the received value was valid only thanks to OWS.

use b3_propagation::baggage::MAX_BYTES;
use b3_propagation::codec::baggage;
use b3_propagation::{Propagator, header};
use http::{HeaderMap, HeaderValue};

fn forward(incoming: &HeaderMap) -> HeaderMap {
    let p = Propagator::default();
    let cx = p.extract(incoming);
    assert!(cx.errors().is_empty(), "{:?}", cx.errors());
    let mut out = HeaderMap::new();
    p.forward(&cx, &mut out);
    out
}

/// `propagator_extract` crash: `traceparent: \t00-…-01` (OWS is tolerated, FACTS §6) was
/// forwarded verbatim, HTAB included.
#[test]
fn traceparent_ows_is_not_forwarded() {
    let canonical = "00-12345678901234567890123456789012-1234567890123456-01";
    for received in [
        format!("\t{canonical}"),
        format!("{canonical}\t"),
        format!(" \t{canonical} "),
        format!(" {canonical}"),
    ] {
        let mut incoming = HeaderMap::new();
        incoming.insert(
            header::TRACEPARENT,
            HeaderValue::from_str(&received).unwrap(),
        );
        let out = forward(&incoming);
        assert_eq!(out[header::TRACEPARENT], canonical, "{received:?}");
    }
}

/// `propagator_extract` / `baggage` crash: a `baggage` value whose members fit in 8192 bytes
/// but whose OWS did not was forwarded verbatim: 9007 bytes on the next hop.
#[test]
fn baggage_kept_verbatim_never_exceeds_the_limit() {
    let received = format!("k=v,{}j=w", " ".repeat(9000));
    let mut incoming = HeaderMap::new();
    incoming.insert(header::BAGGAGE, HeaderValue::from_str(&received).unwrap());
    let out = forward(&incoming);
    assert_eq!(out[header::BAGGAGE], "k=v,j=w");

    let (bag, dropped) = baggage::decode_value(&HeaderValue::from_str(&received).unwrap());
    assert!(dropped.is_none());
    assert_eq!(bag.len(), 2);
    assert!(bag.raw_header().is_none());
    assert!(bag.to_header_value().unwrap().len() <= MAX_BYTES);
}

/// `propagator_extract` crash: HTAB as OWS in `baggage` was forwarded verbatim. A value with
/// plain spaces after the commas (the spec's own examples) is still shared, not re-encoded.
#[test]
fn baggage_htab_ows_is_not_forwarded() {
    let mut incoming = HeaderMap::new();
    incoming.insert(header::BAGGAGE, HeaderValue::from_static("a=1,\tb=2;p\t"));
    let out = forward(&incoming);
    assert_eq!(out[header::BAGGAGE], "a=1,b=2;p");

    let spaced = HeaderValue::from_static("a=1, b=2; p=3");
    let (bag, _) = baggage::decode_value(&spaced);
    assert_eq!(bag.raw_header(), Some(&spaced));
    let mut incoming = HeaderMap::new();
    incoming.insert(header::BAGGAGE, spaced.clone());
    assert_eq!(forward(&incoming)[header::BAGGAGE], spaced);
}
