//! `Handle::flush` and `shutdown` called from inside a sink (its `export` runs on the
//! pipeline's own thread) would wait for that very thread: they return at once with
//! `FlushError::OnPipelineThread` instead of burning their whole timeout, or, with
//! `Duration::MAX`, holding the sink until shutdown gives up on it.
mod support;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use support::*;
use tracing_offload::sink::{Sink, SinkError};
use tracing_offload::{FlushError, Guard, Handle, OffloadLayer, Record};

type Outcomes = Arc<Mutex<Vec<(&'static str, Result<(), FlushError>, Duration)>>>;

struct Reentrant {
    handle: Arc<OnceLock<Handle>>,
    outcomes: Outcomes,
}

impl Sink for Reentrant {
    fn name(&self) -> &str {
        "reentrant"
    }
    fn export(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        let Some(handle) = self.handle.get() else {
            return Ok(());
        };
        for record in batch {
            let Record::Event(e) = record else { continue };
            let started = Instant::now();
            let (what, result) = match e.message().map(|m| m.to_string()).as_deref() {
                Some("flush") => ("flush", handle.flush(Duration::MAX)),
                Some("shutdown") => ("shutdown", handle.shutdown(Duration::MAX).map(drop)),
                _ => continue,
            };
            self.outcomes
                .lock()
                .unwrap()
                .push((what, result, started.elapsed()));
        }
        Ok(())
    }
}

/// A pipeline whose sink flushes or shuts down the pipeline whose handle is put in the slot
/// (on the events `flush` and `shutdown`), and notes how that went.
fn reentrant_pipeline() -> (OffloadLayer, Guard, Arc<OnceLock<Handle>>, Outcomes) {
    let handle_slot = Arc::new(OnceLock::new());
    let outcomes: Outcomes = Arc::default();
    let (layer, guard) = OffloadLayer::builder()
        .sink(Reentrant {
            handle: Arc::clone(&handle_slot),
            outcomes: Arc::clone(&outcomes),
        })
        .build()
        .unwrap();
    (layer, guard, handle_slot, outcomes)
}

#[test]
fn flush_and_shutdown_from_inside_a_sink_return_at_once() {
    let (layer, guard, handle_slot, outcomes) = reentrant_pipeline();
    let handle = guard.handle();
    let _ = handle_slot.set(handle.clone());
    with_layer(layer, || {
        tracing::info!("flush");
        tracing::info!("shutdown");
        tracing::info!("after");
    });
    // From the application's thread, flushing works as ever.
    handle.flush(DEADLINE).unwrap();
    let seen = outcomes.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for (what, result, took) in &seen {
        assert_eq!(*result, Err(FlushError::OnPipelineThread), "{what}");
        assert!(*took < Duration::from_secs(1), "{what} waited {took:?}");
    }
    // The refused shutdown did not shut anything down; the real one finishes cleanly.
    assert!(handle.is_running());
    let report = guard.shutdown(DEADLINE).unwrap();
    assert!(report.abandoned.total() == 0, "{report:?}");
    let sink = handle.stats();
    let sink = sink.sink("reentrant").unwrap();
    assert_eq!((sink.exported, sink.failed), (3, 0));
}

/// Another pipeline's thread is not this one's: a sink of pipeline A may flush and shut down
/// pipeline B (a guard kept by a sink, dropped with it), which waits for nothing of A's.
#[test]
fn a_sink_may_flush_and_shut_down_another_pipeline() {
    let (inner_layer, inner_guard) = OffloadLayer::builder()
        .sink(Collect::new("inner"))
        .build()
        .unwrap();
    let inner = inner_guard.handle();
    with_layer(inner_layer, || {
        tracing::info!("queued in the inner pipeline")
    });
    let (layer, guard, handle_slot, outcomes) = reentrant_pipeline();
    // The outer pipeline's sink acts on the inner pipeline.
    let _ = handle_slot.set(inner.clone());
    with_layer(layer, || {
        tracing::info!("flush");
        tracing::info!("shutdown");
    });
    guard.handle().flush(DEADLINE).unwrap();
    let seen = outcomes.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for (what, result, _) in &seen {
        assert_eq!(*result, Ok(()), "{what} of another pipeline from a sink");
    }
    assert!(!inner.is_running(), "the inner pipeline was shut down");
    assert_eq!(inner.stats().sinks[0].exported, 1);
    drop(inner_guard);
    guard.shutdown(DEADLINE).unwrap();
}
