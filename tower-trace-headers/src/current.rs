//! The current request's trace: [`RequestTrace`], kept current across `.await` points and
//! carried into spawned tasks.
//!
//! The server layer makes the request's [`RequestTrace`] current while the inner service's
//! future is polled (on every poll, so it survives every `.await`), and the client layer
//! reads it for every outgoing call. Code anywhere inside the request — async or plain sync —
//! reads it with [`RequestTrace::current`]. A streaming response body (a tonic
//! server-streaming call, server-sent events) is polled after the handler returned, outside
//! its future: make its stream carry the trace with [`TraceStreamExt::with_current_trace`].
//!
//! **Spawned work:** a task does not inherit the trace by itself (a new task is polled
//! outside the request's future). Spawn it with [`spawn`] (feature `tokio`)
//! instead of `tokio::spawn`, or wrap it with [`FutureExt::with_current_trace`]: either
//! carries the request's trace, the current OpenTelemetry context (the application's span,
//! if one is current) and, with feature `tracing`, the current `tracing` span and
//! subscriber. The rule: whatever is current where the task is *spawned* is current while it
//! runs.
//!
//! **Application state:** baggage entries and [propagated fields](b3_propagation::field) the
//! application sets on the trace ([`RequestTrace::set_baggage`],
//! [`RequestTrace::set_field`]) travel with every call made afterwards by this request and
//! by the work it spawned, and are never seen by another request: the state lives in the
//! request's own [`RequestTrace`].
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
//! // A trace of our own. (In real code, name it after a span you report: see
//! // `RequestContext::from_span`. Inside a request, the server layer makes the trace.)
//! let trace = RequestTrace::new(RequestContext::from_span(SpanContext::new_root(Sampling::Accept)));
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use b3_propagation::{Baggage, ParseError, PropagatedField, RequestContext};
use futures_core::Stream;
use http::{HeaderName, HeaderValue};
use pin_project_lite::pin_project;

/// A request's tracing state, shared cheaply (an `Arc`) by everything that handles the
/// request: the extracted [`RequestContext`] with this hop's span, the baggage and fields
/// the application set, plus (feature `opentelemetry`) the OpenTelemetry context the
/// request's spans belong to.
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
    /// What the application changed (baggage, fields): a changed copy of `cx`.
    changes: Changes,
    correlation: Option<Correlation>,
}

#[derive(Default)]
struct Changes {
    changed: AtomicBool,
    /// Counts the changes (under the lock), so a recording can tell it is stale.
    version: AtomicU64,
    cx: Mutex<Option<Arc<RequestContext>>>,
}

/// Baggage keys recorded in the request's spans (Brave's correlation fields).
#[derive(Clone, Debug)]
pub(crate) struct Correlation {
    #[cfg_attr(
        not(any(feature = "tracing", feature = "opentelemetry")),
        allow(dead_code)
    )]
    pub(crate) keys: Arc<[String]>,
    #[cfg(feature = "tracing")]
    pub(crate) span: Option<tracing::Span>,
}

impl Correlation {
    /// Record the chosen keys of `baggage` in the request's spans.
    #[allow(unused_variables)]
    fn record(&self, baggage: &Baggage, otel: Option<&OtelContext>) {
        #[cfg(feature = "tracing")]
        if let Some(span) = &self.span {
            let mut text = String::new();
            for key in self.keys.iter() {
                if let Some(v) = baggage.get(key) {
                    if !text.is_empty() {
                        text.push(' ');
                    }
                    text.push_str(key);
                    text.push('=');
                    text.push_str(v);
                }
            }
            if !text.is_empty() {
                span.record("baggage", text.as_str());
            }
        }
        #[cfg(feature = "opentelemetry")]
        if let Some(cx) = otel {
            use opentelemetry::trace::TraceContextExt as _;
            let span = cx.span();
            if span.is_recording() {
                for key in self.keys.iter() {
                    if let Some(v) = baggage.get(key) {
                        span.set_attribute(opentelemetry::KeyValue::new(
                            format!("baggage.{key}"),
                            v.to_owned(),
                        ));
                    }
                }
            }
        }
    }
}

