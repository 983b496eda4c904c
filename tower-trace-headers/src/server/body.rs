use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// What the server layer does when a response ends: record its metrics (feature `metrics`).
/// Empty, and free, without them.
#[derive(Debug, Default)]
pub(crate) struct OnEnd {
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<crate::metrics::Pending>,
}

impl OnEnd {
    /// What to do at the end of `req`'s response, as `config` says.
    #[allow(unused_variables)]
    pub(crate) fn start<B>(
        config: &super::layer::ServerConfig,
        req: &http::Request<B>,
        trace: &crate::RequestTrace,
    ) -> Self {
        OnEnd {
            #[cfg(feature = "metrics")]
            metrics: config
                .metrics
                .as_ref()
                .map(|m| m.start(req, config.route, trace)),
        }
    }

    /// The response head is known.
    #[allow(unused_variables)]
    pub(crate) fn response(&mut self, status: http::StatusCode, headers: &http::HeaderMap) {
        #[cfg(feature = "metrics")]
        if let Some(m) = &mut self.metrics {
            m.response(status, headers);
        }
    }

    /// The service failed: no response.
    pub(crate) fn failed(self) {
        #[cfg(feature = "metrics")]
        if let Some(m) = self.metrics {
            m.failed();
        }
    }

    /// Trailers arrived.
    #[allow(unused_variables)]
    fn trailers(&mut self, trailers: &http::HeaderMap) {
        #[cfg(feature = "metrics")]
        if let Some(m) = &mut self.metrics {
            m.trailers(trailers);
        }
    }

    /// The response ended (once; later calls do nothing).
    #[allow(unused_variables)]
    fn end(&mut self, how: End) {
        #[cfg(feature = "metrics")]
        if let Some(m) = self.metrics.take() {
            m.record(match how {
                End::Complete => crate::metrics::End::Complete,
                End::Failed => crate::metrics::End::Failed,
                End::Dropped => crate::metrics::End::Dropped,
            });
        }
    }

    fn is_pending(&self) -> bool {
        #[cfg(feature = "metrics")]
        if self.metrics.is_some() {
            return true;
        }
        false
    }
}

#[derive(Clone, Copy)]
enum End {
    Complete,
    Failed,
    Dropped,
}

pin_project! {
    /// The response body of [`TraceHeaders`](super::TraceHeaders): the inner body, frame for
    /// frame, watched for its end (and its trailers, where gRPC puts its status) so a request
    /// is measured until its last byte (feature `metrics`). Without anything to record it
    /// only forwards.
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        on_end: OnEnd,
        // Whether the body was polled at all.
        polled: bool,
    }

    impl<B> PinnedDrop for ResponseBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if this.on_end.is_pending() {
                // Never polled: an empty body, which hyper does not poll (a gRPC trailers-only
                // response among them). Polled but not to its end: the client went away.
                let how = if *this.polled { End::Dropped } else { End::Complete };
                this.on_end.end(how);
            }
        }
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn new(inner: B, on_end: OnEnd) -> Self {
        ResponseBody {
            inner,
            on_end,
            polled: false,
        }
    }

    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        *this.polled = true;
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if this.on_end.is_pending() {
            match &frame {
                Some(Ok(frame)) => {
                    if let Some(trailers) = frame.trailers_ref() {
                        this.on_end.trailers(trailers);
                    }
                    // Hyper stops polling a body that says it has ended.
                    if this.inner.is_end_stream() {
                        this.on_end.end(End::Complete);
                    }
                }
                Some(Err(_)) => this.on_end.end(End::Failed),
                None => this.on_end.end(End::Complete),
            }
        }
        Poll::Ready(frame)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("on_end", &self.on_end)
            .finish_non_exhaustive()
    }
}
