//! What decoding an OTLP body would allocate, bounded from above from its bytes alone, before
//! it is decoded.
//!
//! Decoding makes a struct for every message, however small its encoding: an empty `Span` is
//! two bytes of protobuf (`12 00`) or three of JSON (`{},`) and a struct of a few hundred
//! bytes, so a 4 MiB body of them would take about half a gigabyte before a single id is
//! checked. Each walk here follows the OTLP trace schema (the fields that hold messages, by
//! number for protobuf and by name for JSON) without decoding anything, and adds up the body's
//! length (every text decoded, at most) and, for every message that is an element of a
//! repeated field, twice its struct's size (a vector may hold twice what it uses; a singular
//! message is part of its parent's struct).
//!
//! OTLP/JSON costs more: `AnyValue` is deserialised through `serde(flatten)`, which first
//! buffers the whole JSON value (every node of it, known or not) and then does it again for
//! each `AnyValue` nested inside, so a node inside `n` nested `AnyValue`s counts `n` buffered
//! copies besides its struct.
//!
//! A body the walk cannot follow (truncated, malformed, nested deeper than the decoders
//! allow) is counted up to that point: the decoder fails there too, having allocated no more
//! than what was counted. A message written as a JSON array, which serde reads but the walk
//! cannot follow, is refused outright.

use std::mem::size_of;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

/// A string's, a vector's or a buffered JSON node's own size: three words.
const HEADER: usize = 3 * size_of::<usize>();

/// A JSON node buffered by `serde(flatten)` (serde's private `Content`, four words), and a
/// vector's spare room for it (serde_json gives no size hint: vectors grow by doubling). A
/// map entry counts its key and its value.
const BUFFERED: usize = size_of::<[usize; 8]>();

/// prost's recursion limit.
const PROTOBUF_DEPTH: usize = 100;

/// `serde_json`'s recursion limit.
const JSON_DEPTH: usize = 128;

/// The messages of an OTLP trace export that hold other messages or are held repeatedly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Msg {
    Request,
    ResourceSpans,
    Resource,
    EntityRef,
    ScopeSpans,
    Scope,
    Span,
    Event,
    Link,
    Status,
    KeyValue,
    AnyValue,
    ArrayValue,
    KvList,
}

impl Msg {
    /// What one decoded instance takes, twice (a vector's spare room).
    fn cost(self) -> usize {
        2 * match self {
            Msg::Request => size_of::<ExportTraceServiceRequest>(),
            Msg::ResourceSpans => size_of::<ResourceSpans>(),
            Msg::Resource => size_of::<Resource>(),
            Msg::EntityRef => size_of::<EntityRef>(),
            Msg::ScopeSpans => size_of::<ScopeSpans>(),
            Msg::Scope => size_of::<InstrumentationScope>(),
            Msg::Span => size_of::<Span>(),
            Msg::Event => size_of::<Event>(),
            Msg::Link => size_of::<Link>(),
            Msg::Status => size_of::<Status>(),
            Msg::KeyValue => size_of::<KeyValue>(),
            Msg::AnyValue => size_of::<AnyValue>(),
            Msg::ArrayValue => size_of::<ArrayValue>(),
            Msg::KvList => size_of::<KeyValueList>(),
        }
    }

    /// The message protobuf field `number` of `self` holds, if it holds one, and whether the
    /// field is repeated (its messages are a vector's elements, each a struct of its own; a
    /// singular message is a field inside its parent's struct).
    fn field(self, number: u64) -> Option<(Msg, bool)> {
        use Msg as M;
        Some(match (self, number) {
            (M::Request, 1) => (M::ResourceSpans, true),
            (M::ResourceSpans, 1) => (M::Resource, false),
            (M::ResourceSpans, 2) => (M::ScopeSpans, true),
            (M::Resource | M::KvList, 1)
            | (M::Scope | M::Event, 3)
            | (M::Link, 4)
            | (M::Span, 9) => (M::KeyValue, true),
            (M::Resource, 3) => (M::EntityRef, true),
            (M::ScopeSpans, 1) => (M::Scope, false),
            (M::ScopeSpans, 2) => (M::Span, true),
            (M::Span, 11) => (M::Event, true),
            (M::Span, 13) => (M::Link, true),
            (M::Span, 15) => (M::Status, false),
            (M::KeyValue, 2) => (M::AnyValue, false),
            (M::ArrayValue, 1) => (M::AnyValue, true),
            (M::AnyValue, 5) => (M::ArrayValue, false),
            (M::AnyValue, 6) => (M::KvList, false),
            _ => return None,
        })
    }

