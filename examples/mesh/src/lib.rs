//! The mesh from the field: frontend / user / order / item services, an
//! embedded trace collector, and the demo that ties them together.
//!
//! - [`collector`]: an in-process OTLP/HTTP + Zipkin v2 trace collector with a
//!   Zipkin-compatible query API, so the demo needs no external tracing server.

pub mod access_log;
pub mod collector;
pub mod demo;
pub mod pb;
pub mod services;
pub mod telemetry;
pub mod cli;
pub mod w3c;
