//! OTLP → Zipkin v2 conversion, following the OpenTelemetry "OpenTelemetry to
//! Zipkin Transformation" specification (`trace/sdk_exporters/zipkin.md`).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind as OtlpKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{Span, Status};

use super::ids::{IngestError, hex, normalize_span_id, normalize_trace_id};
use super::model::{Annotation, Endpoint, SpanKind, ZipkinSpan};

/// Service name used when a resource has no `service.name` (the SDK default).
const UNKNOWN_SERVICE: &str = "unknown_service";

/// Convert an OTLP export request to Zipkin v2 spans, in request order.
///
/// Mapping (OpenTelemetry Zipkin exporter specification):
/// - `localEndpoint.serviceName` ← resource attribute `service.name`
///   (`unknown_service` when absent);
/// - kind `SERVER`/`CLIENT`/`PRODUCER`/`CONSUMER` map one to one,
///   `INTERNAL`/unspecified → no kind;
/// - `timestamp` ← start time in µs, `duration` ← end − start in µs, at least 1;
/// - attributes → tags (strings as is, booleans `true`/`false`, numbers in
///   decimal, arrays and maps as compact JSON, bytes as base64);
/// - status `OK` → tag `otel.status_code=OK`; status `ERROR` →
///   `otel.status_code=ERROR` and `error` = the status message, or `"true"`
///   when the message is empty; a boolean-ish `error=false` attribute on a
///   non-error span is removed, since Zipkin treats any `error` tag as failed;
/// - scope name/version → tags `otel.scope.name`/`otel.scope.version`;
/// - non-zero dropped counts → `otel.dropped_{attributes,events,links}_count`;
/// - events → annotations whose value is the event name, or
///   `{"<name>":{<attributes as JSON>}}` when the event has attributes;
/// - for `CLIENT`/`PRODUCER` spans, `remoteEndpoint` from the ranked peer
///   attributes (`peer.service`, `server.address`, `net.peer.name`,
///   `network.peer.address`, …, `db.name`).
///
/// Trace ids must be 16 bytes (8-byte ids are accepted too and left-padded),
/// span ids 8 bytes, neither all zero; an empty or all-zero parent id, or one
/// equal to the span's own, means "root span". Any malformed id fails the whole
/// request.
pub fn from_otlp(req: &ExportTraceServiceRequest) -> Result<Vec<ZipkinSpan>, IngestError> {
    match convert(req, usize::MAX) {
        Ok(spans) => Ok(spans),
        Err(Refused::Ids(e)) => Err(e),
        // Nothing is over an unbounded budget.
        Err(Refused::TooLarge) => Ok(Vec::new()),
    }
}

/// Why [`convert`] stopped.
pub(crate) enum Refused {
    Ids(IngestError),
    /// The spans would take more than the budget (as [`ZipkinSpan::approx_bytes`] counts).
    TooLarge,
}

impl From<IngestError> for Refused {
    fn from(e: IngestError) -> Self {
        Refused::Ids(e)
    }
}

/// [`from_otlp`], stopping as soon as the spans made would take more than `budget` bytes:
/// each span carries its resource's service name and its scope's name and version, so a
/// small request naming a huge service for many spans would otherwise take gigabytes.
pub(crate) fn convert(
    req: &ExportTraceServiceRequest,
    budget: usize,
) -> Result<Vec<ZipkinSpan>, Refused> {
    let mut used = 0usize;
    let mut out = Vec::new();
    for resource_spans in &req.resource_spans {
        let service = resource_spans
            .resource
            .as_ref()
            .and_then(|r| find_attr(&r.attributes, "service.name"))
            .map(any_to_tag)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| UNKNOWN_SERVICE.to_owned());
        for scope_spans in &resource_spans.scope_spans {
            for span in &scope_spans.spans {
                let span = convert_span(span, &service, scope_spans.scope.as_ref())?;
                used = used.saturating_add(span.approx_bytes());
                if used > budget {
                    return Err(Refused::TooLarge);
                }
                out.push(span);
            }
        }
    }
    Ok(out)
}

