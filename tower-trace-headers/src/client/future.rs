use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use crate::current::RequestTrace;
use crate::extras::Extras;

pin_project! {
    /// The response future of [`PropagateTraceHeaders`](super::PropagateTraceHeaders): polls
    /// the call with its trace current and ends the client span with the response.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        trace: Option<RequestTrace>,
        extras: Extras,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, trace: Option<RequestTrace>, extras: Extras) -> Self {
        ResponseFuture {
            inner,
            trace,
            extras,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The call is polled by its caller, inside the request's trace already: only the
        // client span (if any) is entered, for instrumentation below this layer.
        let result = {
            let _extras = this.extras.enter();
            ready!(this.inner.poll(cx))
        };
        match &result {
            Ok(response) => this
                .extras
                .finish(Ok((response.status(), response.headers()))),
            Err(_) => this.extras.finish(Err(())),
        }
        Poll::Ready(result)
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("trace", &self.trace)
            .finish_non_exhaustive()
    }
}
