//! Block: loses nothing while the sink keeps up within the deadline; drops and counts past it.
mod support;

use std::time::Duration;

use support::*;
use tracing_offload::{Backpressure, DropReason, OffloadLayer};

#[test]
fn loses_nothing_when_the_sink_keeps_up() {
    for threads in [2usize, 8] {
        let sink = Collect::new("slow").slow(Duration::from_micros(100));
        let (layer, guard) = OffloadLayer::builder()
            .capacity(16)
            .batch_size(8)
            .backpressure(Backpressure::Block {
                timeout: Duration::from_secs(10),
            })
            .sink(sink.clone())
            .build()
            .unwrap();
        let per_thread = 2_000u64;
        produce(layer, threads as u64, per_thread);
        guard.shutdown(DEADLINE).unwrap();
        let stats = guard.handle().stats();
        assert_accounting(&stats, per_thread * threads as u64);
        assert_eq!(stats.dropped, 0, "{stats:#?}");
        assert_eq!(sink.count() as u64, per_thread * threads as u64);
    }
}

#[test]
fn a_stalled_sink_never_blocks_producers_forever_and_every_drop_is_counted() {
    let sink = Collect::new("stalled");
    sink.stall();
    let (layer, guard) = OffloadLayer::builder()
        .capacity(4)
        .batch_size(2)
        .sink_buffer_capacity(2)
        .backpressure(Backpressure::Block {
            timeout: Duration::from_millis(20),
        })
        .sink(sink.clone())
        .build()
        .unwrap();
    with_layer(layer, || {
        for seq in 0..200u64 {
            tracing::info!(producer = 0u64, seq, "tick");
        }
    });
    let stats = guard.handle().stats();
    let sink_full = stats.sinks[0].dropped_for(DropReason::SinkBufferFull);
    assert!(
        sink_full + stats.dropped_for(DropReason::BlockTimeout) > 0,
        "{stats:#?}"
    );
    sink.release();
    guard.shutdown(DEADLINE).unwrap();
    assert_accounting(&guard.handle().stats(), 200);
}
