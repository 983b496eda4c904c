//! Access logs: what joins a request id to its trace ids.
//!
//! Three formats, recognised line by line:
//!
//! - **The services' JSON lines** (`examples/services/src/access_log.rs`): `service`,
//!   `version`, `method`, `route`, `status`, `time_us`, `duration_ms`, `request_id`,
//!   `trace_id`, `span_id`.
//! - **Envoy's JSON lines as the demo configures them** (`examples/demo/src/envoy/config.rs`,
//!   `access_log`): `proxy`, `listener` (`edge`, `ingress`, `egress`), `time`, `method`,
//!   `path`, `status`, `duration_ms`, `request_id`, `trace_id` (the `x-b3-traceid` Envoy
//!   forwarded), `envoy_trace_id` (its own span's), `traceparent`, `upstream_cluster`, …
//!   Any other JSON object with a request id (`request_id`, `x_request_id`, `x-request-id`,
//!   `requestId`) or a trace id (`trace_id`, `traceId`, `x_b3_traceid`, `envoy_trace_id`,
//!   `traceparent`) is read the same way.
//! - **Envoy's default text format**: `[%START_TIME%] "%REQ(:METHOD)%
//!   %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS%
//!   %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%
//!   "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%"
//!   "%UPSTREAM_HOST%"`. It carries the start time, method, path, status, duration and the
//!   request id, but **no trace id and no proxy name**: such a line says a request id was
//!   seen, and joins nothing unless a trace id was appended to the format (a quoted 16- or
//!   32-hex id, or a `traceparent`, after the upstream host is read as one).
//!
//! `-` and empty values (Envoy's "not set") and JSON `null` are absent.

use collector::normalize_trace_id;
use serde_json::{Map, Value};

use super::DoctorError;

/// The format an access-log line was read in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LogFormat {
    /// The services' JSON lines (`service`, `request_id`, `trace_id`, …).
    #[default]
    Service,
    /// Envoy JSON lines in the demo's format (`proxy`, `listener`, …).
    EnvoyJson,
    /// Envoy's default text format.
    EnvoyText,
    /// Another JSON object with a request id or a trace id.
    OtherJson,
}

/// What the doctor reads of one access-log line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogRecord {
    /// The format of the line.
    pub format: LogFormat,
    /// The service (`service`) or proxy (`proxy`) that wrote it, when the line says.
    pub service: Option<String>,
    /// Envoy's listener: `edge`, `ingress`, `egress` (demo format only).
    pub listener: Option<String>,
    /// The `x-request-id` of the request.
    pub request_id: Option<String>,
    /// Trace ids of the line, normalised to 32 lower-case hex, without repeats.
    pub trace_ids: Vec<String>,
    /// Start time, microseconds since the Unix epoch (0 when unknown).
    pub start_us: u64,
    /// Duration in microseconds (0 when unknown).
    pub duration_us: u64,
    /// Whether the line gave a duration (a logged `0` is known: under a millisecond in
    /// Envoy's whole milliseconds).
    pub duration_known: bool,
}

/// The lines of one access-log file the doctor could read, and how many it could not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessLog {
    /// The lines read.
    pub records: Vec<LogRecord>,
    /// Non-empty lines in none of the formats (a torn last line, other output).
    pub skipped: usize,
}

/// Read an access log: one record per line in a known format, other lines skipped.
///
/// # Errors
///
/// [`DoctorError`] (source `access log`) when the text has lines but none in a known format:
/// the file is not an access log the doctor reads.
pub fn parse_access_log(text: &str) -> Result<AccessLog, DoctorError> {
    let mut log = AccessLog::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match parse_line(line) {
            Some(r) => log.records.push(r),
            None => log.skipped += 1,
        }
    }
    if log.records.is_empty() && log.skipped > 0 {
        return Err(DoctorError::new(
            "access log",
            format!(
                "none of its {} line(s) is an access-log line the doctor reads (JSON lines \
                 with a request id or trace id, or Envoy's default text format)",
                log.skipped
            ),
        ));
    }
    Ok(log)
}

fn parse_line(line: &str) -> Option<LogRecord> {
    if line.starts_with('{') {
        let Value::Object(m) = serde_json::from_str::<Value>(line).ok()? else {
            return None;
        };
        return json_record(&m);
    }
    if line.starts_with('[') {
        return envoy_text(line);
    }
    None
}

