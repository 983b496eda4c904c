//! [`Propagator`]: which formats to read and write, and how much to trust the caller.
//!
//! - **Extract order**: the context comes from the *first valid* format in the order given
//!   (default: `b3`, `x-b3-*`, `traceparent`). An invalid `b3` falls back to `x-b3-*`; a valid
//!   one, even sampling-only `b3: 0`, wins (B3 spec, Brave, OTel).
//! - **Inject set**: the formats written on outgoing calls, independent of the extract order
//!   (default: `x-b3-*` and `traceparent`, what Envoy's Zipkin tracer reads and writes with
//!   `USE_B3_WITH_W3C_PROPAGATION`).
//! - **Trust policy** for edges: ignore inbound sampling and debug, regenerate the request id,
//!   or drop the inbound context and keep only the request id.
//! - **Span semantics**: *shared* (Envoy's `shared_span_context`: the server span reuses the
//!   caller's span id) or *child* (a new span id whose parent is the caller's).
//! - Request id, baggage and the opaque formats (`x-ot-span-context`, `grpc-trace-bin`, and
//!   opt-in `x-cloud-trace-context`, `sw8`, `x-datadog-*`) ride along, the opaque ones
//!   verbatim.
//!
//! # Example
//!
//! ```
//! use b3_propagation::{ContextFormat, Propagator, Sampling, TrustPolicy};
//! use http::{HeaderMap, HeaderValue};
//!
//! // An edge service: callers may not force sampling.
//! let propagator = Propagator::builder()
//!     .trust(TrustPolicy::untrusted())
//!     .inject([ContextFormat::B3Multi])
//!     .build();
//!
//! let mut incoming = HeaderMap::new();
//! incoming.insert("b3", HeaderValue::from_static("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d"));
//! incoming.insert("x-request-id", HeaderValue::from_static("client-chosen"));
//!
//! let mut cx = propagator.extract(&incoming);
//! assert_eq!(cx.remote().unwrap().sampling(), Sampling::Deferred); // debug not trusted
//! assert!(cx.request_id().is_none()); // regenerated at the edge
//! let request_id = cx.ensure_request_id().clone();
//!
//! // This hop's span and an outgoing call.
//! let server = propagator.server_span(cx.remote());
//! cx.set_local(server);
//! let mut outgoing = HeaderMap::new();
//! propagator.inject(&propagator.client_span(&server), &cx, &mut outgoing);
//! assert_eq!(outgoing["x-b3-traceid"], "80f198ee56343ba864fe8b2a57d3eff7");
//! assert_eq!(outgoing["x-request-id"], request_id.as_str());
//! assert!(outgoing.get("x-b3-flags").is_none());
//! ```

use std::fmt;
use std::sync::Arc;

use crate::baggage::Baggage;
use crate::carrier::{Extractor, Injector, Scanned};
use crate::codec::{self, b3_multi, b3_single, grpc_trace_bin, jaeger, traceparent};
use crate::context::SpanContext;
use crate::error::{ErrorKind, ParseError};
use crate::field::{self, PropagatedField};
use crate::header;
use crate::id::{SpanId, TraceId};
use crate::request_context::{Received, RequestContext, opaque_slots, slot_name};
use crate::sampling::Sampling;
use crate::tracestate::TraceState;
use crate::{Format, OpaqueHeader};

/// A header format that can carry a span context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ContextFormat {
    /// `b3`.
    B3Single,
    /// `x-b3-*`.
    B3Multi,
    /// `traceparent` (+ `tracestate`).
    TraceParent,
    /// `uber-trace-id`.
    Jaeger,
    /// `grpc-trace-bin` (decoded only when listed; otherwise forwarded verbatim).
    GrpcTraceBin,
}

impl ContextFormat {
    /// Every context format.
    pub const ALL: [ContextFormat; 5] = [
        ContextFormat::B3Single,
        ContextFormat::B3Multi,
        ContextFormat::TraceParent,
        ContextFormat::Jaeger,
        ContextFormat::GrpcTraceBin,
    ];

    /// The general [`Format`] of this context format.
    #[must_use]
    pub const fn format(self) -> Format {
        match self {
            ContextFormat::B3Single => Format::B3Single,
            ContextFormat::B3Multi => Format::B3Multi,
            ContextFormat::TraceParent => Format::TraceParent,
            ContextFormat::Jaeger => Format::Jaeger,
            ContextFormat::GrpcTraceBin => Format::GrpcTraceBin,
        }
    }

    const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for ContextFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.format().name())
    }
}

/// A small set of [`ContextFormat`]s.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FormatSet(u8);

impl FormatSet {
    /// The empty set.
    pub const EMPTY: FormatSet = FormatSet(0);

    /// Whether `f` is in the set.
    #[must_use]
    pub const fn contains(self, f: ContextFormat) -> bool {
        self.0 & f.bit() != 0
    }

