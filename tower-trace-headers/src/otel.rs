//! OpenTelemetry spans (feature `opentelemetry`).
//!
//! With this feature the server layer starts a `SERVER` span per request and the client
//! layer (in instrument mode) a `CLIENT` span per call, through the tracer provider given to
//! the layer (`tracer_provider`; the global one by default), named and described as the
//! OpenTelemetry semantic conventions say (see [`crate::semconv`] for the version followed,
//! the names and the attributes), with a status from the response. The spans' ids are the ids
//! in the propagated headers, so the exported spans and the headers tell the same story.
//!
//! The spans' instrumentation scope is this crate ([`scope`]: `tower-trace-headers`, its
//! version, the schema URL of the conventions), whichever the provider, so a backend tells
//! the layers' spans from the application's own (which keep their scope).
//!
//! A span ends with its response *body* (see [`ResponseBody`](crate::server::ResponseBody)):
//! its duration covers the whole response, and a gRPC call's `grpc-status`, which a
//! successful call sends in the trailers, is read there (or from the headers of a
//! trailers-only response), so every gRPC span carries `rpc.grpc.status_code`.
//!
//! A span counts only when it is *reported*: recording and sampled. A no-op tracer (no
//! provider installed), a sampler that drops, a provider shut down, or
//! [`without_spans`](crate::TraceHeadersLayer::without_spans) leave the hop transparent, its
//! calls naming the caller's span (see [`crate::hop`]). OpenTelemetry cannot tell from a span
//! whether its SDK provider has an exporter at all: a provider without one must be declared
//! with `without_spans()`, or its span ids would travel without ever being reported.
//!
//! The parent of a client span is the innermost reported span current where the call is
//! made: the OpenTelemetry context current then — which `tracing-opentelemetry` sets for an
//! entered `tracing` span, so `#[tracing::instrument]` spans are parents — else the server
//! span. When this hop reports no server span, the caller's span is made current as a remote
//! parent, so spans the application starts still join the caller's trace.
//!
//! **Shared span semantics** (Zipkin / Envoy `shared_span_context`) needs the server span to
//! reuse the caller's span id. The OpenTelemetry SDK always asks its id generator for ids, so
//! install [`PresetIdGenerator`] in your tracer provider: it hands the SDK the ids the layer
//! chose, and random ones otherwise. Without it, the layers adopt the SDK's ids (child
//! semantics), and the trace still joins. Until a layer's first span shows whether the ids
//! were taken, a caller's span without a parent gets a child span rather than a shared one.
//!
//! A caller that sent only its sampling decision (`b3: 0`, `x-b3-sampled: 1` alone) has no
//! span to be a parent; the layers' spans start a new trace under a context that carries the
//! decision alone, which the SDK's default sampler (`Sampler::ParentBased`) follows: `b3: 0`
//! stays unsampled whatever its root sampler would say. The SDK's spec-following
//! `ParentBasedSampler` takes a parent without ids for none, and lets its root sampler decide.
//!
//! Nothing here can slow or fail a request: spans are ended and handed to the SDK's span
//! processor, whose batching and export run elsewhere.
//!
//! Attribute values that repeat from request to request — hosts, user agents, routes, span
//! names, gRPC service and method names, a path that is its route's — are kept once for the
//! process (a bounded table: at most 512 values of at most 256 bytes, 128 KiB; past that, or
//! for a longer value, the value is copied per span as before), so a span carries them
//! without allocating and its exporter frees nothing for them. Paths with parameters, query
//! strings, client addresses and full URLs are copied per span.
//!
//! # Example
//!
//! ```
//! use opentelemetry_sdk::trace::SdkTracerProvider;
//! use tower_trace_headers::otel::PresetIdGenerator;
//!
//! let provider = SdkTracerProvider::builder()
//!     .with_id_generator(PresetIdGenerator::default())
//!     .build();
//! // Either the global provider (the layers' default) ...
//! opentelemetry::global::set_tracer_provider(provider.clone());
//! // ... or given to each layer.
//! let layer = tower_trace_headers::TraceHeadersLayer::new().tracer_provider(&provider);
//! # drop(layer);
//! ```

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use b3_propagation::{RequestContext, Sampling, SpanContext, SpanId, TraceId, TraceState};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};
use opentelemetry::global;
use opentelemetry::trace::{self as ot, SpanKind, Status, TraceContextExt};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};

use crate::semconv;

thread_local! {
    /// The ids the layers chose for the span being started on this thread: each is handed out
    /// once (the trace id only for a span without a parent), so a span that a span processor
    /// starts while this one starts gets ids of its own.
    static PRESET_TRACE: Cell<Option<u128>> = const { Cell::new(None) };
    static PRESET_SPAN: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Clears the preset ids when the span has started, or when starting it panicked.
struct PresetGuard;

impl Drop for PresetGuard {
    fn drop(&mut self) {
        PRESET_TRACE.with(|p| p.set(None));
        PRESET_SPAN.with(|p| p.set(None));
    }
}

/// Whether any [`PresetIdGenerator`] was made in this process: until a layer's first span
/// shows whether its provider honours preset ids, a shared span is tried only then (without
/// one anywhere, presets cannot work, and a shared span would get an id of the SDK's own: a
/// sibling of the caller's span, not the caller's span).
static PRESETS_MADE: AtomicBool = AtomicBool::new(false);

/// An OpenTelemetry SDK [`IdGenerator`] that returns the ids the layers chose for the span
/// being started (so a shared server span reuses the caller's span id), and random ids
/// otherwise. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct PresetIdGenerator {
    fallback: RandomIdGenerator,
}

impl Default for PresetIdGenerator {
    fn default() -> Self {
        PRESETS_MADE.store(true, Ordering::Relaxed);
        PresetIdGenerator {
            fallback: RandomIdGenerator::default(),
        }
    }
}

impl IdGenerator for PresetIdGenerator {
    fn new_trace_id(&self) -> ot::TraceId {
        match PRESET_TRACE.with(Cell::take) {
            Some(t) => ot::TraceId::from(t),
            None => self.fallback.new_trace_id(),
        }
    }

    fn new_span_id(&self) -> ot::SpanId {
        match PRESET_SPAN.with(Cell::take) {
            Some(s) => ot::SpanId::from(s),
            None => self.fallback.new_span_id(),
        }
    }
}

/// The instrumentation scope of the layers' spans: this crate, its version, and the schema of
/// the semantic conventions they follow (see [`crate::semconv`]).
#[must_use]
pub fn scope() -> opentelemetry::InstrumentationScope {
    opentelemetry::InstrumentationScope::builder(semconv::SCOPE_NAME)
        .with_version(semconv::SCOPE_VERSION)
        .with_schema_url(semconv::SCHEMA_URL)
        .build()
}

