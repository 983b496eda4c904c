use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use b3_propagation::header::{TRACERESPONSE, X_REQUEST_ID};
use http::Response;
use pin_project_lite::pin_project;

use super::ResponseBody;
use super::layer::ServerConfig;
use crate::body::{End, OnEnd};
use crate::current::RequestTrace;
use crate::extras::Extras;

pin_project! {
    /// The response future of [`TraceHeaders`](super::TraceHeaders): polls the inner future
    /// with the request's trace current, then adds the response headers and hands the spans
    /// to the [`ResponseBody`], which ends them with the body.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        // `Some` between polls; moved into the thread-local while the inner future is polled.
        trace: Option<RequestTrace>,
        extras: Extras,
        // `x-request-id` echoed, `traceresponse` sent (written from the trace at the response).
        echo: bool,
        trace_response: bool,
        // What the request started (its measurement), boxed: `None` when nothing was.
        on_end: Option<Box<OnEnd>>,
        // The inner future panicked while polled (and a layer above caught it): set around
        // each poll, left set by a poll that unwound.
        panicked: bool,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // Dropped before its response: what the request started ends now — failed when
            // the service panicked, else as a body dropped before its end (the client went
            // away, or a timeout above gave up).
            if let Some(mut on_end) = OnEnd::with_spans(this.on_end.take(), this.extras.ending()) {
                if *this.panicked {
                    on_end.failed("panic");
                } else {
                    on_end.end(End::Dropped, None);
                }
            }
        }
    }
}

impl<F> ResponseFuture<F> {
    /// The inner future as it is: a request the layer skips.
    pub(crate) fn untouched(inner: F) -> Self {
        ResponseFuture {
            inner,
            trace: None,
            extras: Extras::default(),
            echo: false,
            trace_response: false,
            on_end: None,
            panicked: false,
        }
    }

    pub(crate) fn new(
        inner: F,
        trace: Option<RequestTrace>,
        extras: Extras,
        config: &ServerConfig,
        on_end: Option<Box<OnEnd>>,
    ) -> Self {
        ResponseFuture {
            inner,
            trace,
            extras,
            echo: config.echo_request_id,
            trace_response: config.trace_response,
            on_end,
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
        let result = {
            let _current = crate::current::MovedIn::new(this.trace);
            let _extras = this.extras.enter();
            // Set while the inner future is polled: still set if its poll panicked.
            *this.panicked = true;
            let polled = this.inner.poll(cx);
            *this.panicked = false;
            ready!(polled)
        };
        Poll::Ready(match result {
            Ok(mut response) => {
                if let Some(trace) = this.trace.as_ref() {
                    if *this.echo
                        && let Some(id) = trace.request_id()
                    {
                        response
                            .headers_mut()
                            .insert(X_REQUEST_ID, id.header_value().clone());
                    }
                    // The span this hop's calls name: its own when reported, else the caller's.
                    if *this.trace_response
                        && let Some(tr) = trace
                            .span()
                            .and_then(|s| b3_propagation::codec::traceparent::encode(&s))
                    {
                        response.headers_mut().insert(TRACERESPONSE, tr);
                    }
                }
                let mut on_end = OnEnd::with_spans(this.on_end.take(), this.extras.ending());
                if let Some(on_end) = &mut on_end {
                    on_end.response(&response);
                }
                Ok(response.map(|body| ResponseBody::new(body, on_end)))
            }
            Err(e) => {
                if let Some(on_end) = OnEnd::with_spans(this.on_end.take(), this.extras.ending()) {
                    on_end.failed(std::any::type_name::<E>());
                }
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
