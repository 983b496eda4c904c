//! Serving an HTTP router the way a service facing clients, or a collector open to a
//! cluster, must: through hyper-util with a timer, so that
//!
//! - a client that does not finish its request headers within
//!   [`ServeOptions::header_read_timeout`] is cut off (`axum::serve` gives hyper no timer, so
//!   its header-read timeout never fires, and a tower timeout never sees a slow header read);
//!   so is a connection that sends nothing, or not enough to tell HTTP/1 from HTTP/2, within
//!   that time, or that opens HTTP/2 and starts no request;
//! - a client that keeps a handler waiting on its request body longer than
//!   [`ServeOptions::body_read_timeout`] in all fails that request (the handler reading it gets an error: `400` from axum's
//!   extractors) instead of holding it open byte by byte;
//! - a client that takes nothing of its responses (reads nothing, or grants HTTP/2 no window)
//!   for [`ServeOptions::send_timeout`] loses its connection, so it cannot hold the
//!   connection's place, the handlers' responses and their memory for ever; a client that
//!   reads slowly but steadily, and a handler that takes its time between frames, are not
//!   cut (see the option for what an HTTP/2 client can still hold);
//! - a connection with no request in flight (and no response bytes still going out) is closed
//!   gracefully after [`ServeOptions::idle_timeout`] (HTTP/1 keep-alive connections sooner: the header-read
//!   timeout bounds the wait for their next request), and HTTP/2 peers that stop answering
//!   pings are dropped;
//! - at most [`ServeOptions::max_connections`] connections are open at once (further ones wait
//!   in the listen backlog), upgraded ones (WebSocket) included until their upgraded stream is
//!   dropped;
//! - the shutdown future stops accepting and drains the connections: requests in flight finish
//!   and upgraded streams are dropped by their handlers, which learn of the stop through
//!   [`Stopping`] in the request's extensions, all bounded by [`ServeOptions::drain_timeout`]
//!   (past it, `serve` returns; an upgraded stream still open is the application's).
//!
//! HTTP/1.1 and HTTP/2 (h2c) are both served, as `axum::serve` does, and every request carries
//! its peer's address as `axum::extract::ConnectInfo<SocketAddr>` and the server's stop signal
//! as [`Stopping`] in its extensions.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use serve::ServeOptions;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let app = Router::new().route("/", get(|| async { "ok" }));
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(serve::serve(listener, app, ServeOptions::default(), async {
//!     let _ = stopped.await;
//! }));
//! let _ = stop.send(());
//! server.await.expect("joined")?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use http_body::{Body, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// The bounds a server keeps. See the [crate docs](crate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeOptions {
    /// How long a client may take to send a request's headers (and how long a keep-alive
    /// HTTP/1 connection may sit idle before its next request, and any connection before its
    /// first). Default 5 s.
    pub header_read_timeout: Duration,
    /// How long, in all, a request's body may keep its handler waiting for the client's bytes
    /// (the time the handler spends between reads does not count). Default 30 s.
    pub body_read_timeout: Duration,
    /// How long a connection may wait on its client with no progress at all before it is
    /// dropped, as nginx's `send_timeout`: while hyper holds response bytes the client makes
    /// no room for (it stops reading; an HTTP/2 client grants no window), no byte goes out
    /// and no response's frame is taken. Every byte written restarts the clock, so a slow
    /// but steady reader is never cut, however large the response or its frames; the time a
    /// handler takes to produce its next frame does not count. Like nginx's, the bound is
    /// per connection: an HTTP/2 stream granted no window lasts as long as the client keeps
    /// other streams of the connection moving (HTTP/2's limit on concurrent streams bounds
    /// those), and one whose whole body hyper has taken waits out the idle timeout instead
    /// (nothing is left to write). A stalled client is noticed once its socket's buffers are full (for a
    /// trickle of server-sent events, that can take long). Checked at least every
    /// `min(header_read_timeout, idle_timeout)`, so a connection is dropped up to that much
    /// later. Zero turns the bound off. Default 30 s.
    pub send_timeout: Duration,
    /// How long a connection may stay open with no request in flight (HTTP/2 mostly: HTTP/1
    /// waits at most the header-read timeout). Default 60 s.
    pub idle_timeout: Duration,
    /// Most connections open at once, upgraded ones (WebSocket) included until the application
    /// drops their upgraded stream. Default 4 096.
    pub max_connections: usize,
    /// How long a graceful stop waits for the requests in flight and the upgraded streams
    /// still open (their handlers learn of the stop through [`Stopping`]). Default 10 s.
    pub drain_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_read_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// What a connection is doing: requests in flight, and when the last one ended.
struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `started` to the end of the last request.
    last_ms: AtomicU64,
    /// Whether a request ever came.
    served: AtomicBool,
    /// Responses whose last frame (or head) hyper holds and has not come back for more from:
    /// they wait on the client.
    on_client: AtomicUsize,
    /// A write to the socket waits: hyper holds bytes the client has not made room for
    /// (also once the response that wrote them has ended).
    writing: AtomicBool,
    /// Counts every frame a response hands hyper, every time hyper comes back for more, and
    /// every write that sends bytes or starts to wait: unchanged while everything that waits
    /// on the client stays stuck.
    progress: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            served: AtomicBool::new(false),
            on_client: AtomicUsize::new(0),
            writing: AtomicBool::new(false),
            progress: AtomicU64::new(0),
        }
    }

    /// The progress count while something waits on the client (a response's frame, or a
    /// write), `None` while nothing does.
    fn waiting_on_client(&self) -> Option<u64> {
        (self.on_client.load(Ordering::Acquire) > 0 || self.writing.load(Ordering::Acquire))
            .then(|| self.progress.load(Ordering::Acquire))
    }

    /// When the connection falls idle for good, as the options say; `None` while a request is
    /// in flight.
    fn idle_deadline(&self, options: &ServeOptions) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        if !self.served.load(Ordering::Acquire) {
            return Some(after(self.started, options.header_read_timeout));
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Acquire));
        Some(after(after(self.started, last), options.idle_timeout))
    }
}

