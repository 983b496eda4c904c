//! Request-duration histograms for the server layer (feature `metrics`), in a
//! [`prometheus-client`](prometheus_client) registry, with an exemplar per bucket naming the
//! trace of a request that fell in it — so a slow bucket on a dashboard leads to its trace.
//!
//! The names follow the OpenTelemetry semantic conventions, translated to Prometheus as the
//! OpenTelemetry-to-Prometheus compatibility rules do (dots become underscores, the unit
//! becomes a suffix):
//!
//! | metric | for | labels |
//! |---|---|---|
//! | `http_server_request_duration_seconds` (OTel `http.server.request.duration`) | HTTP requests | `http_request_method` (`_OTHER` for non-standard methods), `http_route` (the route template from [`TraceHeadersLayer::route`], empty when unknown), `http_response_status_code` (when a response head was sent), `error_type` (when the request ended with an error, as its span's `error.type`: the type name of the error the service or the response body failed with, `panic` for a handler or body that panicked, else the status code of a `5xx` response) |
//! | `rpc_server_call_duration_seconds` (OTel `rpc.server.call.duration`) | gRPC calls: a request with a gRPC `content-type` (`application/grpc`, `application/grpc+…`; not gRPC-Web) answered as one (a gRPC `content-type` or a `grpc-status`); a request the client labelled gRPC but answered otherwise (a JSON page, a plain `413` or `503` from a layer in front of the router) counts as the HTTP request it was | `rpc_system` (`grpc`), `rpc_service`, `rpc_method`, `rpc_grpc_status_code` |
//!
//! The RPC histogram has the name the RPC conventions gave it after 1.37
//! (`rpc.server.call.duration`, in seconds like the HTTP one; 1.37's `rpc.server.duration` was
//! in milliseconds) and the 1.37 attribute names the layers' gRPC spans carry (see
//! [`crate::semconv`]), so a call's metric and its span share their labels; both move to the
//! new RPC attribute names together, once those are stable.
//!
//! Both are histograms in seconds with the OpenTelemetry default boundaries (5 ms … 10 s) unless
//! [`ServerMetrics::with_buckets`] says otherwise; the request count is the histogram's
//! `_count`. A request is measured from the moment the layer receives it to the end of its
//! response body, so a streamed or slow-to-drain response counts whole; a gRPC call's status is
//! read from the response headers (trailers-only responses) or the trailers. A call whose
//! client goes away before the end — before the response head too — is recorded with status
//! `1` (CANCELLED); a gRPC-typed response without a gRPC status with the status a gRPC client
//! reads from its HTTP status (`503` → `14` UNAVAILABLE, ...), else `2` (UNKNOWN), as its span
//! is. An
//! HTTP request whose client goes away before the response head has no status label and no
//! `error_type` (the client's leaving is not the server's error); one the service fails
//! without a response has no status label and the error's `error_type`.
//!
//! **Exemplars** carry `trace_id` (32 hex) and `span_id` (16 hex) of the request's span when
//! the trace is sampled (`trace_id` alone when this hop reports no span of its own), so
//! Prometheus, scraping OpenMetrics with exemplar storage enabled, can link a bucket to the
//! trace in the tracing backend. Requests skipped by [`TraceHeadersLayer::skip_paths`]
//! (health checks, the scrape itself) are not counted.
//!
//! Recording never fails and never slows a request: an in-memory update of the family's
//! histogram; serving the registry is the application's business (see
//! [`OPENMETRICS_CONTENT_TYPE`]). Route and gRPC method names are interned (no allocation
//! after the first request of each), at most [`MAX_ROUTES`] routes and as many methods;
//! beyond that they are recorded as `_OTHER`, and so is a path that is not
//! `/package.Service/Method`. A gRPC method is kept only once a call to it answered with a
//! `grpc-status` that shows the method exists (or panicked) — not a status read from the HTTP
//! status of a gRPC-typed response without one, or an error without a response, not
//! UNIMPLEMENTED, nor what an authentication,
//! rate-limiting, load-shedding, timeout or validating layer in front of the router answers
//! for any path (UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED, UNAVAILABLE,
//! DEADLINE_EXCEEDED, CANCELLED, and INVALID_ARGUMENT, which `grpc-interceptor`'s strict
//! server interceptor answers a malformed trace header with) — so a client probing made-up
//! paths neither grows the registry nor takes the room of the service's own methods. (A method
//! whose every call so far failed that way is `_OTHER` until one does not.)
//!
//! # Example
//!
//! ```
//! use axum::{Router, extract::MatchedPath, routing::get};
//! use prometheus_client::registry::Registry;
//! use tower_trace_headers::TraceHeadersLayer;
//! use tower_trace_headers::metrics::ServerMetrics;
//!
//! let mut registry = Registry::default();
//! let metrics = ServerMetrics::new();
//! metrics.register(&mut registry);
//!
//! let app: Router = Router::new()
//!     .route("/users/{id}", get(|| async { "a user" }))
//!     .layer(
//!         TraceHeadersLayer::new()
//!             .metrics(metrics)
//!             // `http_route="/users/{id}"`, not one series per user.
//!             .route(|extensions| extensions.get::<MatchedPath>().map(MatchedPath::as_str)),
//!     );
//!
//! // Serve it as OpenMetrics (Prometheus reads exemplars only from that format), with
//! // `Content-Type: OPENMETRICS_CONTENT_TYPE`. A family shows once it has a series.
//! let mut text = String::new();
//! prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
//! assert!(text.ends_with("# EOF\n"));
//! # let _ = app;
//! ```
//!
//! [`TraceHeadersLayer::route`]: crate::TraceHeadersLayer::route
//! [`TraceHeadersLayer::skip_paths`]: crate::TraceHeadersLayer::skip_paths

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use b3_propagation::id::HexBuf;
use http::{HeaderMap, Method, StatusCode};
use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::registry::{Registry, Unit};

