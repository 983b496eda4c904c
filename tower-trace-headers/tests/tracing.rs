//! With feature `tracing`: every log line inside a request carries `trace_id`, `span_id` and
//! `request_id`.
#![cfg(feature = "tracing")]
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::io::Write;
use std::sync::{Arc, Mutex};

use http::Request;
use tower::{ServiceBuilder, ServiceExt};
use tower_trace_headers::TraceHeadersLayer;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn log_lines_are_correlated() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let svc = ServiceBuilder::new()
        .layer(TraceHeadersLayer::new())
        .service_fn(|_req: Request<()>| async move {
            tokio::task::yield_now().await;
            tracing::info!("handling the order");
            Ok::<_, std::convert::Infallible>(http::Response::new(()))
        });
    let req = Request::builder()
        .header("b3", "48485a3953bb6124-a2fb4a1d1a96d312-1")
        .header("x-request-id", "rid-42")
        .body(())
        .unwrap();
    svc.oneshot(req).await.unwrap();

    let out = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let line = out
        .lines()
        .find(|l| l.contains("handling the order"))
        .expect("logged");
    assert!(line.contains("trace_id=48485a3953bb6124"), "{line}");
    assert!(
        line.contains("request_id=\"rid-42\"") || line.contains("request_id=rid-42"),
        "{line}"
    );
    assert!(line.contains("span_id="), "{line}");
}
