//! Each service's OpenTelemetry tracer provider: OTLP over HTTP/protobuf through a batch span
//! processor, with [`PresetIdGenerator`] so the spans carry the ids the headers carry.
//!
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) and
//! `OTEL_SERVICE_NAME` are respected, so the same binaries report to a real Jaeger or Tempo
//! unchanged. A dead or slow collector never slows a request: export runs on the batch
//! processor's own thread, bounded by a timeout. Spans that never reach the collector (refused,
//! timed out, answered with an error, or dropped from a full queue) are counted in
//! [`ExportStats`], and an outage is reported once on standard error, not once per request or
//! batch; a summary line follows at shutdown.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider, Span, SpanData,
    SpanExporter as SdkSpanExporter, SpanProcessor,
};
use tower_trace_headers::otel::PresetIdGenerator;

/// How long one export may take before it is abandoned (and its spans counted as dropped).
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// One service's tracer provider (cheap to clone), and the `tracing` dispatch that bridges
/// the service's own `tracing` spans (`#[tracing::instrument]`) to it.
#[derive(Clone)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    service: String,
    health: Arc<Health>,
    exports: bool,
    dispatch: tracing::Dispatch,
}

/// What became of the spans a service ended (sampled spans only: unsampled ones are never
/// exported).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Sampled spans ended, handed to the exporter's queue.
    pub ended: u64,
    /// Spans the collector accepted.
    pub exported: u64,
    /// Spans in exports that failed (refused, timed out, or answered with an error).
    pub failed: u64,
    /// Exports that failed.
    pub failed_exports: u64,
    /// Outage reports written to standard error (one per outage, not per request).
    pub reports: u64,
}

impl ExportStats {
    /// Spans that did not reach the collector: failed exports plus whatever the batch queue
    /// dropped when full. Exact once the provider is shut down.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.ended.saturating_sub(self.exported)
    }
}

impl std::ops::Add for ExportStats {
    type Output = ExportStats;

    fn add(self, o: ExportStats) -> ExportStats {
        ExportStats {
            ended: self.ended + o.ended,
            exported: self.exported + o.exported,
            failed: self.failed + o.failed,
            failed_exports: self.failed_exports + o.failed_exports,
            reports: self.reports + o.reports,
        }
    }
}

/// Export counters, and whether the current outage was already reported.
#[derive(Debug, Default)]
struct Health {
    service: String,
    endpoint: String,
    ended: AtomicU64,
    exported: AtomicU64,
    failed: AtomicU64,
    failed_exports: AtomicU64,
    reports: AtomicU64,
    failing: AtomicBool,
}

impl Health {
    fn stats(&self) -> ExportStats {
        ExportStats {
            ended: self.ended.load(Ordering::Relaxed),
            exported: self.exported.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            failed_exports: self.failed_exports.load(Ordering::Relaxed),
            reports: self.reports.load(Ordering::Relaxed),
        }
    }

    fn record(&self, spans: u64, result: &OTelSdkResult) {
        match result {
            Ok(()) => {
                self.exported.fetch_add(spans, Ordering::Relaxed);
                if self.failing.swap(false, Ordering::Relaxed) {
                    eprintln!(
                        "telemetry: {}: exporting to {} again",
                        self.service, self.endpoint
                    );
                }
            }
            Err(err) => {
                self.failed.fetch_add(spans, Ordering::Relaxed);
                self.failed_exports.fetch_add(1, Ordering::Relaxed);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    self.reports.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "telemetry: {}: cannot export spans to {} ({err}); requests are \
                         unaffected, dropped spans are counted and reported at shutdown",
                        self.service, self.endpoint
                    );
                }
            }
        }
    }
}

/// Counts what the wrapped exporter accepted and refused.
#[derive(Debug)]
struct CountingExporter<E> {
    inner: E,
    health: Arc<Health>,
}

impl<E: SdkSpanExporter> SdkSpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let result = self.inner.export(batch).await;
        self.health.record(n, &result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Counts the sampled spans ended, before the batch processor queues (or drops) them.
#[derive(Debug)]
struct CountingProcessor<P> {
    inner: P,
    health: Arc<Health>,
}

impl<P: SpanProcessor> SpanProcessor for CountingProcessor<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if span.span_context.is_sampled() {
            self.health.ended.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// The OTLP traces URL for a collector base URL (`http://host:4318` → `.../v1/traces`).
#[must_use]
pub fn traces_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    }
}

