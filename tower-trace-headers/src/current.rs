//! The current request's trace: [`RequestTrace`], kept current across `.await` points and
//! carried into spawned tasks.
//!
//! The server layer makes the request's [`RequestTrace`] current while the inner service's
//! future is polled (on every poll, so it survives every `.await`), and the client layer
//! reads it for every outgoing call. Code anywhere inside the request — async or plain sync —
//! reads it with [`RequestTrace::current`]. A spawned task does not inherit it by itself (a
//! new task is polled outside the request's future): wrap the task with
//! [`FutureExt::with_current_trace`].
//!
//! No runtime is needed: the context is a thread-local set for the duration of each poll.
//!
//! # Example
//!
//! ```
//! use b3_propagation::{RequestContext, Sampling, SpanContext};
//! use tower_trace_headers::{FutureExt, RequestTrace};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let trace = RequestTrace::new(RequestContext::from_span(SpanContext::new_root(Sampling::Accept, false)));
//! let trace_id = trace.span().unwrap().trace_id();
//!
//! let task = async move {
//!     // Inside, even after an await point, the trace is current.
//!     tokio::task::yield_now().await;
//!     RequestTrace::current().and_then(|t| t.span()).map(|s| s.trace_id())
//! };
//! let seen = tokio::spawn(task.with_trace(trace.clone())).await.unwrap();
//! assert_eq!(seen, Some(trace_id));
//! assert!(RequestTrace::current().is_none()); // and not outside
//! # }
//! ```

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use b3_propagation::RequestContext;
use pin_project_lite::pin_project;

/// A request's tracing state, shared cheaply (an `Arc`): the extracted
/// [`RequestContext`] with this hop's span, plus (feature `opentelemetry`) the OpenTelemetry
/// context of the server span.
///
/// Stored in request extensions by the server layer, current while the request is handled.
#[derive(Clone)]
pub struct RequestTrace {
    inner: Arc<Inner>,
}

struct Inner {
    cx: RequestContext,
    #[cfg(feature = "opentelemetry")]
    otel: Option<opentelemetry::Context>,
}

impl RequestTrace {
    /// Wrap a request context.
    #[must_use]
    pub fn new(cx: RequestContext) -> Self {
        RequestTrace {
            inner: Arc::new(Inner {
                cx,
                #[cfg(feature = "opentelemetry")]
                otel: None,
            }),
        }
    }

    /// Wrap a request context with the OpenTelemetry context its spans belong to.
    #[cfg(feature = "opentelemetry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
    #[must_use]
    pub fn with_otel_context(cx: RequestContext, otel: opentelemetry::Context) -> Self {
        RequestTrace {
            inner: Arc::new(Inner {
                cx,
                otel: Some(otel),
            }),
        }
    }

    /// The OpenTelemetry context of this request's server span, if there is one.
    #[cfg(feature = "opentelemetry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
    #[must_use]
    pub fn otel_context(&self) -> Option<&opentelemetry::Context> {
        self.inner.otel.as_ref()
    }

    /// The request context.
    #[must_use]
    pub fn context(&self) -> &RequestContext {
        &self.inner.cx
    }

    /// The trace current on this thread: the request being handled, or the one a future was
    /// wrapped with. `None` outside any request.
    #[must_use]
    pub fn current() -> Option<Self> {
        CURRENT.with(|c| c.borrow().clone())
    }

    /// Run `f` with the current trace without cloning it.
    pub fn with_current<R>(f: impl FnOnce(Option<&RequestTrace>) -> R) -> R {
        CURRENT.with(|c| f(c.borrow().as_ref()))
    }

    /// Make this trace current until the guard is dropped (guards nest; drop them in reverse
    /// order, as scopes do).
    #[must_use = "the trace is current only while the guard lives"]
    pub fn enter(&self) -> CurrentGuard {
        let previous = CURRENT.with(|c| c.borrow_mut().replace(self.clone()));
        CurrentGuard {
            previous,
            _not_send: PhantomData,
        }
    }
}

