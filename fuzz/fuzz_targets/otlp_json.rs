//! The collector's OTLP/JSON parser (`POST /v1/traces`, `application/json`) on arbitrary
//! bytes: never panics; what it accepts is normalised (32 / 16 lower-hex ids) and
//! round-trips through the collector's own Zipkin JSON.
#![no_main]

use collector::parse_otlp_json;
use fuzz_support::check_spans;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(spans) = parse_otlp_json(data) {
        check_spans(&spans);
    }
});
