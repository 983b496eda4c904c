//! The `trace-headers` CLI: decode, encode and convert mesh tracing headers.
//!
//! The binary is a thin `clap` front end over [`decode`], [`encode`] and [`convert`], which
//! implement the contract of `spec/CLI.md` on top of `b3-propagation`'s codecs. Scripts and
//! the conformance runner depend on the exact JSON, so field names and meanings follow
//! `spec/vectors.json`.
//!
//! ```
//! use trace_headers::{Headers, decode};
//!
//! let mut headers = Headers::default();
//! headers.push_line("b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d").unwrap();
//! let out = decode(&headers, None);
//! assert_eq!(out["context"]["sampling"], "debug");
//! assert_eq!(out["context"]["format"], "b3-single");
//! ```

#![forbid(unsafe_code)]

pub mod doctor;
mod headers;
mod text;

pub use headers::{Headers, MissingColon};
pub use text::decode_text;

use b3_propagation::baggage::{BaggageEntry, BaggageOrigin, BaggagePrefix, BaggageProperty};
use b3_propagation::codec::{
    b3_multi, b3_single, baggage, grpc_trace_bin, jaeger, ot_span_context, traceparent,
};
use b3_propagation::error::ParseError;
use b3_propagation::{
    Extractor, Format, Injector, RequestId, Sampling, SpanContext, SpanId, TraceFlags, TraceId,
    TraceState, header,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value, json};

/// The formats `decode` tries for the context, in order.
const CONTEXT_ORDER: [Format; 6] = [
    Format::B3Single,
    Format::B3Multi,
    Format::TraceParent,
    Format::GrpcTraceBin,
    Format::OtSpanContext,
    Format::Jaeger,
];

fn hex_or_null(v: Option<impl std::fmt::Display>) -> Value {
    v.map_or(Value::Null, |v| Value::String(v.to_string()))
}

/// The JSON of a context: ids, width, sampling, format (and flags / version for
/// `traceparent`).
#[must_use]
pub fn context_json(cx: &SpanContext, format: Format, version: Option<u8>) -> Value {
    let mut m = Map::new();
    m.insert(
        "trace_id".into(),
        hex_or_null(cx.trace_id().map(TraceId::to_hex32)),
    );
    m.insert(
        "trace_id_64bit".into(),
        Value::Bool(cx.trace_id().is_some_and(TraceId::is_64bit)),
    );
    m.insert("span_id".into(), hex_or_null(cx.span_id()));
    m.insert("parent_span_id".into(), hex_or_null(cx.parent_span_id()));
    m.insert("sampling".into(), cx.sampling().as_str().into());
    m.insert("format".into(), format.name().into());
    if format == Format::TraceParent {
        m.insert("trace_flags".into(), cx.trace_flags().to_string().into());
        m.insert(
            "version".into(),
            format!("{:02x}", version.unwrap_or(0)).into(),
        );
    }
    Value::Object(m)
}

fn entry_json(e: &BaggageEntry) -> Value {
    json!({
        "key": e.key,
        "value": e.value,
        "properties": e.properties.iter().map(|p| json!({"key": p.key, "value": p.value})).collect::<Vec<_>>(),
    })
}

fn error_json(e: &ParseError) -> Value {
    json!({"format": e.format().name(), "kind": e.kind().as_str(), "message": e.to_string()})
}

/// One decoded context candidate.
#[derive(Clone)]
struct Decoded {
    context: SpanContext,
    format: Format,
    version: Option<u8>,
    ot_baggage: Vec<BaggageEntry>,
}

