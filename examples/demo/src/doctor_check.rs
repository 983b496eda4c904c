//! `demo --break SERVICE`, and the doctor's verdict on every demo run.
//!
//! A broken service ([`broken_propagator`]) forwards `x-request-id` and the propagated fields
//! but none of the trace: its callee, or the sidecar in between, starts a new trace, as behind a
//! half-instrumented app. After the load the demo hands what it collected — the spans, and the
//! access-log lines with their request and trace ids — to `trace-headers doctor`
//! ([`trace_headers::doctor`]), and prints what it found: nothing, or the service to fix.

use std::collections::BTreeSet;
use std::fmt;

use b3_propagation::Propagator;
use collector::ZipkinSpan;
use trace_headers::doctor::{Evidence, Report, analyse, parse_access_log};

/// What a half-instrumented app does with the trace: `propagator` with nothing injected — no
/// B3, no `traceparent`, no baggage, no opaque header — while `x-request-id` and the propagated
/// fields still go out. Extraction is unchanged: the service still reads its caller's trace.
#[must_use]
pub fn broken_propagator(propagator: &Propagator) -> Propagator {
    propagator
        .to_builder()
        .inject(std::iter::empty())
        .baggage(false)
        .opaque(std::iter::empty())
        .build()
}

/// The services whose outgoing calls `--break` can take the trace from (the others call no
/// one).
pub const BREAKABLE: [&str; 2] = ["frontend", "order"];

/// The doctor's verdict on one demo run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DoctorCheck {
    /// What it found.
    pub report: Report,
    /// The service broken on purpose (`--break`), if any.
    pub broken: Option<String>,
}

impl DoctorCheck {
    /// Run the doctor over `spans` and the access-log `lines` (JSON lines; those in no format
    /// the doctor reads are skipped), with `edges` the services that face clients.
    #[must_use]
    pub fn run(
        spans: &[ZipkinSpan],
        lines: &[String],
        edges: &[&str],
        broken: Option<&str>,
    ) -> Self {
        let logs = if lines.is_empty() {
            Vec::new()
        } else {
            parse_access_log(&lines.join("\n"))
                .map(|l| l.records)
                .unwrap_or_default()
        };
        let evidence = Evidence {
            spans: spans.to_vec(),
            logs,
            edges: edges.iter().map(|e| (*e).to_owned()).collect(),
        };
        DoctorCheck {
            report: analyse(&evidence),
            broken: broken.map(str::to_owned),
        }
    }

    /// The services the doctor names for findings that break a trace.
    #[must_use]
    pub fn culprits(&self) -> BTreeSet<String> {
        self.report
            .findings
            .iter()
            .filter(|f| f.kind.counts_as_broken())
            .map(|f| f.service.clone())
            .collect()
    }

    /// Whether the doctor found what the run was set up to show: nothing without `--break`,
    /// the broken service and only it with `--break`.
    #[must_use]
    pub fn as_expected(&self) -> bool {
        let culprits = self.culprits();
        match &self.broken {
            None => culprits.is_empty(),
            Some(s) => culprits.len() == 1 && culprits.contains(s) && self.report.broken > 0,
        }
    }
}

impl fmt::Display for DoctorCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.report;
        let culprits = self.culprits();
        if culprits.is_empty() {
            return write!(
                f,
                "doctor found nothing: {} requests, {} traces, none broken",
                r.requests, r.traces
            );
        }
        let names: Vec<&str> = culprits.iter().map(String::as_str).collect();
        write!(
            f,
            "doctor: {} of {} requests broken; the hop that broke them: {}",
            r.broken,
            r.requests,
            names.join(", ")
        )?;
        // One finding per service named, the first of each.
        for service in &culprits {
            if let Some(first) = r
                .findings
                .iter()
                .find(|x| x.kind.counts_as_broken() && &x.service == service)
            {
                write!(
                    f,
                    "\n  {} at {}: {}",
                    first.kind, first.service, first.explanation
                )?;
            }
        }
        if let Some(b) = &self.broken {
            write!(
                f,
                "\n  ({b} was broken on purpose: {})",
                if self.as_expected() {
                    "the doctor named it, and only it"
                } else {
                    "the doctor did not name it alone"
                }
            )?;
        }
        Ok(())
    }
}
