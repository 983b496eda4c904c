//! `item.v1.ItemService`: the catalogue. Item `i-3` is deliberately slower, so the order
//! fan-out's waterfall has a long bar; an injected tail latency (a fraction of requests made
//! slower) plays the canary's regression.

use std::future::Future;
use std::time::Duration;

use rand_shim::chance;
use tonic::{Request, Response, Status};

use super::ServiceOptions;
use crate::pb::item::v1::item_service_server::{ItemService, ItemServiceServer};
use crate::pb::item::v1::{GetItemRequest, Item};

/// The catalogue: `(id, name, price in cents)`.
pub const CATALOGUE: &[(&str, &str, i64)] = &[
    ("i-1", "espresso beans 1kg", 2_450),
    ("i-2", "milk jug", 1_290),
    ("i-3", "grinder", 18_900),
    ("i-4", "tamper", 2_990),
    ("i-5", "scale", 3_490),
    ("i-6", "filter papers", 590),
];

/// The item service.
#[derive(Clone, Debug)]
pub struct Items {
    version: String,
    base: Duration,
    slow: Duration,
    tail: Option<(f64, Duration)>,
}

impl Items {
    /// `version` answers with 2 ms per item and 25 ms for `i-3`.
    #[must_use]
    pub fn new(version: &str) -> Self {
        Items {
            version: version.to_owned(),
            base: Duration::from_millis(2),
            slow: Duration::from_millis(25),
            tail: None,
        }
    }

    /// Make a `fraction` (0..=1) of requests `extra` slower: a tail-latency regression.
    #[must_use]
    pub fn with_tail_latency(mut self, fraction: f64, extra: Duration) -> Self {
        self.tail = Some((fraction, extra));
        self
    }
}

#[tonic::async_trait]
impl ItemService for Items {
    async fn get_item(&self, request: Request<GetItemRequest>) -> Result<Response<Item>, Status> {
        let id = request.into_inner().id;
        let Some((_, name, price)) = CATALOGUE.iter().find(|(i, _, _)| *i == id) else {
            return Err(Status::not_found(format!(
                "no item {}",
                crate::shown_id(&id)
            )));
        };
        let mut delay = if id == "i-3" { self.slow } else { self.base };
        if let Some((fraction, extra)) = self.tail
            && chance(fraction)
        {
            delay += extra;
        }
        tokio::time::sleep(delay).await;
        Ok(Response::new(Item {
            id,
            name: (*name).to_owned(),
            price_cents: *price,
            version: self.version.clone(),
        }))
    }
}

/// Serve the item service on `listener` until `shutdown` completes.
///
/// # Errors
///
/// When the server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    items: Items,
    opts: ServiceOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (signal, cut_off) =
        super::bounded_shutdown(opts.health.draining_on(shutdown), opts.serve.drain_timeout);
    let server = tonic::transport::Server::builder()
        .layer(opts.dispatch_layer())
        .layer(opts.server_layer())
        .layer(opts.access_log_layer("item"))
        .add_service(opts.health.grpc::<ItemServiceServer<Items>>().await)
        .add_service(ItemServiceServer::new(items))
        .serve_with_incoming_shutdown(super::incoming(listener), signal);
    super::stop_by(server, cut_off).await
}

mod rand_shim {
    /// `true` with probability `p`, from the same fast generator the propagator uses.
    pub(super) fn chance(p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        let x = b3_propagation::SpanId::random().to_u64();
        (x as f64 / u64::MAX as f64) < p
    }
}
