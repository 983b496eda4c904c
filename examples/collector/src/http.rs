//! HTTP routes: OTLP/HTTP and Zipkin v2 ingestion, Zipkin v2 query API.

use std::borrow::Cow;
use std::collections::BTreeSet;

use axum::Json;
use axum::Router;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, StatusCode};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use serde::Deserialize;

use super::Collector;
use super::ids::normalize_trace_id;
use super::model::{ZipkinSpan, zipkin_view};
use super::payload::{PayloadError, parse_otlp_json, parse_otlp_protobuf, parse_zipkin_json};
use super::query::{TraceQuery, TracesParams};

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

pub(crate) fn router(collector: Collector) -> Router {
    let limit = collector.inner.config.max_body_bytes;
    Router::new()
        .route("/v1/traces", post(otlp_traces))
        .route("/api/v2/spans", post(zipkin_spans).get(span_names))
        .route("/api/v2/services", get(services))
        .route("/api/v2/remoteServices", get(remote_services))
        .route("/api/v2/traces", get(traces))
        .route("/api/v2/trace/{trace_id}", get(trace))
        .route("/api/v2/traceMany", get(trace_many))
        .route("/api/v2/dependencies", get(dependencies))
        .route("/api/v2/autocompleteKeys", get(autocomplete_keys))
        .route("/api/v2/autocompleteValues", get(autocomplete_values))
        .route("/health", get(health))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| async move {
                // A declared length over the limit is refused before any byte of the body is
                // awaited: a client announcing 100 MB and sending nothing gets 413 at once.
                let declared = req
                    .headers()
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                if declared.is_some_and(|n| n > limit as u64) {
                    let reject = Reject {
                        status: StatusCode::PAYLOAD_TOO_LARGE,
                        reason: "request body too large".to_owned(),
                    };
                    // OTLP/HTTP answers every refusal with a `Status`.
                    if req.uri().path() == "/v1/traces" {
                        return otlp_error(otlp_encoding(req.headers()).ok(), reject);
                    }
                    return reject.into_response();
                }
                next.run(req).await
            },
        ))
        .with_state(collector)
}

/// Run `f` on the store off the async workers (`spawn_blocking`): a query scanning a large
/// store, or an insert waiting for one, never blocks a worker thread that other services on
/// the same runtime (the demo's mesh) need. `500` if `f` panicked.
async fn off_workers<T: Send + 'static>(
    collector: &Collector,
    f: impl FnOnce(&Collector) -> T + Send + 'static,
) -> Result<T, Reject> {
    let collector = collector.clone();
    tokio::task::spawn_blocking(move || f(&collector))
        .await
        .map_err(|_| Reject {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            reason: "the store failed".to_owned(),
        })
}

/// A refused request: status and a short plain-text reason.
#[derive(Debug)]
struct Reject {
    status: StatusCode,
    reason: String,
}

impl Reject {
    fn bad_request(reason: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            reason: reason.into(),
        }
    }
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        (self.status, self.reason).into_response()
    }
}

/// Every payload error is a 400 whose reason is the error's `Display`, but spans too large
/// once decoded or converted, a 413.
impl From<PayloadError> for Reject {
    fn from(err: PayloadError) -> Self {
        match err {
            PayloadError::TooLarge { .. } => Self {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                reason: err.to_string(),
            },
            _ => Self::bad_request(err.to_string()),
        }
    }
}

/// The media type of `content-type`, lower-cased, without parameters.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or_default().trim();
    Some(essence.to_ascii_lowercase())
}

/// How the body is compressed: not at all, or gzip (what OTLP/HTTP requires a receiver to
/// take, and Zipkin's server takes); anything else is 415.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
}

fn content_encoding(headers: &HeaderMap) -> Result<Encoding, Reject> {
    let Some(value) = headers.get(CONTENT_ENCODING) else {
        return Ok(Encoding::Identity);
    };
    match value.to_str().map(str::trim) {
        Ok(v) if v.is_empty() || v.eq_ignore_ascii_case("identity") => Ok(Encoding::Identity),
        Ok(v) if v.eq_ignore_ascii_case("gzip") || v.eq_ignore_ascii_case("x-gzip") => {
            Ok(Encoding::Gzip)
        }
        other => Err(Reject {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            reason: format!(
                "unsupported content-encoding {:?}: send gzip or uncompressed bodies",
                other.unwrap_or("(not ASCII)")
            ),
        }),
    }
}

