//! Terminal waterfalls: one line per span — service, span name, offset, duration and a bar —
//! indented by depth, coloured by service when the output is a terminal.

use std::collections::HashMap;
use std::fmt::Write;

use collector::ZipkinSpan;

const WIDTH: usize = 40;
const COLOURS: [&str; 6] = ["36", "33", "35", "32", "34", "31"];

/// Render one trace.
#[must_use]
pub fn render(spans: &[ZipkinSpan], colour: bool) -> String {
    let mut spans: Vec<&ZipkinSpan> = spans.iter().collect();
    spans.sort_by_key(|s| (s.timestamp, s.id.clone()));
    let Some(start) = spans.iter().map(|s| s.timestamp).min() else {
        return String::new();
    };
    let end = spans
        .iter()
        .map(|s| s.timestamp + s.duration.max(1))
        .max()
        .unwrap_or(start + 1);
    let total = (end - start).max(1);

    // Depth by walking parents (a shared span sits beside its client half).
    let by_id: HashMap<&str, &ZipkinSpan> = spans.iter().map(|s| (s.id.as_str(), *s)).collect();
    let depth = |s: &ZipkinSpan| {
        let mut d = 0;
        let mut cur = s.parent_id.as_deref();
        while let Some(p) = cur {
            match by_id.get(p) {
                Some(parent) if d < 32 && parent.id != s.id => {
                    d += 1;
                    cur = parent.parent_id.as_deref();
                }
                _ => break,
            }
        }
        d
    };
    // Children after parents: order by a path of (start, id) from the root.
    let mut ordered: Vec<(Vec<(u64, &str)>, &ZipkinSpan)> = spans
        .iter()
        .map(|s| {
            let mut path = vec![(s.timestamp, s.id.as_str())];
            let mut cur = s.parent_id.as_deref();
            let mut guard = 0;
            while let Some(p) = cur {
                let Some(parent) = by_id.get(p).filter(|x| x.id != s.id) else {
                    break;
                };
                path.push((parent.timestamp, parent.id.as_str()));
                cur = parent.parent_id.as_deref();
                guard += 1;
                if guard > 32 {
                    break;
                }
            }
            path.reverse();
            (path, *s)
        })
        .collect();
    ordered.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then(a.1.kind.is_some().cmp(&b.1.kind.is_some()))
    });

    let mut services: Vec<&str> = Vec::new();
    let mut out = String::new();
    let trace_id = spans.first().map_or("", |s| s.trace_id.as_str());
    let _ = writeln!(
        out,
        "trace {trace_id}  ({} spans, {:.1} ms)",
        spans.len(),
        total as f64 / 1000.0
    );
    for (_, s) in ordered {
        let service = s.service().unwrap_or("?");
        if !services.contains(&service) {
            services.push(service);
        }
        let c = COLOURS[services.iter().position(|x| *x == service).unwrap_or(0) % COLOURS.len()];
        let offset = s.timestamp.saturating_sub(start);
        let from = (offset as usize * WIDTH) / total as usize;
        let len = ((s.duration as usize * WIDTH) / total as usize).max(1);
        let bar: String = (0..WIDTH)
            .map(|i| {
                if i >= from && i < from + len {
                    '█'
                } else {
                    '·'
                }
            })
            .collect();
        let kind = match s.kind {
            Some(k) => format!("{k:?}").to_lowercase(),
            None => "local".to_owned(),
        };
        let name = format!(
            "{}{} ({kind}{})",
            "  ".repeat(depth(s)),
            s.name,
            if s.shared { ", shared" } else { "" }
        );
        let name: String = name.chars().take(58).collect();
        let line = format!(
            "  {service:<18} {name:<58} {:>8.1}ms {:>8.1}ms  {bar}",
            offset as f64 / 1000.0,
            s.duration as f64 / 1000.0
        );
        if colour {
            let _ = writeln!(out, "\x1b[{c}m{line}\x1b[0m");
        } else {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}
