//! Span sources: a Zipkin v2 JSON file, standard input, or a Zipkin v2 API.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use collector::{ZipkinSpan, parse_zipkin_json};
use serde_json::value::RawValue;

use super::{DoctorError, fetch};

/// Where spans come from: `-`, an `http://` base URL, or a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Standard input (`-`).
    Stdin,
    /// A Zipkin v2 API: Zipkin's own or the workspace's collector (`http://host:port`).
    Url(String),
    /// A file holding a Zipkin v2 JSON array of spans, or of traces.
    File(PathBuf),
}

impl Source {
    /// Read a SOURCE argument: `-` is standard input, `http://…` and `https://…` (the scheme
    /// in any case) a Zipkin API (only `http` is supported), anything else a file.
    #[must_use]
    pub fn from_arg(arg: &str) -> Source {
        if arg == "-" {
            Source::Stdin
        } else if ["http://", "https://"].iter().any(|scheme| {
            arg.get(..scheme.len())
                .is_some_and(|a| a.eq_ignore_ascii_case(scheme))
        }) {
            Source::Url(arg.to_owned())
        } else {
            Source::File(PathBuf::from(arg))
        }
    }

    /// How the source is named in messages.
    #[must_use]
    pub fn name(&self) -> String {
        match self {
            Source::Stdin => "-".to_owned(),
            Source::Url(u) => u.clone(),
            Source::File(p) => p.display().to_string(),
        }
    }
}

/// How a Zipkin API is queried: `GET <base>/api/v2/traces?limit=…&lookback=…`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query {
    /// Most traces to fetch (Zipkin answers 10 when none is given). Default 1000.
    pub limit: u32,
    /// How far back to look, in milliseconds. Default one hour.
    pub lookback_ms: u64,
    /// How long to wait for the connection and for the whole answer. Default 10 s.
    pub timeout: Duration,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            limit: 1000,
            lookback_ms: 3_600_000,
            timeout: Duration::from_secs(10),
        }
    }
}

impl Query {
    /// The traces URL for a base URL. A URL whose path already names the API
    /// (`…/api/v2/traces`) keeps its path and query; `limit` and `lookback` are added unless
    /// the query already gives them (the URL's own value wins).
    #[must_use]
    pub fn url(&self, base: &str) -> String {
        let base = base.trim_end_matches('/');
        let mut url = if base.contains("/api/v2/traces") {
            base.to_owned()
        } else {
            format!("{base}/api/v2/traces")
        };
        let given = |key: &str| {
            url.split_once('?')
                .is_some_and(|(_, q)| q.split('&').any(|pair| pair.split('=').next() == Some(key)))
        };
        let missing: Vec<String> = [
            ("limit", self.limit.to_string()),
            ("lookback", self.lookback_ms.to_string()),
        ]
        .into_iter()
        .filter(|(key, _)| !given(key))
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
        if !missing.is_empty() {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&missing.join("&"));
        }
        url
    }
}

/// Read the spans of one source.
///
/// # Errors
///
/// [`DoctorError`] when the file or standard input cannot be read, the API cannot be reached
/// or answers with an error, or the bytes are not Zipkin v2 JSON ([`parse_source_bytes`]).
pub fn read_source(source: &Source, query: &Query) -> Result<Vec<ZipkinSpan>, DoctorError> {
    let name = source.name();
    let bytes = match source {
        Source::Stdin => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| DoctorError::new(&name, format!("cannot read standard input: {e}")))?;
            bytes
        }
        Source::File(path) => std::fs::read(path)
            .map_err(|e| DoctorError::new(&name, format!("cannot read the file: {e}")))?,
        Source::Url(base) => {
            let url = query.url(base);
            fetch::get(&url, query.timeout).map_err(|reason| DoctorError::new(&url, reason))?
        }
    };
    parse_source_bytes(&bytes).map_err(|e| e.with_source(name))
}

