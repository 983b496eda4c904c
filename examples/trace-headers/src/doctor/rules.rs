//! The rules: which spans show a break, who must change, and how to say it.
//!
//! Each rule looks at one request (a [`Group`] of traces in the order the request went through
//! them, [`order_traces`]) and emits
//! [`Event`]s, one per symptom span; [`explain`](super::explain) adds the events of one kind,
//! culprit and hop up into a finding. The rules, in words, are in `examples/trace-headers/DOCTOR.md`.

use std::collections::{BTreeMap, HashMap, HashSet};

use collector::{SpanKind, ZipkinSpan};

use super::access_log::LogFormat;
use super::analyse::{Ctx, Group, request_id_of};
use super::mesh::service_of;
use super::report::Kind;

/// How a finding came about, for its wording.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Case {
    /// At a proxy's egress: the application behind it made the call.
    Egress,
    /// In an application's own client or local spans.
    InApp,
    /// At a server span, its caller named.
    AtServer,
    /// At a server span, no span of its caller in the data.
    CallerUnknown,
    /// A request's only trace begins at a proxy's egress.
    Unlinked,
    /// At an edge known as such (its name, its access log, `--edge`).
    Named,
    /// At the request's first server hop (nothing served it before).
    ByPosition,
    /// Kinds without variants.
    Plain,
}

/// One symptom.
#[derive(Debug)]
pub(crate) struct Event {
    pub(crate) kind: Kind,
    pub(crate) case: Case,
    pub(crate) culprit: String,
    /// Where the symptom shows: `order-sidecar's egress`, `item`, `front-proxy`.
    pub(crate) hop: String,
    pub(crate) trace: String,
    pub(crate) span: Option<String>,
    pub(crate) callee: Option<String>,
    /// The trace the request arrived in (or the parent lives in); for `request-id-dropped`,
    /// the request id before the change.
    pub(crate) related: Option<String>,
    /// The missing parent, the duplicated id, the new request id, the first root's hop.
    pub(crate) detail: Option<String>,
    /// Other applications that could as well be the caller named `culprit`: calls of theirs
    /// were in flight when the call began, unrelated to the culprit's, and nothing (no client
    /// span, no access log) says which one made it.
    pub(crate) rivals: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Server,
    Client,
    Local,
}

fn side(kind: Option<SpanKind>) -> Side {
    match kind {
        Some(SpanKind::Server | SpanKind::Consumer) => Side::Server,
        Some(SpanKind::Client | SpanKind::Producer) => Side::Client,
        None => Side::Local,
    }
}

/// Where a trace (or a piece of one) begins: a root span, or a log-only trace's first line.
#[derive(Clone, Copy, Debug)]
struct Start<'a> {
    service: &'a str,
    kind: Option<SpanKind>,
    ts: u64,
    span: Option<&'a ZipkinSpan>,
}

impl Start<'_> {
    fn side(&self) -> Side {
        side(self.kind)
    }
}

/// The distinct roots of a trace (one per span id: a shared root counts once, represented by
/// its earliest span), earliest first; for a trace known only from access logs, its first
/// line.
fn starts<'a>(ctx: &Ctx<'a>, t: usize) -> Vec<Start<'a>> {
    // A shared server half without a parent id (Envoy's ingress span in `shared_span_context`
    // mode when the caller sent none) hangs under the span with its id, as Zipkin reads it
    // (and reads a server span after a client span of its id as shared): no root of its own
    // when another span of the trace has its id and a parent.
    let parented: HashSet<&str> = ctx
        .trace_spans(t)
        .filter(|s| s.parent_id.is_some())
        .map(|s| s.id.as_str())
        .collect();
    let half = |s: &ZipkinSpan| {
        (s.shared || s.kind == Some(SpanKind::Server)) && parented.contains(s.id.as_str())
    };
    let mut roots: BTreeMap<&str, &ZipkinSpan> = BTreeMap::new();
    for s in ctx
        .trace_spans(t)
        .filter(|s| s.parent_id.is_none() && !half(s))
    {
        // Earliest first, a client side before a server side, then by name: whatever the
        // order of the input.
        let rank = |x: &ZipkinSpan| {
            (
                x.timestamp == 0,
                x.timestamp,
                side(x.kind) != Side::Client,
                service_of(x).to_owned(),
                kind_rank(x.kind),
            )
        };
        let better = |old: &ZipkinSpan| rank(s) < rank(old);
        roots
            .entry(s.id.as_str())
            .and_modify(|old| {
                if better(old) {
                    *old = s;
                }
            })
            .or_insert(s);
    }
    let mut out: Vec<Start<'a>> = roots
        .into_values()
        .map(|s| Start {
            service: service_of(s),
            kind: s.kind,
            ts: s.timestamp,
            span: Some(s),
        })
        .collect();
    out.sort_by_key(|s| (s.ts == 0, s.ts, s.span.map(|s| s.id.as_str())));
    let Some(trace) = ctx.traces.get(t) else {
        return out;
    };
    if trace.spans.is_empty() {
        let first = trace
            .logs
            .iter()
            .filter_map(|i| ctx.logs.get(*i))
            .min_by_key(|r| (r.start_us == 0, r.start_us));
        if let Some(r) = first {
            let egress =
                r.format == LogFormat::EnvoyJson && r.listener.as_deref() == Some("egress");
            out.push(Start {
                service: r.service.as_deref().unwrap_or("unknown service"),
                kind: Some(if egress {
                    SpanKind::Client
                } else {
                    SpanKind::Server
                }),
                ts: r.start_us,
                span: None,
            });
        }
    }
    out
}