#[cfg(feature = "opentelemetry")]
type OtelContext = opentelemetry::Context;
#[cfg(not(feature = "opentelemetry"))]
type OtelContext = std::convert::Infallible;

impl RequestTrace {
    /// Wrap a request context. With feature `opentelemetry`, the OpenTelemetry context made
    /// current with it is its span as a remote parent, so spans the application starts
    /// inside join the trace.
    ///
    /// A caller's ids without a sampling decision (B3 "deferred") make a sampled parent
    /// there; [`with_deferred_sampling`](Self::with_deferred_sampling) chooses otherwise.
    #[must_use]
    pub fn new(cx: RequestContext) -> Self {
        #[cfg(feature = "opentelemetry")]
        let otel = crate::otel::remote_parent(&cx, b3_propagation::Sampling::Accept);
        Self::build(
            cx,
            #[cfg(feature = "opentelemetry")]
            otel,
            None,
        )
    }

    /// [`new`](Self::new), with `decision` for a caller's ids that came without a sampling
    /// decision (B3 "deferred": no `x-b3-sampled`, or one an untrusted edge discarded): the
    /// OpenTelemetry parent made current is sampled for
    /// [`Sampling::Accept`](b3_propagation::Sampling::Accept) and
    /// [`Sampling::Debug`](b3_propagation::Sampling::Debug), not for the others, so a
    /// `ParentBased` sampler follows it. What the server layer's
    /// [`deferred_sampling`](crate::TraceHeadersLayer::deferred_sampling) sets for its traces.
    #[cfg(feature = "opentelemetry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
    #[must_use]
    pub fn with_deferred_sampling(cx: RequestContext, decision: b3_propagation::Sampling) -> Self {
        let otel = crate::otel::remote_parent(&cx, decision);
        Self::build(cx, otel, None)
    }

    pub(crate) fn build(
        cx: RequestContext,
        #[cfg(feature = "opentelemetry")] otel: Option<opentelemetry::Context>,
        correlation: Option<Correlation>,
    ) -> Self {
        let mut trace = Self::fresh(cx);
        trace.complete(
            #[cfg(feature = "opentelemetry")]
            otel,
            correlation,
        );
        trace
    }

    /// A trace for `cx` that nobody else holds yet, to be changed through
    /// [`fresh_mut`](Self::fresh_mut) and finished with [`complete`](Self::complete): the
    /// context (some 900 bytes) is moved into its `Arc` once instead of being passed on by
    /// value while the spans start. (The server layer makes its context there in the first
    /// place: [`fresh_in`](Self::fresh_in).)
    #[inline]
    pub(crate) fn fresh(cx: RequestContext) -> Self {
        Self::fresh_in(|fresh| *fresh = cx)
    }

    /// [`fresh`](Self::fresh) for the context `make` writes into (an empty one), made where
    /// the trace holds it: not made elsewhere and then moved in.
    #[inline]
    pub(crate) fn fresh_in(make: impl FnOnce(&mut RequestContext)) -> Self {
        let mut inner = Arc::new(Inner {
            cx: RequestContext::new(),
            #[cfg(feature = "opentelemetry")]
            otel: None,
            changes: Changes::default(),
            correlation: None,
        });
        // Nobody else holds it yet.
        if let Some(inner) = Arc::get_mut(&mut inner) {
            make(&mut inner.cx);
        }
        RequestTrace { inner }
    }

    /// The context of a [`fresh`](Self::fresh) trace, to change (`None` once the trace is
    /// shared: it is then no longer being set up).
    #[cfg(feature = "opentelemetry")]
    pub(crate) fn fresh_mut(&mut self) -> Option<&mut RequestContext> {
        Arc::get_mut(&mut self.inner).map(|inner| &mut inner.cx)
    }

    /// Finish a [`fresh`](Self::fresh) trace: the OpenTelemetry context its spans belong to
    /// and the baggage keys its spans record (recorded now).
    pub(crate) fn complete(
        &mut self,
        #[cfg(feature = "opentelemetry")] otel: Option<opentelemetry::Context>,
        correlation: Option<Correlation>,
    ) {
        let inner = Arc::get_mut(&mut self.inner);
        debug_assert!(
            inner.is_some(),
            "only a fresh trace, not yet shared, is completed"
        );
        if let Some(inner) = inner {
            #[cfg(feature = "opentelemetry")]
            {
                inner.otel = otel;
            }
            inner.correlation = correlation;
        }
        if let Some(c) = &self.inner.correlation {
            c.record(self.inner.cx.baggage(), self.otel_ref());
        }
    }

