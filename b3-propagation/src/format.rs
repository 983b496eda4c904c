//! [`Format`]: every header format this crate knows, and [`OpaqueHeader`]: those it forwards
//! verbatim.

use std::fmt;
use std::str::FromStr;

/// Every header format this crate knows: what a [`ParseError`](crate::ParseError) names, and
/// what diagnostics (the `trace-headers` CLI) select by its stable [`name`](Format::name).
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
    /// A propagated field the application chose (see [`field`](crate::field)).
    Field,
}

impl Format {
    /// A short, stable name: `b3-single`, `b3-multi`, `traceparent`, `tracestate`,
    /// `baggage`, `request-id`, `ot-span-context`, `grpc-trace-bin`, `jaeger` (and
    /// `cloud-trace`, `sw8`, `datadog` for the opaque ones, `field` for propagated fields).
    /// [`FromStr`] reads it back.
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