/// Longer than any bound needs to be (30 years): what a longer one is taken for, so that no
/// timer (ours or hyper's) overflows.
const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// `at + d`, or a time too far to matter when that cannot be told (a bound of
/// `Duration::MAX` means no bound, not a panic).
fn after(at: Instant, d: Duration) -> Instant {
    const DAY: Duration = Duration::from_secs(24 * 3600);
    at.checked_add(d.min(FAR))
        .or_else(|| at.checked_add(d.min(DAY)))
        .unwrap_or(at)
}

/// One request in flight on a connection; its end when dropped (the response ended, or the
/// request abandoned). Also whether its response waits on the client.
struct InFlight {
    activity: Arc<Activity>,
    on_client: bool,
}

impl InFlight {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.served.store(true, Ordering::Release);
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight {
            activity: Arc::clone(activity),
            on_client: false,
        }
    }

    /// The response handed hyper something to send (its head, a frame): it waits on the
    /// client until hyper comes back for more.
    fn handed(&mut self) {
        let a = &self.activity;
        if !self.on_client {
            self.on_client = true;
            a.on_client.fetch_add(1, Ordering::AcqRel);
        }
        a.progress.fetch_add(1, Ordering::AcqRel);
    }

    /// Hyper came back for more: what was handed went out (or into a window the client
    /// granted).
    fn resumed(&mut self) {
        if self.on_client {
            self.on_client = false;
            let a = &self.activity;
            a.on_client.fetch_sub(1, Ordering::AcqRel);
            a.progress.fetch_add(1, Ordering::AcqRel);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.resumed();
        let a = &self.activity;
        let ms = u64::try_from(a.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        a.last_ms.fetch_max(ms, Ordering::AcqRel);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The server's stop signal, in every request's extensions (`Extension<Stopping>` in axum):
/// for a handler that keeps a connection past its response — an upgraded (WebSocket) stream, a
/// long poll — to finish it when the server stops, so the drain need not wait out
/// [`ServeOptions::drain_timeout`] for it.
#[derive(Clone, Debug)]
pub struct Stopping(watch::Receiver<bool>);

impl Stopping {
    /// Whether the server has begun to stop (or is gone).
    #[must_use]
    pub fn is_stopping(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Completes once the server begins to stop (at once if it has, or if it is gone).
    pub async fn stopped(&mut self) {
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }
}

/// A connection's stream with its place under the connection bound: the place is given back
/// when the stream is dropped, which for an upgraded connection (WebSocket) is when the
/// application drops the upgraded stream, not when hyper hands it over.
///
/// It also tells the connection's [`Activity`] how its writes fare: a write the client's
/// window (TCP or HTTP/2's connection window, as the socket shows it) keeps waiting, and every
/// byte that goes out.
struct Bounded {
    stream: TcpStream,
    activity: Arc<Activity>,
    _permit: OwnedSemaphorePermit,
}

impl Bounded {
    /// Note what a write came to: `Pending` waits on the client; bytes written are progress
    /// (a flush that is done says nothing: a socket's is, always, whatever hyper still holds).
    #[inline]
    fn wrote(&self, result: &Poll<std::io::Result<usize>>) {
        let a = &self.activity;
        match result {
            Poll::Pending => {
                if !a.writing.swap(true, Ordering::AcqRel) {
                    a.progress.fetch_add(1, Ordering::AcqRel);
                }
            }
            Poll::Ready(Ok(0)) => {}
            Poll::Ready(Ok(_)) => {
                a.writing.store(false, Ordering::Release);
                a.progress.fetch_add(1, Ordering::AcqRel);
            }
            Poll::Ready(Err(_)) => a.writing.store(false, Ordering::Release),
        }
    }
}

impl AsyncRead for Bounded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Bounded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.wrote(&result);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.wrote(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

pin_project! {
    /// A request body that fails once its client has kept it waiting longer than the
    /// body-read timeout in all: only the time a poll waits on the client counts, not the
    /// time the handler spends between reads.
    struct TimedBody<B> {
        #[pin]
        inner: B,
        limit: Duration,
        // Time spent waiting on the client so far, and since when the current wait runs.
        waited: Duration,
        waiting_since: Option<Instant>,
        timer: Option<Pin<Box<Sleep>>>,
    }
}

impl<B> TimedBody<B> {
    fn new(inner: B, limit: Duration) -> Self {
        TimedBody {
            inner,
            limit,
            waited: Duration::ZERO,
            waiting_since: None,
            timer: None,
        }
    }
}

pin_project! {
    /// A response body that keeps its request counted as in flight until it is dropped, and
    /// tells the connection when hyper holds a frame of it that the client has not taken.
    struct HeldBody<B> {
        #[pin]
        inner: B,
        request: InFlight,
    }
}

impl<B: Body> Body for HeldBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        this.request.resumed();
        let frame = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &frame {
            this.request.handed();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The error a [`TimedBody`] ends with.
#[derive(Debug)]
struct BodyTimedOut(Duration);

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body took longer than {:?} to arrive",
            self.0
        )
    }
}

impl std::error::Error for BodyTimedOut {}

impl<B> Body for TimedBody<B>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            if let Some(since) = this.waiting_since.take() {
                *this.waited += since.elapsed();
            }
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let limit = *this.limit;
        let since = *this.waiting_since.get_or_insert_with(Instant::now);
        let deadline = after(since, limit.saturating_sub(*this.waited));
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut(limit))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A shutdown future for [`serve`]: completes on Ctrl-C or SIGTERM (what a container runtime
/// or Kubernetes sends). The SIGTERM handler is installed when this is called, inside the
/// runtime, not when the future is first polled: a SIGTERM that arrives before (while the
/// process is still starting) is not left to its default action, which kills the process
/// without a drain.
///
/// # Errors
///
/// When the SIGTERM handler cannot be installed.
pub fn stop_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    Ok(async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async {
            term.recv().await;
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => {},
            () = term => {},
        }
    })
}

/// Serve `router` on `listener` until `shutdown` completes, then drain. See the
/// [crate docs](crate).
///
/// # Errors
///
/// Never for a connection's failure (that connection is dropped); only if the listener fails
/// in a way that retrying cannot cure.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout.min(FAR));
    builder
        .http2()
        .timer(TokioTimer::new())
        // A peer that stops answering pings (gone without a FIN) is dropped.
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    let builder = Arc::new(builder);
    let max = options
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let permits = Arc::new(Semaphore::new(max));
    // Tells every connection to finish what it is doing and close.
    let (stop, stopping) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            biased;
            () = shutdown.as_mut() => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = shutdown.as_mut() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // A connection that failed before it was accepted (reset, out of descriptors
                // for a moment): keep serving the others.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        // Each request knows its peer, as with `axum::serve` and `ConnectInfo`; its body is
        // bounded in time; it counts as in flight until its response body has ended.
        let body_limit = options.body_read_timeout;
        let signal = Stopping(stopping.clone());
        let in_flight = Arc::clone(&activity);
        let service = TowerToHyperService::new(
            router
                .clone()
                .map_request(move |req: axum::http::Request<hyper::body::Incoming>| {
                    let (mut parts, body) = req.into_parts();
                    parts.extensions.insert(axum::extract::ConnectInfo(peer));
                    parts.extensions.insert(signal.clone());
                    let body = TimedBody::new(body, body_limit);
                    axum::http::Request::from_parts(parts, axum::body::Body::new(body))
                })
                .map_future(move |answer| {
                    let mut request = InFlight::new(&in_flight);
                    async move {
                        // In flight until its response body has ended (a streamed response, a
                        // long download, server-sent events): the connection is not idle then.
                        answer.await.map(|response| {
                            // The head is handed to hyper: until it asks for the body, the
                            // response waits on the client.
                            request.handed();
                            response.map(|body| {
                                axum::body::Body::new(HeldBody {
                                    inner: body,
                                    request,
                                })
                            })
                        })
                    }
                }),
        );
        let builder = Arc::clone(&builder);
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            let conn = builder
                .serve_connection_with_upgrades(
                    TokioIo::new(Bounded {
                        stream,
                        activity: Arc::clone(&activity),
                        _permit: permit,
                    }),
                    service,
                )
                .into_owned();
            let mut conn = std::pin::pin!(conn);
            // Closing: asked to finish gracefully, and dropped at `close_by` if it has not
            // (an HTTP/2 peer that never acknowledges the GOAWAY's ping, a client that keeps
            // a request open past the drain). `hard`: dropped then even with a request in
            // flight (the server stops); else only once none is.
            let mut close_by: Option<(Instant, bool)> = None;
            // Never below 100 ms: a zero timeout must not make the watchdog spin.
            let grace = options
                .idle_timeout
                .min(options.header_read_timeout)
                .max(Duration::from_millis(100));
            if *stopping.borrow_and_update() {
                conn.as_mut().graceful_shutdown();
                close_by = Some((after(Instant::now(), options.drain_timeout), true));
            }
            // Since when the responses waiting on the client made no progress (and the
            // progress count then).
            let mut stuck: Option<(u64, Instant)> = None;
            // Zero: no send timeout.
            let send_timeout = (!options.send_timeout.is_zero()).then_some(options.send_timeout);
            loop {
                let now = Instant::now();
                let waiting = send_timeout.and_then(|_| activity.waiting_on_client());
                let stuck_until = match (waiting, stuck) {
                    (None, _) => {
                        stuck = None;
                        None
                    }
                    (Some(count), Some((was, since))) if count == was => {
                        send_timeout.map(|t| after(since, t))
                    }
                    (Some(count), _) => {
                        stuck = Some((count, now));
                        send_timeout.map(|t| after(now, t))
                    }
                };
                if stuck_until.is_some_and(|t| t <= now) {
                    // The client took nothing for the send timeout: drop the connection,
                    // its responses and its place.
                    break;
                }
                // Looked at again at least every `grace`: a request that ends moves the
                // deadline (the idle timeout may be shorter than the first request's).
                let next_look = after(now, grace);
                let next_look = stuck_until.map_or(next_look, |t| t.min(next_look));
                let idle = activity
                    .idle_deadline(&options)
                    .map_or(next_look, |d| d.min(next_look));
                let closing = close_by.is_some();
                let (drop_at, hard) = close_by.unwrap_or((idle, false));
                tokio::select! {
                    _ = conn.as_mut() => break,
                    changed = stopping.changed(), if !hard => {
                        if changed.is_err() || *stopping.borrow() {
                            conn.as_mut().graceful_shutdown();
                            close_by = Some((after(Instant::now(), options.drain_timeout), true));
                        }
                    }
                    () = tokio::time::sleep_until(idle), if !closing => {
                        if activity
                            .idle_deadline(&options)
                            .is_some_and(|d| d <= Instant::now())
                        {
                            conn.as_mut().graceful_shutdown();
                            close_by = Some((after(Instant::now(), grace), false));
                        }
                    }
                    // Woken at `next_look` too: a stuck response is dropped during a drain.
                    () = tokio::time::sleep_until(drop_at.min(next_look)), if closing => {
                        if Instant::now() < drop_at {
                            continue;
                        }
                        // Not while a response is in flight, nor while its last bytes still go
                        // out to a client that takes them (the send timeout bounds one that
                        // does not).
                        let busy = activity.in_flight.load(Ordering::Acquire) > 0
                            || activity.waiting_on_client().is_some() && send_timeout.is_some();
                        if hard || !busy {
                            break;
                        }
                        close_by = Some((after(Instant::now(), grace), false));
                    }
                }
            }
            // The connection's place goes back with its stream: now, or for an upgraded
            // connection when the application drops the upgraded stream.
        });
    }
    // No new connection during the drain: refused at once, not left in the backlog to be
    // reset when the process exits.
    drop(listener);
    let _ = stop.send(true);
    // Drained when every connection gave its permit back (every upgraded stream dropped).
    let _ = tokio::time::timeout(
        options.drain_timeout,
        permits.acquire_many(u32::try_from(max).unwrap_or(u32::MAX)),
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serve a router that answers `/` and echoes the length of a posted body, with short
    /// bounds; its address.
    async fn short_bounds(options: ServeOptions) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new()
            .route("/", axum::routing::get(|| async { "ok" }))
            .route(
                "/upload",
                axum::routing::post(
                    |body: axum::body::Bytes| async move { body.len().to_string() },
                ),
            );
        tokio::spawn(serve(listener, app, options, std::future::pending()));
        addr
    }

    /// Whether the server closes `stream` within `within` (reading whatever it sends).
    async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
        let mut buf = Vec::new();
        tokio::time::timeout(within, stream.read_to_end(&mut buf))
            .await
            .is_ok()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn silent_and_half_http2_connections_are_cut_off() {
        let addr = short_bounds(ServeOptions {
            header_read_timeout: Duration::from_millis(300),
            ..ServeOptions::default()
        })
        .await;
        // Nothing at all: the server cannot even tell HTTP/1 from HTTP/2.
        let mut silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
        // Half of the HTTP/2 preface.
        let mut half = tokio::net::TcpStream::connect(addr).await.expect("connect");
        half.write_all(b"PRI * HTTP/2.0\r\n").await.expect("write");
        // The whole preface and SETTINGS, then no request.
        let mut h2 = tokio::net::TcpStream::connect(addr).await.expect("connect");
        h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .await
            .expect("write");
        for (name, stream) in [
            ("silent", &mut silent),
            ("half", &mut half),
            ("h2", &mut h2),
        ] {
            assert!(
                closed_within(stream, Duration::from_secs(3)).await,
                "{name}: still open after 3 s"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_connection_is_closed_after_its_request() {
        let addr = short_bounds(ServeOptions {
            idle_timeout: Duration::from_millis(300),
            ..ServeOptions::default()
        })
        .await;
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        conn.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        let mut head = [0u8; 12];
        conn.read_exact(&mut head).await.expect("read");
        assert_eq!(&head, b"HTTP/1.1 200");
        // Kept alive, then idle: closed after the idle timeout, well before the header-read
        // timeout (5 s).
        assert!(
            closed_within(&mut conn, Duration::from_secs(3)).await,
            "still open after 3 s idle"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_response_streamed_longer_than_the_idle_timeout_is_not_cut() {
        // Ten chunks, 150 ms apart: 1.5 s of body after the head, five idle timeouts.
        streamed_whole(ServeOptions {
            idle_timeout: Duration::from_millis(300),
            header_read_timeout: Duration::from_millis(300),
            ..ServeOptions::default()
        })
        .await;
    }

    /// Serve `/stream` (ten chunks, 150 ms apart) with `options`, and check that a client
    /// reading it gets all of it, ended, not cut.
    async fn streamed_whole(options: ServeOptions) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new().route(
            "/stream",
            axum::routing::get(|| async {
                let chunks = futures_util_stream(10, Duration::from_millis(150));
                axum::body::Body::from_stream(chunks)
            }),
        );
        tokio::spawn(serve(listener, app, options, std::future::pending()));
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        conn.write_all(b"GET /stream HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer))
            .await
            .expect("ends")
            .expect("read");
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert_eq!(
            text.matches("chunk \r\n").count(),
            10,
            "the whole body: {text}"
        );
        assert!(text.ends_with("0\r\n\r\n"), "ended, not cut: {text}");
    }

    /// `n` chunks `every` apart.
    fn futures_util_stream(
        n: usize,
        every: Duration,
    ) -> impl futures_util::Stream<Item = Result<&'static str, std::convert::Infallible>> {
        futures_util::stream::unfold(n, move |left| async move {
            if left == 0 {
                return None;
            }
            tokio::time::sleep(every).await;
            Some((Ok("chunk "), left - 1))
        })
    }

    #[tokio::test]
    async fn only_the_time_spent_waiting_on_the_client_counts() {
        // The client sends three chunks 10 ms apart; the handler works 500 ms between two
        // reads. Waiting on the client took ~20 ms of the 300 ms allowed: no error.
        let chunks = futures_util::stream::unfold(3, |left| async move {
            if left == 0 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            Some((Ok::<_, std::convert::Infallible>("chunk"), left - 1))
        });
        let mut body = TimedBody::new(
            axum::body::Body::from_stream(chunks),
            Duration::from_millis(300),
        );
        let mut frames = 0;
        loop {
            let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
            match frame {
                Some(Ok(_)) => frames += 1,
                Some(Err(e)) => panic!("after {frames} frames: {e}"),
                None => break,
            }
            if frames == 1 {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        assert_eq!(frames, 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_body_sent_too_slowly_fails_its_request_and_others_are_served() {
        let addr = short_bounds(ServeOptions {
            body_read_timeout: Duration::from_millis(300),
            ..ServeOptions::default()
        })
        .await;
        let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
        slow.write_all(
            b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789",
        )
        .await
        .expect("write");
        // Whole bodies meanwhile.
        let mut ok = tokio::net::TcpStream::connect(addr).await.expect("connect");
        ok.write_all(b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc")
            .await
            .expect("write");
        let mut answer = String::new();
        ok.read_to_string(&mut answer).await.expect("read");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("\r\n\r\n3"), "{answer}");
        // The slow one is answered with an error once its time is up.
        let mut head = [0u8; 12];
        tokio::time::timeout(Duration::from_secs(3), slow.read_exact(&mut head))
            .await
            .expect("answered within 3 s")
            .expect("read");
        assert_eq!(&head, b"HTTP/1.1 400");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_upgraded_connection_keeps_its_place_until_its_stream_is_dropped() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        // `/upgrade` switches protocols and holds the upgraded stream until the client closes.
        let app = upgrading(false).route("/", axum::routing::get(|| async { "ok" }));
        let options = ServeOptions {
            max_connections: 1,
            ..ServeOptions::default()
        };
        tokio::spawn(serve(listener, app, options, std::future::pending()));
        let mut upgraded = tokio::net::TcpStream::connect(addr).await.expect("connect");
        upgraded
            .write_all(
                b"GET /upgrade HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: test\r\n\r\n",
            )
            .await
            .expect("write");
        let mut head = [0u8; 12];
        upgraded.read_exact(&mut head).await.expect("read");
        assert_eq!(&head, b"HTTP/1.1 101");
        // The one place is the upgraded connection's: another waits in the backlog...
        let mut next = tokio::net::TcpStream::connect(addr).await.expect("connect");
        next.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = Vec::new();
        assert!(
            tokio::time::timeout(Duration::from_millis(500), next.read_to_end(&mut answer))
                .await
                .is_err(),
            "served beside an upgraded connection past the bound: {:?}",
            String::from_utf8_lossy(&answer)
        );
        // ...until the upgraded stream is dropped.
        drop(upgraded);
        tokio::time::timeout(Duration::from_secs(3), next.read_to_end(&mut answer))
            .await
            .expect("served within 3 s of the upgraded connection's end")
            .expect("read");
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    }

    /// A router whose `/upgrade` switches protocols and holds the upgraded stream until the
    /// client closes it, or (when `cooperates`) until the server stops.
    fn upgrading(cooperates: bool) -> Router {
        Router::new().route(
            "/upgrade",
            axum::routing::get(move |mut req: axum::extract::Request| async move {
                let upgrade = hyper::upgrade::on(&mut req);
                let mut stopping = req
                    .extensions()
                    .get::<Stopping>()
                    .cloned()
                    .expect("the stop signal in the extensions");
                assert!(!stopping.is_stopping());
                tokio::spawn(async move {
                    let Ok(upgraded) = upgrade.await else { return };
                    let mut io = TokioIo::new(upgraded);
                    let mut buf = [0u8; 64];
                    loop {
                        tokio::select! {
                            () = stopping.stopped(), if cooperates => return,
                            read = io.read(&mut buf) => if !read.is_ok_and(|n| n > 0) { return },
                        }
                    }
                });
                axum::http::Response::builder()
                    .status(axum::http::StatusCode::SWITCHING_PROTOCOLS)
                    .header("connection", "upgrade")
                    .header("upgrade", "test")
                    .body(axum::body::Body::empty())
                    .expect("response")
            }),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_drain_waits_for_upgraded_streams_whose_handlers_learn_of_the_stop() {
        for cooperates in [true, false] {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let options = ServeOptions {
                drain_timeout: Duration::from_secs(2),
                ..ServeOptions::default()
            };
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(serve(listener, upgrading(cooperates), options, async {
                let _ = stopped.await;
            }));
            let mut client = tokio::net::TcpStream::connect(addr).await.expect("connect");
            client
                .write_all(b"GET /upgrade HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: test\r\n\r\n")
                .await
                .expect("write");
            let mut head = [0u8; 12];
            client.read_exact(&mut head).await.expect("read");
            assert_eq!(&head, b"HTTP/1.1 101");
            // Let the handler's task take the upgraded stream.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let begun = Instant::now();
            let _ = stop.send(());
            if !cooperates {
                // While it drains, a new client is refused at once.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let refused = tokio::net::TcpStream::connect(addr).await;
                assert!(
                    refused.is_err(),
                    "a connection was accepted during the drain"
                );
            }
            tokio::time::timeout(Duration::from_secs(5), server)
                .await
                .expect("serve returns")
                .expect("joined")
                .expect("served");
            let took = begun.elapsed();
            if cooperates {
                // Closed by its handler at the stop: no wait for the drain timeout.
                assert!(took < Duration::from_secs(1), "{took:?}");
                assert!(
                    closed_within(&mut client, Duration::from_secs(1)).await,
                    "the upgraded stream is still open"
                );
            } else {
                // Left open by its handler: waited for, up to the drain timeout.
                assert!(took >= Duration::from_millis(1900), "{took:?}");
            }
        }
    }

    /// The size of [`big`]'s body: more than loopback's socket buffers hold.
    const BIG: usize = 64 << 20;

    /// A router whose `/big` streams [`BIG`] bytes, 64 KiB a frame, `/full` answers them in
    /// one frame, `/chunky` half of them in 8 MiB frames, and `/` answers `ok`.
    fn big() -> Router {
        static CHUNK: [u8; 64 << 10] = [b'x'; 64 << 10];
        Router::new()
            .route("/", axum::routing::get(|| async { "ok" }))
            .route(
                "/full",
                axum::routing::get(|| async { bytes::Bytes::from(vec![b'x'; BIG]) }),
            )
            .route(
                "/chunky",
                axum::routing::get(|| async {
                    let chunk = bytes::Bytes::from(vec![b'x'; 8 << 20]);
                    let chunks = futures_util::stream::iter(
                        std::iter::repeat_n(chunk, BIG / 2 / (8 << 20))
                            .map(Ok::<_, std::convert::Infallible>),
                    );
                    axum::body::Body::from_stream(chunks)
                }),
            )
            .route(
                "/big",
                axum::routing::get(|| async {
                    let chunks = futures_util::stream::iter(
                        std::iter::repeat_n(bytes::Bytes::from_static(&CHUNK), BIG / CHUNK.len())
                            .map(Ok::<_, std::convert::Infallible>),
                    );
                    axum::body::Body::from_stream(chunks)
                }),
            )
    }

    /// Bounds for the send-timeout tests: 300 ms without progress, looked at every 300 ms, one
    /// connection at a time.
    fn stall_bounds() -> ServeOptions {
        ServeOptions {
            send_timeout: Duration::from_millis(300),
            header_read_timeout: Duration::from_millis(300),
            max_connections: 1,
            ..ServeOptions::default()
        }
    }

    /// A plain `GET /` on a new HTTP/1 connection is answered within `within`.
    async fn served_within(addr: std::net::SocketAddr, within: Duration) -> bool {
        let attempt = async {
            let mut next = tokio::net::TcpStream::connect(addr).await.ok()?;
            next.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut answer = Vec::new();
            next.read_to_end(&mut answer).await.ok()?;
            Some(answer.starts_with(b"HTTP/1.1 200"))
        };
        tokio::time::timeout(within, attempt)
            .await
            .ok()
            .flatten()
            .unwrap_or(false)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_http1_client_that_stops_reading_loses_its_connection_and_place() {
        // Streamed, and in one frame (hyper has taken the whole body, and the request has
        // ended, long before the bytes are out).
        for path in ["/big", "/full"] {
            stops_reading(path).await;
        }
    }

    async fn stops_reading(path: &str) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(serve(
            listener,
            big(),
            stall_bounds(),
            std::future::pending(),
        ));
        let mut stalled = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stalled
            .write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let mut head = [0u8; 12];
        stalled.read_exact(&mut head).await.expect("read");
        assert_eq!(&head, b"HTTP/1.1 200");
        // It reads nothing more. Its connection held the only place; once dropped, another
        // client is served (without the send timeout: never, as long as it stalls).
        let begun = Instant::now();
        assert!(
            served_within(addr, Duration::from_secs(10)).await,
            "{path}: not served within 10 s of a stalled client"
        );
        let took = begun.elapsed();
        assert!(took >= Duration::from_millis(250), "{path}: {took:?}");
        // What was on its way arrives, then the end: cut short of the whole body.
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stalled.read_to_end(&mut rest))
            .await
            .expect("closed");
        // A reset (the server dropped unsent data) is a close as well.
        if read.is_ok() {
            assert!(
                rest.len() < BIG,
                "{path}: the whole body arrived: {}",
                rest.len()
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_http2_client_that_grants_no_window_loses_its_connection_and_place() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(serve(
            listener,
            big(),
            stall_bounds(),
            std::future::pending(),
        ));
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("handshake");
        // The client's connection keeps running (answers pings, reads the socket); only the
        // response's body is never read, so its stream's window is never granted again.
        let conn = tokio::spawn(conn);
        let request = axum::http::Request::get(format!("http://{addr}/big"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .expect("request");
        let response = send.send_request(request).await.expect("response");
        assert_eq!(response.status(), 200);
        assert!(
            served_within(addr, Duration::from_secs(10)).await,
            "not served within 10 s of a stalled HTTP/2 client"
        );
        // Its connection was dropped by the server.
        tokio::time::timeout(Duration::from_secs(5), conn)
            .await
            .expect("the client's connection ended")
            .expect("joined")
            .ok();
        drop(response);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_handler_is_not_cut() {
        // Each chunk comes 150 ms after the last, longer than the send timeout: the time a
        // handler takes does not count.
        streamed_whole(ServeOptions {
            send_timeout: Duration::from_millis(100),
            header_read_timeout: Duration::from_millis(100),
            ..ServeOptions::default()
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_steady_reader_is_not_cut() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        // A send timeout and an idle timeout far below the time each response takes to read.
        let options = ServeOptions {
            send_timeout: Duration::from_millis(300),
            header_read_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(300),
            ..ServeOptions::default()
        };
        tokio::spawn(serve(listener, big(), options, std::future::pending()));
        // Each response read 1 MiB at a time, 50 ms apart (about 20 MB/s): the socket drains a
        // little at a time and never stops for the send timeout. An 8 MiB frame takes 400 ms to
        // go out; the one-frame body's request ends long before its bytes do.
        for path in ["/big", "/full", "/chunky"] {
            let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
            conn.write_all(
                format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .expect("write");
            let mut total = 0usize;
            let mut buf = vec![0u8; 1 << 20];
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let mut taken = 0;
                while taken < buf.len() {
                    let n = tokio::time::timeout_at(deadline, conn.read(&mut buf[taken..]))
                        .await
                        .expect("within 60 s")
                        .expect("read");
                    if n == 0 {
                        break;
                    }
                    taken += n;
                }
                total += taken;
                if taken < buf.len() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // The head (and chunk sizes) besides the body.
            let body = if path == "/chunky" { BIG / 2 } else { BIG };
            assert!(total > body, "{path}: cut after {total} bytes");
        }
    }

    /// Bounds of `Duration::MAX` mean no bound, not an overflow: requests are served.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unbounded_options_serve() {
        let addr = short_bounds(ServeOptions {
            header_read_timeout: Duration::MAX,
            body_read_timeout: Duration::MAX,
            send_timeout: Duration::MAX,
            idle_timeout: Duration::MAX,
            max_connections: usize::MAX,
            drain_timeout: Duration::MAX,
        })
        .await;
        for _ in 0..2 {
            let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
            conn.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await
                .expect("write");
            let mut answer = Vec::new();
            tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut answer))
                .await
                .expect("answered")
                .expect("read");
            assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_headers_are_cut_off_and_others_served() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let options = ServeOptions {
            header_read_timeout: Duration::from_millis(300),
            ..ServeOptions::default()
        };
        tokio::spawn(serve(listener, app, options, std::future::pending()));
        let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
        slow.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n")
            .await
            .expect("write");
        // A normal request meanwhile.
        let mut ok = tokio::net::TcpStream::connect(addr).await.expect("connect");
        ok.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = String::new();
        ok.read_to_string(&mut answer).await.expect("read");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // The slow one is closed once the timeout passed.
        let mut buf = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(3), slow.read_to_end(&mut buf)).await;
        assert!(closed.is_ok(), "still open after 3 s");
    }
}
