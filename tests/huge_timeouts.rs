//! `Duration::MAX` (or any timeout too large to add to the clock) is a deadline that never
//! passes, not a panic: in `Block`, in `flush`, in `shutdown`, for the critical path and for the
//! drain's wait on a stalled sink.
mod support;

use std::time::Duration;

use support::*;
use tracing_offload::{Backpressure, OffloadLayer};

#[test]
fn block_flush_and_shutdown_take_duration_max() {
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder()
        .capacity(4)
        .batch_size(2)
        .sink_buffer_capacity(2)
        .backpressure(Backpressure::Block {
            timeout: Duration::MAX,
        })
        .critical_block_timeout(Duration::MAX)
        .drop_timeout(Duration::MAX)
        .sink(sink.clone())
        .build()
        .unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        // More than the queue and the sink buffer hold: producers wait (and the drain waits
        // on the sink) with a saturated deadline.
        for seq in 0..100u64 {
            tracing::info!(producer = 0u64, seq, "tick");
        }
        tracing::error!(critical = true, "critical");
    });
    handle.flush(Duration::MAX).unwrap();
    guard.shutdown(Duration::MAX).unwrap();
    assert_eq!(sink.count(), 101);
    assert_accounting(&handle.stats(), 101);
}
