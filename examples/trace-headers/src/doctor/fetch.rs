//! A plain HTTP/1.1 GET, enough for a Zipkin v2 API (hyper-util's client on a
//! current-thread tokio runtime).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The largest answer read: far above 1000 traces of a busy mesh.
const MAX_BODY: usize = 1 << 30;

/// GET `url` and return the body of a 2xx answer; otherwise a sentence saying why not.
pub(super) fn get(url: &str, timeout: Duration) -> Result<Vec<u8>, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(format!(
                "{other}:// is not supported: give an http:// URL, or save the traces to a file"
            ));
        }
        None => return Err("not an absolute http:// URL".to_owned()),
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the HTTP client: {e}"))?;
    runtime.block_on(async move {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let request = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let response = tokio::time::timeout(timeout, client.request(request))
            .await
            .map_err(|_| format!("no answer within {} s", timeout.as_secs_f32()))?
            .map_err(|e| chain(&e))?;
        let status = response.status();
        let body = tokio::time::timeout(
            timeout,
            Limited::new(response.into_body(), MAX_BODY).collect(),
        )
        .await
        .map_err(|_| {
            format!(
                "the answer did not complete within {} s",
                timeout.as_secs_f32()
            )
        })?
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes();
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            let text: String = text.chars().take(200).collect();
            return Err(format!("answered {status}: {}", text.trim()));
        }
        Ok(body.to_vec())
    })
}

/// An error and its causes, as one line (`client error (Connect): tcp connect error:
/// Connection refused`).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}
