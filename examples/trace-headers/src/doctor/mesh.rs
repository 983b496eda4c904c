//! Who is who: which services are proxies, which proxy is the edge, and which application
//! sits behind each sidecar.
//!
//! - A **proxy** is a service with a span Envoy's Zipkin tracer would write (a
//!   `guid:x-request-id`, `upstream_cluster` or `node_id` tag, or `component: proxy`), a
//!   service named in an Envoy access-log line (`proxy`), or one named like a proxy
//!   (`*-sidecar`, `*-envoy`, `front-proxy`, a word ending in `gateway`).
//! - The **edge** is a proxy or service named with `--edge`, one whose Envoy access-log lines
//!   say `listener: edge`, or one named like an edge (`front-proxy`, the word `edge`, a word
//!   ending in `gateway` other than an egress gateway; words are separated by `-`, `_`, `.`
//!   or spaces, so `ledger` is no edge).
//! - The **application behind a proxy** is, first, what the spans show: the service of the
//!   application spans whose parent (or shared id) is the proxy's ingress span, and of the
//!   application spans that are the parents of its egress spans (the most frequent one).
//!   Failing that, the naming convention: `order-sidecar` → `order`, and `item-v1-sidecar` →
//!   `item-v1`, or `item` when only `item` is a service in the data. A proxy with no
//!   application (a front proxy) stands for itself.

use std::collections::{BTreeMap, HashMap, HashSet};

use collector::{SpanKind, ZipkinSpan};

use super::access_log::{LogFormat, LogRecord};

/// Tags only Envoy's spans carry.
const PROXY_TAGS: [&str; 3] = ["guid:x-request-id", "upstream_cluster", "node_id"];

/// The service a span belongs to, as the doctor names it.
pub(crate) fn service_of(span: &ZipkinSpan) -> &str {
    span.service().unwrap_or("unknown service")
}

/// Proxies, edges and the application behind each proxy. See the [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct Mesh {
    proxies: HashSet<String>,
    edges: HashSet<String>,
    apps: HashMap<String, String>,
    /// Service → the edge whose span is the parent of one of its server spans in the data.
    fronted: BTreeMap<String, String>,
}

/// The words of a service name: `istio-ingressgateway.istio-system` → `istio`,
/// `ingressgateway`, `istio`, `system`.
fn words(s: &str) -> impl Iterator<Item = &str> {
    s.split(['-', '_', '.', ' ']).filter(|w| !w.is_empty())
}

/// `front-proxy` as two words of the name, in order.
fn has_front_proxy(s: &str) -> bool {
    let mut previous = "";
    words(s).any(|w| {
        let found = previous == "front" && w == "proxy";
        previous = w;
        found
    })
}

/// A word that names a gateway: `gateway`, `ingressgateway`, `egressgateway`.
fn is_gateway(word: &str) -> bool {
    word.ends_with("gateway")
}

fn named_like_proxy(s: &str) -> bool {
    s.ends_with("-sidecar")
        || s.ends_with("-envoy")
        || s == "envoy"
        || has_front_proxy(s)
        || words(s).any(is_gateway)
}

/// Whole words only: `edge-proxy` and `istio-ingressgateway` are edges, `ledger`, `hedge` and
/// `knowledge-base` are not.
fn named_like_edge(s: &str) -> bool {
    // An egress gateway is where calls leave the mesh, not where clients come in.
    let egress = words(s).any(|w| w.starts_with("egress"));
    has_front_proxy(s) || words(s).any(|w| w == "edge" || (is_gateway(w) && !egress))
}

