//! `GET /api/v2/dependencies`: the service graph, as Zipkin's dependency linker draws it from
//! the spans held.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::model::{Endpoint, SpanKind, ZipkinSpan};

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

/// A span as the linker reads it: the parts of one span sent apart merged into one, as
/// Zipkin's `Trace.merge` does.
#[derive(Clone, Debug)]
struct Part<'a> {
    id: &'a str,
    parent_id: Option<&'a str>,
    kind: Option<SpanKind>,
    shared: bool,
    local: Local<'a>,
    remote: Option<&'a str>,
    error: bool,
}

/// A local endpoint as the tree tells spans apart by it (service, IPv4, IPv6, port).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct Local<'a> {
    service: Option<&'a str>,
    ipv4: Option<&'a str>,
    ipv6: Option<&'a str>,
    port: Option<u16>,
}

impl<'a> Local<'a> {
    /// `endpoint` with `service` (lower-cased already, by [`Names`]).
    fn of(endpoint: Option<&'a Endpoint>, service: Option<&'a str>) -> Self {
        endpoint.map_or_else(Local::default, |e| Local {
            service,
            ipv4: e.ipv4.as_deref(),
            ipv6: e.ipv6.as_deref(),
            port: e.port,
        })
    }

    fn is_none(&self) -> bool {
        *self == Local::default()
    }

    /// Take `other`'s fields where they do not conflict (Zipkin's `EndpointTracker`): `false`
    /// when one does, and `other` is another endpoint.
    fn try_merge(&mut self, other: Local<'a>) -> bool {
        fn fits<T: PartialEq>(a: Option<T>, b: Option<T>) -> bool {
            a.is_none() || b.is_none() || a == b
        }
        if !(fits(self.service, other.service)
            && fits(self.ipv4, other.ipv4)
            && fits(self.ipv6, other.ipv6)
            && fits(self.port, other.port))
        {
            return false;
        }
        self.service = self.service.or(other.service);
        self.ipv4 = self.ipv4.or(other.ipv4);
        self.ipv6 = self.ipv6.or(other.ipv6);
        self.port = self.port.or(other.port);
        true
    }
}

impl<'a> Part<'a> {
    /// `s`, its service names lower-cased in `names` (as Zipkin stores them).
    fn of(s: &'a ZipkinSpan, names: &'a Names) -> Self {
        Part {
            id: &s.id,
            parent_id: s.parent_id.as_deref(),
            kind: s.kind,
            shared: s.shared,
            local: Local::of(s.local_endpoint.as_ref(), names.0.as_deref()),
            remote: names.1.as_deref(),
            error: s.tags.contains_key("error"),
        }
    }
}

/// A span's local and remote service names, lower-cased (Zipkin lower-cases them when it
/// takes a span in, so its tree and its links compare them so).
struct Names(Option<String>, Option<String>);

impl Names {
    fn of(s: &ZipkinSpan) -> Self {
        Names(
            s.service().map(str::to_lowercase),
            s.remote_service().map(str::to_lowercase),
        )
    }
}

