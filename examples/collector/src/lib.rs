//! An embedded trace collector: accepts what Jaeger accepts on one machine, so
//! the demo needs no external tracing server.
//!
//! # Ingestion
//!
//! - `POST /v1/traces`: OTLP/HTTP, `application/x-protobuf` or
//!   `application/json` (OTLP/JSON, hex trace and span ids). Answers 200 with
//!   an empty `ExportTraceServiceResponse` in the request's encoding.
//! - `POST /api/v2/spans`: a Zipkin v2 JSON array, as Envoy's Zipkin tracer
//!   sends with `HTTP_JSON` (chunked bodies accepted). Answers 202.
//!
//! Bodies may be gzip-compressed (`content-encoding: gzip`, which OTLP/HTTP requires a
//! receiver to take); another `content-encoding`, or a content type other than those
//! above, gets 415. Undecodable payloads and malformed ids get 400; nothing from such a
//! request is stored. The reason is short plain text on the Zipkin route and, as OTLP/HTTP
//! requires, a `google.rpc.Status` ([`RpcStatus`]: protobuf, or JSON for a JSON request) on
//! `/v1/traces`. Bodies over [`CollectorConfig::max_body_bytes`] get 413, chunked or not
//! (a gzip body also once decompressed), and so does an OTLP body whose spans would take
//! more than [`DECODED_PER_BODY_BYTE`] times its size once decoded (bounded from its bytes
//! before decoding: an empty span is two bytes of protobuf and a struct of a few hundred) or
//! converted (each span repeats its resource's service name).
//!
//! Everything is converted to one model, [`ZipkinSpan`] (see [`from_otlp`]
//! for the OTLP mapping). The body parsers behind these routes,
//! [`parse_otlp_protobuf`], [`parse_otlp_json`] and [`parse_zipkin_json`],
//! are public, so a payload can be checked without a server. Trace ids are stored as 32 lower-case hex
//! characters, 64-bit ids left-padded with zeros, so an Envoy 64-bit trace id
//! and the 128-bit id an OpenTelemetry SDK derives from it join one trace.
//!
//! # Memory bound
//!
//! At most [`CollectorConfig::max_spans`] spans, and about
//! [`CollectorConfig::max_bytes`] of them, are kept (a sender's span with huge attributes
//! counts for what it holds). When a new span would exceed either, the oldest traces
//! (first-seen order) are dropped whole, never the trace the new span belongs to; a single
//! trace larger than a bound loses its own oldest spans. New spans are never refused: the latest traces
//! are the interesting ones in a live demo. Dropped spans are counted in
//! [`Collector::dropped_spans`]. A span identical to one its trace holds (a sender's retry)
//! is stored once, as Zipkin's storage does.
//!
//! # Query API (Zipkin v2 compatible)
//!
//! - `GET /api/v2/services`: service names, sorted;
//! - `GET /api/v2/spans?serviceName=`: span names of a service, sorted;
//! - `GET /api/v2/remoteServices?serviceName=`: remote service names, sorted;
//! - `GET /api/v2/traces`: traces (arrays of spans), most recent first;
//!   parameters `serviceName`, `spanName`, `remoteServiceName`,
//!   `annotationQuery` (`key=` means `key`), `minDuration` (above 0), `maxDuration` (only
//!   with `minDuration`, and not below it), `limit` (default 10), and `endTs`/`lookback`
//!   (ms, each above 0; a time
//!   window, on the trace's root timestamp, is applied only when one of them is
//!   given). As in Zipkin, each criterion is met by some span of `serviceName`,
//!   not necessarily the same span;
//! - `GET /api/v2/trace/{traceId}`: one trace by 16- or 32-hex id, 404 if
//!   unknown;
//! - `GET /api/v2/traceMany?traceIds=a,b`: those of the traces held, in the order asked;
//! - `GET /api/v2/dependencies?endTs=&lookback=`: the service graph of the traces in the
//!   window (calls and failed calls between services, read from client and server spans as
//!   Zipkin's dependency linker reads them);
//! - `GET /api/v2/autocompleteKeys`, `GET /api/v2/autocompleteValues?key=`: empty (no tag
//!   is configured for autocompletion), as the Zipkin UI expects them;
//! - `GET /health`: 200 `ok`.

#![forbid(unsafe_code)]

mod bound;
mod dependencies;
mod http;
mod ids;
mod model;
mod otlp;
mod payload;
mod query;
mod store;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

pub use http::RpcStatus;
pub use ids::{IngestError, normalize_trace_id};
pub use model::{Annotation, Endpoint, SpanKind, ZipkinSpan, zipkin_view};
pub use otlp::from_otlp;
pub use payload::{
    DECODED_PER_BODY_BYTE, DECODED_SLACK, PayloadError, parse_otlp_json, parse_otlp_protobuf,
    parse_zipkin_json,
};

use store::Store;

/// How many spans a slow [`Collector::subscribe`] receiver may fall behind
/// before it starts missing spans (it then gets `RecvError::Lagged`).
const LIVE_CAPACITY: usize = 4096;