    /// The set with `f` added.
    #[must_use]
    pub const fn with(self, f: ContextFormat) -> Self {
        FormatSet(self.0 | f.bit())
    }

    /// Whether the set is empty.
    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The formats in the set, in [`ContextFormat::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = ContextFormat> {
        ContextFormat::ALL
            .into_iter()
            .filter(move |f| self.contains(*f))
    }
}

impl FromIterator<ContextFormat> for FormatSet {
    fn from_iter<T: IntoIterator<Item = ContextFormat>>(iter: T) -> Self {
        iter.into_iter().fold(FormatSet::EMPTY, FormatSet::with)
    }
}

impl fmt::Debug for FormatSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// What to do with the caller's context. See [`TrustPolicy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InboundContext {
    /// Use it as sent.
    Trust,
    /// Keep the ids, drop the sampling decision and debug flag (they become deferred).
    IgnoreSampling,
    /// Ignore it: every request starts a new trace.
    Ignore,
}

/// What to do with the caller's `x-request-id`. See [`TrustPolicy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InboundRequestId {
    /// Keep a valid one.
    Keep,
    /// Drop it, so a new one is generated (Envoy's edge behaviour).
    Regenerate,
}

/// What to do with the [propagated fields](crate::field) a caller sent. See [`TrustPolicy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InboundFields {
    /// Keep every configured field.
    Keep,
    /// Keep only the fields declared
    /// [`kept_at_edge`](crate::PropagatedField::kept_at_edge); drop the others.
    OnlyKeptAtEdge,
}

/// How much of the inbound headers to trust: the mesh-internal default trusts everything; an
/// edge facing the internet should not let clients force sampling, choose request ids or set
/// the fields the mesh routes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TrustPolicy {
    context: InboundContext,
    request_id: InboundRequestId,
    fields: InboundFields,
}

impl Default for TrustPolicy {
    fn default() -> Self {
        Self::trusted()
    }
}

impl TrustPolicy {
    /// Trust the inbound context and request id (a hop inside the mesh).
    #[must_use]
    pub const fn trusted() -> Self {
        TrustPolicy {
            context: InboundContext::Trust,
            request_id: InboundRequestId::Keep,
            fields: InboundFields::Keep,
        }
    }

    /// An untrusted edge, as Envoy's edge listener: keep the inbound ids (so a client's trace
    /// can continue), but ignore its sampling and debug flags and regenerate the request id.
    /// The opaque headers (`x-ot-span-context`, `grpc-trace-bin` when not a context format, the
    /// opt-in vendor headers) are not forwarded either: they carry a client's decision this hop
    /// cannot re-decide. Propagated fields are dropped unless declared
    /// [`kept_at_edge`](crate::PropagatedField::kept_at_edge).
    #[must_use]
    pub const fn untrusted() -> Self {
        TrustPolicy {
            context: InboundContext::IgnoreSampling,
            request_id: InboundRequestId::Regenerate,
            fields: InboundFields::OnlyKeptAtEdge,
        }
    }

    /// Ignore the inbound trace context entirely but keep the request id (Envoy's
    /// `preserve_external_request_id`). Propagated fields are dropped unless declared
    /// [`kept_at_edge`](crate::PropagatedField::kept_at_edge).
    #[must_use]
    pub const fn keep_request_id_only() -> Self {
        TrustPolicy {
            context: InboundContext::Ignore,
            request_id: InboundRequestId::Keep,
            fields: InboundFields::OnlyKeptAtEdge,
        }
    }

    /// This policy with the given handling of the inbound context.
    #[must_use]
    pub const fn context(mut self, context: InboundContext) -> Self {
        self.context = context;
        self
    }

    /// This policy with the given handling of the inbound request id.
    #[must_use]
    pub const fn request_id(mut self, request_id: InboundRequestId) -> Self {
        self.request_id = request_id;
        self
    }

    /// This policy with the given handling of the inbound propagated fields.
    #[must_use]
    pub const fn fields(mut self, fields: InboundFields) -> Self {
        self.fields = fields;
        self
    }

    /// The handling of the inbound propagated fields.
    #[must_use]
    pub const fn inbound_fields(&self) -> InboundFields {
        self.fields
    }

    /// The handling of the inbound context.
    #[must_use]
    pub const fn inbound_context(&self) -> InboundContext {
        self.context
    }

    /// The handling of the inbound request id.
    #[must_use]
    pub const fn inbound_request_id(&self) -> InboundRequestId {
        self.request_id
    }
}

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
}

/// The most bytes an opaque header value may have to be forwarded.
pub const MAX_OPAQUE_LEN: usize = 4096;

