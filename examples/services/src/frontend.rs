//! `frontend`: the HTTP/1.1 JSON entry of the mesh. `/`, `/users/{id}` and `/orders/{id}` each
//! call `user` and `order` over gRPC (and `order` calls `item`), so every request touches all
//! four services.

use std::future::Future;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tonic::Code;
use tower_trace_headers::RequestTrace;

use super::{ServiceOptions, TracedChannel, UserChannel};
use crate::pb::order::v1::order_service_client::OrderServiceClient;
use crate::pb::order::v1::{GetOrderRequest, ListOrdersRequest, Order};
use crate::pb::user::v1::user_service_client::UserServiceClient;
use crate::pb::user::v1::{GetUserRequest, User};

/// The frontend's upstreams: `user` through `grpc-interceptor`'s client interceptor (see
/// [`UserChannel`] for shared span semantics), `order` through `tower-trace-headers`' client
/// layer: both ways a gRPC client carries the trace.
#[derive(Clone, Debug)]
pub struct Frontend {
    users: UserServiceClient<UserChannel>,
    orders: OrderServiceClient<TracedChannel>,
}

impl Frontend {
    /// A frontend calling `user` and `order` over these channels (see
    /// [`ServiceOptions::user_channel`], [`ServiceOptions::channel`]).
    #[must_use]
    pub fn new(user: UserChannel, order: TracedChannel) -> Self {
        Frontend {
            users: UserServiceClient::new(user),
            orders: OrderServiceClient::new(order),
        }
    }
}

/// An upstream failure, as JSON: `primary` when it answered the lookup the page is about (the
/// path's own id), whose NOT_FOUND is the page's 404; any other lookup's NOT_FOUND (the user of
/// an existing order) is the upstreams disagreeing, a 502.
#[derive(Debug)]
struct Upstream {
    status: tonic::Status,
    primary: bool,
}

impl Upstream {
    /// A failure of a lookup the page is not about.
    fn secondary(status: tonic::Status) -> Self {
        Upstream {
            status,
            primary: false,
        }
    }
}

impl IntoResponse for Upstream {
    fn into_response(self) -> Response {
        let status = match self.status.code() {
            Code::NotFound if self.primary => StatusCode::NOT_FOUND,
            Code::InvalidArgument => StatusCode::BAD_REQUEST,
            // The upstream's deadline, or the channel's timeout (which tonic reports as
            // CANCELLED with `TimeoutExpired`'s message): the gateway timed out.
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Code::Cancelled if self.status.message() == tonic::TimeoutExpired(()).to_string() => {
                StatusCode::GATEWAY_TIMEOUT
            }
            _ => StatusCode::BAD_GATEWAY,
        };
        (
            status,
            Json(json!({
                "error": self.status.message(),
                "code": format!("{:?}", self.status.code()),
            })),
        )
            .into_response()
    }
}

impl From<tonic::Status> for Upstream {
    fn from(status: tonic::Status) -> Self {
        Upstream {
            status,
            primary: true,
        }
    }
}

fn user_json(u: &User) -> Value {
    json!({"id": u.id, "name": u.name, "email": u.email})
}

fn order_json(o: &Order) -> Value {
    json!({
        "id": o.id,
        "user_id": o.user_id,
        "total_cents": o.total_cents,
        "items": o.items.iter().map(|l| json!({
            "item_id": l.item_id, "name": l.name, "quantity": l.quantity,
            "price_cents": l.price_cents, "served_by": l.served_by,
        })).collect::<Vec<_>>(),
    })
}

async fn user_page(f: &Frontend, id: String) -> Result<Json<Value>, Upstream> {
    let mut users = f.users.clone();
    let mut orders = f.orders.clone();
    let (user, list) = tokio::join!(
        users.get_user(GetUserRequest { id: id.clone() }),
        orders.list_orders(ListOrdersRequest { user_id: id }),
    );
    let user = user?.into_inner();
    let list = list.map_err(Upstream::secondary)?.into_inner();
    Ok(Json(json!({
        "user": user_json(&user),
        "orders": list.orders.iter().map(order_json).collect::<Vec<_>>(),
    })))
}

async fn index(State(f): State<Frontend>) -> Result<Json<Value>, Upstream> {
    user_page(&f, "u-1".to_owned()).await
}

async fn user(State(f): State<Frontend>, Path(id): Path<String>) -> Result<Json<Value>, Upstream> {
    user_page(&f, id).await
}