use crate::current::RequestTrace;

/// The `Content-Type` of an OpenMetrics text exposition, which `prometheus-client`'s text
/// encoder writes and Prometheus needs to read exemplars (the crate does not set headers).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// At most this many distinct routes, and as many gRPC methods, get their own series; further
/// ones are recorded as `_OTHER`.
pub const MAX_ROUTES: usize = 1024;

/// The OpenTelemetry semantic conventions' advisory boundaries for
/// `http.server.request.duration`, in seconds.
pub const DEFAULT_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The server layer's request-duration histograms (see the [module docs](self)). Cheap to
/// clone: clones share the histograms.
#[derive(Clone)]
pub struct ServerMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    http: Family<HttpLabels, HistogramWithExemplars<TraceExemplar>, Buckets>,
    rpc: Family<RpcLabels, HistogramWithExemplars<TraceExemplar>, Buckets>,
    /// Route templates (the application's: a bounded set).
    routes: Interner,
    /// gRPC methods that answered something other than UNIMPLEMENTED (a client's made-up
    /// paths are never kept).
    methods: Interner,
}

impl fmt::Debug for ServerMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerMetrics").finish_non_exhaustive()
    }
}

impl Default for ServerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerMetrics {
    /// Histograms with the OpenTelemetry default boundaries ([`DEFAULT_BUCKETS`]).
    #[must_use]
    pub fn new() -> Self {
        Self::with_buckets(DEFAULT_BUCKETS)
    }

    /// Histograms with these bucket boundaries, in seconds (sorted; non-finite values are
    /// dropped; the `+Inf` bucket is implied).
    #[must_use]
    pub fn with_buckets(buckets: impl IntoIterator<Item = f64>) -> Self {
        let mut bounds: Vec<f64> = buckets.into_iter().filter(|b| b.is_finite()).collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        let buckets = Buckets(bounds.into());
        ServerMetrics {
            inner: Arc::new(Inner {
                http: Family::new_with_constructor(buckets.clone()),
                rpc: Family::new_with_constructor(buckets),
                routes: Interner::default(),
                methods: Interner::default(),
            }),
        }
    }