// The proxy headers the span attributes read (static names: no parse per lookup).
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The tracer a layer starts spans with.
#[derive(Clone, Default)]
pub(crate) enum SpanTracer {
    /// The global provider's tracer for [`scope`], looked up per request (so a provider
    /// installed later is used).
    #[default]
    Global,
    /// The tracer for [`scope`] of a given provider, its type erased behind [`StartSpan`]
    /// (not `BoxedTracer`, whose spans would be boxed twice on their way into a context).
    Given(Arc<dyn StartSpan>),
    /// No spans.
    Off,
}

/// A tracer that starts a span and makes it the span of a context, with the tracer's own span
/// type: the context boxes it once.
pub(crate) trait StartSpan: Send + Sync {
    /// `parent` with the span `builder` describes, started under it.
    fn start_in(&self, builder: ot::SpanBuilder, parent: &Context) -> Context;
}

impl<T> StartSpan for T
where
    T: ot::Tracer + Send + Sync,
    T::Span: Send + Sync + 'static,
{
    fn start_in(&self, builder: ot::SpanBuilder, parent: &Context) -> Context {
        parent.with_span(self.build_with_context(builder, parent))
    }
}

impl SpanTracer {
    /// The tracer for this crate's [`scope`] from `provider`.
    pub(crate) fn from_provider<P>(provider: &P) -> Self
    where
        P: ot::TracerProvider,
        P::Tracer: Send + Sync + 'static,
        <P::Tracer as ot::Tracer>::Span: Send + Sync + 'static,
    {
        SpanTracer::Given(Arc::new(provider.tracer_with_scope(scope())))
    }

    fn with<R>(&self, f: impl FnOnce(&dyn StartSpan) -> R) -> Option<R> {
        match self {
            SpanTracer::Global => Some(f(&global::tracer_with_scope(scope()))),
            SpanTracer::Given(t) => Some(f(&**t)),
            SpanTracer::Off => None,
        }
    }
}

impl fmt::Debug for SpanTracer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpanTracer::Global => "Global",
            SpanTracer::Given(_) => "Given",
            SpanTracer::Off => "Off",
        })
    }
}

/// What a request looks like to the span attributes.
pub(crate) struct RequestInfo<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: Seen<'a>,
    version: Version,
    /// The route template (server side), from the layer's route hook.
    route: Option<&'a str>,
    /// The server as configured on the client layer, for requests whose URI has no authority.
    server: Option<&'a ServerAddress>,
    /// The connection's peer (server side), from the layer's peer hook.
    peer: Option<SocketAddr>,
}

/// A server's address and port, as the client layer is told them (see
/// [`PropagateTraceHeadersLayer::server_address`](crate::PropagateTraceHeadersLayer::server_address)).
#[derive(Clone, Debug)]
pub(crate) struct ServerAddress {
    pub(crate) host: Cow<'static, str>,
    pub(crate) port: Option<u16>,
}

/// The request headers the span attributes read (the first value of each, as
/// `HeaderMap::get` gives it), found in one pass over an ordinary map: a lookup each would
/// hash every name and probe the map seven times.
#[derive(Default)]
struct Seen<'a> {
    content_type: Option<&'a HeaderValue>,
    host: Option<&'a HeaderValue>,
    user_agent: Option<&'a HeaderValue>,
    forwarded_for: Option<&'a HeaderValue>,
    forwarded_host: Option<&'a HeaderValue>,
    forwarded_proto: Option<&'a HeaderValue>,
    /// RFC 7239 `Forwarded`, read before the `X-Forwarded-*` headers.
    forwarded: Option<&'a HeaderValue>,
}

/// Past this many header lines (every value counts), the seven are looked up instead: the pass
/// costs at most this many steps, however many lines a request repeats.
const SCAN_LINES: usize = 32;

impl<'a> Seen<'a> {
    fn of(headers: &'a HeaderMap) -> Self {
        if headers.len() > SCAN_LINES {
            return Seen {
                content_type: headers.get(http::header::CONTENT_TYPE),
                host: headers.get(http::header::HOST),
                user_agent: headers.get(http::header::USER_AGENT),
                forwarded_for: headers.get(&X_FORWARDED_FOR),
                forwarded_host: headers.get(&X_FORWARDED_HOST),
                forwarded_proto: headers.get(&X_FORWARDED_PROTO),
                forwarded: headers.get(http::header::FORWARDED),
            };
        }
        let mut seen = Seen::default();
        for (name, value) in headers {
            // The length first: most names are none of these, and fail there.
            let slot = match name.as_str().len() {
                4 if name == http::header::HOST => &mut seen.host,
                9 if name == http::header::FORWARDED => &mut seen.forwarded,
                10 if name == http::header::USER_AGENT => &mut seen.user_agent,
                12 if name == http::header::CONTENT_TYPE => &mut seen.content_type,
                15 if name == X_FORWARDED_FOR => &mut seen.forwarded_for,
                16 if name == X_FORWARDED_HOST => &mut seen.forwarded_host,
                17 if name == X_FORWARDED_PROTO => &mut seen.forwarded_proto,
                _ => continue,
            };
            // The first value of a repeated header, as `get` gives it.
            slot.get_or_insert(value);
        }
        seen
    }

    /// `value` as text, if it is.
    fn text(value: Option<&'a HeaderValue>) -> Option<&'a str> {
        value.and_then(|v| v.to_str().ok())
    }

    /// The `key` parameter (`for`, `host`, `proto`) of `Forwarded`'s first non-empty element:
    /// what the proxy nearest the client saw.
    fn forwarded(&self, key: &str) -> Option<&'a str> {
        forwarded_param(Self::text(self.forwarded)?, key)
    }
}

