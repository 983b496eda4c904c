//! The committed deployment files: Envoy bootstraps (`deploy/envoy/`),
//! Kubernetes manifests with explicit Envoy sidecars (`deploy/k8s/`), and
//! the Istio variant (`deploy/k8s/istio/`), all from one [`MeshTopology`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{
    APP_ADMIN_PORT, APP_UID, BAGGAGE_V2_REGEX, END_USER_V2, MeshTopology, NETSCAPE_UA_REGEX,
    Protocol, RenderedConfig, STATS_PORT, Sidecar, yaml,
};

/// Namespace of the explicit-sidecar variant (and of Jaeger).
const NAMESPACE: &str = "mesh";
/// Namespace of the Istio variant.
const ISTIO_NAMESPACE: &str = "mesh-istio";
/// The Envoy image of the sidecars and the front proxy: the version
/// [`envoy_binary`](super::envoy_binary) validates with.
const ENVOY_IMAGE: &str = "envoyproxy/envoy:v1.40.0";
/// Prometheus, the version the tests run (Debian's 2.42 package).
const PROMETHEUS_IMAGE: &str = "prom/prometheus:v2.42.0";
/// The user the official Prometheus image runs as (`nobody`).
const PROMETHEUS_UID: u32 = 65534;
/// How often the cluster's Prometheus scrapes.
const PROMETHEUS_SCRAPE_INTERVAL: &str = "15s";
/// Jaeger v1 all-in-one: Zipkin (9411), OTLP (4317/4318), UI (16686).
const JAEGER_IMAGE: &str = "jaegertracing/all-in-one:1.62.0";
/// Image tag of the example apps.
const APP_VERSION: &str = "0.1.0";
/// The user the official Envoy image runs as (`envoy`, 101).
const ENVOY_UID: u32 = 101;
/// Where a pod's Envoy config is mounted.
const ENVOY_CONFIG_DIR: &str = "/etc/envoy";
/// The config file name inside the ConfigMap and the mount.
const ENVOY_CONFIG_FILE: &str = "envoy.yaml";

/// One generated file, its path relative to the workspace root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployFile {
    /// E.g. `deploy/envoy/front-proxy.yaml`.
    pub path: PathBuf,
    /// The full text.
    pub contents: String,
}

