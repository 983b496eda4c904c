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
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<
                bytes::Bytes,
            >::new()))
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

/// A subscriber layer that reads the request's baggage whenever a span records a field, as
/// a log enricher might.
struct ReadsBaggage;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ReadsBaggage {
    fn on_record(
        &self,
        _span: &tracing::span::Id,
        _values: &tracing::span::Record<'_>,
        _cx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let _ = tower_trace_headers::RequestTrace::current().map(|t| t.baggage());
    }
}

#[test]
fn recorded_baggage_follows_the_application() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let (done, finished) = std::sync::mpsc::channel();
    // On a thread of its own, so a deadlock fails the test instead of hanging it.
    std::thread::spawn(move || {
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(move || writer.clone())
                    .with_ansi(false),
            )
            .with(ReadsBaggage);
        let _default = tracing::subscriber::set_default(subscriber);
        let svc = ServiceBuilder::new()
            .layer(TraceHeadersLayer::new().record_baggage(["user"]))
            .service_fn(|_req: Request<()>| async move {
                tracing::info!("as received");
                let trace = tower_trace_headers::RequestTrace::current().unwrap();
                // Each change is recorded in the request's span while the subscriber reads
                // the baggage (from the second change on, a changed copy behind a lock).
                trace.set_baggage("user", "bob").unwrap();
                trace.set_baggage("user", "carol").unwrap();
                trace.set_baggage("other", "not recorded").unwrap();
                tracing::info!("as changed");
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<
                    bytes::Bytes,
                >::new()))
            });
        let req = Request::builder()
            .header("b3", "48485a3953bb6124-a2fb4a1d1a96d312-1")
            .header("baggage", "user=alice,team=web")
            .body(())
            .unwrap();
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(svc.oneshot(req))
            .unwrap();
        let _ = done.send(());
    });
    finished
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the request finished: no deadlock while a change is recorded");

    let out = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let line = |m: &str| {
        out.lines()
            .find(|l| l.contains(m))
            .unwrap_or_else(|| panic!("{m}: {out}"))
            .to_owned()
    };
    assert!(
        line("as received").contains("baggage=\"user=alice\""),
        "{out}"
    );
    // The fmt layer appends each recorded value: the last is what the span holds now, the
    // chosen key only.
    let changed = line("as changed");
    let last = &changed[changed.rfind("baggage=").unwrap()..];
    assert!(last.starts_with("baggage=\"user=carol\""), "{changed}");
    assert!(
        !changed.contains("other") && !changed.contains("team"),
        "{changed}"
    );
}