/// A string or number field, `-` / empty / null as absent.
fn text_field(m: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match m.get(*k)? {
        Value::String(s) => present(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn present(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty() && s != "-").then(|| s.to_owned())
}

fn number_field(m: &Map<String, Value>, key: &str) -> Option<f64> {
    match m.get(key)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Milliseconds (possibly fractional) as whole microseconds; negative or absurd as 0.
fn ms_to_us(ms: f64) -> u64 {
    if ms.is_finite() && (0.0..1e12).contains(&ms) {
        // In range and non-negative: the cast only drops the fraction.
        (ms * 1000.0) as u64
    } else {
        0
    }
}

fn push_trace(ids: &mut Vec<String>, raw: &str) {
    let id = if raw.len() == 55 && raw.starts_with("00-") {
        raw.get(3..35).and_then(normalize_trace_id)
    } else {
        normalize_trace_id(raw)
    };
    if let Some(id) = id
        && !ids.contains(&id)
    {
        ids.push(id);
    }
}

fn json_record(m: &Map<String, Value>) -> Option<LogRecord> {
    let mut r = LogRecord {
        request_id: text_field(
            m,
            &["request_id", "x_request_id", "x-request-id", "requestId"],
        ),
        ..LogRecord::default()
    };
    for key in [
        "trace_id",
        "envoy_trace_id",
        "traceId",
        "x_b3_traceid",
        "x-b3-traceid",
        "traceparent",
    ] {
        if let Some(t) = text_field(m, &[key]) {
            push_trace(&mut r.trace_ids, &t);
        }
    }
    if let Some(proxy) = text_field(m, &["proxy"]) {
        r.format = LogFormat::EnvoyJson;
        r.service = Some(proxy);
        r.listener = text_field(m, &["listener"]);
        r.start_us = text_field(m, &["time", "start_time"])
            .and_then(|t| rfc3339_us(&t))
            .unwrap_or(0);
    } else if let Some(service) = text_field(m, &["service"]) {
        r.format = LogFormat::Service;
        r.service = Some(service);
        r.start_us = match m.get("time_us") {
            Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
            Some(Value::String(s)) => s.trim().parse().unwrap_or(0),
            _ => 0,
        };
    } else {
        r.format = LogFormat::OtherJson;
    }
    let duration = number_field(m, "duration_ms");
    r.duration_known = duration.is_some();
    r.duration_us = duration.map_or(0, ms_to_us);
    (r.request_id.is_some() || !r.trace_ids.is_empty()).then_some(r)
}

/// The tokens of an Envoy text line after the `[time]`: quoted strings (without their quotes)
/// and bare words, each tagged `true` when quoted.
fn tokens(rest: &str) -> Vec<(bool, &str)> {
    let mut out = Vec::new();
    let mut s = rest.trim_start();
    while !s.is_empty() {
        if let Some(q) = s.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            out.push((true, &q[..end]));
            s = q.get(end + 1..).unwrap_or("").trim_start();
        } else {
            let end = s.find(char::is_whitespace).unwrap_or(s.len());
            out.push((false, &s[..end]));
            s = s[end..].trim_start();
        }
    }
    out
}

fn envoy_text(line: &str) -> Option<LogRecord> {
    let (time, rest) = line.strip_prefix('[')?.split_once(']')?;
    let tokens = tokens(rest);
    let quoted: Vec<&str> = tokens.iter().filter(|t| t.0).map(|t| t.1).collect();
    let bare: Vec<&str> = tokens.iter().filter(|t| !t.0).map(|t| t.1).collect();
    // The request line `METHOD PATH PROTOCOL` comes first, quoted.
    let request_line = *quoted.first()?;
    if request_line.split(' ').count() != 3 && request_line != "-" {
        return None;
    }
    let mut r = LogRecord {
        format: LogFormat::EnvoyText,
        request_id: quoted.get(3).and_then(|s| present(s)),
        start_us: rfc3339_us(time).unwrap_or(0),
        duration_us: bare
            .get(4)
            .and_then(|d| d.parse::<f64>().ok())
            .map_or(0, ms_to_us),
        duration_known: bare.get(4).is_some_and(|d| d.parse::<f64>().is_ok()),
        ..LogRecord::default()
    };
    for extra in quoted.iter().skip(6) {
        push_trace(&mut r.trace_ids, extra);
    }
    Some(r)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` as microseconds since the Unix epoch.
fn rfc3339_us(s: &str) -> Option<u64> {
    let b = s.trim().as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = b.get(from..from + len)?;
        digits.iter().try_fold(0i64, |acc, d| {
            d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
        })
    };
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b'T' | b't' | b' '))
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut micros = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let mut scale = 100_000i64;
        while let Some(d) = b.get(i).filter(|d| d.is_ascii_digit()) {
            micros += i64::from(d - b'0') * scale;
            scale /= 10;
            i += 1;
        }
    }
    let offset_s = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() => {
            let secs = num(i + 1, 2)? * 3600 + num(i + 4, 2)? * 60;
            if *sign == b'+' { secs } else { -secs }
        }
        None => 0,
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    u64::try_from(secs.checked_mul(1_000_000)?.checked_add(micros)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RID: &str = "3d48b776-a796-92d9-8cd9-55cf73e43c5e";

    #[test]
    fn the_services_lines() {
        let line = format!(
            r#"{{"time_us":1796594734515726,"service":"order","version":"v1","method":"POST","route":"/order.v1.OrderService/GetOrder","status":200,"grpc_status":"0","duration_ms":34.1,"request_id":"{RID}","trace_id":"ca7fea673da6e7f7dfe857dedea8eb57","span_id":"939cf0dcd7ae04e3"}}"#
        );
        let log = parse_access_log(&line).unwrap();
        let r = &log.records[0];
        assert_eq!(r.format, LogFormat::Service);
        assert_eq!(r.service.as_deref(), Some("order"));
        assert_eq!(r.request_id.as_deref(), Some(RID));
        assert_eq!(r.trace_ids, ["ca7fea673da6e7f7dfe857dedea8eb57"]);
        assert_eq!((r.start_us, r.duration_us), (1_796_594_734_515_726, 34_100));
    }

    #[test]
    fn envoys_json_lines() {
        let line = format!(
            r#"{{"authority":"127.0.0.1:27737","baggage":null,"duration_ms":8,"envoy_trace_id":"d9b4318791b3bc47ec1477f28f36c5e9","listener":"egress","method":"POST","parent_span_id":"0b5cad19b03d4a99","proxy":"order-sidecar","request_id":"{RID}","sampled":"1","span_id":"61efced9ff326539","status":200,"time":"2026-12-06T22:05:34.518Z","trace_id":"ec1477f28f36c5e9","traceparent":"00-d9b4318791b3bc47ec1477f28f36c5e9-61efced9ff326539-01"}}"#
        );
        let r = &parse_access_log(&line).unwrap().records[0];
        assert_eq!(r.format, LogFormat::EnvoyJson);
        assert_eq!(r.service.as_deref(), Some("order-sidecar"));
        assert_eq!(r.listener.as_deref(), Some("egress"));
        assert_eq!(
            r.trace_ids,
            [
                "0000000000000000ec1477f28f36c5e9",
                "d9b4318791b3bc47ec1477f28f36c5e9"
            ]
        );
        assert_eq!(r.start_us, 1_796_594_734_518_000);
        assert_eq!(r.duration_us, 8_000);
    }

    #[test]
    fn envoys_default_text_format() {
        let line = format!(
            r#"[2026-12-06T22:07:35.349Z] "GET /orders/o-1 HTTP/1.1" 200 - 0 2 3 - "-" "curl/7.88.1" "{RID}" "127.0.0.1:18931" "-""#
        );
        let r = &parse_access_log(&line).unwrap().records[0];
        assert_eq!(r.format, LogFormat::EnvoyText);
        assert_eq!(r.request_id.as_deref(), Some(RID));
        assert!(r.trace_ids.is_empty());
        assert_eq!((r.start_us, r.duration_us), (1_796_594_855_349_000, 3_000));
        // A trace id appended to the format is read.
        let extended = format!("{line} \"80f198ee56343ba864fe8b2a57d3eff7\"");
        let r = &parse_access_log(&extended).unwrap().records[0];
        assert_eq!(r.trace_ids, ["80f198ee56343ba864fe8b2a57d3eff7"]);
    }

    #[test]
    fn other_lines_are_skipped_and_a_file_of_them_refused() {
        let log = parse_access_log(&format!(
            "\nnot a log line\n{{\"request_id\":\"{RID}\"}}\n{{\"torn\": \n"
        ))
        .unwrap();
        assert_eq!((log.records.len(), log.skipped), (1, 2));
        assert!(parse_access_log("hello\nworld").is_err());
        assert!(parse_access_log("").unwrap().records.is_empty());
        assert!(parse_access_log("[x] y").is_err());
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339_us("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_us("1970-01-01T01:00:00.5+01:00"), Some(500_000));
        assert_eq!(
            rfc3339_us("2000-02-29T00:00:00Z"),
            Some(951_782_400_000_000)
        );
        assert_eq!(rfc3339_us("1969-12-31T23:59:59Z"), None);
        assert_eq!(rfc3339_us("2026-13-01T00:00:00Z"), None);
        assert_eq!(rfc3339_us("garbage"), None);
        assert_eq!(rfc3339_us("٢٠٢٦-12-06T22:07:35Z"), None);
    }
}