/// Every generated deployment file for `topology` (the committed ones are
/// those of [`MeshTopology::kubernetes`]):
///
/// - `deploy/envoy/<proxy>.yaml`: the six Envoy bootstraps;
/// - `deploy/k8s/*.yaml`: namespace `mesh`, Jaeger all-in-one (Services
///   `jaeger-collector` for Zipkin and OTLP, `jaeger-query` for the UI), and
///   per service a ConfigMap holding its Envoy bootstrap, a Deployment (app
///   container + explicit Envoy sidecar) and a headless Service; the front
///   proxy alike;
/// - `deploy/k8s/istio/*.yaml`: the same apps in namespace `mesh-istio`
///   (`istio-injection: enabled`) without explicit sidecars, the `item`
///   `DestinationRule` / `VirtualService` (the three v2 overrides — baggage
///   member `item-version=v2`, `end-user: jason`, a `baggage-user-agent`
///   containing `Netscape` — then the canary weights),
///   the frontend `Gateway` / `VirtualService`, and `Telemetry`;
///   `deploy/k8s/istio/install/istio-operator.yaml`: the MeshConfig Zipkin
///   provider (for `istioctl install -f`).
pub fn deploy_files(topology: &MeshTopology) -> Vec<DeployFile> {
    let configs = topology.render();
    let mut files: Vec<DeployFile> = configs
        .iter()
        .map(|c| DeployFile {
            path: PathBuf::from("deploy/envoy").join(c.file_name()),
            contents: c.yaml.clone(),
        })
        .collect();
    let config_of = |proxy: &str| configs.iter().find(|c| c.proxy == proxy);
    let k8s = |name: &str, header: &[&str], docs: &[Value]| DeployFile {
        path: PathBuf::from("deploy/k8s").join(name),
        contents: documents(header, docs),
    };

    files.push(k8s(
        "00-namespace.yaml",
        &["The namespace of the mesh with explicit Envoy sidecars."],
        &[namespace(NAMESPACE, false)],
    ));
    files.push(k8s(
        "10-jaeger.yaml",
        &[
            "Jaeger all-in-one (in-memory): Zipkin v2 on jaeger-collector:9411 (what the",
            "Envoys send), OTLP on jaeger-collector:4317/4318 (what the apps send), the UI",
            "on jaeger-query:16686 (`kubectl -n mesh port-forward svc/jaeger-query 16686`).",
        ],
        &jaeger(topology),
    ));
    files.push(k8s(
        "15-prometheus.yaml",
        &[
            "Prometheus scraping every pod of the namespace: the apps' /metrics (container port",
            "`admin`) and the Envoys' /stats/prometheus (container port `envoy-stats`), Envoy's",
            "series renamed as the seed's queries expect (`envoy_upstream_rq_time_bucket{cluster=..}`),",
            "exemplars kept. `minikube service -n mesh prometheus`, or",
            "`kubectl -n mesh port-forward svc/prometheus 9090`.",
        ],
        &prometheus(),
    ));
    if let Some(config) = config_of("front-proxy") {
        files.push(k8s(
            "20-front-proxy.yaml",
            &[
                "The edge Envoy: the mesh's entry point",
                "(`kubectl -n mesh port-forward svc/front-proxy 8000`, then curl localhost:8000/).",
            ],
            &front_proxy(topology, config),
        ));
    }
    for (index, app) in apps(topology).iter().enumerate() {
        let Some(config) = config_of(&app.proxy) else {
            continue;
        };
        let header = format!(
            "{}: ConfigMap (its Envoy bootstrap), Deployment (app + Envoy sidecar), headless Service.",
            app.name
        );
        files.push(k8s(
            &format!("{}-{}.yaml", 30 + index, app.name),
            &[&header],
            &sidecar_app(app, config),
        ));
    }

    let istio = |name: &str, header: &[&str], docs: &[Value]| DeployFile {
        path: PathBuf::from("deploy/k8s/istio").join(name),
        contents: documents(header, docs),
    };
    files.push(istio(
        "00-namespace.yaml",
        &["The Istio variant: the namespace, with sidecar injection."],
        &[namespace(ISTIO_NAMESPACE, true)],
    ));
    files.push(istio(
        "10-apps.yaml",
        &[
            "The Istio variant: plain Deployments and Services; Istio injects the sidecars.",
            "Apps listen on 0.0.0.0 (Istio forwards inbound traffic to the pod IP) and call",
            "each other by Service name.",
        ],
        &istio_apps(topology),
    ));
    files.push(istio(
        "20-traffic.yaml",
        &[
            "The Istio variant: `item` subsets and routing (v2 when the W3C baggage member",
            "`item-version=v2` is there, when `end-user` is exactly `jason`, or when the",
            "prefixed baggage header `baggage-user-agent` contains `Netscape`; the rest is",
            "split by canary weight), and the frontend behind the ingress gateway.",
        ],
        &istio_traffic(topology),
    ));
    files.push(istio(
        "30-telemetry.yaml",
        &[
            "The Istio variant: trace every request with the `jaeger-zipkin` provider,",
            "declared in MeshConfig (install/istio-operator.yaml).",
        ],
        &[istio_telemetry()],
    ));
    files.push(istio(
        "install/istio-operator.yaml",
        &[
            "MeshConfig for the Istio variant: the Zipkin provider pointing at the Jaeger",
            "of deploy/k8s/10-jaeger.yaml. Install with `istioctl install -f` this file;",
            "it is not a resource for `kubectl apply`.",
        ],
        &[istio_operator(topology)],
    ));
    files
}

/// The header comment of every generated manifest, after its own lines.
const GENERATED: [&str; 2] = [
    "Generated by demo::envoy (examples/demo/src/envoy/k8s.rs). Do not edit by hand:",
    "regenerate with `cargo xtask deploy`.",
];

