//! [`SpanContext`]: the ids and sampling decision one hop hands to the next.
//!
//! A context either carries ids (trace id, span id, optional parent) or is *sampling-only*:
//! B3 lets a caller send just a decision (`b3: 0`, `x-b3-sampled: 1`, `x-b3-flags: 1`) and that
//! decision must be propagated, not dropped.
//!
//! # Example
//!
//! ```
//! use b3_propagation::{Sampling, SpanContext, SpanId, TraceId};
//!
//! let trace_id: TraceId = "48485a3953bb6124".parse()?;
//! let span_id: SpanId = "a2fb4a1d1a96d312".parse()?;
//! let incoming = SpanContext::new(trace_id, span_id).with_sampling(Sampling::Accept);
//!
//! // A child span: same trace, new span id, parent = the incoming span.
//! let child = incoming.child();
//! assert_eq!(child.trace_id(), Some(trace_id));
//! assert_eq!(child.parent_span_id(), Some(span_id));
//! assert_eq!(child.sampling(), Sampling::Accept);
//!
//! let deny_only = SpanContext::sampling_only(Sampling::Deny);
//! assert!(deny_only.is_sampling_only());
//! assert_eq!(deny_only.trace_id(), None);
//! # Ok::<(), b3_propagation::error::ParseError>(())
//! ```

use std::fmt;

use crate::id::{SpanId, TraceId};
use crate::sampling::Sampling;

/// W3C trace flags (`traceparent`'s last field), restricted to the bits we keep.
///
/// Bit 0 is *sampled*, bit 1 is *random trace id* (Trace Context Level 2). All other bits are
/// zeroed on receipt, as the processing model asks.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TraceFlags(u8);

impl TraceFlags {
    /// The sampled bit (`0x01`).
    pub const SAMPLED: TraceFlags = TraceFlags(0x01);
    /// The random-trace-id bit (`0x02`).
    pub const RANDOM: TraceFlags = TraceFlags(0x02);
    const KNOWN: u8 = 0x03;

    /// Flags from a received byte; unknown bits are zeroed.
    #[must_use]
    pub const fn new(bits: u8) -> Self {
        TraceFlags(bits & Self::KNOWN)
    }

    /// The raw bits.
    #[must_use]
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every bit of `other` is set.
    #[must_use]
    pub const fn contains(self, other: TraceFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// These flags with the bits of `other` set (`on`) or cleared.
    #[must_use]
    pub const fn with(self, other: TraceFlags, on: bool) -> Self {
        if on {
            TraceFlags(self.0 | other.0)
        } else {
            TraceFlags(self.0 & !other.0)
        }
    }
}

impl fmt::Debug for TraceFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceFlags({:02x})", self.0)
    }
}

impl fmt::Display for TraceFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}", self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Ids {
    trace_id: TraceId,
    span_id: SpanId,
    parent_span_id: Option<SpanId>,
}

/// Trace id, span id, parent span id and sampling decision. See the [module docs](self).
///
/// `Copy`, 64 bytes, no heap data.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanContext {
    ids: Option<Ids>,
    sampling: Sampling,
    random: bool,
}

impl SpanContext {
    /// A context with ids and no sampling decision yet ([`Sampling::Deferred`]).
    #[must_use]
    pub const fn new(trace_id: TraceId, span_id: SpanId) -> Self {
        SpanContext {
            ids: Some(Ids {
                trace_id,
                span_id,
                parent_span_id: None,
            }),
            sampling: Sampling::Deferred,
            random: false,
        }
    }

    /// A context that carries only a sampling decision (`b3: 0`, `x-b3-sampled: 1` alone).
    #[must_use]
    pub const fn sampling_only(sampling: Sampling) -> Self {
        SpanContext {
            ids: None,
            sampling,
            random: false,
        }
    }

    /// A new root context: random 128-bit trace id, random span id, no parent. It sets the
    /// W3C random-trace-id flag: the id comes from a random source.
    #[must_use]
    pub fn new_root(sampling: Sampling) -> Self {
        let mut cx = SpanContext::new(TraceId::random(), SpanId::random());
        cx.sampling = sampling;
        cx.random = true;
        cx
    }

    /// A new root context with a random 64-bit trace id (Envoy's `trace_id_128bit: false`
    /// default), random span id, no parent. It sets the W3C random-trace-id flag too: the
    /// right-most 8 bytes of the id are random, and the spec asks for the flag then.
    #[must_use]
    pub fn new_root_64bit(sampling: Sampling) -> Self {
        let mut cx = SpanContext::new(TraceId::random_64bit(), SpanId::random());
        cx.sampling = sampling;
        cx.random = true;
        cx
    }

    /// The same context with this sampling decision.
    #[must_use]
    pub const fn with_sampling(mut self, sampling: Sampling) -> Self {
        self.sampling = sampling;
        self
    }

    /// The same context with this parent span id (ignored for a sampling-only context).
    #[must_use]
    pub const fn with_parent(mut self, parent: Option<SpanId>) -> Self {
        if let Some(ids) = &mut self.ids {
            ids.parent_span_id = parent;
        }
        self
    }

