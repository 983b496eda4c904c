//! Static header names, all lower-case (gRPC requires it; B3 recommends it).
//!
//! Using these constants with [`http::HeaderMap`] avoids parsing a name on every lookup.
//!
//! # Example
//!
//! ```
//! use b3_propagation::header;
//!
//! assert_eq!(header::X_B3_TRACE_ID.as_str(), "x-b3-traceid");
//! assert_eq!(header::X_REQUEST_ID.as_str(), "x-request-id");
//! ```

use http::HeaderName;

/// `b3`: B3 single header.
pub const B3: HeaderName = HeaderName::from_static("b3");
/// `x-b3-traceid`.
pub const X_B3_TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
/// `x-b3-spanid`.
pub const X_B3_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
/// `x-b3-parentspanid`.
pub const X_B3_PARENT_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
/// `x-b3-sampled`.
pub const X_B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
/// `x-b3-flags` (debug).
pub const X_B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");
/// `traceparent` (W3C Trace Context).
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate` (W3C Trace Context).
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// `traceresponse` (W3C Trace Context Level 2 response header).
pub const TRACERESPONSE: HeaderName = HeaderName::from_static("traceresponse");
/// `baggage` (W3C Baggage).
pub const BAGGAGE: HeaderName = HeaderName::from_static("baggage");
/// `x-request-id` (Envoy).
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `x-ot-span-context` (LightStep / OpenTracing, forwarded verbatim).
pub const X_OT_SPAN_CONTEXT: HeaderName = HeaderName::from_static("x-ot-span-context");
/// `grpc-trace-bin` (OpenCensus binary context, forwarded verbatim).
pub const GRPC_TRACE_BIN: HeaderName = HeaderName::from_static("grpc-trace-bin");
/// `uber-trace-id` (Jaeger).
pub const UBER_TRACE_ID: HeaderName = HeaderName::from_static("uber-trace-id");
/// `x-cloud-trace-context` (Google Cloud; opt-in, forwarded verbatim).
pub const X_CLOUD_TRACE_CONTEXT: HeaderName = HeaderName::from_static("x-cloud-trace-context");
/// `sw8` (SkyWalking; opt-in, forwarded verbatim).
pub const SW8: HeaderName = HeaderName::from_static("sw8");
/// `x-datadog-trace-id` (opt-in, forwarded verbatim).
pub const X_DATADOG_TRACE_ID: HeaderName = HeaderName::from_static("x-datadog-trace-id");
/// `x-datadog-parent-id` (opt-in, forwarded verbatim).
pub const X_DATADOG_PARENT_ID: HeaderName = HeaderName::from_static("x-datadog-parent-id");
/// `x-datadog-sampling-priority` (opt-in, forwarded verbatim).
pub const X_DATADOG_SAMPLING_PRIORITY: HeaderName =
    HeaderName::from_static("x-datadog-sampling-priority");
/// `x-envoy-force-trace`: Envoy forces a trace for internal requests carrying it.
pub const X_ENVOY_FORCE_TRACE: HeaderName = HeaderName::from_static("x-envoy-force-trace");
/// `x-client-trace-id`: Envoy joins an external client's trace id to the request id.
pub const X_CLIENT_TRACE_ID: HeaderName = HeaderName::from_static("x-client-trace-id");