/// Whether trace `t` shows a server side: a server span, or a log line not from an egress.
fn has_server(ctx: &Ctx<'_>, t: usize) -> bool {
    ctx.trace_spans(t).any(|s| side(s.kind) == Side::Server)
        || ctx.traces.get(t).is_some_and(|tr| {
            tr.logs.iter().filter_map(|i| ctx.logs.get(*i)).any(|r| {
                r.format != LogFormat::EnvoyText && r.listener.as_deref() != Some("egress")
            })
        })
}

/// The edge in front of `service` (its span the parent of one of `service`'s server spans
/// somewhere in the data) when an access-log line of that edge (not its egress) shows the
/// request `g`: then the edge saw it, and a span of `service` without its parent lost the
/// edge's span. `None` otherwise: a client may reach `service` directly as well.
fn edge_shown<'c>(ctx: &'c Ctx<'_>, g: &Group, service: &str) -> Option<&'c str> {
    let edge = ctx.mesh.edge_in_front_of(service)?;
    let logged = g.traces.iter().any(|&u| {
        ctx.traces
            .get(u)
            .into_iter()
            .flat_map(|tr| tr.logs.iter())
            .filter_map(|i| ctx.logs.get(*i))
            .any(|r| r.listener.as_deref() != Some("egress") && r.service.as_deref() == Some(edge))
    });
    logged.then_some(edge)
}

/// Put a request's traces in the order the request went through them. A trace that provably
/// continues another trace of the request goes after every trace that does not; time (the
/// earliest timestamp, then the id) orders the rest, as before. A trace continues another when
/// it begins
/// - at a proxy's egress: the application behind it received the request elsewhere;
/// - at a server span of an application other than the edge that fits (by duration) in a
///   client span of another application, in another trace, that nothing answered and that
///   names no other callee (that call arrived somewhere unlinked), or in a span or access-log
///   line of the edge in another trace (the request entered there) — unless it made a call
///   itself, nothing answered, inside which another trace began: then it is a caller (a
///   caller that timed out, or answered early, while its callee worked on).
///
/// Durations, unlike timestamps, do not depend on which host's clock took them: a callee whose
/// clock is a millisecond behind its caller's no longer starts the request. A duration not
/// known (0) proves nothing.
pub(crate) fn order_traces(ctx: &Ctx<'_>, g: &mut Group) {
    if g.traces.len() < 2 {
        return;
    }
    // The client spans nothing answered, by trace; the edge's spans and access-log lines, by
    // trace, with the longest the request can have taken there.
    let mut calls: Vec<(usize, &ZipkinSpan)> = Vec::new();
    let mut edges: Vec<(usize, u64)> = Vec::new();
    for &u in &g.traces {
        for s in ctx.trace_spans(u) {
            if ctx.mesh.is_edge(service_of(s)) && s.duration > 0 {
                edges.push((u, s.duration));
            }
            if s.kind == Some(SpanKind::Client) && !answered(ctx, u, s) {
                calls.push((u, s));
            }
        }
        let logs = ctx.traces.get(u).into_iter().flat_map(|tr| tr.logs.iter());
        for r in logs.filter_map(|i| ctx.logs.get(*i)) {
            if r.listener.as_deref() == Some("egress")
                || !r.service.as_deref().is_some_and(|s| ctx.mesh.is_edge(s))
            {
                continue;
            }
            let bound = match r.format {
                // Envoy logs whole milliseconds, cut down: `0` is under one. A line without a
                // duration proves nothing.
                LogFormat::EnvoyJson | LogFormat::EnvoyText if r.duration_known => {
                    r.duration_us + 999
                }
                _ if r.duration_us > 0 => r.duration_us,
                _ => continue,
            };
            edges.push((u, bound));
        }
    }
    let firsts: Vec<(usize, Option<Start<'_>>)> = g
        .traces
        .iter()
        .map(|&t| (t, starts(ctx, t).into_iter().next()))
        .collect();
    // A server span lasting `inner` may sit in a span lasting `outer`.
    let fits = |inner: u64, outer: u64| inner > 0 && outer > 0 && inner <= outer;
    let continues = |t: usize, s: &Start<'_>| match s.side() {
        Side::Client => ctx.mesh.is_proxy(s.service),
        Side::Local => false,
        Side::Server if ctx.mesh.is_edge(s.service) => false,
        Side::Server => {
            let me = ctx.mesh.app_of(s.service);
            let lasted = s.span.map_or(0, |x| x.duration);
            let rpc = s.span.and_then(rpc_of);
            // A call of its own, unanswered, inside which another trace began on a server.
            let called = calls.iter().any(|&(u, c)| {
                u == t
                    && c.timestamp > 0
                    && firsts.iter().any(|(v, f)| {
                        *v != t
                            && f.as_ref().is_some_and(|f| {
                                f.side() == Side::Server
                                    && f.ts >= c.timestamp
                                    && f.ts <= c.timestamp.saturating_add(c.duration)
                            })
                    })
            });
            !called
                && (calls.iter().any(|&(u, c)| {
                    u != t
                        && ctx.mesh.app_of(service_of(c)) != me
                        && may_call(ctx, c, me, rpc.as_deref())
                        && fits(lasted, c.duration)
                }) || edges.iter().any(|&(u, d)| u != t && fits(lasted, d)))
        }
    };
    let keys: HashMap<usize, (bool, u64, String)> = firsts
        .iter()
        .map(|(t, first)| {
            let (start, id) = ctx
                .traces
                .get(*t)
                .map(|tr| (tr.start, tr.id.clone()))
                .unwrap_or_default();
            let later = first.as_ref().is_some_and(|s| continues(*t, s));
            (*t, (later, start, id))
        })
        .collect();
    g.traces.sort_by(|a, b| keys.get(a).cmp(&keys.get(b)));
}

