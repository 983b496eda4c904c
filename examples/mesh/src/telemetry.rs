//! Each service's OpenTelemetry tracer provider: OTLP over HTTP/protobuf through a batch span
//! processor, with [`PresetIdGenerator`] so the spans carry the ids the headers carry.
//!
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) and
//! `OTEL_SERVICE_NAME` are respected, so the same binaries report to a real Jaeger or Tempo
//! unchanged. A dead or slow collector never slows a request: export runs on the batch
//! processor's own thread, and what cannot be queued is dropped and counted by the SDK.

use std::fmt;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider,
};
use tower_trace_headers::otel::PresetIdGenerator;

/// One service's tracer provider (cheap to clone).
#[derive(Clone)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    service: String,
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

impl Telemetry {
    /// A provider for `service` (overridden by `OTEL_SERVICE_NAME` when `env` is true), exporting
    /// to `endpoint` (a base URL or a full `/v1/traces` URL); `None` → the environment's
    /// endpoint, else no export at all.
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
        let service = match std::env::var("OTEL_SERVICE_NAME") {
            Ok(s) if env && !s.is_empty() => s,
            _ => service.to_owned(),
        };
        let endpoint = endpoint.map(str::to_owned).or_else(|| {
            std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT"))
                .ok()
                .filter(|e| !e.is_empty())
        });
        let resource = Resource::builder_empty()
            .with_attributes([
                KeyValue::new("service.name", service.clone()),
                KeyValue::new("service.version", version.to_owned()),
            ])
            .build();
        let mut builder = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_id_generator(PresetIdGenerator::default());
        if let Some(endpoint) = endpoint {
            let exporter = SpanExporter::builder()
                .with_http()
                .with_endpoint(traces_url(&endpoint))
                .with_timeout(Duration::from_secs(2))
                .build()?;
            let config = BatchConfigBuilder::default()
                .with_max_queue_size(65_536)
                .with_max_export_batch_size(2_048)
                .with_scheduled_delay(Duration::from_millis(100))
                .build();
            builder = builder.with_span_processor(
                BatchSpanProcessor::builder(exporter)
                    .with_batch_config(config)
                    .build(),
            );
        }
        Ok(Telemetry {
            provider: builder.build(),
            service,
        })
    }

    /// A provider that keeps nothing (spans are started, ids honoured, nothing exported).
    #[must_use]
    pub fn disabled(service: &str) -> Self {
        Telemetry {
            provider: SdkTracerProvider::builder()
                .with_id_generator(PresetIdGenerator::default())
                .build(),
            service: service.to_owned(),
        }
    }

    /// The service name spans are reported under.
    #[must_use]
    pub fn service(&self) -> &str {
        &self.service
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

    /// Flush and stop.
    pub fn shutdown(&self) {
        let _ = self.provider.shutdown();
    }
}
