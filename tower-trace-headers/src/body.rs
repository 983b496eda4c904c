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

/// What a request started, borrowed while the inner service's `call` runs: a `call` that
/// panics (the panic caught above, as tower-http's `CatchPanic` does) ends it as failed when
/// the guard is dropped unwinding, as a panic while the returned future is polled does;
/// otherwise the SDK would export the span with no status and the request would go
/// unmeasured. Dropped after a `call` that returned, it does nothing (a borrow, so nothing
/// is moved on the way).
pub(crate) struct FailOnUnwind<'a> {
    extras: &'a mut crate::extras::Extras,
    on_end: &'a mut Option<Box<OnEnd>>,
    /// A call made while another panic unwinds (from a drop guard): only a panic of its own
    /// counts.
    already_panicking: bool,
}

impl<'a> FailOnUnwind<'a> {
    pub(crate) fn new(
        extras: &'a mut crate::extras::Extras,
        on_end: &'a mut Option<Box<OnEnd>>,
    ) -> Self {
        FailOnUnwind {
            extras,
            on_end,
            already_panicking: std::thread::panicking(),
        }
    }

    /// What the call started, to enter around it.
    pub(crate) fn extras(&self) -> &crate::extras::Extras {
        self.extras
    }
}

impl Drop for FailOnUnwind<'_> {
    fn drop(&mut self) {
        if !self.already_panicking
            && std::thread::panicking()
            && let Some(on_end) = OnEnd::with_spans(self.on_end.take(), self.extras.ending())
        {
            on_end.failed("panic");
        }
    }
}

impl OnEnd {
    /// What the server layer does at the end of `req`'s response, as `config` says (its spans
    /// come with the response head).
    ///
    /// Boxed, and only when there is something to do (the request is measured): a response
    /// that ends nothing carries nothing.
    #[allow(unused_variables)]
    pub(crate) fn server<B>(
        config: &crate::server::layer::ServerConfig,
        req: &http::Request<B>,
        route: Option<&str>,
        trace: &crate::RequestTrace,
    ) -> Option<Box<Self>> {
        #[cfg(feature = "metrics")]
        if let Some(m) = &config.metrics {
            return Some(Box::new(OnEnd {
                metrics: Some(m.start(req, route, trace)),
                spans: Ending::default(),
            }));
        }
        None
    }

    /// `on_end` (what was started with the request, if anything) with the call's `spans`
    /// to end: boxed, and only when there is something to do.
    pub(crate) fn with_spans(on_end: Option<Box<OnEnd>>, spans: Ending) -> Option<Box<Self>> {
        match on_end {
            Some(mut on_end) => {
                on_end.spans = spans;
                Some(on_end)
            }
            None if spans.is_pending() => Some(Box::new(OnEnd {
                #[cfg(feature = "metrics")]
                metrics: None,
                spans,
            })),
            None => None,
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
            m.failed(error);
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
    pub(crate) fn end(&mut self, how: End, error: Option<&'static str>) {
        #[cfg(feature = "metrics")]
        if let Some(m) = self.metrics.take() {
            m.record(
                match how {
                    End::Complete => crate::metrics::End::Complete,
                    End::Failed => crate::metrics::End::Failed,
                    End::Dropped => crate::metrics::End::Dropped,
                },
                error,
            );
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
    /// A body read to its end, or one that fails, ends the spans then; an empty body never
    /// polled (hyper does not poll one) ends them when dropped, and so does one dropped before
    /// its end, polled or not (the reader went away: a gRPC call then counts as `CANCELLED`),
    /// or one that panicked while polled (a failure: `error.type` `panic`, gRPC `UNKNOWN`).
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        // Boxed, so a response that ends nothing (headers only) is its inner body and a word:
        // it moves as cheaply as the inner body does.
        on_end: Option<Box<OnEnd>>,
        // Whether the body was polled at all.
        polled: bool,
        // Whether it said it had ended before it was polled (an empty body).
        empty: bool,
        // The inner body panicked while polled (and whoever polled it caught the panic): set
        // around each poll, left set by a poll that unwound.
        panicked: bool,
    }

    impl<B> PinnedDrop for ResponseBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(on_end) = this.on_end.as_mut().filter(|o| o.is_pending()) {
                if *this.panicked {
                    // Its own failure, not the client leaving.
                    on_end.end(End::Failed, Some("panic"));
                    return;
                }
                // Never polled and empty: hyper does not poll a body that says it has ended
                // (a gRPC trailers-only response among them). Polled but not to its end, or
                // never polled with something left to send: the client went away.
                let how = if *this.polled || !*this.empty {
                    End::Dropped
                } else {
                    End::Complete
                };
                on_end.end(how, None);
            }
        }
    }
}

impl<B: Body> ResponseBody<B> {
    pub(crate) fn new(inner: B, on_end: Option<Box<OnEnd>>) -> Self {
        let empty = inner.is_end_stream();
        ResponseBody {
            inner,
            on_end,
            polled: false,
            empty,
            panicked: false,
        }
    }
}

impl<B> ResponseBody<B> {
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
        *this.panicked = true;
        let frame = this.inner.as_mut().poll_frame(cx);
        *this.panicked = false;
        let frame = ready!(frame);
        if let Some(on_end) = this.on_end.as_mut().filter(|o| o.is_pending()) {
            match &frame {
                Some(Ok(frame)) => {
                    if let Some(trailers) = frame.trailers_ref() {
                        // Trailers are a body's last frame, and hyper stops polling after them
                        // whatever `is_end_stream` says.
                        on_end.trailers(trailers);
                        on_end.end(End::Complete, None);
                    } else if this.inner.is_end_stream() {
                        // Hyper stops polling a body that says it has ended.
                        on_end.end(End::Complete, None);
                    }
                }
                Some(Err(_)) => on_end.end(End::Failed, Some(std::any::type_name::<B::Error>())),
                None => on_end.end(End::Complete, None),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A response that ends nothing (headers only, no measurement) carries no state: the body
    /// is its inner body and a word, so moving the response through the stack costs what it
    /// costs without the layer.
    #[test]
    fn a_body_that_ends_nothing_carries_nothing() {
        assert!(OnEnd::with_spans(None, Ending::default()).is_none());
        assert!(
            std::mem::size_of::<ResponseBody<()>>() <= 2 * std::mem::size_of::<usize>(),
            "{} bytes",
            std::mem::size_of::<ResponseBody<()>>()
        );
        let body = ResponseBody::new(http_body_util::Empty::<bytes::Bytes>::new(), None);
        assert!(body.is_end_stream());
        drop(body);
    }
}
