//! The OpenTelemetry semantic conventions the layers' spans follow: version
//! [`VERSION`] (schema [`SCHEMA_URL`]), the attribute names they set, and the instrumentation
//! scope they are reported under ([`SCOPE_NAME`], [`SCOPE_VERSION`]).
//!
//! The HTTP span conventions are stable: they read the same in every version since 1.23. The
//! RPC ones (gRPC included) are still in development, and changed after 1.37 (`rpc.system`
//! became `rpc.system.name`, `rpc.service` went into `rpc.method`, `rpc.grpc.status_code`
//! became the string `rpc.response.status_code`). As the conventions' RPC migration guide asks
//! of instrumentation that already emits RPC spans, these keep 1.37's names until the RPC
//! conventions are stable.
//!
//! | span | name | attributes |
//! |---|---|---|
//! | HTTP server | `{method} {http.route}`, or `{method}` when no route is known (`HTTP` for a non-standard method) | `http.request.method` (`_OTHER` and `http.request.method_original` for a non-standard one), `url.path`, `url.query` (when present; signed-URL values redacted, see [`redact_query`]), `url.scheme` (`Forwarded` `proto=` / `X-Forwarded-Proto`, else the request's), `http.route` (when known), `http.response.status_code`, `network.protocol.version`, `server.address` / `server.port` (`Forwarded` `host=` / `X-Forwarded-Host`, else `:authority` or `Host`), `client.address` (`Forwarded` `for=` / `X-Forwarded-For`, else the peer), `network.peer.address` / `network.peer.port` (when the peer is known), `user_agent.original`, `error.type` (on errors) |
//! | HTTP client | `{method}` | `http.request.method`, `url.full` (user and password, and signed-URL query values, redacted), `server.address`, `server.port`, `http.response.status_code`, `network.protocol.version`, `error.type` (on errors) |
//! | gRPC server | `package.Service/Method` | `rpc.system` (`grpc`), `rpc.service`, `rpc.method`, `rpc.grpc.status_code` (always, `0` included), `server.address` / `server.port`, `client.address`, `network.peer.address` / `network.peer.port` (when known) |
//! | gRPC client | `package.Service/Method` | `rpc.system` (`grpc`), `rpc.service`, `rpc.method`, `rpc.grpc.status_code` (always), `server.address`, `server.port` |
//!
//! Span status: HTTP servers mark 5xx as errors, HTTP clients 4xx and 5xx; gRPC servers mark
//! `UNKNOWN`, `DEADLINE_EXCEEDED`, `UNIMPLEMENTED`, `INTERNAL`, `UNAVAILABLE`, `DATA_LOSS`,
//! gRPC clients every code but `OK`.

use std::borrow::Cow;

/// The version of the semantic conventions the spans follow.
pub const VERSION: &str = "1.37.0";

/// The schema URL of [`VERSION`], set on the instrumentation scope.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.37.0";

/// The instrumentation scope's name: this crate.
pub const SCOPE_NAME: &str = env!("CARGO_PKG_NAME");