/// Where spans go, as the OpenTelemetry exporter configuration says: `explicit` (a flag: a
/// base URL or a full `/v1/traces` URL), else `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is
/// (the traces URL), else `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL, `/v1/traces` added).
/// Blank values count as unset: an empty variable never turns export on with a URL that
/// names no host (whose spans would be sent as ids and reported by nobody).
pub fn traces_endpoint(
    explicit: Option<&str>,
    var: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    let set = |v: &str| {
        let v = v.trim();
        (!v.is_empty()).then(|| v.to_owned())
    };
    if let Some(e) = explicit.and_then(set) {
        return Some(traces_url(&e));
    }
    if let Some(t) = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .as_deref()
        .and_then(set)
    {
        return Some(t);
    }
    var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .as_deref()
        .and_then(set)
        .map(|b| traces_url(&b))
}

impl Telemetry {
    /// A provider for `service` (overridden by `OTEL_SERVICE_NAME` when `env` is true), exporting
    /// to `endpoint` (a base URL or a full `/v1/traces` URL); `None` or blank → the
    /// environment's endpoint (see [`traces_endpoint`]), else no export at all.
    ///
    /// # Errors
    ///
    /// When the exporter cannot be built.
    pub fn new(
        service: &str,
        version: &str,
        endpoint: Option<&str>,
        env: bool,
    ) -> Result<Self, opentelemetry_otlp::ExporterBuildError> {
        Self::with_vars(service, version, endpoint, env, |name| {
            std::env::var(name).ok()
        })
    }

