//! JSON access logs: one line per request with time, service, version, method, route, status,
//! gRPC status, duration, `x-request-id`, trace id and span id — the fields that join access
//! logs to traces and to every other hop of the same request.
//!
//! A line is written when the response ends (its last frame read, or its body dropped), as
//! Envoy writes its own: the duration covers the whole response, and a gRPC call's status,
//! which a successful call sends in the trailers, is known. A request abandoned before its
//! response (the client reset the stream or went away, a caller's timeout) still gets its
//! line, with status `0` (no response, as Envoy logs it) and, for a gRPC call, the status its
//! caller reads, `1` (CANCELLED).
//!
//! [`AccessLogLayer`] goes *inside* the trace-headers server layer, so it sees the request's
//! [`RequestTrace`] (and its request id, generated there when the request had none).

use std::fmt;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    /// Standard output or a file, written by a thread of its own (see [`LineWriter`]).
    Writer(Arc<LineWriter>),
    /// Kept in memory, the newest lines up to a bound (the demo and tests read them back).
    Memory(Arc<Mutex<MemoryLines>>),
}

/// The newest access log lines, at most `capacity` of them.
#[derive(Debug)]
pub struct MemoryLines {
    lines: std::collections::VecDeque<String>,
    capacity: usize,
}

/// How many lines [`AccessLog::memory`] keeps: a mesh left up (`demo --serve`) does not grow
/// without bound.
pub const MEMORY_LINES: usize = 200_000;

impl fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccessLog::Off => f.write_str("Off"),
            AccessLog::Writer(w) => f.debug_tuple("Writer").field(w).finish(),
            AccessLog::Memory(_) => f.write_str("Memory"),
        }
    }
}

/// Lines waiting for the writer thread; past this, lines are dropped (and counted).
const QUEUE: usize = 8_192;

enum Message {
    Line(String),
    Flush(std::sync::mpsc::Sender<()>),
}

/// Writes access log lines on a thread of its own, so a slow output (a full pipe, a slow
/// disk) or a closed one (`| head`, a log collector restarting) never holds up or fails a
/// request: a request only queues its line (a bounded queue; when it is full the line is
/// dropped and counted), and an output that fails is reported once on standard error and
/// written to no more.
pub struct LineWriter {
    tx: SyncSender<Message>,
    target: String,
    dropped: AtomicU64,
    failed: Arc<AtomicU64>,
}

/// The writer thread's side: the buffered output, and what it lost.
struct Output {
    out: std::io::BufWriter<Box<dyn Write + Send>>,
    target: String,
    /// The output failed once: nothing more is written to it.
    broken: bool,
    /// Lines in the buffer, lost with it if the output fails.
    unflushed: u64,
    failed: Arc<AtomicU64>,
}

impl Output {
    fn line(&mut self, line: &str) {
        if self.broken {
            self.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let before = self.out.buffer().len();
        match writeln!(self.out, "{line}") {
            // The buffer was written out on the way (it holds less than it held plus this
            // line): at most this line is still in it.
            Ok(()) if self.out.buffer().len() < before + line.len() + 1 => {
                self.unflushed = u64::from(!self.out.buffer().is_empty());
            }
            Ok(()) => self.unflushed += 1,
            Err(e) => {
                self.unflushed += 1;
                self.fail(&e);
            }
        }
    }

    fn flush(&mut self) {
        if self.broken {
            return;
        }
        match self.out.flush() {
            Ok(()) => self.unflushed = 0,
            Err(e) => self.fail(&e),
        }
    }

    /// Report the failure once; the buffered lines are lost.
    fn fail(&mut self, e: &std::io::Error) {
        self.broken = true;
        self.failed.fetch_add(self.unflushed, Ordering::Relaxed);
        self.unflushed = 0;
        let _ = writeln!(
            std::io::stderr(),
            "access log: writing to {} failed ({e}); its later lines are dropped",
            self.target
        );
    }
}

impl fmt::Debug for LineWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (dropped, failed) = self.lost();
        f.debug_struct("LineWriter")
            .field("target", &self.target)
            .field("dropped", &dropped)
            .field("failed", &failed)
            .finish_non_exhaustive()
    }
}

