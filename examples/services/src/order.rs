//! `order.v1.OrderService`: prices every order by calling `item` once per line item,
//! concurrently (the fan-out of the field examples).

use std::future::Future;

use futures_util::future::try_join_all;
use tonic::{Code, Request, Response, Status};

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
                    .await
                    .map_err(item_failed)?
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

/// What `order` answers when a call to `item` fails. A dependency's code is not this
/// service's to pass on (gRPC's status-code guidance): an item the order names that `item`
/// does not know, or an id it refuses, is this service's fault (`INTERNAL`), not its caller's
/// (`NOT_FOUND` would read as "no such order", `INVALID_ARGUMENT` as a bad request). An
/// `item` that is down, busy or late keeps its code (`UNAVAILABLE`, `RESOURCE_EXHAUSTED`,
/// `DEADLINE_EXCEEDED`, and `CANCELLED`, which is how tonic reports its own timeout), so
/// callers retry or time out as they would for this service.
fn item_failed(status: Status) -> Status {
    match status.code() {
        Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded | Code::Cancelled => {
            status
        }
        code => Status::internal(format!(
            "item answered {}: {}",
            code.description(),
            crate::shown_id(status.message())
        )),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::item::v1::Item;
    use crate::pb::item::v1::item_service_server::{ItemService, ItemServiceServer};

    /// An item service that answers every call with one status.
    struct Failing(Code);

    #[tonic::async_trait]
    impl ItemService for Failing {
        async fn get_item(&self, _: Request<GetItemRequest>) -> Result<Response<Item>, Status> {
            Err(Status::new(self.0, "no item i-1"))
        }
    }

    #[tokio::test]
    async fn items_codes_are_translated_not_passed_through() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (code_tx, code_rx) = tokio::sync::watch::channel(Code::NotFound);
        // One server whose answer the test changes between calls.
        struct Switching(tokio::sync::watch::Receiver<Code>);
        #[tonic::async_trait]
        impl ItemService for Switching {
            async fn get_item(&self, r: Request<GetItemRequest>) -> Result<Response<Item>, Status> {
                let code = *self.0.borrow();
                Failing(code).get_item(r).await
            }
        }
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(ItemServiceServer::new(Switching(code_rx)))
                .serve_with_incoming(crate::incoming(listener)),
        );
        let opts = crate::ServiceOptions {
            spans: false,
            ..crate::ServiceOptions::from_env(crate::telemetry::Telemetry::disabled("order"))
                .expect("options")
        };
        let orders = Orders::new(opts.channel(&format!("http://{addr}")).expect("channel"));
        for (item, order) in [
            (Code::NotFound, Code::Internal),
            (Code::InvalidArgument, Code::Internal),
            (Code::PermissionDenied, Code::Internal),
            (Code::Unavailable, Code::Unavailable),
            (Code::DeadlineExceeded, Code::DeadlineExceeded),
            (Code::ResourceExhausted, Code::ResourceExhausted),
            (Code::Cancelled, Code::Cancelled),
        ] {
            code_tx.send(item).expect("send");
            let answer = orders
                .get_order(Request::new(GetOrderRequest {
                    id: "o-1".to_owned(),
                }))
                .await
                .expect_err("item fails");
            assert_eq!(answer.code(), order, "item answered {item:?}: {answer:?}");
            if order == Code::Internal {
                assert!(answer.message().contains("no item i-1"), "{answer:?}");
            }
        }
        // An order that does not exist is still `NOT_FOUND`: that one is this service's.
        let missing = orders
            .get_order(Request::new(GetOrderRequest {
                id: "o-9".to_owned(),
            }))
            .await
            .expect_err("no order");
        assert_eq!(missing.code(), Code::NotFound);
    }
}