    /// Wrap a request context with the OpenTelemetry context its spans belong to.
    #[cfg(feature = "opentelemetry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
    #[must_use]
    pub fn with_otel_context(cx: RequestContext, otel: opentelemetry::Context) -> Self {
        Self::build(cx, Some(otel), None)
    }

    /// The OpenTelemetry context of this request: its server span when this hop started one
    /// (a span a sampler dropped too: non-recording, so the application's spans follow the
    /// decision), else the caller's span as a remote parent, or, for a caller that sent only
    /// its sampling decision, a context that carries just that decision.
    #[cfg(feature = "opentelemetry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
    #[must_use]
    pub fn otel_context(&self) -> Option<&opentelemetry::Context> {
        self.inner.otel.as_ref()
    }

    #[allow(clippy::unused_self)]
    fn otel_ref(&self) -> Option<&OtelContext> {
        #[cfg(feature = "opentelemetry")]
        return self.inner.otel.as_ref();
        #[cfg(not(feature = "opentelemetry"))]
        None
    }

    /// The request context as received and derived by the server side. What the application
    /// changed since ([`set_baggage`](Self::set_baggage), [`set_field`](Self::set_field)) is
    /// in [`with_context`](Self::with_context).
    #[must_use]
    pub fn context(&self) -> &RequestContext {
        &self.inner.cx
    }

    /// Run `f` with the request context as every outgoing call sees it now: with the baggage
    /// and fields the application set.
    pub fn with_context<R>(&self, f: impl FnOnce(&RequestContext) -> R) -> R {
        if !self.inner.changes.changed.load(Ordering::Acquire) {
            return f(&self.inner.cx);
        }
        let changed = self
            .inner
            .changes
            .cx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match changed {
            Some(cx) => f(&cx),
            None => f(&self.inner.cx),
        }
    }

