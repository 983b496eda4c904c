//! Span semantics and id generation: the span a hop reports for a request, and the child span
//! of an outgoing call.

use std::fmt;

use super::Propagator;
use crate::context::SpanContext;
use crate::id::{SpanId, TraceId};
use crate::sampling::Sampling;

/// How a server span relates to the caller's span.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SpanSemantics {
    /// A new span id whose parent is the caller's span (OpenTelemetry, W3C).
    #[default]
    Child,
    /// Reuse the caller's span id and parent (Zipkin / Envoy `shared_span_context: true`).
    Shared,
}

/// Creates trace and span ids. The default is [`RandomIdGenerator`].
pub trait IdGenerator: Send + Sync + fmt::Debug + 'static {
    /// A new trace id for a new trace.
    fn new_trace_id(&self) -> TraceId;
    /// A new span id.
    fn new_span_id(&self) -> SpanId;

    /// Whether at least the right-most 7 bytes of every trace id [`new_trace_id`] makes are
    /// random, so that a new trace carries W3C's random-trace-id flag
    /// ([`TraceFlags::RANDOM`](crate::TraceFlags::RANDOM)), which promises exactly that.
    /// `false` unless a generator says so (sequential, time-based or test ids must not claim
    /// it); [`RandomIdGenerator`] does.
    ///
    /// [`new_trace_id`]: IdGenerator::new_trace_id
    fn trace_ids_are_random(&self) -> bool {
        false
    }
}

/// Random ids from a fast thread-local generator (seeded once per thread from the OS).
#[derive(Clone, Copy, Debug, Default)]
pub struct RandomIdGenerator {
    trace_id_64bit: bool,
}

impl RandomIdGenerator {
    /// New traces get 128-bit ids (the W3C and OpenTelemetry default).
    #[must_use]
    pub const fn new() -> Self {
        RandomIdGenerator {
            trace_id_64bit: false,
        }
    }

    /// New traces get 64-bit ids (Envoy's `trace_id_128bit: false` default).
    #[must_use]
    pub const fn with_64bit_trace_ids() -> Self {
        RandomIdGenerator {
            trace_id_64bit: true,
        }
    }
}

impl IdGenerator for RandomIdGenerator {
    fn new_trace_id(&self) -> TraceId {
        if self.trace_id_64bit {
            TraceId::random_64bit()
        } else {
            TraceId::random()
        }
    }

    fn new_span_id(&self) -> SpanId {
        SpanId::random()
    }

    /// Both widths: a 64-bit id's eight bytes are random, and W3C asks that the flag be set
    /// when the right-most seven are.
    fn trace_ids_are_random(&self) -> bool {
        true
    }
}

impl Propagator {
    /// The span this hop reports for an incoming request, following the span semantics:
    /// *shared* reuses the caller's ids, *child* makes a child of the caller's span. Without
    /// a caller context (or with a sampling-only one) a new trace starts.
    #[must_use]
    pub fn server_span(&self, remote: Option<&SpanContext>) -> SpanContext {
        match remote {
            Some(r) if !r.is_sampling_only() => match self.config.semantics {
                SpanSemantics::Shared => *r,
                SpanSemantics::Child => r.child_with_id(self.config.ids.new_span_id()),
            },
            Some(r) => self.new_root(r.sampling()),
            None => self.new_root(self.config.root_sampling),
        }
    }

    /// A client span for an outgoing call: a child of `parent` with a new span id.
    #[must_use]
    pub fn client_span(&self, parent: &SpanContext) -> SpanContext {
        if parent.is_sampling_only() {
            return self.new_root(parent.sampling());
        }
        parent.child_with_id(self.config.ids.new_span_id())
    }

    /// A new root context with this sampling decision.
    #[must_use]
    pub fn new_root(&self, sampling: Sampling) -> SpanContext {
        let trace_id = self.config.ids.new_trace_id();
        SpanContext::new(trace_id, self.config.ids.new_span_id())
            .with_sampling(sampling)
            .with_trace_flags(if self.config.ids.trace_ids_are_random() {
                crate::TraceFlags::RANDOM
            } else {
                crate::TraceFlags::default()
            })
    }
}