fn decode_format(h: &Headers, f: Format) -> Option<Result<Decoded, ParseError>> {
    let plain = |r: Option<Result<SpanContext, ParseError>>| {
        r.map(|r| {
            r.map(|context| Decoded {
                context,
                format: f,
                version: None,
                ot_baggage: Vec::new(),
            })
        })
    };
    match f {
        Format::B3Single => plain(b3_single::extract(h)),
        Format::B3Multi => plain(b3_multi::extract(h)),
        Format::GrpcTraceBin => plain(grpc_trace_bin::extract(h)),
        Format::Jaeger => plain(jaeger::extract(h)),
        Format::TraceParent => traceparent::extract(h).map(|r| {
            r.map(|tp| Decoded {
                context: tp.context,
                format: f,
                version: Some(tp.version),
                ot_baggage: Vec::new(),
            })
        }),
        Format::OtSpanContext => ot_span_context::extract(h).map(|r| {
            r.map(|ot| Decoded {
                context: ot.context,
                format: f,
                version: None,
                ot_baggage: ot.baggage,
            })
        }),
        _ => None,
    }
}

/// A header that was present but not used.
#[derive(Clone)]
enum Issue {
    /// Rejected by its codec.
    Parse(ParseError),
    /// A `tracestate` without a valid `traceparent`.
    TracestateWithoutTraceparent,
    /// A prefixed baggage header (`baggage-<key>`, `ot-baggage-<key>`, `uberctx-<key>`),
    /// named: rejected by its codec, or (`None`) with nothing after its prefix.
    Prefixed(String, Option<ParseError>),
}

impl Issue {
    fn to_json(&self) -> Value {
        match self {
            Issue::Parse(e) => error_json(e),
            Issue::TracestateWithoutTraceparent => json!({
                "format": "tracestate",
                "kind": "no_traceparent",
                "message": "tracestate without a valid traceparent is discarded",
            }),
            Issue::Prefixed(name, e) => {
                let (kind, why) = match e {
                    Some(e) => (e.kind().as_str(), crate::text::reason(e)),
                    None => ("empty", "no key after the prefix".to_owned()),
                };
                json!({
                    "format": "baggage",
                    "kind": kind,
                    "message": format!("invalid baggage header {name}: {why}"),
                })
            }
        }
    }
}

/// What `decode` found, before it is printed (also the input of `convert`).
struct Decode {
    context: Option<Decoded>,
    /// Valid contexts of later formats in the order, which lost to `context`.
    ignored: Vec<Decoded>,
    tracestate: Option<TraceState>,
    baggage: Vec<BaggageEntry>,
    request_id: Option<RequestId>,
    errors: Vec<Issue>,
}

fn decode_all(h: &Headers, only: Option<Format>) -> Decode {
    let wanted = |f: Format| only.is_none_or(|o| o == f);
    let mut out = Decode {
        context: None,
        ignored: Vec::new(),
        tracestate: None,
        baggage: Vec::new(),
        request_id: None,
        errors: Vec::new(),
    };
    let mut traceparent_valid = false;
    for f in CONTEXT_ORDER.into_iter().filter(|f| wanted(*f)) {
        match decode_format(h, f) {
            Some(Ok(d)) => {
                if f == Format::TraceParent {
                    traceparent_valid = true;
                }
                if out.context.is_none() {
                    out.context = Some(d);
                } else {
                    out.ignored.push(d);
                }
            }
            Some(Err(e)) => out.errors.push(Issue::Parse(e)),
            None => {}
        }
    }
    if wanted(Format::TraceParent) {
        let present = h.get(&header::TRACESTATE).is_some();
        if traceparent_valid {
            match TraceState::parse_lines(h.get_all_values(&header::TRACESTATE).collect::<Vec<_>>())
            {
                Ok(ts) => out.tracestate = Some(ts),
                Err(e) => {
                    out.tracestate = Some(TraceState::new());
                    out.errors.push(Issue::Parse(e));
                }
            }
        } else if present {
            out.errors.push(Issue::TracestateWithoutTraceparent);
        }
    }
    if wanted(Format::Baggage) {
        // What the core's extract keeps, in its order (`baggage`, then the prefixed headers),
        // with an error for each header rejected: the lines of `baggage` are one field, each
        // prefixed header is a header of its own.
        let (bag, dropped) = baggage::decode_lines(h.get_all_values(&header::BAGGAGE));
        out.baggage.extend(bag.entries().iter().cloned());
        if let Some(e) = dropped {
            out.errors.push(Issue::Parse(e));
        }
        baggage::prefixed_headers(h, |name, read| match read {
            Some(Ok(entry)) => out.baggage.push(entry),
            Some(Err(e)) => out.errors.push(Issue::Prefixed(name.to_owned(), Some(e))),
            None => {
                if BaggagePrefix::ALL
                    .iter()
                    .any(|p| name.eq_ignore_ascii_case(p.as_str()))
                {
                    out.errors.push(Issue::Prefixed(name.to_owned(), None));
                }
            }
        });
    }
    if wanted(Format::OtSpanContext) {
        if let Some(d) = &out.context {
            if d.format == Format::OtSpanContext {
                out.baggage.extend(d.ot_baggage.iter().cloned());
            } else if let Some(Ok(ot)) = ot_span_context::extract(h) {
                out.baggage.extend(ot.baggage);
            }
        } else if let Some(Ok(ot)) = ot_span_context::extract(h) {
            out.baggage.extend(ot.baggage);
        }
    }
    if wanted(Format::RequestId) {
        match b3_propagation::codec::request_id::extract(h) {
            Some(Ok(id)) => out.request_id = Some(id),
            Some(Err(e)) => out.errors.push(Issue::Parse(e)),
            None => {}
        }
    }
    out
}