    /// Whether `other` is this very trace (the same request), not an equal copy.
    pub(crate) fn same(&self, other: &RequestTrace) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Whether this hop reports a span of its own for the request (see
    /// [`RequestContext::local`]): when not, it is transparent and every call names the
    /// caller's span.
    #[must_use]
    pub fn is_reported(&self) -> bool {
        self.inner.cx.local().is_some()
    }

    /// Change the application's copy of the context. On error nothing changes.
    fn change<E>(&self, f: impl FnOnce(&mut RequestContext) -> Result<(), E>) -> Result<(), E> {
        let changes = &self.inner.changes;
        let mut slot = changes.cx.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = match slot.as_deref() {
            Some(cx) => cx.clone(),
            None => self.inner.cx.clone(),
        };
        f(&mut next)?;
        *slot = Some(Arc::new(next));
        changes.version.fetch_add(1, Ordering::AcqRel);
        changes.changed.store(true, Ordering::Release);
        drop(slot);
        // Recorded after the lock is let go (recording runs the subscriber's and the span's
        // code, which may read this trace's baggage): the newest state, and again if another
        // change came meanwhile, so that when two tasks of the request change the baggage at
        // once the last recording is of the last change (a few rounds at most: each change
        // records itself too).
        if let Some(c) = &self.inner.correlation {
            for _ in 0..4 {
                let seen = changes.version.load(Ordering::Acquire);
                self.with_context(|cx| c.record(cx.baggage(), self.otel_ref()));
                if changes.version.load(Ordering::Acquire) == seen {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The baggage every outgoing call of this request carries now: what was received, with
    /// the application's changes.
    #[must_use]
    pub fn baggage(&self) -> Baggage {
        self.with_context(|cx| cx.baggage().clone())
    }

    /// Add or replace a baggage entry for the rest of this request: every call it makes from
    /// now on — and every call of the work it spawned — carries it (W3C `baggage`, and the
    /// prefixed forms the propagator's inject set asks for, such as `baggage-<key>` for B3
    /// peers). No other request sees it.
    ///
    /// # Errors
    ///
    /// As [`Baggage::set`]: a key that is not an HTTP token, a control character in the
    /// value, or the W3C limits passed. Nothing changes then.
    ///
    /// # Example
    ///
    /// ```
    /// use b3_propagation::{Propagator, RequestContext};
    /// use http::HeaderMap;
    /// use tower_trace_headers::RequestTrace;
    ///
    /// let trace = RequestTrace::new(RequestContext::new());
    /// trace.set_baggage("user-agent", "Mozilla/4.0 (compatible; Netscape 4.7)")?;
    ///
    /// let mut outgoing = HeaderMap::new();
    /// trace.with_context(|cx| Propagator::default().forward(cx, &mut outgoing));
    /// assert_eq!(outgoing["baggage-user-agent"], "Mozilla/4.0 (compatible; Netscape 4.7)");
    /// assert_eq!(outgoing["baggage"], "user-agent=Mozilla/4.0%20(compatible%3B%20Netscape%204.7)");
    /// # Ok::<(), b3_propagation::ParseError>(())
    /// ```
    pub fn set_baggage(
        &self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<(), ParseError> {
        let (key, value) = (key.into(), value.into());
        self.change(|cx| cx.baggage_mut().set(key, value))
    }

    /// Remove every baggage entry with this key for the rest of this request.
    pub fn remove_baggage(&self, key: &str) {
        let _ = self.change(|cx| {
            cx.baggage_mut().remove(key);
            Ok::<(), ParseError>(())
        });
    }

    /// The value of a [propagated field](b3_propagation::field) every outgoing call of this
    /// request carries now.
    #[must_use]
    pub fn field(&self, name: &HeaderName) -> Option<HeaderValue> {
        self.with_context(|cx| cx.field(name).cloned())
    }

    /// Set a [propagated field](b3_propagation::field) for the rest of this request (an
    /// application that authenticates its caller sets `end-user`, as Istio's bookinfo does).
    ///
    /// # Errors
    ///
    /// As [`RequestContext::set_field`]: a value that is empty, too long, or holds a control
    /// or non-ASCII byte. Nothing changes then.
    pub fn set_field(&self, field: &PropagatedField, value: HeaderValue) -> Result<(), ParseError> {
        self.change(|cx| cx.set_field(field, value))
    }

    /// Stop sending a propagated field for the rest of this request.
    pub fn remove_field(&self, name: &HeaderName) {
        let _ = self.change(|cx| {
            cx.remove_field(name);
            Ok::<(), ParseError>(())
        });
    }

    /// The trace current on this thread: the request being handled, or the one a future was
    /// wrapped with. `None` outside any request.
    #[must_use]
    pub fn current() -> Option<Self> {
        CURRENT.with(|c| c.borrow().clone())
    }

    /// Run `f` with the current trace without cloning it.
    ///
    /// The thread's current trace is borrowed while `f` runs, so `f` must not make another
    /// trace current: no [`enter`](Self::enter), no poll of a future wrapped with a trace or
    /// of a server layer's future, no call through the client layer with a request that
    /// carries a trace other than the current one. Those panic here; take
    /// [`current`](Self::current) (a cheap clone) for such work.
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
        // Dropped once the thread-local is free again: the last clone of a trace ends its
        // OpenTelemetry context, and so may run a span processor that reads the current trace.
        let left = CURRENT.with(|c| std::mem::replace(&mut *c.borrow_mut(), previous));
        drop(left);
    }
}

impl fmt::Debug for CurrentGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CurrentGuard").finish_non_exhaustive()
    }
}

/// Makes the trace in `slot` current by *moving* it into the thread-local (no reference count
/// touched), and moves it back into `slot` when dropped: what a future that owns its trace
/// does on every poll. See [`RequestTrace::enter`] for the borrowing form.
pub(crate) struct MovedIn<'a> {
    slot: &'a mut Option<RequestTrace>,
    previous: Option<RequestTrace>,
}

impl<'a> MovedIn<'a> {
    pub(crate) fn new(slot: &'a mut Option<RequestTrace>) -> Self {
        let previous = CURRENT.with(|c| std::mem::replace(&mut *c.borrow_mut(), slot.take()));
        MovedIn { slot, previous }
    }
}

impl Drop for MovedIn<'_> {
    fn drop(&mut self) {
        let previous = self.previous.take();
        *self.slot = CURRENT.with(|c| std::mem::replace(&mut *c.borrow_mut(), previous));
    }
}

/// What a spawned future carries besides the trace: the OpenTelemetry context and the
/// `tracing` span and subscriber current where it was wrapped.
#[derive(Clone, Default)]
struct Carried {
    #[cfg(feature = "opentelemetry")]
    otel: Option<opentelemetry::Context>,
    #[cfg(feature = "tracing")]
    span: Option<tracing::Span>,
    #[cfg(feature = "tracing")]
    dispatch: Option<tracing::Dispatch>,
}

impl Carried {
    #[allow(unused_variables, clippy::needless_update)]
    fn of(trace: Option<&RequestTrace>) -> Self {
        Carried {
            #[cfg(feature = "opentelemetry")]
            otel: trace.and_then(RequestTrace::otel_context).cloned(),
            ..Carried::default()
        }
    }