/// Whether `call` (a client span) may be the call that reached application `me` (serving
/// `rpc`): not when it names another callee (its remote service, or an RPC of its own).
fn may_call(ctx: &Ctx<'_>, call: &ZipkinSpan, me: &str, rpc: Option<&str>) -> bool {
    let other_callee = call
        .remote_service()
        .is_some_and(|n| ctx.mesh.callee_name(n) != me);
    let other_rpc = rpc.is_some_and(|r| rpc_of(call).is_some_and(|c| c != r));
    !other_callee && !other_rpc
}

/// The caller of a server span that began before anything of its callers ran: only a clock
/// behind theirs explains it. The application with a client span in `callers` that nothing
/// answered, that names no other callee, that began after `start` and lasted at least as long
/// (the call `start` may have answered): one naming `start`'s application (remote service) or
/// RPC first, then the earliest. `None` without such a call.
fn early_caller(ctx: &Ctx<'_>, start: &Start<'_>, callers: &[usize]) -> Option<String> {
    if start.ts == 0 {
        return None;
    }
    let me = ctx.mesh.app_of(start.service);
    let lasted = start.span.map_or(0, |s| s.duration);
    let rpc = start.span.and_then(rpc_of);
    let mut best: Option<((bool, u64, &str), &str)> = None;
    for &t in callers {
        for c in ctx.trace_spans(t) {
            let app = ctx.mesh.app_of(service_of(c));
            if c.kind != Some(SpanKind::Client)
                || c.timestamp <= start.ts
                || app == me
                || lasted == 0
                || c.duration == 0
                || lasted > c.duration
                || !may_call(ctx, c, me, rpc.as_deref())
                || answered(ctx, t, c)
            {
                continue;
            }
            let named = c.remote_service().is_some() || (rpc.is_some() && rpc_of(c) == rpc);
            let key = (!named, c.timestamp, service_of(c));
            if best.is_none_or(|(k, _)| key < k) {
                best = Some((key, app));
            }
        }
    }
    best.map(|(_, app)| app.to_owned())
}

/// The application whose span in `traces` was running when `start` began, leaving out
/// `start`'s own application and its sidecar. The likeliest caller first: a client span that
/// no span answered (its call arrived elsewhere: in `start`'s trace), then any span; among
/// equals the innermost (the latest-starting span whose interval holds the start). A concurrent sibling call that was answered — the frontend calling `user`
/// while `order` calls `item` — is not taken for the caller. `None` without timestamps or
/// without such a span.
fn caller_of(ctx: &Ctx<'_>, start: &Start<'_>, traces: &[usize]) -> Option<String> {
    caller_and_rivals(ctx, start, traces).map(|(caller, _)| caller)
}

/// [`caller_of`], and the other applications that could as well be the caller: spans of the
/// same tier running when `start` began, neither an ancestor nor a descendant of the caller's
/// span (a concurrent sibling, as `order` and `user` both called by the frontend at once), and
/// not a client span another span answered (that call went elsewhere).
fn caller_and_rivals(
    ctx: &Ctx<'_>,
    start: &Start<'_>,
    traces: &[usize],
) -> Option<(String, Vec<String>)> {
    if start.ts == 0 {
        return None;
    }
    let me = ctx.mesh.app_of(start.service);
    // (tier, answered, span, trace)
    let mut running: Vec<(u8, bool, &ZipkinSpan, usize)> = Vec::new();
    for &t in traces {
        for c in ctx.trace_spans(t) {
            if c.timestamp == 0
                || c.duration == 0
                || c.timestamp > start.ts
                || start.ts > c.timestamp.saturating_add(c.duration)
                || ctx.mesh.app_of(service_of(c)) == me
            {
                continue;
            }
            let client = c.kind == Some(SpanKind::Client);
            let answered = client && answered(ctx, t, c);
            running.push((u8::from(client && !answered), answered, c, t));
        }
    }
    settle_used_calls(ctx, &mut running);
    let &(tier, _, best, _) = running
        .iter()
        .max_by(|(at, _, a, _), (bt, _, b, _)| (at, innermost(a)).cmp(&(bt, innermost(b))))?;
    let caller = ctx.mesh.app_of(service_of(best));
    let mut rivals: Vec<String> = Vec::new();
    for &(their_tier, answered, c, _) in &running {
        let app = ctx.mesh.app_of(service_of(c));
        if their_tier == tier
            && !answered
            && app != caller
            // In another trace, a span is no sibling of the caller's: a break before it.
            && c.trace_id == best.trace_id
            && !related_by_parents(ctx, c, best)
            && !related_by_parents(ctx, best, c)
            && !rivals.iter().any(|r| r == app)
        {
            rivals.push(app.to_owned());
        }
    }
    rivals.sort();
    Some((caller.to_owned(), rivals))
}

