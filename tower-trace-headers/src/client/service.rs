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
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let trace = req
            .extensions()
            .get::<RequestTrace>()
            .cloned()
            .or_else(RequestTrace::current);
        let extras = Extras::client(&self.config, &mut req, trace.as_ref());
        let future = {
            let _current = trace.as_ref().map(RequestTrace::enter);
            let _extras = extras.enter();
            self.inner.call(req)
        };
        ResponseFuture::new(future, trace, extras)
    }
}