fn convert_span(
    span: &Span,
    service: &str,
    scope: Option<&InstrumentationScope>,
) -> Result<ZipkinSpan, IngestError> {
    let trace_hex = hex(&span.trace_id);
    let trace_id = normalize_trace_id(&trace_hex).ok_or(IngestError::InvalidTraceId(trace_hex))?;
    let span_hex = hex(&span.span_id);
    let id = normalize_span_id(&span_hex).ok_or(IngestError::InvalidSpanId(span_hex))?;
    let parent_id = if span.parent_span_id.is_empty()
        || (span.parent_span_id.len() == 8 && span.parent_span_id.iter().all(|b| *b == 0))
    {
        None
    } else {
        let parent_hex = hex(&span.parent_span_id);
        Some(normalize_span_id(&parent_hex).ok_or(IngestError::InvalidParentId(parent_hex))?)
    }
    // A span that names itself as parent is a root (a cycle; Zipkin undoes it the same way).
    .filter(|p| *p != id);

    let kind = match OtlpKind::try_from(span.kind) {
        Ok(OtlpKind::Server) => Some(SpanKind::Server),
        Ok(OtlpKind::Client) => Some(SpanKind::Client),
        Ok(OtlpKind::Producer) => Some(SpanKind::Producer),
        Ok(OtlpKind::Consumer) => Some(SpanKind::Consumer),
        Ok(OtlpKind::Internal | OtlpKind::Unspecified) | Err(_) => None,
    };

    let mut tags: BTreeMap<String, String> = span
        .attributes
        .iter()
        .filter_map(|kv| Some((kv.key.clone(), any_to_tag(kv.value.as_ref()?))))
        .collect();
    if let Some(scope) = scope {
        if !scope.name.is_empty() {
            tags.insert("otel.scope.name".to_owned(), scope.name.clone());
        }
        if !scope.version.is_empty() {
            tags.insert("otel.scope.version".to_owned(), scope.version.clone());
        }
    }
    for (key, count) in [
        (
            "otel.dropped_attributes_count",
            span.dropped_attributes_count,
        ),
        ("otel.dropped_events_count", span.dropped_events_count),
        ("otel.dropped_links_count", span.dropped_links_count),
    ] {
        if count > 0 {
            tags.insert(key.to_owned(), count.to_string());
        }
    }
    apply_status(&mut tags, span.status.as_ref());

    let remote_endpoint = match kind {
        Some(SpanKind::Client | SpanKind::Producer) => remote_endpoint(&span.attributes),
        _ => None,
    };

    Ok(ZipkinSpan {
        trace_id,
        id,
        parent_id,
        name: span.name.clone(),
        kind,
        timestamp: span.start_time_unix_nano / 1_000,
        duration: (span
            .end_time_unix_nano
            .saturating_sub(span.start_time_unix_nano)
            / 1_000)
            .max(1),
        local_endpoint: Some(Endpoint {
            service_name: Some(service.to_owned()),
            ipv4: None,
            ipv6: None,
            port: None,
        }),
        remote_endpoint,
        tags,
        annotations: span.events.iter().map(event_to_annotation).collect(),
        shared: false,
        debug: false,
    })
}

fn apply_status(tags: &mut BTreeMap<String, String>, status: Option<&Status>) {
    let code = status.map_or(Ok(StatusCode::Unset), |s| StatusCode::try_from(s.code));
    match code {
        Ok(StatusCode::Error) => {
            let message = status.map(|s| s.message.as_str()).unwrap_or_default();
            let error = if message.is_empty() { "true" } else { message };
            tags.insert("otel.status_code".to_owned(), "ERROR".to_owned());
            tags.insert("error".to_owned(), error.to_owned());
        }
        Ok(StatusCode::Ok) => {
            tags.insert("otel.status_code".to_owned(), "OK".to_owned());
        }
        Ok(StatusCode::Unset) | Err(_) => {}
    }
    if code != Ok(StatusCode::Error) && tags.get("error").is_some_and(|v| v == "false") {
        tags.remove("error");
    }
}

