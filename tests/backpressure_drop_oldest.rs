//! DropOldest: the newest records survive, evictions are counted, accounting is exact.
mod support;

use std::time::Duration;

use support::*;
use tracing_offload::{Backpressure, DropReason, OffloadLayer};

#[test]
fn keeps_the_newest_records_and_counts_evictions() {
    for threads in [2u64, 8] {
        let per_thread = 5_000;
        let (stats, kept) = flood_from_producers(
            Backpressure::DropOldest,
            Duration::from_micros(300),
            threads,
            per_thread,
        );
        assert!(
            stats.dropped_for(DropReason::QueueFullOldest) > 0,
            "{stats:#?}"
        );
        // The newest record of all (some producer's last) is never evicted.
        let seqs = seqs_by_producer(&kept, threads);
        assert!(
            seqs.iter().any(|s| s.last() == Some(&(per_thread - 1))),
            "the newest record was evicted"
        );
        // What survives of each producer is in order.
        assert_each_producer_in_order(&kept, threads);
    }
}

/// One producer emits `records` ticks into a queue and a stalled sink's buffer of `room`
/// records each; then the sink is released and the pipeline shut down.
fn overflow_a_stalled_sink(room: usize, records: u64) -> (Collect, tracing_offload::Stats) {
    let sink = Collect::new("collect");
    sink.stall();
    let (layer, guard) = OffloadLayer::builder()
        .capacity(room)
        .sink_buffer_capacity(room)
        .backpressure(Backpressure::DropOldest)
        .sink(sink.clone())
        .build()
        .unwrap();
    with_layer(layer, || {
        for seq in 0..records {
            tracing::info!(producer = 0u64, seq, "tick");
        }
    });
    sink.release();
    guard.shutdown(DEADLINE).unwrap();
    let stats = guard.handle().stats();
    assert_accounting(&stats, records);
    (sink, stats)
}

#[test]
fn a_single_producer_keeps_its_last_records() {
    let (sink, _) = overflow_a_stalled_sink(8, 1_000);
    let seqs = seqs_by_producer(&sink.data(), 1).remove(0);
    assert!(seqs.len() >= 8, "{seqs:?}");
    let tail: Vec<u64> = (1_000 - 8..1_000).collect();
    assert_eq!(
        seqs[seqs.len() - 8..],
        tail[..],
        "the newest 8 must survive: {seqs:?}"
    );
}

#[test]
fn evictions_leave_an_in_band_marker() {
    let (sink, stats) = overflow_a_stalled_sink(4, 100);
    let reported: u64 = sink
        .markers()
        .iter()
        .map(|m| match m {
            tracing_offload::Record::Dropped(d) => d.total(),
            _ => 0,
        })
        .sum();
    let total_drops = stats.dropped + stats.sinks[0].dropped;
    assert!(total_drops > 0);
    assert_eq!(
        reported, total_drops,
        "markers must report every drop: {stats:#?}"
    );
}