/// `item-v1` → `item`, `order-2` → `order`: a trailing version or instance number.
fn without_version(s: &str) -> Option<&str> {
    let (base, tail) = s.rsplit_once('-')?;
    let digits = tail.strip_prefix('v').unwrap_or(tail);
    (!base.is_empty() && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then_some(base)
}

impl Mesh {
    /// Learn the roles from the spans (with an index of spans by `(trace id, span id)`), the
    /// access logs and the `--edge` names.
    pub(crate) fn learn(
        spans: &[&ZipkinSpan],
        by_key: &HashMap<(&str, &str), Vec<usize>>,
        logs: &[LogRecord],
        edges: &[String],
    ) -> Mesh {
        let mut known = HashSet::new();
        let mut mesh = Mesh::default();
        for s in spans {
            let name = service_of(s);
            known.insert(name.to_owned());
            let envoy = PROXY_TAGS.iter().any(|t| s.tags.contains_key(*t))
                || s.tags.get("component").is_some_and(|c| c == "proxy");
            if envoy || named_like_proxy(name) {
                mesh.proxies.insert(name.to_owned());
            }
        }
        for r in logs {
            if let Some(name) = &r.service {
                known.insert(name.clone());
                if r.format == LogFormat::EnvoyJson {
                    mesh.proxies.insert(name.clone());
                    if r.listener.as_deref() == Some("edge") {
                        mesh.edges.insert(name.clone());
                    }
                }
            }
        }
        for name in known.iter().filter(|n| named_like_edge(n)) {
            mesh.edges.insert(name.clone());
        }
        mesh.edges.extend(edges.iter().cloned());

        // Votes: proxy → application → how many spans say so.
        let mut votes: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
        let related = |s: &ZipkinSpan, id: &str| {
            by_key
                .get(&(s.trace_id.as_str(), id))
                .into_iter()
                .flatten()
                .filter_map(|i| spans.get(*i).copied())
                .collect::<Vec<_>>()
        };
        for s in spans {
            let name = service_of(s);
            if mesh.proxies.contains(name) {
                // An egress span's parent is the application's span.
                if s.kind == Some(SpanKind::Client)
                    && let Some(parent) = &s.parent_id
                {
                    for p in related(s, parent) {
                        // A span without a service name names no application.
                        let Some(app) = p.service() else {
                            continue;
                        };
                        if !mesh.proxies.contains(app) {
                            *votes.entry(name).or_default().entry(app).or_default() += 1;
                        }
                    }
                }
                continue;
            }
            if s.service().is_none() {
                continue;
            }
            // An application span under (or sharing its id with) a proxy's ingress span.
            let mut under = s
                .parent_id
                .as_deref()
                .map(|p| related(s, p))
                .unwrap_or_default();
            if s.kind == Some(SpanKind::Server) {
                under.extend(related(s, &s.id));
            }
            for p in under {
                let proxy = service_of(p);
                if mesh.proxies.contains(proxy) && p.kind == Some(SpanKind::Server) {
                    *votes.entry(proxy).or_default().entry(name).or_default() += 1;
                }
            }
        }
        // The edge in front of a service: its span the parent of the service's server span
        // somewhere in the data (the first edge by name, whatever the order of the spans).
        for s in spans {
            let name = service_of(s);
            if s.kind != Some(SpanKind::Server) || mesh.edges.contains(name) {
                continue;
            }
            for p in s
                .parent_id
                .as_deref()
                .map(|p| related(s, p))
                .unwrap_or_default()
            {
                let edge = service_of(p);
                if mesh.edges.contains(edge) {
                    let slot = mesh
                        .fronted
                        .entry(name.to_owned())
                        .or_insert_with(|| edge.to_owned());
                    if edge < slot.as_str() {
                        edge.clone_into(slot);
                    }
                }
            }
        }
        for (proxy, apps) in votes {
            if mesh.edges.contains(proxy) {
                // An edge proxy fronts the mesh, not one application: it stands for itself.
                continue;
            }
            // Most votes; ties to the first name, so the answer does not depend on order.
            let mut best: Option<(&str, usize)> = None;
            for (app, n) in apps {
                if best.is_none_or(|(_, m)| n > m) {
                    best = Some((app, n));
                }
            }
            if let Some((app, _)) = best {
                mesh.apps.insert(proxy.to_owned(), app.to_owned());
            }
        }
        let proxies: Vec<String> = mesh.proxies.iter().cloned().collect();
        for proxy in proxies {
            if mesh.apps.contains_key(&proxy) || mesh.edges.contains(&proxy) {
                continue;
            }
            let base = proxy
                .strip_suffix("-sidecar")
                .or_else(|| proxy.strip_suffix("-envoy"));
            if let Some(base) = base.filter(|b| !b.is_empty()) {
                let app = match without_version(base) {
                    Some(short) if !known.contains(base) && known.contains(short) => short,
                    _ => base,
                };
                mesh.apps.insert(proxy.clone(), app.to_owned());
            }
        }
        mesh
    }

    /// Whether `service` is a proxy.
    pub(crate) fn is_proxy(&self, service: &str) -> bool {
        self.proxies.contains(service)
    }

    /// Whether `service` is the mesh's edge.
    pub(crate) fn is_edge(&self, service: &str) -> bool {
        self.edges.contains(service)
    }

    /// The edge seen in front of `service` elsewhere in the data (its span the parent of one
    /// of `service`'s server spans).
    pub(crate) fn edge_in_front_of(&self, service: &str) -> Option<&str> {
        self.fronted.get(service).map(String::as_str)
    }

    /// The application that must change for what `service` did: the application behind a
    /// sidecar, or the service itself.
    pub(crate) fn app_of<'a>(&'a self, service: &'a str) -> &'a str {
        self.apps.get(service).map_or(service, String::as_str)
    }

    /// A hop in words: `order-sidecar's egress`, `item-v1-sidecar's ingress`, `order`.
    pub(crate) fn hop(&self, service: &str, kind: Option<SpanKind>) -> String {
        if !self.is_proxy(service) || self.is_edge(service) {
            return service.to_owned();
        }
        match kind {
            Some(SpanKind::Client | SpanKind::Producer) => format!("{service}'s egress"),
            Some(SpanKind::Server | SpanKind::Consumer) => format!("{service}'s ingress"),
            None => service.to_owned(),
        }
    }

    /// A callee named by a cluster or remote service: the application behind it when it is
    /// a proxy, `item` for `item-v1` when only `item` is known as an application.
    pub(crate) fn callee_name(&self, name: &str) -> String {
        let name = name.strip_suffix("-app").unwrap_or(name);
        if self.apps.contains_key(name) {
            return self.app_of(name).to_owned();
        }
        if self.apps.values().any(|a| a == name) {
            return name.to_owned();
        }
        match without_version(name) {
            Some(short) if self.apps.values().any(|a| a == short) => short.to_owned(),
            _ => name.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_and_proxies_by_whole_words() {
        for edge in [
            "edge",
            "edge-proxy",
            "mesh-edge",
            "front-proxy",
            "front_proxy",
            "istio-ingressgateway",
            "api-gateway",
            "gateway.istio-system",
        ] {
            assert!(named_like_edge(edge), "{edge}");
        }
        // Egress gateways are proxies, not edges.
        for egress in ["istio-egressgateway", "egress-gateway"] {
            assert!(!named_like_edge(egress), "{egress}");
            assert!(named_like_proxy(egress), "{egress}");
        }
        for app in [
            "ledger",
            "hedge",
            "pledge",
            "knowledge-base",
            "edger",
            "frontend",
            "proxy-front",
            "gatewayz",
        ] {
            assert!(!named_like_edge(app), "{app}");
            assert!(!named_like_proxy(app), "{app}");
        }
        for proxy in [
            "order-sidecar",
            "item-envoy",
            "envoy",
            "front-proxy",
            "istio-ingressgateway",
        ] {
            assert!(named_like_proxy(proxy), "{proxy}");
        }
    }

    #[test]
    fn versions_and_instances() {
        assert_eq!(without_version("item-v1"), Some("item"));
        assert_eq!(without_version("order-2"), Some("order"));
        assert_eq!(without_version("front-proxy"), None);
        assert_eq!(without_version("-v1"), None);
        assert_eq!(without_version("item-v"), None);
    }
}
