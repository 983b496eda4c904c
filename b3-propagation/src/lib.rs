//! Exact, allocation-free propagation of every tracing header an Envoy / Istio mesh forwards:
//! B3 multi (`x-b3-*`) and single (`b3`), W3C `traceparent` / `tracestate`, `baggage` (and
//! `baggage-*`, `ot-baggage-*`, `uberctx-*`), `x-request-id`, Jaeger `uber-trace-id`, and the
//! opaque `x-ot-span-context` / `grpc-trace-bin` forwarded verbatim.
//!
//! Service meshes trace requests for free, but only if every application forwards the headers
//! it received to the calls it makes. This crate reads and writes them exactly as the specs
//! and Envoy do — `b3: 0` and debug `d` kept, 64-bit trace ids re-emitted at 64 bits, the
//! parent propagated, garbage rejected with a reason — and without allocating on extract.
//!
//! # Example
//!
//! ```
//! use b3_propagation::{Propagator, Sampling};
//! use http::{HeaderMap, HeaderValue};
//!
//! let propagator = Propagator::default();
//!
//! // What a sidecar delivers to the application.
//! let mut incoming = HeaderMap::new();
//! incoming.insert("x-request-id", HeaderValue::from_static("4f9cf65f-1b6a-9c3b-8d0e-2a7c9b1e5d43"));
//! incoming.insert("x-b3-traceid", HeaderValue::from_static("48485a3953bb6124"));
//! incoming.insert("x-b3-spanid", HeaderValue::from_static("a2fb4a1d1a96d312"));
//! incoming.insert("x-b3-sampled", HeaderValue::from_static("1"));
//!
//! let cx = propagator.extract(&incoming);
//! let remote = cx.remote().unwrap();
//! assert_eq!(remote.sampling(), Sampling::Accept);
//!
//! // Istio's model: forward what came in, unchanged.
//! let mut outgoing = HeaderMap::new();
//! propagator.forward(&cx, &mut outgoing);
//! assert_eq!(outgoing["x-b3-traceid"], "48485a3953bb6124");
//! assert_eq!(outgoing["x-request-id"], "4f9cf65f-1b6a-9c3b-8d0e-2a7c9b1e5d43");
//!
//! // Or instrument: a child span per call, same trace, same request id.
//! let mut outgoing = HeaderMap::new();
//! propagator.inject(&propagator.client_span(remote), &cx, &mut outgoing);
//! assert_eq!(outgoing["x-b3-traceid"], "48485a3953bb6124"); // width kept
//! assert_eq!(outgoing["x-b3-parentspanid"], "a2fb4a1d1a96d312");
//! assert_eq!(
//!     &outgoing["traceparent"].to_str().unwrap()[..36],
//!     "00-000000000000000048485a3953bb6124-"
//! );
//! ```
//!
//! # Modules
//!
//! - [`codec`]: one module per format (decode / encode / extract / inject), usable alone;
//! - [`Propagator`]: extract order, inject set, trust policy, span semantics;
//! - [`RequestContext`]: what a request carries, with the rejected headers' reasons;
//! - [`carrier`]: the [`Extractor`] / [`Injector`] traits over `http::HeaderMap` (and tonic's
//!   `MetadataMap` in `grpc-interceptor`).
//!
//! # Feature flags
//!
//! | Name | Description | Default |
//! |---|---|---|
//! | `opentelemetry` | A `TextMapPropagator` usable wherever `opentelemetry-propagator-b3`'s is, and conversions to / from `opentelemetry::trace::SpanContext` | no |
//! | `ot-span-context` | [`codec::ot_span_context`]: decoding `x-ot-span-context` (LightStep's protobuf carrier) for diagnostics; the propagator forwards it verbatim either way | no |

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod baggage;
pub mod carrier;
pub mod codec;
pub mod context;
pub mod error;
pub mod field;
mod format;
pub mod header;
pub mod id;
#[cfg(feature = "opentelemetry")]
#[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
pub mod otel;
pub mod propagator;
pub mod request_context;
pub mod request_id;
pub mod sampling;
pub mod tracestate;

pub use crate::baggage::Baggage;
pub use crate::carrier::{Extractor, Injector};
pub use crate::context::{SpanContext, TraceFlags};
pub use crate::error::ParseError;
pub use crate::field::{InvalidField, PropagatedField};
pub use crate::format::{Format, OpaqueHeader, UnknownFormat};
pub use crate::id::{SpanId, TraceId};
pub use crate::propagator::{
    ContextFormat, FormatSet, IdGenerator, InboundBaggage, InboundContext, InboundFields,
    InboundRequestId, Propagator, PropagatorBuilder, RandomIdGenerator, SpanSemantics, TrustPolicy,
    UnknownPropagator,
};
pub use crate::request_context::RequestContext;
pub use crate::request_id::{RequestId, TraceReason};
pub use crate::sampling::Sampling;
pub use crate::tracestate::TraceState;