fn documents(header: &[&str], docs: &[Value]) -> String {
    let mut lines: Vec<&str> = header.to_vec();
    lines.push("");
    lines.extend(GENERATED);
    let mut out = String::new();
    for (i, doc) in docs.iter().enumerate() {
        if i == 0 {
            out.push_str(&yaml::document(&lines, doc));
        } else {
            out.push_str("---\n");
            out.push_str(&yaml::to_yaml(doc));
        }
    }
    out
}

/// One example app and the facts its manifests need.
struct App<'a> {
    /// Deployment / Service name: `frontend`, `user`, `order`, `item-v1`, `item-v2`.
    name: String,
    /// The service (`item` for both item versions).
    service: &'static str,
    /// `v1` / `v2` for item, `v1` otherwise.
    version: &'static str,
    /// The proxy name of its sidecar.
    proxy: String,
    sidecar: &'a Sidecar,
    /// Env vars naming its upstreams: (name, Service in the Istio variant).
    upstreams: &'static [(&'static str, &'static str)],
}

/// Env vars the apps read for their upstream URLs (`services::cli`).
const FRONTEND_UPSTREAMS: &[(&str, &str)] = &[("USER_ADDR", "user"), ("ORDER_ADDR", "order")];
const ORDER_UPSTREAMS: &[(&str, &str)] = &[("ITEM_ADDR", "item")];

fn apps(t: &MeshTopology) -> Vec<App<'_>> {
    let app = |name: &str, service, version, sidecar, upstreams| App {
        name: name.to_owned(),
        service,
        version,
        proxy: format!("{name}-sidecar"),
        sidecar,
        upstreams,
    };
    vec![
        app(
            "frontend",
            "frontend",
            "v1",
            &t.frontend,
            FRONTEND_UPSTREAMS,
        ),
        app("user", "user", "v1", &t.user, &[]),
        app("order", "order", "v1", &t.order, ORDER_UPSTREAMS),
        app("item-v1", "item", "v1", &t.item_v1, &[]),
        app("item-v2", "item", "v2", &t.item_v2, &[]),
    ]
}

fn metadata(name: &str, namespace: &str, labels: Value) -> Value {
    json!({"name": name, "namespace": namespace, "labels": labels})
}

fn namespace(name: &str, istio: bool) -> Value {
    let mut labels = json!({"app.kubernetes.io/part-of": "mesh"});
    if istio {
        labels["istio-injection"] = json!("enabled");
    }
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": labels},
    })
}

fn resources(cpu: &str, memory: &str, memory_limit: &str) -> Value {
    json!({
        "requests": {"cpu": cpu, "memory": memory},
        "limits": {"memory": memory_limit},
    })
}

fn port_name(protocol: Protocol) -> (&'static str, &'static str) {
    match protocol {
        Protocol::Http2 => ("grpc", "kubernetes.io/h2c"),
        Protocol::Http1 => ("http", "http"),
    }
}

fn jaeger(t: &MeshTopology) -> Vec<Value> {
    let labels = json!({"app": "jaeger", "app.kubernetes.io/part-of": "mesh"});
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata("jaeger", NAMESPACE, labels),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "jaeger"}},
            "template": {
                "metadata": {"labels": {"app": "jaeger"}},
                "spec": {
                    "containers": [{
                        "name": "jaeger",
                        "image": JAEGER_IMAGE,
                        "env": [
                            {"name": "COLLECTOR_ZIPKIN_HOST_PORT", "value": format!(":{}", t.collector.port)},
                            {"name": "COLLECTOR_OTLP_ENABLED", "value": "true"},
                        ],
                        "ports": [
                            {"name": "zipkin", "containerPort": t.collector.port},
                            {"name": "otlp-grpc", "containerPort": 4317},
                            {"name": "otlp-http", "containerPort": 4318},
                            {"name": "query", "containerPort": 16686},
                        ],
                        "readinessProbe": {"httpGet": {"path": "/", "port": 14269}},
                        "resources": resources("100m", "256Mi", "1Gi"),
                    }],
                },
            },
        },
    });
    let collector = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(&t.collector.host, NAMESPACE, json!({"app": "jaeger"})),
        "spec": {
            "selector": {"app": "jaeger"},
            "ports": [
                {"name": "zipkin", "port": t.collector.port, "targetPort": "zipkin", "appProtocol": "http"},
                {"name": "otlp-grpc", "port": 4317, "targetPort": "otlp-grpc", "appProtocol": "grpc"},
                {"name": "otlp-http", "port": 4318, "targetPort": "otlp-http", "appProtocol": "http"},
            ],
        },
    });
    let query = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata("jaeger-query", NAMESPACE, json!({"app": "jaeger"})),
        "spec": {
            "selector": {"app": "jaeger"},
            "ports": [{"name": "query", "port": 16686, "targetPort": "query", "appProtocol": "http"}],
        },
    });
    vec![deployment, collector, query]
}

