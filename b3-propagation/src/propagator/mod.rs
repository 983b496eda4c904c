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

mod builder;
mod env;
mod extract;
mod format;
mod ids;
mod inject;
mod opaque;
#[cfg(test)]
mod tests;
mod trust;

use std::sync::Arc;

pub use self::builder::PropagatorBuilder;
pub use self::env::UnknownPropagator;
pub use self::format::{ContextFormat, FormatSet};
pub use self::ids::{IdGenerator, RandomIdGenerator, SpanSemantics};
pub use self::opaque::MAX_OPAQUE_LEN;
pub use self::trust::{
    InboundBaggage, InboundContext, InboundFields, InboundRequestId, TrustPolicy,
};
use crate::OpaqueHeader;
use crate::field::PropagatedField;
use crate::sampling::Sampling;

#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) extract: Vec<ContextFormat>,
    pub(crate) extract_set: FormatSet,
    pub(crate) inject: FormatSet,
    pub(crate) baggage: bool,
    pub(crate) prefixed_baggage: bool,
    pub(crate) request_id: bool,
    pub(crate) opaque: Vec<OpaqueHeader>,
    pub(crate) fields: Vec<PropagatedField>,
    pub(crate) trust: TrustPolicy,
    pub(crate) semantics: SpanSemantics,
    pub(crate) root_sampling: Sampling,
    pub(crate) ids: Arc<dyn IdGenerator>,
}

/// Extracts and injects every tracing header a mesh forwards. See the [module docs](self).
///
/// Cheap to clone (an `Arc`).
#[derive(Clone, Debug)]
pub struct Propagator {
    pub(crate) config: Arc<Config>,
}

impl Default for Propagator {
    fn default() -> Self {
        Self::builder().build()
    }
}

impl Propagator {
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

    /// Whether `x-request-id` is extracted and injected ([`PropagatorBuilder::request_id`]).
    #[must_use]
    pub fn propagates_request_id(&self) -> bool {
        self.config.request_id
    }
}
