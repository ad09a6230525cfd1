//! A sink whose `Drop` hangs (a client that joins its worker, a connection that waits to close)
//! does not make shutdown overrun its deadline: the sink thread is reported unfinished and
//! left running, like a sink stuck in `export` or `shutdown`. The sink was dropped after its
//! thread said it had finished, and shutdown then joined that thread without a deadline.
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tracing_offload::sink::{Sink, SinkError};
use tracing_offload::{OffloadLayer, Record};

/// A sink whose `Drop` waits until released.
struct SlowToDrop {
    released: Arc<AtomicBool>,
}

impl Sink for SlowToDrop {
    fn name(&self) -> &str {
        "slow-to-drop"
    }
    fn export(&mut self, _batch: &[Record]) -> Result<(), SinkError> {
        Ok(())
    }
}

impl Drop for SlowToDrop {
    fn drop(&mut self) {
        while !self.released.load(Ordering::SeqCst) {
            std::thread::park_timeout(Duration::from_millis(1));
        }
    }
}

/// Releases the sink's `Drop` when dropped (also when an assertion fails).
struct Release(Arc<AtomicBool>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Logs one record, then shuts down with a deadline of 100 ms on another thread, and waits
/// (up to [`DEADLINE`]) for that call to return.
fn one_record_then_shutdown(
    layer: OffloadLayer,
    guard: &tracing_offload::Guard,
) -> Result<tracing_offload::ShutdownReport, tracing_offload::FlushError> {
    with_layer(layer, || tracing::info!("one"));
    let handle = guard.handle();
    let shutting_down = std::thread::spawn(move || handle.shutdown(Duration::from_millis(100)));
    wait_until("the shutdown to return", DEADLINE, || {
        shutting_down.is_finished()
    });
    shutting_down.join().unwrap()
}

#[test]
fn shutdown_holds_its_deadline_when_a_sink_hangs_in_drop() {
    let released = Arc::new(AtomicBool::new(false));
    let (layer, guard) = OffloadLayer::builder()
        .sink(SlowToDrop {
            released: released.clone(),
        })
        .build()
        .unwrap();
    let _release_at_the_end = Release(released);
    match one_record_then_shutdown(layer, &guard) {
        Err(tracing_offload::FlushError::Abandoned { report }) => {
            assert_eq!(report.unfinished_threads, ["offload-sink-slow-to-drop"]);
            assert!(
                report.abandoned.is_empty(),
                "the record was written: {report:?}"
            );
        }
        other => panic!("expected the sink thread reported unfinished, got {other:?}"),
    }
}

thread_local! {
    /// What a sink's I/O library keeps per thread (a connection), closed when the thread ends.
    static CONNECTION: std::cell::RefCell<Option<SlowToClose>> =
        const { std::cell::RefCell::new(None) };
}

/// A per-thread value whose `Drop` waits until released.
struct SlowToClose(Arc<AtomicBool>);

impl Drop for SlowToClose {
    fn drop(&mut self) {
        while !self.0.load(Ordering::SeqCst) {
            std::thread::park_timeout(Duration::from_millis(1));
        }
    }
}

/// A sink that leaves a value in its thread's thread-locals.
struct KeepsAConnection(Arc<AtomicBool>);

impl Sink for KeepsAConnection {
    fn name(&self) -> &str {
        "keeps-a-connection"
    }
    fn export(&mut self, _batch: &[Record]) -> Result<(), SinkError> {
        CONNECTION.with(|c| {
            c.borrow_mut()
                .get_or_insert_with(|| SlowToClose(self.0.clone()));
        });
        Ok(())
    }
}

/// A thread's thread-local values are dropped after its work is done, and joining it waits
/// for them: shutdown joined a finished sink thread without a deadline, and held three
/// seconds past its own when such a value took that long to close (adversary pass 32).
#[test]
fn shutdown_holds_its_deadline_when_a_sink_thread_local_is_slow_to_close() {
    let released = Arc::new(AtomicBool::new(false));
    let (layer, guard) = OffloadLayer::builder()
        .sink(KeepsAConnection(released.clone()))
        .build()
        .unwrap();
    let _release_at_the_end = Release(released);
    let report = one_record_then_shutdown(layer, &guard).expect("the sink's work was done");
    assert!(report.abandoned.is_empty(), "{report:?}");
    assert_eq!(guard.handle().stats().sinks[0].exported, 1);
}
