//! The mesh from the field: frontend / user / order / item services, an
//! embedded trace collector, and the demo that ties them together.
//!
//! - [`collector`]: an in-process OTLP/HTTP + Zipkin v2 trace collector with a
//!   Zipkin-compatible query API, so the demo needs no external tracing server.
//! - [`envoy`]: the Envoy side of the mesh: config generator (front proxy and
//!   sidecars, Zipkin tracer), the committed `deploy/` files, Envoy
//!   provisioning from PyPI, and running Envoys for the demo and tests.

pub mod access_log;
pub mod cli;
pub mod collector;
pub mod demo;
pub mod envoy;
pub mod pb;
pub mod services;
pub mod telemetry;
pub mod w3c;