/// The scrape config of the cluster's Prometheus: one job per kind of endpoint, each
/// finding the pods of the namespace by the name of a container port (`admin`: the apps'
/// `/metrics`; `envoy-stats`: the Envoys' `/stats/prometheus`), labelled `app`, `version`
/// and `pod` from the pod.
#[must_use]
pub fn prometheus_config() -> Value {
    use crate::prometheus::{MetricRelabel, envoy_seed_relabel};
    let job = |name: &str, port: &str, path: &str, metric_relabel: Vec<MetricRelabel>| {
        let relabel = vec![
            MetricRelabel::keep(&["__meta_kubernetes_pod_container_port_name"], port),
            MetricRelabel::replace(&["__meta_kubernetes_pod_label_app"], "(.+)", "app", "${1}"),
            MetricRelabel::replace(
                &["__meta_kubernetes_pod_label_version"],
                "(.+)",
                "version",
                "${1}",
            ),
            MetricRelabel::replace(&["__meta_kubernetes_pod_name"], "(.+)", "pod", "${1}"),
        ];
        let mut job = json!({
            "job_name": name,
            "metrics_path": path,
            "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [NAMESPACE]}}],
            "relabel_configs": relabel,
        });
        if !metric_relabel.is_empty() {
            job["metric_relabel_configs"] = json!(metric_relabel);
        }
        job
    };
    json!({
        "global": {
            "scrape_interval": PROMETHEUS_SCRAPE_INTERVAL,
            "evaluation_interval": PROMETHEUS_SCRAPE_INTERVAL,
        },
        "scrape_configs": [
            job("apps", "admin", "/metrics", Vec::new()),
            job("envoy", "envoy-stats", "/stats/prometheus", envoy_seed_relabel()),
        ],
    })
}

/// Prometheus: a service account allowed to list the namespace's pods, its config, a
/// Deployment with exemplar storage, and a NodePort Service (`minikube service prometheus`).
fn prometheus() -> Vec<Value> {
    let labels = json!({"app": "prometheus", "app.kubernetes.io/part-of": "mesh"});
    let account = json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata("prometheus", NAMESPACE, labels.clone()),
    });
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": metadata("prometheus", NAMESPACE, labels.clone()),
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
    });
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata("prometheus", NAMESPACE, labels.clone()),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "prometheus"},
        "subjects": [{"kind": "ServiceAccount", "name": "prometheus", "namespace": NAMESPACE}],
    });
    let config = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata("prometheus", NAMESPACE, labels.clone()),
        "data": {"prometheus.yml": yaml::to_yaml(&prometheus_config())},
    });
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata("prometheus", NAMESPACE, labels.clone()),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "prometheus"}},
            "template": {
                "metadata": {
                    "labels": {"app": "prometheus"},
                    "annotations": {
                        "mesh.example/prometheus-config-hash":
                            format!("{:016x}", fnv1a(yaml::to_yaml(&prometheus_config()).as_bytes())),
                    },
                },
                "spec": {
                    "serviceAccountName": "prometheus",
                    "containers": [{
                        "name": "prometheus",
                        "image": PROMETHEUS_IMAGE,
                        "args": [
                            "--config.file=/etc/prometheus/prometheus.yml",
                            "--storage.tsdb.path=/prometheus",
                            "--enable-feature=exemplar-storage",
                        ],
                        "ports": [{"name": "web", "containerPort": 9090}],
                        "readinessProbe": {"httpGet": {"path": "/-/ready", "port": "web"}, "periodSeconds": 5},
                        "livenessProbe": {
                            "httpGet": {"path": "/-/healthy", "port": "web"},
                            "initialDelaySeconds": 10,
                            "periodSeconds": 10,
                        },
                        "securityContext": {
                            "runAsNonRoot": true,
                            "runAsUser": PROMETHEUS_UID,
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                        },
                        "volumeMounts": [
                            {"name": "config", "mountPath": "/etc/prometheus", "readOnly": true},
                            {"name": "data", "mountPath": "/prometheus"},
                        ],
                        "resources": resources("100m", "256Mi", "1Gi"),
                    }],
                    "volumes": [
                        {"name": "config", "configMap": {"name": "prometheus"}},
                        {"name": "data", "emptyDir": {}},
                    ],
                },
            },
        },
    });
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata("prometheus", NAMESPACE, labels),
        "spec": {
            "type": "NodePort",
            "selector": {"app": "prometheus"},
            "ports": [{"name": "web", "port": 9090, "targetPort": "web", "appProtocol": "http"}],
        },
    });
    vec![account, role, binding, config, deployment, service]
}