    /// The message the OTLP/JSON key `key` of `self` holds, if it holds one: the same fields
    /// by their JSON names.
    fn key(self, key: &[u8]) -> Option<(Msg, bool)> {
        let number = match (self, key) {
            (Msg::Request, b"resourceSpans")
            | (Msg::ResourceSpans, b"resource")
            | (Msg::Resource, b"attributes")
            | (Msg::ScopeSpans, b"scope")
            | (Msg::ArrayValue | Msg::KvList, b"values") => 1,
            (Msg::ResourceSpans, b"scopeSpans")
            | (Msg::ScopeSpans, b"spans")
            | (Msg::KeyValue, b"value") => 2,
            (Msg::Resource, b"entityRefs") | (Msg::Scope | Msg::Event, b"attributes") => 3,
            (Msg::Link, b"attributes") => 4,
            (Msg::AnyValue, b"arrayValue") => 5,
            (Msg::AnyValue, b"kvlistValue") => 6,
            (Msg::Span, b"attributes") => 9,
            (Msg::Span, b"events") => 11,
            (Msg::Span, b"links") => 13,
            (Msg::Span, b"status") => 15,
            _ => return None,
        };
        self.field(number)
    }
}

/// Where a walk stopped early: the decoder fails at or before that point.
struct Stop;

/// An upper bound on what prost allocates decoding `body` as an `ExportTraceServiceRequest`.
pub(crate) fn otlp_protobuf(body: &[u8]) -> usize {
    let mut cost = body.len();
    // A stop is counted up to where it happened.
    let _ = protobuf_message(body, Msg::Request, 0, &mut cost);
    cost
}

fn protobuf_message(mut buf: &[u8], msg: Msg, depth: usize, cost: &mut usize) -> Result<(), Stop> {
    if depth > PROTOBUF_DEPTH {
        return Err(Stop);
    }
    while !buf.is_empty() {
        let tag = varint(&mut buf)?;
        let number = tag >> 3;
        match tag & 7 {
            0 | 1 | 5 => skip_scalar(tag, &mut buf)?,
            2 => {
                let field = len_delimited(&mut buf)?;
                let len = field.len();
                match msg.field(number) {
                    Some((inner, repeated)) => {
                        if repeated {
                            *cost = cost.saturating_add(inner.cost());
                        }
                        protobuf_message(field, inner, depth + 1, cost)?;
                    }
                    // An element of a list of texts (`EntityRef`'s keys): a string of its
                    // own, in a vector with spare room.
                    None if msg == Msg::EntityRef && matches!(number, 3 | 4) => {
                        *cost = cost.saturating_add(2 * HEADER + len);
                    }
                    // Text or bytes (a field's own, or an unknown one prost skips): at most
                    // its length.
                    None => *cost = cost.saturating_add(len),
                }
            }
            3 => buf = protobuf_group(buf, number, depth + 1)?,
            _ => return Err(Stop),
        }
    }
    Ok(())
}

/// Skip a group of field `number` (an unknown field; prost skips it allocating nothing): what
/// follows its end.
fn protobuf_group(mut buf: &[u8], number: u64, depth: usize) -> Result<&[u8], Stop> {
    if depth > PROTOBUF_DEPTH {
        return Err(Stop);
    }
    loop {
        let tag = varint(&mut buf)?;
        match tag & 7 {
            0 | 1 | 5 => skip_scalar(tag, &mut buf)?,
            2 => {
                len_delimited(&mut buf)?;
            }
            3 => buf = protobuf_group(buf, tag >> 3, depth + 1)?,
            4 if tag >> 3 == number => return Ok(buf),
            _ => return Err(Stop),
        }
    }
}

