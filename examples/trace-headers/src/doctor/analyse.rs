//! Grouping: spans and access-log lines into traces, traces into requests; then the rules of
//! [`rules`](super::rules) on each request, and the findings they add up to.

use std::collections::{BTreeMap, HashMap, HashSet};

use collector::{SpanKind, ZipkinSpan};

use super::Evidence;
use super::access_log::LogRecord;
use super::explain;
use super::mesh::{Mesh, service_of};
use super::report::{Finding, Kind, Report};
use super::rules::{self, Event};

/// Span tags that carry the request id: Envoy's, and what an application may set.
const REQUEST_ID_TAGS: [&str; 5] = [
    "guid:x-request-id",
    "x-request-id",
    "request_id",
    "http.request.header.x-request-id",
    "http.request.header.x_request_id",
];

/// The request id a span carries, if any (an OpenTelemetry header attribute stringified as
/// `["…"]` is unwrapped; a value that is not 1..=255 visible ASCII is ignored).
pub(crate) fn request_id_of(span: &ZipkinSpan) -> Option<&str> {
    REQUEST_ID_TAGS.iter().find_map(|k| {
        let v = span.tags.get(*k)?.as_str();
        let v = v
            .strip_prefix("[\"")
            .and_then(|v| v.strip_suffix("\"]"))
            .unwrap_or(v);
        (!v.is_empty() && v.len() <= 255 && v.bytes().all(|b| (0x21..=0x7e).contains(&b)))
            .then_some(v)
    })
}

/// One trace: its spans and access-log lines (indices), and when it began.
#[derive(Debug)]
pub(crate) struct Trace {
    pub(crate) id: String,
    pub(crate) spans: Vec<usize>,
    pub(crate) logs: Vec<usize>,
    /// Earliest span timestamp, else earliest log line; `u64::MAX` when unknown.
    pub(crate) start: u64,
}

/// One request: its traces in the order the request went through them
/// ([`rules::order_traces`]), and its request id.
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) traces: Vec<usize>,
    pub(crate) request_id: Option<String>,
}

/// Everything the rules look at.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    pub(crate) spans: Vec<&'a ZipkinSpan>,
    pub(crate) logs: &'a [LogRecord],
    /// `(trace id, span id)` → spans with that id (several when a span context is shared).
    pub(crate) by_key: HashMap<(&'a str, &'a str), Vec<usize>>,
    /// `(trace id, parent id)` → the spans naming it.
    pub(crate) children: HashMap<(&'a str, &'a str), Vec<usize>>,
    pub(crate) traces: Vec<Trace>,
    pub(crate) mesh: Mesh,
    /// The applications that report client spans of their own (a proxy's egress spans
    /// aside): their calls show, answered or not.
    pub(crate) timed_callers: HashSet<String>,
}

impl<'a> Ctx<'a> {
    /// The spans of `trace` with id `id`.
    pub(crate) fn spans_with_id(
        &self,
        trace: &str,
        id: &str,
    ) -> impl Iterator<Item = &'a ZipkinSpan> {
        self.by_key
            .get(&(trace, id))
            .into_iter()
            .flatten()
            .filter_map(|i| self.spans.get(*i).copied())
            .collect::<Vec<_>>()
            .into_iter()
    }

    /// The spans of trace index `t`.
    pub(crate) fn trace_spans(&self, t: usize) -> impl Iterator<Item = &'a ZipkinSpan> + '_ {
        self.traces
            .get(t)
            .into_iter()
            .flat_map(|tr| tr.spans.iter())
            .filter_map(|i| self.spans.get(*i).copied())
    }
}

/// Union-find over trace and request-id nodes.
struct Sets(Vec<usize>);

impl Sets {
    fn find(&mut self, mut x: usize) -> usize {
        while let Some(&p) = self.0.get(x) {
            if p == x {
                break;
            }
            let grand = self.0.get(p).copied().unwrap_or(p);
            if let Some(slot) = self.0.get_mut(x) {
                *slot = grand;
            }
            x = p;
        }
        x
    }

    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b
            && let Some(slot) = self.0.get_mut(a.max(b))
        {
            *slot = a.min(b);
        }
    }
}

/// Put trace `t` in the same request as request id `rid`.
fn join(t: usize, rid: &str, sets: &mut Sets, nodes: &mut HashMap<String, usize>) {
    let node = if let Some(&n) = nodes.get(rid) {
        n
    } else {
        let n = sets.0.len();
        sets.0.push(n);
        nodes.insert(rid.to_owned(), n);
        n
    };
    sets.union(t, node);
}