/// What a convention-following Prometheus (and Istio's metrics merging) reads to scrape an
/// app's `/metrics` on its admin listener.
fn scrape_annotations() -> Value {
    json!({
        "prometheus.io/scrape": "true",
        "prometheus.io/port": APP_ADMIN_PORT.to_string(),
        "prometheus.io/path": "/metrics",
    })
}

/// The ConfigMap carrying one proxy's bootstrap, named `<proxy>-envoy`.
fn config_map(config: &RenderedConfig, labels: &Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(&format!("{}-envoy", config.proxy), NAMESPACE, labels.clone()),
        "data": {ENVOY_CONFIG_FILE: config.yaml},
    })
}

/// How long the apps keep serving after turning not-ready on SIGTERM
/// (`SHUTDOWN_DELAY_MS`): the time the pod takes to leave its Service's endpoints.
const APP_SHUTDOWN_DELAY_MS: u64 = 5_000;

/// How long a sidecar waits, on the pod's termination, before Envoy gets its SIGTERM: at least
/// its app's shutdown delay (5 s), drain (at most 10 s) and span flush (the access log's 2 s,
/// then the exporter's 2 s timeout), so the app's last answers and calls still have their
/// proxy; within the pod's 30 s grace period.
const SIDECAR_STOP_AFTER_S: u64 = 20;

/// The same for the front proxy, which only waits for the endpoints to update.
const FRONT_PROXY_STOP_AFTER_S: u64 = 5;

/// The Envoy container of a pod: the mounted bootstrap, the proxy name as
/// service cluster, the pod name as service node; ready when the admin API's
/// `/ready` says so, alive while its stats listener accepts connections (both
/// through the stats listener: the admin API stays on 127.0.0.1). On the pod's termination it
/// keeps proxying `stop_after_s` seconds before its SIGTERM (a `preStop` sleep; the official
/// image has `sleep`).
fn envoy_container(
    config: &RenderedConfig,
    port_name: &str,
    port: u16,
    stop_after_s: u64,
) -> Value {
    json!({
        "name": "envoy",
        "image": ENVOY_IMAGE,
        "command": ["envoy"],
        "args": [
            "-c", format!("{ENVOY_CONFIG_DIR}/{ENVOY_CONFIG_FILE}"),
            "--service-cluster", config.service_cluster,
            "--service-node", "$(POD_NAME)",
            "--log-level", "warn",
            "--file-flush-interval-msec", "1000",
        ],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "ports": [
            {"name": port_name, "containerPort": port},
            {"name": "envoy-stats", "containerPort": STATS_PORT},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": "envoy-stats"},
            "periodSeconds": 5,
        },
        "livenessProbe": {
            "tcpSocket": {"port": "envoy-stats"},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
        },
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": ENVOY_UID,
            "allowPrivilegeEscalation": false,
        },
        "volumeMounts": [{"name": "envoy-config", "mountPath": ENVOY_CONFIG_DIR, "readOnly": true}],
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", stop_after_s.to_string()]}}},
        "resources": resources("50m", "64Mi", "256Mi"),
    })
}

