//! A guard dropped on one of its pipeline's own threads (a sink that owns it and drops it in
//! `export`) cannot wait for the pipeline to shut down, since it would wait for itself: the
//! shutdown was refused, the pipeline was left running with nobody to stop it, and the line
//! on stderr blamed a flush or shutdown never called (adversary pass 32). The pipeline is now
//! told to stop, and finishes on its own.
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
