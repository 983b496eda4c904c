//! One module per header format: decode / encode a value, extract / inject on a carrier.
//!
//! Every `decode` takes raw bytes and returns a typed [`ParseError`](crate::error::ParseError)
//! for malformed input; none of them panics or allocates on the way in (except
//! `baggage` and `ot_span_context`, whose values are strings). Encoders write into stack
//! buffers; building the final `HeaderValue` is the one allocation.
//!
//! | module | header(s) | propagator role |
//! |---|---|---|
//! | [`b3_single`] | `b3` | context |
//! | [`b3_multi`] | `x-b3-traceid`, `x-b3-spanid`, `x-b3-parentspanid`, `x-b3-sampled`, `x-b3-flags` | context |
//! | [`traceparent`] | `traceparent` (+ [`TraceState`](crate::TraceState)) | context |
//! | [`jaeger`] | `uber-trace-id` | context (opt-in) |
//! | [`grpc_trace_bin`] | `grpc-trace-bin` | forwarded verbatim; context (opt-in) |
//! | [`ot_span_context`] | `x-ot-span-context` | forwarded verbatim; decoded for diagnostics |
//! | [`baggage`] | `baggage`, `baggage-*`, `ot-baggage-*`, `uberctx-*` | baggage |
//! | [`request_id`] | `x-request-id` | request id |

pub mod b3_multi;
pub mod b3_single;
pub mod baggage;
pub mod grpc_trace_bin;
pub mod jaeger;
#[cfg(feature = "ot-span-context")]
#[cfg_attr(docsrs, doc(cfg(feature = "ot-span-context")))]
pub mod ot_span_context;
pub mod request_id;
pub mod traceparent;
