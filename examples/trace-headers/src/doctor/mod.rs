//! `trace-headers doctor`: find the hop that broke a trace.
//!
//! The doctor reads spans (Zipkin v2 JSON: a file, standard input, or a Zipkin API) and,
//! optionally, access logs; groups the spans by request (the `x-request-id` that Envoy tags
//! its spans with, a request-id attribute on application spans, the access logs joining
//! request ids to trace ids) and by trace; and reports every request whose spans fall into
//! more than one trace, or that holds a span whose parent nobody reported. Each finding names
//! the **culprit**: the application or proxy that must change, not the span that shows the
//! symptom. The rules are in `examples/trace-headers/DOCTOR.md`.
//!
//! The pieces are public so that the fuzz target and other tools can drive them without the
//! CLI: [`parse_source_bytes`] and [`parse_access_log`] read input, [`analyse`] turns
//! [`Evidence`] into a [`Report`], which prints as text or JSON.
//!
//! # Example
//!
//! ```
//! use trace_headers::doctor::{self, Evidence};
//!
//! // The front proxy's root span, and order's sidecar starting a new trace for the same
//! // request: order dropped the trace headers but forwarded x-request-id.
//! let spans = doctor::parse_source_bytes(br#"[
//!   {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"a3ce929d0e0e4736","kind":"SERVER",
//!    "timestamp":1000,"duration":900,"localEndpoint":{"serviceName":"front-proxy"},
//!    "tags":{"guid:x-request-id":"3d48b776-a796-92d9-8cd9-55cf73e43c5e"}},
//!   {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"1111111111111111","parentId":"a3ce929d0e0e4736",
//!    "kind":"SERVER","timestamp":1100,"duration":700,"localEndpoint":{"serviceName":"order-sidecar"},
//!    "tags":{"guid:x-request-id":"3d48b776-a796-92d9-8cd9-55cf73e43c5e"}},
//!   {"traceId":"00000000000000005b8efff798038103","id":"5b8efff798038103","kind":"CLIENT",
//!    "timestamp":1200,"duration":100,"localEndpoint":{"serviceName":"order-sidecar"},
//!    "tags":{"guid:x-request-id":"3d48b776-a796-92d9-8cd9-55cf73e43c5e","upstream_cluster":"item"}}
//! ]"#)?;
//! let report = doctor::analyse(&Evidence { spans, ..Evidence::default() });
//! assert_eq!((report.requests, report.traces, report.broken), (1, 2, 1));
//! assert_eq!(report.findings[0].kind, doctor::Kind::HeadersDropped);
//! assert_eq!(report.findings[0].service, "order");
//! # Ok::<(), doctor::DoctorError>(())
//! ```

mod access_log;
mod analyse;
mod explain;
mod fetch;
mod mesh;
mod report;
mod rules;
mod source;

use std::fmt;

pub use access_log::{AccessLog, LogFormat, LogRecord, parse_access_log};
pub use analyse::analyse;
pub use collector::ZipkinSpan;
pub use report::{Finding, Kind, Report};
pub use source::{Query, Source, parse_source_bytes, read_source};

/// Everything the doctor reads: spans, access-log lines, and the services to treat as the
/// mesh's edge (besides those it recognises itself).
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    /// Spans from every source, normalised by the collector's parser.
    pub spans: Vec<ZipkinSpan>,
    /// Access-log lines from every `--access-log` file.
    pub logs: Vec<LogRecord>,
    /// Services named edges on the command line (`--edge`).
    pub edges: Vec<String>,
}

/// Input the doctor cannot read: the CLI prints it and exits 2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DoctorError {
    source: String,
    reason: String,
}

impl DoctorError {
    /// An error reading `source` (a file name, `-`, a URL), for `reason`.
    pub fn new(source: impl Into<String>, reason: impl Into<String>) -> Self {
        DoctorError {
            source: source.into(),
            reason: reason.into(),
        }
    }

    /// The same error, said of `source` (a file name, `-`, a URL).
    #[must_use]
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// What was being read: a file name, `-` (standard input), a URL.
    #[must_use]
    pub fn source_name(&self) -> &str {
        &self.source
    }

    /// Why it could not be read.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for DoctorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.reason)
    }
}

impl std::error::Error for DoctorError {}
