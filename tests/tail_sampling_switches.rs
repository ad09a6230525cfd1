//! A switch of tail sampling applies to the records offered after it, in the order of the
//! switches, however late the drain thread comes to them: it used to read only the newest
//! settings, when it processed a record. Two switches that landed while it processed nothing
//! (a stalled sink, a backlog in the queue) were seen as one, and records offered before a
//! switch were judged by it (adversary pass 28). Each test holds the drain thread back with a
//! stalled sink, without sleeps.
mod support;

use std::time::Duration;
use support::*;
use tracing_offload::{OffloadLayer, TailSampling};

fn pipeline(
    tail: Option<TailSampling>,
) -> (
    Collect,
    tracing_offload::OffloadLayer,
    tracing_offload::Guard,
) {
    let sink = Collect::new("collect");
    let mut b = OffloadLayer::builder()
        .sink(sink.clone())
        .sink_buffer_capacity(1)
        .sink_stall_after(Duration::MAX) // the stalled sink holds the drain back
        .flush_interval(Duration::from_secs(3600));
    if let Some(t) = tail {
        b = b.tail_sampling(t);
    }
    let (layer, guard) = b.build().unwrap();
    (sink, layer, guard)
}

/// Stalls the sink and fills its buffer, so that the drain thread takes nothing more from the
/// queue until `sink.release()`.
fn hold_the_drain(sink: &Collect, handle: &tracing_offload::Handle) {
    sink.stall();
    tracing::info!("filler 1"); // taken by the sink thread, whose export blocks
    wait_until("the sink's export under way", DEADLINE, || {
        handle.stats().sinks[0].forwarded == 1 && handle.stats().sinks[0].buffered == 0
    });
    tracing::info!("filler 2"); // fills the one-record buffer
    wait_until("the sink's buffer full", DEADLINE, || {
        handle.stats().sinks[0].buffered == 1
    });
}

/// Built with `start`, with the drain thread held back: switches to `first`, makes a trace
/// named `name` (a root, a child, an event), switches to `second`, then lets the drain thread
/// go. What the sink got, and the stats.
fn trace_between_two_switches(
    start: Option<TailSampling>,
    first: Option<TailSampling>,
    second: Option<TailSampling>,
    name: &'static str,
) -> (Vec<&'static str>, tracing_offload::Stats) {
    let (sink, layer, guard) = pipeline(start);
    let handle = guard.handle();
    with_layer(layer, || {
        hold_the_drain(&sink, &handle);
        handle.set_tail_sampling(first).unwrap();
        tracing::info_span!("root", name).in_scope(|| {
            tracing::info_span!("its child").in_scope(|| tracing::info!("its event"));
        });
        handle.set_tail_sampling(second).unwrap();
        sink.release();
        handle.flush(DEADLINE).unwrap();
    });
    guard.shutdown(DEADLINE).unwrap();
    let stats = guard.handle().stats();
    (names_sorted(&sink.data()), stats)
}

#[test]
fn a_trace_made_while_tail_sampling_was_off_is_not_sampled_by_a_later_switch_on() {
    let drop_all = Some(TailSampling::new().keep_ratio(0.0));
    let (names, stats) = trace_between_two_switches(drop_all, None, drop_all, "made while off");
    // The events: filler 1, filler 2, the trace's.
    assert_eq!(
        names,
        ["event", "event", "event", "its child", "root"],
        "{:#?}",
        stats.tail_sampling
    );
    assert_eq!(stats.tail_sampling.sampled_out, 0, "{stats:#?}");
    assert_accounting(&stats, 5);
}

#[test]
fn a_trace_made_while_tail_sampling_was_on_is_sampled_though_switched_off_later() {
    let drop_all = Some(TailSampling::new().keep_ratio(0.0));
    let (names, stats) = trace_between_two_switches(None, drop_all, None, "made while on");
    // Only the fillers: the trace made while drop-all was in force is dropped.
    assert_eq!(names, ["event", "event"], "{:#?}", stats.tail_sampling);
    assert_eq!(stats.tail_sampling.sampled_out, 3, "{stats:#?}");
    assert_eq!(stats.tail_sampling.traces_dropped, 1, "{stats:#?}");
    assert_accounting(&stats, 5);
}