#[derive(Debug)]
struct Config {
    extract: Vec<ContextFormat>,
    extract_set: FormatSet,
    inject: FormatSet,
    baggage: bool,
    prefixed_baggage: bool,
    request_id: bool,
    opaque: Vec<OpaqueHeader>,
    fields: Vec<PropagatedField>,
    trust: TrustPolicy,
    semantics: SpanSemantics,
    root_sampling: Sampling,
    ids: Arc<dyn IdGenerator>,
}

/// Extracts and injects every tracing header a mesh forwards. See the [module docs](self).
///
/// Cheap to clone (an `Arc`).
#[derive(Clone, Debug)]
pub struct Propagator {
    config: Arc<Config>,
}

impl Default for Propagator {
    fn default() -> Self {
        Self::builder().build()
    }
}

/// Builds a [`Propagator`]. See the [module docs](crate::propagator).
#[derive(Debug)]
#[must_use]
pub struct PropagatorBuilder {
    config: Config,
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
    /// `uberctx-*`) besides W3C `baggage` (default: on). Finding them walks every header.
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

/// `OTEL_PROPAGATORS` named a propagator this crate does not implement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownPropagator {
    name: String,
}

impl UnknownPropagator {
    /// The unknown name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for UnknownPropagator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown propagator `{}` in OTEL_PROPAGATORS (known: tracecontext, baggage, b3, b3multi, jaeger, none)",
            self.name
        )
    }
}

