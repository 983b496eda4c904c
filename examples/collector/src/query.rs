//! Zipkin v2 `GET /api/v2/traces` query parameters and matching.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::model::ZipkinSpan;
use super::store::Store;

/// Default number of traces returned by `GET /api/v2/traces`.
const DEFAULT_LIMIT: usize = 10;

/// Raw query string of `GET /api/v2/traces`. Numbers are parsed by hand so
/// that empty values (`minDuration=`, as the Zipkin UI sends) mean "unset".
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TracesParams {
    service_name: Option<String>,
    span_name: Option<String>,
    remote_service_name: Option<String>,
    annotation_query: Option<String>,
    min_duration: Option<String>,
    max_duration: Option<String>,
    end_ts: Option<String>,
    lookback: Option<String>,
    limit: Option<String>,
}

/// Parsed `GET /api/v2/traces` filters.
#[derive(Debug)]
pub(crate) struct TraceQuery {
    service_name: Option<String>,
    span_name: Option<String>,
    remote_service_name: Option<String>,
    /// `key=value` (tag equals) or `key` (tag present or annotation value).
    annotation_terms: Vec<(String, Option<String>)>,
    min_duration: Option<u64>,
    max_duration: Option<u64>,
    /// Inclusive window on the trace's time (its root span's timestamp, else its earliest),
    /// µs. Only applied when the caller passed `endTs` or `lookback`.
    window: Option<(u64, u64)>,
    limit: usize,
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

fn number(name: &str, v: Option<String>) -> Result<Option<u64>, String> {
    non_empty(v)
        .map(|s| {
            s.parse::<u64>()
                .map_err(|_| format!("{name} must be a non-negative integer, got {s:?}"))
        })
        .transpose()
}

impl TryFrom<TracesParams> for TraceQuery {
    type Error = String;

