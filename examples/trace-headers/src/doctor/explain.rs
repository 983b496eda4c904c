//! The wording: the events of one kind, culprit and hop added up into a [`Finding`] with its
//! explanation in plain words.

use std::collections::BTreeSet;

use super::report::{Finding, Kind, short};
use super::rules::{Case, Event};

fn push_unique(v: &mut Vec<String>, s: &str) {
    if !v.iter().any(|x| x == s) {
        v.push(s.to_owned());
    }
}

/// `1 call` / `3 calls`.
fn count(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// The events of one kind, culprit and hop (at least one), as a finding of request `rid`.
pub(crate) fn finding(events: &[Event], rid: Option<&str>) -> Finding {
    let first = events.first();
    let kind = first.map_or(Kind::HeadersDropped, |e| e.kind);
    let case = first.map_or(Case::Plain, |e| e.case);
    let culprit = first.map(|e| e.culprit.clone()).unwrap_or_default();
    let hop = first.map(|e| e.hop.clone()).unwrap_or_default();
    let related = events.iter().find_map(|e| e.related.clone());
    let mut trace_ids = Vec::new();
    if kind != Kind::RequestIdDropped
        && let Some(r) = &related
    {
        push_unique(&mut trace_ids, r);
    }
    let mut span_ids = Vec::new();
    let mut traces = Vec::new();
    let mut details = Vec::new();
    let mut callees = BTreeSet::new();
    let mut rivals = BTreeSet::new();
    for e in events {
        rivals.extend(e.rivals.iter().filter(|r| **r != culprit).cloned());
        push_unique(&mut trace_ids, &e.trace);
        push_unique(&mut traces, &e.trace);
        if let Some(s) = &e.span {
            push_unique(&mut span_ids, s);
        }
        if let Some(d) = &e.detail {
            push_unique(&mut details, d);
        }
        if let Some(c) = &e.callee {
            callees.insert(c.clone());
        }
    }
    let request_id = match kind {
        Kind::RequestIdDropped => related.clone().or_else(|| rid.map(str::to_owned)),
        _ => rid.map(str::to_owned),
    };
    let n = events.len();
    let words = Words {
        culprit: &culprit,
        hop: &hop,
        rid: request_id
            .as_deref()
            .map_or_else(|| "without id".to_owned(), short),
        rid_known: request_id.is_some(),
        received: related.as_deref().map(short),
        traces: traces
            .iter()
            .map(|t| short(t))
            .collect::<Vec<_>>()
            .join(", "),
        callees: if callees.is_empty() {
            "its upstream".to_owned()
        } else {
            callees.into_iter().collect::<Vec<_>>().join(", ")
        },
        ids: details
            .iter()
            .map(|d| short(d))
            .collect::<Vec<_>>()
            .join(", "),
        details: details.join(", "),
        n,
    };
    let mut explanation = words.explain(kind, case);
    if !rivals.is_empty() {
        let rivals = rivals.into_iter().collect::<Vec<_>>().join(" or ");
        if !explanation.ends_with('.') {
            explanation.push('.');
        }
        explanation.push_str(&format!(
            " {rivals} was handling this request at the same moment too, and no client span or \
             access log says which of them made this call: the culprit may be {rivals} instead \
             (client spans, or the sidecars' access logs, would tell)."
        ));
    }
    Finding {
        kind,
        service: culprit.clone(),
        request_id,
        trace_ids,
        span_ids,
        explanation,
    }
}

/// What an explanation is made of.
struct Words<'a> {
    culprit: &'a str,
    hop: &'a str,
    rid: String,
    rid_known: bool,
    received: Option<String>,
    traces: String,
    callees: String,
    /// The details, ids shortened.
    ids: String,
    /// The details as they are (a hop).
    details: String,
    n: usize,
}