impl std::error::Error for UnknownPropagator {}

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

    /// The propagator `OTEL_PROPAGATORS` asks for; the default when it is unset or empty.
    ///
    /// # Errors
    ///
    /// [`UnknownPropagator`] naming the first value this crate does not implement.
    pub fn from_env() -> Result<Self, UnknownPropagator> {
        match std::env::var("OTEL_PROPAGATORS") {
            Ok(v) => Self::from_otel_propagators(&v),
            Err(_) => Ok(Self::default()),
        }
    }

    /// A builder configured from an `OTEL_PROPAGATORS` value: `tracecontext`, `baggage`, `b3`
    /// (single header), `b3multi`, `jaeger`, `none`, comma-separated. Extraction follows the
    /// listed order (`b3` and `b3multi` both read both B3 encodings, as OpenTelemetry's B3
    /// propagator does); injection writes each listed format. An empty value gives the
    /// defaults.
    ///
    /// # Errors
    ///
    /// [`UnknownPropagator`] naming the first value this crate does not implement.
    pub fn builder_from_otel_propagators(
        value: &str,
    ) -> Result<PropagatorBuilder, UnknownPropagator> {
        let names: Vec<&str> = value
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        if names.is_empty() {
            return Ok(Self::builder());
        }
        let mut extract = Vec::new();
        let mut inject = FormatSet::EMPTY;
        let mut baggage = false;
        for name in names {
            match name.to_ascii_lowercase().as_str() {
                "tracecontext" => {
                    extract.push(ContextFormat::TraceParent);
                    inject = inject.with(ContextFormat::TraceParent);
                }
                "baggage" => baggage = true,
                "b3" => {
                    extract.extend([ContextFormat::B3Single, ContextFormat::B3Multi]);
                    inject = inject.with(ContextFormat::B3Single);
                }
                "b3multi" => {
                    extract.extend([ContextFormat::B3Single, ContextFormat::B3Multi]);
                    inject = inject.with(ContextFormat::B3Multi);
                }
                "jaeger" => {
                    extract.push(ContextFormat::Jaeger);
                    inject = inject.with(ContextFormat::Jaeger);
                }
                "none" => {}
                _ => {
                    return Err(UnknownPropagator {
                        name: name.to_owned(),
                    });
                }
            }
        }
        let mut b = Self::builder().extract(extract).baggage(baggage);
        b.config.inject = inject;
        Ok(b)
    }

    /// [`builder_from_otel_propagators`](Self::builder_from_otel_propagators), built.
    ///
    /// # Errors
    ///
    /// As [`builder_from_otel_propagators`](Self::builder_from_otel_propagators).
    pub fn from_otel_propagators(value: &str) -> Result<Self, UnknownPropagator> {
        Self::builder_from_otel_propagators(value).map(PropagatorBuilder::build)
    }

    /// The extract order.
    #[must_use]
    pub fn extract_order(&self) -> &[ContextFormat] {
        &self.config.extract
    }

    /// The inject set.
    #[must_use]
    pub fn inject_formats(&self) -> FormatSet {
        self.config.inject
    }

    /// The trust policy.
    #[must_use]
    pub fn trust_policy(&self) -> TrustPolicy {
        self.config.trust
    }

    /// The propagated fields.
    #[must_use]
    pub fn propagated_fields(&self) -> &[PropagatedField] {
        &self.config.fields
    }

    /// The span semantics.
    #[must_use]
    pub fn span_semantics(&self) -> SpanSemantics {
        self.config.semantics
    }

    /// The id generator.
    #[must_use]
    pub fn id_generator(&self) -> &dyn IdGenerator {
        &*self.config.ids
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

    /// Decode one context format from a carrier: `None` when its headers are absent.
    #[inline]
    fn decode_format<E: Extractor + ?Sized>(
        f: ContextFormat,
        carrier: &E,
    ) -> Option<Result<SpanContext, ParseError>> {
        match f {
            ContextFormat::B3Single => b3_single::extract(carrier),
            ContextFormat::B3Multi => b3_multi::extract(carrier),
            ContextFormat::TraceParent => {
                traceparent::extract(carrier).map(|r| r.map(|tp| tp.context))
            }
            ContextFormat::Jaeger => jaeger::extract(carrier),
            ContextFormat::GrpcTraceBin => grpc_trace_bin::extract(carrier),
        }
    }

    /// Only the span context: the first valid format in the extract order, with the trust
    /// policy applied. No request id, baggage or opaque headers; never allocates.
    ///
    /// Errors of formats tried before the winner (or of all of them) are passed to
    /// `on_error`.
    pub fn extract_span<E: Extractor + ?Sized>(
        &self,
        carrier: &E,
        on_error: impl FnMut(ParseError),
    ) -> Option<(SpanContext, ContextFormat)> {
        self.extract_span_from(carrier, on_error)
    }

    fn extract_span_from<E: Extractor + ?Sized>(
        &self,
        carrier: &E,
        mut on_error: impl FnMut(ParseError),
    ) -> Option<(SpanContext, ContextFormat)> {
        if self.config.trust.context == InboundContext::Ignore {
            return None;
        }
        for &f in &self.config.extract {
            match Self::decode_format(f, carrier) {
                Some(Ok(cx)) => return Some((self.apply_trust(cx), f)),
                Some(Err(e)) => on_error(e),
                None => {}
            }
        }
        None
    }

    #[inline]
    fn apply_trust(&self, cx: SpanContext) -> SpanContext {
        match self.config.trust.context {
            InboundContext::IgnoreSampling => cx.with_sampling(Sampling::Deferred),
            _ => cx,
        }
    }

    /// Everything a request carries: span context, `tracestate`, request id, baggage, the
    /// opaque headers, and the received values to forward verbatim. Malformed headers are
    /// treated as absent; their reasons are in [`RequestContext::errors`].
    ///
    /// Never generates a request id: see [`RequestContext::ensure_request_id`].
    pub fn extract<E: Extractor + ?Sized>(&self, carrier: &E) -> RequestContext {
        match carrier.as_header_map() {
            Some(map) => self.extract_from(&Scanned::new(map)),
            None => self.extract_from(carrier),
        }
    }

    fn extract_from<E: Extractor + ?Sized>(&self, carrier: &E) -> RequestContext {
        let c = &self.config;
        let mut cx = RequestContext::new();
        let mut errors = Vec::new();
        let winner = self.extract_span_from(carrier, |e| errors.push(e));
        let mut received = Received::default();
        let mut traceparent_ok = None;
        if let Some((span, source)) = winner {
            cx.remote = Some(span);
            cx.source = Some(source);
            received.context_verbatim = c.trust.context == InboundContext::Trust;
            // Keep the raw values of every valid context format for forward mode.
            let mut after = false;
            for &f in &c.extract {
                let valid = if f == source {
                    after = true;
                    true
                } else if after {
                    match Self::decode_format(f, carrier) {
                        Some(Ok(other)) => {
                            if f == ContextFormat::TraceParent {
                                traceparent_ok = Some(other);
                            }
                            true
                        }
                        Some(Err(e)) => {
                            errors.push(e);
                            false
                        }
                        None => false,
                    }
                } else {
                    false
                };
                if valid {
                    received.formats = received.formats.with(f);
                    received.capture(f, carrier);
                }
            }
            if source == ContextFormat::TraceParent {
                traceparent_ok = Some(span);
            }
        }

        // tracestate travels with a valid traceparent of the same trace.
        if c.extract_set.contains(ContextFormat::TraceParent)
            && let (Some(tp), Some(remote)) = (traceparent_ok, cx.remote)
            && tp.trace_id() == remote.trace_id()
        {
            let mut lines = carrier.get_all_values(&header::TRACESTATE);
            if lines.next().is_some() {
                let single = lines.next().is_none();
                // A value that is not a valid `HeaderValue` (only a raw-bytes carrier has
                // those) goes through the byte parser, which says why it is refused.
                let first = if single {
                    carrier.get_value(&header::TRACESTATE)
                } else {
                    None
                };
                let parsed = match first {
                    Some(first) => TraceState::parse_value(&first),
                    None => TraceState::parse_with(|| {
                        carrier
                            .get_all_values(&header::TRACESTATE)
                            .map(|l| (l, None))
                    }),
                };
                match parsed {
                    Ok(ts) => cx.tracestate = ts,
                    Err(e) => errors.push(e),
                }
            }
        }

        if c.request_id {
            match codec::request_id::extract(carrier) {
                Some(Ok(id)) if c.trust.request_id == InboundRequestId::Keep => {
                    cx.request_id = Some(id);
                }
                Some(Ok(_)) | None => {}
                Some(Err(e)) => errors.push(e),
            }
        }

        if c.baggage {
            let (bag, dropped) = if c.prefixed_baggage {
                codec::baggage::extract(carrier)
            } else {
                match carrier.get_value(&header::BAGGAGE) {
                    Some(v) if carrier.get_all_values(&header::BAGGAGE).nth(1).is_none() => {
                        codec::baggage::decode_value(&v)
                    }
                    Some(_) => {
                        codec::baggage::decode_lines(carrier.get_all_values(&header::BAGGAGE))
                    }
                    None => (Baggage::new(), None),
                }
            };
            cx.baggage = bag;
            if let Some(e) = dropped {
                errors.push(e);
            }
        }

        // Propagated fields: one checked line each; past an edge that does not trust its
        // clients, only those declared safe there.
        for f in &c.fields {
            if c.trust.fields == InboundFields::OnlyKeptAtEdge && !f.is_kept_at_edge() {
                continue;
            }
            let mut lines = carrier.get_all_values(f.name());
            match (lines.next(), lines.next()) {
                (None, _) => {}
                (Some(_), Some(_)) => errors.push(ParseError::at(
                    Format::Field,
                    crate::error::Field::Value,
                    ErrorKind::Duplicate,
                )),
                (Some(raw), None) => match field::check_value(raw) {
                    Ok(()) => {
                        if let Some(v) = carrier.get_value(f.name()) {
                            cx.fields.push((f.name().clone(), v));
                        }
                    }
                    Err(e) => errors.push(e),
                },
            }
        }

        // Opaque headers carry a context (and a sampling decision) this hop cannot re-decide:
        // past an edge that does not trust the client's context they are checked (so a bad
        // value is still reported) but not forwarded.
        let forward_opaque = c.trust.inbound_context() == InboundContext::Trust;
        for &h in &c.opaque {
            if h == OpaqueHeader::GrpcTraceBin
                && c.extract_set.contains(ContextFormat::GrpcTraceBin)
            {
                continue; // handled as a context format
            }
            for slot in opaque_slots(h) {
                let name = slot_name(slot);
                if let Some(raw) = carrier.get(name) {
                    match check_opaque(h, raw) {
                        Ok(()) if !forward_opaque => {}
                        Ok(()) => {
                            if let Some(v) = carrier.get_value(name) {
                                received.set(slot, v);
                            }
                        }
                        Err(e) => errors.push(e),
                    }
                }
            }
        }

        cx.received = received;
        cx.errors = errors;
        cx
    }

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
            .with_trace_flags(if trace_id.is_64bit() {
                crate::TraceFlags::default()
            } else {
                crate::TraceFlags::RANDOM
            })
    }

    /// Write `span` in every inject format, plus the request context's `tracestate` (when
    /// `traceparent` is written), request id, baggage and opaque headers.
    ///
    /// Allocates once per id-carrying header value; sampling values and forwarded values are
    /// shared.
    pub fn inject<I: Injector + ?Sized>(
        &self,
        span: &SpanContext,
        cx: &RequestContext,
        carrier: &mut I,
    ) {
        self.inject_span_formats(span, self.config.inject, cx, carrier);
        self.inject_rest(cx, carrier);
    }

    fn inject_span_formats<I: Injector + ?Sized>(
        &self,
        span: &SpanContext,
        formats: FormatSet,
        cx: &RequestContext,
        carrier: &mut I,
    ) {
        for f in formats.iter() {
            match f {
                ContextFormat::B3Single => b3_single::inject(span, carrier),
                ContextFormat::B3Multi => b3_multi::inject(span, carrier),
                ContextFormat::TraceParent => {
                    traceparent::inject(span, carrier);
                    match cx.tracestate.header_value() {
                        Some(ts) if !span.is_sampling_only() => {
                            carrier.set(&header::TRACESTATE, ts.clone());
                        }
                        _ => carrier.remove(&header::TRACESTATE),
                    }
                }
                ContextFormat::Jaeger => jaeger::inject(span, carrier),
                ContextFormat::GrpcTraceBin => grpc_trace_bin::inject(span, carrier),
            }
        }
    }

    /// The prefixed forms of baggage the application writes, after the inject set: B3 peers
    /// (Brave, Istio routing on `baggage-*` headers) read `baggage-<key>`, Jaeger peers
    /// `uberctx-<key>`. None when prefixed baggage is off.
    fn app_baggage_prefixes(&self) -> &'static [crate::baggage::BaggagePrefix] {
        use crate::baggage::BaggagePrefix as P;
        let c = &self.config;
        if !c.prefixed_baggage {
            return &[];
        }
        let b3 =
            c.inject.contains(ContextFormat::B3Multi) || c.inject.contains(ContextFormat::B3Single);
        match (b3, c.inject.contains(ContextFormat::Jaeger)) {
            (true, true) => &[P::Baggage, P::Uberctx],
            (true, false) => &[P::Baggage],
            (false, true) => &[P::Uberctx],
            (false, false) => &[],
        }
    }

    fn inject_rest<I: Injector + ?Sized>(&self, cx: &RequestContext, carrier: &mut I) {
        let c = &self.config;
        if c.request_id
            && let Some(id) = &cx.request_id
        {
            codec::request_id::inject(id, carrier);
        }
        if c.baggage && !cx.baggage.is_empty() {
            codec::baggage::inject_with(&cx.baggage, self.app_baggage_prefixes(), carrier);
        }
        for (name, value) in cx.received.opaque() {
            carrier.set(name, value.clone());
        }
        for (name, value) in &cx.fields {
            carrier.set(name, value.clone());
        }
    }

    /// Forward mode (what Istio asks of applications): re-send the received context headers
    /// exactly as they arrived (shared bytes, no re-encoding), plus request id, `tracestate`,
    /// baggage and opaque headers. When the trust policy changed the context, or nothing was
    /// received, the context is encoded instead, in the formats it arrived in (else the inject
    /// set): the caller's ids, or this hop's span for a trace that starts here (no ids
    /// received, or only a sampling decision the trust policy dropped).
    pub fn forward<I: Injector + ?Sized>(&self, cx: &RequestContext, carrier: &mut I) {
        let r = &cx.received;
        if r.context_verbatim && !r.formats.is_empty() {
            for (name, value) in r.context_values() {
                carrier.set(name, value.clone());
            }
            if r.formats.contains(ContextFormat::TraceParent)
                && let Some(ts) = cx.tracestate.header_value()
            {
                carrier.set(&header::TRACESTATE, ts.clone());
            }
        } else {
            let formats = if r.formats.is_empty() {
                self.config.inject
            } else {
                r.formats
            };
            // The caller's ids, re-encoded. Without ids (nothing received, or a sampling-only
            // context whose decision the trust policy dropped) the trace starts here: this
            // hop's span, so the next hop joins it.
            match (cx.remote.filter(|s| !s.is_sampling_only()), &cx.local) {
                (Some(remote), _) => self.inject_span_formats(&remote, formats, cx, carrier),
                (None, Some(local)) => self.inject_span_formats(local, formats, cx, carrier),
                (None, None) => {
                    if let Some(remote) = &cx.remote {
                        self.inject_span_formats(remote, formats, cx, carrier);
                    }
                }
            }
        }
        self.inject_rest(cx, carrier);
    }
}