/// `decode`: the JSON object of CLI.md (`context`, `tracestate`, `baggage`, `request_id`,
/// `request_id_info`, `errors`), optionally for one format only.
#[must_use]
pub fn decode(h: &Headers, only: Option<Format>) -> Value {
    let d = decode_all(h, only);
    let context = d.context.as_ref().map_or(Value::Null, |c| {
        context_json(&c.context, c.format, c.version)
    });
    let tracestate = d.tracestate.as_ref().map_or(Value::Null, |ts| {
        Value::Array(ts.iter().map(|(k, v)| json!([k, v])).collect())
    });
    let request_id_info = d.request_id.as_ref().map_or(Value::Null, |id| {
        json!({
            "trace_reason": id.trace_reason().as_str(),
            "stable_sampling_value": id.stable_sampling_value(),
        })
    });
    json!({
        "context": context,
        "tracestate": tracestate,
        "baggage": d.baggage.iter().map(entry_json).collect::<Vec<_>>(),
        "request_id": d.request_id.as_ref().map(RequestId::as_str),
        "request_id_info": request_id_info,
        "errors": d.errors.iter().map(|e| e.to_json()).collect::<Vec<_>>(),
    })
}

/// An error in the JSON given to `encode`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputError(pub String);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

/// The string at `key`: `None` when absent or `null`, an error when it is another type (a
/// number where a string belongs is a mistake to report, not a field to ignore).
fn field<'a>(v: &'a Value, key: &str) -> Result<Option<&'a str>, InputError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(InputError(format!(
            "`{key}`: expected a string, got {other}"
        ))),
    }
}

/// The array at `key`, as [`field`] reads strings.
fn array<'a>(v: &'a Value, key: &str) -> Result<&'a [Value], InputError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(other) => Err(InputError(format!(
            "`{key}`: expected an array, got {other}"
        ))),
    }
}

fn parse_hex_field(v: &Value, key: &str, max: usize) -> Result<Option<u128>, InputError> {
    let Some(s) = field(v, key)? else {
        return Ok(None);
    };
    if s.is_empty() || s.len() > max {
        return Err(InputError(format!(
            "`{key}`: expected 1..={max} hex digits, got {s:?}"
        )));
    }
    // `from_str_radix` also takes a leading `+`: only hex digits are an id.
    if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(InputError(format!("`{key}`: not hex: {s:?}")));
    }
    u128::from_str_radix(s, 16)
        .map(Some)
        .map_err(|_| InputError(format!("`{key}`: not hex: {s:?}")))
}

/// The context, tracestate, baggage and request id of an `encode` input.
struct EncodeInput {
    context: Option<SpanContext>,
    tracestate: TraceState,
    baggage: Vec<BaggageEntry>,
    request_id: Option<RequestId>,
}