/// The `key` parameter of the first non-empty element of an RFC 7239 `Forwarded` value
/// (`for=192.0.2.60;proto=http;by=203.0.113.43, for=198.51.100.17`), its quotes removed;
/// `None` when absent or empty. Separators inside a quoted value do not split, and an escaped
/// quote (`\"`) does not end one.
fn forwarded_param<'v>(value: &'v str, key: &str) -> Option<&'v str> {
    let mut quoted = false;
    let mut escaped = false;
    let mut start = 0;
    // Whether the element read so far had anything in it: an empty one (`, for=…`) is
    // skipped, as RFC 7230 asks of list elements.
    let mut element = false;
    for (i, b) in value
        .bytes()
        .enumerate()
        .chain(std::iter::once((value.len(), b',')))
    {
        if quoted {
            // Inside a quoted string: `\"` is a quote, not its end.
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => quoted = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => quoted = true,
            b';' | b',' => {
                let pair = value[start..i].trim_ascii();
                element |= !pair.is_empty();
                if let Some((k, v)) = pair.split_once('=')
                    && k.trim_ascii().eq_ignore_ascii_case(key)
                {
                    let v = v.trim_ascii();
                    let v = v
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or(v);
                    return Some(v).filter(|v| !v.is_empty());
                }
                if b == b',' && element {
                    // The first element had no such parameter.
                    return None;
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    None
}

/// The address of a `Forwarded` `for=` node (`192.0.2.43:47011`, `[2001:db8::1]:4711`):
/// the IP without brackets or port. `None` for `unknown` and an obfuscated `_name`, which
/// name no address.
fn forwarded_node(node: &str) -> Option<&str> {
    let host = match node.strip_prefix('[') {
        Some(rest) => rest.split_once(']')?.0,
        None => node.split_once(':').map_or(node, |(h, _)| h),
    };
    (!host.is_empty() && !host.starts_with('_') && !host.eq_ignore_ascii_case("unknown"))
        .then_some(host)
}

impl<'a> RequestInfo<'a> {
    /// What `req` shows the span attributes.
    pub(crate) fn of<B>(req: &'a http::Request<B>) -> Self {
        RequestInfo {
            method: req.method(),
            uri: req.uri(),
            headers: Seen::of(req.headers()),
            version: req.version(),
            route: None,
            server: None,
            peer: None,
        }
    }

    /// Whether the request is a gRPC call (see [`semconv::is_grpc`]).
    pub(crate) fn is_grpc(&self) -> bool {
        semconv::is_grpc_content_type(self.headers.content_type)
    }

    /// With the route template `route` (server side).
    pub(crate) fn route(mut self, route: Option<&'a str>) -> Self {
        self.route = route;
        self
    }

    /// With the server address the client layer was told.
    pub(crate) fn server(mut self, server: Option<&'a ServerAddress>) -> Self {
        self.server = server;
        self
    }

    /// With the connection's peer (server side).
    pub(crate) fn peer(mut self, peer: Option<SocketAddr>) -> Self {
        self.peer = peer;
        self
    }

    /// `(name, attributes)` by the HTTP / RPC semantic conventions (see [`crate::semconv`]).
    fn describe(&self, kind: SpanKind) -> (Cow<'static, str>, Vec<KeyValue>) {
        let path = self.uri.path();
        let mut attrs = Vec::with_capacity(12);
        let server = matches!(kind, SpanKind::Server);
        if self.is_grpc() {
            let full = path.strip_prefix('/').unwrap_or(path);
            let (service, method) = full.split_once('/').unwrap_or((full, ""));
            attrs.push(KeyValue::new(semconv::RPC_SYSTEM, "grpc"));
            attrs.push(KeyValue::new(semconv::RPC_SERVICE, repeated(service)));
            attrs.push(KeyValue::new(semconv::RPC_METHOD, repeated(method)));
            self.server_attributes(server, &mut attrs);
            if server {
                self.client_attributes(&mut attrs);
            }
            let name =
                crate::intern::get(full).map_or_else(|| Cow::Owned(full.to_owned()), Cow::Borrowed);
            return (name, attrs);
        }
        let method = semconv::method_name(self.method);
        attrs.push(KeyValue::new(
            semconv::HTTP_REQUEST_METHOD,
            method.unwrap_or("_OTHER"),
        ));
        if method.is_none() {
            attrs.push(KeyValue::new(
                semconv::HTTP_REQUEST_METHOD_ORIGINAL,
                self.method.as_str().to_owned(),
            ));
        }
        // The client's is the response's (see `OtelSpan::end`).
        if let Some(v) = protocol_version(self.version).filter(|_| server) {
            attrs.push(KeyValue::new(semconv::NETWORK_PROTOCOL_VERSION, v));
        }
        // `{method}` is `HTTP` for a method the conventions do not know.
        let method = method.unwrap_or("HTTP");
        if server {
            // The path is the route's own for a route without parameters, so as few values.
            let path = if self.route == Some(path) {
                repeated(path)
            } else {
                Value::from(path.to_owned())
            };
            attrs.push(KeyValue::new(semconv::URL_PATH, path));
            if let Some(q) = self.uri.query() {
                attrs.push(KeyValue::new(
                    semconv::URL_QUERY,
                    semconv::redact_query(q).into_owned(),
                ));
            }
            attrs.push(KeyValue::new(semconv::URL_SCHEME, self.scheme()));
            self.server_attributes(true, &mut attrs);
            self.client_attributes(&mut attrs);
            if let Some(ua) = Seen::text(self.headers.user_agent) {
                attrs.push(KeyValue::new(semconv::USER_AGENT_ORIGINAL, repeated(ua)));
            }
            if let Some(route) = self.route {
                attrs.push(KeyValue::new(semconv::HTTP_ROUTE, repeated(route)));
                let name = crate::intern::joined(method, route).map_or_else(
                    || {
                        let mut name = String::with_capacity(method.len() + 1 + route.len());
                        name.push_str(method);
                        name.push(' ');
                        name.push_str(route);
                        Cow::Owned(name)
                    },
                    Cow::Borrowed,
                );
                return (name, attrs);
            }
        } else {
            self.server_attributes(false, &mut attrs);
            if let Some(full) = self.url_full() {
                attrs.push(KeyValue::new(semconv::URL_FULL, full));
            }
        }
        (Cow::Borrowed(method), attrs)
    }

    /// `url.scheme` on the server side: the original request's as a proxy tells it
    /// (`Forwarded` `proto=`, else the first of `X-Forwarded-Proto`), else the request's
    /// (HTTP/2 `:scheme`), else `http`, as the conventions ask ("the scheme of the original
    /// client request, if known").
    fn scheme(&self) -> &'static str {
        let proto = match self.headers.forwarded("proto") {
            Some(p) => Some(p),
            None => Seen::text(self.headers.forwarded_proto).map(first_listed),
        };
        match proto.map(str::as_bytes) {
            Some(p) if p.eq_ignore_ascii_case(b"https") => return "https",
            Some(p) if p.eq_ignore_ascii_case(b"http") => return "http",
            _ => {}
        }
        match self.uri.scheme_str() {
            Some("https") => "https",
            _ => "http",
        }
    }

    /// `server.address` / `server.port`. Server side: the original host a proxy names
    /// (`Forwarded` `host=`, else `X-Forwarded-Host`), else `:authority`, else `Host`. Client side: the request's URI,
    /// else the address the layer was told, else `Host`, with the scheme's default port.
    fn server_attributes(&self, server: bool, attrs: &mut Vec<KeyValue>) {
        let header = |value: Option<&'a HeaderValue>| {
            Seen::text(value).and_then(|v| split_host_port(first_listed(v)))
        };
        let from_uri = self
            .uri
            .authority()
            .and_then(|a| split_host_port(a.as_str()));
        let default_port = if self.uri.scheme_str() == Some("https") {
            443
        } else {
            80
        };
        let found = if server {
            self.headers
                .forwarded("host")
                .and_then(split_host_port)
                .or_else(|| header(self.headers.forwarded_host))
                .or(from_uri)
                .or_else(|| header(self.headers.host))
                .map(|(h, p)| (repeated(h), p))
        } else {
            from_uri
                .map(|(h, p)| (repeated(h), p.or(Some(default_port))))
                .or_else(|| self.server.map(|s| (Value::from(s.host.clone()), s.port)))
                .or_else(|| {
                    header(self.headers.host).map(|(h, p)| (repeated(h), p.or(Some(default_port))))
                })
        };
        if let Some((host, port)) = found {
            attrs.push(KeyValue::new(semconv::SERVER_ADDRESS, host));
            if let Some(port) = port {
                attrs.push(KeyValue::new(semconv::SERVER_PORT, i64::from(port)));
            }
        }
    }

    /// `client.address` (the original client a proxy names: `Forwarded` `for=`, else
    /// `X-Forwarded-For`; else the peer) and `network.peer.*` (server side).
    fn client_attributes(&self, attrs: &mut Vec<KeyValue>) {
        let forwarded = self
            .headers
            .forwarded("for")
            .and_then(forwarded_node)
            .or_else(|| {
                Seen::text(self.headers.forwarded_for)
                    .map(first_listed)
                    .filter(|v| !v.is_empty())
            });
        match (forwarded, self.peer) {
            (Some(client), _) => {
                attrs.push(KeyValue::new(semconv::CLIENT_ADDRESS, client.to_owned()));
            }
            (None, Some(peer)) => {
                attrs.push(KeyValue::new(
                    semconv::CLIENT_ADDRESS,
                    peer.ip().to_string(),
                ));
            }
            (None, None) => {}
        }
        if let Some(peer) = self.peer {
            attrs.push(KeyValue::new(
                semconv::NETWORK_PEER_ADDRESS,
                peer.ip().to_string(),
            ));
            attrs.push(KeyValue::new(
                semconv::NETWORK_PEER_PORT,
                i64::from(peer.port()),
            ));
        }
    }

    /// `url.full` on the client side, user and password and the values of
    /// [`REDACTED_QUERY_KEYS`](semconv::REDACTED_QUERY_KEYS) redacted: the request's URI when absolute,
    /// else rebuilt from the server address the layer was told.
    fn url_full(&self) -> Option<String> {
        let pq = self.uri.path_and_query().map_or("/", |p| p.as_str());
        // A query with a value to hide (rare): the path and the redacted query.
        let redacted = match self.uri.query().map(semconv::redact_query) {
            Some(Cow::Owned(query)) => {
                let path = self.uri.path();
                Some(format!(
                    "{}?{query}",
                    if path.is_empty() { "/" } else { path }
                ))
            }
            _ => None,
        };
        let pq = redacted.as_deref().unwrap_or(pq);
        if let (Some(scheme), Some(authority)) = (self.uri.scheme_str(), self.uri.authority()) {
            let authority = authority.as_str();
            return Some(match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://REDACTED:REDACTED@{host}{pq}"),
                None => format!("{scheme}://{authority}{pq}"),
            });
        }
        let server = self.server?;
        let host = &server.host;
        let bracketed = host.contains(':');
        let (open, close) = if bracketed { ("[", "]") } else { ("", "") };
        Some(match server.port {
            Some(port) => format!("http://{open}{host}{close}:{port}{pq}"),
            None => format!("http://{open}{host}{close}{pq}"),
        })
    }
}

