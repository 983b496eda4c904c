//! The `trace-headers` CLI library on arbitrary bytes (what stdin gives it, UTF-8 or not):
//! `Headers::push_text`, then `decode`
//! (all formats and each one) and `convert` to every format never panic and always give
//! valid JSON; the headers `convert` emits are visible ASCII and spaces. Input that is a
//! JSON document is also given to `encode` for every format.
#![no_main]

use fuzz_support::assert_text;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use trace_headers::{FORMATS, Headers, convert, decode, encode};

#[track_caller]
fn valid_json(v: &Value) -> String {
    let s = serde_json::to_string(v).expect("serialisable");
    let back: Value = serde_json::from_str(&s).expect("valid JSON");
    assert_eq!(&back, v, "JSON round trip");
    s
}

#[track_caller]
fn check_headers(v: &Value) {
    let map = v.as_object().expect("headers are a JSON object");
    for (name, value) in map {
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "header name {name:?}"
        );
        assert_text(name, value.as_str().expect("a string value").as_bytes());
    }
}

fuzz_target!(|data: &[u8]| {
    let mut headers = Headers::default();
    let skipped = headers.push_text(data);
    // Skipped: a line with no `:`, or nothing but whitespace before the first.
    assert!(skipped.iter().all(|l| {
        l.split_once(':')
            .is_none_or(|(name, _)| name.trim().is_empty())
    }));

    let all = decode(&headers, None);
    valid_json(&all);
    for key in [
        "context",
        "tracestate",
        "baggage",
        "request_id",
        "request_id_info",
        "errors",
    ] {
        assert!(all.get(key).is_some(), "decode output lacks {key}: {all}");
    }
    for f in FORMATS {
        valid_json(&decode(&headers, Some(f)));
        let converted = convert(&headers, f);
        valid_json(&converted);
        check_headers(&converted);
    }

    if let Ok(input) = serde_json::from_slice::<Value>(data) {
        for f in FORMATS {
            if let Ok(out) = encode(&input, f) {
                valid_json(&out);
                check_headers(&out);
            }
        }
    }
});
