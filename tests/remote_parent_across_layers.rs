//! A remote parent (a `traceparent` field, recorded later, or `set_parent_traceparent`) on a
//! span under a parent one layer's filter hides, with two or three `OffloadLayer`s in either
//! order: one decision for every layer, so that the span has one trace at every destination
//! (adversary pass 64: given later, the layer that saw the parent refused and the one that
//! did not joined the remote trace).
mod support;

use support::*;
use tracing_offload::{OffloadLayer, OffloadSpanExt, SpanRecord};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::prelude::*;

const HEADER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[derive(Clone, Copy, Debug)]
enum How {
    Field,
    RecordLater,
    SetParentLater,
}

/// Layers `all` (sees everything) and `audit` (sees target audit* only; hides `worker`),
/// optionally a third `audit2` like `audit`, in either order. `message` is made inside
/// `worker` with a remote parent given as a field, later by `record`, or later by
/// `set_parent_traceparent`. README: "a span has the same trace id and span id in each";
/// "otherwise the call is refused (...) counted in `stats.reparent_refused` ... so a trace
/// never splits silently".
fn scenario(how: How, three: bool, hiding_inside: bool) {
    let all = Collect::new("all");
    let audit = Collect::new("audit");
    let audit2 = Collect::new("audit2");
    let (l_all, g_all) = OffloadLayer::builder().sink(all.clone()).build().unwrap();
    let (l_audit, g_audit) = OffloadLayer::builder().sink(audit.clone()).build().unwrap();
    let (l_audit2, g_audit2) = OffloadLayer::builder()
        .sink(audit2.clone())
        .build()
        .unwrap();
    let f = || filter_fn(|m| m.target().starts_with("audit"));
    let run = || {
        let worker = tracing::info_span!(target: "app", "worker").entered();
        let result = match how {
            How::Field => {
                let _m =
                    tracing::info_span!(target: "audit", "message", traceparent = HEADER).entered();
                tracing::info!(target: "audit", "handled");
                Ok(())
            }
            How::RecordLater => {
                let m = tracing::info_span!(
                    target: "audit",
                    "message",
                    traceparent = tracing::field::Empty
                );
                m.record("traceparent", HEADER);
                m.in_scope(|| tracing::info!(target: "audit", "handled"));
                Ok(())
            }
            How::SetParentLater => {
                let m = tracing::info_span!(target: "audit", "message");
                let r = m.set_parent_traceparent(HEADER);
                m.in_scope(|| tracing::info!(target: "audit", "handled"));
                r
            }
        };
        drop(worker);
        result
    };
    let result = match (three, hiding_inside) {
        (false, false) => tracing::subscriber::with_default(
            tracing_subscriber::registry()
                .with(l_all)
                .with(l_audit.with_filter(f())),
            run,
        ),
        (false, true) => tracing::subscriber::with_default(
            tracing_subscriber::registry()
                .with(l_audit.with_filter(f()))
                .with(l_all),
            run,
        ),
        (true, false) => tracing::subscriber::with_default(
            tracing_subscriber::registry()
                .with(l_all)
                .with(l_audit.with_filter(f()))
                .with(l_audit2.with_filter(f())),
            run,
        ),
        (true, true) => tracing::subscriber::with_default(
            tracing_subscriber::registry()
                .with(l_audit.with_filter(f()))
                .with(l_audit2.with_filter(f()))
                .with(l_all),
            run,
        ),
    };
    let h_all = g_all.handle();
    let h_audit = g_audit.handle();
    g_all.shutdown(DEADLINE).unwrap();
    g_audit.shutdown(DEADLINE).unwrap();
    g_audit2.shutdown(DEADLINE).unwrap();
    let worker = all.span("worker");
    let at_all = all.span("message");
    let at_audit = audit.span("message");
    let ids = |s: &SpanRecord| (s.trace_id(), s.span_id(), s.parent_is_remote());
    let mut sets = vec![("all", ids(&at_all)), ("audit", ids(&at_audit))];
    if three {
        sets.push(("audit2", ids(&audit2.span("message"))));
    }
    let refused = h_all.stats().reparent_refused + h_audit.stats().reparent_refused;
    let split = sets
        .iter()
        .any(|(_, s)| s.0 != sets[0].1 .0 || s.1 != sets[0].1 .1);
    assert!(
        !split,
        "{how:?} three={three} hiding_inside={hiding_inside}: one span, several ids: {sets:?}; \
         worker trace {}; set_parent answer {result:?}; reparent_refused {refused}",
        worker.trace_id()
    );
    assert_eq!(
        at_all.trace_id(),
        worker.trace_id(),
        "a local child stays local"
    );
    assert!(
        refused >= 1,
        "{how:?}: the remote parent's refusal is counted: {refused}"
    );
}

