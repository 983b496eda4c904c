//! What the doctor found, as text for people or as one JSON object.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};

use serde_json::{Value, json};

/// What kind of break (or expected restart) a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Kind {
    /// A service received a trace and its outgoing calls started new traces.
    HeadersDropped,
    /// Spans name as parent a span id that the service wrote into its calls and never
    /// reported.
    UnreportedParent,
    /// Spans name as parent a span of another trace of the same request: a hop changed the
    /// trace id but kept the parent span id.
    TraceIdChanged,
    /// One trace has several roots (distinct span ids with no parent; a shared server half
    /// under a span with its id is no root).
    MultipleRoots,
    /// One service reported different spans of one kind under one span id.
    DuplicateSpanId,
    /// The request id changes inside one trace: a hop did not forward `x-request-id`. The
    /// trace is whole; not counted as broken.
    RequestIdDropped,
    /// An edge restarted the client's trace by policy. Expected; not counted as broken.
    EdgeRestart,
    /// The edge (or the request's first server hop) names as parent the span of a client
    /// outside the mesh. Expected; not counted as broken.
    ClientParent,
    /// A client sent the same request id again for a new request. Not counted as broken.
    RequestIdReused,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 9] = [
        Kind::HeadersDropped,
        Kind::UnreportedParent,
        Kind::TraceIdChanged,
        Kind::MultipleRoots,
        Kind::DuplicateSpanId,
        Kind::RequestIdDropped,
        Kind::EdgeRestart,
        Kind::ClientParent,
        Kind::RequestIdReused,
    ];

    /// The stable name used in JSON: `headers-dropped`, `unreported-parent`, ….
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::HeadersDropped => "headers-dropped",
            Kind::UnreportedParent => "unreported-parent",
            Kind::TraceIdChanged => "trace-id-changed",
            Kind::MultipleRoots => "multiple-roots",
            Kind::DuplicateSpanId => "duplicate-span-id",
            Kind::RequestIdDropped => "request-id-dropped",
            Kind::EdgeRestart => "edge-restart",
            Kind::ClientParent => "client-parent",
            Kind::RequestIdReused => "request-id-reused",
        }
    }

    /// Whether a finding of this kind makes its request broken (the trace is in pieces).
    #[must_use]
    pub const fn counts_as_broken(self) -> bool {
        matches!(
            self,
            Kind::HeadersDropped
                | Kind::UnreportedParent
                | Kind::TraceIdChanged
                | Kind::MultipleRoots
                | Kind::DuplicateSpanId
        )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding: what broke (or restarted), who must change, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The kind.
    pub kind: Kind,
    /// The culprit: the application or proxy that must change (not the span that shows the
    /// symptom).
    pub service: String,
    /// The request's `x-request-id`, when known.
    pub request_id: Option<String>,
    /// The traces involved: the one the request arrived in first (when known), then those
    /// that show the symptom; 32 lower-case hex.
    pub trace_ids: Vec<String>,
    /// The spans that show the symptom (where a new trace or a piece begins, the orphans).
    pub span_ids: Vec<String>,
    /// The cause, in plain words.
    pub explanation: String,
}

impl Finding {
    /// The finding as the JSON object of the contract.
    #[must_use]
    pub fn to_json(&self) -> Value {
        json!({
            "kind": self.kind.as_str(),
            "service": self.service,
            "request_id": self.request_id,
            "trace_ids": self.trace_ids,
            "span_ids": self.span_ids,
            "explanation": self.explanation,
        })
    }
}

/// What the doctor found in all its input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Requests: groups of traces joined by request ids (a trace without one is a request of
    /// its own).
    pub requests: usize,
    /// Distinct traces, from spans and access logs.
    pub traces: usize,
    /// Requests with at least one finding of a kind that [counts as
    /// broken](Kind::counts_as_broken). Never more than `requests`.
    pub broken: usize,
    /// Every finding, request by request.
    pub findings: Vec<Finding>,
    /// Spans read (the same span given twice counts once).
    pub spans: usize,
    /// Access-log lines read.
    pub log_lines: usize,
    /// Request ids seen only in access-log lines without a trace id.
    pub unjoined_request_ids: usize,
}

