//! A guard dropped on one of its pipeline's own threads (a sink that owns it and drops it in
//! `export`) cannot wait for the pipeline to shut down, since it would wait for itself: the
//! shutdown was refused, the pipeline was left running with nobody to stop it, and the line
//! on stderr blamed a flush or shutdown never called (adversary pass 32). A thread of its own
//! now shuts the pipeline down, with the guard's drop timeout.
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;
use tracing_offload::sink::{Sink, SinkError};
use tracing_offload::{DropReason, Guard, OffloadLayer, Record};

/// A sink that owns the pipeline's guard and drops it in its first export.
struct DropsTheGuard(Arc<Mutex<Option<Guard>>>);

impl Sink for DropsTheGuard {
    fn name(&self) -> &str {
        "drops-the-guard"
    }
    fn export(&mut self, _batch: &[Record]) -> Result<(), SinkError> {
        drop(self.0.lock().unwrap().take());
        Ok(())
    }
}

#[test]
fn a_guard_dropped_in_a_sink_stops_its_pipeline() {
    let slot = Arc::new(Mutex::new(None));
    let (layer, guard) = OffloadLayer::builder()
        .sink(DropsTheGuard(slot.clone()))
        .build()
        .unwrap();
    let handle = guard.handle();
    *slot.lock().unwrap() = Some(guard);
    let dispatch = tracing::Dispatch::new({
        use tracing_subscriber::prelude::*;
        tracing_subscriber::registry().with(layer)
    });
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("first"));
    wait_until("the guard's drop", DEADLINE, || {
        slot.lock().unwrap().is_none()
    });
    wait_until("the pipeline's end", DEADLINE, || !handle.is_running());
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("after the guard's drop"));
    let stats = handle.stats();
    assert_eq!(stats.sinks[0].exported, 1, "{stats:#?}");
    assert_eq!(stats.dropped_for(DropReason::Shutdown), 1, "{stats:#?}");
    assert_accounting(&stats, 2);
    let report = handle
        .shutdown(Duration::from_secs(5))
        .expect("nothing left to abandon");
    assert!(report.abandoned.is_empty(), "{report:?}");
}

/// A slow sink (each export 100 ms, simulated slow I/O) that owns the guard and drops it in its
/// first export, with 30 records behind that one.
struct SlowAndDropsTheGuard(Arc<Mutex<Option<Guard>>>);

impl Sink for SlowAndDropsTheGuard {
    fn name(&self) -> &str {
        "slow"
    }
    fn export(&mut self, _batch: &[Record]) -> Result<(), SinkError> {
        drop(self.0.lock().unwrap().take());
        std::thread::sleep(Duration::from_millis(100)); // simulated slow I/O
        Ok(())
    }
}

/// The drop timeout holds for a guard dropped in a sink: told to stop without anyone waiting,
/// the pipeline wrote all 30 records, three seconds past a drop timeout of 100 ms (adversary
/// pass 33). What the deadline cuts off is counted `shutdown_deadline`.
#[test]
fn a_guard_dropped_in_a_sink_keeps_its_drop_timeout() {
    let slot = Arc::new(Mutex::new(None));
    let (layer, guard) = OffloadLayer::builder()
        .batch_size(1)
        .drop_timeout(Duration::from_millis(100))
        .sink(SlowAndDropsTheGuard(slot.clone()))
        .build()
        .unwrap();
    let handle = guard.handle();
    *slot.lock().unwrap() = Some(guard);
    let dispatch = tracing::Dispatch::new({
        use tracing_subscriber::prelude::*;
        tracing_subscriber::registry().with(layer)
    });
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..31 {
            tracing::info!(i, "record");
        }
    });
    wait_until("the pipeline's end", DEADLINE, || !handle.is_running());
    wait_until("the sink's last export", DEADLINE, || {
        let s = handle.stats();
        s.sinks[0].completed() == s.sinks[0].forwarded
    });
    let stats = handle.stats();
    assert_accounting(&stats, 31);
    let cut = stats.dropped_for(DropReason::ShutdownDeadline)
        + stats.sinks[0].dropped_for(DropReason::ShutdownDeadline);
    // The first export, and at most the one under way at the deadline.
    assert!(stats.sinks[0].exported <= 3, "{stats:#?}");
    assert_eq!(stats.sinks[0].exported + cut, 31, "{stats:#?}");
}
