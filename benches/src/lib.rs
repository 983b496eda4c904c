//! The side-by-side benchmarks of this workspace against the crates people use today; the
//! code is in `benches/` (`cargo bench -p benches --bench propagation | layers | wire | instructions`).

use std::convert::Infallible;
use std::hint::black_box;

use http::{Request, Response};
use tower::util::BoxCloneSyncService;
use tower::{ServiceExt, service_fn};

/// A boxed in-process service, as the round-trip benches compose them.
pub type Svc = BoxCloneSyncService<Request<()>, Response<()>, Infallible>;

/// The service an outgoing call reaches: reads the headers it got, answers empty.
pub fn downstream() -> Svc {
    BoxCloneSyncService::new(service_fn(|req: Request<()>| async move {
        black_box(req.headers().len());
        Ok::<_, Infallible>(Response::new(()))
    }))
}

/// A handler that makes one call through `client`.
pub fn handler(client: Svc) -> Svc {
    BoxCloneSyncService::new(service_fn(move |_req: Request<()>| {
        let client = client.clone();
        async move { client.oneshot(Request::new(())).await }
    }))
}