    /// The same context with this span id (ignored for a sampling-only context).
    #[must_use]
    pub const fn with_span_id(mut self, span_id: SpanId) -> Self {
        if let Some(ids) = &mut self.ids {
            ids.span_id = span_id;
        }
        self
    }

    /// The same context with the W3C flags' non-sampling bits (the random bit) taken from
    /// `flags`. The sampled bit always follows [`sampling`](Self::sampling).
    #[must_use]
    pub const fn with_trace_flags(mut self, flags: TraceFlags) -> Self {
        self.random = flags.contains(TraceFlags::RANDOM);
        self
    }

    /// A child context: same trace and sampling, a new random span id, parent = this span.
    ///
    /// A sampling-only context has no span to be the parent of, so its child is a new root
    /// with the same decision (B3: the receiver of `b3: 1` starts the trace).
    #[must_use]
    pub fn child(&self) -> Self {
        self.child_with_id(SpanId::random())
    }

    /// Like [`child`](Self::child) with a given span id.
    #[must_use]
    pub fn child_with_id(&self, span_id: SpanId) -> Self {
        match self.ids {
            Some(ids) => SpanContext {
                ids: Some(Ids {
                    trace_id: ids.trace_id,
                    span_id,
                    parent_span_id: Some(ids.span_id),
                }),
                sampling: self.sampling,
                random: self.random,
            },
            None => SpanContext::new_root(self.sampling).with_span_id(span_id),
        }
    }

    /// The trace id, or `None` for a sampling-only context.
    #[must_use]
    pub const fn trace_id(&self) -> Option<TraceId> {
        match &self.ids {
            Some(ids) => Some(ids.trace_id),
            None => None,
        }
    }

    /// The span id (the sender's span), or `None` for a sampling-only context.
    #[must_use]
    pub const fn span_id(&self) -> Option<SpanId> {
        match &self.ids {
            Some(ids) => Some(ids.span_id),
            None => None,
        }
    }

    /// The parent span id, when the sender sent one (B3 only).
    #[must_use]
    pub const fn parent_span_id(&self) -> Option<SpanId> {
        match &self.ids {
            Some(ids) => ids.parent_span_id,
            None => None,
        }
    }

    /// The sampling decision.
    #[must_use]
    pub const fn sampling(&self) -> Sampling {
        self.sampling
    }

    /// Whether this context carries only a sampling decision, no ids.
    #[must_use]
    pub const fn is_sampling_only(&self) -> bool {
        self.ids.is_none()
    }

    /// The W3C trace flags: sampled from [`sampling`](Self::sampling) (accept or debug), plus
    /// the random bit when it was received, or the trace was started here from random ids
    /// ([`SpanContext::new_root`], [`SpanContext::new_root_64bit`], or a `Propagator` whose
    /// id generator says its ids are random).
    #[must_use]
    pub const fn trace_flags(&self) -> TraceFlags {
        let sampled = matches!(self.sampling, Sampling::Accept | Sampling::Debug);
        TraceFlags(0)
            .with(TraceFlags::SAMPLED, sampled)
            .with(TraceFlags::RANDOM, self.random)
    }
}

impl fmt::Debug for SpanContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("SpanContext");
        if let Some(ids) = &self.ids {
            d.field("trace_id", &format_args!("{}", ids.trace_id))
                .field("span_id", &format_args!("{}", ids.span_id));
            if let Some(p) = ids.parent_span_id {
                d.field("parent_span_id", &format_args!("{p}"));
            }
        }
        d.field("sampling", &self.sampling)
            .field("trace_flags", &self.trace_flags())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_zero_unknown_bits() {
        assert_eq!(TraceFlags::new(0xff).bits(), 0x03);
        assert!(TraceFlags::new(0x03).contains(TraceFlags::RANDOM));
    }

    #[test]
    fn trace_flags_follow_sampling() {
        let t = TraceId::from_u64(1).unwrap();
        let s = SpanId::from_u64(2).unwrap();
        let cx = SpanContext::new(t, s).with_trace_flags(TraceFlags::new(0x02));
        assert_eq!(cx.trace_flags().bits(), 0x02);
        assert_eq!(cx.with_sampling(Sampling::Debug).trace_flags().bits(), 0x03);
    }

    #[test]
    fn child_of_sampling_only_is_a_root_with_the_decision() {
        let c = SpanContext::sampling_only(Sampling::Debug).child();
        assert!(!c.is_sampling_only());
        assert_eq!(c.parent_span_id(), None);
        assert_eq!(c.sampling(), Sampling::Debug);
    }

    #[test]
    fn builders_ignore_ids_on_sampling_only() {
        let s = SpanId::from_u64(2).unwrap();
        let c = SpanContext::sampling_only(Sampling::Deny)
            .with_parent(Some(s))
            .with_span_id(s);
        assert_eq!(c, SpanContext::sampling_only(Sampling::Deny));
    }
}