/// The spans of a trace with the parts of each merged, as Zipkin's `Trace.merge`: sorted by
/// id, then client before server (a shared server half last), then endpoint (none first); a
/// span and the next with its id are one when neither or both are shared and their endpoints
/// do not conflict. A server half after a client half of its id is shared even if it does not
/// say so, and takes the client's parent when it has none.
fn merge<'a>(spans: &[&'a ZipkinSpan], names: &'a [Names]) -> Vec<Part<'a>> {
    let mut parts: Vec<Part<'a>> = spans
        .iter()
        .zip(names)
        .map(|(s, n)| Part::of(s, n))
        .collect();
    let shared_order = |p: &Part<'_>| match (p.shared, p.kind) {
        (true, _) => 2,
        (false, Some(SpanKind::Client)) => 0,
        (false, _) => 1,
    };
    let endpoint_order = |p: &Part<'a>| {
        // No endpoint first; then by service, IPv4, IPv6, each present before absent.
        let last = |v: Option<&'a str>| (v.is_none(), v);
        (
            !p.local.is_none(),
            last(p.local.service),
            last(p.local.ipv4),
            last(p.local.ipv6),
        )
    };
    parts.sort_by(|a, b| {
        a.id.cmp(b.id)
            .then(shared_order(a).cmp(&shared_order(b)))
            .then_with(|| endpoint_order(a).cmp(&endpoint_order(b)))
    });
    let mut out: Vec<Part<'a>> = Vec::with_capacity(parts.len());
    let mut parts = parts.into_iter().peekable();
    while let Some(mut span) = parts.next() {
        // Zipkin reads the first part's kind and parent for the backfills below.
        let (first_kind, first_parent) = (span.kind, span.parent_id);
        let mut local = span.local;
        while let Some(next) = parts.peek() {
            if next.id != span.id || next.shared != span.shared || !local.try_merge(next.local) {
                break;
            }
            span.parent_id = span.parent_id.or(next.parent_id);
            span.kind = span.kind.or(next.kind);
            span.remote = span.remote.or(next.remote);
            span.error |= next.error;
            parts.next();
        }
        span.local = local;
        if let Some(last) = out.last()
            && last.id == span.id
        {
            if last.kind == Some(SpanKind::Client)
                && first_kind == Some(SpanKind::Server)
                && !span.shared
            {
                span.shared = true;
            }
            if span.shared && first_parent.is_none() && last.parent_id.is_some() {
                span.parent_id = last.parent_id;
            }
        }
        out.push(span);
    }
    out
}

/// How the tree finds a span: by id, or a shared server half by id and endpoint (two servers
/// answering one client id are told apart by where they ran).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key<'a> {
    Id(&'a str),
    Shared(&'a str, Local<'a>),
}

impl<'a> Key<'a> {
    fn new(id: &'a str, shared: bool, local: Local<'a>) -> Self {
        if shared {
            Key::Shared(id, local)
        } else {
            Key::Id(id)
        }
    }
}

/// The trace's tree, as Zipkin's `SpanNode.Builder` builds it: `parent[i]` of each merged span,
/// the first span without a parent as the root, and every span whose parent is not in the
/// trace attached to the root (to a root that is no span when none is). Spans in a cycle are
/// reachable from no root and are left out.
struct Tree {
    /// `None`: the root, or a span under a root that is no span (`root` is `None`).
    parent: Vec<Option<usize>>,
    /// The root span, if one is.
    root: Option<usize>,
    /// The spans reachable from the root, parents before children.
    order: Vec<usize>,
}

impl Tree {
    fn build(parts: &[Part<'_>]) -> Tree {
        // Which key each span's parent is known by, in the order first indexed (an entry taken
        // out is `None`; put again, it goes last).
        let mut links = Links::default();
        for p in parts {
            let (key, parent) = if p.shared {
                (Key::Shared(p.id, p.local), Some(Key::Id(p.id)))
            } else {
                (Key::Id(p.id), p.parent_id.map(Key::Id))
            };
            links.put(key, parent);
        }
        let mut node: HashMap<Key<'_>, usize> = HashMap::new();
        let mut root = None;
        for (i, p) in parts.iter().enumerate() {
            let key = Key::new(p.id, p.shared, p.local);
            let bare = if p.local.is_none() {
                key
            } else {
                Key::new(p.id, p.shared, Local::default())
            };
            let parent = if p.shared {
                Some(Key::Id(p.id))
            } else if let Some(parent_id) = p.parent_id {
                // The child of a shared server half on its own endpoint (local work under a
                // server span sharing its client's id), else of the span with that id.
                let shared = Key::Shared(parent_id, p.local);
                if links.slot.contains_key(&shared) {
                    links.put(bare, Some(shared));
                    Some(shared)
                } else {
                    Some(Key::Id(parent_id))
                }
            } else {
                None
            };
            if parent.is_none() && root.is_none() {
                root = Some(i);
                // The root has no parent to find.
                links.remove(bare);
            } else {
                node.insert(key, i);
                node.insert(bare, i);
            }
        }
        let mut parent = vec![None; parts.len()];
        let mut attached = vec![false; parts.len()];
        for (key, of) in links.entries.iter().flatten() {
            let Some(&child) = node.get(key) else {
                continue;
            };
            let up = of.and_then(|k| node.get(&k).copied());
            parent[child] = match up {
                Some(p) if p != child => Some(p),
                // A parent not in the trace: the root's child.
                _ => root.filter(|&r| r != child),
            };
            attached[child] = true;
        }
        // Breadth first from the root: a span in a cycle is never reached.
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); parts.len()];
        let mut tops = Vec::new();
        for (i, p) in parent.iter().enumerate() {
            match p {
                Some(p) => children[*p].push(i),
                None if attached[i] && Some(i) != root => tops.push(i),
                None => {}
            }
        }
        let mut order: Vec<usize> = root.into_iter().chain(tops).collect();
        let mut next = 0;
        while let Some(&at) = order.get(next) {
            order.extend(children[at].iter().copied());
            next += 1;
        }
        Tree {
            parent,
            root,
            order,
        }
    }
}

