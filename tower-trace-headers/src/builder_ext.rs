//! `ServiceBuilder` sugar.

use tower::ServiceBuilder;
use tower::layer::util::Stack;

use crate::client::PropagateTraceHeadersLayer;
use crate::server::TraceHeadersLayer;

mod sealed {
    pub trait Sealed<T> {}
    impl<L> Sealed<L> for tower::ServiceBuilder<L> {}
}

/// Extension methods on [`ServiceBuilder`] for this crate's layers.
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_trace_headers::ServiceBuilderExt;
///
/// let server = ServiceBuilder::new().trace_headers();
/// let client = ServiceBuilder::new().propagate_trace_headers();
/// # drop((server, client));
/// ```
pub trait ServiceBuilderExt<L>: sealed::Sealed<L> + Sized {
    /// Add a [`TraceHeadersLayer`] with the default configuration (server side).
    fn trace_headers(self) -> ServiceBuilder<Stack<TraceHeadersLayer, L>>;

    /// Add a [`PropagateTraceHeadersLayer`] in instrument mode (client side).
    fn propagate_trace_headers(self) -> ServiceBuilder<Stack<PropagateTraceHeadersLayer, L>>;

    /// Add a [`PropagateTraceHeadersLayer`] in forward mode (client side).
    fn forward_trace_headers(self) -> ServiceBuilder<Stack<PropagateTraceHeadersLayer, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn trace_headers(self) -> ServiceBuilder<Stack<TraceHeadersLayer, L>> {
        self.layer(TraceHeadersLayer::new())
    }

    fn propagate_trace_headers(self) -> ServiceBuilder<Stack<PropagateTraceHeadersLayer, L>> {
        self.layer(PropagateTraceHeadersLayer::instrument())
    }

    fn forward_trace_headers(self) -> ServiceBuilder<Stack<PropagateTraceHeadersLayer, L>> {
        self.layer(PropagateTraceHeadersLayer::forward())
    }
}
