//! The W3C Trace Context test-suite service contract (`w3c/trace-context` `test/`): the suite
//! POSTs a JSON array of `{"url", "arguments"}`; for each element, in order, the service POSTs
//! `arguments` as JSON to `url`, propagating the context with a new parent id per call, and
//! answers once every call is done.
//!
//! The project's layers do the propagation: a `TraceHeadersLayer` on the route and a
//! `PropagateTraceHeadersLayer` (instrument mode) on the client, with a `traceparent`-only
//! propagator.

use axum::Json;
use axum::http::StatusCode;
use axum::routing::post;
use b3_propagation::{ContextFormat, Propagator};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
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

/// The harness's routes: `POST /test` (and `POST /` for convenience).
pub fn router() -> axum::Router {
    let client: HttpClient = ServiceBuilder::new()
        .layer(
            PropagateTraceHeadersLayer::instrument()
                .propagator(propagator())
                .without_spans(),
        )
        .service(Client::builder(TokioExecutor::new()).build_http());
    let handler = move |body| run(client.clone(), body);
    axum::Router::new()
        .route("/test", post(handler.clone()))
        .route("/", post(handler))
        .layer(TraceHeadersLayer::with_propagator(propagator()).without_spans())
}
