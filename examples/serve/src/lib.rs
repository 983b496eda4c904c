//! Serving an HTTP router the way a service facing clients, or a collector open to a
//! cluster, must: through hyper-util with a timer, so that
//!
//! - a client that does not finish its request headers within
//!   [`ServeOptions::header_read_timeout`] is cut off (`axum::serve` gives hyper no timer, so
//!   its header-read timeout never fires, and a tower timeout never sees a slow header read);
//!   the same timer bounds how long a keep-alive connection may sit idle before its next
//!   request;
//! - at most [`ServeOptions::max_connections`] connections are open at once (further ones wait
//!   in the listen backlog);
//! - the shutdown future stops accepting and drains the connections (requests in flight finish,
//!   bounded by [`ServeOptions::drain_timeout`]).
//!
//! HTTP/1.1 and HTTP/2 (h2c) are both served, as `axum::serve` does, and every request carries
//! its peer's address as `axum::extract::ConnectInfo<SocketAddr>` in its extensions.
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
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The bounds a server keeps. See the [crate docs](crate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeOptions {
    /// How long a client may take to send a request's headers (and how long a keep-alive
    /// connection may sit idle before its next request). Default 5 s.
    pub header_read_timeout: Duration,
    /// Most connections open at once. Default 4 096.
    pub max_connections: usize,
    /// How long a graceful stop waits for the requests in flight. Default 10 s.
    pub drain_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_read_timeout: Duration::from_secs(5),
            max_connections: 4096,
            drain_timeout: Duration::from_secs(10),
        }
    }
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
        .header_read_timeout(options.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let permits = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
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
        // Each request knows its peer, as with `axum::serve` and `ConnectInfo`.
        let service = TowerToHyperService::new(tower::util::MapRequest::new(
            router.clone(),
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                req
            },
        ));
        let builder = Arc::clone(&builder);
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    let _ = tokio::time::timeout(options.drain_timeout, graceful.shutdown()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