impl Deref for RequestTrace {
    type Target = RequestContext;

    fn deref(&self) -> &RequestContext {
        &self.inner.cx
    }
}

impl fmt::Debug for RequestTrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RequestTrace").field(&self.inner.cx).finish()
    }
}

impl From<RequestContext> for RequestTrace {
    fn from(cx: RequestContext) -> Self {
        RequestTrace::new(cx)
    }
}

thread_local! {
    static CURRENT: RefCell<Option<RequestTrace>> = const { RefCell::new(None) };
}

/// Restores the previously current trace when dropped. Not `Send`: it belongs to the thread
/// (and the poll) that created it.
pub struct CurrentGuard {
    previous: Option<RequestTrace>,
    _not_send: PhantomData<*const ()>,
}

impl Drop for CurrentGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

impl fmt::Debug for CurrentGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentGuard").finish_non_exhaustive()
    }
}

pin_project! {
    /// A future with a [`RequestTrace`] current while it is polled. See
    /// [`FutureExt::with_trace`].
    #[must_use = "futures do nothing unless polled"]
    pub struct WithTrace<F> {
        #[pin]
        inner: F,
        trace: Option<RequestTrace>,
    }
}

impl<F> WithTrace<F> {
    /// Wrap `inner`; with `None` it is polled with no trace current.
    pub fn new(inner: F, trace: Option<RequestTrace>) -> Self {
        WithTrace { inner, trace }
    }

    /// The trace this future runs with.
    #[must_use]
    pub fn trace(&self) -> Option<&RequestTrace> {
        self.trace.as_ref()
    }
}

impl<F: Future> Future for WithTrace<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let Some(trace) = this.trace.as_ref() else {
            // Explicitly no trace: hide any current one from the inner future.
            let previous = CURRENT.with(|c| c.borrow_mut().take());
            let _restore = CurrentGuard {
                previous,
                _not_send: PhantomData,
            };
            return this.inner.poll(cx);
        };
        let _guard = trace.enter();
        #[cfg(feature = "opentelemetry")]
        let _otel = trace.otel_context().map(|c| c.clone().attach());
        this.inner.poll(cx)
    }
}

impl<F: fmt::Debug> fmt::Debug for WithTrace<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithTrace")
            .field("inner", &self.inner)
            .field("trace", &self.trace)
            .finish()
    }
}

/// Carry a trace into a future (for example a spawned task).
pub trait FutureExt: Future + Sized {
    /// Poll this future with `trace` current.
    fn with_trace(self, trace: RequestTrace) -> WithTrace<Self> {
        WithTrace::new(self, Some(trace))
    }

    /// Poll this future with the trace that is current *now* (at the call), for example
    /// `tokio::spawn(work().with_current_trace())` inside a handler.
    fn with_current_trace(self) -> WithTrace<Self> {
        WithTrace::new(self, RequestTrace::current())
    }
}

impl<F: Future> FutureExt for F {}

#[cfg(test)]
mod tests {
    use super::*;
    use b3_propagation::{Sampling, SpanContext};

    fn trace() -> RequestTrace {
        RequestTrace::new(RequestContext::from_span(SpanContext::new_root(
            Sampling::Accept,
            false,
        )))
    }

    #[test]
    fn guards_nest_and_restore() {
        let a = trace();
        let b = trace();
        assert!(RequestTrace::current().is_none());
        {
            let _ga = a.enter();
            {
                let _gb = b.enter();
                assert_eq!(RequestTrace::current().unwrap().span(), b.span());
            }
            assert_eq!(RequestTrace::current().unwrap().span(), a.span());
        }
        assert!(RequestTrace::current().is_none());
    }

    #[test]
    fn sync_code_sees_the_trace() {
        fn deep_sync_function() -> Option<b3_propagation::TraceId> {
            RequestTrace::with_current(|t| t.and_then(|t| t.span()).and_then(|s| s.trace_id()))
        }
        let a = trace();
        let _g = a.enter();
        assert_eq!(deep_sync_function(), a.span().unwrap().trace_id());
    }
}