/// An attribute value that repeats from request to request (a host, a user agent, a route):
/// the process's kept copy (see [`crate::intern`]), else an owned one.
fn repeated(s: &str) -> Value {
    crate::intern::get(s).map_or_else(|| Value::from(s.to_owned()), Value::from)
}

/// `network.protocol.version` of an HTTP version.
fn protocol_version(version: Version) -> Option<&'static str> {
    Some(match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_11 => "1.1",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => return None,
    })
}

/// `host[:port]`, `[v6][:port]`: the host (IPv6 without brackets) and the port, if any.
/// `None` for an empty host or a port that is not a number.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    // Credentials never name the host.
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, rest) = rest.split_once(']')?;
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    Some((host, port))
}

/// The first non-empty of a list header's comma-separated values, without surrounding blanks
/// (`""` when there is none).
#[inline]
fn first_listed(value: &str) -> &str {
    // The usual value: its first element, found with one byte search.
    let first = match value.as_bytes().iter().position(|&b| b == b',') {
        None => return value.trim_ascii(),
        Some(end) => value[..end].trim_ascii(),
    };
    if first.is_empty() {
        after_empty(value)
    } else {
        first
    }
}

/// [`first_listed`] of a list that starts with an empty element (`, 203.0.113.9`): skipped, as
/// RFC 7230 asks of list elements.
#[cold]
fn after_empty(value: &str) -> &str {
    value
        .split(',')
        .map(str::trim_ascii)
        .find(|v| !v.is_empty())
        .unwrap_or("")
}

fn to_remote(cx: &SpanContext, tracestate: &TraceState) -> Option<ot::SpanContext> {
    cx.to_otel(tracestate)
}

/// Start a span under `parent` with the SDK handing out `ids` (when [`PresetIdGenerator`] is
/// installed): `parent` with the span current.
fn start(
    tracer: &dyn StartSpan,
    builder: ot::SpanBuilder,
    parent: &Context,
    ids: Option<(TraceId, SpanId)>,
) -> Context {
    if let Some((t, s)) = ids {
        // The SDK asks for a trace id only for a span without a (valid) parent.
        if !parent.span().span_context().is_valid() {
            PRESET_TRACE.with(|p| p.set(Some(t.to_u128())));
        }
        PRESET_SPAN.with(|p| p.set(Some(s.to_u64())));
    }
    let _clear = PresetGuard;
    tracer.start_in(builder, parent)
}

