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

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod baggage;
pub mod carrier;
pub mod codec;
pub mod context;
pub mod error;
pub mod field;
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

use std::fmt;
use std::str::FromStr;

pub use crate::baggage::Baggage;
pub use crate::carrier::{Extractor, Injector};
pub use crate::context::{SpanContext, TraceFlags};
pub use crate::error::ParseError;
pub use crate::field::{InvalidField, PropagatedField};
pub use crate::id::{SpanId, TraceId};
pub use crate::propagator::{
    ContextFormat, FormatSet, IdGenerator, InboundContext, InboundFields, InboundRequestId,
    Propagator, PropagatorBuilder, RandomIdGenerator, SpanSemantics, TrustPolicy,
    UnknownPropagator,
};
pub use crate::request_context::RequestContext;
pub use crate::request_id::{RequestId, TraceReason};
pub use crate::sampling::Sampling;
pub use crate::tracestate::TraceState;

/// Every header format this crate knows, as named by the `trace-headers` CLI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// `b3`.
    B3Single,
    /// `x-b3-*`.
    B3Multi,
    /// `traceparent`.
    TraceParent,
    /// `tracestate`.
    TraceState,
    /// `baggage` and the prefixed baggage headers.
    Baggage,
    /// `x-request-id`.
    RequestId,
    /// `x-ot-span-context`.
    OtSpanContext,
    /// `grpc-trace-bin`.
    GrpcTraceBin,
    /// `uber-trace-id`.
    Jaeger,
    /// `x-cloud-trace-context` (opaque).
    CloudTraceContext,
    /// `sw8` (opaque).
    Sw8,
    /// `x-datadog-*` (opaque).
    Datadog,
    /// A propagated field the application chose (see [`field`]).
    Field,
}

impl Format {
    /// The CLI name: `b3-single`, `b3-multi`, `traceparent`, `tracestate`, `baggage`,
    /// `request-id`, `ot-span-context`, `grpc-trace-bin`, `jaeger` (and `cloud-trace`,
    /// `sw8`, `datadog` for the opaque ones).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Format::B3Single => "b3-single",
            Format::B3Multi => "b3-multi",
            Format::TraceParent => "traceparent",
            Format::TraceState => "tracestate",
            Format::Baggage => "baggage",
            Format::RequestId => "request-id",
            Format::OtSpanContext => "ot-span-context",
            Format::GrpcTraceBin => "grpc-trace-bin",
            Format::Jaeger => "jaeger",
            Format::CloudTraceContext => "cloud-trace",
            Format::Sw8 => "sw8",
            Format::Datadog => "datadog",
            Format::Field => "field",
        }
    }

    /// The header name as people know it (`x-b3-*` for the multi-header format).
    #[must_use]
    pub const fn header_name(self) -> &'static str {
        match self {
            Format::B3Single => "b3",
            Format::B3Multi => "x-b3-*",
            Format::TraceParent => "traceparent",
            Format::TraceState => "tracestate",
            Format::Baggage => "baggage",
            Format::RequestId => "x-request-id",
            Format::OtSpanContext => "x-ot-span-context",
            Format::GrpcTraceBin => "grpc-trace-bin",
            Format::Jaeger => "uber-trace-id",
            Format::CloudTraceContext => "x-cloud-trace-context",
            Format::Sw8 => "sw8",
            Format::Datadog => "x-datadog-*",
            Format::Field => "propagated field",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error returned when a format name is unknown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownFormat(String);

impl fmt::Display for UnknownFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown format `{}`", self.0)
    }
}

impl std::error::Error for UnknownFormat {}

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "b3-single" => Format::B3Single,
            "b3-multi" => Format::B3Multi,
            "traceparent" => Format::TraceParent,
            "tracestate" => Format::TraceState,
            "baggage" => Format::Baggage,
            "request-id" => Format::RequestId,
            "ot-span-context" => Format::OtSpanContext,
            "grpc-trace-bin" => Format::GrpcTraceBin,
            "jaeger" => Format::Jaeger,
            "cloud-trace" => Format::CloudTraceContext,
            "sw8" => Format::Sw8,
            "datadog" => Format::Datadog,
            _ => return Err(UnknownFormat(s.to_owned())),
        })
    }
}

/// A header the propagator forwards verbatim without interpreting it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OpaqueHeader {
    /// `x-ot-span-context` (LightStep / OpenTracing; on by default).
    OtSpanContext,
    /// `grpc-trace-bin` (OpenCensus; on by default, unless decoded as a context format).
    GrpcTraceBin,
    /// `x-cloud-trace-context` (Google Cloud; opt-in).
    CloudTraceContext,
    /// `sw8` (SkyWalking; opt-in).
    Sw8,
    /// `x-datadog-trace-id`, `x-datadog-parent-id`, `x-datadog-sampling-priority` (opt-in).
    Datadog,
}

impl OpaqueHeader {
    /// The general [`Format`] of this header.
    #[must_use]
    pub const fn format(self) -> Format {
        match self {
            OpaqueHeader::OtSpanContext => Format::OtSpanContext,
            OpaqueHeader::GrpcTraceBin => Format::GrpcTraceBin,
            OpaqueHeader::CloudTraceContext => Format::CloudTraceContext,
            OpaqueHeader::Sw8 => Format::Sw8,
            OpaqueHeader::Datadog => Format::Datadog,
        }
    }

    /// Every opaque header.
    pub const ALL: [OpaqueHeader; 5] = [
        OpaqueHeader::OtSpanContext,
        OpaqueHeader::GrpcTraceBin,
        OpaqueHeader::CloudTraceContext,
        OpaqueHeader::Sw8,
        OpaqueHeader::Datadog,
    ];
}