/// The input of `encode --format f`: the context fields always, the optional fields only
/// where `f` writes them (an invalid `request_id` does not stop a B3 header).
fn parse_input(v: &Value, f: Format) -> Result<EncodeInput, InputError> {
    if !v.is_object() {
        return Err(InputError("expected a JSON object".into()));
    }
    let sampling = match field(v, "sampling")? {
        None => Sampling::Deferred,
        Some(s) => s
            .parse()
            .map_err(|e| InputError(format!("`sampling`: {e}")))?,
    };
    let trace = parse_hex_field(v, "trace_id", 32)?;
    let span = parse_hex_field(v, "span_id", 16)?;
    let parent = parse_hex_field(v, "parent_span_id", 16)?;
    let is_64 = match v.get("trace_id_64bit") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(InputError(format!(
                "`trace_id_64bit`: expected true or false, got {other}"
            )));
        }
    };
    let context = match (trace, span) {
        (Some(t), Some(s)) => {
            let trace_id = if is_64 && t >> 64 == 0 {
                TraceId::from_u64(t as u64)
            } else {
                TraceId::from_u128(t)
            }
            .ok_or_else(|| InputError("`trace_id`: all zero".into()))?;
            let span_id = SpanId::from_u64(s as u64)
                .ok_or_else(|| InputError("`span_id`: all zero".into()))?;
            let flags = match field(v, "trace_flags")? {
                Some(f) if f.len() <= 2 && f.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    u8::from_str_radix(f, 16)
                        .map_err(|_| InputError(format!("`trace_flags`: not hex: {f:?}")))?
                }
                Some(f) => {
                    return Err(InputError(format!(
                        "`trace_flags`: expected 1..=2 hex digits, got {f:?}"
                    )));
                }
                None => 0,
            };
            Some(
                SpanContext::new(trace_id, span_id)
                    .with_parent(parent.and_then(|p| SpanId::from_u64(p as u64)))
                    .with_sampling(sampling)
                    .with_trace_flags(TraceFlags::new(flags)),
            )
        }
        (None, None) => Some(SpanContext::sampling_only(sampling)),
        _ => return Err(InputError("`trace_id` and `span_id` go together".into())),
    };
    // `null` (what `decode` prints without a traceparent) is no tracestate.
    let tracestate = match v.get("tracestate") {
        Some(members) if f == Format::TraceParent && !members.is_null() => tracestate_of(members)?,
        _ => TraceState::new(),
    };
    let mut baggage = Vec::new();
    let writes_baggage = matches!(f, Format::Baggage | Format::OtSpanContext);
    let entries = array(v, "baggage")?;
    // The W3C rules are `baggage`'s: `x-ot-span-context` carries its items as they came.
    let w3c = f == Format::Baggage;
    let mut within_limits = b3_propagation::Baggage::new();
    for e in entries.iter().filter(|_| writes_baggage) {
        let bad = |why: String| InputError(format!("`baggage`: {why}"));
        if !e.is_object() {
            return Err(bad(format!("expected an entry object, got {e}")));
        }
        let (Some(key), Some(value)) = (field(e, "key")?, field(e, "value")?) else {
            return Err(bad("entries need `key` and `value`".into()));
        };
        // The rules `Baggage::set` applies to an application's entry — a token key, a value
        // without control characters, the list within the W3C limits — which the encoder
        // would otherwise meet by leaving entries out in silence.
        if w3c {
            within_limits
                .set(key, value)
                .map_err(|e| bad(format!("{key:?}: {e}")))?;
        }
        let mut entry = BaggageEntry::new(key, value);
        for p in array(e, "properties")? {
            let Some(k) = p
                .is_object()
                .then(|| field(p, "key"))
                .transpose()?
                .flatten()
            else {
                return Err(bad(format!("a property needs a `key`, got {p}")));
            };
            if w3c && (k.is_empty() || http::HeaderName::from_bytes(k.as_bytes()).is_err()) {
                return Err(bad(format!("property key {k:?} is not a token")));
            }
            entry.properties.push(BaggageProperty {
                key: k.to_owned(),
                value: field(p, "value")?.map(str::to_owned),
            });
        }
        baggage.push(entry);
    }
    let request_id = match field(v, "request_id")? {
        Some(s) if f == Format::RequestId => Some(
            RequestId::parse(s.as_bytes()).map_err(|e| InputError(format!("`request_id`: {e}")))?,
        ),
        _ => None,
    };
    Ok(EncodeInput {
        context,
        tracestate,
        baggage,
        request_id,
    })
}