/// Unanswered calls whose break shows already: each arrived in a later piece of the request
/// (an earlier trace than the start being explained) that is still running. A call may have
/// arrived in a piece when the piece began during the call, at another application, and
/// something names the piece's application as the call's callee: the same RPC on both sides,
/// or the call's remote service. Calls and pieces are matched one to one, as many calls as
/// can be, across all applications. When every unanswered call an application has running is
/// matched, and an application a call reached reports no client span at all (its own calls
/// never show) and still has a span running in that piece, it may have made the call being
/// explained: its spans there rise to the tier of an unanswered call, and the first
/// application's calls drop to the tier of any running span. Two breaks in a row: the
/// frontend's call arrived at `order` in a new trace, and `order`'s call to `item` (no client
/// span of its own) began another; `order` is the caller of the second, not the frontend. An
/// application that reports client spans is not raised (its call would show as an unanswered
/// client span of its own), nor is one the call did not reach (`stock` running under `order`
/// with the headers), nor is anything raised for a call with no piece it provably arrived in:
/// so a frontend whose timed call to `order` and untimed call to `user` both lose the headers
/// is still named for `user`'s trace, though `order` and `item` run then. The tiers are read
/// before any change, so the order in which applications are looked at does not matter.
fn settle_used_calls(ctx: &Ctx<'_>, running: &mut [(u8, bool, &ZipkinSpan, usize)]) {
    // The unanswered calls running (tier 1): the span, its trace, its application, and what
    // names its callee (its RPC, its remote service as an application).
    let calls: Vec<Call<'_>> = running
        .iter()
        .filter(|(tier, ..)| *tier == 1)
        .map(|(_, _, c, t)| Call {
            span: c,
            trace: *t,
            app: ctx.mesh.app_of(service_of(c)),
            rpc: rpc_of(c),
            callee: c.remote_service().map(|n| ctx.mesh.callee_name(n)),
        })
        .collect();
    if calls.is_empty() {
        return;
    }
    // The pieces with a span running: their trace, when each began, at which application, and
    // the RPC it began serving.
    let mut pieces: Vec<Piece<'_>> = Vec::new();
    for &(_, _, _, t) in running.iter() {
        if pieces.iter().any(|p| p.trace == t) {
            continue;
        }
        if let Some(first) = starts(ctx, t).first().filter(|s| s.ts > 0) {
            pieces.push(Piece {
                trace: t,
                ts: first.ts,
                app: ctx.mesh.app_of(first.service),
                rpc: first.span.and_then(rpc_of),
            });
        }
    }
    // Which pieces each call may have arrived in.
    let arrived_in = |c: &Call<'_>, p: &Piece<'_>| {
        let end = c.span.timestamp.saturating_add(c.span.duration);
        p.trace != c.trace
            && p.app != c.app
            && (c.span.timestamp..=end).contains(&p.ts)
            && (matches!((&c.rpc, &p.rpc), (Some(a), Some(b)) if a == b)
                || c.callee.as_deref() == Some(p.app))
    };
    let edges: Vec<Vec<usize>> = calls
        .iter()
        .map(|c| {
            (0..pieces.len())
                .filter(|&i| arrived_in(c, &pieces[i]))
                .collect()
        })
        .collect();
    // One piece per call and one call per piece, as many calls as can be (augmenting paths:
    // the calls and pieces running at one instant are few).
    let mut piece_of_call: Vec<Option<usize>> = vec![None; calls.len()];
    let mut call_of_piece: Vec<Option<usize>> = vec![None; pieces.len()];
    for c in 0..calls.len() {
        let mut seen = vec![false; pieces.len()];
        augment(c, &edges, &mut seen, &mut piece_of_call, &mut call_of_piece);
    }
    // (trace, application) whose running spans rise; applications whose calls drop.
    let mut rise: Vec<(usize, &str)> = Vec::new();
    let mut dropped: Vec<&str> = Vec::new();
    let mut apps: Vec<&str> = calls.iter().map(|c| c.app).collect();
    apps.sort_unstable();
    apps.dedup();
    for app in apps {
        let mine = || {
            calls
                .iter()
                .zip(&piece_of_call)
                .filter(|(c, _)| c.app == app)
        };
        if mine().any(|(_, p)| p.is_none()) {
            continue;
        }
        // The applications the calls reached that time none of their calls, with a span
        // still running in the piece the call began.
        let reached: Vec<(usize, &str)> = mine()
            .filter_map(|(_, p)| p.and_then(|i| pieces.get(i)))
            .filter(|p| !ctx.timed_callers.contains(p.app))
            .filter(|p| {
                running
                    .iter()
                    .any(|(_, _, s, t)| *t == p.trace && ctx.mesh.app_of(service_of(s)) == p.app)
            })
            .map(|p| (p.trace, p.app))
            .collect();
        if reached.is_empty() {
            continue;
        }
        rise.extend(reached);
        dropped.push(app);
    }
    for entry in running.iter_mut() {
        let app = ctx.mesh.app_of(service_of(entry.2));
        if rise.contains(&(entry.3, app)) {
            entry.0 = 1;
        } else if entry.0 == 1 && dropped.contains(&app) {
            entry.0 = 0;
        }
    }
}