/// Collector limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollectorConfig {
    /// Maximum number of spans held; the oldest traces are dropped beyond it.
    /// Default 200 000.
    pub max_spans: usize,
    /// About how many bytes the spans held may take (see [`ZipkinSpan::approx_bytes`]); the
    /// oldest traces are dropped beyond it. Default 512 MiB.
    pub max_bytes: usize,
    /// Maximum request body size in bytes; larger bodies get 413.
    /// Default 4 MiB.
    pub max_body_bytes: usize,
    /// How the HTTP server bounds its clients: header-read (and first-request) timeout,
    /// body-read timeout, idle timeout, connection count, drain time. Default: 5 s, 30 s, 60 s,
    /// 1 024 connections, 10 s.
    pub serve: serve::ServeOptions,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            max_spans: 200_000,
            max_bytes: 512 * 1024 * 1024,
            max_body_bytes: 4 * 1024 * 1024,
            serve: serve::ServeOptions {
                max_connections: 1024,
                ..serve::ServeOptions::default()
            },
        }
    }
}

/// The in-process trace collector. Cheap to clone: clones share one store.
#[derive(Clone)]
pub struct Collector {
    inner: Arc<Inner>,
}

struct Inner {
    config: CollectorConfig,
    store: Mutex<Store>,
    /// Bumped after every batch of stored spans; wakes [`Collector::wait_until`].
    changes: watch::Sender<u64>,
    /// Every ingested span, for live printing.
    live: broadcast::Sender<ZipkinSpan>,
}

impl fmt::Debug for Collector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let store = self.lock();
        f.debug_struct("Collector")
            .field("config", &self.inner.config)
            .field("span_count", &store.span_count())
            .field("dropped_spans", &store.dropped())
            .finish_non_exhaustive()
    }
}

impl Collector {
    /// A new, empty collector.
    pub fn new(config: CollectorConfig) -> Self {
        let (changes, _) = watch::channel(0);
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        Self {
            inner: Arc::new(Inner {
                config,
                store: Mutex::new(Store::new(config.max_spans, config.max_bytes)),
                changes,
                live,
            }),
        }
    }

    /// The limits this collector was created with.
    pub fn config(&self) -> &CollectorConfig {
        &self.inner.config
    }

    /// An axum router with every ingestion and query route, state included.
    pub fn router(&self) -> axum::Router {
        http::router(self.clone())
    }

    /// Serve [`router`](Self::router) on `listener` until `shutdown`
    /// completes, then finish in-flight requests and return.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let options = self.inner.config.serve;
        serve::serve(listener, self.router(), options, shutdown).await
    }

    /// Validate, normalise and store spans given in Zipkin form (as if they
    /// had been posted to `/api/v2/spans`). All or nothing: on a malformed id
    /// nothing is stored. Returns how many spans were stored: a span identical to
    /// one its trace holds already (a sender's retry) is stored once.
    pub fn ingest(&self, spans: Vec<ZipkinSpan>) -> Result<usize, IngestError> {
        let spans = spans
            .into_iter()
            .map(ids::normalize_span)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.store_normalized(spans))
    }

    /// Store spans whose ids are already normalised, then notify waiters and
    /// subscribers of those stored (not of duplicates). Returns how many were stored.
    pub(crate) fn store_normalized(&self, spans: Vec<ZipkinSpan>) -> usize {
        if spans.is_empty() {
            return 0;
        }
        let stored: Vec<ZipkinSpan> = {
            let mut store = self.lock();
            spans
                .into_iter()
                .filter(|span| store.insert(span.clone()))
                .collect()
        };
        let count = stored.len();
        for span in stored {
            // No receiver is not an error: nobody is printing live.
            let _ = self.inner.live.send(span);
        }
        if count > 0 {
            self.inner.changes.send_modify(|v| *v = v.wrapping_add(1));
        }
        count
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave the store inconsistent
        // in a way that matters more than losing the collector: keep going.
        self.inner
            .store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Every span held, in arrival order.
    pub fn spans(&self) -> Vec<ZipkinSpan> {
        self.lock().spans()
    }

    /// The spans of one trace, in arrival order, by 16- or 32-hex id (any
    /// case). Empty if the id is malformed or unknown.
    pub fn trace(&self, trace_id: &str) -> Vec<ZipkinSpan> {
        normalize_trace_id(trace_id)
            .and_then(|id| self.lock().trace(&id))
            .unwrap_or_default()
    }

    /// Normalised ids of the traces held, in first-seen order.
    pub fn trace_ids(&self) -> Vec<String> {
        self.lock().trace_ids()
    }

    /// Number of spans held.
    pub fn span_count(&self) -> usize {
        self.lock().span_count()
    }

    /// Number of spans dropped so far to stay within
    /// [`CollectorConfig::max_spans`].
    pub fn dropped_spans(&self) -> u64 {
        self.lock().dropped()
    }

    /// Wait until `pred` holds. `pred` is checked at once and again each time
    /// spans are stored; returns `false` if it still does not hold when
    /// `timeout` expires.
    pub async fn wait_until(&self, timeout: Duration, pred: impl Fn(&Collector) -> bool) -> bool {
        // Subscribe before the first check so no change can slip in between.
        let mut changes = self.inner.changes.subscribe();
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            if pred(self) {
                return true;
            }
            tokio::select! {
                () = &mut deadline => return pred(self),
                changed = changes.changed() => {
                    if changed.is_err() {
                        // Cannot happen (we own the sender), but never spin.
                        deadline.as_mut().await;
                        return pred(self);
                    }
                }
            }
        }
    }

    /// A receiver of every span ingested from now on, for live printing.
    /// A receiver more than 4096 spans behind misses the oldest ones
    /// (`RecvError::Lagged`).
    pub fn subscribe(&self) -> broadcast::Receiver<ZipkinSpan> {
        self.inner.live.subscribe()
    }
}