/// `tracestate` as `[[key, value], …]`: each member checked on its own (a value holding `,`
/// or `=` is refused, not read as more members), then the list as a whole (duplicates, the
/// member limit).
fn tracestate_of(members: &Value) -> Result<TraceState, InputError> {
    let bad = |why: String| InputError(format!("`tracestate`: {why}"));
    let members = members
        .as_array()
        .ok_or_else(|| bad("expected [[key, value], …]".into()))?;
    let mut line = String::new();
    for m in members {
        let (Some(k), Some(v), None) = (
            m.get(0).and_then(Value::as_str),
            m.get(1).and_then(Value::as_str),
            m.get(2),
        ) else {
            return Err(bad(format!("expected a [key, value] pair, got {m}")));
        };
        let one = format!("{k}={v}");
        let parsed = TraceState::parse_lines([one.as_bytes()]).map_err(|e| bad(e.to_string()))?;
        if parsed.iter().ne([(k, v)]) {
            return Err(bad(format!("invalid member {one:?}")));
        }
        if !line.is_empty() {
            line.push(',');
        }
        line.push_str(&one);
    }
    TraceState::parse_lines([line.as_bytes()]).map_err(|e| bad(e.to_string()))
}

fn emit(input: &EncodeInput, f: Format) -> Value {
    let mut out = HeaderMap::new();
    let cx = input
        .context
        .unwrap_or(SpanContext::sampling_only(Sampling::Deferred));
    let set = |out: &mut HeaderMap, name: HeaderName, v: Option<HeaderValue>| {
        if let Some(v) = v {
            out.set(&name, v);
        }
    };
    match f {
        Format::B3Single => set(&mut out, header::B3, b3_single::encode(&cx)),
        Format::B3Multi => b3_multi::inject(&cx, &mut out),
        Format::TraceParent => {
            if let Some(tp) = traceparent::encode(&cx) {
                out.set(&header::TRACEPARENT, tp);
                set(
                    &mut out,
                    header::TRACESTATE,
                    input.tracestate.header_value().cloned(),
                );
            }
        }
        Format::Baggage => set(&mut out, header::BAGGAGE, baggage::encode(&input.baggage)),
        Format::RequestId => {
            let id = input.request_id.clone().unwrap_or_else(RequestId::generate);
            out.set(&header::X_REQUEST_ID, id.header_value().clone());
        }
        Format::OtSpanContext => set(
            &mut out,
            header::X_OT_SPAN_CONTEXT,
            ot_span_context::encode(&cx, &input.baggage),
        ),
        Format::GrpcTraceBin => set(
            &mut out,
            header::GRPC_TRACE_BIN,
            grpc_trace_bin::encode(&cx),
        ),
        Format::Jaeger => set(&mut out, header::UBER_TRACE_ID, jaeger::encode(&cx)),
        _ => {}
    }
    let mut m = Map::new();
    for (name, value) in &out {
        m.insert(
            name.as_str().to_owned(),
            Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned()),
        );
    }
    Value::Object(m)
}

/// `encode --format F`: the headers of `f` for the JSON `input`.
///
/// # Errors
///
/// [`InputError`] when the input is not an object of the documented shape.
pub fn encode(input: &Value, f: Format) -> Result<Value, InputError> {
    Ok(emit(&parse_input(input, f)?, f))
}

