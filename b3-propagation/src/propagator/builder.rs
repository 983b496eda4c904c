//! [`PropagatorBuilder`]: the defaults and every setting of a [`Propagator`].

use std::sync::Arc;

use super::{
    Config, ContextFormat, FormatSet, IdGenerator, Propagator, RandomIdGenerator, SpanSemantics,
    TrustPolicy,
};
use crate::OpaqueHeader;
use crate::field::PropagatedField;
use crate::sampling::Sampling;

/// Builds a [`Propagator`]. See the [module docs](crate::propagator).
#[derive(Debug)]
#[must_use]
pub struct PropagatorBuilder {
    pub(crate) config: Config,
}

impl PropagatorBuilder {
    /// The extract order: the first format that parses wins.
    pub fn extract(mut self, order: impl IntoIterator<Item = ContextFormat>) -> Self {
        self.config.extract.clear();
        for f in order {
            if !self.config.extract.contains(&f) {
                self.config.extract.push(f);
            }
        }
        self
    }

    /// The formats written on outgoing requests.
    pub fn inject(mut self, formats: impl IntoIterator<Item = ContextFormat>) -> Self {
        self.config.inject = formats.into_iter().collect();
        self
    }

    /// Whether to extract and inject W3C `baggage` and the prefixed baggage headers
    /// (default: on).
    pub fn baggage(mut self, on: bool) -> Self {
        self.config.baggage = on;
        self
    }

    /// Whether to read the prefixed baggage headers (`baggage-*`, `ot-baggage-*`,
    /// `uberctx-*`) besides W3C `baggage`, and to write each entry the application sets in
    /// the prefixed form its inject set's peers read as well: `baggage-<key>` for B3,
    /// `uberctx-<key>` for Jaeger (default: on). Finding them walks every header.
    pub fn prefixed_baggage(mut self, on: bool) -> Self {
        self.config.prefixed_baggage = on;
        self
    }

    /// Whether to extract and inject `x-request-id` (default: on).
    pub fn request_id(mut self, on: bool) -> Self {
        self.config.request_id = on;
        self
    }

    /// The opaque headers forwarded verbatim (default: `x-ot-span-context`,
    /// `grpc-trace-bin`).
    pub fn opaque(mut self, headers: impl IntoIterator<Item = OpaqueHeader>) -> Self {
        self.config.opaque.clear();
        for h in headers {
            if !self.config.opaque.contains(&h) {
                self.config.opaque.push(h);
            }
        }
        self
    }

    /// Carry this [propagated field](crate::field) from the inbound request to every
    /// outgoing call (added to those already configured; none by default).
    pub fn field(mut self, field: PropagatedField) -> Self {
        match self
            .config
            .fields
            .iter_mut()
            .find(|f| f.name() == field.name())
        {
            Some(f) => *f = field,
            None => self.config.fields.push(field),
        }
        self
    }

    /// Carry exactly these [propagated fields](crate::field) (replacing those configured).
    pub fn fields(mut self, fields: impl IntoIterator<Item = PropagatedField>) -> Self {
        self.config.fields.clear();
        fields.into_iter().fold(self, Self::field)
    }

    /// The edge trust policy (default: [`TrustPolicy::trusted`]).
    pub fn trust(mut self, trust: TrustPolicy) -> Self {
        self.config.trust = trust;
        self
    }

    /// Shared or child server spans (default: [`SpanSemantics::Child`]).
    pub fn span_semantics(mut self, semantics: SpanSemantics) -> Self {
        self.config.semantics = semantics;
        self
    }

    /// The sampling decision of a trace started here (default: [`Sampling::Deferred`], so the
    /// next hop or the tracer's sampler decides).
    pub fn root_sampling(mut self, sampling: Sampling) -> Self {
        self.config.root_sampling = sampling;
        self
    }

    /// The id generator (default: [`RandomIdGenerator`], 128-bit trace ids).
    pub fn id_generator(mut self, ids: impl IdGenerator) -> Self {
        self.config.ids = Arc::new(ids);
        self
    }

    /// Build the propagator.
    #[must_use]
    pub fn build(mut self) -> Propagator {
        self.config.extract_set = self.config.extract.iter().copied().collect();
        Propagator {
            config: Arc::new(self.config),
        }
    }
}

impl Propagator {
    /// A builder with the defaults: extract `b3`, `x-b3-*`, `traceparent`; inject `x-b3-*` and
    /// `traceparent`; request id, baggage and opaque forwarding on; trusted; child spans.
    pub fn builder() -> PropagatorBuilder {
        PropagatorBuilder {
            config: Config {
                extract: vec![
                    ContextFormat::B3Single,
                    ContextFormat::B3Multi,
                    ContextFormat::TraceParent,
                ],
                extract_set: FormatSet::EMPTY,
                inject: FormatSet::EMPTY
                    .with(ContextFormat::B3Multi)
                    .with(ContextFormat::TraceParent),
                baggage: true,
                prefixed_baggage: true,
                request_id: true,
                opaque: vec![OpaqueHeader::OtSpanContext, OpaqueHeader::GrpcTraceBin],
                fields: Vec::new(),
                trust: TrustPolicy::trusted(),
                semantics: SpanSemantics::Child,
                root_sampling: Sampling::Deferred,
                ids: Arc::new(RandomIdGenerator::new()),
            },
        }
    }

    /// A builder starting from this propagator's settings.
    pub fn to_builder(&self) -> PropagatorBuilder {
        let c = &self.config;
        PropagatorBuilder {
            config: Config {
                extract: c.extract.clone(),
                extract_set: c.extract_set,
                inject: c.inject,
                baggage: c.baggage,
                prefixed_baggage: c.prefixed_baggage,
                request_id: c.request_id,
                opaque: c.opaque.clone(),
                fields: c.fields.clone(),
                trust: c.trust,
                semantics: c.semantics,
                root_sampling: c.root_sampling,
                ids: Arc::clone(&c.ids),
            },
        }
    }
}