/// Whether a started span is one some tracer reports: recording and sampled. A no-op tracer
/// (no provider installed) hands back a non-recording echo of the parent; a sampler that
/// drops gives a non-recording span; a provider shut down gives an invalid one.
pub(crate) fn is_reported(span: &opentelemetry::trace::SpanRef<'_>) -> bool {
    span.is_recording() && span.span_context().is_sampled() && span.span_context().is_valid()
}

/// The OpenTelemetry context of `cx`'s span as a remote parent, a deferred decision read as
/// `deferred`: what spans started under this request join when this hop reports none. For a
/// caller that sent only its sampling decision (`b3: 0`, `x-b3-sampled: 1` alone), a context
/// that carries just the decision (see [`decision_only`]).
pub(crate) fn remote_parent(cx: &RequestContext, deferred: Sampling) -> Option<Context> {
    // No span at all: this hop's decision for a trace that starts here, if it made one.
    let Some(span) = cx.span() else {
        return decision_only(cx.sampling());
    };
    let span = match span.sampling() {
        Sampling::Deferred => span.with_sampling(deferred),
        _ => span,
    };
    if span.is_sampling_only() {
        return decision_only(span.sampling());
    }
    to_remote(&span, cx.tracestate()).map(|sc| Context::new().with_remote_span_context(sc))
}

/// A caller's sampling decision without a span to carry it (a caller that sent only the
/// decision, or a shared span without a parent), as an OpenTelemetry context (see
/// [`b3_propagation::otel::decision_only`]). `None` when there is no decision.
pub(crate) fn decision_only(sampling: Sampling) -> Option<Context> {
    b3_propagation::otel::decision_only(sampling)
        .map(|sc| Context::new().with_remote_span_context(sc))
}

/// Our span context for a reported OpenTelemetry span, in the request's terms: the trace
/// id at the width the request's trace travels at, debug kept, sampled.
pub(crate) fn reported(
    started: &ot::SpanContext,
    like: Option<&SpanContext>,
) -> Option<SpanContext> {
    let theirs = SpanContext::from_otel(started)?;
    let trace_id = match (like.and_then(SpanContext::trace_id), theirs.trace_id()) {
        (Some(a), Some(b)) if a.to_u128() == b.to_u128() => a,
        (_, b) => b?,
    };
    let sampling = match like.map(SpanContext::sampling) {
        Some(Sampling::Debug) => Sampling::Debug,
        _ => theirs.sampling(),
    };
    // The request's flags when the span continues its trace; else the SDK's own (a root the
    // SDK started: random-trace-id only if its id generator said so, which the default one
    // does not, so nothing is claimed of ids a custom generator made).
    let flags = like.map_or_else(|| theirs.trace_flags(), SpanContext::trace_flags);
    Some(
        SpanContext::new(trace_id, theirs.span_id()?)
            .with_sampling(sampling)
            .with_trace_flags(flags),
    )
}

/// The innermost span current on this thread that a tracer reports (the application's own
/// span, made current by it or by `tracing-opentelemetry`, or a server layer's span), as an
/// OpenTelemetry context and in the request's terms.
pub(crate) fn current_reported(like: Option<&SpanContext>) -> Option<(Context, SpanContext)> {
    let found = Context::map_current(|cx| {
        let span = cx.span();
        if !is_reported(&span) {
            return None;
        }
        let sc = span.span_context();
        // Another trace than the request's: not this request's span.
        if let Some(t) = like.and_then(SpanContext::trace_id)
            && t.to_u128() != u128::from_be_bytes(sc.trace_id().to_bytes())
        {
            return None;
        }
        Some(cx.clone())
    })?;
    let sc = reported(found.span().span_context(), like)?;
    Some((found, sc))
}

/// What is known of a call when its span ends (see [`OtelSpan::end`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Outcome {
    /// The response's status, when a response came.
    pub(crate) status: Option<StatusCode>,
    /// The response's HTTP version.
    pub(crate) version: Option<Version>,
    /// The gRPC status of a gRPC call (always set for one).
    pub(crate) grpc: Option<u8>,
    /// Why it failed without a status that says so: a low-cardinality `error.type` (the
    /// error's type name).
    pub(crate) error: Option<&'static str>,
}

/// An OpenTelemetry span in flight, ended with the response.
pub(crate) struct OtelSpan {
    cx: Context,
    kind: SpanKind,
}

impl OtelSpan {
    /// The context to make current while the request is handled.
    pub(crate) fn context(&self) -> &Context {
        &self.cx
    }

    /// End the span with what is known of the call: the response status (HTTP) or the gRPC
    /// status, and the span status by the conventions' server / client rules.
    pub(crate) fn end(self, outcome: &Outcome) {
        let span = self.cx.span();
        let client = self.kind == SpanKind::Client;
        let error = if let Some(code) = outcome.grpc {
            span.set_attribute(KeyValue::new(
                semconv::RPC_GRPC_STATUS_CODE,
                i64::from(code),
            ));
            let failed = if client {
                code != 0
            } else {
                matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
            };
            failed || outcome.error.is_some()
        } else {
            if let Some(status) = outcome.status {
                span.set_attribute(KeyValue::new(
                    semconv::HTTP_RESPONSE_STATUS_CODE,
                    i64::from(status.as_u16()),
                ));
            }
            if client && let Some(v) = outcome.version.and_then(protocol_version) {
                span.set_attribute(KeyValue::new(semconv::NETWORK_PROTOCOL_VERSION, v));
            }
            let error_type = match (outcome.error, outcome.status) {
                (Some(e), _) => Some(Cow::Borrowed(e)),
                (None, Some(s)) if s.is_server_error() || (client && s.is_client_error()) => {
                    Some(Cow::Owned(s.as_str().to_owned()))
                }
                _ => None,
            };
            let failed = error_type.is_some();
            if let Some(t) = error_type {
                span.set_attribute(KeyValue::new(semconv::ERROR_TYPE, t));
            }
            failed
        };
        if error {
            // The attributes say why; the conventions want no description then.
            span.set_status(Status::error(""));
        }
        span.end();
    }
}

impl fmt::Debug for OtelSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtelSpan")
            .field("span_context", self.cx.span().span_context())
            .field("kind", &self.kind)
            .finish()
    }
}

/// What the server side of a hop started.
pub(crate) struct ServerSpan {
    /// The span to end with the response, when one was started (reported or not).
    pub(crate) span: Option<OtelSpan>,
    /// The context to make current while the request is handled: the server span's, or the
    /// caller's span as a remote parent.
    pub(crate) cx: Option<Context>,
    /// This hop's span, when a tracer reports it.
    pub(crate) local: Option<SpanContext>,
    /// A sampler's decision, when one ran: the decision for a caller's context that arrived
    /// deferred, or for a root (nothing received), whose calls then carry it alone (see
    /// `RequestContext::decide_sampling`).
    pub(crate) decided: Option<Sampling>,
}

