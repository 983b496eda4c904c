use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use super::ResponseBody;
use crate::body::{End, OnEnd};
use crate::current::RequestTrace;
use crate::extras::Extras;

pin_project! {
    /// The response future of [`PropagateTraceHeaders`](super::PropagateTraceHeaders): polls
    /// the call with its client span entered and hands the span to the [`ResponseBody`],
    /// which ends it with the body (or ends it here when the call fails, or when the future
    /// is dropped before the response: a gRPC call then ends `CANCELLED`).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        // The call's own trace, when it is not the one current where the call was made.
        trace: Option<RequestTrace>,
        extras: Extras,
        // The inner future panicked while polled: set around each poll, left set by a poll
        // that unwound.
        panicked: bool,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before its response: failed when the call panicked (as the server layer
            // records it), else a call whose caller went away (a timeout gave up, or the
            // request that made the call went away) — a gRPC one CANCELLED — not a span with
            // no status at all.
            let this = this.project();
            let mut ending = this.extras.ending();
            if ending.is_pending() {
                if *this.panicked {
                    ending.failed("panic");
                } else {
                    ending.end(End::Dropped, None);
                }
            }
        }
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, trace: Option<RequestTrace>, extras: Extras) -> Self {
        ResponseFuture {
            inner,
            trace,
            extras,
            panicked: false,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The call is polled by its caller, inside the request's trace already, except for a
        // call that carries a trace of its own (in its extensions) that is not current: that
        // one is entered, as it was for the inner `call`. The client span (if any) is
        // entered for instrumentation below this layer.
        let result = {
            // Moved into the thread-local for the poll and back (no reference count touched).
            let _current = this
                .trace
                .is_some()
                .then(|| crate::current::MovedIn::new(this.trace));
            let _extras = this.extras.enter();
            *this.panicked = true;
            let polled = this.inner.poll(cx);
            *this.panicked = false;
            ready!(polled)
        };
        Poll::Ready(match result {
            Ok(response) => {
                let mut on_end = OnEnd::with_spans(None, this.extras.ending());
                if let Some(on_end) = &mut on_end {
                    on_end.response(&response);
                }
                Ok(response.map(|body| ResponseBody::new(body, on_end)))
            }
            Err(e) => {
                this.extras.ending().failed(std::any::type_name::<E>());
                Err(e)
            }
        })
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("trace", &self.trace)
            .finish_non_exhaustive()
    }
}