async fn order(State(f): State<Frontend>, Path(id): Path<String>) -> Result<Json<Value>, Upstream> {
    let order = f
        .orders
        .clone()
        .get_order(GetOrderRequest { id })
        .await?
        .into_inner();
    let user = f
        .users
        .clone()
        .get_user(GetUserRequest {
            id: order.user_id.clone(),
        })
        .await
        .map_err(Upstream::secondary)?
        .into_inner();
    Ok(Json(
        json!({"order": order_json(&order), "user": user_json(&user)}),
    ))
}

/// The baggage key the frontend copies the caller's `User-Agent` into.
pub const USER_AGENT_BAGGAGE: &str = "user-agent";

/// Copy the caller's `User-Agent` into the request's baggage (key `user-agent`), as the
/// field examples' frontend does: every call of the request carries it (`baggage`, and
/// `baggage-user-agent` for B3 peers), so a sidecar can route on it. A value baggage refuses
/// (a control character) is left out.
async fn user_agent_to_baggage(req: axum::extract::Request, next: Next) -> Response {
    if let (Some(trace), Some(ua)) = (
        RequestTrace::from_request(&req),
        req.headers().get(http::header::USER_AGENT),
    ) && let Ok(ua) = ua.to_str()
    {
        let _ = trace.set_baggage(USER_AGENT_BAGGAGE, ua);
    }
    next.run(req).await
}

/// The routes, with the access log and trace-headers layers.
pub fn router(frontend: Frontend, opts: &ServiceOptions) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/users/{id}", get(user))
        .route("/orders/{id}", get(order))
        .with_state(frontend)
        .layer(axum::middleware::from_fn(user_agent_to_baggage))
        .layer(opts.access_log_layer("frontend"))
        .layer(opts.server_layer())
        .layer(opts.dispatch_layer())
}

/// Serve the frontend on `listener` until `shutdown` completes, with its health checks
/// (`/healthz`, `/readyz`) and its metrics (`/metrics`) on the same port: for a frontend
/// without an admin listener. With one, use [`serve_behind_admin`].
///
/// # Errors
///
/// When the server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    frontend: Frontend,
    opts: ServiceOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let admin = opts.admin_router();
    serve_beside(listener, frontend, opts, shutdown, admin).await
}

/// [`serve()`] for a frontend whose admin listener serves its metrics
/// ([`ServiceOptions::admin_router`]): its own port, which clients reach (through the edge
/// proxy, the ingress gateway), answers the health checks but not `/metrics`, whose routes,
/// versions, latencies and exemplar trace ids of other users' requests are not theirs to read
/// (and whose scrapes are neither logged nor traced).
///
/// # Errors
///
/// When the server fails.
pub async fn serve_behind_admin(
    listener: tokio::net::TcpListener,
    frontend: Frontend,
    opts: ServiceOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let health = opts.health.router();
    serve_beside(listener, frontend, opts, shutdown, health).await
}

/// Serve the frontend's routes with `untraced` beside them (health checks, metrics: outside
/// the traced routes, so not traced, not logged, not counted).
async fn serve_beside(
    listener: tokio::net::TcpListener,
    frontend: Frontend,
    opts: ServiceOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
    untraced: axum::Router,
) -> std::io::Result<()> {
    let app = untraced.merge(router(frontend, &opts));
    let shutdown = opts.health.draining_on(shutdown);
    serve::serve(listener, app, opts.serve, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream failure's HTTP status: a timeout (the upstream's deadline or the channel's
    /// own, which tonic reports as CANCELLED) is 504, not 502.
    #[test]
    fn upstream_statuses() {
        let timed_out = tonic::Status::from_error(Box::new(tonic::TimeoutExpired(())));
        for (status, http) in [
            (
                tonic::Status::not_found("no order o-9"),
                StatusCode::NOT_FOUND,
            ),
            (
                tonic::Status::invalid_argument("id"),
                StatusCode::BAD_REQUEST,
            ),
            (
                tonic::Status::deadline_exceeded("late"),
                StatusCode::GATEWAY_TIMEOUT,
            ),
            (timed_out, StatusCode::GATEWAY_TIMEOUT),
            (
                tonic::Status::cancelled("the caller went away"),
                StatusCode::BAD_GATEWAY,
            ),
            (
                tonic::Status::unavailable("connection refused"),
                StatusCode::BAD_GATEWAY,
            ),
        ] {
            let message = status.message().to_owned();
            assert_eq!(
                Upstream::from(status).into_response().status(),
                http,
                "{message}"
            );
        }
        // NOT_FOUND from a lookup the page is not about (the user of an existing order): the
        // upstreams disagree, a 502, not the page's 404.
        assert_eq!(
            Upstream::secondary(tonic::Status::not_found("no user u-9"))
                .into_response()
                .status(),
            StatusCode::BAD_GATEWAY
        );
    }
}