    /// Nothing of a request: an empty OpenTelemetry context hides the one current where
    /// the future is polled.
    #[allow(clippy::needless_update)]
    fn detached() -> Self {
        Carried {
            #[cfg(feature = "opentelemetry")]
            otel: Some(opentelemetry::Context::new()),
            ..Carried::default()
        }
    }

    fn current() -> Self {
        Carried {
            #[cfg(feature = "opentelemetry")]
            otel: Some(opentelemetry::Context::current()),
            #[cfg(feature = "tracing")]
            span: Some(tracing::Span::current()).filter(|s| !s.is_disabled()),
            #[cfg(feature = "tracing")]
            dispatch: Some(tracing::dispatcher::get_default(Clone::clone)),
        }
    }

    /// Run `f` (one poll) with what is carried current.
    fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        #[cfg(feature = "opentelemetry")]
        let _otel = self.otel.as_ref().map(|c| c.clone().attach());
        #[cfg(feature = "tracing")]
        if let Some(dispatch) = &self.dispatch {
            return tracing::dispatcher::with_default(dispatch, || {
                let _span = self.span.as_ref().map(tracing::Span::enter);
                f()
            });
        }
        f()
    }
}

pin_project! {
    /// A future, or a stream, with a [`RequestTrace`] current while it is polled. See
    /// [`FutureExt::with_trace`] and [`TraceStreamExt::with_trace`].
    #[must_use = "futures do nothing unless polled"]
    pub struct WithTrace<F> {
        #[pin]
        inner: F,
        trace: Option<RequestTrace>,
        carried: Carried,
    }
}

impl<F> WithTrace<F> {
    /// Wrap `inner`; with `None` it is polled with no trace current (the OpenTelemetry
    /// context current where it is polled stays: [`FutureExt::without_trace`] hides both).
    pub fn new(inner: F, trace: Option<RequestTrace>) -> Self {
        let carried = Carried::of(trace.as_ref());
        WithTrace {
            inner,
            trace,
            carried,
        }
    }

    /// Wrap `inner` to run outside any request: no trace current and, with feature
    /// `opentelemetry`, an empty OpenTelemetry context (see [`FutureExt::without_trace`]).
    fn detached(inner: F) -> Self {
        WithTrace {
            inner,
            trace: None,
            carried: Carried::detached(),
        }
    }

    /// Wrap `inner` with everything current now: the trace, the OpenTelemetry context and
    /// the `tracing` span and subscriber.
    fn current(inner: F) -> Self {
        WithTrace {
            inner,
            trace: RequestTrace::current(),
            carried: Carried::current(),
        }
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
        // The trace (or, with `None`, no trace: any current one is hidden) is moved in for
        // the poll and back out after it.
        let _current = MovedIn::new(this.trace);
        let inner = this.inner;
        this.carried.enter(|| inner.poll(cx))
    }
}