/// The body, decompressed, or 413 (over the size limit, compressed or once decompressed) /
/// 400 (could not be read, or not valid gzip).
fn body_or_error(
    body: Result<Bytes, BytesRejection>,
    encoding: Encoding,
    limit: usize,
) -> Result<Bytes, Reject> {
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        let reason = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "request body too large".to_owned()
        } else {
            format!("cannot read request body: {rejection}")
        };
        Reject { status, reason }
    })?;
    match encoding {
        Encoding::Identity => Ok(body),
        Encoding::Gzip => gunzip(&body, limit),
    }
}

/// Decompress a gzip body, reading at most one byte past `limit` (a small bomb costs no
/// more than an honest body at the limit).
fn gunzip(body: &[u8], limit: usize) -> Result<Bytes, Reject> {
    use std::io::Read as _;
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::MultiGzDecoder::new(body)
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| Reject::bad_request(format!("invalid gzip body: {e}")))?;
    if out.len() > limit {
        return Err(Reject {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            reason: format!("request body too large once decompressed (over {limit} bytes)"),
        });
    }
    Ok(Bytes::from(out))
}

#[derive(Debug, Clone, Copy)]
enum OtlpEncoding {
    Protobuf,
    Json,
}

/// `google.rpc.Status`, the body OTLP/HTTP gives every 4xx and 5xx answer (in protobuf, or
/// as JSON for a JSON request): what `POST /v1/traces` answers when it refuses a request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    /// The gRPC code (3 `INVALID_ARGUMENT`, 8 `RESOURCE_EXHAUSTED`, 13 `INTERNAL`).
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// Why, in words.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// A refusal as OTLP/HTTP answers it: a `Status` in the request's encoding (protobuf when
/// it is unknown), the reason as its message.
fn otlp_error(encoding: Option<OtlpEncoding>, reject: Reject) -> Response {
    // The gRPC code each status stands for.
    let code = match reject.status {
        StatusCode::BAD_REQUEST => 3,            // INVALID_ARGUMENT
        StatusCode::PAYLOAD_TOO_LARGE => 8,      // RESOURCE_EXHAUSTED
        StatusCode::UNSUPPORTED_MEDIA_TYPE => 3, // INVALID_ARGUMENT
        _ => 13,                                 // INTERNAL
    };
    match encoding {
        Some(OtlpEncoding::Json) => {
            let body = serde_json::json!({"code": code, "message": reject.reason});
            (reject.status, [(CONTENT_TYPE, JSON)], body.to_string()).into_response()
        }
        Some(OtlpEncoding::Protobuf) | None => {
            let body = RpcStatus {
                code,
                message: reject.reason,
            };
            (
                reject.status,
                [(CONTENT_TYPE, PROTOBUF)],
                body.encode_to_vec(),
            )
                .into_response()
        }
    }
}

/// The OTLP encoding of a request, or 415.
fn otlp_encoding(headers: &HeaderMap) -> Result<OtlpEncoding, Reject> {
    let unsupported = |reason: String| Reject {
        status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        reason,
    };
    match media_type(headers).as_deref() {
        Some(PROTOBUF | "application/protobuf") => Ok(OtlpEncoding::Protobuf),
        Some(JSON) => Ok(OtlpEncoding::Json),
        Some(other) => Err(unsupported(format!(
            "unsupported content-type {other:?}: expected {PROTOBUF} or {JSON}"
        ))),
        None => Err(unsupported(format!(
            "missing content-type: expected {PROTOBUF} or {JSON}"
        ))),
    }
}