fn check_opaque(h: OpaqueHeader, b: &[u8]) -> Result<(), ParseError> {
    let format = h.format();
    if b.is_empty() {
        return Err(ParseError::new(format, None, ErrorKind::Empty));
    }
    if b.len() > MAX_OPAQUE_LEN {
        return Err(ParseError::new(
            format,
            None,
            ErrorKind::TooLong {
                len: b.len(),
                max: MAX_OPAQUE_LEN,
            },
        ));
    }
    if let Some(i) = b.iter().position(|&c| !(0x21..=0x7e).contains(&c)) {
        return Err(ParseError::new(
            format,
            None,
            ErrorKind::InvalidCharacter {
                byte: b[i],
                index: i,
            },
        ));
    }
    // A `-bin` value that is not base64 makes gRPC peers fail the whole call: never send one.
    if h == OpaqueHeader::GrpcTraceBin && !is_base64(b) {
        return Err(ParseError::new(format, None, ErrorKind::InvalidBase64));
    }
    Ok(())
}

/// Standard base64, padded or not (as gRPC `-bin` metadata allows).
fn is_base64(b: &[u8]) -> bool {
    let data = b
        .strip_suffix(b"==")
        .or_else(|| b.strip_suffix(b"="))
        .unwrap_or(b);
    let padded = data.len() != b.len();
    data.iter()
        .all(|&c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
        && data.len() % 4 != 1
        && (!padded || b.len().is_multiple_of(4))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn from_otel_propagators() {
        let p = Propagator::from_otel_propagators("tracecontext, baggage").unwrap();
        assert_eq!(p.extract_order(), &[ContextFormat::TraceParent]);
        assert!(p.config.baggage);
        let p = Propagator::from_otel_propagators("b3multi,jaeger").unwrap();
        assert_eq!(
            p.extract_order(),
            &[
                ContextFormat::B3Single,
                ContextFormat::B3Multi,
                ContextFormat::Jaeger
            ]
        );
        assert!(p.inject_formats().contains(ContextFormat::B3Multi));
        assert!(!p.inject_formats().contains(ContextFormat::B3Single));
        assert!(!p.config.baggage);
        let p = Propagator::from_otel_propagators("none").unwrap();
        assert!(p.extract_order().is_empty());
        let e = Propagator::from_otel_propagators("tracecontext,xray").unwrap_err();
        assert_eq!(e.name(), "xray");
        assert!(e.to_string().contains("`xray`"));
        assert_eq!(
            Propagator::from_otel_propagators(" ")
                .unwrap()
                .extract_order()
                .len(),
            3
        );
    }

    #[test]
    fn forward_is_verbatim() {
        let p = Propagator::default();
        let incoming = map(&[
            ("x-b3-traceid", "48485a3953bb6124"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ("x-b3-sampled", "1"),
            (
                "traceparent",
                "00-000000000000000048485a3953bb6124-a2fb4a1d1a96d312-01",
            ),
            ("tracestate", "a=1 , b=2"),
            ("x-request-id", "rid-1"),
            ("x-ot-span-context", "EhQJnDGAHCHrSIQRMTMgaXFrrbcYAQ=="),
            ("baggage", "k=v%20w"),
        ]);
        let cx = p.extract(&incoming);
        assert!(cx.errors().is_empty(), "{:?}", cx.errors());
        let mut out = HeaderMap::new();
        p.forward(&cx, &mut out);
        for name in [
            "x-b3-traceid",
            "x-b3-spanid",
            "x-b3-sampled",
            "traceparent",
            "x-request-id",
            "x-ot-span-context",
            "baggage",
        ] {
            assert_eq!(out.get(name), incoming.get(name), "{name}");
        }
        assert_eq!(out["tracestate"], "a=1,b=2");
        assert!(out.get("x-b3-parentspanid").is_none());
    }

    #[test]
    fn invalid_formats_are_not_forwarded() {
        let p = Propagator::default();
        let incoming = map(&[
            ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
            ("x-b3-traceid", "garbage"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ("x-ot-span-context", "bad value"),
        ]);
        let cx = p.extract(&incoming);
        assert_eq!(cx.errors().len(), 2);
        let mut out = HeaderMap::new();
        p.forward(&cx, &mut out);
        assert_eq!(out["b3"], incoming["b3"]);
        assert!(out.get("x-b3-traceid").is_none());
        assert!(out.get("x-ot-span-context").is_none());
    }

    #[test]
    fn ignored_values_are_not_forwarded_verbatim() {
        let p = Propagator::builder()
            .extract([
                ContextFormat::B3Multi,
                ContextFormat::TraceParent,
                ContextFormat::Jaeger,
            ])
            .build();
        let mut incoming = map(&[
            ("x-b3-sampled", "1"),
            ("x-b3-spanid", "not-an-id"),
            ("x-b3-flags", "2"),
            (
                "traceparent",
                "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future",
            ),
        ]);
        incoming.insert(
            "uber-trace-id",
            HeaderValue::from_bytes(b"0af7651916cd43dd8448eb211c80319c:b7ad6b7169203331:\xff:1")
                .unwrap(),
        );
        let cx = p.extract(&incoming);
        assert!(cx.errors().is_empty(), "{:?}", cx.errors());
        let mut out = HeaderMap::new();
        p.forward(&cx, &mut out);
        assert_eq!(out["x-b3-sampled"], "1");
        assert!(out.get("x-b3-spanid").is_none());
        assert!(out.get("x-b3-flags").is_none());
        assert_eq!(
            out["traceparent"],
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
        assert_eq!(
            out["uber-trace-id"],
            "0af7651916cd43dd8448eb211c80319c:b7ad6b7169203331:0:1"
        );
    }

    #[test]
    fn untrusted_edge_re_encodes_without_forcing() {
        let p = Propagator::builder()
            .trust(TrustPolicy::untrusted())
            .build();
        let incoming = map(&[
            ("x-b3-traceid", "48485a3953bb6124"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ("x-b3-flags", "1"),
            ("x-request-id", "4f9cf65f-1b6a-4c3b-8d0e-2a7c9b1e5d43"),
        ]);
        let cx = p.extract(&incoming);
        assert_eq!(cx.remote().unwrap().sampling(), Sampling::Deferred);
        assert!(cx.request_id().is_none());
        let mut out = HeaderMap::new();
        p.forward(&cx, &mut out);
        assert_eq!(out["x-b3-traceid"], "48485a3953bb6124");
        assert!(out.get("x-b3-flags").is_none());
        assert!(out.get("x-b3-sampled").is_none());
    }

    #[test]
    fn untrusted_sampling_only_forwards_this_hops_trace() {
        let p = Propagator::builder()
            .trust(TrustPolicy::untrusted())
            .build();
        for incoming in [map(&[("b3", "0")]), map(&[("x-b3-flags", "1")])] {
            let mut cx = p.extract(&incoming);
            let server = p.server_span(cx.remote());
            cx.set_local(server);
            let mut out = HeaderMap::new();
            p.forward(&cx, &mut out);
            let trace = server.trace_id().unwrap().to_string();
            let sent = out
                .get("b3")
                .or(out.get("x-b3-traceid"))
                .unwrap()
                .to_str()
                .unwrap();
            assert!(sent.starts_with(&trace), "{sent} vs {trace}");
            assert!(out.get("x-b3-sampled").is_none() && out.get("x-b3-flags").is_none());
        }
    }

    #[test]
    fn opaque_grpc_trace_bin_must_be_base64() {
        let p = Propagator::default();
        let cx = p.extract(&map(&[(
            "grpc-trace-bin",
            "AABL+S81d7NNpqPOkp0ADkc2ATTwZ6oLqQK3AgE",
        )]));
        assert!(cx.received_header(&header::GRPC_TRACE_BIN).is_some());
        let cx = p.extract(&map(&[("grpc-trace-bin", "not-base64!")]));
        assert!(cx.received_header(&header::GRPC_TRACE_BIN).is_none());
        assert_eq!(cx.errors()[0].kind(), ErrorKind::InvalidBase64);
        assert!(is_base64(b"AAE="));
        assert!(!is_base64(b"A"));
        assert!(!is_base64(b"A="));
    }

    #[test]
    fn opaque_headers_do_not_pass_an_untrusted_edge() {
        // A sampled LightStep context and a sampled OpenCensus one: a client's decision that an
        // untrusted edge cannot re-decide, so it does not forward them (a bad one is still
        // reported).
        let headers = [
            ("x-ot-span-context", "EhQJnDGAHCHrSIQRMTMgaXFrrbcYAQ=="),
            ("grpc-trace-bin", "AABL+S81d7NNpqPOkp0ADkc2ATTwZ6oLqQK3AgE"),
        ];
        let trusted = Propagator::default().extract(&map(&headers));
        assert!(
            trusted
                .received_header(&header::X_OT_SPAN_CONTEXT)
                .is_some()
        );
        assert!(trusted.received_header(&header::GRPC_TRACE_BIN).is_some());
        for trust in [
            TrustPolicy::untrusted(),
            TrustPolicy::keep_request_id_only(),
        ] {
            let p = Propagator::builder().trust(trust).build();
            let cx = p.extract(&map(&headers));
            assert!(cx.received_header(&header::X_OT_SPAN_CONTEXT).is_none());
            assert!(cx.received_header(&header::GRPC_TRACE_BIN).is_none());
            let mut out = HeaderMap::new();
            p.forward(&cx, &mut out);
            assert!(out.get("x-ot-span-context").is_none());
            assert!(out.get("grpc-trace-bin").is_none());
            let cx = p.extract(&map(&[("grpc-trace-bin", "not-base64!")]));
            assert_eq!(cx.errors()[0].kind(), ErrorKind::InvalidBase64);
        }
    }

    #[test]
    fn keep_request_id_only() {
        let p = Propagator::builder()
            .trust(TrustPolicy::keep_request_id_only())
            .build();
        let cx = p.extract(&map(&[("b3", "1"), ("x-request-id", "abc")]));
        assert!(cx.remote().is_none());
        assert_eq!(cx.request_id().unwrap().as_str(), "abc");
    }

    #[test]
    fn span_semantics() {
        let remote = b3_single::decode(
            b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
        )
        .unwrap();
        let shared = Propagator::builder()
            .span_semantics(SpanSemantics::Shared)
            .build();
        assert_eq!(shared.server_span(Some(&remote)), remote);
        let child = Propagator::default().server_span(Some(&remote));
        assert_eq!(child.parent_span_id(), remote.span_id());
        assert_eq!(child.trace_id(), remote.trace_id());
        let root = Propagator::default().server_span(None);
        assert_eq!(root.parent_span_id(), None);
        assert_eq!(root.sampling(), Sampling::Deferred);
        assert!(root.trace_flags().contains(crate::TraceFlags::RANDOM));
        let deny =
            Propagator::default().server_span(Some(&SpanContext::sampling_only(Sampling::Deny)));
        assert_eq!(deny.sampling(), Sampling::Deny);
    }

    #[test]
    fn tracestate_needs_matching_traceparent() {
        let p = Propagator::default();
        let cx = p.extract(&map(&[
            ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("tracestate", "rojo=1"),
        ]));
        assert!(cx.tracestate().is_empty());
        let cx = p.extract(&map(&[
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("tracestate", "rojo=1"),
            ("tracestate", "congo=2"),
        ]));
        assert_eq!(cx.tracestate().header_value().unwrap(), "rojo=1,congo=2");
    }
}
