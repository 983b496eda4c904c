//! What more than one integration test needs.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;

/// A body whose first bytes come at once and whose last byte comes 300 ms later: spans and
/// metrics must cover a response until its end.
pub(crate) fn slow_body() -> Body {
    let frames = futures_util::stream::unfold(0, |n| async move {
        match n {
            0 => Some((Ok::<_, Infallible>(Bytes::from_static(b"first ")), 1)),
            1 => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Some((Ok(Bytes::from_static(b"last")), 2))
            }
            _ => None,
        }
    });
    Body::from_stream(frames)
}