impl LineWriter {
    fn spawn(out: Box<dyn Write + Send>, target: String) -> std::io::Result<Arc<Self>> {
        let (tx, rx) = sync_channel::<Message>(QUEUE);
        let failed = Arc::new(AtomicU64::new(0));
        let (thread_failed, thread_target) = (failed.clone(), target.clone());
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut out = Output {
                    out: std::io::BufWriter::new(out),
                    target: thread_target,
                    broken: false,
                    unflushed: 0,
                    failed: thread_failed,
                };
                while let Ok(first) = rx.recv() {
                    // Everything queued, then one flush.
                    let mut next = Some(first);
                    while let Some(message) = next {
                        match message {
                            Message::Line(line) => out.line(&line),
                            Message::Flush(done) => {
                                out.flush();
                                let _ = done.send(());
                            }
                        }
                        next = rx.try_recv().ok();
                    }
                    out.flush();
                }
            })?;
        Ok(Arc::new(LineWriter {
            tx,
            target,
            dropped: AtomicU64::new(0),
            failed,
        }))
    }

    fn write(&self, line: String) {
        if self.tx.try_send(Message::Line(line)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Wait, at most `timeout`, until every line queued so far is written out.
    fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (done, flushed) = std::sync::mpsc::channel();
        let mut message = Message::Flush(done);
        loop {
            match self.tx.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    message = m;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return false,
            }
        }
        flushed
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }

    /// Lines dropped because the queue was full, and lines the output refused.
    #[must_use]
    pub fn lost(&self) -> (u64, u64) {
        (
            self.dropped.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

impl AccessLog {
    /// An in-memory log of the newest [`MEMORY_LINES`] lines.
    #[must_use]
    pub fn memory() -> Self {
        Self::memory_with_capacity(MEMORY_LINES)
    }

    /// An in-memory log of the newest `capacity` lines (older ones are let go).
    #[must_use]
    pub fn memory_with_capacity(capacity: usize) -> Self {
        AccessLog::Memory(Arc::new(Mutex::new(MemoryLines {
            lines: std::collections::VecDeque::new(),
            capacity,
        })))
    }

    /// Standard output: one writer thread for the process, shared by every log that writes
    /// there.
    ///
    /// # Errors
    ///
    /// When the writer thread cannot be started.
    pub fn stdout() -> std::io::Result<Self> {
        // Started once, even when two services of a process ask at once.
        static STDOUT: OnceLock<Option<Arc<LineWriter>>> = OnceLock::new();
        STDOUT
            .get_or_init(|| {
                LineWriter::spawn(Box::new(std::io::stdout()), "standard output".to_owned()).ok()
            })
            .clone()
            .map(AccessLog::Writer)
            .ok_or_else(|| std::io::Error::other("the access log's writer thread did not start"))
    }

    /// Append to `path` (created if missing).
    ///
    /// # Errors
    ///
    /// When the file cannot be opened or the writer thread cannot be started.
    pub fn file(path: &std::path::Path) -> std::io::Result<Self> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(AccessLog::Writer(LineWriter::spawn(
            Box::new(f),
            path.display().to_string(),
        )?))
    }

    /// Write one line: never blocks (see [`LineWriter`]).
    pub fn write(&self, line: impl Into<String>) {
        match self {
            AccessLog::Off => {}
            AccessLog::Writer(w) => w.write(line.into()),
            AccessLog::Memory(v) => {
                if let Ok(mut v) = v.lock() {
                    if v.capacity == 0 {
                        return;
                    }
                    if v.lines.len() >= v.capacity {
                        v.lines.pop_front();
                    }
                    v.lines.push_back(line.into());
                }
            }
        }
    }

    /// Wait, at most `timeout`, until the lines written so far are out (at shutdown); say on
    /// standard error how many were lost, if any. `false` when they did not get out in time.
    pub fn flush(&self, timeout: Duration) -> bool {
        let AccessLog::Writer(w) = self else {
            return true;
        };
        let flushed = w.flush(timeout);
        let (dropped, failed) = w.lost();
        if dropped + failed > 0 {
            let _ = writeln!(
                std::io::stderr(),
                "access log: {dropped} lines dropped (queue full), {failed} refused by {}",
                w.target
            );
        }
        flushed
    }

    /// The lines kept in memory (empty for other sinks).
    #[must_use]
    pub fn lines(&self) -> Vec<String> {
        match self {
            AccessLog::Memory(v) => v
                .lock()
                .map(|v| v.lines.iter().cloned().collect())
                .unwrap_or_default(),
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
    /// A gRPC call (`content-type: application/grpc…`).
    grpc: bool,
    /// The service (or its response body) panicked: a gRPC caller reads UNKNOWN.
    panicked: bool,
}

/// Marks the request as panicked when a poll of the service's future or body unwinds: the
/// future (a task's) is dropped only once the panic has been caught, when nothing says it
/// panicked any more.
struct MarkOnUnwind<'a>(Option<&'a mut Pending>);

impl Drop for MarkOnUnwind<'_> {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(p) = self.0.as_deref_mut()
        {
            p.panicked = true;
        }
    }
}