/// An id as people read it: a 64-bit trace id padded to 32 hex shown at 16, then the first
/// eight characters and `…`.
#[must_use]
pub(crate) fn short(id: &str) -> String {
    let id = match id.strip_prefix("0000000000000000") {
        Some(low) if id.len() == 32 => low,
        _ => id,
    };
    let head: String = id.chars().take(8).collect();
    if id.chars().count() > 8 {
        format!("{head}…")
    } else {
        head
    }
}

impl Report {
    /// Whether some request is broken: the CLI exits 1.
    #[must_use]
    pub fn is_broken(&self) -> bool {
        self.broken > 0
    }

    /// The JSON object of the contract: `{"requests", "traces", "broken", "findings"}`.
    #[must_use]
    pub fn to_json(&self) -> Value {
        json!({
            "requests": self.requests,
            "traces": self.traces,
            "broken": self.broken,
            "findings": self.findings.iter().map(Finding::to_json).collect::<Vec<_>>(),
        })
    }

    /// The report for people: a summary line, each finding with its explanation, traces and
    /// spans, and a verdict naming what to change.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} {}, {} {}, {} broken  (read {} spans, {} access-log lines)",
            self.requests,
            plural(self.requests, "request", "requests"),
            self.traces,
            plural(self.traces, "trace", "traces"),
            self.broken,
            self.spans,
            self.log_lines,
        );
        if self.unjoined_request_ids > 0 {
            let _ = writeln!(
                out,
                "{} request {} only in access-log lines without a trace id (not traced, or \
                 their spans are missing)",
                self.unjoined_request_ids,
                plural(self.unjoined_request_ids, "id appears", "ids appear"),
            );
        }
        for f in &self.findings {
            let label = if f.kind.counts_as_broken() {
                "BROKEN"
            } else {
                "note"
            };
            let _ = write!(out, "\n{label}  {}  {}", f.kind, f.service);
            if let Some(rid) = &f.request_id {
                let _ = write!(out, "  request {rid}");
            }
            let _ = writeln!(out, "\n  {}", f.explanation);
            if !f.trace_ids.is_empty() {
                let _ = writeln!(out, "  traces  {}", f.trace_ids.join(" "));
            }
            if !f.span_ids.is_empty() {
                let _ = writeln!(out, "  spans   {}", f.span_ids.join(" "));
            }
        }
        let culprits: BTreeSet<&str> = self
            .findings
            .iter()
            .filter(|f| f.kind.counts_as_broken())
            .map(|f| f.service.as_str())
            .collect();
        out.push('\n');
        if culprits.is_empty() {
            let _ = writeln!(out, "no broken request");
        } else {
            let _ = writeln!(
                out,
                "{} of {} {} broken; change: {}",
                self.broken,
                self.requests,
                plural(self.requests, "request", "requests"),
                culprits.into_iter().collect::<Vec<_>>().join(", "),
            );
        }
        out
    }
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids() {
        assert_eq!(short("00000000000000005b8efff798038103"), "5b8efff7…");
        assert_eq!(short("4bf92f3577b34da6a3ce929d0e0e4736"), "4bf92f35…");
        assert_eq!(short("3d48b776-a796-92d9-8cd9-55cf73e43c5e"), "3d48b776…");
        assert_eq!(short("abc"), "abc");
    }

    #[test]
    fn kinds_have_stable_names() {
        let names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), names.iter().collect::<BTreeSet<_>>().len());
        assert!(Kind::HeadersDropped.counts_as_broken());
        assert!(!Kind::EdgeRestart.counts_as_broken());
    }
}