/// An unanswered call running when a start being explained began (see [`settle_used_calls`]).
struct Call<'a> {
    span: &'a ZipkinSpan,
    trace: usize,
    app: &'a str,
    rpc: Option<String>,
    /// The application its remote service names.
    callee: Option<String>,
}

/// A later piece of the request with a span running (see [`settle_used_calls`]).
struct Piece<'a> {
    trace: usize,
    ts: u64,
    app: &'a str,
    rpc: Option<String>,
}

/// Kuhn's augmenting path from call `c`: whether it got a piece, others moving over to make
/// room.
fn augment(
    c: usize,
    edges: &[Vec<usize>],
    seen: &mut [bool],
    piece_of_call: &mut [Option<usize>],
    call_of_piece: &mut [Option<usize>],
) -> bool {
    for &p in edges.get(c).map_or(&[][..], Vec::as_slice) {
        if seen.get(p).copied().unwrap_or(true) {
            continue;
        }
        seen[p] = true;
        let free = match call_of_piece[p] {
            None => true,
            Some(other) => augment(other, edges, seen, piece_of_call, call_of_piece),
        };
        if free {
            call_of_piece[p] = Some(c);
            piece_of_call[c] = Some(p);
            return true;
        }
    }
    false
}

/// The RPC a span calls or serves, `package.Service/Method`: its `rpc.service` and
/// `rpc.method` tags, else a gRPC-style name. `None` for anything else (HTTP routes).
fn rpc_of(span: &ZipkinSpan) -> Option<String> {
    if let (Some(service), Some(method)) =
        (span.tags.get("rpc.service"), span.tags.get("rpc.method"))
    {
        return Some(format!("{service}/{method}"));
    }
    let name = span.name.trim_start_matches('/');
    let (service, method) = name.split_once('/')?;
    (service.contains('.') && !service.contains(' ') && !method.is_empty() && !method.contains('/'))
        .then(|| name.to_owned())
}

/// Whether `a` is `b` (the same span id, both halves of a shared span included) or one of its
/// ancestors, following parent ids within their trace.
fn related_by_parents(ctx: &Ctx<'_>, a: &ZipkinSpan, b: &ZipkinSpan) -> bool {
    if a.trace_id != b.trace_id {
        return false;
    }
    let mut current = b;
    // Bounded: a malformed input may hold a cycle of parent ids.
    for _ in 0..256 {
        if current.id == a.id {
            return true;
        }
        let Some(parent) = current.parent_id.as_deref() else {
            return false;
        };
        let Some(next) = ctx
            .by_key
            .get(&(current.trace_id.as_str(), parent))
            .and_then(|v| v.first())
            .and_then(|i| ctx.spans.get(*i).copied())
        else {
            return false;
        };
        current = next;
    }
    false
}

/// Whether a span of trace `t` answers the client span `c`: a child of it, or the server
/// half sharing its id.
fn answered(ctx: &Ctx<'_>, t: usize, c: &ZipkinSpan) -> bool {
    // By the indexes, not a walk over the trace: this is asked of every running client span
    // for every root a trace has.
    let Some(trace) = ctx.traces.get(t).map(|tr| tr.id.as_str()) else {
        return false;
    };
    ctx.children
        .get(&(trace, c.id.as_str()))
        .is_some_and(|v| !v.is_empty())
        || ctx
            .spans_with_id(trace, &c.id)
            .any(|s| s.kind == Some(SpanKind::Server))
}

/// How inner a running span is: the latest start, then the shortest, then by name.
fn innermost(x: &ZipkinSpan) -> (u64, std::cmp::Reverse<u64>, std::cmp::Reverse<&str>) {
    (
        x.timestamp,
        std::cmp::Reverse(x.duration),
        std::cmp::Reverse(service_of(x)),
    )
}

/// Whether a span of another application in `traces` was running when `start` began.
fn contained(ctx: &Ctx<'_>, start: &Start<'_>, traces: &[usize]) -> bool {
    caller_of(ctx, start, traces).is_some()
}

/// Whether `start` is the request's entry: no span of another application began before it.
fn is_entry(ctx: &Ctx<'_>, start: &Start<'_>, g: &Group) -> bool {
    let me = ctx.mesh.app_of(start.service);
    start.ts > 0
        && !g.traces.iter().any(|&t| {
            ctx.trace_spans(t).any(|c| {
                c.timestamp > 0 && c.timestamp < start.ts && ctx.mesh.app_of(service_of(c)) != me
            })
        })
}

/// The trace in which `culprit` received the request: the first of `earlier` with a server
/// span (or log line) of it or of its sidecar; else the request's first trace.
fn received(ctx: &Ctx<'_>, culprit: &str, earlier: &[usize]) -> Option<String> {
    let serves = |t: usize| {
        ctx.trace_spans(t)
            .any(|s| side(s.kind) == Side::Server && ctx.mesh.app_of(service_of(s)) == culprit)
            || ctx.traces.get(t).is_some_and(|tr| {
                tr.logs.iter().filter_map(|i| ctx.logs.get(*i)).any(|r| {
                    r.listener.as_deref() != Some("egress")
                        && r.service
                            .as_deref()
                            .is_some_and(|s| ctx.mesh.app_of(s) == culprit)
                })
            })
    };
    // Else the request's first trace, unless it begins at the culprit itself (then it is one
    // of the culprit's own new traces, not what it received).
    let begins_at_culprit = |t: usize| {
        starts(ctx, t)
            .first()
            .is_some_and(|s| ctx.mesh.app_of(s.service) == culprit)
    };
    let t = earlier
        .iter()
        .copied()
        .find(|&t| serves(t))
        .or_else(|| earlier.first().copied().filter(|&t| !begins_at_culprit(t)))?;
    ctx.traces.get(t).map(|tr| tr.id.clone())
}

