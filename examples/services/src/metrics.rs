//! Metrics: what Prometheus scrapes from each service.
//!
//! One [`prometheus-client`](prometheus_client) registry per service, filled by the server
//! layer ([`tower_trace_headers::metrics`]): `http_server_request_duration_seconds` (the
//! frontend; by method, route template, status) and `rpc_server_call_duration_seconds` (user,
//! order, item; by service, method, gRPC status), histograms in seconds named after the
//! OpenTelemetry HTTP / RPC semantic conventions, the request count being their `_count`.
//! Every series also carries `service_name` and `service_version` (`v1`, `v2`), so a canary's
//! latency can be told from the stable version's; buckets carry an exemplar with the
//! `trace_id` (and `span_id`) of a sampled request that fell in them.
//!
//! `GET /metrics` serves it as OpenMetrics text (`Content-Type:`
//! [`OPENMETRICS_CONTENT_TYPE`]; Prometheus reads exemplars only from that format): on every
//! service's admin listener (`--admin-listen`, env `ADMIN_LISTEN`) — tonic speaks only
//! HTTP/2, so the gRPC services need that listener to be scraped — and on the frontend's own
//! port only when it has no admin listener (that port is the one clients reach). Scrapes, health checks and `/metrics` itself are not traced and not counted
//! ([`crate::UNTRACED_PATHS`]). A scrape that fails answers 500 and nothing else: requests
//! are recorded in memory and never wait on it.

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
pub use tower_trace_headers::metrics::OPENMETRICS_CONTENT_TYPE;
use tower_trace_headers::metrics::ServerMetrics;

/// A service's registry and the histograms its server layer records into. Cheap to clone:
/// clones share them.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    server: ServerMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry for `service` at `version`, labelling every series with both.
    #[must_use]
    pub fn new(service: &str, version: &str) -> Self {
        let mut registry = Registry::with_labels(
            [
                ("service_name".into(), service.to_owned().into()),
                ("service_version".into(), version.to_owned().into()),
            ]
            .into_iter(),
        );
        let server = ServerMetrics::new();
        server.register(&mut registry);
        Metrics {
            registry: Arc::new(registry),
            server,
        }
    }

    /// The histograms, for [`TraceHeadersLayer::metrics`](tower_trace_headers::TraceHeadersLayer::metrics).
    #[must_use]
    pub fn server(&self) -> ServerMetrics {
        self.server.clone()
    }

    /// The registry, as OpenMetrics text.
    ///
    /// # Errors
    ///
    /// When a metric fails to encode.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// `GET /metrics`.
    pub fn router(&self) -> Router {
        let metrics = self.clone();
        Router::new().route("/metrics", get(move || scrape(metrics.clone())))
    }
}

async fn scrape(metrics: Metrics) -> Response {
    match metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], text).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics failed to encode",
        )
            .into_response(),
    }
}
