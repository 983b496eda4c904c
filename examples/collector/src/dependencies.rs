//! `GET /api/v2/dependencies`: the service graph, as Zipkin's dependency linker draws it from
//! the spans held.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::model::{SpanKind, ZipkinSpan};

/// One edge of the service graph, in Zipkin v2's `DependencyLink` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DependencyLink {
    pub(crate) parent: String,
    pub(crate) child: String,
    pub(crate) call_count: u64,
    /// Calls whose span carries an `error` tag.
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) error_count: u64,
}

// Serde's `skip_serializing_if` passes a reference.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The calls of one trace, as (caller, callee, failed):
/// - a server (or consumer) span is a call from the service of its client half (the span
///   that shares its id), else of its parent span, else of its remote endpoint, to its own
///   service;
/// - a client (or producer) span that no server span answers (an uninstrumented callee) is
///   a call from its service to its remote endpoint's.
///
/// A call from a service to itself is no edge.
fn calls<'a>(spans: &[&'a ZipkinSpan]) -> Vec<(&'a str, &'a str, bool)> {
    let mut by_id: HashMap<&str, Vec<&ZipkinSpan>> = HashMap::new();
    for s in spans {
        by_id.entry(s.id.as_str()).or_default().push(s);
    }
    let is_server = |s: &ZipkinSpan| matches!(s.kind, Some(SpanKind::Server | SpanKind::Consumer));
    let is_client = |s: &ZipkinSpan| matches!(s.kind, Some(SpanKind::Client | SpanKind::Producer));
    // Client spans some server span answers: the server half of a shared span, or a server
    // child.
    let answered = |client: &ZipkinSpan| {
        by_id
            .get(client.id.as_str())
            .into_iter()
            .flatten()
            .any(|s| is_server(s))
            || spans
                .iter()
                .any(|s| is_server(s) && s.parent_id.as_deref() == Some(client.id.as_str()))
    };
    let failed = |s: &ZipkinSpan| s.tags.contains_key("error");
    let mut out = Vec::new();
    for s in spans {
        let own = s.service();
        if is_server(s) {
            let client_half = by_id
                .get(s.id.as_str())
                .into_iter()
                .flatten()
                .find(|c| is_client(c))
                .and_then(|c| c.service());
            let parent = || {
                s.parent_id
                    .as_deref()
                    .and_then(|p| by_id.get(p))
                    .and_then(|p| p.iter().find_map(|p| p.service()))
            };
            let caller = client_half.or_else(parent).or_else(|| s.remote_service());
            if let (Some(caller), Some(callee)) = (caller, own) {
                out.push((caller, callee, failed(s)));
            }
        } else if is_client(s)
            && !answered(s)
            && let (Some(caller), Some(callee)) = (own, s.remote_service())
        {
            out.push((caller, callee, failed(s)));
        }
    }
    out.retain(|(caller, callee, _)| !caller.eq_ignore_ascii_case(callee));
    out
}

/// The links of `traces`, sorted by parent then child, service names lower-cased (as Zipkin
/// stores them).
pub(crate) fn link<'a>(
    traces: impl IntoIterator<Item = Vec<&'a ZipkinSpan>>,
) -> Vec<DependencyLink> {
    let mut links: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for spans in traces {
        for (caller, callee, failed) in calls(&spans) {
            let counts = links
                .entry((caller.to_ascii_lowercase(), callee.to_ascii_lowercase()))
                .or_default();
            counts.0 += 1;
            counts.1 += u64::from(failed);
        }
    }
    links
        .into_iter()
        .map(
            |((parent, child), (call_count, error_count))| DependencyLink {
                parent,
                child,
                call_count,
                error_count,
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Endpoint;

    fn span(id: &str, parent: Option<&str>, service: &str, kind: Option<SpanKind>) -> ZipkinSpan {
        ZipkinSpan {
            trace_id: format!("{:032x}", 1),
            id: id.to_owned(),
            parent_id: parent.map(str::to_owned),
            name: "op".to_owned(),
            kind,
            timestamp: 1,
            duration: 1,
            local_endpoint: Some(Endpoint {
                service_name: Some(service.to_owned()),
                ..Endpoint::default()
            }),
            remote_endpoint: None,
            tags: BTreeMap::new(),
            annotations: Vec::new(),
            shared: false,
            debug: false,
        }
    }

    #[test]
    fn calls_are_read_from_client_and_server_spans() {
        use SpanKind::{Client, Server};
        // frontend (server) calls user (child server span) and order (a shared span: client
        // and server halves with one id); order calls an uninstrumented item; order's local
        // work is no call; user fails.
        let root = span("01", None, "frontend", Some(Server));
        let to_user = span("02", Some("01"), "frontend", Some(Client));
        let mut user = span("03", Some("02"), "user", Some(Server));
        user.tags.insert("error".to_owned(), "true".to_owned());
        let to_order = span("04", Some("01"), "frontend", Some(Client));
        let mut order = span("04", Some("01"), "order", Some(Server));
        order.shared = true;
        let local = span("05", Some("04"), "order", None);
        let mut to_item = span("06", Some("05"), "order", Some(Client));
        to_item.remote_endpoint = Some(Endpoint {
            service_name: Some("Item".to_owned()),
            ..Endpoint::default()
        });
        let spans = [root, to_user, user, to_order, order, local, to_item];
        let links = link([spans.iter().collect()]);
        let got: Vec<(&str, &str, u64, u64)> = links
            .iter()
            .map(|l| {
                (
                    l.parent.as_str(),
                    l.child.as_str(),
                    l.call_count,
                    l.error_count,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("frontend", "order", 1, 0),
                ("frontend", "user", 1, 1),
                ("order", "item", 1, 0),
            ]
        );
        // Twice the trace, twice the calls; a root server span with no caller is no call.
        let links = link([spans.iter().collect(), spans.iter().collect()]);
        assert_eq!(links[0].call_count, 2);
        assert!(link([vec![&spans[0]]]).is_empty());
    }
}