    /// [`new`](Self::new), with the environment's variables read through `var`.
    fn with_vars(
        service: &str,
        version: &str,
        endpoint: Option<&str>,
        env: bool,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, opentelemetry_otlp::ExporterBuildError> {
        let service = match var("OTEL_SERVICE_NAME") {
            Some(s) if env && !s.is_empty() => s,
            _ => service.to_owned(),
        };
        let endpoint = traces_endpoint(endpoint, var);
        let resource = Resource::builder_empty()
            .with_attributes([
                KeyValue::new("service.name", service.clone()),
                KeyValue::new("service.version", version.to_owned()),
            ])
            .build();
        let mut builder = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_id_generator(PresetIdGenerator::default());
        let health = Arc::new(Health {
            service: service.clone(),
            endpoint: endpoint.clone().unwrap_or_default(),
            ..Health::default()
        });
        if let Some(url) = endpoint {
            let exporter = SpanExporter::builder()
                .with_http()
                .with_endpoint(url)
                .with_timeout(EXPORT_TIMEOUT)
                .build()?;
            let config = BatchConfigBuilder::default()
                .with_max_queue_size(65_536)
                .with_max_export_batch_size(2_048)
                .with_scheduled_delay(Duration::from_millis(100))
                .build();
            let exporter = CountingExporter {
                inner: exporter,
                health: health.clone(),
            };
            builder = builder.with_span_processor(CountingProcessor {
                inner: BatchSpanProcessor::builder(exporter)
                    .with_batch_config(config)
                    .build(),
                health: health.clone(),
            });
        }
        let exports = !health.endpoint.is_empty();
        Ok(Telemetry::assemble(
            builder.build(),
            service,
            health,
            exports,
        ))
    }

    fn assemble(
        provider: SdkTracerProvider,
        service: String,
        health: Arc<Health>,
        exports: bool,
    ) -> Self {
        // Spans of a provider that exports nowhere are reported by nobody: the service's own
        // `tracing` spans then stay out of OpenTelemetry, so no call names them.
        let dispatch = if exports {
            use tracing_subscriber::Layer as _;
            use tracing_subscriber::layer::SubscriberExt as _;
            // The trace-headers layers report their spans through OpenTelemetry themselves;
            // their `tracing` spans (feature `tracing`: `trace_id`/`request_id` on log lines)
            // are for logs, and exported as well they would report each request twice.
            let layer = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer(service.clone()))
                .with_location(false)
                .with_threads(false)
                .with_target(false)
                .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                    !meta.target().starts_with("tower_trace_headers")
                }));
            tracing::Dispatch::new(tracing_subscriber::registry().with(layer))
        } else {
            tracing::Dispatch::none()
        };
        Telemetry {
            provider,
            service,
            health,
            exports,
            dispatch,
        }
    }

    /// A provider that exports nothing: the service reports no span (its layers are told,
    /// see [`exports`](Self::exports)).
    #[must_use]
    pub fn disabled(service: &str) -> Self {
        Telemetry::assemble(
            SdkTracerProvider::builder()
                .with_id_generator(PresetIdGenerator::default())
                .build(),
            service.to_owned(),
            Arc::new(Health::default()),
            false,
        )
    }

    /// Whether spans are exported anywhere. OpenTelemetry cannot tell from a span whether its
    /// provider has an exporter, so a service whose provider exports nothing must say so to
    /// its layers (`without_spans`): otherwise they would write ids nobody reports.
    #[must_use]
    pub fn exports(&self) -> bool {
        self.exports
    }

    /// The `tracing` dispatch of this service: its `tracing` spans are exported by this
    /// provider (through `tracing-opentelemetry`). Each service of the demo's process has its
    /// own, made current for its requests by [`DispatchLayer`](crate::DispatchLayer).
    #[must_use]
    pub fn dispatch(&self) -> &tracing::Dispatch {
        &self.dispatch
    }

    /// What became of the spans ended so far (exact after [`shutdown`](Self::shutdown)).
    #[must_use]
    pub fn stats(&self) -> ExportStats {
        self.health.stats()
    }

    /// The service name spans are reported under.
    #[must_use]
    pub fn service(&self) -> &str {
        &self.service
    }

    /// This service's provider: the layers take it and report their spans under their own
    /// instrumentation scope (`tower-trace-headers`), the service's own spans keep its name.
    #[must_use]
    pub fn provider(&self) -> &SdkTracerProvider {
        &self.provider
    }

    /// A tracer of this provider.
    #[must_use]
    pub fn tracer(&self) -> SdkTracer {
        self.provider.tracer(self.service.clone())
    }

    /// Export what is queued now (bounded by the exporter's timeout).
    pub fn flush(&self) {
        let _ = self.provider.force_flush();
    }

    /// Flush and stop; one summary line on standard error when spans were dropped.
    pub fn shutdown(&self) {
        let _ = self.provider.shutdown();
        let stats = self.stats();
        if stats.dropped() > 0 {
            eprintln!(
                "telemetry: {}: {} of {} spans dropped ({} failed exports to {})",
                self.service,
                stats.dropped(),
                stats.ended,
                stats.failed_exports,
                self.health.endpoint
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(set: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            set.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_traces_endpoint_as_the_exporter_configuration_says() {
        let base = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/");
        let traces = (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://tempo:4318/custom",
        );
        // A flag wins, a base URL or a full one.
        assert_eq!(
            traces_endpoint(Some("http://flag:4318"), vars(&[base, traces])).as_deref(),
            Some("http://flag:4318/v1/traces")
        );
        assert_eq!(
            traces_endpoint(Some("http://flag:4318/v1/traces"), vars(&[])).as_deref(),
            Some("http://flag:4318/v1/traces")
        );
        // The traces variable is the URL as it is, and wins over the base one.
        assert_eq!(
            traces_endpoint(None, vars(&[base, traces])).as_deref(),
            Some("http://tempo:4318/custom")
        );
        assert_eq!(
            traces_endpoint(None, vars(&[base])).as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        // Blank is unset: no export with a URL that names no host.
        let blank = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "  "),
        ];
        assert_eq!(traces_endpoint(Some(""), vars(&blank)), None);
        assert_eq!(traces_endpoint(Some(" "), vars(&[])), None);
        assert_eq!(
            traces_endpoint(Some(""), vars(&[base])).as_deref(),
            Some("http://collector:4318/v1/traces")
        );
    }

    #[test]
    fn a_blank_endpoint_reports_nothing() {
        // A blank flag and blank variables are no endpoint: nothing exported.
        let blank = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", " "),
        ];
        let telemetry = Telemetry::with_vars("item", "v1", Some(""), true, vars(&blank)).unwrap();
        assert!(!telemetry.exports());
        // A blank flag with a variable set: the variable's.
        let base = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")];
        let telemetry = Telemetry::with_vars("item", "v1", Some(""), true, vars(&base)).unwrap();
        assert!(telemetry.exports());
    }
}
