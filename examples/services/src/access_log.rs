//! JSON access logs: one line per request with time, service, version, method, route, status,
//! duration, `x-request-id`, trace id and span id — the fields that join access logs to
//! traces and to every other hop of the same request.
//!
//! [`AccessLogLayer`] goes *inside* the trace-headers server layer, so it sees the request's
//! [`RequestTrace`] (and its request id, generated there when the request had none).

use std::fmt;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::{Request, Response};
use pin_project_lite::pin_project;
use serde_json::json;
use tower::{Layer, Service};
use tower_trace_headers::RequestTrace;

/// Where access log lines go.
#[derive(Clone, Default)]
pub enum AccessLog {
    /// Nowhere.
    #[default]
    Off,
    /// Standard output.
    Stdout,
    /// Appended to a file.
    File(Arc<Mutex<std::fs::File>>),
    /// Kept in memory (the demo and tests read them back).
    Memory(Arc<Mutex<Vec<String>>>),
}

impl fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccessLog::Off => "Off",
            AccessLog::Stdout => "Stdout",
            AccessLog::File(_) => "File",
            AccessLog::Memory(_) => "Memory",
        })
    }
}

impl AccessLog {
    /// An in-memory log.
    #[must_use]
    pub fn memory() -> Self {
        AccessLog::Memory(Arc::default())
    }

    /// Append to `path` (created if missing).
    ///
    /// # Errors
    ///
    /// When the file cannot be opened.
    pub fn file(path: &std::path::Path) -> std::io::Result<Self> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(AccessLog::File(Arc::new(Mutex::new(f))))
    }

    /// Write one line.
    pub fn write(&self, line: &str) {
        match self {
            AccessLog::Off => {}
            AccessLog::Stdout => println!("{line}"),
            AccessLog::File(f) => {
                if let Ok(mut f) = f.lock() {
                    let _ = writeln!(f, "{line}");
                }
            }
            AccessLog::Memory(v) => {
                if let Ok(mut v) = v.lock() {
                    v.push(line.to_owned());
                }
            }
        }
    }

    /// The lines kept in memory (empty for other sinks).
    #[must_use]
    pub fn lines(&self) -> Vec<String> {
        match self {
            AccessLog::Memory(v) => v.lock().map(|v| v.clone()).unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

/// Writes an access log line per request. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct AccessLogLayer {
    log: AccessLog,
    service: Arc<str>,
    version: Arc<str>,
}

impl AccessLogLayer {
    /// Log `service` at `version` to `log`.
    #[must_use]
    pub fn new(log: AccessLog, service: &str, version: &str) -> Self {
        AccessLogLayer {
            log,
            service: service.into(),
            version: version.into(),
        }
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLogService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessLogService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`AccessLogLayer`].
#[derive(Clone, Debug)]
pub struct AccessLogService<S> {
    inner: S,
    layer: AccessLogLayer,
}

/// What is known of a request when it arrives.
struct Pending {
    layer: AccessLogLayer,
    start: Instant,
    time: SystemTime,
    method: String,
    route: String,
    trace: Option<RequestTrace>,
}

impl<S, B, RB> Service<Request<B>> for AccessLogService<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = AccessLogFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let path = req.uri().path();
        if crate::UNTRACED_PATHS.iter().any(|p| path.starts_with(p)) {
            // Health checks and scrapes are not requests of the service.
            return AccessLogFuture {
                inner: self.inner.call(req),
                pending: None,
            };
        }
        let route = req
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
        let pending = Pending {
            layer: self.layer.clone(),
            start: Instant::now(),
            time: SystemTime::now(),
            method: req.method().to_string(),
            route,
            trace: RequestTrace::from_request(&req).cloned(),
        };
        AccessLogFuture {
            inner: self.inner.call(req),
            pending: Some(pending),
        }
    }
}

pin_project! {
    /// The future of [`AccessLogService`].
    pub struct AccessLogFuture<F> {
        #[pin]
        inner: F,
        pending: Option<Pending>,
    }
}

impl<F> fmt::Debug for AccessLogFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessLogFuture").finish_non_exhaustive()
    }
}

impl<F, RB, E> Future for AccessLogFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = ready!(this.inner.poll(cx));
        if let Some(p) = this.pending.take() {
            let (status, grpc_status) = match &out {
                Ok(r) => (
                    r.status().as_u16(),
                    r.headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                ),
                Err(_) => (500, None),
            };
            let span = p.trace.as_ref().and_then(|t| t.span());
            let micros = p
                .time
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros());
            let line = json!({
                "time_us": u64::try_from(micros).unwrap_or(u64::MAX),
                "service": &*p.layer.service,
                "version": &*p.layer.version,
                "method": p.method,
                "route": p.route,
                "status": status,
                "grpc_status": grpc_status,
                "duration_ms": p.start.elapsed().as_secs_f64() * 1000.0,
                "request_id": p.trace.as_ref().and_then(|t| t.request_id()).map(|r| r.as_str().to_owned()),
                "trace_id": span.and_then(|s| s.trace_id()).map(|t| t.to_string()),
                "span_id": span.and_then(|s| s.span_id()).map(|s| s.to_string()),
            });
            p.layer.log.write(&line.to_string());
        }
        Poll::Ready(out)
    }
}