impl<S, B, RB> Service<Request<B>> for AccessLogService<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    RB: http_body::Body,
{
    type Response = Response<AccessLogBody<RB>>;
    type Error = S::Error;
    type Future = AccessLogFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let path = req.uri().path();
        if crate::is_untraced(path) {
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
            // As the server layer's spans and metrics read a call.
            grpc: tower_trace_headers::semconv::is_grpc_content_type(
                req.headers().get(http::header::CONTENT_TYPE),
            ),
            panicked: false,
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

    impl<F> PinnedDrop for AccessLogFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before the response (the client reset the stream or went away): no
            // response, and a gRPC caller reads CANCELLED; unwinding from a panic of the
            // service, UNKNOWN, as the metrics and the spans record it.
            if let Some(p) = this.project().pending.take() {
                let code = if p.panicked { "2" } else { "1" };
                let grpc_status = p.grpc.then(|| code.to_owned());
                Entry {
                    pending: p,
                    status: 0,
                    grpc_status,
                }
                .write();
            }
        }
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
    RB: http_body::Body,
{
    type Output = Result<Response<AccessLogBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = {
            let _unwind = MarkOnUnwind(this.pending.as_mut());
            ready!(this.inner.poll(cx))
        };
        let pending = this.pending.take();
        Poll::Ready(match out {
            Ok(response) => {
                let entry = pending.map(|mut p| {
                    let grpc_status = response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    // A gRPC call only if answered as one, as the metrics count it: a request
                    // a client labelled gRPC and answered with a page is an HTTP request.
                    p.grpc &= grpc_status.is_some()
                        || tower_trace_headers::semconv::is_grpc_content_type(
                            response.headers().get(http::header::CONTENT_TYPE),
                        );
                    Entry {
                        pending: p,
                        status: response.status().as_u16(),
                        grpc_status,
                    }
                });
                let ended = entry.is_some() && http_body::Body::is_end_stream(response.body());
                let mut response = response.map(|inner| AccessLogBody { inner, entry });
                if ended {
                    // Nothing to read (a trailers-only gRPC answer, an empty body): ended now.
                    if let Some(e) = response.body_mut().entry.take() {
                        e.write();
                    }
                }
                Ok(response)
            }
            Err(e) => {
                // The service failed without a response: hyper closes the stream, so the
                // client gets none (status 0), and a gRPC caller reads UNKNOWN, as the metrics
                // record it.
                if let Some(p) = pending {
                    let grpc_status = p.grpc.then(|| "2".to_owned());
                    Entry {
                        pending: p,
                        status: 0,
                        grpc_status,
                    }
                    .write();
                }
                Err(e)
            }
        })
    }
}

/// A request's line, written when its response ends, or when it is abandoned before one
/// (status 0).
struct Entry {
    pending: Pending,
    status: u16,
    /// From the head (a trailers-only answer), else from the trailers.
    grpc_status: Option<String>,
}

impl Entry {
    fn write(self) {
        let p = self.pending;
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
            "status": self.status,
            "grpc_status": self.grpc_status,
            "duration_ms": p.start.elapsed().as_secs_f64() * 1000.0,
            "request_id": p.trace.as_ref().and_then(|t| t.request_id()).map(|r| r.as_str().to_owned()),
            "trace_id": span.and_then(|s| s.trace_id()).map(|t| t.to_string()),
            "span_id": span.and_then(|s| s.span_id()).map(|s| s.to_string()),
        });
        p.layer.log.write(line.to_string());
    }
}

pin_project! {
    /// The response body of [`AccessLogService`]: the inner body, which writes the request's
    /// line when it ends (its last frame read, or the body dropped before).
    pub struct AccessLogBody<B> {
        #[pin]
        inner: B,
        entry: Option<Entry>,
    }

    impl<B> PinnedDrop for AccessLogBody<B> {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before its end (the client went away): the line still goes out, and a
            // gRPC call without a status yet reads CANCELLED (UNKNOWN when the body's
            // producer panicked), as the metrics and the spans record it.
            if let Some(mut e) = this.project().entry.take() {
                if e.pending.grpc && e.grpc_status.is_none() {
                    let code = if e.pending.panicked { "2" } else { "1" };
                    e.grpc_status = Some(code.to_owned());
                }
                e.write();
            }
        }
    }
}