fn config_volume(config: &RenderedConfig) -> Value {
    json!({"name": "envoy-config", "configMap": {"name": format!("{}-envoy", config.proxy)}})
}

/// An annotation that changes with the bootstrap, so a new config rolls
/// the pods.
fn config_hash(config: &RenderedConfig) -> Value {
    json!({"mesh.example/envoy-config-hash": format!("{:016x}", fnv1a(config.yaml.as_bytes()))})
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn front_proxy(t: &MeshTopology, config: &RenderedConfig) -> Vec<Value> {
    let labels = json!({"app": "front-proxy", "app.kubernetes.io/part-of": "mesh"});
    let port = t.front_proxy.listen.port;
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata("front-proxy", NAMESPACE, labels.clone()),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "front-proxy"}},
            "template": {
                "metadata": {"labels": {"app": "front-proxy"}, "annotations": config_hash(config)},
                "spec": {
                    "containers": [envoy_container(config, "http", port, FRONT_PROXY_STOP_AFTER_S)],
                    "volumes": [config_volume(config)],
                },
            },
        },
    });
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata("front-proxy", NAMESPACE, labels.clone()),
        "spec": {
            "selector": {"app": "front-proxy"},
            "ports": [{"name": "http", "port": port, "targetPort": "http", "appProtocol": "http"}],
        },
    });
    vec![config_map(config, &labels), deployment, service]
}

/// The app container. `listen` is where the app binds; `upstream` maps an
/// upstream Service name to the URL the app calls.
fn app_container(app: &App<'_>, listen: &str, upstream: impl Fn(&str) -> String) -> Value {
    let mut env = vec![
        json!({"name": "OTEL_SERVICE_NAME", "value": app.service}),
        json!({"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://jaeger-collector.mesh:4318"}),
    ];
    env.push(json!({"name": "SERVICE_VERSION", "value": app.version}));
    for (var, service) in app.upstreams {
        env.push(json!({"name": var, "value": upstream(service)}));
    }
    env.push(json!({"name": "ADMIN_LISTEN", "value": format!("0.0.0.0:{APP_ADMIN_PORT}")}));
    // Not ready first, stopped once the endpoints have let go of the pod.
    env.push(json!({"name": "SHUTDOWN_DELAY_MS", "value": APP_SHUTDOWN_DELAY_MS.to_string()}));
    json!({
        "name": app.service,
        "image": format!("mesh/{}:{APP_VERSION}", app.service),
        "args": ["--listen", listen],
        "env": env,
        "ports": [{"name": "admin", "containerPort": APP_ADMIN_PORT}],
        // The app itself may listen on the pod's loopback behind its sidecar: the probes go to
        // its admin listener, which the kubelet reaches. Readiness does not follow upstreams.
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "admin"}, "periodSeconds": 5},
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "admin"},
            "initialDelaySeconds": 5,
            "periodSeconds": 10,
        },
        // The images run as this numeric user (deploy/build-images.sh, deploy/Dockerfile), so
        // the kubelet can check runAsNonRoot without reading the image's /etc/passwd.
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": APP_UID,
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
        },
        "resources": resources("50m", "32Mi", "128Mi"),
    })
}

fn labels(app: &App<'_>) -> Value {
    json!({"app": app.service, "version": app.version, "app.kubernetes.io/part-of": "mesh"})
}

fn selector(app: &App<'_>) -> Value {
    json!({"app": app.service, "version": app.version})
}