/// The spans of a Zipkin v2 JSON document: an array of spans (what `/api/v2/spans` takes and
/// `demo --json` writes) or an array of traces, each an array of spans (what
/// `/api/v2/traces` answers). Each array of spans goes through the collector's own parser,
/// [`collector::parse_zipkin_json`], so ids come out normalised (32 / 16 lower-case hex).
/// A leading UTF-8 byte-order mark is ignored; `[]` holds no span.
///
/// # Errors
///
/// [`DoctorError`] (source `input`) when the bytes are not JSON, not an array, mix spans and
/// traces, or hold a span the collector refuses (a malformed id, a wrong field type).
pub fn parse_source_bytes(bytes: &[u8]) -> Result<Vec<ZipkinSpan>, DoctorError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let err = |reason: String| DoctorError::new("input", reason);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(err(
            "empty: expected a JSON array of spans or of traces".to_owned()
        ));
    }
    let items: Vec<&RawValue> = serde_json::from_slice(bytes).map_err(|e| {
        err(format!(
            "not a JSON array of Zipkin v2 spans or of traces: {e}"
        ))
    })?;
    let (mut traces, mut spans) = (0usize, 0usize);
    for (i, item) in items.iter().enumerate() {
        match item.get().as_bytes().first() {
            Some(b'[') => traces += 1,
            Some(b'{') => spans += 1,
            _ => {
                return Err(err(format!(
                    "element {i} is {}, neither a span (object) nor a trace (array of spans)",
                    item.get().chars().take(40).collect::<String>()
                )));
            }
        }
    }
    if traces > 0 && spans > 0 {
        return Err(err(format!(
            "the array mixes {spans} span(s) and {traces} trace(s): give either spans or traces"
        )));
    }
    if traces == 0 {
        return parse_zipkin_json(bytes).map_err(|e| err(e.to_string()));
    }
    let mut out = Vec::new();
    for (i, trace) in items.iter().enumerate() {
        let spans = parse_zipkin_json(trace.get().as_bytes())
            .map_err(|e| err(format!("trace {i}: {e}")))?;
        out.extend(spans);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPAN: &str = r#"{"traceId":"463ac35c9f6413ad","id":"a2fb4a1d1a96d312","name":"get"}"#;

    #[test]
    fn spans_and_traces_are_both_accepted() {
        let spans = parse_source_bytes(format!("[{SPAN},{SPAN}]").as_bytes()).unwrap();
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].trace_id, "0000000000000000463ac35c9f6413ad");
        let traces = parse_source_bytes(format!("[[{SPAN}],[],[{SPAN}]]").as_bytes()).unwrap();
        assert_eq!(traces.len(), 2);
        assert!(parse_source_bytes(b"[]").unwrap().is_empty());
    }

    #[test]
    fn wrong_shapes_are_refused_with_a_reason() {
        for (input, reason) in [
            ("", "empty"),
            ("{}", "not a JSON array"),
            ("[1]", "element 0"),
            (&format!("[{SPAN},[{SPAN}]]"), "mixes"),
            (
                r#"[{"traceId":"xyz","id":"a2fb4a1d1a96d312"}]"#,
                "invalid trace id",
            ),
            (r#"[[{"traceId":"463ac35c9f6413ad","id":"0"}]]"#, "trace 0"),
            ("not json", "not a JSON array"),
        ] {
            let e = parse_source_bytes(input.as_bytes()).unwrap_err();
            assert!(e.reason().contains(reason), "{input:?}: {e}");
        }
    }

    #[test]
    fn the_query_is_explicit() {
        let q = Query::default();
        assert_eq!(
            q.url("http://127.0.0.1:9411/"),
            "http://127.0.0.1:9411/api/v2/traces?limit=1000&lookback=3600000"
        );
        assert_eq!(
            q.url("http://z:9411/api/v2/traces?serviceName=order"),
            "http://z:9411/api/v2/traces?serviceName=order&limit=1000&lookback=3600000"
        );
        assert_eq!(Source::from_arg("-"), Source::Stdin);
        assert!(matches!(Source::from_arg("http://x"), Source::Url(_)));
        assert!(matches!(Source::from_arg("HTTP://x:9411"), Source::Url(_)));
        assert!(matches!(Source::from_arg("http"), Source::File(_)));
        // The URL's own `limit` or `lookback` wins; the other is still added.
        assert_eq!(
            q.url("http://z:9411/api/v2/traces?limit=3"),
            "http://z:9411/api/v2/traces?limit=3&lookback=3600000"
        );
        assert_eq!(
            q.url("http://z:9411/api/v2/traces?lookback=60000&limit=5"),
            "http://z:9411/api/v2/traces?lookback=60000&limit=5"
        );
        // `endTs` is not `lookback`, nor `limitx` `limit`.
        assert_eq!(
            q.url("http://z:9411/api/v2/traces?limitx=1&endTs=5"),
            "http://z:9411/api/v2/traces?limitx=1&endTs=5&limit=1000&lookback=3600000"
        );
        assert!(matches!(Source::from_arg("spans.json"), Source::File(_)));
    }
}