/// Group the evidence into traces and requests, apply the rules, and count.
#[must_use]
pub fn analyse(evidence: &Evidence) -> Report {
    // The same span given twice (two overlapping sources) counts once; spans that differ in
    // anything are all kept, whatever their order.
    let mut seen: HashSet<&ZipkinSpan> = HashSet::new();
    let spans: Vec<&ZipkinSpan> = evidence.spans.iter().filter(|s| seen.insert(s)).collect();
    let mut by_key: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    let mut children: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    let mut trace_index: HashMap<String, usize> = HashMap::new();
    let mut traces: Vec<Trace> = Vec::new();
    let mut trace_of = |id: &str, traces: &mut Vec<Trace>| -> usize {
        *trace_index.entry(id.to_owned()).or_insert_with(|| {
            traces.push(Trace {
                id: id.to_owned(),
                spans: Vec::new(),
                logs: Vec::new(),
                start: u64::MAX,
            });
            traces.len() - 1
        })
    };
    for (i, s) in spans.iter().enumerate() {
        by_key.entry((&s.trace_id, &s.id)).or_default().push(i);
        if let Some(p) = &s.parent_id {
            children.entry((&s.trace_id, p)).or_default().push(i);
        }
        let t = trace_of(&s.trace_id, &mut traces);
        if let Some(tr) = traces.get_mut(t) {
            tr.spans.push(i);
            if s.timestamp > 0 {
                tr.start = tr.start.min(s.timestamp);
            }
        }
    }
    let logs = evidence.logs.as_slice();
    let span_traces: HashSet<&str> = spans.iter().map(|s| s.trace_id.as_str()).collect();
    for (i, r) in logs.iter().enumerate() {
        for id in &r.trace_ids {
            // Envoy logs a 128-bit trace's low half beside it (`trace_id` and
            // `envoy_trace_id`): padded, that half is the same trace, unless spans carry it
            // (a hop that cut the id to 64 bits: then the line joins both).
            if let Some(low) = id.strip_prefix("0000000000000000")
                && !span_traces.contains(id.as_str())
                && r.trace_ids.iter().any(|o| o != id && o.ends_with(low))
            {
                continue;
            }
            let t = trace_of(id, &mut traces);
            if let Some(tr) = traces.get_mut(t) {
                tr.logs.push(i);
                if tr.spans.is_empty() && r.start_us > 0 {
                    tr.start = tr.start.min(r.start_us);
                }
            }
        }
    }

    // Request ids join traces: nodes 0..traces are traces, then one node per request id.
    let mut sets = Sets((0..traces.len()).collect());
    let mut rid_nodes: HashMap<String, usize> = HashMap::new();
    for s in &spans {
        if let (Some(rid), Some(&t)) = (request_id_of(s), trace_index.get(&s.trace_id)) {
            join(t, rid, &mut sets, &mut rid_nodes);
        }
    }
    let mut unjoined: HashSet<&str> = HashSet::new();
    for r in logs {
        let Some(rid) = r.request_id.as_deref() else {
            continue;
        };
        if r.trace_ids.is_empty() {
            unjoined.insert(rid);
        }
        for id in &r.trace_ids {
            if let Some(&t) = trace_index.get(id) {
                join(t, rid, &mut sets, &mut rid_nodes);
            }
        }
    }
    let unjoined = unjoined
        .iter()
        .filter(|rid| !rid_nodes.contains_key(**rid))
        .count();

    let mut components: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for t in 0..traces.len() {
        components.entry(sets.find(t)).or_default().push(t);
    }
    let order = |t: &usize| {
        traces
            .get(*t)
            .map(|tr| (tr.start, tr.id.clone()))
            .unwrap_or_default()
    };
    let mut groups: Vec<Group> = components
        .into_values()
        .map(|mut ts| {
            ts.sort_by_key(order);
            Group {
                traces: ts,
                request_id: None,
            }
        })
        .collect();
    groups.sort_by_key(|g| g.traces.first().map(order).unwrap_or_default());

    let mesh = Mesh::learn(&spans, &by_key, logs, &evidence.edges);
    let timed_callers = spans
        .iter()
        .filter(|s| s.kind == Some(SpanKind::Client) && !mesh.is_proxy(service_of(s)))
        .map(|s| mesh.app_of(service_of(s)).to_owned())
        .collect();
    let ctx = Ctx {
        spans,
        logs,
        by_key,
        children,
        traces,
        mesh,
        timed_callers,
    };
    for g in &mut groups {
        // The groups stay in the order they began (sorted above); within one, the traces
        // that provably continue another go after the others, whatever the clocks say.
        rules::order_traces(&ctx, g);
        g.request_id = primary_request_id(&ctx, g);
    }

    let mut report = Report {
        requests: groups.len(),
        traces: ctx.traces.len(),
        broken: 0,
        findings: Vec::new(),
        spans: ctx.spans.len(),
        log_lines: logs.len(),
        unjoined_request_ids: unjoined,
    };
    for g in &groups {
        let findings = aggregate(rules::events(&ctx, g), g);
        if findings.iter().any(|f| f.kind.counts_as_broken()) {
            report.broken += 1;
        }
        report.findings.extend(findings);
    }
    report
}

/// The request id of a request: the first one its earliest trace shows (in time), else any.
fn primary_request_id(ctx: &Ctx<'_>, g: &Group) -> Option<String> {
    for &t in &g.traces {
        let mut spans: Vec<&ZipkinSpan> = ctx.trace_spans(t).collect();
        spans.sort_by_key(|s| (s.timestamp, s.parent_id.is_some()));
        if let Some(rid) = spans.iter().find_map(|s| request_id_of(s)) {
            return Some(rid.to_owned());
        }
        let mut logs: Vec<&LogRecord> = ctx
            .traces
            .get(t)
            .into_iter()
            .flat_map(|tr| tr.logs.iter())
            .filter_map(|i| ctx.logs.get(*i))
            .collect();
        logs.sort_by_key(|r| r.start_us);
        if let Some(rid) = logs.iter().find_map(|r| r.request_id.clone()) {
            return Some(rid);
        }
    }
    None
}

/// Events of one request, added up into findings: one per kind, culprit and hop.
fn aggregate(events: Vec<Event>, g: &Group) -> Vec<Finding> {
    let mut order: Vec<(Kind, String, String, rules::Case)> = Vec::new();
    let mut by: HashMap<(Kind, String, String, rules::Case), Vec<Event>> = HashMap::new();
    for e in events {
        let key = (e.kind, e.culprit.clone(), e.hop.clone(), e.case);
        if !by.contains_key(&key) {
            order.push(key.clone());
        }
        by.entry(key).or_default().push(e);
    }
    order.sort_by_key(|k| k.0);
    order
        .into_iter()
        .filter_map(|key| {
            let events = by.remove(&key)?;
            Some(explain::finding(&events, g.request_id.as_deref()))
        })
        .collect()
}
