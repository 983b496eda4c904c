//! Is a trace joined? One root, no orphan spans, and spans from every expected service.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use collector::ZipkinSpan;

/// What one trace looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceCheck {
    /// The trace id (32 hex).
    pub trace_id: String,
    /// Number of spans.
    pub spans: usize,
    /// Spans without a parent.
    pub roots: usize,
    /// Spans whose parent is not in the trace.
    pub orphans: usize,
    /// Services that reported spans.
    pub services: BTreeSet<String>,
}

impl TraceCheck {
    /// Check the spans of one trace.
    #[must_use]
    pub fn of(trace_id: &str, spans: &[ZipkinSpan]) -> Self {
        let ids: HashSet<&str> = spans.iter().map(|s| s.id.as_str()).collect();
        // A Zipkin shared span (same id, client and server halves) is one span for the tree.
        let mut seen = HashSet::new();
        let mut roots = 0;
        let mut orphans = 0;
        for s in spans {
            if !seen.insert((s.id.as_str(), s.parent_id.as_deref())) {
                continue;
            }
            match s.parent_id.as_deref() {
                None => roots += 1,
                Some(p) if ids.contains(p) && p != s.id => {}
                Some(_) => orphans += 1,
            }
        }
        TraceCheck {
            trace_id: trace_id.to_owned(),
            spans: spans.len(),
            roots,
            orphans,
            services: spans
                .iter()
                .filter_map(|s| s.service().map(str::to_owned))
                .collect(),
        }
    }

    /// Joined: exactly one root, no orphan, and every one of `services` present.
    #[must_use]
    pub fn joined(&self, services: &[&str]) -> bool {
        self.roots == 1 && self.orphans == 0 && services.iter().all(|s| self.services.contains(*s))
    }
}

/// Group spans by trace id (normalised by the collector), in first-seen order.
#[must_use]
pub fn by_trace(spans: &[ZipkinSpan]) -> BTreeMap<String, Vec<ZipkinSpan>> {
    let mut out: BTreeMap<String, Vec<ZipkinSpan>> = BTreeMap::new();
    for s in spans {
        out.entry(s.trace_id.clone()).or_default().push(s.clone());
    }
    out
}

/// `p`-th percentile (0..=100) of sorted values; 0 for none.
#[must_use]
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: &str, parent: Option<&str>, service: &str) -> ZipkinSpan {
        serde_json::from_value(serde_json::json!({
            "traceId": "0000000000000000000000000000000a", "id": id, "parentId": parent,
            "name": "x", "localEndpoint": {"serviceName": service},
        }))
        .unwrap()
    }

    #[test]
    fn joined_needs_one_root_no_orphans_all_services() {
        let spans = vec![
            span("0000000000000001", None, "frontend"),
            span("0000000000000002", Some("0000000000000001"), "user"),
        ];
        let c = TraceCheck::of("a", &spans);
        assert!(c.joined(&["frontend", "user"]));
        assert!(!c.joined(&["frontend", "user", "item"]));
        let mut orphaned = spans;
        orphaned.push(span("0000000000000003", Some("00000000000000ff"), "item"));
        let c = TraceCheck::of("a", &orphaned);
        assert_eq!(c.orphans, 1);
        assert!(!c.joined(&["frontend"]));
    }

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