    /// Register both histograms in `registry` (`http_server_request_duration_seconds`,
    /// `rpc_server_call_duration_seconds`). Register once per registry: a second registration
    /// exposes the same series twice.
    pub fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "http_server_request_duration",
            "Duration of HTTP server requests, from receipt to the end of the response body",
            Unit::Seconds,
            self.inner.http.clone(),
        );
        registry.register_with_unit(
            "rpc_server_call_duration",
            "Duration of gRPC server calls, from receipt to the end of the response body",
            Unit::Seconds,
            self.inner.rpc.clone(),
        );
    }

    /// Start measuring `req`: what the response body needs to record it when it ends.
    pub(crate) fn start<B>(
        &self,
        req: &http::Request<B>,
        route: Option<&str>,
        trace: &RequestTrace,
    ) -> Pending {
        let kind = if crate::semconv::is_grpc(req.headers()) {
            let method = match rpc_name(req.uri().path()) {
                None => RpcName::Other,
                Some(name) => match self.inner.methods.find(name) {
                    Some(known) => RpcName::Known(known),
                    // Kept once the call shows the method exists (see `record`).
                    None => RpcName::New(name.into()),
                },
            };
            Kind::Rpc {
                method,
                status: None,
                http: None,
                // The request's HTTP labels, should the answer not be gRPC's.
                as_http: (
                    method_label(req.method()),
                    route.map(|r| self.inner.routes.get(r)),
                ),
            }
        } else {
            Kind::Http {
                method: method_label(req.method()),
                route: route.map(|r| self.inner.routes.get(r)),
                status: 0,
            }
        };
        Pending {
            metrics: self.clone(),
            start: Instant::now(),
            kind,
            exemplar: TraceExemplar::of(trace),
        }
    }
}

/// A request being measured; recorded once, when its response ends.
pub(crate) struct Pending {
    metrics: ServerMetrics,
    start: Instant,
    kind: Kind,
    exemplar: Option<TraceExemplar>,
}

enum Kind {
    Http {
        method: &'static str,
        route: Option<Option<Arc<str>>>,
        status: u16,
    },
    Rpc {
        method: RpcName,
        /// From the response headers (trailers-only) or the trailers.
        status: Option<u8>,
        /// The response's HTTP status, for a response without a gRPC status.
        http: Option<StatusCode>,
        /// The HTTP method and route labels, for an answer that is not gRPC's.
        as_http: (&'static str, Option<Option<Arc<str>>>),
    },
}

/// A gRPC call's method as its labels will name it.
enum RpcName {
    /// Kept already.
    Known(Arc<str>),
    /// Well formed, not kept yet.
    New(Box<str>),
    /// Not `/package.Service/Method`: `_OTHER`.
    Other,
}

/// Whether a call's status shows its method exists, so that the method is worth a series of
/// its own: not UNIMPLEMENTED (no such method), nor what the layers in front of a router
/// answer for any path — CANCELLED (the client went away, a call dropped before its answer
/// included), INVALID_ARGUMENT (a strict interceptor refusing malformed trace headers),
/// DEADLINE_EXCEEDED, PERMISSION_DENIED, RESOURCE_EXHAUSTED, UNAVAILABLE, UNAUTHENTICATED. A
/// method first seen with one of those, or answered without a `grpc-status` at all (a status
/// read from the HTTP status, an error without a response), is `_OTHER` until a call to it
/// answers otherwise; from then on all its calls are its own.
fn shows_a_method(status: u8) -> bool {
    !matches!(status, 1 | 3 | 4 | 7 | 8 | 12 | 14 | 16)
}

/// `path` when it names a gRPC method (`/package.Service/Method`), and no name the labels
/// give a meaning (`_OTHER`).
fn rpc_name(path: &str) -> Option<&str> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let valid = |s: &str| !s.is_empty() && s != OTHER && !s.contains('/');
    (valid(service) && valid(method)).then_some(path)
}

/// How a response ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// The body was read to its end.
    Complete,
    /// The body failed.
    Failed,
    /// The body was dropped before its end (the client went away).
    Dropped,
}