/// Start the server span for the request `cx`: a child of the caller's span (or, in shared
/// mode, the caller's span itself, through [`PresetIdGenerator`]), or a root.
///
/// The span counts as this hop's only when it is reported (see [`is_reported`]): otherwise
/// the hop is transparent, and what it sends names the caller's span. A caller's context
/// whose sampling is deferred is offered to the sampler as `deferred` decided it
/// (OpenTelemetry samplers know only sampled or not). `preset_works` remembers, per layer,
/// whether the tracer's provider honours preset ids (0 unknown, 1 yes, 2 no).
pub(crate) fn server_span(
    tracer: &SpanTracer,
    req: &RequestInfo<'_>,
    cx: &RequestContext,
    propagator: &b3_propagation::Propagator,
    deferred: Sampling,
    preset_works: &AtomicU8,
) -> ServerSpan {
    let remote = cx.remote().map(|r| match r.sampling() {
        Sampling::Deferred => r.with_sampling(deferred),
        _ => *r,
    });
    let remote = remote.as_ref();
    let transparent = || ServerSpan {
        span: None,
        cx: remote_parent(cx, deferred),
        local: None,
        decided: None,
    };
    let shared = propagator.span_semantics() == b3_propagation::SpanSemantics::Shared;
    // Without [`PresetIdGenerator`] the SDK picks its own span id, so the span cannot be the
    // caller's: fall back to child semantics (the trace still joins). Until a span has shown
    // whether presets work, a span is shared only when a `PresetIdGenerator` exists at all
    // (else it would be a sibling of the caller's span), and a caller's span without a parent
    // is not shared either: without presets its shared span would be a root with the SDK's
    // trace id, a trace of its own.
    let shared = shared
        && match preset_works.load(Ordering::Relaxed) {
            1 => true,
            2 => false,
            _ => {
                PRESETS_MADE.load(Ordering::Relaxed)
                    && remote.is_some_and(|r| r.parent_span_id().is_some())
            }
        };
    let local = match remote {
        Some(r) if !r.is_sampling_only() && shared => *r,
        Some(r) if !r.is_sampling_only() => {
            r.child_with_id(propagator.id_generator().new_span_id())
        }
        _ => propagator.server_span(remote),
    };
    let started = tracer.with(|t| {
        let (name, attrs) = req.describe(SpanKind::Server);
        let builder = ot::SpanBuilder::from_name(name)
            .with_kind(SpanKind::Server)
            .with_attributes(attrs);
        // Shared: the span *is* the caller's span, so its parent is the caller's parent.
        let parent_sc = match remote {
            Some(r) if shared => r
                .parent_span_id()
                .and_then(|p| to_remote(&r.with_span_id(p).with_parent(None), cx.tracestate())),
            Some(r) => to_remote(r, cx.tracestate()),
            None => None,
        };
        // No caller's span to name (it sent only its decision, or its shared span has no
        // parent): the caller's decision alone, so the sampler still follows it.
        let parent = match parent_sc {
            Some(sc) => Context::new().with_remote_span_context(sc),
            None => remote
                .and_then(|r| decision_only(r.sampling()))
                .unwrap_or_default(),
        };
        let ids = local.trace_id().zip(local.span_id());
        let server = start(t, builder, &parent, ids);
        (parent, server)
    });
    let Some((parent, server)) = started else {
        return transparent();
    };
    let started = server.span().span_context().clone();
    // A no-op tracer echoes the parent: nothing was started or decided here.
    let noop = !started.is_valid() || started.span_id() == parent.span().span_context().span_id();
    if noop {
        return transparent();
    }
    if let Some((_, s)) = local.trace_id().zip(local.span_id()) {
        let works = started.span_id() == ot::SpanId::from(s.to_u64());
        preset_works.store(if works { 1 } else { 2 }, Ordering::Relaxed);
    }
    let server = OtelSpan {
        cx: server,
        kind: SpanKind::Server,
    };
    if !is_reported(&server.cx.span()) {
        // A sampler dropped it: transparent, with the sampler's decision for a deferred caller
        // (a caller's own decision passes untouched). The dropped span stays current, so the
        // application's spans follow the decision, with what the caller sent beside it, so
        // that `OtelPropagator` sends that on instead of naming a span nobody reports (a root
        // dropped here: its decision alone).
        // A deferred caller's decision is this sampler's, as the request's trace records it.
        let received = match cx.remote() {
            Some(r) if r.sampling() == Sampling::Deferred => r.with_sampling(Sampling::Deny),
            Some(r) => *r,
            None => SpanContext::sampling_only(Sampling::Deny),
        };
        let cx = Some(b3_propagation::otel::with_received(&server.cx, received));
        return ServerSpan {
            span: Some(server),
            cx,
            local: None,
            decided: Some(Sampling::Deny),
        };
    }
    let parent_id = if shared {
        local.parent_span_id()
    } else {
        remote
            .filter(|r| !r.is_sampling_only())
            .and_then(SpanContext::span_id)
    };
    let like = remote.filter(|r| !r.is_sampling_only()).unwrap_or(&local);
    let ours = reported(&started, Some(like)).map(|s| s.with_parent(parent_id));
    ServerSpan {
        cx: Some(server.cx.clone()),
        span: Some(server),
        local: ours,
        decided: Some(Sampling::Accept),
    }
}