fn sidecar_app(app: &App<'_>, config: &RenderedConfig) -> Vec<Value> {
    let sidecar = app.sidecar;
    let labels = labels(app);
    let (port_name, app_protocol) = port_name(sidecar.protocol);
    // The app calls every upstream through its sidecar's egress listener.
    let egress = sidecar
        .egress
        .as_ref()
        .map(|e| format!("http://{e}"))
        .unwrap_or_default();
    let container = app_container(app, &sidecar.app.to_string(), |_| egress.clone());
    let mut annotations = config_hash(config);
    if let (Value::Object(a), Value::Object(scrape)) = (&mut annotations, scrape_annotations()) {
        a.extend(scrape);
    }
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(&app.name, NAMESPACE, labels.clone()),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector(app)},
            "template": {
                "metadata": {"labels": selector(app), "annotations": annotations},
                "spec": {
                    "containers": [
                        container,
                        envoy_container(config, port_name, sidecar.ingress.port, SIDECAR_STOP_AFTER_S),
                    ],
                    "volumes": [config_volume(config)],
                },
            },
        },
    });
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(&app.name, NAMESPACE, labels.clone()),
        "spec": {
            "clusterIP": "None",
            "selector": selector(app),
            "ports": [{
                "name": port_name,
                "port": sidecar.service.port,
                "targetPort": port_name,
                "appProtocol": app_protocol,
            }],
        },
    });
    vec![config_map(config, &labels), deployment, service]
}

/// The Istio variant's apps: Services `frontend`, `user`, `order` and one
/// `item` over both versions, all on the sidecar service port.
fn istio_apps(t: &MeshTopology) -> Vec<Value> {
    let mut docs = Vec::new();
    let apps = apps(t);
    for app in &apps {
        let (port_name, _) = port_name(app.sidecar.protocol);
        let service_port = app.sidecar.service.port;
        let listen = format!("0.0.0.0:{}", app.sidecar.app.port);
        let mut container = app_container(app, &listen, |service| {
            format!("http://{service}:{service_port}")
        });
        container["ports"] = json!([
            {"name": port_name, "containerPort": app.sidecar.app.port},
            {"name": "admin", "containerPort": APP_ADMIN_PORT},
        ]);
        let mut labels = labels(app);
        labels["app.kubernetes.io/part-of"] = json!("mesh-istio");
        docs.push(json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata(&app.name, ISTIO_NAMESPACE, labels),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": selector(app)},
                "template": {
                    "metadata": {"labels": selector(app), "annotations": scrape_annotations()},
                    "spec": {"containers": [container]},
                },
            },
        }));
    }
    // One Service per service name; `item` selects both versions.
    for app in apps.iter().filter(|a| a.version == "v1") {
        let (port_name, app_protocol) = port_name(app.sidecar.protocol);
        let name = if app.service == "item" {
            "item"
        } else {
            &app.name
        };
        docs.push(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(name, ISTIO_NAMESPACE, json!({"app": app.service})),
            "spec": {
                "selector": {"app": app.service},
                "ports": [{
                    "name": port_name,
                    "port": app.sidecar.service.port,
                    "targetPort": app.sidecar.app.port,
                    "appProtocol": if app.sidecar.protocol == Protocol::Http2 { "grpc" } else { app_protocol },
                }],
            },
        }));
    }
    docs
}

fn istio_traffic(t: &MeshTopology) -> Vec<Value> {
    let canary = t.canary();
    let destination_rule = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "item", "namespace": ISTIO_NAMESPACE},
        "spec": {
            "host": "item",
            "subsets": [
                {"name": "v1", "labels": {"version": "v1"}},
                {"name": "v2", "labels": {"version": "v2"}},
            ],
        },
    });
    // The same routes, in the same order, as `order`'s egress Envoy
    // (`config::order_egress`): the three v2 overrides, then the canary.
    let v2 = json!([{"destination": {"host": "item", "subset": "v2"}}]);
    let item_routes = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "item", "namespace": ISTIO_NAMESPACE},
        "spec": {
            "hosts": ["item"],
            "http": [
                {
                    "name": "item-baggage-v2",
                    "match": [{"headers": {"baggage": {"regex": BAGGAGE_V2_REGEX}}}],
                    "route": v2,
                },
                {
                    "name": "item-end-user-v2",
                    "match": [{"headers": {"end-user": {"exact": END_USER_V2}}}],
                    "route": v2,
                },
                {
                    "name": "item-netscape-v2",
                    "match": [{"headers": {"baggage-user-agent": {"regex": NETSCAPE_UA_REGEX}}}],
                    "route": v2,
                },
                {
                    "name": "item-canary",
                    "route": [
                        {"destination": {"host": "item", "subset": "v1"}, "weight": 100 - canary},
                        {"destination": {"host": "item", "subset": "v2"}, "weight": canary},
                    ],
                },
            ],
        },
    });
    let gateway = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "frontend-gateway", "namespace": ISTIO_NAMESPACE},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}],
        },
    });
    let frontend = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "frontend", "namespace": ISTIO_NAMESPACE},
        "spec": {
            "hosts": ["*"],
            "gateways": ["frontend-gateway"],
            "http": [{
                "name": "frontend",
                "route": [{"destination": {"host": "frontend", "port": {"number": t.frontend.service.port}}}],
            }],
        },
    });
    vec![destination_rule, item_routes, gateway, frontend]
}

