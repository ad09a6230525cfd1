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

#[test]
fn a_trace_made_while_tail_sampling_was_off_is_not_sampled_by_a_later_switch_on() {
    let drop_all = TailSampling::new().keep_ratio(0.0);
    let (sink, layer, guard) = pipeline(Some(drop_all));
    let handle = guard.handle();
    with_layer(layer, || {
        hold_the_drain(&sink, &handle);
        handle.set_tail_sampling(None).unwrap();
        // Made, and closed, while tail sampling is off.
        tracing::info_span!("made while off").in_scope(|| {
            tracing::info_span!("its child").in_scope(|| tracing::info!("its event"));
        });
        handle.set_tail_sampling(Some(drop_all)).unwrap();
        sink.release();
        handle.flush(DEADLINE).unwrap();
    });
    guard.shutdown(DEADLINE).unwrap();
    let stats = guard.handle().stats();
    let names = names_sorted(&sink.data());
    eprintln!("file: {names:?}\ntail: {:#?}", stats.tail_sampling);
    assert_eq!(
        names,
        ["event", "event", "event", "its child", "made while off"],
        "the trace offered while tail sampling was off (events: filler 1, filler 2, its event)"
    );
}

#[test]
fn a_trace_made_while_tail_sampling_was_on_is_sampled_though_switched_off_later() {
    let drop_all = TailSampling::new().keep_ratio(0.0);
    let (sink, layer, guard) = pipeline(None);
    let handle = guard.handle();
    with_layer(layer, || {
        hold_the_drain(&sink, &handle);
        handle.set_tail_sampling(Some(drop_all)).unwrap();
        // Made, and closed, while tail sampling drops every new trace.
        tracing::info_span!("made while on").in_scope(|| {
            tracing::info_span!("its child").in_scope(|| tracing::info!("its event"));
        });
        handle.set_tail_sampling(None).unwrap();
        sink.release();
        handle.flush(DEADLINE).unwrap();
    });
    guard.shutdown(DEADLINE).unwrap();
    let stats = guard.handle().stats();
    let names = names_sorted(&sink.data());
    eprintln!("file: {names:?}\ntail: {:#?}", stats.tail_sampling);
    assert_eq!(
        names,
        ["event", "event"],
        "only the two fillers: the trace made while drop-all was in force is dropped"
    );
}