fn event_to_annotation(event: &Event) -> Annotation {
    let value = if event.attributes.is_empty() {
        event.name.clone()
    } else {
        let mut inner = serde_json::Map::new();
        for kv in &event.attributes {
            if let Some(v) = &kv.value {
                inner.insert(kv.key.clone(), any_to_json(v));
            }
        }
        let mut outer = serde_json::Map::new();
        outer.insert(event.name.clone(), serde_json::Value::Object(inner));
        serde_json::Value::Object(outer).to_string()
    };
    Annotation {
        timestamp: event.time_unix_nano / 1_000,
        value,
    }
}

/// Remote endpoint from peer attributes, by the specification's ranking.
fn remote_endpoint(attrs: &[KeyValue]) -> Option<Endpoint> {
    const NAME_RANKING: [&str; 11] = [
        "peer.service",
        "server.address",
        "net.peer.name",
        "network.peer.address",
        "server.socket.domain",
        "server.socket.address",
        "net.sock.peer.name",
        "net.sock.peer.addr",
        "peer.hostname",
        "peer.address",
        "db.name",
    ];
    const IP_ATTRS: [&str; 4] = [
        "network.peer.address",
        "server.socket.address",
        "net.sock.peer.addr",
        "net.peer.ip",
    ];
    const PORT_ATTRS: [&str; 5] = [
        "network.peer.port",
        "server.socket.port",
        "net.sock.peer.port",
        "server.port",
        "net.peer.port",
    ];

    let service_name = NAME_RANKING
        .iter()
        .find_map(|key| find_attr(attrs, key).map(any_to_tag))
        .filter(|s| !s.is_empty());
    let ips = || {
        IP_ATTRS
            .iter()
            .filter_map(|key| find_attr(attrs, key).map(any_to_tag))
    };
    let ipv4 = ips().find(|s| s.parse::<Ipv4Addr>().is_ok());
    let ipv6 = ipv4
        .is_none()
        .then(|| ips().find_map(|s| s.parse::<std::net::Ipv6Addr>().ok()))
        .flatten()
        .map(|ip| ip.to_string());
    let port = PORT_ATTRS.iter().find_map(|key| {
        let value = find_attr(attrs, key)?;
        match &value.value {
            Some(Value::IntValue(i)) => u16::try_from(*i).ok(),
            Some(Value::StringValue(s)) => s.parse().ok(),
            _ => None,
        }
        .filter(|p| *p != 0)
    });
    if service_name.is_none() && ipv4.is_none() && ipv6.is_none() && port.is_none() {
        return None;
    }
    Some(Endpoint {
        service_name,
        ipv4,
        ipv6,
        port,
    })
}

fn find_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

/// An attribute value as a Zipkin tag string.
fn any_to_tag(value: &AnyValue) -> String {
    match &value.value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(b)) => base64(b),
        Some(Value::ArrayValue(_) | Value::KvlistValue(_)) => any_to_json(value).to_string(),
        Some(Value::StringValueStrindex(_)) | None => String::new(),
    }
}

/// An attribute value as JSON (used for arrays, maps and event attributes).
fn any_to_json(value: &AnyValue) -> serde_json::Value {
    use serde_json::Value as J;
    match &value.value {
        Some(Value::StringValue(s)) => J::String(s.clone()),
        Some(Value::BoolValue(b)) => J::Bool(*b),
        Some(Value::IntValue(i)) => J::from(*i),
        // NaN and infinities have no JSON form: keep them as strings.
        Some(Value::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or_else(|| J::String(d.to_string()), J::Number)
        }
        Some(Value::BytesValue(b)) => J::String(base64(b)),
        Some(Value::ArrayValue(a)) => J::Array(a.values.iter().map(any_to_json).collect()),
        Some(Value::KvlistValue(kv)) => J::Object(
            kv.values
                .iter()
                .map(|kv| {
                    let v = kv.value.as_ref().map_or(J::Null, any_to_json);
                    (kv.key.clone(), v)
                })
                .collect(),
        ),
        Some(Value::StringValueStrindex(_)) | None => J::Null,
    }
}

/// Standard base64 with padding (what OTLP/JSON uses for bytes).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, expected) in cases {
            assert_eq!(base64(input.as_bytes()), expected, "input {input:?}");
        }
    }
}