/// Start a client span under `parent`. `Some` only when a tracer reports it: the span to end
/// with the response, and its ids in the request's terms (`parent_id` as its parent).
pub(crate) fn client_span(
    tracer: &SpanTracer,
    req: &RequestInfo<'_>,
    parent: &Context,
    parent_id: Option<SpanId>,
    like: Option<&SpanContext>,
) -> Option<(OtelSpan, SpanContext)> {
    let cx = tracer.with(|t| {
        let (name, attrs) = req.describe(SpanKind::Client);
        let builder = ot::SpanBuilder::from_name(name)
            .with_kind(SpanKind::Client)
            .with_attributes(attrs);
        start(t, builder, parent, None)
    })?;
    if !is_reported(&cx.span()) {
        // Never exported: let it go without a trace.
        return None;
    }
    let ours = reported(cx.span().span_context(), like)?.with_parent(parent_id);
    Some((
        OtelSpan {
            cx,
            kind: SpanKind::Client,
        },
        ours,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_ids_are_used_once() {
        let g = PresetIdGenerator::default();
        PRESET_TRACE.with(|p| p.set(Some(7)));
        PRESET_SPAN.with(|p| p.set(Some(9)));
        assert_eq!(g.new_span_id(), ot::SpanId::from(9));
        assert_eq!(g.new_trace_id(), ot::TraceId::from(7));
        // Handed out: a span started next (say, by a span processor) gets its own.
        assert_ne!(g.new_span_id(), ot::SpanId::from(9));
        assert_ne!(g.new_trace_id(), ot::TraceId::from(7));
        {
            PRESET_SPAN.with(|p| p.set(Some(9)));
            let _clear = PresetGuard;
        }
        assert_ne!(g.new_span_id(), ot::SpanId::from(9), "cleared by the guard");
    }

    /// The value of attribute `key`, as text.
    fn attribute(attrs: &[KeyValue], key: &str) -> Option<String> {
        attrs
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    }

    /// The seven values, as the one pass found them.
    fn seen_values<'a>(seen: &Seen<'a>) -> [Option<&'a [u8]>; 7] {
        [
            seen.content_type,
            seen.host,
            seen.user_agent,
            seen.forwarded_for,
            seen.forwarded_host,
            seen.forwarded_proto,
            seen.forwarded,
        ]
        .map(|v| v.map(HeaderValue::as_bytes))
    }

    /// The seven values, as `HeaderMap::get` finds them.
    fn lookups(headers: &HeaderMap) -> [Option<&[u8]>; 7] {
        [
            headers.get(http::header::CONTENT_TYPE),
            headers.get(http::header::HOST),
            headers.get(http::header::USER_AGENT),
            headers.get(&X_FORWARDED_FOR),
            headers.get(&X_FORWARDED_HOST),
            headers.get(&X_FORWARDED_PROTO),
            headers.get(http::header::FORWARDED),
        ]
        .map(|v| v.map(HeaderValue::as_bytes))
    }

    /// The names the pass looks for, names of the same lengths, and (from index 14 on)
    /// fillers, enough of them to push a map past [`SCAN_LINES`].
    fn pool_name(i: usize) -> HeaderName {
        const NAMES: [&str; 14] = [
            "forwarded",
            "forwardex",
            "host",
            "user-agent",
            "content-type",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
            "hots",
            "user-agenx",
            "content-typo",
            "x-forwarded-fox",
            "x-forwarded-hose",
            "x-forwarded-prots",
        ];
        match NAMES.get(i) {
            Some(n) => HeaderName::from_bytes(n.as_bytes()).expect("valid name"),
            None => HeaderName::try_from(format!("x-filler-{i}")).expect("valid name"),
        }
    }

    proptest::proptest! {
        /// Any map, repeated names and large maps included: the one pass (or its lookup
        /// fallback) finds exactly what `HeaderMap::get` finds.
        #[test]
        fn one_pass_agrees_with_lookups(
            entries in proptest::collection::vec((0usize..54, "[ -~]{0,12}"), 0..64)
        ) {
            let mut headers = HeaderMap::new();
            for (i, v) in entries {
                headers.append(pool_name(i), HeaderValue::from_str(&v).expect("visible ASCII"));
            }
            proptest::prop_assert_eq!(seen_values(&Seen::of(&headers)), lookups(&headers));
        }

        /// `first_listed` is the first element that is not empty once trimmed, for any header
        /// value's text (commas and blanks made frequent).
        #[test]
        fn first_listed_is_split_and_trim(v in "[a-z0-9@:,\\[\\] \t+.]{0,24}") {
            let first = v.split(',').map(str::trim).find(|e| !e.is_empty()).unwrap_or("");
            proptest::prop_assert_eq!(first_listed(&v), first);
        }
    }

    #[test]
    fn forwarded_parameters_of_the_first_element() {
        let v =
            r#"For="[2001:db8:cafe::17]:4711";proto=https;host=shop.example:8443, for=10.0.0.1"#;
        assert_eq!(forwarded_param(v, "for"), Some("[2001:db8:cafe::17]:4711"));
        assert_eq!(forwarded_param(v, "PROTO"), Some("https"));
        assert_eq!(forwarded_param(v, "host"), Some("shop.example:8443"));
        assert_eq!(forwarded_param(v, "by"), None);
        // Only the first element counts: its proxy is the one nearest the client.
        assert_eq!(
            forwarded_param("for=192.0.2.60, proto=https", "proto"),
            None
        );
        // A quoted `,` or `;` does not split.
        assert_eq!(
            forwarded_param(r#"host="a,b;c";for=1.2.3.4"#, "for"),
            Some("1.2.3.4")
        );
        // A quote escaped inside a quoted string does not end it.
        assert_eq!(
            forwarded_param(r#"ext="x\"y;z";for=192.0.2.60"#, "for"),
            Some("192.0.2.60")
        );
        assert_eq!(
            forwarded_param(r#"ext="x\\";for=192.0.2.60"#, "for"),
            Some("192.0.2.60")
        );
        // Empty elements are skipped; the first element with something in it counts.
        assert_eq!(
            forwarded_param(" , ,for=192.0.2.60, for=10.0.0.1", "for"),
            Some("192.0.2.60")
        );
        assert_eq!(forwarded_param(";, proto=https", "proto"), Some("https"));
        assert_eq!(forwarded_param("for=", "for"), None);
        assert_eq!(forwarded_param("nonsense", "for"), None);
        assert_eq!(forwarded_param("", "for"), None);

        assert_eq!(forwarded_node("192.0.2.43:47011"), Some("192.0.2.43"));
        assert_eq!(forwarded_node("192.0.2.43"), Some("192.0.2.43"));
        assert_eq!(
            forwarded_node("[2001:db8:cafe::17]:4711"),
            Some("2001:db8:cafe::17")
        );
        assert_eq!(
            forwarded_node("[2001:db8:cafe::17]"),
            Some("2001:db8:cafe::17")
        );
        for hidden in ["unknown", "_hidden", "_SEVKISEK", "[", ""] {
            assert_eq!(forwarded_node(hidden), None, "{hidden}");
        }
    }

    #[test]
    fn host_port_split() {
        assert_eq!(split_host_port("item:8080"), Some(("item", Some(8080))));
        assert_eq!(split_host_port("u:p@item:80"), Some(("item", Some(80))));
        assert_eq!(split_host_port("[::1]:443"), Some(("::1", Some(443))));
        assert_eq!(split_host_port("[::1]"), Some(("::1", None)));
        assert_eq!(split_host_port("item"), Some(("item", None)));
        assert_eq!(split_host_port(":80"), None);
        assert_eq!(split_host_port("item:http"), None);
        assert_eq!(split_host_port("[::1]x"), None);
        assert_eq!(
            first_listed(" shop.example:8443 , proxy"),
            "shop.example:8443"
        );
        assert_eq!(first_listed(" , ,203.0.113.9, 10.0.0.1"), "203.0.113.9");
        assert_eq!(first_listed(" , "), "");
    }

    #[test]
    fn one_pass_finds_what_lookups_find() {
        let mut headers = HeaderMap::new();
        headers.insert("accept", HeaderValue::from_static("*/*"));
        headers.append("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        headers.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        headers.insert(
            "x-forwarded-host",
            HeaderValue::from_static("shop.example:8443"),
        );
        headers.insert("x-forwarded-proto", HeaderValue::from_static("HTTPS"));
        headers.insert("host", HeaderValue::from_static("frontend:8080"));
        headers.insert("user-agent", HeaderValue::from_static("curl/8.5.0"));
        // Same lengths as the names looked for, other names.
        headers.insert("x-forwarded-fox", HeaderValue::from_static("no"));
        headers.insert("content-typo", HeaderValue::from_static("no"));
        headers.insert("hots", HeaderValue::from_static("no"));
        assert_eq!(seen_values(&Seen::of(&headers)), lookups(&headers));
        assert_eq!(Seen::of(&headers).forwarded_for.unwrap(), "203.0.113.9");
        assert!(Seen::of(&headers).content_type.is_none());

        // Many lines of one name are looked up too (the pass stays short), first value first.
        let mut repeated = HeaderMap::new();
        for i in 0..=SCAN_LINES {
            repeated.append(
                "x-forwarded-for",
                HeaderValue::try_from(format!("10.0.0.{i}")).unwrap(),
            );
        }
        assert_eq!(repeated.keys_len(), 1);
        assert_eq!(seen_values(&Seen::of(&repeated)), lookups(&repeated));
        assert_eq!(Seen::of(&repeated).forwarded_for.unwrap(), "10.0.0.0");

        // A map with many names is looked up, with the same answers.
        for i in 0..=SCAN_LINES {
            headers.insert(
                HeaderName::try_from(format!("x-filler-{i}")).unwrap(),
                HeaderValue::from_static("1"),
            );
        }
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/grpc+proto"),
        );
        assert!(headers.len() > SCAN_LINES);
        assert_eq!(seen_values(&Seen::of(&headers)), lookups(&headers));

        // The attributes read from them: the proxy's host and scheme, the first client.
        let mut req = http::Request::new(());
        *req.headers_mut() = headers;
        let info = RequestInfo::of(&req);
        assert!(info.is_grpc());
        req.headers_mut().remove("content-type");
        let info = RequestInfo::of(&req);
        assert!(!info.is_grpc());
        let (_, attrs) = info.describe(SpanKind::Server);
        let attr = |k: &str| attribute(&attrs, k);
        assert_eq!(
            attr(semconv::SERVER_ADDRESS).as_deref(),
            Some("shop.example")
        );
        assert_eq!(attr(semconv::SERVER_PORT).as_deref(), Some("8443"));
        assert_eq!(attr(semconv::URL_SCHEME).as_deref(), Some("https"));
        assert_eq!(
            attr(semconv::CLIENT_ADDRESS).as_deref(),
            Some("203.0.113.9")
        );
        assert_eq!(
            attr(semconv::USER_AGENT_ORIGINAL).as_deref(),
            Some("curl/8.5.0")
        );

        // RFC 7239 `Forwarded` comes first, parameter by parameter; what it lacks or cannot
        // name (an obfuscated client) falls back to the `X-Forwarded-*` header.
        for (forwarded, client, host, port, scheme) in [
            (
                r#"for="[2001:db8::17]:4711";host=store.example;proto=http, for=10.0.0.2"#,
                "2001:db8::17",
                "store.example",
                None,
                "http",
            ),
            (
                "for=_hidden;proto=https",
                "203.0.113.9",
                "shop.example",
                Some("8443"),
                "https",
            ),
            (
                "by=10.0.0.1",
                "203.0.113.9",
                "shop.example",
                Some("8443"),
                "https",
            ),
        ] {
            req.headers_mut()
                .insert(http::header::FORWARDED, HeaderValue::from_static(forwarded));
            let (_, attrs) = RequestInfo::of(&req).describe(SpanKind::Server);
            let attr = |k: &str| attribute(&attrs, k);
            assert_eq!(
                attr(semconv::CLIENT_ADDRESS).as_deref(),
                Some(client),
                "{forwarded}"
            );
            assert_eq!(
                attr(semconv::SERVER_ADDRESS).as_deref(),
                Some(host),
                "{forwarded}"
            );
            assert_eq!(attr(semconv::SERVER_PORT).as_deref(), port, "{forwarded}");
            assert_eq!(
                attr(semconv::URL_SCHEME).as_deref(),
                Some(scheme),
                "{forwarded}"
            );
        }
    }

    /// `url.scheme` is the original client request's when a proxy tells it, before the
    /// scheme of the request as it reached this hop (h2c behind a TLS-terminating proxy).
    #[test]
    fn the_original_scheme_comes_before_the_hops() {
        let scheme = |uri: &'static str, headers: &[(&'static str, &'static str)]| {
            let mut req = http::Request::builder().uri(uri);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let req = req.body(()).unwrap();
            let (_, attrs) = RequestInfo::of(&req).describe(SpanKind::Server);
            attribute(&attrs, semconv::URL_SCHEME)
        };
        let h2c = "http://frontend:8080/orders";
        assert_eq!(scheme(h2c, &[]).as_deref(), Some("http"));
        assert_eq!(
            scheme("https://frontend/orders", &[]).as_deref(),
            Some("https")
        );
        assert_eq!(scheme("/orders", &[]).as_deref(), Some("http"));
        for headers in [
            &[("x-forwarded-proto", "https")][..],
            &[("x-forwarded-proto", "HTTPS, http")],
            &[("x-forwarded-proto", " , https")],
            &[("forwarded", "for=192.0.2.60;proto=https")],
            &[("forwarded", "proto=https"), ("x-forwarded-proto", "http")],
        ] {
            assert_eq!(
                scheme(h2c, headers).as_deref(),
                Some("https"),
                "{headers:?}"
            );
        }
        // What names no scheme is ignored.
        assert_eq!(
            scheme("https://frontend/", &[("x-forwarded-proto", "wss")]).as_deref(),
            Some("https")
        );
        assert_eq!(
            scheme("https://frontend/", &[("x-forwarded-proto", "http")]).as_deref(),
            Some("http")
        );
    }
}
