//! A record whose capture is still running when `shutdown()` returns is not stranded in the
//! queue: it is taken back out and counted (`shutdown`), under every policy.
mod support;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use support::*;
use tracing_offload::{Backpressure, DropReason, OffloadLayer};

#[test]
fn a_record_pushed_after_shutdown_is_counted_not_stranded() {
    for policy in [
        Backpressure::DropNewest,
        Backpressure::DropOldest,
        Backpressure::Block {
            timeout: Duration::from_secs(1),
        },
    ] {
        let sink = Collect::new("collect");
        let (layer, guard) = OffloadLayer::builder()
            .backpressure(policy)
            .sink(sink.clone())
            .build()
            .unwrap();
        let dispatch = dispatch(layer);
        let inside = Arc::new(Barrier::new(2));
        let release = Arc::new(Barrier::new(2));
        let slow = Slow {
            inside: inside.clone(),
            release: release.clone(),
        };
        let producer = std::thread::spawn(move || {
            tracing::dispatcher::with_default(&dispatch, || {
                tracing::info!(value = ?slow, "late");
            })
        });
        inside.wait(); // the producer passed the `closed` check and is capturing
        let report = guard.shutdown(DEADLINE).expect("nothing was abandoned");
        assert!(report.unfinished_threads.is_empty(), "{report:?}");
        release.wait(); // now it pushes, after the drain thread has stopped
        producer.join().unwrap();
        let stats = guard.handle().stats();
        assert_eq!(stats.queue_depth, 0, "{policy}: stranded: {stats:#?}");
        assert_eq!(
            stats.dropped_for(DropReason::Shutdown),
            1,
            "{policy}: {stats:#?}"
        );
        assert_accounting(&stats, 1);
        assert_eq!(sink.count(), 0);
    }
}
