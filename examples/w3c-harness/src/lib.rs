//! The W3C Trace Context test-suite service contract (`w3c/trace-context` `test/`): the suite
//! POSTs a JSON array of `{"url", "arguments"}`; for each element, in order, the service POSTs
//! `arguments` as JSON to `url`, propagating the context with a new parent id per call, and
//! answers once every call is done.
//!
//! The project's layers do the propagation: a `TraceHeadersLayer` on the route and a
//! `PropagateTraceHeadersLayer` (instrument mode) on the client, with a `traceparent`-only
//! propagator. The suite checks what an instrumented participant does — a new parent id per
//! call — and a span id goes out only when a tracer reports that span: the layers start
//! their server and client spans with the tracer they are given, whose provider exports them
//! (the binary: over OTLP with `--otlp-endpoint`, else printed on standard output).

#![forbid(unsafe_code)]

use axum::Json;
use axum::http::StatusCode;
use axum::routing::post;
use b3_propagation::{ContextFormat, Propagator};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::Deserialize;
use services::telemetry::traces_url;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_trace_headers::{PropagateTraceHeaders, PropagateTraceHeadersLayer, TraceHeadersLayer};

/// One callback of a test case.
#[derive(Debug, Deserialize)]
pub struct Callback {
    /// Where to POST.
    pub url: String,
    /// The JSON body to POST.
    #[serde(default)]
    pub arguments: serde_json::Value,
}

type HttpClient = PropagateTraceHeaders<Client<HttpConnector, Full<Bytes>>>;

/// The propagator of the harness: W3C Trace Context only.
#[must_use]
pub fn propagator() -> Propagator {
    Propagator::builder()
        .extract([ContextFormat::TraceParent])
        .inject([ContextFormat::TraceParent])
        .request_id(false)
        .baggage(false)
        .opaque([])
        .build()
}

async fn run(client: HttpClient, Json(calls): Json<Vec<Callback>>) -> StatusCode {
    for call in calls {
        let Ok(req) = http::Request::post(&call.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(call.arguments.to_string())))
        else {
            return StatusCode::BAD_REQUEST;
        };
        let mut client = client.clone();
        let sent = async {
            let resp = client.ready().await?.call(req).await?;
            Ok::<_, hyper_util::client::legacy::Error>(resp.status())
        };
        if tokio::time::timeout(std::time::Duration::from_secs(10), sent)
            .await
            .is_err()
        {
            return StatusCode::GATEWAY_TIMEOUT;
        }
    }
    StatusCode::OK
}

/// The harness's routes: `POST /test` (and `POST /` for convenience), reporting its server
/// and client spans through `provider`.
pub fn router(provider: &SdkTracerProvider) -> axum::Router {
    let client: HttpClient = ServiceBuilder::new()
        .layer(
            PropagateTraceHeadersLayer::instrument()
                .propagator(propagator())
                .tracer_provider(provider),
        )
        .service(Client::builder(TokioExecutor::new()).build_http());
    let handler = move |body| run(client.clone(), body);
    axum::Router::new()
        .route("/test", post(handler.clone()))
        .route("/", post(handler))
        .layer(
            TraceHeadersLayer::new()
                .propagator(propagator())
                .tracer_provider(provider),
        )
}

/// The harness binary's provider: its spans exported over OTLP to `endpoint` when given, else
/// printed on standard output (`opentelemetry-stdout`), so every id it sends is a span it
/// reports.
///
/// # Errors
///
/// When the OTLP exporter cannot be built.
pub fn provider(
    endpoint: Option<&str>,
) -> Result<SdkTracerProvider, Box<dyn std::error::Error + Send + Sync>> {
    let builder = SdkTracerProvider::builder()
        .with_id_generator(tower_trace_headers::otel::PresetIdGenerator::default());
    Ok(match endpoint {
        Some(e) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(traces_url(e))
                .build()?;
            builder.with_batch_exporter(exporter).build()
        }
        None => builder
            .with_simple_exporter(opentelemetry_stdout::SpanExporter::default())
            .build(),
    })
}
