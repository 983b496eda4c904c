//! The collector's single internal span model: a Zipkin v2 span.
//!
//! Serialisation follows the Zipkin v2 JSON API (`zipkin2-api.yaml`): camelCase
//! field names, absent optional fields omitted. Deserialisation is a little more
//! forgiving than serialisation so that real-world senders are accepted:
//! `null` is treated like an absent field, numbers may arrive as JSON strings,
//! and non-string tag values are stringified.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// One span in Zipkin v2 form. Every span the collector holds has this shape,
/// whatever protocol it arrived with.
///
/// Spans held by a [`Collector`](super::Collector) are normalised: `trace_id`
/// is 32 lower-case hex characters, `id` and `parent_id` 16 lower-case hex
/// characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZipkinSpan {
    /// Trace id, 32 lower-case hex characters once normalised.
    pub trace_id: String,
    /// Span id, 16 lower-case hex characters.
    pub id: String,
    /// Parent span id; `None` for a root span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Operation name (left out of the JSON when empty, as Zipkin does).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    /// Span kind; `None` for local (OpenTelemetry `INTERNAL`) spans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<SpanKind>,
    /// Start time, microseconds since the Unix epoch (0 when unknown).
    #[serde(
        default,
        deserialize_with = "lenient_u64",
        skip_serializing_if = "is_zero"
    )]
    pub timestamp: u64,
    /// Duration in microseconds (0 when unknown).
    #[serde(
        default,
        deserialize_with = "lenient_u64",
        skip_serializing_if = "is_zero"
    )]
    pub duration: u64,
    /// The service that recorded the span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_endpoint: Option<Endpoint>,
    /// The other side of an RPC or messaging span, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_endpoint: Option<Endpoint>,
    /// String tags (span attributes).
    #[serde(
        default,
        deserialize_with = "lenient_tags",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub tags: BTreeMap<String, String>,
    /// Timestamped events.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub annotations: Vec<Annotation>,
    /// True when this span shares its id with the caller's client span
    /// (B3 single-host RPC span sharing, as Envoy does for inbound requests).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub shared: bool,
    /// True when the span was force-sampled (B3 debug flag).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_false"
    )]
    pub debug: bool,
}

impl ZipkinSpan {
    /// About how many bytes the span takes in memory: its own size and what its strings,
    /// tags and annotations hold (with a word or so of overhead each). What the collector's
    /// byte bound counts.
    #[must_use]
    pub fn approx_bytes(&self) -> usize {
        const ENTRY: usize = 3 * std::mem::size_of::<usize>();
        let endpoint = |e: &Option<Endpoint>| {
            e.as_ref().map_or(0, |e| {
                e.service_name.as_ref().map_or(0, String::len)
                    + e.ipv4.as_ref().map_or(0, String::len)
                    + e.ipv6.as_ref().map_or(0, String::len)
            })
        };
        std::mem::size_of::<Self>()
            + self.trace_id.len()
            + self.id.len()
            + self.parent_id.as_ref().map_or(0, String::len)
            + self.name.len()
            + endpoint(&self.local_endpoint)
            + endpoint(&self.remote_endpoint)
            + self
                .tags
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2 * ENTRY)
                .sum::<usize>()
            + self
                .annotations
                .iter()
                .map(|a| a.value.len() + std::mem::size_of::<Annotation>())
                .sum::<usize>()
    }
}

impl ZipkinSpan {
    /// The local endpoint's service name, if any.
    pub fn service(&self) -> Option<&str> {
        self.local_endpoint
            .as_ref()
            .and_then(|e| e.service_name.as_deref())
    }

    /// The remote endpoint's service name, if any.
    pub fn remote_service(&self) -> Option<&str> {
        self.remote_endpoint
            .as_ref()
            .and_then(|e| e.service_name.as_deref())
    }
}

/// Zipkin span kind. Serialised as `"CLIENT"`, `"SERVER"`, `"PRODUCER"`,
/// `"CONSUMER"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SpanKind {
    /// Outgoing request.
    Client,
    /// Incoming request.
    Server,
    /// Message sent to a broker.
    Producer,
    /// Message received from a broker.
    Consumer,
}

/// A network endpoint: the service, and optionally its address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Service name, e.g. `frontend`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// IPv4 address in dotted-quad form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<String>,
    /// IPv6 address (`::1`, `2001:db8::c001`), as Zipkin v2's `ipv6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<String>,
    /// Port; absent (or 0 on the wire) when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// A timestamped event within a span.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Annotation {
    /// Microseconds since the Unix epoch.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub timestamp: u64,
    /// What happened.
    #[serde(default, deserialize_with = "null_as_default")]
    pub value: String,
}

// Serde `skip_serializing_if` predicates must take a reference.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_false(v: &bool) -> bool {
    !*v
}

/// `null` deserialises as `T::default()`.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A non-negative integer given as a JSON number (integer or float, as some
/// JavaScript tracers send), a decimal string, or `null`.
fn lenient_u64<'de, D>(deserializer: D) -> Result<u64, D::Error>
where
    D: Deserializer<'de>,
{
    struct U64Visitor;

    impl Visitor<'_> for U64Visitor {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a non-negative integer (number or decimal string)")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom(format!("negative value {v}")))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
            if (0.0..18_446_744_073_709_551_616.0).contains(&v) {
                // In range and non-negative: the cast only drops the fraction.
                Ok(v as u64)
            } else {
                Err(E::custom(format!("out of range value {v}")))
            }
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
            v.trim()
                .parse()
                .map_err(|_| E::custom(format!("invalid integer {v:?}")))
        }

        fn visit_unit<E: de::Error>(self) -> Result<u64, E> {
            Ok(0)
        }

        fn visit_none<E: de::Error>(self) -> Result<u64, E> {
            Ok(0)
        }
    }

    deserializer.deserialize_any(U64Visitor)
}

/// Tags as an object of strings; numbers, booleans and nested values are
/// stringified (nested values as compact JSON), `null` values are dropped.
fn lenient_tags<'de, D>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: Deserializer<'de>,
{
    let raw = Option::<BTreeMap<String, serde_json::Value>>::deserialize(deserializer)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| {
            let s = match v {
                serde_json::Value::Null => return None,
                serde_json::Value::String(s) => s,
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Number(n) => n.to_string(),
                other => other.to_string(),
            };
            Some((k, s))
        })
        .collect())
}

/// One trace's spans as Zipkin's API shows them: a 64-bit trace id (its high half zero) at 16
/// hex characters, as Zipkin keeps the width a tracer sent; the server half of a shared span (a
/// `SERVER` span with the id of a `CLIENT` span of the same trace: Zipkin / Envoy
/// `shared_span_context`, or this workspace's `SpanSemantics::Shared`) marked `shared: true`,
/// so Zipkin tools tell the halves apart. Spans are kept normalised (32 hex) in the store; this
/// is the view the HTTP API serves.
#[must_use]
pub fn zipkin_view(mut spans: Vec<ZipkinSpan>) -> Vec<ZipkinSpan> {
    let clients: std::collections::BTreeSet<String> = spans
        .iter()
        .filter(|s| s.kind == Some(SpanKind::Client))
        .map(|s| s.id.clone())
        .collect();
    for s in &mut spans {
        if s.trace_id.len() == 32 && s.trace_id.starts_with("0000000000000000") {
            s.trace_id = s.trace_id[16..].to_owned();
        }
        if s.kind == Some(SpanKind::Server) && clients.contains(&s.id) {
            s.shared = true;
        }
    }
    spans
}
