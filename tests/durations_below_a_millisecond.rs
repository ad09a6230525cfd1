//! Adversary pass 65: durations given in code are kept in whole milliseconds, rounded down, so
//! a sub-millisecond one becomes zero. The README's configuration table says the critical
//! block timeout and the drop timeout take "any" value and that "durations set in code take any
//! value"; `critical_block_timeout(900 µs)` makes critical records wait not at all (dropped at
//! once, `block_timeout`), and `Config` shows `0` for a `Block { timeout: 900 µs }` that is in
//! force (the stall time, fixed in pass 53, is shown rounded up for the same reason).
mod support;

use std::time::{Duration, Instant};

use support::*;
use tracing_offload::{Backpressure, DropReason, OffloadLayer};

#[test]
fn a_critical_record_waits_the_sub_millisecond_timeout_it_was_given() {
    let timeout = Duration::from_micros(900);
    let sink = Collect::new("stalled");
    sink.stall();
    let (layer, guard) = OffloadLayer::builder()
        .capacity(1)
        .sink_buffer_capacity(1)
        .critical_block_timeout(timeout)
        .sink(sink.clone())
        .build()
        .unwrap();
    let handle = guard.handle();
    let _release = ReleaseOnDrop(sink.clone());
    let dispatch = dispatch(layer);
    tracing::dispatcher::with_default(&dispatch, || {
        // Fill the sink's export, its buffer and the queue: nothing moves while it is stalled.
        wait_until("the queue to be full", DEADLINE, || {
            tracing::info!("filler");
            handle.stats().dropped_for(DropReason::QueueFullNewest) > 0
        });
        let started = Instant::now();
        tracing::error!(critical = true, "the critical record");
        let waited = started.elapsed();
        let gave_up = handle.stats().dropped_for(DropReason::BlockTimeout) == 1;
        // The fault is giving up before the timeout: a record that found room (the drain
        // thread may drop the queued filler at the stalled sink's full buffer) is fine, and so
        // is one dropped after waiting its 900 µs.
        assert!(
            !(gave_up && waited < timeout),
            "a critical record given {timeout:?} to wait for room gave up after {waited:?} \
             (dropped, block_timeout); the config shows critical_block_timeout_ms = {}",
            handle.config().critical_block_timeout_ms.value
        );
    });
}

#[test]
fn the_config_does_not_show_a_sub_millisecond_block_timeout_as_zero() {
    let (_layer, guard) = OffloadLayer::builder()
        .backpressure(Backpressure::Block {
            timeout: Duration::from_micros(900),
        })
        .critical_block_timeout(Duration::from_micros(900))
        .drop_timeout(Duration::from_micros(900))
        .sink(Collect::new("c"))
        .build()
        .unwrap();
    let c = guard.handle().config();
    assert_ne!(
        c.block_timeout_ms.value, 0,
        "Block {{ timeout: 900µs }} is in force, /config says 0 ms (no wait)"
    );
    assert_ne!(
        c.critical_block_timeout_ms.value, 0,
        "critical block timeout of 900µs shown as 0 ms"
    );
    assert_ne!(
        c.drop_timeout_ms.value, 0,
        "drop timeout of 900µs shown as 0 ms"
    );
}
