//! `order.v1.OrderService`: prices every order by calling `item` once per line item,
//! concurrently (the fan-out of the field examples).

use std::future::Future;

use futures_util::future::try_join_all;
use tonic::{Request, Response, Status};

use super::{ServiceOptions, TracedChannel};
use crate::pb::item::v1::GetItemRequest;
use crate::pb::item::v1::item_service_client::ItemServiceClient;
use crate::pb::order::v1::order_service_server::{OrderService, OrderServiceServer};
use crate::pb::order::v1::{
    GetOrderRequest, LineItem, ListOrdersRequest, ListOrdersResponse, Order,
};

/// An order: `(id, user id, [(item id, quantity)])`.
pub type OrderRow = (&'static str, &'static str, &'static [(&'static str, i32)]);

/// The orders.
pub const ORDERS: &[OrderRow] = &[
    ("o-1", "u-1", &[("i-1", 2), ("i-3", 1), ("i-6", 3)]),
    ("o-2", "u-1", &[("i-2", 1), ("i-4", 1)]),
    ("o-3", "u-2", &[("i-5", 1), ("i-1", 1), ("i-3", 1)]),
    ("o-4", "u-3", &[("i-6", 2), ("i-2", 1)]),
    (
        "o-5",
        "u-4",
        &[("i-4", 1), ("i-5", 2), ("i-1", 1), ("i-3", 1)],
    ),
];

/// The order service.
#[derive(Clone, Debug)]
pub struct Orders {
    items: ItemServiceClient<TracedChannel>,
}

impl Orders {
    /// Orders priced by the item service behind `items`.
    #[must_use]
    pub fn new(items: TracedChannel) -> Self {
        Orders {
            items: ItemServiceClient::new(items),
        }
    }

    /// Price one order: one `item` call per line item, all at once, inside a span of the
    /// application's own (`tracing`, exported through `tracing-opentelemetry` by this
    /// service's provider), so the item calls hang under it in the trace.
    #[tracing::instrument(
        name = "price order",
        skip_all,
        fields(order.id = id, order.lines = lines.len())
    )]
    async fn price(&self, id: &str, user: &str, lines: &[(&str, i32)]) -> Result<Order, Status> {
        let calls = lines.iter().map(|(item, quantity)| {
            let mut client = self.items.clone();
            let item = (*item).to_owned();
            let quantity = *quantity;
            async move {
                let it = client
                    .get_item(GetItemRequest { id: item })
                    .await?
                    .into_inner();
                Ok::<_, Status>(LineItem {
                    item_id: it.id,
                    name: it.name,
                    quantity,
                    price_cents: it.price_cents * i64::from(quantity),
                    served_by: it.version,
                })
            }
        });
        let items = try_join_all(calls).await?;
        Ok(Order {
            id: id.to_owned(),
            user_id: user.to_owned(),
            total_cents: items.iter().map(|l| l.price_cents).sum(),
            items,
        })
    }
}

#[tonic::async_trait]
impl OrderService for Orders {
    async fn get_order(
        &self,
        request: Request<GetOrderRequest>,
    ) -> Result<Response<Order>, Status> {
        let id = request.into_inner().id;
        let Some((id, user, lines)) = ORDERS.iter().find(|(i, _, _)| *i == id) else {
            return Err(Status::not_found(format!(
                "no order {}",
                crate::shown_id(&id)
            )));
        };
        Ok(Response::new(self.price(id, user, lines).await?))
    }

    async fn list_orders(
        &self,
        request: Request<ListOrdersRequest>,
    ) -> Result<Response<ListOrdersResponse>, Status> {
        let user = request.into_inner().user_id;
        let mine = ORDERS.iter().filter(|(_, u, _)| *u == user);
        let orders = try_join_all(mine.map(|(id, u, lines)| self.price(id, u, lines))).await?;
        Ok(Response::new(ListOrdersResponse { orders }))
    }
}

/// Serve the order service on `listener` until `shutdown` completes.
///
/// # Errors
///
/// When the server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    orders: Orders,
    opts: ServiceOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (signal, cut_off) =
        super::bounded_shutdown(opts.health.draining_on(shutdown), opts.serve.drain_timeout);
    let server = tonic::transport::Server::builder()
        .layer(opts.dispatch_layer())
        .layer(opts.server_layer())
        .layer(opts.access_log_layer("order"))
        .add_service(opts.health.grpc::<OrderServiceServer<Orders>>().await)
        .add_service(OrderServiceServer::new(orders))
        .serve_with_incoming_shutdown(super::incoming(listener), signal);
    super::stop_by(server, cut_off).await
}