impl Pending {
    /// The response head is known.
    ///
    /// A request that said it was a gRPC call (its `content-type`) counts as one only if the
    /// answer is gRPC's too (a gRPC `content-type` or a `grpc-status`): the client chooses the
    /// request's headers, and an HTTP route answered in JSON stays in the HTTP metrics, however
    /// the request was labelled.
    pub(crate) fn response(&mut self, status: StatusCode, headers: &HeaderMap) {
        match &mut self.kind {
            Kind::Http { status: s, .. } => *s = status.as_u16(),
            Kind::Rpc {
                status: s,
                http,
                as_http,
                ..
            } => {
                let code = grpc_status(headers);
                if code.is_none()
                    && !crate::semconv::is_grpc_content_type(
                        headers.get(http::header::CONTENT_TYPE),
                    )
                {
                    self.kind = Kind::Http {
                        method: as_http.0,
                        route: as_http.1.take(),
                        status: status.as_u16(),
                    };
                    return;
                }
                *http = Some(status);
                if let Some(code) = code {
                    *s = Some(code);
                }
            }
        }
    }

    /// Trailers arrived.
    pub(crate) fn trailers(&mut self, trailers: &HeaderMap) {
        if let Kind::Rpc { status, .. } = &mut self.kind
            && let Some(code) = grpc_status(trailers)
        {
            *status = Some(code);
        }
    }

    /// The service failed before producing a response; `error` names the error's type.
    pub(crate) fn failed(self, error: &'static str) {
        self.record(End::Failed, Some(error));
    }

    /// Record the request; `error` names the type of the error it failed with, if any.
    pub(crate) fn record(self, end: End, error: Option<&'static str>) {
        let seconds = self.start.elapsed().as_secs_f64();
        // An exemplar says when it was taken: a bucket keeps its last one for the life of the
        // process, and one without a time is stamped with the scrape that first reads it (so
        // an old trace, long expired, would show as now after a Prometheus restart).
        let at = self.exemplar.as_ref().map(|_| std::time::SystemTime::now());
        let inner = &self.metrics.inner;
        match self.kind {
            Kind::Http {
                method,
                route,
                status,
            } => {
                let labels = HttpLabels {
                    method,
                    route,
                    status,
                    // Only a failure names an error (a dropped body is the client leaving).
                    error: if end == End::Failed { error } else { None },
                };
                inner
                    .http
                    .get_or_create(&labels)
                    .observe(seconds, self.exemplar, at);
            }
            Kind::Rpc {
                method,
                status,
                http,
                ..
            } => {
                // Whether the service itself answered with a gRPC status (or its code
                // panicked, which a client cannot make happen on a path of its choosing): only
                // then can the status show that the method exists. One read from the HTTP
                // status (a body limit, a load shedder or a proxy in front of the router) or
                // an error without a response says nothing of the method, whatever its code.
                let answered = status.is_some() || error == Some("panic");
                // As the spans read it (see `Extras::end`).
                let status = match (status, end) {
                    (Some(code), _) => code,
                    // Whoever read the body went away: CANCELLED, unless the HTTP status
                    // already said what the call is.
                    (None, End::Dropped) => http
                        .and_then(crate::semconv::grpc_status_of_http)
                        .unwrap_or(1),
                    // No status: what a gRPC client reads from the HTTP status, else UNKNOWN.
                    (None, End::Complete | End::Failed) => http
                        .and_then(crate::semconv::grpc_status_of_http)
                        .unwrap_or(2),
                };
                let method = match method {
                    RpcName::Known(name) => Some(name),
                    RpcName::New(name) if answered && shows_a_method(status) => {
                        inner.methods.get(&name)
                    }
                    RpcName::New(_) | RpcName::Other => None,
                };
                let labels = RpcLabels { method, status };
                inner
                    .rpc
                    .get_or_create(&labels)
                    .observe(seconds, self.exemplar, at);
            }
        }
    }
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending").finish_non_exhaustive()
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<u8> {
    crate::semconv::grpc_status(headers)
}

/// OTel's `http.request.method`: the standard methods as they are, anything else `_OTHER`.
fn method_label(method: &Method) -> &'static str {
    crate::semconv::method_name(method).unwrap_or("_OTHER")
}

/// Each histogram of a family gets the same boundaries.
#[derive(Clone)]
struct Buckets(Arc<[f64]>);

impl MetricConstructor<HistogramWithExemplars<TraceExemplar>> for Buckets {
    fn new_metric(&self) -> HistogramWithExemplars<TraceExemplar> {
        HistogramWithExemplars::new(self.0.iter().copied())
    }
}

/// Interned route templates or gRPC paths, at most [`MAX_ROUTES`].
struct Interner {
    names: RwLock<HashSet<Arc<str>>>,
}

