//! Turning tail sampling on at run time keeps traces whole: a local trace already under way
//! (its local root started before the switch, so some of its records may have been written
//! already) is written whole, not tail-sampled; traces that start after the switch are. Such a
//! trace used to lose its root (dropped by the new rules) after its children had been
//! written: a fragment with no root.
mod support;

use support::*;
use tracing_offload::{OffloadLayer, TailSampling};

#[test]
fn a_trace_under_way_when_tail_sampling_is_turned_on_is_written_whole() {
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder().sink(sink.clone()).build().unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        let root = tracing::info_span!("root");
        root.in_scope(|| {
            tracing::info_span!("child").in_scope(|| tracing::info!("step"));
        });
        handle.flush(DEADLINE).unwrap(); // the child and its event are written
                                         // No criterion: every trace that starts from now on is dropped.
        handle.set_tail_sampling(Some(TailSampling::new())).unwrap();
        root.in_scope(|| tracing::info_span!("late child").in_scope(|| {}));
        drop(root);
        let after = tracing::info_span!("after");
        after.in_scope(|| tracing::info_span!("after child").in_scope(|| {}));
        drop(after);
    });
    guard.shutdown(DEADLINE).unwrap();
    let data = sink.data();
    assert_eq!(
        names_sorted(&data),
        ["child", "event", "late child", "root"],
        "the trace under way whole, the later one dropped"
    );
    let stats = guard.handle().stats();
    assert_eq!(stats.tail_sampling.traces_dropped, 1, "{stats:#?}");
    assert_accounting(&stats, 6);
}

/// How the decision on the trace under way is forced before its root closes.
#[derive(Clone, Copy)]
enum Forced {
    /// Its root stays open past `decision_wait`.
    DecisionWait,
    /// Another trace needs the one place in the buffer.
    BufferFull,
    /// The pipeline shuts down first.
    Shutdown,
}

/// A trace under way at the switch whose decision is forced before its root closes, with the
/// only records held of it from after the switch: it was judged by them, found new, and
/// dropped by the new rules after its first child had been written (a fragment; adversary pass
/// 28). Its local root's start decides.
fn trace_under_way_forced(forced: Forced) -> (Vec<&'static str>, tracing_offload::Stats) {
    use std::time::Duration;
    use tracing_offload::ForcedDecision;
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder().sink(sink.clone()).build().unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        let root = tracing::info_span!("root");
        root.in_scope(|| tracing::info_span!("early child").in_scope(|| {}));
        handle.flush(DEADLINE).unwrap(); // "early child" is written
        let tail = match forced {
            Forced::DecisionWait => TailSampling::new().decision_wait(Duration::from_millis(1)),
            Forced::BufferFull => TailSampling::new().max_buffered_spans(1),
            Forced::Shutdown => TailSampling::new(),
        };
        // No criterion: every trace that starts from now on is dropped.
        handle.set_tail_sampling(Some(tail)).unwrap();
        root.in_scope(|| {
            tracing::info_span!("late child").in_scope(|| {});
            tracing::error!("late error");
        });
        match forced {
            // The trace under way is not tail-sampled: its decision is no forced one
            // (`forced_by_reason`), but what it held is released then.
            Forced::DecisionWait => {
                handle.flush(DEADLINE).unwrap();
                wait_until(
                    "the late child, released after decision_wait",
                    DEADLINE,
                    || names_sorted(&sink.data()).contains(&"late child"),
                );
            }
            Forced::BufferFull => {
                tracing::info_span!("other root")
                    .in_scope(|| tracing::info_span!("other child").in_scope(|| {}));
                handle.flush(DEADLINE).unwrap();
                let tail = handle.stats().tail_sampling;
                assert_eq!(tail.forced_for(ForcedDecision::BufferFull), 0, "{tail:#?}");
            }
            Forced::Shutdown => {
                guard.shutdown(DEADLINE).unwrap();
                let tail = handle.stats().tail_sampling;
                assert_eq!(tail.forced_for(ForcedDecision::Shutdown), 0, "{tail:#?}");
            }
        }
        drop(root);
    });
    guard.shutdown(DEADLINE).unwrap();
    let data = sink.data();
    let names = names_sorted(&data)
        .into_iter()
        .filter(|n| !n.starts_with("other"))
        .collect();
    (names, guard.handle().stats())
}

#[test]
fn a_trace_under_way_decided_after_decision_wait_is_written_whole() {
    let (names, stats) = trace_under_way_forced(Forced::DecisionWait);
    assert_eq!(
        names,
        ["early child", "event", "late child", "root"],
        "{:#?}",
        stats.tail_sampling
    );
    assert_eq!(stats.tail_sampling.traces_dropped, 0, "{stats:#?}");
}

#[test]
fn a_trace_under_way_decided_for_room_is_written_whole() {
    let (names, stats) = trace_under_way_forced(Forced::BufferFull);
    assert_eq!(
        names,
        ["early child", "event", "late child", "root"],
        "{:#?}",
        stats.tail_sampling
    );
    // The other trace, new, is dropped.
    assert_eq!(stats.tail_sampling.traces_dropped, 1, "{stats:#?}");
}

#[test]
fn a_trace_under_way_decided_at_shutdown_keeps_what_it_held() {
    let (names, stats) = trace_under_way_forced(Forced::Shutdown);
    // The root closes after shutdown: counted as such, not written.
    assert_eq!(
        names,
        ["early child", "event", "late child"],
        "{:#?}",
        stats.tail_sampling
    );
    assert_eq!(stats.tail_sampling.traces_dropped, 0, "{stats:#?}");
}
