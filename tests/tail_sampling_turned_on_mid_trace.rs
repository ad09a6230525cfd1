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