impl<S: Stream> Stream for WithTrace<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = self.project();
        let _current = MovedIn::new(this.trace);
        let inner = this.inner;
        this.carried.enter(|| inner.poll_next(cx))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl<F: fmt::Debug> fmt::Debug for WithTrace<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WithTrace")
            .field("inner", &self.inner)
            .field("trace", &self.trace)
            .finish_non_exhaustive()
    }
}

/// Carry a trace into a future (for example a spawned task).
pub trait FutureExt: Future + Sized {
    /// Poll this future with `trace` current (and, with feature `opentelemetry`, its
    /// OpenTelemetry context).
    fn with_trace(self, trace: RequestTrace) -> WithTrace<Self> {
        WithTrace::new(self, Some(trace))
    }

    /// Poll this future with what is current *now* (at the call): the trace, the
    /// OpenTelemetry context (the application's span, if one is current), and with feature
    /// `tracing` the current span and subscriber. For example
    /// `tokio::spawn(work().with_current_trace())` inside a handler; [`spawn`]
    /// does it for you.
    fn with_current_trace(self) -> WithTrace<Self> {
        WithTrace::current(self)
    }

    /// Poll this future outside any request: no trace current, and (feature
    /// `opentelemetry`) an empty OpenTelemetry context, so neither the request it was made
    /// in nor the one it happens to be polled in joins it. For work a request only sets off —
    /// a cache refresh, an audit write — that must not be reported as part of it: its calls
    /// name no span of the request, and spans it starts are roots. (A `tracing` span entered
    /// around the poll stays current, as `tracing` has no way to clear it: give the work's
    /// own spans `parent: None`.) Spawn it with `tokio::spawn`, not [`spawn`], which would
    /// keep the request's trace and `tracing` span alive, around it, until the work ends.
    /// [`WithTrace::new`] with `None` hides the trace alone.
    fn without_trace(self) -> WithTrace<Self> {
        WithTrace::detached(self)
    }
}

impl<F: Future> FutureExt for F {}

/// Carry a trace into a stream: for a streaming response (a tonic server-streaming or
/// bidirectional call, server-sent events, `axum::body::Body::from_stream`) whose items are
/// made — and whose calls are made — while the server polls the response body, after the
/// handler has returned. The server layer keeps the request's trace current while the
/// handler's future is polled, not while the body is; wrap the stream in the handler with
/// [`with_current_trace`](Self::with_current_trace) and its calls stay in the request's
/// trace. (A stream fed by a task, such as a channel's receiver, needs nothing: spawn the
/// task with [`spawn`] (feature `tokio`) or [`FutureExt::with_current_trace`].)
///
/// Named apart from the `StreamExt` of `futures` and `tokio-stream`, which streaming code
/// usually imports as well.
///
/// # Example
///
/// ```
/// use b3_propagation::{RequestContext, Sampling, SpanContext};
/// use futures_util::StreamExt as _;
/// use tower_trace_headers::{RequestTrace, TraceStreamExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let trace = RequestTrace::new(RequestContext::from_span(SpanContext::new_root(Sampling::Accept)));
/// let items = {
///     let _in_handler = trace.enter();
///     futures_util::stream::iter(0..2)
///         .map(|_| RequestTrace::current().and_then(|t| t.span()).map(|s| s.trace_id()))
///         .with_current_trace()
/// };
/// // Polled later, outside the handler, as a response body is.
/// let seen: Vec<_> = items.collect().await;
/// assert_eq!(seen, vec![trace.span().map(|s| s.trace_id()); 2]);
/// # }
/// ```
pub trait TraceStreamExt: Stream + Sized {
    /// Poll this stream with `trace` current (and, with feature `opentelemetry`, its
    /// OpenTelemetry context).
    fn with_trace(self, trace: RequestTrace) -> WithTrace<Self> {
        WithTrace::new(self, Some(trace))
    }

    /// Poll this stream with what is current *now* (at the call): the trace, the
    /// OpenTelemetry context (the application's span, if one is current), and with feature
    /// `tracing` the current span and subscriber.
    fn with_current_trace(self) -> WithTrace<Self> {
        WithTrace::current(self)
    }

    /// Poll this stream outside any request (see [`FutureExt::without_trace`]).
    fn without_trace(self) -> WithTrace<Self> {
        WithTrace::detached(self)
    }
}

impl<S: Stream> TraceStreamExt for S {}

