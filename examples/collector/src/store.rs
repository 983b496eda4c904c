//! Bounded in-memory span storage, grouped by trace.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};

use super::model::ZipkinSpan;

/// Spans grouped by normalised trace id.
///
/// Eviction policy: when adding a span takes the store over `max_spans` or
/// `max_bytes` (as [`ZipkinSpan::approx_bytes`] counts them), whole traces are
/// dropped oldest first (by first-seen order), never the trace the new span
/// belongs to; if that trace alone exceeds a bound, its own oldest spans are
/// dropped (the new span itself, if it alone is over the byte bound). New data
/// is otherwise always kept: for a live demo the latest traces matter more
/// than the first ones.
///
/// A span identical to one the trace holds (a sender's retry) is stored once, as Zipkin's
/// own storage keeps a trace's spans in a set.
#[derive(Debug)]
pub(crate) struct Store {
    max_spans: usize,
    max_bytes: usize,
    /// What the spans held take, as [`ZipkinSpan::approx_bytes`] counts it.
    bytes: usize,
    /// Trace id → its spans.
    traces: HashMap<String, TraceSpans>,
    /// Hashes spans for the duplicate check.
    hasher: RandomState,
    /// Trace ids in first-seen order (exactly the keys of `traces`).
    order: VecDeque<String>,
    span_count: usize,
    dropped: u64,
    next_seq: u64,
}

impl Store {
    pub(crate) fn new(max_spans: usize, max_bytes: usize) -> Self {
        Self {
            max_spans,
            max_bytes,
            bytes: 0,
            traces: HashMap::new(),
            hasher: RandomState::new(),
            order: VecDeque::new(),
            span_count: 0,
            dropped: 0,
            next_seq: 0,
        }
    }

    /// Add one (already normalised) span, evicting as needed. `false` when the trace already
    /// holds an identical span (nothing changes).
    pub(crate) fn insert(&mut self, span: ZipkinSpan) -> bool {
        let hash = self.hasher.hash_one(&span);
        let trace_id = span.trace_id.clone();
        let bytes = span.approx_bytes();
        match self.traces.entry(trace_id.clone()) {
            Entry::Occupied(e) => {
                let trace = e.into_mut();
                if trace.holds(hash, &span) {
                    return false;
                }
                trace.push(self.next_seq, hash, span);
            }
            Entry::Vacant(e) => {
                e.insert(TraceSpans::default())
                    .push(self.next_seq, hash, span);
                self.order.push_back(trace_id.clone());
            }
        }
        self.next_seq += 1;
        self.bytes += bytes;
        self.span_count += 1;

        while self.span_count > self.max_spans || self.bytes > self.max_bytes {
            if let Some(pos) = self.order.iter().position(|t| *t != trace_id) {
                if let Some(victim) = self.order.remove(pos) {
                    self.remove_trace(&victim);
                }
            } else {
                // Only the current trace is left and it alone is over the cap:
                // drop its oldest span.
                let Some(trace) = self.traces.get_mut(&trace_id) else {
                    break;
                };
                if let Some(oldest) = trace.pop_oldest() {
                    self.bytes -= oldest.approx_bytes();
                    self.span_count -= 1;
                    self.dropped += 1;
                }
                if trace.spans.is_empty() {
                    self.traces.remove(&trace_id);
                    self.order.retain(|t| *t != trace_id);
                }
            }
        }
        true
    }

    fn remove_trace(&mut self, trace_id: &str) {
        if let Some(trace) = self.traces.remove(trace_id) {
            let spans = &trace.spans;
            self.span_count -= spans.len();
            self.bytes -= spans
                .iter()
                .map(|(_, _, s)| s.approx_bytes())
                .sum::<usize>();
            self.dropped += spans.len() as u64;
        }
    }

    /// Every span, in arrival order.
    pub(crate) fn spans(&self) -> Vec<ZipkinSpan> {
        let mut all: Vec<&(u64, u64, ZipkinSpan)> =
            self.traces.values().flat_map(|t| &t.spans).collect();
        all.sort_unstable_by_key(|(seq, _, _)| *seq);
        all.into_iter().map(|(_, _, span)| span.clone()).collect()
    }

    /// The spans of one trace (normalised id), in arrival order.
    pub(crate) fn trace(&self, trace_id: &str) -> Option<Vec<ZipkinSpan>> {
        self.traces
            .get(trace_id)
            .map(|t| t.spans.iter().map(|(_, _, s)| s.clone()).collect())
    }

