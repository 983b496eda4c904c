//! `OTEL_PROPAGATORS`: a [`Propagator`] configured the way OpenTelemetry SDKs read it.

use std::fmt;

use super::{ContextFormat, FormatSet, Propagator, PropagatorBuilder};

/// `OTEL_PROPAGATORS` named a propagator this crate does not implement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownPropagator {
    pub(crate) name: String,
}

impl UnknownPropagator {
    /// The unknown name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for UnknownPropagator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown propagator `{}` in OTEL_PROPAGATORS (known: tracecontext, baggage, b3, b3multi, jaeger, none)",
            self.name
        )
    }
}

impl std::error::Error for UnknownPropagator {}

impl Propagator {
    /// The propagator `OTEL_PROPAGATORS` asks for; the default when it is unset or empty.
    ///
    /// # Errors
    ///
    /// [`UnknownPropagator`] naming the first value this crate does not implement.
    pub fn from_env() -> Result<Self, UnknownPropagator> {
        match std::env::var("OTEL_PROPAGATORS") {
            Ok(v) => Self::from_otel_propagators(&v),
            Err(_) => Ok(Self::default()),
        }
    }

    /// A builder configured from an `OTEL_PROPAGATORS` value: `tracecontext`, `baggage`, `b3`
    /// (single header), `b3multi`, `jaeger`, `none`, comma-separated. Extraction follows the
    /// listed order (`b3` and `b3multi` both read both B3 encodings, as OpenTelemetry's B3
    /// propagator does); injection writes each listed format. An empty value gives the
    /// defaults.
    ///
    /// # Errors
    ///
    /// [`UnknownPropagator`] naming the first value this crate does not implement.
    pub fn builder_from_otel_propagators(
        value: &str,
    ) -> Result<PropagatorBuilder, UnknownPropagator> {
        let names: Vec<&str> = value
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        if names.is_empty() {
            return Ok(Self::builder());
        }
        let mut extract = Vec::new();
        let mut inject = FormatSet::EMPTY;
        let mut baggage = false;
        for name in names {
            match name.to_ascii_lowercase().as_str() {
                "tracecontext" => {
                    extract.push(ContextFormat::TraceParent);
                    inject = inject.with(ContextFormat::TraceParent);
                }
                "baggage" => baggage = true,
                "b3" => {
                    extract.extend([ContextFormat::B3Single, ContextFormat::B3Multi]);
                    inject = inject.with(ContextFormat::B3Single);
                }
                "b3multi" => {
                    extract.extend([ContextFormat::B3Single, ContextFormat::B3Multi]);
                    inject = inject.with(ContextFormat::B3Multi);
                }
                "jaeger" => {
                    extract.push(ContextFormat::Jaeger);
                    inject = inject.with(ContextFormat::Jaeger);
                }
                "none" => {}
                _ => {
                    return Err(UnknownPropagator {
                        name: name.to_owned(),
                    });
                }
            }
        }
        let mut b = Self::builder().extract(extract).baggage(baggage);
        b.config.inject = inject;
        Ok(b)
    }

    /// [`builder_from_otel_propagators`](Self::builder_from_otel_propagators), built.
    ///
    /// # Errors
    ///
    /// As [`builder_from_otel_propagators`](Self::builder_from_otel_propagators).
    pub fn from_otel_propagators(value: &str) -> Result<Self, UnknownPropagator> {
        Self::builder_from_otel_propagators(value).map(PropagatorBuilder::build)
    }
}