/// Skip the value of a varint (`0`), 64-bit (`1`) or 32-bit (`5`) field whose tag is `tag`.
fn skip_scalar(tag: u64, buf: &mut &[u8]) -> Result<(), Stop> {
    match tag & 7 {
        0 => varint(buf).map(|_| ()),
        1 => {
            *buf = buf.get(8..).ok_or(Stop)?;
            Ok(())
        }
        5 => {
            *buf = buf.get(4..).ok_or(Stop)?;
            Ok(())
        }
        _ => Err(Stop),
    }
}

/// A length-delimited field's bytes, `buf` moved past them.
fn len_delimited<'b>(buf: &mut &'b [u8]) -> Result<&'b [u8], Stop> {
    let len = usize::try_from(varint(buf)?).map_err(|_| Stop)?;
    let (field, rest) = buf.split_at_checked(len).ok_or(Stop)?;
    *buf = rest;
    Ok(field)
}

/// A protobuf varint (at most ten bytes).
fn varint(buf: &mut &[u8]) -> Result<u64, Stop> {
    let mut value = 0u64;
    for i in 0..10 {
        let (&byte, rest) = buf.split_first().ok_or(Stop)?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err(Stop)
}

/// An upper bound on what `serde_json` allocates deserialising `body` as an
/// `ExportTraceServiceRequest`.
pub(crate) fn otlp_json(body: &[u8]) -> usize {
    let mut walk = Json {
        body,
        at: 0,
        cost: body.len(),
    };
    // A stop is counted up to where it happened.
    let _ = walk.value(Want::Message(Msg::Request, false), 0, 0);
    walk.cost
}

/// An object's key, unescaped, as far as it can be a schema name (no allocation per key).
#[derive(Default)]
struct Key {
    bytes: [u8; 16],
    /// `usize::MAX`: longer than any schema name.
    len: usize,
}

impl Key {
    /// The key, or nothing that matches a name when it is longer than any.
    fn name(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(b"-")
    }
}

/// What serde makes of a JSON value where it stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// A message: a singular field's, or (`true`) an element of a repeated field's vector.
    Message(Msg, bool),
    /// A repeated message field: an array of them.
    Many(Msg),
    /// Anything else: text, a number, a list of texts, a field serde skips.
    Other,
}

struct Json<'a> {
    body: &'a [u8],
    at: usize,
    cost: usize,
}

