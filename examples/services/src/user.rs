//! `user.v1.UserService`.

use std::future::Future;
use std::time::Duration;

use tonic::{Request, Response, Status};

use super::ServiceOptions;
use crate::pb::user::v1::user_service_server::{UserService, UserServiceServer};
use crate::pb::user::v1::{GetUserRequest, User};

/// The users: `(id, name, email)`.
pub const USERS: &[(&str, &str, &str)] = &[
    ("u-1", "Ada Lovelace", "ada@example.com"),
    ("u-2", "Grace Hopper", "grace@example.com"),
    ("u-3", "Alan Turing", "alan@example.com"),
    ("u-4", "Edsger Dijkstra", "edsger@example.com"),
];

/// The user service.
#[derive(Clone, Debug, Default)]
pub struct Users;

#[tonic::async_trait]
impl UserService for Users {
    async fn get_user(&self, request: Request<GetUserRequest>) -> Result<Response<User>, Status> {
        let id = request.into_inner().id;
        let Some((_, name, email)) = USERS.iter().find(|(i, _, _)| *i == id) else {
            return Err(Status::not_found(format!(
                "no user {}",
                crate::shown_id(&id)
            )));
        };
        tokio::time::sleep(Duration::from_millis(3)).await;
        Ok(Response::new(User {
            id,
            name: (*name).to_owned(),
            email: (*email).to_owned(),
        }))
    }
}

/// Serve the user service on `listener` until `shutdown` completes.
///
/// # Errors
///
/// When the server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    opts: ServiceOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (signal, cut_off) =
        super::bounded_shutdown(opts.health.draining_on(shutdown), opts.serve.drain_timeout);
    let server = tonic::transport::Server::builder()
        .layer(opts.dispatch_layer())
        .layer(opts.server_layer())
        .layer(opts.access_log_layer("user"))
        .add_service(opts.health.grpc::<UserServiceServer<Users>>().await)
        .add_service(UserServiceServer::new(Users))
        .serve_with_incoming_shutdown(super::incoming(listener), signal);
    super::stop_by(server, cut_off).await
}