/// The instrumentation scope's version: this crate's.
pub const SCOPE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// `http.request.method` (stable).
pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
/// `http.request.method_original` (stable): the method as received, when not a standard one.
pub const HTTP_REQUEST_METHOD_ORIGINAL: &str = "http.request.method_original";
/// `http.response.status_code` (stable).
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
/// `http.route` (stable): the route template, never the raw path.
pub const HTTP_ROUTE: &str = "http.route";
/// `url.path` (stable).
pub const URL_PATH: &str = "url.path";
/// `url.query` (stable).
pub const URL_QUERY: &str = "url.query";
/// `url.scheme` (stable).
pub const URL_SCHEME: &str = "url.scheme";
/// `url.full` (stable).
pub const URL_FULL: &str = "url.full";
/// `server.address` (stable).
pub const SERVER_ADDRESS: &str = "server.address";
/// `server.port` (stable).
pub const SERVER_PORT: &str = "server.port";
/// `client.address` (stable).
pub const CLIENT_ADDRESS: &str = "client.address";
/// `network.peer.address` (stable).
pub const NETWORK_PEER_ADDRESS: &str = "network.peer.address";
/// `network.peer.port` (stable).
pub const NETWORK_PEER_PORT: &str = "network.peer.port";
/// `network.protocol.version` (stable).
pub const NETWORK_PROTOCOL_VERSION: &str = "network.protocol.version";
/// `user_agent.original` (stable).
pub const USER_AGENT_ORIGINAL: &str = "user_agent.original";
/// `error.type` (stable).
pub const ERROR_TYPE: &str = "error.type";
/// `rpc.system` (development, 1.37).
pub const RPC_SYSTEM: &str = "rpc.system";
/// `rpc.service` (development, 1.37).
pub const RPC_SERVICE: &str = "rpc.service";
/// `rpc.method` (development, 1.37).
pub const RPC_METHOD: &str = "rpc.method";
/// `rpc.grpc.status_code` (development, 1.37): the numeric gRPC status.
pub const RPC_GRPC_STATUS_CODE: &str = "rpc.grpc.status_code";

/// The query keys whose values [`redact_query`] replaces with `REDACTED`: the four the
/// conventions list for `url.query` and `url.full` since 1.28 (`AWSAccessKeyId`, `Signature`,
/// `sig`, `X-Goog-Signature`) and the three later versions add for AWS Signature Version 4
/// (`X-Amz-Signature`, `X-Amz-Credential`, `X-Amz-Security-Token`).
pub const REDACTED_QUERY_KEYS: [&str; 7] = [
    "AWSAccessKeyId",
    "Signature",
    "sig",
    "X-Goog-Signature",
    "X-Amz-Signature",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
];

/// `query` (a URL's query, without its `?`) as the spans record it in `url.query` and
/// `url.full`: the value of every parameter whose key is one of [`REDACTED_QUERY_KEYS`]
/// replaced with `REDACTED`, the key and everything else kept as received. Keys are compared
/// as a server reads them — percent-decoded, ignoring ASCII case, which only widens the
/// conventions' list — and parameters are split at `&` and at `;`, which some servers also
/// take as a separator. A query with no such parameter is returned as it is, without a copy.
///
/// ```
/// use tower_trace_headers::semconv::redact_query;
///
/// assert_eq!(
///     redact_query("X-Amz-Expires=60&X-Amz-Signature=0f3a9b&id=7"),
///     "X-Amz-Expires=60&X-Amz-Signature=REDACTED&id=7"
/// );
/// assert_eq!(redact_query("a=1;%73ig=c2VjcmV0"), "a=1;%73ig=REDACTED");
/// assert_eq!(redact_query("sig"), "sig"); // no value to hide
/// assert!(matches!(redact_query("page=2"), std::borrow::Cow::Borrowed("page=2")));
/// ```
#[must_use]
pub fn redact_query(query: &str) -> Cow<'_, str> {
    let mut out: Option<String> = None;
    // `copied`: how much of `query` is in `out` already.
    let mut copied = 0;
    let mut start = 0;
    for (i, b) in query
        .bytes()
        .enumerate()
        .chain(std::iter::once((query.len(), b'&')))
    {
        if !matches!(b, b'&' | b';') {
            continue;
        }
        let param = &query[start..i];
        if let Some((key, value)) = param.split_once('=')
            && !value.is_empty()
            && REDACTED_QUERY_KEYS.iter().any(|k| key_is(key, k))
        {
            // Most queries have nothing to hide and are never copied.
            let out = out.get_or_insert_with(|| String::with_capacity(query.len()));
            out.push_str(&query[copied..start]);
            out.push_str(key);
            out.push_str("=REDACTED");
            copied = i;
        }
        start = i + 1;
    }
    match out {
        Some(mut out) => {
            out.push_str(&query[copied..]);
            Cow::Owned(out)
        }
        None => Cow::Borrowed(query),
    }
}