impl Json<'_> {
    fn add(&mut self, n: usize) {
        self.cost = self.cost.saturating_add(n);
    }

    fn peek(&mut self) -> Result<u8, Stop> {
        while let Some(&b) = self.body.get(self.at) {
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                return Ok(b);
            }
            self.at += 1;
        }
        Err(Stop)
    }

    fn eat(&mut self, want: u8) -> Result<(), Stop> {
        if self.peek()? == want {
            self.at += 1;
            Ok(())
        } else {
            Err(Stop)
        }
    }

    /// One JSON value, as `want` says serde reads it, inside `buffered` nested `AnyValue`s.
    fn value(&mut self, want: Want, buffered: usize, depth: usize) -> Result<(), Stop> {
        if buffered == 0 && want == Want::Other {
            // Text, a number, a list of texts, or a field serde skips (with no depth limit).
            return self.skip();
        }
        self.add(BUFFERED.saturating_mul(buffered));
        match (self.peek()?, want) {
            // serde reads a struct from an array too, field by field: no exporter writes one,
            // and the schema walk cannot follow it, so it is refused.
            (b'[', Want::Message(..)) => {
                self.cost = usize::MAX;
                Err(Stop)
            }
            (b'{', Want::Message(..) | Want::Other) => {
                if depth >= JSON_DEPTH {
                    return Err(Stop);
                }
                self.at += 1;
                let msg = match want {
                    Want::Message(m, element) => {
                        if element {
                            self.add(m.cost());
                        }
                        Some(m)
                    }
                    _ => None,
                };
                // What an `AnyValue` holds is buffered once more.
                let inner = buffered + usize::from(msg == Some(Msg::AnyValue));
                if self.peek()? == b'}' {
                    self.at += 1;
                    return Ok(());
                }
                loop {
                    let key = self.key(inner)?;
                    self.eat(b':')?;
                    let field = match msg.and_then(|m| m.key(key.name())) {
                        Some((m, true)) => Want::Many(m),
                        Some((m, false)) => Want::Message(m, false),
                        None => Want::Other,
                    };
                    self.value(field, inner, depth + 1)?;
                    match self.peek()? {
                        b',' => self.at += 1,
                        b'}' => {
                            self.at += 1;
                            return Ok(());
                        }
                        _ => return Err(Stop),
                    }
                }
            }
            (b'[', Want::Many(_) | Want::Other) => {
                if depth >= JSON_DEPTH {
                    return Err(Stop);
                }
                self.at += 1;
                let element = match want {
                    Want::Many(m) => Want::Message(m, true),
                    _ => Want::Other,
                };
                if self.peek()? == b']' {
                    self.at += 1;
                    return Ok(());
                }
                loop {
                    self.value(element, buffered, depth + 1)?;
                    match self.peek()? {
                        b',' => self.at += 1,
                        b']' => {
                            self.at += 1;
                            return Ok(());
                        }
                        _ => return Err(Stop),
                    }
                }
            }
            // Buffered, serde reads the types only later: anything else is buffered as it is.
            (b'{', Want::Many(_)) if buffered > 0 => self.value(Want::Other, buffered, depth),
            (b'"', _) => {
                let len = self.string(|_| {})?;
                // Kept as text, and each buffered copy may own one.
                self.add((HEADER + len).saturating_add(len.saturating_mul(buffered)));
                Ok(())
            }
            (b'{', _) => Err(Stop),
            _ => self.scalar(),
        }
    }

    /// A number, `true`, `false` or `null`.
    fn scalar(&mut self) -> Result<(), Stop> {
        let start = self.at;
        while self
            .body
            .get(self.at)
            .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            self.at += 1;
        }
        if self.at == start { Err(Stop) } else { Ok(()) }
    }

    /// A value that holds no message, read to its end without recursion (serde skips an
    /// unknown field with no depth limit): each text counted as kept, an element of a list
    /// with a vector's spare room.
    fn skip(&mut self) -> Result<(), Stop> {
        let mut open = 0usize;
        loop {
            match self.peek()? {
                b'{' | b'[' => {
                    open += 1;
                    self.at += 1;
                }
                b'}' | b']' => {
                    open = open.checked_sub(1).ok_or(Stop)?;
                    self.at += 1;
                }
                b'"' => {
                    let len = self.string(|_| {})?;
                    let header = if open > 0 { 2 * HEADER } else { HEADER };
                    self.add(header + len);
                }
                b',' | b':' if open > 0 => self.at += 1,
                _ => self.scalar()?,
            }
            if open == 0 {
                return Ok(());
            }
        }
    }

    /// An object's key, unescaped (enough of it to compare with the schema's names), counted as
    /// a buffered string inside `buffered` nested `AnyValue`s.
    fn key(&mut self, buffered: usize) -> Result<Key, Stop> {
        if self.peek()? != b'"' {
            return Err(Stop);
        }
        let mut key = Key::default();
        let len = self.string(|c| {
            if let Some(slot) = key.bytes.get_mut(key.len) {
                // Non-ASCII never matches a schema name: any byte above ASCII will do.
                *slot = u8::try_from(c).unwrap_or(0xff);
                key.len += 1;
            } else {
                // Longer than any schema name: never one.
                key.len = usize::MAX;
            }
        })?;
        self.add(BUFFERED.saturating_add(len).saturating_mul(buffered));
        Ok(key)
    }

    /// A string at `self.at` (its opening quote), each character handed to `each` unescaped;
    /// its length as written.
    fn string(&mut self, mut each: impl FnMut(u32)) -> Result<usize, Stop> {
        let start = self.at;
        self.at += 1;
        loop {
            let &b = self.body.get(self.at).ok_or(Stop)?;
            self.at += 1;
            match b {
                b'"' => return Ok(self.at - start),
                b'\\' => {
                    let &e = self.body.get(self.at).ok_or(Stop)?;
                    self.at += 1;
                    each(match e {
                        b'u' => {
                            let hex = self.body.get(self.at..self.at + 4).ok_or(Stop)?;
                            self.at += 4;
                            let hex = std::str::from_utf8(hex).map_err(|_| Stop)?;
                            u32::from_str_radix(hex, 16).map_err(|_| Stop)?
                        }
                        b'b' => 8,
                        b'f' => 12,
                        b'n' => 10,
                        b'r' => 13,
                        b't' => 9,
                        other => u32::from(other),
                    });
                }
                other => each(u32::from(other)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// A realistic request as the OTel SDK exports it: a bound far from the budget.
    fn realistic() -> ExportTraceServiceRequest {
        let kv = |k: &str, v: &str| KeyValue {
            key: k.to_owned(),
            value: Some(AnyValue {
                value: Some(
                    opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                        v.to_owned(),
                    ),
                ),
            }),
            ..Default::default()
        };
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            parent_span_id: vec![3; 8],
            name: "GET /orders/{id}".to_owned(),
            kind: 2,
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            attributes: vec![
                kv("http.request.method", "GET"),
                kv("url.path", "/orders/o-1"),
                kv("http.route", "/orders/{id}"),
                kv("server.address", "frontend"),
                kv("user_agent.original", "curl/8.5.0"),
            ],
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "frontend")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![span; 500],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn a_realistic_request_is_bounded_well_within_16_times_its_size() {
        let request = realistic();
        let protobuf = request.encode_to_vec();
        let json = serde_json::to_vec(&request).unwrap();
        for (what, len, bound) in [
            ("protobuf", protobuf.len(), otlp_protobuf(&protobuf)),
            ("json", json.len(), otlp_json(&json)),
        ] {
            assert!(bound > len, "{what}: {bound} for {len}");
            assert!(bound < 10 * len, "{what}: {bound} for {len}");
        }
    }

    #[test]
    fn empty_spans_count_their_structs() {
        let n = 100_000;
        let mut protobuf = vec![0x0a];
        let inner = [[0x12, 0x00].repeat(n)].concat();
        let mut scope = vec![0x12];
        push_varint(&mut scope, inner.len());
        scope.extend(&inner);
        let mut resource = Vec::new();
        push_varint(&mut resource, scope.len());
        resource.extend(&scope);
        protobuf.extend(resource);
        let decoded = ExportTraceServiceRequest::decode(protobuf.as_slice()).unwrap();
        assert_eq!(decoded.resource_spans[0].scope_spans[0].spans.len(), n);
        // Each two bytes a `Span` struct, twice.
        assert!(otlp_protobuf(&protobuf) >= n * 2 * size_of::<Span>());

        let json = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}{{}}]}}]}}]}}"#,
            "{},".repeat(n)
        );
        let decoded: ExportTraceServiceRequest = serde_json::from_str(&json).unwrap();
        assert_eq!(decoded.resource_spans[0].scope_spans[0].spans.len(), n + 1);
        assert!(otlp_json(json.as_bytes()) >= (n + 1) * 2 * size_of::<Span>());
        // The same with the key escaped, as serde reads it.
        let escaped = json.replace("\"spans\"", r#""\u0073pans""#);
        assert!(otlp_json(escaped.as_bytes()) >= (n + 1) * 2 * size_of::<Span>());
    }

    #[test]
    fn nested_any_values_count_each_buffered_copy() {
        let mut value = String::from(r#"{"stringValue":"x"}"#);
        for _ in 0..30 {
            value = format!(r#"{{"arrayValue":{{"values":[{value},{value}]}}}}"#);
            if value.len() > 1 << 20 {
                break;
            }
        }
        let json = format!(
            r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"k","value":{value}}}]}}}}]}}"#
        );
        let flat = format!(
            r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"k","value":{}}}]}}}}]}}"#,
            r#"{"stringValue":"x"}"#
        );
        assert!(otlp_json(json.as_bytes()) > 16 * json.len());
        assert!(otlp_json(flat.as_bytes()) < 16 * flat.len());
    }

    /// What serde accepts that the schema walk must not miss: a message written as an array
    /// (refused outright), a deeply nested field serde skips before the spans (skipped without
    /// a depth limit, as serde does), a list of texts.
    #[test]
    fn what_serde_also_reads_is_counted_or_refused() {
        let n = 10_000;
        let spans = format!("{}{{}}", "{},".repeat(n));
        let as_array = format!(r#"[[{{"scopeSpans":[{{"spans":[{spans}]}}]}}]]"#);
        let decoded: ExportTraceServiceRequest = serde_json::from_str(&as_array).unwrap();
        assert_eq!(decoded.resource_spans[0].scope_spans[0].spans.len(), n + 1);
        assert_eq!(otlp_json(as_array.as_bytes()), usize::MAX);
        let key_value =
            r#"{"resourceSpans":[{"resource":{"attributes":[["k",{"stringValue":"v"}]]}}]}"#;
        assert_eq!(otlp_json(key_value.as_bytes()), usize::MAX);

        let deep = format!(
            r#"{{"x":{}{},"resourceSpans":[{{"scopeSpans":[{{"spans":[{spans}]}}]}}]}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let decoded: ExportTraceServiceRequest = serde_json::from_str(&deep).unwrap();
        assert_eq!(decoded.resource_spans[0].scope_spans[0].spans.len(), n + 1);
        assert!(otlp_json(deep.as_bytes()) >= (n + 1) * 2 * size_of::<Span>());

        // `EntityRef`'s keys: each an empty string of two bytes, a `String` once decoded.
        let keys = [0x1au8, 0x00].repeat(n);
        let entity = [&[0x1a][..], &varint(keys.len()), &keys].concat();
        let resource = [&[0x0a][..], &varint(entity.len()), &entity].concat();
        let protobuf = [&[0x0a][..], &varint(resource.len()), &resource].concat();
        let decoded = ExportTraceServiceRequest::decode(protobuf.as_slice()).unwrap();
        let resource = decoded.resource_spans[0].resource.as_ref().unwrap();
        assert_eq!(resource.entity_refs[0].id_keys.len(), n);
        assert!(otlp_protobuf(&protobuf) >= n * 2 * HEADER);
    }

    #[test]
    fn malformed_bodies_stop_where_they_break() {
        for body in [
            &b"\x0a\xff"[..],
            b"\x0a\x05\x12",
            b"\x0b\x0c",
            b"\xff\xff\xff",
        ] {
            assert!(otlp_protobuf(body) >= body.len(), "{body:?}");
        }
        for body in [
            "",
            "{",
            r#"{"resourceSpans":[{"#,
            "[1,",
            r#"{"a":"\u12"}"#,
            "nul",
        ] {
            assert!(otlp_json(body.as_bytes()) >= body.len(), "{body:?}");
        }
        // Deeper than the decoders go: stopped, not a stack overflow.
        let deep = "[".repeat(100_000);
        assert!(otlp_json(deep.as_bytes()) >= deep.len());
        // An attribute whose value nests arrays in arrays 200 deep: past prost's limit.
        let mut value: Vec<u8> = Vec::new();
        for _ in 0..200 {
            let mut array = vec![0x0a];
            push_varint(&mut array, value.len());
            array.extend(value);
            value = vec![0x2a];
            push_varint(&mut value, array.len());
            value.extend(array);
        }
        let mut nested = Vec::new();
        for tag in [0x12, 0x0a, 0x0a, 0x0a] {
            let mut outer = vec![tag];
            push_varint(
                &mut outer,
                if nested.is_empty() {
                    value.len()
                } else {
                    nested.len()
                },
            );
            outer.extend(if nested.is_empty() { &value } else { &nested });
            nested = outer;
        }
        assert!(ExportTraceServiceRequest::decode(nested.as_slice()).is_err());
        assert!(otlp_protobuf(&nested) >= nested.len());
    }

    fn varint(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        push_varint(&mut out, n);
        out
    }

    fn push_varint(out: &mut Vec<u8>, mut n: usize) {
        while n >= 0x80 {
            out.push(u8::try_from(n & 0x7f).unwrap() | 0x80);
            n >>= 7;
        }
        out.push(u8::try_from(n).unwrap());
    }
}