/// `convert --to F`: decode, then encode the decoded context (with its baggage, request id,
/// and the `tracestate` only when the context came from `traceparent`).
#[must_use]
pub fn convert(h: &Headers, to: Format) -> Value {
    let d = decode_all(h, None);
    let from_traceparent = d
        .context
        .as_ref()
        .is_some_and(|c| c.format == Format::TraceParent);
    let input = EncodeInput {
        context: d.context.as_ref().map(|c| c.context),
        tracestate: if from_traceparent {
            d.tracestate.unwrap_or_default()
        } else {
            TraceState::new()
        },
        baggage: d
            .baggage
            .into_iter()
            .map(|mut e| {
                e.origin = BaggageOrigin::W3c;
                e
            })
            .collect(),
        request_id: d.request_id,
    };
    emit(&input, to)
}

/// The formats `decode --format`, `encode --format` and `convert --to` accept.
pub const FORMATS: [Format; 8] = [
    Format::B3Single,
    Format::B3Multi,
    Format::TraceParent,
    Format::Baggage,
    Format::RequestId,
    Format::OtSpanContext,
    Format::GrpcTraceBin,
    Format::Jaeger,
];

#[cfg(test)]
mod tests {
    use super::*;

    /// A field of the wrong type, or a baggage entry the encoder could not write, is an input
    /// error (exit 2), not something left out in silence.
    #[test]
    fn encode_refuses_what_it_would_otherwise_ignore() {
        let ctx = |extra: Value| {
            let mut v = serde_json::json!({
                "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                "span_id": "a2fb4a1d1a96d312",
                "sampling": "accept",
            });
            for (k, x) in extra.as_object().expect("object") {
                v[k] = x.clone();
            }
            v
        };
        for (extra, f, why) in [
            (
                serde_json::json!({"sampling": 1}),
                Format::B3Single,
                "`sampling`: expected a string",
            ),
            (
                serde_json::json!({"trace_id_64bit": "yes"}),
                Format::B3Single,
                "`trace_id_64bit`",
            ),
            (
                serde_json::json!({"trace_flags": 1}),
                Format::TraceParent,
                "`trace_flags`",
            ),
            (
                serde_json::json!({"request_id": 5}),
                Format::RequestId,
                "`request_id`",
            ),
            (
                serde_json::json!({"baggage": {"k": "v"}}),
                Format::Baggage,
                "`baggage`: expected an array",
            ),
            (
                serde_json::json!({"baggage": ["k=v"]}),
                Format::Baggage,
                "expected an entry object",
            ),
            (
                serde_json::json!({"baggage": [{"key": "bad key", "value": "v"}]}),
                Format::Baggage,
                "\"bad key\"",
            ),
            (
                serde_json::json!({"baggage": [{"key": "k", "value": "a\u{1}b"}]}),
                Format::Baggage,
                "`baggage`",
            ),
            (
                serde_json::json!({"baggage": [
                    {"key": "a", "value": "x".repeat(5000)},
                    {"key": "b", "value": "y".repeat(5000)},
                ]}),
                Format::Baggage,
                "bytes",
            ),
            (
                serde_json::json!({"baggage": [{"key": "k", "value": "v", "properties": [{"value": "x"}]}]}),
                Format::Baggage,
                "a property needs a `key`",
            ),
            (
                serde_json::json!({"baggage": [{"key": "k", "value": "v", "properties": [{"key": "p q"}]}]}),
                Format::Baggage,
                "not a token",
            ),
        ] {
            let e = encode(&ctx(extra.clone()), f).expect_err(&extra.to_string());
            assert!(e.0.contains(why), "{extra}: {e}");
        }
        // `x-ot-span-context` items are not W3C members: what `decode` gives, `encode` takes.
        let ot = encode(
            &ctx(serde_json::json!({"baggage": [{"key": "user id", "value": "a b"}]})),
            Format::OtSpanContext,
        )
        .expect("an ot item need not be a W3C member");
        assert!(ot.get("x-ot-span-context").is_some(), "{ot}");
        // `null` stays "absent", as `decode` prints absent fields.
        let ok = encode(
            &ctx(serde_json::json!({"parent_span_id": null, "trace_flags": null, "baggage": null})),
            Format::TraceParent,
        )
        .expect("nulls");
        assert_eq!(
            ok["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-a2fb4a1d1a96d312-01"
        );
        let ok = encode(
            &ctx(serde_json::json!({"baggage": [{"key": "k", "value": "v w", "properties": [{"key": "p", "value": null}]}]})),
            Format::Baggage,
        )
        .expect("a valid entry");
        assert_eq!(ok["baggage"], "k=v%20w;p");
    }

    /// `decode` keeps the prefixed baggage the core's extract keeps: an entry over the limits
    /// is reported, not listed.
    #[test]
    fn decode_holds_prefixed_baggage_to_the_cores_limits() {
        let mut h = Headers::default();
        h.push("baggage-big", "x".repeat(9000).as_bytes());
        h.push("baggage-small", b"1");
        let out = decode(&h, Some(Format::Baggage));
        let keys: Vec<&str> = out["baggage"]
            .as_array()
            .expect("baggage")
            .iter()
            .map(|e| e["key"].as_str().expect("key"))
            .collect();
        assert_eq!(keys, ["small"], "{out}");
        assert_eq!(out["errors"][0]["kind"], "too_long", "{out}");
    }

    #[test]
    fn encode_reads_each_tracestate_member_whole() {
        let with = |ts: Value| {
            serde_json::json!({
                "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                "span_id": "a2fb4a1d1a96d312",
                "sampling": "accept",
                "tracestate": ts,
            })
        };
        let ok = encode(
            &with(serde_json::json!([["a", "1"], ["b", "2"]])),
            Format::TraceParent,
        )
        .expect("two members");
        assert_eq!(ok["tracestate"], "a=1,b=2");
        // `null`, as `decode` prints it, is no tracestate.
        let none = encode(&with(Value::Null), Format::TraceParent).expect("null");
        assert!(none.get("tracestate").is_none(), "{none}");
        // A repeated key keeps its first value, as on decode.
        let first = encode(
            &with(serde_json::json!([["a", "1"], ["a", "2"]])),
            Format::TraceParent,
        )
        .expect("repeated key");
        assert_eq!(first["tracestate"], "a=1");
        // A value holding `,` or `=` would read as more members: refused.
        for bad in [
            serde_json::json!([["a", "1,b=2"]]),
            serde_json::json!([["a", "x=y"]]),
            serde_json::json!([["a"]]),
            serde_json::json!([["a", "1", "2"]]),
            serde_json::json!("a=1"),
            serde_json::json!({"a": "1"}),
        ] {
            assert!(
                encode(&with(bad.clone()), Format::TraceParent).is_err(),
                "{bad}"
            );
            // Only traceparent writes tracestate: other formats do not judge it.
            assert!(
                encode(&with(bad.clone()), Format::B3Single).is_ok(),
                "{bad}"
            );
        }
    }

    #[test]
    fn encode_judges_only_the_fields_the_format_writes() {
        let input = serde_json::json!({
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "span_id": "a2fb4a1d1a96d312",
            "request_id": "bad id",
            "baggage": [{"key": "k"}],
        });
        assert!(encode(&input, Format::B3Single).is_ok());
        assert!(encode(&input, Format::Jaeger).is_ok());
        assert!(encode(&input, Format::RequestId).is_err());
        assert!(encode(&input, Format::Baggage).is_err());
        assert!(encode(&input, Format::OtSpanContext).is_err());
    }

    #[test]
    fn encode_takes_only_hex_digits() {
        let ok = serde_json::json!({"trace_id": "1", "span_id": "2", "sampled": true});
        assert!(encode(&ok, Format::B3Single).is_ok());
        for (key, bad) in [
            ("trace_id", "+1"),
            ("span_id", "+2"),
            ("trace_flags", "+1"),
            ("trace_flags", "001"),
        ] {
            let mut v = ok.clone();
            v[key] = serde_json::Value::String(bad.to_owned());
            let err = encode(&v, Format::B3Single).unwrap_err();
            assert!(err.to_string().contains(key), "{key}={bad}: {err}");
        }
    }
}