/// Whom a call that starts at `start` went to: the application behind the server span under
/// it, else its remote service or upstream cluster, else its name.
fn callee_of(ctx: &Ctx<'_>, start: &Start<'_>) -> Option<String> {
    let span = start.span?;
    let key = (span.trace_id.as_str(), span.id.as_str());
    let under = ctx
        .children
        .get(&key)
        .into_iter()
        .flatten()
        .chain(ctx.by_key.get(&key).into_iter().flatten())
        .filter_map(|i| ctx.spans.get(*i).copied())
        .find(|c| side(c.kind) == Side::Server && service_of(c) != start.service);
    if let Some(c) = under {
        return Some(ctx.mesh.app_of(service_of(c)).to_owned());
    }
    let named = span
        .remote_service()
        .or_else(|| span.tags.get("upstream_cluster").map(String::as_str))
        .map(|n| ctx.mesh.callee_name(n));
    named.or_else(|| (!span.name.is_empty()).then(|| span.name.clone()))
}

fn event(kind: Kind, case: Case, culprit: &str, hop: String, trace: &str) -> Event {
    Event {
        kind,
        case,
        culprit: culprit.to_owned(),
        hop,
        trace: trace.to_owned(),
        span: None,
        callee: None,
        related: None,
        detail: None,
        rivals: Vec::new(),
    }
}

/// Every event of one request.
pub(crate) fn events(ctx: &Ctx<'_>, g: &Group) -> Vec<Event> {
    let mut out = Vec::new();
    let mut group_ids: HashMap<&str, usize> = HashMap::new();
    for &t in &g.traces {
        for s in ctx.trace_spans(t) {
            group_ids.entry(s.id.as_str()).or_insert(t);
        }
    }
    let first_service = g
        .traces
        .first()
        .and_then(|&t| starts(ctx, t).first().map(|s| s.service));
    // Whether some trace before this one shows a server side.
    let mut served_before = false;
    for (pos, &t) in g.traces.iter().enumerate() {
        let Some(trace) = ctx.traces.get(t).map(|tr| tr.id.as_str()) else {
            continue;
        };
        let starts = starts(ctx, t);
        for (k, start) in starts.iter().enumerate() {
            let earlier = g.traces.get(..pos).unwrap_or_default();
            if pos == 0 && k == 0 {
                // The request's own start; only a proxy's egress never is one.
                if start.side() == Side::Client && ctx.mesh.is_proxy(start.service) {
                    let mut e = if g.traces.len() > 1 {
                        // Other traces carry its request id: the app forwards the id, and
                        // the trace it received is not in the data. This piece is one of
                        // its calls like the later ones, with no received trace to name.
                        split(ctx, start, &[], Kind::HeadersDropped, trace)
                    } else {
                        let app = ctx.mesh.app_of(start.service);
                        let hop = ctx.mesh.hop(start.service, start.kind);
                        let mut e = event(Kind::HeadersDropped, Case::Unlinked, app, hop, trace);
                        e.callee = callee_of(ctx, start);
                        e
                    };
                    e.span = start.span.map(|s| s.id.clone());
                    out.push(e);
                }
                continue;
            }
            let mut e = if k == 0 {
                let before = Before {
                    traces: earlier,
                    served: served_before,
                    first_service,
                };
                restart(ctx, g, &before, start, trace)
            } else {
                let first_hop = starts
                    .first()
                    .map(|f| ctx.mesh.hop(f.service, f.kind))
                    .unwrap_or_default();
                let mut e = split(ctx, start, &g.traces, Kind::MultipleRoots, trace);
                e.detail = Some(first_hop);
                e
            };
            e.span = start.span.map(|s| s.id.clone());
            out.push(e);
        }
        served_before = served_before || has_server(ctx, t);
        orphans(ctx, g, t, trace, &group_ids, &mut out);
        duplicates(ctx, t, trace, &mut out);
        request_id_changes(ctx, t, trace, &mut out);
    }
    out
}

/// What came before a later trace of a request.
struct Before<'a> {
    /// The request's traces that began earlier.
    traces: &'a [usize],
    /// Whether one of them shows a server side.
    served: bool,
    /// The service where the request's first trace began.
    first_service: Option<&'a str>,
}

