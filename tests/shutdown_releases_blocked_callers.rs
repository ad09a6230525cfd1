//! A caller waiting for room under `Block` is let go by shutdown: its record is dropped and
//! counted (`shutdown`) instead of waiting out its whole timeout. With `Duration::MAX` ("never
//! gives up") and a sink that never moves, a caller used to stay blocked for ever after
//! `shutdown()` had returned.
mod support;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use support::*;
use tracing_offload::{Backpressure, DropReason, OffloadLayer};

/// Callers waiting for room at once. When the shutdown's deadline emptied the queue, the first
/// of them to look took the room again, and the drain thread, with a full queue and a sink
/// that does not move, never finished: the others waited for ever.
const CALLERS: usize = 8;

#[test]
fn shutdown_lets_callers_blocked_for_room_go() {
    let sink = Collect::new("stalled");
    sink.stall(); // never finishes an export until the end of the test
    let (layer, guard) = OffloadLayer::builder()
        .capacity(1)
        .batch_size(1)
        .sink_buffer_capacity(1)
        .backpressure(Backpressure::Block {
            timeout: Duration::MAX,
        })
        .sink(sink.clone())
        .build()
        .unwrap();
    let handle = guard.handle();
    let dispatch = dispatch(layer);
    let sink_stats = || handle.stats().sinks[0].clone();
    // Fill the sink: one record in its (stalled) export, one in its buffer.
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("in the export"));
    wait_until("the sink's export to start", DEADLINE, || {
        sink_stats().export_in_progress_for.is_some()
    });
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("in the sink's buffer"));
    wait_until("the sink's buffer to fill", DEADLINE, || {
        sink_stats().buffered == 1
    });
    // The callers get past the room check and capture; meanwhile the queue fills, so they
    // then wait for room, with a deadline that never passes.
    let inside = Arc::new(Barrier::new(CALLERS + 1));
    let release = Arc::new(Barrier::new(CALLERS + 1));
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let dispatch = dispatch.clone();
            let slow = Slow {
                inside: inside.clone(),
                release: release.clone(),
            };
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    tracing::info!(value = ?slow, "blocked");
                })
            })
        })
        .collect();
    inside.wait();
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("in the queue"));
    assert_eq!(handle.stats().queue_depth, 1);
    release.wait();
    // Nothing can be written: the shutdown's short deadline passes and abandons what is left.
    let _ = guard.shutdown(Duration::from_millis(50));
    wait_until(
        "the blocked callers to return after shutdown",
        DEADLINE,
        || callers.iter().all(|c| c.is_finished()),
    );
    for c in callers {
        c.join().unwrap();
    }
    let stats = handle.stats();
    assert_accounting(&stats, CALLERS as u64 + 3);
    assert_eq!(stats.queue_depth, 0, "stranded in the queue: {stats:#?}");
    assert_eq!(
        stats.dropped_for(DropReason::Shutdown),
        CALLERS as u64,
        "the blocked callers' records: {stats:#?}"
    );
    sink.release();
}