impl Words<'_> {
    fn explain(&self, kind: Kind, case: Case) -> String {
        let Words {
            culprit: c,
            hop,
            rid,
            traces,
            callees,
            ids,
            details,
            n,
            ..
        } = self;
        let n = *n;
        let received = self.received.as_deref().unwrap_or("?");
        let got = match &self.received {
            Some(r) => format!("{c} received trace {r} (request {rid}) and its"),
            None => format!("In request {rid}, {c}'s"),
        };
        let calls = if n == 1 {
            "call".to_owned()
        } else {
            format!("{n} calls")
        };
        let new_traces = if n == 1 { "a new trace" } else { "new traces" };
        // `order-sidecar's egress spans`, `item's server spans`.
        let spans_at = if hop.contains("'s ") {
            format!("{hop} spans")
        } else {
            format!("{hop}'s spans")
        };
        match (kind, case) {
            (Kind::HeadersDropped, Case::Unlinked) if self.rid_known => format!(
                "trace {traces} begins at {hop}: {c} called {callees} without trace headers, \
                 and no other trace carries its request id {rid}: {c} drops x-request-id too, \
                 or the request it served is not in the data"
            ),
            (Kind::HeadersDropped, Case::Unlinked) => format!(
                "trace {traces} begins at {hop}: {c} called {callees} without trace headers, \
                 and the trace carries no request id that would join it to the request {c} \
                 served"
            ),
            (Kind::HeadersDropped, Case::Egress) => format!(
                "{got} {calls} to {callees} started {new_traces} at {hop}: {c} forwards \
                 x-request-id but not the trace headers"
            ),
            (Kind::HeadersDropped, Case::InApp) => format!(
                "{got} {calls} to {callees} started {new_traces} in {c} itself: those spans \
                 have no parent, so {c} makes the calls outside the request's context (a task \
                 spawned without it, or a client without the trace layer)"
            ),
            (Kind::HeadersDropped, Case::CallerUnknown) => format!(
                "{hop} started {} for request {rid}, which arrived in trace {received}: its \
                 caller forwards x-request-id but not the trace headers; no span of the caller \
                 is in the data, so the finding is named after {hop}",
                count(n, "new trace", "new traces")
            ),
            (Kind::HeadersDropped, _) => format!(
                "{got} {calls} to {callees} arrived at {hop} without trace headers and \
                 started {new_traces}: {c} forwards x-request-id but not the trace headers"
            ),
            (Kind::EdgeRestart, Case::ByPosition) => format!(
                "{c} is where request {rid} entered (nothing served it before) and started \
                 trace {traces} with no parent, while the client's spans are in trace \
                 {received}: a restart by edge policy (expected, not counted)"
            ),
            (Kind::EdgeRestart, _) => format!(
                "{c} started trace {traces} with no parent for request {rid}, which arrived in \
                 trace {received}: an untrusted edge restarting a client's trace by policy \
                 (expected, not counted)"
            ),
            (Kind::RequestIdReused, _) => format!(
                "{c} served request id {rid} again in trace {traces}, after trace {received}: \
                 the client sent the same id twice (a retry, or a fixed id), a second request \
                 rather than a break (not counted)"
            ),
            (Kind::UnreportedParent, Case::Egress) => format!(
                "{spans_at} name parents nobody reported ({n}): {c} writes span ids into its \
                 calls that it never reports (or its spans never reach the collector)"
            ),
            (Kind::UnreportedParent, Case::InApp) => format!(
                "{spans_at} name parents inside {c} that nobody reported ({n}): {c} starts \
                 spans under a span it never exports (dropped by its sampler, or never ended)"
            ),
            (Kind::UnreportedParent, Case::CallerUnknown) => format!(
                "{spans_at} name parents nobody reported ({n}): whoever calls {hop} sends span \
                 ids it never reports; no span of the caller is in the data, so the finding is \
                 named after {hop}"
            ),
            (Kind::UnreportedParent, _) => format!(
                "{spans_at} name parents nobody reported ({n}): their caller {c} sends span \
                 ids it never reports (or its spans never reach the collector)"
            ),
            (Kind::ClientParent, _) => format!(
                "{c} continues a client's trace: the parent it names ({ids}) is the client's \
                 span, outside the mesh (expected, not counted)"
            ),
            (Kind::TraceIdChanged, _) => format!(
                "{spans_at} name parent {ids} of trace {received} but are in trace {traces} \
                 ({n}): {c} sends a trace id other than the one of the span it reports"
            ),
            (Kind::MultipleRoots, Case::InApp) => format!(
                "trace {traces} has more than one root: {spans_at} have no parent ({n}) \
                 although the trace began at {details}: {c} starts them as roots under the \
                 request's trace id (a context that lost its span), so the trace is in pieces \
                 under one id"
            ),
            (Kind::MultipleRoots, Case::Egress) => format!(
                "trace {traces} has more than one root: {spans_at} have no parent ({n}) \
                 although the trace began at {details}: {c} sends the trace id without the \
                 parent span id, so the trace is in pieces under one id"
            ),
            (Kind::MultipleRoots, Case::CallerUnknown) => format!(
                "trace {traces} has more than one root: {spans_at} have no parent ({n}) \
                 although the trace began at {details}: whoever calls {hop} sends the trace id \
                 without the parent span id; no span of the caller is in the data, so the \
                 finding is named after {hop}"
            ),
            (Kind::MultipleRoots, _) => format!(
                "trace {traces} has more than one root: {spans_at} have no parent ({n}) \
                 although the trace began at {details}: their caller {c} sends the trace id \
                 without the parent span id, so the trace is in pieces under one id"
            ),
            (Kind::DuplicateSpanId, _) => format!(
                "{hop} reported {n} different spans under one id ({ids}) in trace {traces}: \
                 {c} reuses span ids, which must be unique per span"
            ),
            (Kind::RequestIdDropped, _) => format!(
                "trace {traces} changes request id at {hop}: {rid} became {ids} ({n}): {c} \
                 does not forward x-request-id, so its calls get a new one and access logs no \
                 longer join (the trace itself is whole; not counted)"
            ),
        }
    }
}
