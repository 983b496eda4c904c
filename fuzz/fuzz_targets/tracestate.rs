//! `tracestate`: the input's `\n`-separated lines are field lines. A parsed value is
//! normalised (`k=v,k=v`: visible ASCII and inner spaces only, no OWS, no empty member, no
//! duplicate key, at most 32 members within the key / value limits), re-parses to itself
//! from either entry point, and `truncated` / `insert` keep those properties.
#![no_main]

use b3_propagation::TraceState;
use b3_propagation::tracestate::{MAX_KEY_LEN, MAX_MEMBERS, MAX_VALUE_LEN};
use fuzz_support::{assert_text, lines};
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;

fn check_normal(ts: &TraceState) {
    let Some(v) = ts.header_value() else {
        assert!(ts.is_empty());
        assert_eq!(ts.len(), 0);
        return;
    };
    let b = v.as_bytes();
    assert_text("tracestate", b);
    assert!(!b.is_empty());
    for edge in [b[0], b[b.len() - 1]] {
        assert!(
            edge != b' ' && edge != b',',
            "OWS or empty member at an edge: {v:?}"
        );
    }
    let members: Vec<(&str, &str)> = ts.iter().collect();
    assert!(
        !members.is_empty() && members.len() <= MAX_MEMBERS,
        "{} members",
        members.len()
    );
    assert_eq!(
        members.len(),
        b.split(|&c| c == b',').count(),
        "empty member in {v:?}"
    );
    for (i, (k, val)) in members.iter().enumerate() {
        assert!(!k.is_empty() && k.len() <= MAX_KEY_LEN, "key {k:?}");
        assert!(
            !val.is_empty() && val.len() <= MAX_VALUE_LEN,
            "value {val:?}"
        );
        assert!(
            !k.starts_with(' ') && !val.ends_with(' '),
            "OWS kept: {v:?}"
        );
        assert!(
            !members[..i].iter().any(|(p, _)| p == k),
            "duplicate key {k:?}"
        );
        assert_eq!(ts.get(k), Some(*val));
    }
    let rebuilt = members
        .iter()
        .map(|(k, val)| format!("{k}={val}"))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(rebuilt.as_bytes(), b);
}

fuzz_target!(|data: &[u8]| {
    let lines = lines(data);
    let Ok(ts) = TraceState::parse_lines(lines.iter().copied()) else {
        return;
    };
    check_normal(&ts);
    // A single field line that is a valid HeaderValue gives the same answer either way.
    if let [line] = lines.as_slice()
        && let Ok(hv) = HeaderValue::from_bytes(line)
    {
        assert_eq!(TraceState::parse_value(&hv).as_ref(), Ok(&ts));
    }
    let Some(v) = ts.header_value() else {
        return;
    };
    assert_eq!(
        TraceState::parse_value(v).as_ref(),
        Ok(&ts),
        "parse_value({v:?})"
    );
    assert_eq!(
        TraceState::parse_lines([v.as_bytes()]).as_ref(),
        Ok(&ts),
        "parse_lines({v:?})"
    );

    // Truncation removes whole members and keeps the rest in order.
    let max = usize::from(data.first().copied().unwrap_or(0)) * 4;
    let cut = ts.truncated(max);
    check_normal(&cut);
    let cut_len = cut.header_value().map_or(0, HeaderValue::len);
    assert!(cut_len <= max, "truncated({max}) is {cut_len} bytes");
    let kept: Vec<_> = cut.iter().collect();
    let mut all = ts.iter();
    for m in &kept {
        assert!(
            all.any(|x| x == *m),
            "truncated() invented or reordered {m:?}"
        );
    }

    // A vendor update moves its key to the front and keeps the limit.
    let updated = ts.insert("fuzz", "x").expect("a valid member");
    check_normal(&updated);
    assert_eq!(updated.iter().next(), Some(("fuzz", "x")));
    assert!(updated.len() <= MAX_MEMBERS);
});