async fn otlp_traces(
    State(collector): State<Collector>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let encoding = otlp_encoding(&headers);
    let known = encoding.as_ref().ok().copied();
    let answer = async {
        let encoding = encoding?;
        let compression = content_encoding(&headers)?;
        let body = body_or_error(body, compression, collector.config().max_body_bytes)?;
        let spans = match encoding {
            OtlpEncoding::Protobuf => parse_otlp_protobuf(&body)?,
            OtlpEncoding::Json => parse_otlp_json(&body)?,
        };
        off_workers(&collector, move |c| c.store_normalized(spans)).await?;
        Ok::<_, Reject>(match encoding {
            OtlpEncoding::Protobuf => (
                StatusCode::OK,
                [(CONTENT_TYPE, PROTOBUF)],
                ExportTraceServiceResponse::default().encode_to_vec(),
            )
                .into_response(),
            // An empty ExportTraceServiceResponse in OTLP/JSON.
            OtlpEncoding::Json => (StatusCode::OK, [(CONTENT_TYPE, JSON)], "{}").into_response(),
        })
    };
    answer
        .await
        .unwrap_or_else(|reject| otlp_error(known, reject))
}

async fn zipkin_spans(
    State(collector): State<Collector>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, Reject> {
    let compression = content_encoding(&headers)?;
    // Zipkin's own server reads anything without a protobuf type as JSON; be
    // a little stricter but accept a missing content-type (curl, scripts).
    match media_type(&headers).as_deref() {
        None | Some(JSON) => {}
        Some(other) => {
            return Err(Reject {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                reason: format!(
                    "unsupported content-type {other:?}: expected {JSON} (Zipkin v2 JSON, Envoy HTTP_JSON)"
                ),
            });
        }
    }
    let body = body_or_error(body, compression, collector.config().max_body_bytes)?;
    let spans = parse_zipkin_json(&body)?;
    off_workers(&collector, move |c| c.store_normalized(spans)).await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceParam {
    service_name: Option<String>,
}

impl ServiceParam {
    fn matches(&self, span: &ZipkinSpan) -> bool {
        match self.service_name.as_deref().map(str::trim) {
            None | Some("") => true,
            Some(wanted) => span
                .service()
                .is_some_and(|s| s.eq_ignore_ascii_case(wanted)),
        }
    }
}

async fn services(State(collector): State<Collector>) -> Result<Json<Vec<String>>, Reject> {
    distinct_names(&collector, None, ZipkinSpan::service).await
}

/// Span names recorded by `serviceName` (all span names when it is absent).
async fn span_names(
    State(collector): State<Collector>,
    Query(param): Query<ServiceParam>,
) -> Result<Json<Vec<String>>, Reject> {
    distinct_names(&collector, Some(param), span_name).await
}

/// Remote service names seen by `serviceName` (all when it is absent).
async fn remote_services(
    State(collector): State<Collector>,
    Query(param): Query<ServiceParam>,
) -> Result<Json<Vec<String>>, Reject> {
    distinct_names(&collector, Some(param), ZipkinSpan::remote_service).await
}

fn span_name(span: &ZipkinSpan) -> Option<&str> {
    Some(span.name.as_str())
}

/// The distinct non-empty `name`s of the stored spans (of `param`'s service when given),
/// sorted, read off the async workers.
async fn distinct_names(
    collector: &Collector,
    param: Option<ServiceParam>,
    name: fn(&ZipkinSpan) -> Option<&str>,
) -> Result<Json<Vec<String>>, Reject> {
    off_workers(collector, move |c| {
        let store = c.lock();
        // Lower-cased, as Zipkin stores names: `Frontend` and `frontend` are one service
        // (queries match names in any case).
        let names: BTreeSet<Cow<'_, str>> = store
            .iter_spans()
            .filter(|s| param.as_ref().is_none_or(|p| p.matches(s)))
            .filter_map(name)
            .filter(|n| !n.is_empty())
            .map(|n| {
                if n.bytes().any(|b| b.is_ascii_uppercase()) {
                    Cow::Owned(n.to_ascii_lowercase())
                } else {
                    Cow::Borrowed(n)
                }
            })
            .collect();
        Json(names.into_iter().map(Cow::into_owned).collect())
    })
    .await
}

async fn traces(
    State(collector): State<Collector>,
    Query(params): Query<TracesParams>,
) -> Result<Json<Vec<Vec<ZipkinSpan>>>, Reject> {
    let query = TraceQuery::try_from(params).map_err(Reject::bad_request)?;
    off_workers(&collector, move |c| {
        let result = query.run(&c.lock());
        Json(result.into_iter().map(zipkin_view).collect())
    })
    .await
}

async fn trace(
    State(collector): State<Collector>,
    Path(trace_id): Path<String>,
) -> Result<Json<Vec<ZipkinSpan>>, Reject> {
    let id = normalize_trace_id(&trace_id).ok_or_else(|| {
        Reject::bad_request(format!(
            "invalid trace id {trace_id:?}: expected 16 or 32 hex characters"
        ))
    })?;
    let wanted = id.clone();
    let spans = off_workers(&collector, move |c| {
        c.lock().trace(&wanted).map(zipkin_view)
    })
    .await?;
    spans.map(Json).ok_or(Reject {
        status: StatusCode::NOT_FOUND,
        reason: format!("trace {id} not found"),
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TraceManyParams {
    trace_ids: Option<String>,
}

/// The traces of a comma-separated list of ids, in the order asked; unknown ones left out,
/// a malformed one 400 (as Zipkin answers).
async fn trace_many(
    State(collector): State<Collector>,
    Query(params): Query<TraceManyParams>,
) -> Result<Json<Vec<Vec<ZipkinSpan>>>, Reject> {
    let listed = params.trace_ids.unwrap_or_default();
    let mut ids = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for id in listed.split(',').map(str::trim).filter(|id| !id.is_empty()) {
        let normal = normalize_trace_id(id).ok_or_else(|| {
            Reject::bad_request(format!(
                "invalid trace id {id:?}: expected 16 or 32 hex characters"
            ))
        })?;
        if seen.insert(normal.clone()) {
            ids.push(normal);
        }
    }
    if ids.is_empty() {
        return Err(Reject::bad_request(
            "traceIds: expected a list of trace ids",
        ));
    }
    off_workers(&collector, move |c| {
        let store = c.lock();
        Json(
            ids.iter()
                .filter_map(|id| store.trace(id).map(zipkin_view))
                .collect(),
        )
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DependencyParams {
    end_ts: Option<String>,
    lookback: Option<String>,
}

/// The service graph of the traces whose time falls in `[endTs - lookback, endTs]`.
async fn dependencies(
    State(collector): State<Collector>,
    Query(params): Query<DependencyParams>,
) -> Result<Json<Vec<crate::dependencies::DependencyLink>>, Reject> {
    let end = crate::query::millis("endTs", params.end_ts)
        .map_err(Reject::bad_request)?
        .ok_or_else(|| Reject::bad_request("endTs is required"))?;
    let lookback =
        crate::query::millis("lookback", params.lookback).map_err(Reject::bad_request)?;
    let (begin, end) = crate::query::window_us(end, lookback);
    // Zipkin's in-memory store compares the millisecond of a span's timestamp with `endTs`,
    // so the whole last millisecond is in.
    let end = end.saturating_add(999);
    off_workers(&collector, move |c| {
        let store = c.lock();
        let traces = store.traces().map(|(_, spans)| spans).filter(|spans| {
            crate::query::trace_time(spans).is_some_and(|t| t >= begin && t <= end)
        });
        Json(crate::dependencies::link(traces))
    })
    .await
}

async fn autocomplete_keys() -> Json<Vec<String>> {
    Json(Vec::new())
}

#[derive(Debug, Deserialize)]
struct AutocompleteParams {
    key: Option<String>,
}

/// No key is configured for autocompletion: no values, as Zipkin answers for such a key.
async fn autocomplete_values(
    Query(params): Query<AutocompleteParams>,
) -> Result<Json<Vec<String>>, Reject> {
    match params.key.as_deref().map(str::trim) {
        None | Some("") => Err(Reject::bad_request("key is required")),
        Some(_) => Ok(Json(Vec::new())),
    }
}

async fn health() -> &'static str {
    "ok"
}
