use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::layer::{ServerConfig, TraceHeadersLayer};
use super::{ResponseBody, ResponseFuture};
use crate::body::OnEnd;
use crate::current::RequestTrace;
use crate::extras::Extras;

/// Extracts the tracing headers of each request and keeps its trace current while the inner
/// service handles it. See the [module docs](crate::server).
#[derive(Clone, Debug)]
pub struct TraceHeaders<S> {
    pub(crate) inner: S,
    pub(crate) config: Arc<ServerConfig>,
}

impl<S> TraceHeaders<S> {
    /// Wrap `inner` with the default configuration.
    pub fn new(inner: S) -> Self {
        tower_layer::Layer::layer(&TraceHeadersLayer::new(), inner)
    }

    /// A layer with the default configuration.
    #[must_use]
    pub fn layer() -> TraceHeadersLayer {
        TraceHeadersLayer::new()
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

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for TraceHeaders<S>
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
        if !config.skip_paths.is_empty() {
            let path = req.uri().path();
            if config.skip_paths.iter().any(|p| path_is_under(path, p)) {
                return ResponseFuture::untouched(self.inner.call(req));
            }
        }
        // Moved into the request's trace at once; the steps below borrow it.
        let trace = RequestTrace::fresh_in(|cx| {
            crate::hop::receive_into(&config.propagator, req.headers_mut(), cx);
        });
        // The route template, found once for the span and the metrics (when either is on).
        let route = config
            .route
            .filter(|_| config.uses_route())
            .and_then(|f| f(req.extensions()));
        let (extras, trace) = Extras::server(config, &req, route, trace);
        let on_end = OnEnd::server(config, &req, route, &trace);
        req.extensions_mut().insert(trace.clone());

        let (mut extras, mut on_end) = (extras, on_end);
        // Moved into the thread-local for the call and back out: no reference count touched.
        let mut trace = Some(trace);
        let future = {
            // Dropped last: a panicking `call` ends what the request started.
            let unwinding = crate::body::FailOnUnwind::new(&mut extras, &mut on_end);
            let _current = crate::current::MovedIn::new(&mut trace);
            let _extras = unwinding.extras().enter();
            self.inner.call(req)
        };
        ResponseFuture::new(future, trace, extras, config, on_end)
    }
}

impl RequestTrace {
    /// The trace a server layer stored in a request's extensions.
    #[must_use]
    pub fn from_request<B>(req: &Request<B>) -> Option<&RequestTrace> {
        req.extensions().get::<RequestTrace>()
    }
}

/// Whether `path` is `prefix` or below it, at a segment boundary, as
/// [`TraceHeadersLayer::skip_paths`](super::TraceHeadersLayer::skip_paths) matches: `/healthz`
/// is under `/healthz` and so is `/healthz/ready`, `/healthzX` is not; a prefix ending in `/`
/// has every path that starts with it under it. For code (an access log) that must skip the
/// same requests.
///
/// ```
/// use tower_trace_headers::server::path_is_under;
///
/// assert!(path_is_under("/healthz/ready", "/healthz"));
/// assert!(!path_is_under("/healthzX", "/healthz"));
/// assert!(path_is_under("/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/"));
/// ```
#[inline]
#[must_use]
pub fn path_is_under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::path_is_under as under;

    #[test]
    fn skipped_paths_match_at_segment_boundaries() {
        for (path, prefix, skipped) in [
            ("/healthz", "/healthz", true),
            ("/healthz/ready", "/healthz", true),
            ("/healthzX", "/healthz", false),
            ("/healthz", "/healthz/", false),
            (
                "/grpc.health.v1.Health/Check",
                "/grpc.health.v1.Health/",
                true,
            ),
            (
                "/grpc.health.v1.HealthX/Check",
                "/grpc.health.v1.Health/",
                false,
            ),
            ("/metrics", "/metrics", true),
            ("/metricsdump", "/metrics", false),
            ("/", "/", true),
            ("/anything", "/", true),
        ] {
            assert_eq!(under(path, prefix), skipped, "{path} under {prefix}");
        }
    }
}