impl<B> fmt::Debug for AccessLogBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessLogBody").finish_non_exhaustive()
    }
}

impl<B: http_body::Body> http_body::Body for AccessLogBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let frame = {
            let _unwind = MarkOnUnwind(this.entry.as_mut().map(|e| &mut e.pending));
            ready!(this.inner.as_mut().poll_frame(cx))
        };
        // Trailers are the last frame (hyper reads nothing after them), whatever the inner
        // body says of its end.
        let trailers = match &frame {
            Some(Ok(f)) => f.trailers_ref(),
            _ => None,
        };
        if let Some(entry) = this.entry.as_mut()
            && let Some(code) = trailers
                .and_then(|t| t.get("grpc-status"))
                .and_then(|v| v.to_str().ok())
        {
            entry.grpc_status = Some(code.to_owned());
        }
        if (frame.is_none() || trailers.is_some() || this.inner.is_end_stream())
            && let Some(e) = this.entry.take()
        {
            e.write();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Condvar;

    use super::*;

    /// An output that is closed (a pipe whose reader went away).
    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
    }

    /// An output that blocks until released (a full pipe nobody reads), then keeps the lines.
    /// Whether it was released, and what it was given.
    type StuckState = Mutex<(bool, Vec<u8>)>;

    #[derive(Clone, Default)]
    struct Stuck(Arc<(StuckState, Condvar)>);

    impl Stuck {
        fn release(&self) {
            self.0.0.lock().unwrap().0 = true;
            self.0.1.notify_all();
        }

        fn lines(&self) -> usize {
            self.0
                .0
                .lock()
                .unwrap()
                .1
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
        }
    }

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (lock, released) = &*self.0;
            let mut state = released.wait_while(lock.lock().unwrap(), |s| !s.0).unwrap();
            state.1.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn writer(log: &AccessLog) -> &LineWriter {
        match log {
            AccessLog::Writer(w) => w,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_closed_output_fails_no_request() {
        let log = AccessLog::Writer(LineWriter::spawn(Box::new(Closed), "closed".into()).unwrap());
        for i in 0..100 {
            log.write(format!("{{\"line\": {i}}}"));
        }
        assert!(log.flush(Duration::from_secs(10)));
        // Every line is accounted for as lost, none as written; writing goes on refusing.
        assert_eq!(writer(&log).lost(), (0, 100));
        log.write("one more");
        assert!(log.flush(Duration::from_secs(10)));
        assert_eq!(writer(&log).lost(), (0, 101));
    }

    #[test]
    fn a_stuck_output_holds_up_no_request() {
        let out = Stuck::default();
        let log =
            AccessLog::Writer(LineWriter::spawn(Box::new(out.clone()), "stuck".into()).unwrap());
        // Far more lines than the queue holds: every write returns, the excess is dropped.
        let n = QUEUE as u64 + 2_000;
        for i in 0..n {
            log.write(format!("{{\"line\": {i}}}"));
        }
        let (dropped, failed) = writer(&log).lost();
        assert!((1_000..=2_000).contains(&dropped), "{dropped}");
        assert_eq!(failed, 0);
        // Bounded waiting at shutdown while the output is stuck.
        assert!(!log.flush(Duration::from_millis(50)));
        out.release();
        assert!(log.flush(Duration::from_secs(10)));
        assert_eq!(out.lines() as u64, n - dropped);
    }

    /// A request dropped before its response (the caller reset the stream, timed out) still
    /// has its line: no response (`0`), and CANCELLED for a gRPC call.
    #[tokio::test]
    async fn a_request_abandoned_before_its_response_is_logged() {
        use tower::ServiceExt as _;
        let log = AccessLog::memory_with_capacity(8);
        let never = tower::service_fn(|_: Request<()>| async {
            std::future::pending::<Result<Response<String>, std::convert::Infallible>>().await
        });
        let svc = AccessLogLayer::new(log.clone(), "item", "v1").layer(never);
        for (path, content_type) in [
            ("/item.v1.ItemService/GetItem", "application/grpc"),
            ("/orders/o-1", "text/plain"),
        ] {
            let req = Request::post(path)
                .header(http::header::CONTENT_TYPE, content_type)
                .body(())
                .unwrap();
            let gave_up =
                tokio::time::timeout(Duration::from_millis(20), svc.clone().oneshot(req)).await;
            assert!(gave_up.is_err());
        }
        let lines: Vec<serde_json::Value> = log
            .lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(
            (
                &lines[0]["route"],
                &lines[0]["status"],
                &lines[0]["grpc_status"]
            ),
            (
                &json!("/item.v1.ItemService/GetItem"),
                &json!(0),
                &json!("1")
            )
        );
        assert_eq!(
            (&lines[1]["status"], &lines[1]["grpc_status"]),
            (&json!(0), &serde_json::Value::Null)
        );
        assert!(lines[1]["duration_ms"].as_f64().unwrap() >= 20.0);
    }

    /// The access log reads a call as the metrics and the spans do: gRPC-Web is an HTTP
    /// request (its status travels in the body); a panicking service is UNKNOWN, not a
    /// cancellation; a gRPC body dropped before its trailers is CANCELLED.
    #[tokio::test]
    async fn calls_are_read_as_the_metrics_read_them() {
        use futures_util::FutureExt as _;
        use tower::ServiceExt as _;
        let log = AccessLog::memory_with_capacity(8);
        let panics = tower::service_fn(|_: Request<()>| async {
            tokio::task::yield_now().await;
            panic!("the handler panics");
            #[allow(unreachable_code)]
            Ok::<Response<String>, std::convert::Infallible>(Response::new(String::new()))
        });
        let svc = AccessLogLayer::new(log.clone(), "item", "v1").layer(panics);
        for content_type in ["application/grpc", "application/grpc-web+proto"] {
            let req = Request::post("/item.v1.ItemService/GetItem")
                .header(http::header::CONTENT_TYPE, content_type)
                .body(())
                .unwrap();
            let unwound = std::panic::AssertUnwindSafe(svc.clone().oneshot(req))
                .catch_unwind()
                .await;
            assert!(unwound.is_err());
        }
        // A streamed gRPC answer whose caller goes away after the first message.
        let streams = tower::service_fn(|_: Request<()>| async {
            let frames = futures_util::stream::iter([
                Ok::<_, std::convert::Infallible>(axum::body::Bytes::from_static(b"\0\0\0\0\0")),
                Ok(axum::body::Bytes::from_static(b"\0\0\0\0\0")),
            ]);
            let mut r = Response::new(axum::body::Body::from_stream(frames));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/grpc"),
            );
            Ok::<_, std::convert::Infallible>(r)
        });
        let svc = AccessLogLayer::new(log.clone(), "item", "v1").layer(streams);
        let req = Request::post("/item.v1.ItemService/Watch")
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .body(())
            .unwrap();
        let response = svc.oneshot(req).await.unwrap();
        let mut body = Box::pin(response.into_body());
        let first = std::future::poll_fn(|cx| http_body::Body::poll_frame(body.as_mut(), cx)).await;
        assert!(first.is_some_and(|f| f.is_ok()));
        drop(body);
        let lines: Vec<serde_json::Value> = log
            .lines()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let grpc: Vec<&serde_json::Value> = lines.iter().map(|l| &l["grpc_status"]).collect();
        assert_eq!(
            grpc,
            [&json!("2"), &serde_json::Value::Null, &json!("1")],
            "{lines:?}"
        );

        // A service that fails without a response: none was sent (status 0), and a gRPC
        // caller reads UNKNOWN.
        let log = AccessLog::memory_with_capacity(8);
        let fails = tower::service_fn(|_: Request<()>| async {
            Err::<Response<String>, _>(std::io::Error::other("the backend is gone"))
        });
        let svc = AccessLogLayer::new(log.clone(), "item", "v1").layer(fails);
        let req = Request::post("/item.v1.ItemService/GetItem")
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .body(())
            .unwrap();
        assert!(svc.oneshot(req).await.is_err());
        let line: serde_json::Value = serde_json::from_str(&log.lines()[0]).unwrap();
        assert_eq!(
            (&line["status"], &line["grpc_status"]),
            (&json!(0), &json!("2")),
            "{line}"
        );
    }

    #[test]
    fn a_memory_log_keeps_its_newest_lines() {
        let log = AccessLog::memory_with_capacity(3);
        for i in 0..5 {
            log.write(i.to_string());
        }
        assert_eq!(log.lines(), ["2", "3", "4"]);
        let none = AccessLog::memory_with_capacity(0);
        none.write("x");
        assert!(none.lines().is_empty());
    }
}
