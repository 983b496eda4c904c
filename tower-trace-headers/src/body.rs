//! The response body of both layers: the inner body, frame for frame, watched for its end
//! (and its trailers, where gRPC puts its status), so spans and metrics cover a call until its
//! last byte.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::extras::Ending;

/// What a layer does when a response ends: end its spans (features `opentelemetry`,
/// `tracing`), record its metrics (feature `metrics`, server side). Empty, and free, without
/// them.
#[derive(Debug, Default)]
pub(crate) struct OnEnd {
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<crate::metrics::Pending>,
    /// The spans to end.
    pub(crate) spans: Ending,
}

impl OnEnd {
    /// What the server layer does at the end of `req`'s response, as `config` says (its spans
    /// come with the response head).
    #[allow(unused_variables)]
    pub(crate) fn server<B>(
        config: &crate::server::layer::ServerConfig,
        req: &http::Request<B>,
        route: Option<&str>,
        trace: &crate::RequestTrace,
    ) -> Self {
        OnEnd {
            #[cfg(feature = "metrics")]
            metrics: config.metrics.as_ref().map(|m| m.start(req, route, trace)),
            spans: Ending::default(),
        }
    }

    /// What the client layer does at the end of a call's response: end its span.
    pub(crate) fn client(spans: Ending) -> Self {
        OnEnd {
            #[cfg(feature = "metrics")]
            metrics: None,
            spans,
        }
    }

    /// The response head is known.
    #[allow(unused_variables)]
    pub(crate) fn response<B>(&mut self, response: &http::Response<B>) {
        #[cfg(feature = "metrics")]
        if let Some(m) = &mut self.metrics {
            m.response(response.status(), response.headers());
        }
        self.spans.response(response);
    }

    /// The service failed: no response. `error` names the error's type.
    #[allow(unused_variables)]
    pub(crate) fn failed(self, error: &'static str) {
        #[cfg(feature = "metrics")]
        if let Some(m) = self.metrics {
            m.failed();
        }
        self.spans.failed(error);
    }

    /// Trailers arrived.
    #[allow(unused_variables)]
    fn trailers(&mut self, trailers: &http::HeaderMap) {
        #[cfg(feature = "metrics")]
        if let Some(m) = &mut self.metrics {
            m.trailers(trailers);
        }
        self.spans.trailers(trailers);
    }

    /// The response ended (once; later calls do nothing). `error` names a body error's type.
    #[allow(unused_variables)]
    fn end(&mut self, how: End, error: Option<&'static str>) {
        #[cfg(feature = "metrics")]
        if let Some(m) = self.metrics.take() {
            m.record(match how {
                End::Complete => crate::metrics::End::Complete,
                End::Failed => crate::metrics::End::Failed,
                End::Dropped => crate::metrics::End::Dropped,
            });
        }
        self.spans.end(how, error);
    }

    fn is_pending(&self) -> bool {
        #[cfg(feature = "metrics")]
        if self.metrics.is_some() {
            return true;
        }
        self.spans.is_pending()
    }
}

/// How a response body ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// Read to its end.
    Complete,
    /// It failed.
    Failed,
    /// Dropped before its end (whoever read it went away).
    Dropped,
}

pin_project! {
    /// The response body of [`TraceHeaders`](crate::TraceHeaders) and
    /// [`PropagateTraceHeaders`](crate::PropagateTraceHeaders): the inner body, frame for
    /// frame, watched for its end (and its trailers, where gRPC puts its status), so the
    /// call's spans end (features `opentelemetry`, `tracing`) and a request is measured
    /// (feature `metrics`) at its last byte. Without anything to end or record it only
    /// forwards.
    ///
    /// A body read to its end, or one that fails, ends the spans then; a body never polled
    /// (an empty body, which hyper does not poll) ends them when dropped, and so does one
    /// dropped before its end (the reader went away: a gRPC call then counts as `CANCELLED`).
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
                this.on_end.end(how, None);
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
                        this.on_end.end(End::Complete, None);
                    }
                }
                Some(Err(_)) => this
                    .on_end
                    .end(End::Failed, Some(std::any::type_name::<B::Error>())),
                None => this.on_end.end(End::Complete, None),
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
