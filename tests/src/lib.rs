//! The workspace's integration tests, in `tests/` (tonic's `tests/integration_tests`
//! manner): what crosses crates.
//!
//! - `grpc_chain`, `grpc_otel`: real tonic servers mixing `grpc-interceptor`'s interceptors and
//!   `tower-trace-headers`' layers;
//! - `mesh`, `faults`, `load`, `security`: the four services and the collector end to end
//!   (the demo's `LocalMesh`), under faults, load and hostile input;
//! - `envoy_config`, `envoy_mesh`: the same through real Envoy (provisioned by the tests
//!   themselves), the generated configs and `deploy/`.
//!
//! `cargo test -p integration-tests` runs them all.