/// A later trace of the request begins at `start`.
fn restart(ctx: &Ctx<'_>, g: &Group, before: &Before<'_>, start: &Start<'_>, trace: &str) -> Event {
    let earlier = before.traces;
    let first_trace = g
        .traces
        .first()
        .and_then(|&t| ctx.traces.get(t))
        .map(|tr| tr.id.clone());
    if start.side() == Side::Server {
        if ctx.mesh.is_edge(start.service) || !before.served {
            let case = if ctx.mesh.is_edge(start.service) {
                Case::Named
            } else {
                Case::ByPosition
            };
            let mut e = event(
                Kind::EdgeRestart,
                case,
                start.service,
                start.service.to_owned(),
                trace,
            );
            e.related = first_trace;
            return e;
        }
        if before.first_service == Some(start.service) && !contained(ctx, start, earlier) {
            let mut e = event(
                Kind::RequestIdReused,
                Case::Plain,
                start.service,
                start.service.to_owned(),
                trace,
            );
            e.related = earlier
                .last()
                .and_then(|&t| ctx.traces.get(t))
                .map(|tr| tr.id.clone());
            return e;
        }
    }
    let mut e = split(ctx, start, earlier, Kind::HeadersDropped, trace);
    e.related = received(ctx, &e.culprit, earlier);
    e
}

/// A piece of the request starts at `start` with no parent: who sent the call without its
/// context. `callers` are the traces to look for a server-side caller in.
fn split(ctx: &Ctx<'_>, start: &Start<'_>, callers: &[usize], kind: Kind, trace: &str) -> Event {
    let hop = ctx.mesh.hop(start.service, start.kind);
    match start.side() {
        Side::Server => {
            let found = caller_and_rivals(ctx, start, callers)
                .or_else(|| early_caller(ctx, start, callers).map(|c| (c, Vec::new())));
            let (case, culprit, rivals) = match found {
                Some((c, rivals)) => (Case::AtServer, c, rivals),
                None => (Case::CallerUnknown, start.service.to_owned(), Vec::new()),
            };
            let mut e = event(kind, case, &culprit, hop, trace);
            e.callee = Some(ctx.mesh.app_of(start.service).to_owned());
            e.rivals = rivals;
            e
        }
        Side::Client | Side::Local => {
            let (case, culprit) = if ctx.mesh.is_proxy(start.service) {
                (Case::Egress, ctx.mesh.app_of(start.service))
            } else {
                (Case::InApp, start.service)
            };
            let mut e = event(kind, case, culprit, hop, trace);
            e.callee = callee_of(ctx, start);
            e
        }
    }
}

/// Spans whose parent nobody reported in their trace.
fn orphans(
    ctx: &Ctx<'_>,
    g: &Group,
    t: usize,
    trace: &str,
    group_ids: &HashMap<&str, usize>,
    out: &mut Vec<Event>,
) {
    let mut missing: BTreeMap<&str, Vec<&ZipkinSpan>> = BTreeMap::new();
    for s in ctx.trace_spans(t) {
        if let Some(p) = s.parent_id.as_deref()
            && !ctx.by_key.contains_key(&(trace, p))
        {
            missing.entry(p).or_default().push(s);
        }
    }
    for (parent, list) in missing {
        // Spans naming the same missing parent share one cause: read it off the egress spans
        // first (their parent is the application's), then the application's own spans, then
        // the server spans.
        let egress: Vec<&ZipkinSpan> = list
            .iter()
            .copied()
            .filter(|s| side(s.kind) == Side::Client && ctx.mesh.is_proxy(service_of(s)))
            .collect();
        let in_app: Vec<&ZipkinSpan> = list
            .iter()
            .copied()
            .filter(|s| side(s.kind) != Side::Server && !ctx.mesh.is_proxy(service_of(s)))
            .collect();
        let (case, chosen) = if !egress.is_empty() {
            (Case::Egress, egress)
        } else if !in_app.is_empty() {
            (Case::InApp, in_app)
        } else {
            (Case::AtServer, list)
        };
        let elsewhere = group_ids.get(parent).copied().filter(|&o| o != t);
        for s in chosen {
            let svc = service_of(s);
            let start = Start {
                service: svc,
                kind: s.kind,
                ts: s.timestamp,
                span: Some(s),
            };
            let hop = ctx.mesh.hop(svc, s.kind);
            let mut e = if let Some(other) = elsewhere {
                let other_id = ctx.traces.get(other).map(|tr| tr.id.as_str()).unwrap_or("");
                let culprit = match case {
                    Case::Egress => ctx.mesh.app_of(svc),
                    Case::AtServer => ctx
                        .spans_with_id(other_id, parent)
                        .next()
                        .map_or(svc, |p| ctx.mesh.app_of(service_of(p))),
                    _ => svc,
                };
                let mut e = event(Kind::TraceIdChanged, Case::Plain, culprit, hop, trace);
                e.related = Some(other_id.to_owned());
                e
            } else {
                match case {
                    Case::Egress => event(
                        Kind::UnreportedParent,
                        case,
                        ctx.mesh.app_of(svc),
                        hop,
                        trace,
                    ),
                    Case::InApp => event(Kind::UnreportedParent, case, svc, hop, trace),
                    _ if ctx.mesh.is_edge(svc) => {
                        event(Kind::ClientParent, Case::Named, svc, hop, trace)
                    }
                    _ => match caller_and_rivals(ctx, &start, &g.traces) {
                        Some((c, rivals)) => {
                            let mut e =
                                event(Kind::UnreportedParent, Case::AtServer, &c, hop, trace);
                            e.rivals = rivals;
                            e
                        }
                        None if is_entry(ctx, &start, g) => match edge_shown(ctx, g, svc) {
                            // The edge that fronts this service elsewhere in the data logged
                            // this very request: its span is what is missing (not flushed, or
                            // not reported), not a client's outside the mesh.
                            Some(edge) => {
                                event(Kind::UnreportedParent, Case::AtServer, edge, hop, trace)
                            }
                            None => event(Kind::ClientParent, Case::ByPosition, svc, hop, trace),
                        },
                        None => event(Kind::UnreportedParent, Case::CallerUnknown, svc, hop, trace),
                    },
                }
            };
            e.span = Some(s.id.clone());
            e.detail = Some(parent.to_owned());
            out.push(e);
        }
    }
}