    fn try_from(p: TracesParams) -> Result<Self, String> {
        let limit = match number("limit", p.limit)? {
            None => DEFAULT_LIMIT,
            Some(0) => return Err("limit must be greater than 0".to_owned()),
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let end_ts = millis("endTs", p.end_ts)?;
        let lookback = millis("lookback", p.lookback)?;
        let window = if end_ts.is_none() && lookback.is_none() {
            None
        } else {
            // Zipkin: lookback defaults to endTs, i.e. everything before it.
            Some(window_us(end_ts.unwrap_or_else(now_ms), lookback))
        };
        let min_duration = number("minDuration", p.min_duration)?;
        let max_duration = number("maxDuration", p.max_duration)?;
        // As Zipkin's `QueryRequest` checks them.
        match (min_duration, max_duration) {
            (Some(0), _) => return Err("minDuration must be greater than 0".to_owned()),
            (Some(min), Some(max)) if max < min => {
                return Err(format!(
                    "maxDuration ({max}) must not be less than minDuration ({min})"
                ));
            }
            (None, Some(_)) => {
                return Err("maxDuration is only valid with minDuration".to_owned());
            }
            _ => {}
        }
        let annotation_terms = non_empty(p.annotation_query)
            .map(|q| {
                q.split(" and ")
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    // `key=` is `key`, as Zipkin reads it: a tag present or an annotation.
                    .map(|t| match t.split_once('=') {
                        Some((k, v)) if !v.trim().is_empty() => {
                            (k.trim().to_owned(), Some(v.trim().to_owned()))
                        }
                        Some((k, _)) => (k.trim().to_owned(), None),
                        None => (t.to_owned(), None),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            service_name: non_empty(p.service_name),
            // Old Zipkin UIs send spanName=all for "any".
            span_name: non_empty(p.span_name).filter(|s| !s.eq_ignore_ascii_case("all")),
            remote_service_name: non_empty(p.remote_service_name),
            annotation_terms,
            min_duration,
            max_duration,
            window,
            limit,
        })
    }
}

/// When a trace happened, as Zipkin reads it for a time window: its root span's timestamp,
/// else its earliest (µs). `None` when no span has one.
pub(crate) fn trace_time(spans: &[&ZipkinSpan]) -> Option<u64> {
    let root = spans
        .iter()
        .find(|s| s.parent_id.is_none() && s.timestamp > 0)
        .map(|s| s.timestamp);
    root.or_else(|| spans.iter().map(|s| s.timestamp).filter(|t| *t > 0).min())
}

/// The window `[endTs - lookback, endTs]` in µs, from milliseconds as the API takes them
/// (`lookback` defaults to `endTs`: everything before it), as Zipkin's `QueryRequest.test`
/// compares a trace's timestamp with it.
pub(crate) fn window_us(end_ms: u64, lookback_ms: Option<u64>) -> (u64, u64) {
    let begin_ms = end_ms.saturating_sub(lookback_ms.unwrap_or(end_ms));
    (begin_ms.saturating_mul(1_000), end_ms.saturating_mul(1_000))
}

/// A query parameter that is a number of milliseconds (empty: unset), greater than 0 when set
/// (Zipkin refuses `endTs` and `lookback` of 0).
pub(crate) fn millis(name: &str, v: Option<String>) -> Result<Option<u64>, String> {
    match number(name, v)? {
        Some(0) => Err(format!("{name} must be greater than 0")),
        n => Ok(n),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn eq_ci(a: Option<&str>, b: &str) -> bool {
    a.is_some_and(|a| a.eq_ignore_ascii_case(b))
}

impl TraceQuery {
    /// Whether a trace matches, as Zipkin's `QueryRequest.test` decides: the trace's time
    /// (its root span's timestamp, else its earliest) falls in the window, and each criterion
    /// is met by *some* span of `serviceName` (any span when none is given) — not
    /// necessarily the same span for `spanName`, `remoteServiceName`, the duration and each
    /// `annotationQuery` term.
    fn trace_matches(&self, spans: &[&ZipkinSpan]) -> bool {
        if let Some((begin, end)) = self.window {
            match trace_time(spans) {
                Some(t) if t >= begin && t <= end => {}
                _ => return false,
            }
        }
        let in_service = |s: &ZipkinSpan| {
            self.service_name
                .as_deref()
                .is_none_or(|svc| eq_ci(s.service(), svc))
        };
        let candidates = || spans.iter().copied().filter(|s| in_service(s));
        let duration_ok = |d: u64| {
            self.min_duration.is_none_or(|min| d >= min)
                && self.max_duration.is_none_or(|max| d <= max)
        };
        candidates().next().is_some()
            && self
                .span_name
                .as_deref()
                .is_none_or(|n| candidates().any(|s| s.name.eq_ignore_ascii_case(n)))
            && self
                .remote_service_name
                .as_deref()
                .is_none_or(|r| candidates().any(|s| eq_ci(s.remote_service(), r)))
            && (self.min_duration.is_none() && self.max_duration.is_none()
                || candidates().any(|s| duration_ok(s.duration)))
            && self.annotation_terms.iter().all(|(key, value)| {
                candidates().any(|s| match value {
                    Some(v) => s.tags.get(key) == Some(v),
                    None => {
                        s.tags.contains_key(key) || s.annotations.iter().any(|a| a.value == *key)
                    }
                })
            })
    }

    /// Matching traces, most recent first (by earliest span timestamp, then
    /// by arrival), at most `limit` of them.
    pub(crate) fn run(&self, store: &Store) -> Vec<Vec<ZipkinSpan>> {
        let mut hits: Vec<(u64, usize, Vec<&ZipkinSpan>)> = store
            .traces()
            .filter(|(_, spans)| self.trace_matches(spans))
            .map(|(pos, spans)| {
                let start = spans
                    .iter()
                    .map(|s| s.timestamp)
                    .filter(|t| *t > 0)
                    .min()
                    .unwrap_or(0);
                (start, pos, spans)
            })
            .collect();
        hits.sort_unstable_by_key(|(start, pos, _)| std::cmp::Reverse((*start, *pos)));
        hits.into_iter()
            .take(self.limit)
            .map(|(_, _, spans)| spans.into_iter().cloned().collect())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(end_ts: &str, lookback: &str) -> TraceQuery {
        TraceQuery::try_from(TracesParams {
            end_ts: Some(end_ts.to_owned()),
            lookback: Some(lookback.to_owned()),
            ..TracesParams::default()
        })
        .unwrap()
    }

    /// As Zipkin's `QueryRequest.test`: a trace is in when its timestamp (µs) is within
    /// `[(endTs - lookback) * 1000, endTs * 1000]`, not a microsecond after.
    #[test]
    fn the_window_ends_at_end_ts_exactly() {
        let span = |timestamp| ZipkinSpan {
            trace_id: "0000000000000000000000000000000a".to_owned(),
            id: "000000000000000b".to_owned(),
            parent_id: None,
            name: "get".to_owned(),
            kind: None,
            timestamp,
            duration: 1,
            local_endpoint: None,
            remote_endpoint: None,
            tags: std::collections::BTreeMap::new(),
            annotations: Vec::new(),
            shared: false,
            debug: false,
        };
        for (timestamp, end_ts, lookback, inside) in [
            (1_000_000, "1000", "1", true),
            (1_000_001, "1000", "1", false),
            (1_000_500, "1000", "1000", false),
            (999_000, "1000", "1", true),
            (998_999, "1000", "1", false),
        ] {
            let s = span(timestamp);
            assert_eq!(
                query(end_ts, lookback).trace_matches(&[&s]),
                inside,
                "{timestamp} in {end_ts} - {lookback}"
            );
        }
    }
}
