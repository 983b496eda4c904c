//! `trace-headers doctor`'s input and analysis on arbitrary bytes. The input is a span source
//! (Zipkin v2 JSON: spans or traces), optionally followed by a line `---` and an access log.
//! `parse_source_bytes` and `parse_access_log` never panic; whatever they accept, `analyse`
//! turns into a report whose counts hold together (broken ≤ requests ≤ traces, broken > 0
//! exactly when a finding counts as broken), whose findings name a culprit, explain
//! themselves and carry normalised ids, whose JSON has the contract's shape, and whose
//! grouping does not depend on the order of the spans.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use trace_headers::doctor::{self, Evidence, Report};

/// The span source, and the access log after a `---` line (if any).
fn sections(data: &[u8]) -> (&[u8], Option<&[u8]>) {
    let sep = b"\n---\n";
    match data.windows(sep.len()).position(|w| w == sep) {
        Some(i) => (&data[..i], Some(&data[i + sep.len()..])),
        None => (data, None),
    }
}

fn lower_hex(id: &str, len: usize) -> bool {
    id.len() == len
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[track_caller]
fn check(report: &Report) {
    assert!(report.broken <= report.requests, "{report:?}");
    assert!(report.requests <= report.traces, "{report:?}");
    assert_eq!(
        report.broken > 0,
        report.findings.iter().any(|f| f.kind.counts_as_broken()),
        "{report:?}"
    );
    assert_eq!(report.is_broken(), report.broken > 0);
    for f in &report.findings {
        assert!(!f.service.is_empty(), "{f:?}");
        assert!(!f.explanation.is_empty(), "{f:?}");
        assert!(!f.trace_ids.is_empty(), "{f:?}");
        assert!(f.trace_ids.iter().all(|t| lower_hex(t, 32)), "{f:?}");
        assert!(f.span_ids.iter().all(|s| lower_hex(s, 16)), "{f:?}");
    }
    let json = report.to_json();
    let keys: Vec<&str> = json
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["requests", "traces", "broken", "findings"]);
    let text = serde_json::to_string(&json).expect("serialisable");
    let back: Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(back, json);
    let findings = json["findings"].as_array().expect("findings");
    assert_eq!(findings.len(), report.findings.len());
    for f in findings {
        let keys: Vec<&str> = f
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "kind",
                "service",
                "request_id",
                "trace_ids",
                "span_ids",
                "explanation"
            ]
        );
    }
    assert!(report.to_text().contains("broken"));
}

fuzz_target!(|data: &[u8]| {
    let (source, log) = sections(data);
    let spans = doctor::parse_source_bytes(source).unwrap_or_default();
    let logs = log
        .and_then(|l| doctor::parse_access_log(&String::from_utf8_lossy(l)).ok())
        .map(|l| l.records)
        .unwrap_or_default();
    if spans.is_empty() && logs.is_empty() {
        return;
    }
    let evidence = Evidence {
        spans,
        logs,
        edges: Vec::new(),
    };
    let report = doctor::analyse(&evidence);
    check(&report);
    // The same input gives the same report, and the grouping ignores the order of the spans.
    assert_eq!(doctor::analyse(&evidence), report);
    let mut reversed = evidence.clone();
    reversed.spans.reverse();
    reversed.logs.reverse();
    let other = doctor::analyse(&reversed);
    check(&other);
    assert_eq!(
        (other.requests, other.traces, other.spans),
        (report.requests, report.traces, report.spans)
    );
});
