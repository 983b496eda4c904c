//! Health: what probes and load balancers read.
//!
//! - `GET /healthz` (live): 200 while the process answers at all;
//! - `GET /readyz` (ready): 200 while the service is serving, 503 once it drains (after
//!   SIGTERM, before it stops). Readiness does not follow the upstreams: a service whose
//!   callee is down stays ready (its callers get a 502 they can see), so one failing service
//!   does not take the whole mesh out of rotation in a cascade;
//! - gRPC `grpc.health.v1.Health` on the gRPC services (user, order, item), `SERVING` until
//!   the service drains, for Envoy's health checks and the kubelet's gRPC probes.
//!
//! The frontend serves `/healthz` and `/readyz` on its own port; every service can also
//! serve them on an admin listener of its own (`--admin-listen`, env `ADMIN_LISTEN`), on an
//! address the kubelet reaches while the service itself listens on the pod's loopback behind
//! its sidecar. None of these requests is traced or logged.

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;

/// The path prefix of the gRPC health service (not traced, not logged).
pub const GRPC_HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";

/// Whether the service still takes new requests. Cheap to clone: clones share the state.
#[derive(Clone, Debug)]
pub struct Health {
    draining: Arc<tokio::sync::watch::Sender<bool>>,
    /// How long the service keeps serving after it turned not-ready (see
    /// [`with_shutdown_delay`](Self::with_shutdown_delay)).
    delay: std::time::Duration,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            draining: Arc::new(tokio::sync::watch::channel(false).0),
            delay: std::time::Duration::ZERO,
        }
    }
}

impl Health {
    /// A service that is serving.
    #[must_use]
    pub fn new() -> Self {
        Health::default()
    }

    /// Once the stop signal came, keep serving this long after turning not-ready, before the
    /// server stops accepting: the time a Kubernetes Service (or a load balancer probing
    /// `/readyz`) takes to stop sending. Zero by default (a process on its own stops at once).
    #[must_use]
    pub fn with_shutdown_delay(mut self, delay: std::time::Duration) -> Self {
        self.delay = delay;
        self
    }

    /// From now on `/readyz` answers 503 (and gRPC health `NOT_SERVING`): the service is about
    /// to stop.
    pub fn drain(&self) {
        self.draining.send_replace(true);
    }

    /// Whether [`drain`](Self::drain) was called.
    #[must_use]
    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// `/healthz` and `/readyz`.
    pub fn router(&self) -> Router {
        let health = self.clone();
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/readyz",
                get(move || {
                    let draining = health.is_draining();
                    async move {
                        if draining {
                            (StatusCode::SERVICE_UNAVAILABLE, "draining")
                        } else {
                            (StatusCode::OK, "ready")
                        }
                    }
                }),
            )
    }

    /// The gRPC health service for the service `S`, `SERVING` until this drains: `S` by
    /// name, and the server as a whole (the empty name, what the kubelet's gRPC probe and
    /// `grpc_health_probe` ask by default).
    pub async fn grpc<S: tonic::server::NamedService>(
        &self,
    ) -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>
    {
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter.set_serving::<S>().await;
        let mut draining = self.draining.subscribe();
        tokio::spawn(async move {
            if draining.wait_for(|d| *d).await.is_ok() {
                reporter.set_not_serving::<S>().await;
                reporter
                    .set_service_status("", tonic_health::ServingStatus::NotServing)
                    .await;
            }
        });
        service
    }

    /// `shutdown`, preceded by draining: readiness turns false as soon as the signal comes,
    /// and the server keeps serving for the [shutdown delay](Self::with_shutdown_delay), so
    /// load balancers stop sending before the server stops.
    pub fn draining_on(
        &self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let health = self.clone();
        async move {
            shutdown.await;
            health.drain();
            if !health.delay.is_zero() {
                tokio::time::sleep(health.delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn not_ready_first_then_stopped_after_the_delay() {
        let health = Health::new().with_shutdown_delay(Duration::from_millis(300));
        let (signal, signalled) = tokio::sync::oneshot::channel::<()>();
        let stop = tokio::spawn(health.draining_on(async {
            let _ = signalled.await;
        }));
        assert!(!health.is_draining());
        let _ = signal.send(());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(health.is_draining(), "not ready as soon as the signal came");
        assert!(!stop.is_finished(), "still serving during the delay");
        tokio::time::timeout(Duration::from_secs(5), stop)
            .await
            .expect("stopped after the delay")
            .expect("joined");
    }
}