    /// Every trace, oldest first, as (first-seen position, spans).
    pub(crate) fn traces(&self) -> impl Iterator<Item = (usize, Vec<&ZipkinSpan>)> + '_ {
        self.order.iter().enumerate().filter_map(|(i, id)| {
            let trace = self.traces.get(id)?;
            Some((i, trace.spans.iter().map(|(_, _, s)| s).collect()))
        })
    }

    /// Every span, in no particular order.
    pub(crate) fn iter_spans(&self) -> impl Iterator<Item = &ZipkinSpan> + '_ {
        self.traces
            .values()
            .flat_map(|t| &t.spans)
            .map(|(_, _, s)| s)
    }

    pub(crate) fn trace_ids(&self) -> Vec<String> {
        self.order.iter().cloned().collect()
    }

    pub(crate) fn span_count(&self) -> usize {
        self.span_count
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// The spans of one trace, oldest first, and for each hash how many of them have it and the
/// latest that does (to find an identical span without comparing against every one).
#[derive(Debug, Default)]
struct TraceSpans {
    /// (arrival sequence number, hash, span), in arrival order.
    spans: VecDeque<(u64, u64, ZipkinSpan)>,
    /// Hash → (how many spans have it, the sequence number of the latest).
    hashes: HashMap<u64, (u32, u64)>,
}

impl TraceSpans {
    /// Whether an identical span is held (`hash` is `span`'s). The latest span with the hash
    /// is found by its sequence number (the spans are in arrival order); only when that one
    /// differs (two spans with one hash) are the others compared.
    fn holds(&self, hash: u64, span: &ZipkinSpan) -> bool {
        let Some(&(_, seq)) = self.hashes.get(&hash) else {
            return false;
        };
        if let Ok(i) = self.spans.binary_search_by_key(&seq, |(s, _, _)| *s)
            && self.spans[i].2 == *span
        {
            return true;
        }
        self.spans.iter().any(|(_, h, s)| *h == hash && s == span)
    }

    fn push(&mut self, seq: u64, hash: u64, span: ZipkinSpan) {
        let entry = self.hashes.entry(hash).or_default();
        *entry = (entry.0 + 1, seq);
        self.spans.push_back((seq, hash, span));
    }

    fn pop_oldest(&mut self) -> Option<ZipkinSpan> {
        let (_, hash, span) = self.spans.pop_front()?;
        if let Entry::Occupied(mut e) = self.hashes.entry(hash) {
            e.get_mut().0 -= 1;
            if e.get().0 == 0 {
                e.remove();
            }
        }
        Some(span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(trace: u8, id: u8) -> ZipkinSpan {
        ZipkinSpan {
            trace_id: format!("{trace:032x}"),
            id: format!("{id:016x}"),
            parent_id: None,
            name: format!("s{id}"),
            kind: None,
            timestamp: u64::from(id),
            duration: 1,
            local_endpoint: None,
            remote_endpoint: None,
            tags: Default::default(),
            annotations: Vec::new(),
            shared: false,
            debug: false,
        }
    }

    #[test]
    fn evicts_oldest_whole_trace_first() {
        let mut store = Store::new(3, usize::MAX);
        store.insert(span(1, 1));
        store.insert(span(1, 2));
        store.insert(span(2, 3));
        store.insert(span(3, 4));
        assert_eq!(store.span_count(), 2);
        assert_eq!(store.dropped(), 2);
        assert_eq!(
            store.trace_ids(),
            vec![format!("{:032x}", 2), format!("{:032x}", 3)]
        );
        let names: Vec<String> = store.spans().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["s3", "s4"]);
    }

    #[test]
    fn oversized_single_trace_keeps_its_newest_spans() {
        let mut store = Store::new(2, usize::MAX);
        store.insert(span(1, 1));
        store.insert(span(2, 2));
        store.insert(span(2, 3));
        store.insert(span(2, 4));
        assert_eq!(store.span_count(), 2);
        assert_eq!(store.dropped(), 2);
        let names: Vec<String> = store.spans().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["s3", "s4"]);
        assert_eq!(store.trace_ids(), vec![format!("{:032x}", 2)]);
    }

    #[test]
    fn an_identical_span_is_stored_once() {
        let mut store = Store::new(10, usize::MAX);
        assert!(store.insert(span(1, 1)));
        assert!(!store.insert(span(1, 1)), "a retry of the same span");
        // Same id, another kind: Envoy's shared span (client and server halves) is two spans.
        let mut server = span(1, 1);
        server.kind = Some(crate::model::SpanKind::Server);
        assert!(store.insert(server));
        // The same span in another trace is another span.
        let mut elsewhere = span(1, 1);
        elsewhere.trace_id = format!("{:032x}", 2);
        assert!(store.insert(elsewhere));
        assert_eq!(store.span_count(), 3);
        assert_eq!(store.dropped(), 0);
    }

    #[test]
    fn a_span_evicted_from_its_trace_is_stored_again_when_resent() {
        let mut store = Store::new(2, usize::MAX);
        store.insert(span(1, 1));
        store.insert(span(1, 2));
        store.insert(span(1, 3));
        assert_eq!(store.dropped(), 1);
        assert!(store.insert(span(1, 1)), "no longer held");
        assert!(!store.insert(span(1, 3)), "still held");
        let names: Vec<String> = store.spans().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["s3", "s1"]);
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let mut store = Store::new(0, usize::MAX);
        store.insert(span(1, 1));
        assert_eq!(store.span_count(), 0);
        assert_eq!(store.dropped(), 1);
        assert!(store.trace_ids().is_empty());
    }

    #[test]
    fn the_byte_bound_counts_what_spans_hold() {
        // Room for about three small spans: a sender's one huge span pushes the older
        // traces out, and a span over the bound on its own is not kept either.
        let small = span(1, 1).approx_bytes();
        let mut store = Store::new(usize::MAX, 3 * small + small / 2);
        store.insert(span(1, 1));
        store.insert(span(2, 2));
        store.insert(span(3, 3));
        assert_eq!(store.span_count(), 3);
        let mut huge = span(4, 4);
        huge.tags.insert("blob".into(), "x".repeat(2 * small));
        store.insert(huge);
        assert_eq!(
            store.trace_ids(),
            vec![format!("{:032x}", 4)],
            "the rest went"
        );
        assert_eq!(store.dropped(), 3);
        let mut huger = span(5, 5);
        huger.tags.insert("blob".into(), "x".repeat(10 * small));
        store.insert(huger);
        assert_eq!(store.span_count(), 0);
        assert_eq!(store.dropped(), 5);
        assert_eq!(store.bytes, 0);
        // Back within the bound: small spans are kept again.
        store.insert(span(6, 6));
        assert_eq!(store.span_count(), 1);
        assert_eq!(store.bytes, small);
    }
}