#[test]
fn field_three_layers() {
    scenario(How::Field, true, false);
}
#[test]
fn field_three_layers_reversed() {
    scenario(How::Field, true, true);
}
#[test]
fn record_later_two_layers() {
    scenario(How::RecordLater, false, false);
}
#[test]
fn record_later_two_layers_reversed() {
    scenario(How::RecordLater, false, true);
}
#[test]
fn record_later_three_layers() {
    scenario(How::RecordLater, true, false);
}
#[test]
fn set_parent_later_two_layers() {
    scenario(How::SetParentLater, false, false);
}
#[test]
fn set_parent_later_two_layers_reversed() {
    scenario(How::SetParentLater, false, true);
}

/// `traceparent()` handed out inside a span hidden at two levels (debug inside trace) for the
/// filtered layer; then a remote parent set on the recorded ancestor must be refused in both
/// layers (Propagated), and counted.
#[test]
fn traceparent_in_twice_hidden_span_marks_each_layers_ancestor() {
    use tracing_subscriber::filter::LevelFilter;
    let a = Collect::new("a");
    let b = Collect::new("b");
    let (la, ga) = OffloadLayer::builder().sink(a.clone()).build().unwrap();
    let (lb, gb) = OffloadLayer::builder().sink(b.clone()).build().unwrap();
    let (ha, hb) = (ga.handle(), gb.handle());
    let subscriber = tracing_subscriber::registry()
        .with(SeesAll)
        .with(la.with_filter(LevelFilter::INFO))
        .with(lb.with_filter(LevelFilter::DEBUG));
    let answer = tracing::subscriber::with_default(subscriber, || {
        let root = tracing::info_span!("root");
        let mid = tracing::debug_span!(parent: &root, "mid");
        let leaf = tracing::trace_span!(parent: &mid, "leaf");
        let tp = leaf.traceparent();
        assert!(tp.is_some(), "traceparent in a twice-hidden span");
        let ans = root.set_parent_traceparent(HEADER);
        drop((leaf, mid));
        ans
    });
    ga.shutdown(DEADLINE).unwrap();
    gb.shutdown(DEADLINE).unwrap();
    let ra = a.span("root");
    let rb = b.span("root");
    assert!(
        answer.is_err(),
        "root handed out a traceparent (through leaf): {answer:?}"
    );
    assert_eq!(
        (ra.trace_id(), ra.span_id()),
        (rb.trace_id(), rb.span_id()),
        "split"
    );
    assert!(!ra.parent_is_remote() && !rb.parent_is_remote());
    assert!(ha.stats().reparent_refused + hb.stats().reparent_refused >= 1);
}

/// A layer that sees every span (stands for `fmt::layer()` at trace).
struct SeesAll;
impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SeesAll {}

/// Both layers at INFO: `leaf` (debug) hidden from both, `root` has no recorded child. A
/// `traceparent()` handed out in `leaf` marks `root` in each layer; a remote parent set on
/// `root` after is refused by both (Propagated), none moves.
#[test]
fn traceparent_in_span_hidden_from_both_marks_root_in_both() {
    use tracing_subscriber::filter::LevelFilter;
    let a = Collect::new("a");
    let b = Collect::new("b");
    let (la, ga) = OffloadLayer::builder().sink(a.clone()).build().unwrap();
    let (lb, gb) = OffloadLayer::builder().sink(b.clone()).build().unwrap();
    let (ha, hb) = (ga.handle(), gb.handle());
    let subscriber = tracing_subscriber::registry()
        .with(SeesAll)
        .with(la.with_filter(LevelFilter::INFO))
        .with(lb.with_filter(LevelFilter::INFO));
    let answer = tracing::subscriber::with_default(subscriber, || {
        let root = tracing::info_span!("root");
        let mid = tracing::debug_span!(parent: &root, "mid");
        let leaf = tracing::trace_span!(parent: &mid, "leaf");
        assert!(leaf.traceparent().is_some());
        let ans = root.set_parent_traceparent(HEADER);
        drop((leaf, mid));
        ans
    });
    ga.shutdown(DEADLINE).unwrap();
    gb.shutdown(DEADLINE).unwrap();
    let ra = a.span("root");
    let rb = b.span("root");
    assert!(answer.is_err(), "{answer:?}");
    assert_eq!(
        (ra.trace_id(), ra.span_id()),
        (rb.trace_id(), rb.span_id()),
        "split"
    );
    assert!(!ra.parent_is_remote() && !rb.parent_is_remote(), "moved");
    assert_eq!(ha.stats().reparent_refused + hb.stats().reparent_refused, 2);
}
