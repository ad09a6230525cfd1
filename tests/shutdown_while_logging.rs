//! Shutdown finishes within its deadline while the application keeps logging: records offered
//! after it began are counted, and make no new drop markers once the sinks are stopping.
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tracing_offload::{DropReason, OffloadLayer};

#[test]
fn shutdown_holds_its_deadline_with_producers_still_running() {
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder().sink(sink.clone()).build().unwrap();
    let dispatch = dispatch(layer);
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..8u64)
        .map(|producer| {
            let (dispatch, stop) = (dispatch.clone(), stop.clone());
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    let mut seq = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        tracing::info!(producer, seq, "tick");
                        seq += 1;
                    }
                })
            })
        })
        .collect();
    let handle = guard.handle();
    wait_until("the producers to get going", DEADLINE, || {
        handle.stats().enqueued > 10_000
    });
    let report = guard
        .shutdown(Duration::from_secs(2))
        .expect("shutdown finishes while producers keep logging");
    assert!(report.unfinished_threads.is_empty(), "{report:?}");
    let markers_at_shutdown = sink.markers().len();
    // Producers go on: every record is now dropped (counted as `shutdown`)...
    let dropped_then = handle.stats().dropped_for(DropReason::Shutdown);
    wait_until("more records offered after shutdown", DEADLINE, || {
        handle.stats().dropped_for(DropReason::Shutdown) > dropped_then + 10_000
    });
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.join().unwrap();
    }
    // ...and no marker is written for them: the sink thread has stopped.
    assert_eq!(sink.markers().len(), markers_at_shutdown);
    let stats = handle.stats();
    assert_eq!(
        stats.offered,
        stats.enqueued + stats.dropped + stats.sampled_out
    );
    assert_eq!(stats.queue_depth, 0, "{stats:#?}");
}
