//! Shared span semantics on a provider without `PresetIdGenerator`, in a process where none
//! was ever made (this test binary makes none): the server span cannot take the caller's id,
//! so from the very first request it is the caller's child — never a sibling of the caller's
//! span under the caller's parent.
#![cfg(feature = "opentelemetry")]
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::convert::Infallible;

use axum::body::Body;
use http::{Request, Response};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_trace_headers::TraceHeadersLayer;

const TRACE: &str = "80f198ee56343ba864fe8b2a57d3eff7";
const CALLER_SPAN: &str = "e457b5a2e4d86bd1";
const CALLER_PARENT: &str = "05e3ac9a4f6e3b90";

#[tokio::test]
async fn the_first_request_with_a_parent_gets_a_child_span() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let shared = b3_propagation::Propagator::builder()
        .span_semantics(b3_propagation::SpanSemantics::Shared)
        .build();
    let svc = ServiceBuilder::new()
        .layer(
            TraceHeadersLayer::new()
                .propagator(shared)
                .tracer_provider(&provider),
        )
        .service(service_fn(|_: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Body::empty()))
        }));
    for request in 1..=2 {
        let req = Request::get("/")
            .header("x-b3-traceid", TRACE)
            .header("x-b3-spanid", CALLER_SPAN)
            .header("x-b3-parentspanid", CALLER_PARENT)
            .header("x-b3-sampled", "1")
            .body(Body::empty())
            .unwrap();
        let response = svc.clone().oneshot(req).await.unwrap();
        drop(response);
        let spans = exporter.get_finished_spans().unwrap();
        assert_eq!(spans.len(), 1, "request {request}");
        let server = &spans[0];
        assert_eq!(server.span_context.trace_id().to_string(), TRACE);
        assert_eq!(
            server.parent_span_id.to_string(),
            CALLER_SPAN,
            "request {request}: the caller's child, not its sibling"
        );
        exporter.reset();
    }
}