/// Spawn `future` on the current tokio runtime with everything current now (the request's
/// trace, the OpenTelemetry context, the `tracing` span and subscriber): the task's calls
/// stay in the request's trace, under the span that spawned them. Use it wherever you would
/// write `tokio::spawn` inside a request.
///
/// # Panics
///
/// As `tokio::spawn`: outside a tokio runtime.
///
/// # Example
///
/// ```
/// use b3_propagation::{RequestContext, Sampling, SpanContext};
/// use tower_trace_headers::RequestTrace;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let trace = RequestTrace::new(RequestContext::from_span(SpanContext::new_root(Sampling::Accept)));
/// let _in_request = trace.enter();
/// let task = tower_trace_headers::spawn(async {
///     RequestTrace::current().and_then(|t| t.span()).map(|s| s.trace_id())
/// });
/// assert_eq!(task.await.unwrap(), trace.span().map(|s| s.trace_id()));
/// # }
/// ```
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(future.with_current_trace())
}

#[cfg(test)]
mod tests {
    use super::*;
    use b3_propagation::{Sampling, SpanContext};

    fn trace() -> RequestTrace {
        RequestTrace::new(RequestContext::from_span(SpanContext::new_root(
            Sampling::Accept,
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

    /// The last clone of a trace is dropped by the guard that made it current, and its drop
    /// runs code that reads the current trace (as a span processor ending the trace's span
    /// does): the thread-local is free by then, and says the trace is gone.
    #[cfg(feature = "opentelemetry")]
    #[test]
    fn the_last_clone_is_dropped_outside_the_borrow() {
        struct ReadsCurrent(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl Drop for ReadsCurrent {
            fn drop(&mut self) {
                assert!(RequestTrace::current().is_none());
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cx = RequestContext::from_span(SpanContext::new_root(Sampling::Accept));
        let otel = opentelemetry::Context::new().with_value(ReadsCurrent(dropped.clone()));
        let trace = RequestTrace::build(cx, Some(otel), None);
        let guard = trace.enter();
        drop(trace);
        drop(guard);
        assert!(dropped.load(std::sync::atomic::Ordering::SeqCst));
    }

    /// Polls `f` once, with a no-op waker.
    fn poll_once<T>(f: std::pin::Pin<&mut impl Future<Output = T>>) -> Poll<T> {
        f.poll(&mut Context::from_waker(std::task::Waker::noop()))
    }

    #[test]
    fn detached_work_sees_nothing_of_the_request_it_is_polled_in() {
        let a = trace();
        let _in_request = a.enter();
        #[cfg(feature = "opentelemetry")]
        let _otel = opentelemetry::trace::TraceContextExt::with_remote_span_context(
            &opentelemetry::Context::new(),
            opentelemetry::trace::SpanContext::new(
                opentelemetry::trace::TraceId::from_bytes([1; 16]),
                opentelemetry::trace::SpanId::from_bytes([2; 8]),
                opentelemetry::trace::TraceFlags::SAMPLED,
                true,
                opentelemetry::trace::TraceState::default(),
            ),
        )
        .attach();
        let seen = || {
            #[cfg(feature = "opentelemetry")]
            let otel = {
                use opentelemetry::trace::TraceContextExt as _;
                opentelemetry::Context::map_current(|c| c.span().span_context().is_valid())
            };
            #[cfg(not(feature = "opentelemetry"))]
            let otel = false;
            (RequestTrace::current().is_some(), otel)
        };
        let in_request = seen();
        let mut future = std::pin::pin!(async move { seen() }.without_trace());
        assert_eq!(poll_once(future.as_mut()), Poll::Ready((false, false)));
        let mut stream =
            std::pin::pin!(futures_util::stream::once(async move { seen() }).without_trace());
        let item = stream
            .as_mut()
            .poll_next(&mut Context::from_waker(std::task::Waker::noop()));
        assert_eq!(item, Poll::Ready(Some((false, false))));
        // Around it, the request is current as before.
        assert_eq!(seen(), in_request);
        assert!(in_request.0);
        #[cfg(feature = "opentelemetry")]
        assert!(in_request.1, "the OpenTelemetry context this test hides");
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