/// Whether the query key `raw` is `want` once percent-decoded (`+` a space), ignoring ASCII
/// case.
fn key_is(raw: &str, want: &str) -> bool {
    let raw = raw.as_bytes();
    let want = want.as_bytes();
    // A key is never shorter than what it decodes to.
    if raw.len() < want.len() {
        return false;
    }
    let hex = |b: u8| (b as char).to_digit(16);
    let (mut i, mut j) = (0, 0);
    while i < raw.len() {
        let byte = match raw[i] {
            b'%' => match (
                raw.get(i + 1).and_then(|&b| hex(b)),
                raw.get(i + 2).and_then(|&b| hex(b)),
            ) {
                (Some(hi), Some(lo)) => {
                    i += 3;
                    // Two hex digits: below 256.
                    u8::try_from(hi * 16 + lo).unwrap_or(0)
                }
                _ => {
                    i += 1;
                    b'%'
                }
            },
            b'+' => {
                i += 1;
                b' '
            }
            b => {
                i += 1;
                b
            }
        };
        if want.get(j).is_none_or(|w| !w.eq_ignore_ascii_case(&byte)) {
            return false;
        }
        j += 1;
    }
    j == want.len()
}

/// The `http.request.method` of `method`: a standard method as it is, anything else
/// `_OTHER`.
#[cfg_attr(
    not(any(feature = "metrics", feature = "opentelemetry")),
    allow(dead_code)
)]
pub(crate) fn method_name(method: &http::Method) -> Option<&'static str> {
    use http::Method;
    Some(match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => return None,
    })
}

/// Whether a request is a gRPC call (`content-type: application/grpc`, `+…` or `;…`; not
/// gRPC-Web).
#[cfg_attr(not(any(feature = "metrics", feature = "tracing")), allow(dead_code))]
pub(crate) fn is_grpc(headers: &http::HeaderMap) -> bool {
    is_grpc_content_type(headers.get(http::header::CONTENT_TYPE))
}

/// Whether a request (or a response) whose `content-type` is `value` is gRPC's:
/// `application/grpc`, `application/grpc+proto`, `application/grpc;…`, not gRPC-Web (whose
/// status travels in the body). The rule the layers' spans and metrics use, for code (an
/// access log) that must read a call the same way.
///
/// ```
/// use http::HeaderValue;
/// use tower_trace_headers::semconv::is_grpc_content_type;
///
/// assert!(is_grpc_content_type(Some(&HeaderValue::from_static("application/grpc+proto"))));
/// assert!(!is_grpc_content_type(Some(&HeaderValue::from_static("application/grpc-web"))));
/// assert!(!is_grpc_content_type(None));
/// ```
#[must_use]
pub fn is_grpc_content_type(value: Option<&http::HeaderValue>) -> bool {
    // `application/grpc`, `application/grpc+proto`, `application/grpc;…`: not gRPC-Web
    // (`application/grpc-web…`), whose status travels in the body, where the layers do not
    // look; a gRPC-Web call is an HTTP request to them.
    value.is_some_and(|v| match v.as_bytes().strip_prefix(b"application/grpc") {
        Some(rest) => matches!(rest.first(), None | Some(b'+' | b';')),
        None => false,
    })
}

/// The `grpc-status` in `headers` (response headers of a trailers-only response, or trailers):
/// a code from 0 to 16.
#[cfg_attr(
    not(any(feature = "metrics", feature = "opentelemetry")),
    allow(dead_code)
)]
pub(crate) fn grpc_status(headers: &http::HeaderMap) -> Option<u8> {
    let value = headers.get("grpc-status")?.as_bytes();
    match value {
        [d @ b'0'..=b'9'] => Some(d - b'0'),
        [b'1', d @ b'0'..=b'6'] => Some(10 + d - b'0'),
        _ => None,
    }
}