fn istio_telemetry() -> Value {
    json!({
        "apiVersion": "telemetry.istio.io/v1",
        "kind": "Telemetry",
        "metadata": {"name": "mesh-default", "namespace": "istio-system"},
        "spec": {
            "tracing": [{
                "providers": [{"name": "jaeger-zipkin"}],
                "randomSamplingPercentage": 100.0,
            }],
        },
    })
}

fn istio_operator(t: &MeshTopology) -> Value {
    json!({
        "apiVersion": "install.istio.io/v1alpha1",
        "kind": "IstioOperator",
        "metadata": {"name": "mesh-tracing", "namespace": "istio-system"},
        "spec": {
            "meshConfig": {
                "enableTracing": true,
                // The injected proxy outlives the app's shutdown (readiness delay, drain,
                // span flush), as the Envoy sidecars' 20 s `preStop` does in the plain
                // manifests: Istio's default is 5 s.
                "defaultConfig": {"terminationDrainDuration": "20s"},
                "extensionProviders": [{
                    "name": "jaeger-zipkin",
                    "zipkin": {
                        "service": format!("{}.{NAMESPACE}.svc.cluster.local", t.collector.host),
                        "port": t.collector.port,
                    },
                }],
            },
        },
    })
}

/// What [`sync_deploy`] found (or changed) under `deploy/`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeploySync {
    /// Files whose contents differ from the generator (rewritten when writing).
    pub changed: Vec<PathBuf>,
    /// Files the generator no longer produces (removed when writing).
    pub stale: Vec<PathBuf>,
}

impl DeploySync {
    /// Whether the committed files are exactly the generator's.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.changed.is_empty() && self.stale.is_empty()
    }
}

/// Compare the files under `root/deploy/envoy` and `root/deploy/k8s` with
/// [`deploy_files`] of [`MeshTopology::kubernetes`] (the one place they are generated
/// from); with `write`, make them equal (rewrite what differs, remove what is stale). This is
/// what `cargo xtask deploy` (write) and `cargo xtask deploy --check` and the tests (check)
/// run.
///
/// # Errors
///
/// When a file cannot be read, written or removed.
pub fn sync_deploy(root: &Path, write: bool) -> std::io::Result<DeploySync> {
    let generated = deploy_files(&MeshTopology::kubernetes());
    let mut out = DeploySync::default();
    for DeployFile { path, contents } in &generated {
        let full = root.join(path);
        let committed = match std::fs::read_to_string(&full) {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        if committed != *contents {
            if write {
                if let Some(parent) = full.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&full, contents)?;
            }
            out.changed.push(path.clone());
        }
    }
    let expected: BTreeSet<&Path> = generated.iter().map(|f| f.path.as_path()).collect();
    for dir in ["deploy/envoy", "deploy/k8s"] {
        for file in files_under(root, dir)? {
            if !expected.contains(file.as_path()) {
                if write {
                    std::fs::remove_file(root.join(&file))?;
                }
                out.stale.push(file);
            }
        }
    }
    Ok(out)
}

/// Every file under `root/dir` (recursively), relative to `root`.
fn files_under(root: &Path, dir: &str) -> std::io::Result<BTreeSet<PathBuf>> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.join(dir)];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(root) {
                out.insert(rel.to_path_buf());
            }
        }
    }
    Ok(out)
}
