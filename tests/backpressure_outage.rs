//! A sink outage: the queue is the buffer. Under `Block` nothing more is lost than under the
//! default policy in the same outage, and no policy drops at a sink while the queue has room.
mod support;

use std::time::Duration;

use support::*;
use tracing_offload::{Backpressure, DropReason, OffloadLayer, Stats};

/// A stalled sink while `n` events are offered into a queue that holds them all, then release.
fn outage(policy: Backpressure, n: u64) -> Stats {
    let sink = Collect::new("collect");
    sink.stall();
    let (layer, guard) = OffloadLayer::builder()
        .capacity(65_536)
        .sink_buffer_capacity(1_024)
        .backpressure(policy)
        .sink(sink.clone())
        .build()
        .unwrap();
    with_layer(layer, || {
        for seq in 0..n {
            tracing::info!(producer = 0u64, seq, "tick");
        }
    });
    sink.release();
    guard.shutdown(DEADLINE).unwrap();
    let stats = guard.handle().stats();
    assert_accounting(&stats, n);
    assert_eq!(sink.count() as u64, stats.sinks[0].exported);
    stats
}

#[test]
fn block_loses_no_more_than_the_default_in_the_same_outage() {
    let n = 50_000;
    let default = outage(Backpressure::DropNewest, n);
    let block = outage(
        Backpressure::Block {
            timeout: Duration::from_millis(100),
        },
        n,
    );
    let lost = |s: &Stats| s.dropped + s.sinks[0].dropped;
    // The queue holds the whole outage: neither loses anything.
    assert_eq!(lost(&default), 0, "{default:#?}");
    assert_eq!(lost(&block), 0, "{block:#?}");
}

#[test]
fn records_stay_queued_rather_than_dropped_at_a_sink_with_too_little_room() {
    let sink = Collect::new("collect");
    sink.stall();
    let (layer, guard) = OffloadLayer::builder()
        .capacity(10_000)
        .batch_size(1_024)
        .sink_buffer_capacity(64)
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
    let stats = guard.handle().stats();
    assert_accounting(&stats, 1_000);
    assert_eq!(
        stats.sinks[0].dropped_for(DropReason::SinkBufferFull),
        0,
        "{stats:#?}"
    );
    assert_eq!(sink.count(), 1_000);
}