/// Each span's key and its parent's, in the order first put (Zipkin's `spanToParent`).
#[derive(Default)]
struct Links<'a> {
    entries: Vec<Option<(Key<'a>, Option<Key<'a>>)>>,
    slot: HashMap<Key<'a>, usize>,
}

impl<'a> Links<'a> {
    fn put(&mut self, key: Key<'a>, parent: Option<Key<'a>>) {
        match self.slot.get(&key) {
            Some(&i) => self.entries[i] = Some((key, parent)),
            None => {
                self.slot.insert(key, self.entries.len());
                self.entries.push(Some((key, parent)));
            }
        }
    }

    fn remove(&mut self, key: Key<'a>) {
        if let Some(i) = self.slot.remove(&key) {
            self.entries[i] = None;
        }
    }
}

/// The calls of one trace, as (caller, callee, failed), as Zipkin's `DependencyLinker` reads
/// them from the trace's tree (see [`merge`] and [`Tree`]):
/// - a client (or producer) span with children is left to them (the server side names the
///   callee better); one without, and a span without a kind that names both sides, is a call
///   from its service to its remote service;
/// - a server (or consumer) span is a call from its remote service (the caller it saw), else
///   from the service of its nearest ancestor with a kind, to its own service; the root span,
///   if a server with no remote service, is no call;
/// - a call fails when its span carries an `error` tag, or a server span's direct client
///   parent does;
/// - a client span whose nearest ancestor with a kind is another service's also makes the
///   link from that service to it (a call whose server span is missing).
///
/// Messaging spans link their two sides only when both are known.
fn calls(spans: &[&ZipkinSpan]) -> Vec<(String, String, bool)> {
    let names: Vec<Names> = spans.iter().map(|s| Names::of(s)).collect();
    let parts = merge(spans, &names);
    let tree = Tree::build(&parts);
    let mut has_children = vec![false; parts.len()];
    for p in tree.parent.iter().flatten() {
        has_children[*p] = true;
    }
    // The nearest ancestor with a kind of each span, found once, parents first.
    let mut kinded: Vec<Option<usize>> = vec![None; parts.len()];
    for &i in &tree.order {
        kinded[i] = tree.parent[i].and_then(|p| {
            if parts[p].kind.is_some() {
                Some(p)
            } else {
                kinded[p]
            }
        });
    }
    let remote_ancestor = |i: usize| kinded[i];
    let mut out = Vec::new();
    for &i in &tree.order {
        let s = &parts[i];
        let mut kind = s.kind;
        if kind == Some(SpanKind::Client) && has_children[i] {
            continue;
        }
        let (own, remote) = (s.local.service, s.remote);
        if kind.is_none() {
            if own.is_none() || remote.is_none() {
                continue;
            }
            kind = Some(SpanKind::Client);
        }
        let mut failed = s.error;
        let (mut caller, callee) = match kind {
            Some(SpanKind::Server | SpanKind::Consumer) => {
                if tree.root == Some(i) && remote.is_none() {
                    continue;
                }
                (remote, own)
            }
            _ => (own, remote),
        };
        if matches!(kind, Some(SpanKind::Producer | SpanKind::Consumer)) {
            if let (Some(caller), Some(callee)) = (caller, callee) {
                out.push((caller.to_owned(), callee.to_owned(), failed));
            }
            continue;
        }
        if let Some(a) = remote_ancestor(i)
            && let Some(ancestor) = parts[a].local.service
        {
            if kind == Some(SpanKind::Client)
                && let Some(own) = own
                && ancestor != own
            {
                out.push((ancestor.to_owned(), own.to_owned(), false));
            }
            if kind == Some(SpanKind::Server) || caller.is_none() {
                caller = Some(ancestor);
            }
            if !failed
                && parts[a].kind == Some(SpanKind::Client)
                && s.parent_id == Some(parts[a].id)
            {
                failed = parts[a].error;
            }
        }
        if let (Some(caller), Some(callee)) = (caller, callee) {
            out.push((caller.to_owned(), callee.to_owned(), failed));
        }
    }
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
            let counts = links.entry((caller, callee)).or_default();
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

    fn links_of(spans: &[ZipkinSpan]) -> Vec<(String, String, u64, u64)> {
        link([spans.iter().collect()])
            .into_iter()
            .map(|l| (l.parent, l.child, l.call_count, l.error_count))
            .collect()
    }

    fn remote(span: &mut ZipkinSpan, service: &str) {
        span.remote_endpoint = Some(Endpoint {
            service_name: Some(service.to_owned()),
            ..Endpoint::default()
        });
    }

    fn edge(parent: &str, child: &str, calls: u64, errors: u64) -> (String, String, u64, u64) {
        (parent.to_owned(), child.to_owned(), calls, errors)
    }

    /// Zipkin attaches a span whose parent is not in the trace (evicted, or never reported)
    /// to the root: its caller is then the root's service.
    #[test]
    fn a_span_whose_parent_is_missing_hangs_from_the_root() {
        use SpanKind::Server;
        let root = span("01", None, "frontend", Some(Server));
        let orphan = span("03", Some("02"), "backend", Some(Server));
        assert_eq!(
            links_of(&[root.clone(), orphan.clone()]),
            [edge("frontend", "backend", 1, 0)]
        );
        // A second span without a parent hangs from the first too.
        let second = span("04", None, "backend", Some(Server));
        assert_eq!(
            links_of(&[root, second]),
            [edge("frontend", "backend", 1, 0)]
        );
        // No root at all: no caller to name.
        assert!(links_of(&[orphan]).is_empty());
    }

    /// A shared span's parent is the span with its id (Zipkin's `producerLinksToServer_sameSpan`).
    #[test]
    fn a_shared_span_hangs_from_the_span_with_its_id() {
        use SpanKind::{Producer, Server};
        let producer = span("0a", None, "producer", Some(Producer));
        let mut server = span("0a", None, "server", Some(Server));
        server.shared = true;
        assert_eq!(
            links_of(&[server, producer]),
            [edge("producer", "server", 1, 0)]
        );
    }

    /// A call from a service to itself is an edge (Zipkin's `linksLoopbackSpans`).
    #[test]
    fn loopback_calls_are_links() {
        use SpanKind::{Client, Server};
        let mut root = span("01", None, "service", Some(Server));
        remote(&mut root, "service");
        assert_eq!(links_of(&[root]), [edge("service", "service", 1, 0)]);
        let mut call = span("01", None, "Service", Some(Client));
        remote(&mut call, "service");
        assert_eq!(links_of(&[call]), [edge("service", "service", 1, 0)]);
    }

    /// A span sent in parts (the same id and endpoint) is one call: its error counts once.
    #[test]
    fn a_span_sent_in_parts_is_one_call() {
        use SpanKind::{Client, Server};
        let root = span("01", None, "frontend", Some(Server));
        let mut call = span("02", Some("01"), "frontend", Some(Client));
        remote(&mut call, "backend");
        let mut failed = call.clone();
        failed.tags.insert("error".to_owned(), "timeout".to_owned());
        // The second part without its kind or remote: still the same span.
        let mut late = span("02", Some("01"), "frontend", None);
        late.tags
            .insert("http.status_code".to_owned(), "504".to_owned());
        assert_eq!(
            links_of(&[root.clone(), call.clone(), failed, late]),
            [edge("frontend", "backend", 1, 1)]
        );
        // Another endpoint with the same id is not merged in (its error would not count),
        // but the tree, as Zipkin's, keeps one span per unshared id: the last in its order.
        let mut other = span("02", Some("01"), "elsewhere", Some(Client));
        remote(&mut other, "backend");
        other.tags.insert("error".to_owned(), "true".to_owned());
        assert_eq!(
            links_of(&[root, other, call]),
            [edge("frontend", "backend", 1, 0)]
        );
    }

    /// A server half that does not say it is shared, after the client half of its id, is
    /// read as shared (Zipkin backfills the flag), and spans in a cycle are left out.
    #[test]
    fn a_server_half_is_shared_and_cycles_are_left_out() {
        use SpanKind::{Client, Server};
        let root = span("01", None, "frontend", Some(Server));
        let call = span("02", Some("01"), "frontend", Some(Client));
        let server = span("02", Some("01"), "backend", Some(Server));
        assert_eq!(
            links_of(&[root.clone(), server, call]),
            [edge("frontend", "backend", 1, 0)]
        );
        let a = span("0a", Some("0b"), "a", Some(Server));
        let b = span("0b", Some("0a"), "b", Some(Server));
        assert!(links_of(&[root, a, b]).is_empty());
    }

    /// Zipkin reads the first part's kind for the shared backfill: a server half sent first
    /// without its kind, then with it, is not read as shared.
    #[test]
    fn the_backfills_read_the_first_part() {
        use SpanKind::{Client, Server};
        let root = span("01", None, "frontend", Some(Server));
        let call = span("02", Some("01"), "frontend-sidecar", Some(Client));
        let first = span("02", Some("01"), "backend", None);
        let second = span("02", Some("01"), "backend", Some(Server));
        assert_eq!(
            links_of(&[root, call, first, second]),
            [edge("frontend", "backend", 1, 0)]
        );
    }

    /// Service names compare as Zipkin stores them, lower-cased: parts that differ only in
    /// case are one span.
    #[test]
    fn service_names_compare_lower_cased() {
        use SpanKind::{Client, Server};
        let root = span("01", None, "frontend", Some(Server));
        let mut first = span("02", Some("01"), "Frontend", Some(Client));
        remote(&mut first, "Backend");
        first.tags.insert("error".to_owned(), "true".to_owned());
        let second = span("02", Some("01"), "frontend", None);
        assert_eq!(
            links_of(&[root, first, second]),
            [edge("frontend", "backend", 1, 1)]
        );
        let mut accented = span("01", None, "ÉTÉ", Some(Server));
        remote(&mut accented, "Été");
        assert_eq!(links_of(&[accented]), [edge("été", "été", 1, 0)]);
    }

    /// A long chain of local spans above many calls: each call's nearest ancestor with a kind
    /// is the chain's root (found once per span, parents first, not by walking the chain
    /// again for each call).
    #[test]
    fn a_long_chain_of_local_spans_is_linked() {
        use SpanKind::{Client, Server};
        let n = 20_000;
        let mut spans = vec![span("0000000000000001", None, "frontend", Some(Server))];
        for i in 2..=n {
            spans.push(span(
                &format!("{i:016x}"),
                Some(&format!("{:016x}", i - 1)),
                "frontend",
                None,
            ));
        }
        for i in 1..=n {
            let mut call = span(
                &format!("{:016x}", n + i),
                Some(&format!("{n:016x}")),
                "frontend",
                Some(Client),
            );
            remote(&mut call, "backend");
            spans.push(call);
        }
        assert_eq!(links_of(&spans), [edge("frontend", "backend", n as u64, 0)]);
    }
}
