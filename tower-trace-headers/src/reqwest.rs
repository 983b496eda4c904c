//! A `reqwest-middleware` middleware for the client side (feature `reqwest`).
//!
//! # Example
//!
//! ```
//! use reqwest_middleware::ClientBuilder;
//! use tower_trace_headers::reqwest::TraceHeadersMiddleware;
//!
//! let client = ClientBuilder::new(reqwest::Client::new())
//!     .with(TraceHeadersMiddleware::instrument())
//!     .build();
//! # drop(client);
//! ```

use b3_propagation::Propagator;
use http::Extensions;
use reqwest_middleware::{Middleware, Next};

use crate::client::Mode;
use crate::current::RequestTrace;

/// Injects the current trace into every request a `reqwest_middleware::ClientWithMiddleware`
/// sends, in forward or instrument mode (see [`crate::client`]).
///
/// It starts no span of its own: in instrument mode the headers name the innermost reported
/// span current where the request is sent (the application's span, or the server layer's),
/// else the caller's span, unchanged (see [`crate::hop`]). Wrap the request in an
/// application span (`#[tracing::instrument]` with `tracing-opentelemetry`) for a span per
/// call.
#[derive(Clone, Debug, Default)]
pub struct TraceHeadersMiddleware {
    propagator: Propagator,
    mode: Mode,
}

impl TraceHeadersMiddleware {
    /// Instrument mode with the default propagator.
    #[must_use]
    pub fn instrument() -> Self {
        Self::default()
    }

    /// Forward mode with the default propagator.
    #[must_use]
    pub fn forward() -> Self {
        TraceHeadersMiddleware {
            mode: Mode::Forward,
            ..Self::default()
        }
    }

    /// Use this propagator.
    #[must_use]
    pub fn propagator(mut self, propagator: Propagator) -> Self {
        self.propagator = propagator;
        self
    }

    /// Switch the mode.
    #[must_use]
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }
}

#[async_trait::async_trait]
impl Middleware for TraceHeadersMiddleware {
    async fn handle(
        &self,
        mut req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let trace = extensions
            .get::<RequestTrace>()
            .cloned()
            .or_else(RequestTrace::current);
        crate::hop::inject(
            &self.propagator,
            self.mode,
            trace.as_ref(),
            req.headers_mut(),
        );
        next.run(req, extensions).await
    }
}
