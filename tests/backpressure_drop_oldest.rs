//! DropOldest: the newest records survive, evictions are counted, accounting is exact.
mod support;

use std::time::Duration;

use support::*;
use tracing_offload::{Backpressure, DropReason, OffloadLayer};

#[test]
fn keeps_the_newest_records_and_counts_evictions() {
    for threads in [2usize, 8] {
        let sink = Collect::new("slow").slow(Duration::from_micros(300));
        let (layer, guard) = OffloadLayer::builder()
            .capacity(16)
            .batch_size(8)
            .backpressure(Backpressure::DropOldest)
            .sink(sink.clone())
            .build()
            .unwrap();
        let per_thread = 5_000u64;
        produce(layer, threads as u64, per_thread);
        guard.shutdown(DEADLINE).unwrap();
        let stats = guard.handle().stats();
        assert_accounting(&stats, per_thread * threads as u64);
        assert!(
            stats.dropped_for(DropReason::QueueFullOldest) > 0,
            "{stats:#?}"
        );
        let kept = sink.data();
        assert_eq!(
            kept.len() as u64,
            stats.sinks[0].exported,
            "the sink got what was counted exported"
        );
        // The newest record of all (some producer's last) is never evicted.
        assert!(
            (0..threads as u64).any(|p| kept
                .iter()
                .filter_map(seq_of)
                .any(|r| r == (p, per_thread - 1))),
            "the newest record was evicted"
        );
        // What survives of each producer is in order and ends with its newest records.
        for producer in 0..threads as u64 {
            let seqs: Vec<u64> = kept
                .iter()
                .filter_map(seq_of)
                .filter(|(p, _)| *p == producer)
                .map(|(_, s)| s)
                .collect();
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "producer {producer} out of order"
            );
        }
    }
}

#[test]
fn a_single_producer_keeps_its_last_records() {
    let sink = Collect::new("collect");
    sink.stall();
    let (layer, guard) = OffloadLayer::builder()
        .capacity(8)
        .sink_buffer_capacity(8)
        .backpressure(Backpressure::DropOldest)
        .sink(sink.clone())
        .build()
        .unwrap();
    with_layer(layer, || {
        for seq in 0..1_000u64 {
            tracing::info!(producer = 0u64, seq, "tick");
        }
    });
    sink.release();
    guard.shutdown(DEADLINE).unwrap();
    let seqs: Vec<u64> = sink
        .data()
        .iter()
        .filter_map(seq_of)
        .map(|(_, s)| s)
        .collect();
    assert!(seqs.len() >= 8, "{seqs:?}");
    let tail: Vec<u64> = (1_000 - 8..1_000).collect();
    assert_eq!(
        seqs[seqs.len() - 8..],
        tail[..],
        "the newest 8 must survive: {seqs:?}"
    );
    assert_accounting(&guard.handle().stats(), 1_000);
}

#[test]
fn evictions_leave_an_in_band_marker() {
    let sink = Collect::new("collect");
    sink.stall();
    let (layer, guard) = OffloadLayer::builder()
        .capacity(4)
        .sink_buffer_capacity(4)
        .backpressure(Backpressure::DropOldest)
        .sink(sink.clone())
        .build()
        .unwrap();
    with_layer(layer, || {
        for seq in 0..100u64 {
            tracing::info!(producer = 0u64, seq, "tick");
        }
    });
    sink.release();
    guard.shutdown(DEADLINE).unwrap();
    let stats = guard.handle().stats();
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