/// The gRPC status a client reads from a response without `grpc-status` (gRPC's HTTP to gRPC
/// status mapping): `None` for `200`, which says nothing.
#[cfg_attr(not(feature = "opentelemetry"), allow(dead_code))]
pub(crate) fn grpc_status_of_http(status: http::StatusCode) -> Option<u8> {
    Some(match status.as_u16() {
        200 => return None,
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => 14,
        _ => 2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_query_hides_the_listed_values_only() {
        for (query, want) in [
            ("", ""),
            ("a=1&b=2", "a=1&b=2"),
            ("sig=x", "sig=REDACTED"),
            ("a=1&Signature=abc%3D&b=2", "a=1&Signature=REDACTED&b=2"),
            ("x-amz-signature=ff", "x-amz-signature=REDACTED"),
            (
                "AWSAccessKeyId=A&Expires=1&Signature=S",
                "AWSAccessKeyId=REDACTED&Expires=1&Signature=REDACTED",
            ),
            (
                "X-Goog-Signature=1&&sig=2&",
                "X-Goog-Signature=REDACTED&&sig=REDACTED&",
            ),
            ("sig=a=b", "sig=REDACTED"),
            // Keys as a server decodes them; `;` separates too.
            (
                "%73ig=x&X%2DAmz%2dSignature=y",
                "%73ig=REDACTED&X%2DAmz%2dSignature=REDACTED",
            ),
            (
                "a=1;sig=x;b=2&Signature=y",
                "a=1;sig=REDACTED;b=2&Signature=REDACTED",
            ),
            ("%7=x&%=y&sig%=z&%zz=w", "%7=x&%=y&sig%=z&%zz=w"),
            ("si+g=x&sig+=y", "si+g=x&sig+=y"),
            // Nothing to hide: no value, or a key that only contains a listed one.
            ("sig", "sig"),
            ("sig=", "sig="),
            ("signature2=x&xsig=y&sig_=z", "signature2=x&xsig=y&sig_=z"),
            ("X-Amz-Date=20261207T000000Z", "X-Amz-Date=20261207T000000Z"),
        ] {
            assert_eq!(redact_query(query), want, "{query:?}");
        }
        assert!(matches!(redact_query("a=1&sig="), Cow::Borrowed(_)));
    }

    #[test]
    fn grpc_content_types_and_not_grpc_web() {
        let is = |v: &'static str| is_grpc_content_type(Some(&http::HeaderValue::from_static(v)));
        for v in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc+json",
            "application/grpc;charset=utf-8",
        ] {
            assert!(is(v), "{v}");
        }
        for v in [
            "application/grpc-web",
            "application/grpc-web+proto",
            "application/grpc-web-text",
            "application/grpcx",
            "application/json",
        ] {
            assert!(!is(v), "{v}");
        }
        assert!(!is_grpc_content_type(None));
    }

    #[test]
    fn grpc_status_reads_0_to_16_only() {
        let status = |v: &'static str| {
            let mut h = http::HeaderMap::new();
            h.insert("grpc-status", http::HeaderValue::from_static(v));
            grpc_status(&h)
        };
        for code in 0..=16u8 {
            let mut h = http::HeaderMap::new();
            h.insert(
                "grpc-status",
                code.to_string().parse().unwrap_or_else(|_| unreachable!()),
            );
            assert_eq!(grpc_status(&h), Some(code));
        }
        for bad in ["17", "-1", "", "01", "+1", " 0", "100", "x"] {
            assert_eq!(status(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn standard_methods_keep_their_names() {
        assert_eq!(method_name(&http::Method::PATCH), Some("PATCH"));
        let custom = http::Method::from_bytes(b"PURGE").unwrap_or_else(|_| unreachable!());
        assert_eq!(method_name(&custom), None);
    }
}