fn kind_rank(kind: Option<SpanKind>) -> u8 {
    match kind {
        None => 0,
        Some(SpanKind::Client) => 1,
        Some(SpanKind::Server) => 2,
        Some(SpanKind::Producer) => 3,
        Some(SpanKind::Consumer) => 4,
    }
}

/// Different spans reported by one service, of one kind, under one id.
fn duplicates(ctx: &Ctx<'_>, t: usize, trace: &str, out: &mut Vec<Event>) {
    let mut by: BTreeMap<(&str, &str, u8), Vec<&ZipkinSpan>> = BTreeMap::new();
    for s in ctx.trace_spans(t) {
        by.entry((s.id.as_str(), service_of(s), kind_rank(s.kind)))
            .or_default()
            .push(s);
    }
    for ((id, svc, _), list) in by {
        let Some(first) = list.first().filter(|_| list.len() > 1) else {
            continue;
        };
        let me = ctx.mesh.app_of(svc);
        // A server span sharing its caller's span id (Zipkin's shared span) got the id from
        // the caller's client span: the caller sent one id twice. Otherwise the service made
        // the id itself.
        let culprit = if side(first.kind) == Side::Server {
            ctx.spans_with_id(trace, id)
                .find(|s| side(s.kind) == Side::Client && ctx.mesh.app_of(service_of(s)) != me)
                .map_or(me, |s| ctx.mesh.app_of(service_of(s)))
        } else {
            me
        };
        for s in &list {
            let mut e = event(
                Kind::DuplicateSpanId,
                Case::Plain,
                culprit,
                ctx.mesh.hop(svc, s.kind),
                trace,
            );
            e.span = Some(s.id.clone());
            e.detail = Some(id.to_owned());
            out.push(e);
        }
    }
}

/// Spans whose request id differs from their nearest ancestor's: where the trace changed
/// request id.
fn request_id_changes(ctx: &Ctx<'_>, t: usize, trace: &str, out: &mut Vec<Event>) {
    for s in ctx.trace_spans(t) {
        let Some(rid) = request_id_of(s) else {
            continue;
        };
        let mut visited = HashSet::new();
        let mut cur = s.parent_id.as_deref();
        let mut direct: Option<&ZipkinSpan> = None;
        let mut ancestor: Option<&str> = None;
        while let Some(p) = cur {
            if !visited.insert(p) || visited.len() > 256 {
                break;
            }
            let parents: Vec<&ZipkinSpan> = ctx.spans_with_id(trace, p).collect();
            let Some(first) = parents.first() else {
                break;
            };
            direct.get_or_insert(first);
            if let Some(r) = parents.iter().find_map(|c| request_id_of(c)) {
                ancestor = Some(r);
                break;
            }
            cur = first.parent_id.as_deref();
        }
        let Some(old) = ancestor.filter(|old| *old != rid) else {
            continue;
        };
        let svc = service_of(s);
        let me = ctx.mesh.app_of(svc);
        let culprit = match (side(s.kind), direct) {
            (Side::Server, Some(p)) if ctx.mesh.app_of(service_of(p)) != me => {
                ctx.mesh.app_of(service_of(p))
            }
            _ => me,
        };
        let mut e = event(
            Kind::RequestIdDropped,
            Case::Plain,
            culprit,
            ctx.mesh.hop(svc, s.kind),
            trace,
        );
        e.span = Some(s.id.clone());
        e.related = Some(old.to_owned());
        e.detail = Some(rid.to_owned());
        out.push(e);
    }
}

#[cfg(test)]
mod tests {
    use super::augment;

    /// Augmenting paths find a piece for every call that can have one: the first call moves
    /// over to its other piece so the second gets the one it alone may have arrived in.
    #[test]
    fn every_call_that_can_be_matched_is() {
        // Call 0 may have arrived in piece 0 or 1, call 1 only in piece 0.
        let edges = vec![vec![0, 1], vec![0]];
        let mut piece_of_call = vec![None; 2];
        let mut call_of_piece = vec![None; 2];
        for c in 0..2 {
            let mut seen = vec![false; 2];
            augment(c, &edges, &mut seen, &mut piece_of_call, &mut call_of_piece);
        }
        assert_eq!(piece_of_call, [Some(1), Some(0)]);
        assert_eq!(call_of_piece, [Some(1), Some(0)]);
        // One piece, two calls that name it: one of them gets it.
        let edges = vec![vec![0], vec![0]];
        let mut piece_of_call = vec![None; 2];
        let mut call_of_piece = vec![None; 1];
        for c in 0..2 {
            let mut seen = vec![false; 1];
            augment(c, &edges, &mut seen, &mut piece_of_call, &mut call_of_piece);
        }
        assert_eq!(piece_of_call.iter().filter(|p| p.is_some()).count(), 1);
    }
}
