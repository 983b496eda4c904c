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

/// The calls of one trace, as (caller, callee, failed), as Zipkin's dependency linker reads
/// them from the trace's tree:
/// - a span's parent is the span its `parentId` names (the server half when a shared id has
///   two), and a server half's is the client half sharing its id;
/// - a client (or producer) span with children is left to them (the server side names the
///   callee better); one without, and a span without a kind that names both sides, is a call
///   from its service to its remote service;
/// - a server (or consumer) span is a call from its remote service (the caller it saw), else
///   from the service of its nearest ancestor with a kind, to its own service; a root server
///   span with no remote service is no call;
/// - a call fails when its span carries an `error` tag, or a server span's direct client
///   parent does;
/// - a client span whose nearest ancestor with a kind is another service's also makes the
///   link from that service to it (a call whose server span is missing).
///
/// Messaging spans link their two sides only when both are known; a call from a service to
/// itself is no edge.
fn calls<'a>(spans: &[&'a ZipkinSpan]) -> Vec<(&'a str, &'a str, bool)> {
    let is_server = |s: &ZipkinSpan| s.kind == Some(SpanKind::Server);
    let is_client = |s: &ZipkinSpan| s.kind == Some(SpanKind::Client);
    // id → index, the server half winning a shared id; the client halves apart.
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    let mut client_half: HashMap<&str, usize> = HashMap::new();
    for (i, s) in spans.iter().enumerate() {
        if is_client(s) {
            client_half.insert(s.id.as_str(), i);
        }
        match by_id.get(s.id.as_str()) {
            Some(&j) if is_server(spans[j]) => {}
            _ => {
                by_id.insert(s.id.as_str(), i);
            }
        }
    }
    let parent_of = |i: usize| -> Option<usize> {
        let s = spans[i];
        if is_server(s)
            && let Some(&c) = client_half.get(s.id.as_str())
            && c != i
        {
            return Some(c);
        }
        let p = *by_id.get(s.parent_id.as_deref()?)?;
        // A span is not its own parent (a cycle in the data).
        (p != i).then_some(p)
    };
    let parents: Vec<Option<usize>> = (0..spans.len()).map(parent_of).collect();
    let mut has_children = vec![false; spans.len()];
    for p in parents.iter().flatten() {
        has_children[*p] = true;
    }
    // The nearest ancestor with a kind, at most as many steps as there are spans (cycles).
    let remote_ancestor = |i: usize| -> Option<usize> {
        let mut at = parents[i];
        for _ in 0..spans.len() {
            let a = at?;
            if spans[a].kind.is_some() {
                return Some(a);
            }
            at = parents[a];
        }
        None
    };
    let mut out = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        let mut kind = s.kind;
        if kind == Some(SpanKind::Client) && has_children[i] {
            continue;
        }
        let (own, remote) = (s.service(), s.remote_service());
        if kind.is_none() {
            if own.is_none() || remote.is_none() {
                continue;
            }
            kind = Some(SpanKind::Client);
        }
        let mut failed = s.tags.contains_key("error");
        let (mut caller, callee) = match kind {
            Some(SpanKind::Server | SpanKind::Consumer) => {
                if parents[i].is_none() && remote.is_none() {
                    continue;
                }
                (remote, own)
            }
            _ => (own, remote),
        };
        if matches!(kind, Some(SpanKind::Producer | SpanKind::Consumer)) {
            if let (Some(caller), Some(callee)) = (caller, callee) {
                out.push((caller, callee, failed));
            }
            continue;
        }
        if let Some(a) = remote_ancestor(i)
            && let Some(ancestor) = spans[a].service()
        {
            if kind == Some(SpanKind::Client)
                && let Some(own) = own
                && ancestor != own
            {
                out.push((ancestor, own, false));
            }
            if kind == Some(SpanKind::Server) || caller.is_none() {
                caller = Some(ancestor);
            }
            if !failed
                && is_client(spans[a])
                && s.parent_id.as_deref() == Some(spans[a].id.as_str())
            {
                failed = spans[a].tags.contains_key("error");
            }
        }
        if let (Some(caller), Some(callee)) = (caller, callee) {
            out.push((caller, callee, failed));
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

    /// The client's error counts for a call its server did not see fail (a timeout), and a
    /// client span with children (a sidecar's egress span under the app's) is left to them.
    #[test]
    fn client_errors_count_and_a_client_with_children_is_left_to_them() {
        use SpanKind::{Client, Server};
        let root = span("01", None, "frontend", Some(Server));
        let mut app_call = span("02", Some("01"), "frontend", Some(Client));
        app_call.remote_endpoint = Some(Endpoint {
            service_name: Some("127.0.0.1".to_owned()),
            ..Endpoint::default()
        });
        app_call
            .tags
            .insert("error".to_owned(), "timeout".to_owned());
        let egress = span("03", Some("02"), "frontend-sidecar", Some(Client));
        let user = span("04", Some("03"), "user", Some(Server));
        let spans = [root, app_call, egress, user];
        let got: Vec<(String, String, u64, u64)> = link([spans.iter().collect()])
            .into_iter()
            .map(|l| (l.parent, l.child, l.call_count, l.error_count))
            .collect();
        // As Zipkin draws it: the server side names the call, from its nearest ancestor with
        // a kind; no edge to the app call's `127.0.0.1`.
        assert_eq!(
            got,
            [("frontend-sidecar".to_owned(), "user".to_owned(), 1, 0)]
        );
        // Without the sidecar, the server under the failed client call counts the error.
        let direct = span("04", Some("02"), "user", Some(Server));
        let spans = [spans[0].clone(), spans[1].clone(), direct];
        let links = link([spans.iter().collect()]);
        assert_eq!(
            (
                links[0].parent.as_str(),
                links[0].child.as_str(),
                links[0].error_count
            ),
            ("frontend", "user", 1)
        );
    }
}