impl Default for Interner {
    fn default() -> Self {
        Interner {
            names: RwLock::new(HashSet::new()),
        }
    }
}

impl Interner {
    /// `name` if it is kept.
    fn find(&self, name: &str) -> Option<Arc<str>> {
        // A poisoned lock only means another thread panicked mid-insert; the set is intact.
        self.names
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// `name`, kept from now on if there is room; `None` (`_OTHER`) when there is not. Once
    /// the set is full, a new name costs no write lock.
    fn get(&self, name: &str) -> Option<Arc<str>> {
        // The answer when the set has it or has no room: `None` when it must be inserted.
        let settled = |names: &HashSet<Arc<str>>| match names.get(name) {
            Some(found) => Some(Some(Arc::clone(found))),
            None if names.len() >= MAX_ROUTES => Some(None),
            None => None,
        };
        let read = self
            .names
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(answer) = settled(&read) {
            return answer;
        }
        drop(read);
        let mut names = self
            .names
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Another thread may have inserted it, or filled the set, meanwhile.
        if let Some(answer) = settled(&names) {
            return answer;
        }
        let interned: Arc<str> = Arc::from(name);
        names.insert(Arc::clone(&interned));
        Some(interned)
    }
}

const OTHER: &str = "_OTHER";

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct HttpLabels {
    method: &'static str,
    /// `None`: no route known (empty label); `Some(None)`: past the bound (`_OTHER`).
    route: Option<Option<Arc<str>>>,
    /// `0`: no response head was sent.
    status: u16,
    /// The type name of the error the request failed with (a `5xx` status is its own
    /// `error_type`, derived from `status` when this is `None`).
    error: Option<&'static str>,
}

impl EncodeLabelSet for HttpLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), fmt::Error> {
        ("http_request_method", self.method).encode(encoder.encode_label())?;
        let route = match &self.route {
            None => "",
            Some(None) => OTHER,
            Some(Some(r)) => r,
        };
        ("http_route", route).encode(encoder.encode_label())?;
        if self.status != 0 {
            ("http_response_status_code", u64::from(self.status)).encode(encoder.encode_label())?;
        }
        // As the server span's `error.type`: the error, else a server error's status code.
        if let Some(error) = self.error {
            ("error_type", error).encode(encoder.encode_label())?;
        } else if (500..600).contains(&self.status) {
            ("error_type", u64::from(self.status)).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RpcLabels {
    /// `/package.Service/Method` (as [`rpc_name`] accepts it), or `None` for `_OTHER`: one
    /// key per label set, so no two series encode alike.
    method: Option<Arc<str>>,
    status: u8,
}

impl EncodeLabelSet for RpcLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), fmt::Error> {
        let (service, method) = self
            .method
            .as_deref()
            .and_then(|p| p.strip_prefix('/')?.split_once('/'))
            .unwrap_or((OTHER, OTHER));
        ("rpc_system", "grpc").encode(encoder.encode_label())?;
        ("rpc_service", service).encode(encoder.encode_label())?;
        ("rpc_method", method).encode(encoder.encode_label())?;
        ("rpc_grpc_status_code", u64::from(self.status)).encode(encoder.encode_label())?;
        Ok(())
    }
}

/// An exemplar's labels: the trace, and this hop's span when it reports one.
#[derive(Clone, Debug)]
struct TraceExemplar {
    trace_id: HexBuf<32>,
    span_id: Option<HexBuf<16>>,
}

impl TraceExemplar {
    /// Only for a sampled trace: an unsampled one is in no backend to look up.
    fn of(trace: &RequestTrace) -> Option<Self> {
        let span = trace.span()?;
        if span.sampling().is_sampled() != Some(true) {
            return None;
        }
        let trace_id = span.trace_id()?.to_hex32();
        let span_id = trace
            .is_reported()
            .then(|| span.span_id().map(|s| s.to_hex()))
            .flatten();
        Some(TraceExemplar { trace_id, span_id })
    }
}

impl EncodeLabelSet for TraceExemplar {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), fmt::Error> {
        ("trace_id", self.trace_id.as_str()).encode(encoder.encode_label())?;
        if let Some(span_id) = &self.span_id {
            ("span_id", span_id.as_str()).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}
