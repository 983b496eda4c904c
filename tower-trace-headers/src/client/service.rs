use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::layer::{ClientConfig, Mode, PropagateTraceHeadersLayer};
use super::{ResponseBody, ResponseFuture};
use crate::current::RequestTrace;
use crate::extras::Extras;

/// Injects the current trace's headers into every outgoing request. See the
/// [module docs](crate::client).
#[derive(Clone, Debug)]
pub struct PropagateTraceHeaders<S> {
    pub(crate) inner: S,
    pub(crate) config: Arc<ClientConfig>,
}

impl<S> PropagateTraceHeaders<S> {
    /// Wrap `inner` in instrument mode with the default propagator.
    pub fn new(inner: S) -> Self {
        tower_layer::Layer::layer(&PropagateTraceHeadersLayer::instrument(), inner)
    }

    /// The mode in use.
    pub fn mode(&self) -> Mode {
        self.config.mode
    }

    /// The propagator in use.
    pub fn propagator(&self) -> &b3_propagation::Propagator {
        &self.config.propagator
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for PropagateTraceHeaders<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let config = &*self.config;
        // The request's trace: in the call's extensions (a request built from the incoming
        // one), else current on this thread. The extensions are taken out while the headers
        // are written, so the trace is borrowed, not cloned.
        let extensions = std::mem::take(req.extensions_mut());
        let (extras, entered) = match extensions.get::<RequestTrace>() {
            Some(trace) => {
                let extras = Extras::client(config, &mut req, Some(trace));
                // Made current for the inner call unless it already is.
                let current = RequestTrace::with_current(|c| c.is_some_and(|c| c.same(trace)));
                (extras, (!current).then(|| trace.clone()))
            }
            None if config.mode == Mode::Forward => {
                // Only this crate's code runs inside: the current trace is borrowed.
                let extras =
                    RequestTrace::with_current(|trace| Extras::client(config, &mut req, trace));
                (extras, None)
            }
            None => {
                // Instrument mode starts spans (a span processor is the application's code,
                // which may enter a trace itself): no borrow of the thread-local is held.
                let trace = RequestTrace::current();
                (Extras::client(config, &mut req, trace.as_ref()), None)
            }
        };
        let added = std::mem::replace(req.extensions_mut(), extensions);
        req.extensions_mut().extend(added);
        let mut extras = extras;
        let future = {
            // Dropped last: a panicking `call` ends the call's span.
            let mut no_measure = None;
            let unwinding = crate::body::FailOnUnwind::new(&mut extras, &mut no_measure);
            let _current = entered.as_ref().map(RequestTrace::enter);
            let _extras = unwinding.extras().enter();
            self.inner.call(req)
        };
        ResponseFuture::new(future, entered, extras)
    }
}
