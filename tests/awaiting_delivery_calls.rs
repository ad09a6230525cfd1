//! What a sink says of its records awaiting delivery (`AwaitingDelivery`) during a call counts
//! with the call's outcome, once (adversary pass 64: a batch given up on after its export
//! returned was counted dropped and lost after export; what a panicking flush said was
//! dropped; a delivery said on another thread during an export was discarded; a panic in
//! `retries()` or `markers_deferred()` killed the sink thread).
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use support::*;
use tracing_offload::sink::{AwaitingDelivery, Sink, SinkError};
use tracing_offload::{DropReason, OffloadLayer, Record};

fn data(batch: &[Record]) -> u64 {
    batch
        .iter()
        .filter(|r| !matches!(r, Record::Dropped(_)))
        .count() as u64
}

fn wait_stats(
    h: &tracing_offload::Handle,
    what: &str,
    mut f: impl FnMut(&tracing_offload::SinkStats) -> bool,
) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let s = h.stats().sinks[0].clone();
        if f(&s) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {s:#?}");
        std::thread::park_timeout(Duration::from_millis(5));
    }
}

/// A sink that exports a batch, then learns at its next flush that the records of it await
/// delivery (a buffering sink that sends in flush), and its flush panics after saying so.
struct FlushAdds {
    awaiting: Arc<AwaitingDelivery>,
    exported: u64,
    flushes: Arc<AtomicU64>,
}
impl Sink for FlushAdds {
    fn name(&self) -> &str {
        "flushadds"
    }
    fn export(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        self.exported += data(batch);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        if self.exported > 0 {
            // Records already counted exported now await delivery...
            self.awaiting.add(std::mem::take(&mut self.exported));
            // ...and the sink panics: it is disabled, and what awaited delivery reaches nobody.
            panic!("flush gives up");
        }
        Ok(())
    }
    fn awaiting_delivery(&self) -> Option<Arc<AwaitingDelivery>> {
        Some(Arc::clone(&self.awaiting))
    }
}

/// Docs (`AwaitingDelivery`): "When the pipeline gives up on the sink (... or it panicked and
/// was disabled), the records still awaiting delivery then are counted lost too: they will
/// reach nobody." and "the batch of the call is counted dropped, records added during it
/// included" — a flush has no batch: the ten records stayed `exported` only, though the sink
/// said they awaited delivery and then died.
#[test]
fn records_added_in_a_panicking_flush_are_counted_lost() {
    let flushes = Arc::new(AtomicU64::new(0));
    let sink = FlushAdds {
        awaiting: Arc::default(),
        exported: 0,
        flushes: flushes.clone(),
    };
    let (layer, guard) = OffloadLayer::builder()
        .sink(sink)
        .flush_interval(Duration::from_millis(20))
        .build()
        .unwrap();
    let h = guard.handle();
    with_layer(layer, || {
        for i in 0..10 {
            tracing::info!(i, "e");
        }
    });
    wait_stats(&h, "sink never disabled", |s| s.disabled);
    let _ = guard.shutdown(Duration::from_secs(5));
    let s = h.stats().sinks[0].clone();
    assert_eq!(s.exported, 10, "{s:#?}");
    assert_eq!(
        s.lost_after_export, 10,
        "10 records the sink said awaited delivery, then it panicked in flush and was disabled: \
         none counted lost after export (they end as `exported` only): {s:#?}"
    );
}

/// A sink whose export returns Ok, and whose `retries()` (asked by the sink thread after the
/// export returned, before the batch is counted) is slow: shutdown's deadline passes in
/// between. The batch is counted dropped (`shutdown_deadline`); its records, added during the
/// export, were counted `lost_after_export` as well when what the export said counted as it
/// returned.
struct SlowAfter {
    awaiting: Arc<AwaitingDelivery>,
    second: Arc<AtomicBool>,
    in_retries: Arc<Barrier>,
    release: Arc<AtomicBool>,
}
impl Sink for SlowAfter {
    fn name(&self) -> &str {
        "slowafter"
    }
    fn export(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        let n = data(batch);
        if n > 0 && self.second.load(Ordering::SeqCst) {
            self.awaiting.add(n);
        }
        Ok(())
    }
    fn retries(&self) -> u64 {
        if self.second.load(Ordering::SeqCst) && !self.release.load(Ordering::SeqCst) {
            self.in_retries.wait();
            while !self.release.load(Ordering::SeqCst) {
                std::thread::park_timeout(Duration::from_millis(5));
            }
        }
        0
    }
    fn awaiting_delivery(&self) -> Option<Arc<AwaitingDelivery>> {
        Some(Arc::clone(&self.awaiting))
    }
}

/// Docs: "if the pipeline gives up on the sink before that, the batch of the call is counted
/// dropped, records added during it included, and they are not counted lost as well";
/// `lost_after_export`: "records a sink counted exported and learned since may not have
/// reached their destination".
#[test]
fn a_batch_given_up_on_after_its_export_returned_is_counted_once() {
    let second = Arc::new(AtomicBool::new(false));
    let in_retries = Arc::new(Barrier::new(2));
    let release = Arc::new(AtomicBool::new(false));
    let sink = SlowAfter {
        awaiting: Arc::default(),
        second: second.clone(),
        in_retries: in_retries.clone(),
        release: release.clone(),
    };
    let (layer, guard) = OffloadLayer::builder()
        .sink(sink)
        .flush_interval(Duration::from_millis(20))
        .build()
        .unwrap();
    let h = guard.handle();
    let d = dispatch(layer);
    tracing::dispatcher::with_default(&d, || {
        for i in 0..10 {
            tracing::info!(i, "first");
        }
    });
    h.flush(DEADLINE).unwrap();
    second.store(true, Ordering::SeqCst);
    tracing::dispatcher::with_default(&d, || {
        for i in 0..5 {
            tracing::info!(i, "second");
        }
    });
    in_retries.wait(); // the export of the 5 returned; the sink thread is in retries()
    let report = guard.shutdown(Duration::from_millis(200));
    release.store(true, Ordering::SeqCst);
    wait_until("sink thread finished", DEADLINE, || true);
    let s = h.stats().sinks[0].clone();
    let _ = report;
    let dropped = s.dropped_for(DropReason::ShutdownDeadline);
    assert!(
        dropped + s.lost_after_export <= 5,
        "5 records counted dropped shutdown_deadline ({dropped}) AND lost_after_export ({}); \
         exported {}: {s:#?}",
        s.lost_after_export,
        s.exported
    );
}

/// A sink whose `retries()` panics (a provided method, called by the sink thread outside
/// `catch_unwind`: the sink thread died, and the sink's records ended nowhere).
struct PanicRetries;
impl Sink for PanicRetries {
    fn name(&self) -> &str {
        "panicretries"
    }
    fn export(&mut self, _batch: &[Record]) -> Result<(), SinkError> {
        Ok(())
    }
    fn retries(&self) -> u64 {
        panic!("retries() panics")
    }
}

#[test]
fn a_sink_whose_retries_panics_goes_on() {
    goes_on_after_a_panic(PanicRetries, "panicretries");
}

/// Same for `markers_deferred()`.
struct PanicDeferred;
impl Sink for PanicDeferred {
    fn name(&self) -> &str {
        "panicdeferred"
    }
    fn export(&mut self, _batch: &[Record]) -> Result<(), SinkError> {
        Ok(())
    }
    fn markers_deferred(&mut self) -> bool {
        panic!("markers_deferred() panics")
    }
}

#[test]
fn a_sink_whose_markers_deferred_panics_goes_on() {
    goes_on_after_a_panic(PanicDeferred, "panicdeferred");
}

/// An async sink: its export hands records to a delivery thread of its own and returns; the
/// delivery thread says `delivered` when the destination confirms. The first export's 10
/// records await delivery (added in the export). While the second export hangs (shutdown's
/// deadline will give up on it), the delivery thread confirms the first 10: `delivered(10)`
/// from another thread, journaled as if the hanging call had said it, and discarded by
/// `close()`, which then counts the 10 delivered records `lost_after_export`.
/// Docs: "Each record added ends as delivered or lost".
struct Async {
    awaiting: Arc<AwaitingDelivery>,
    n: u64,
    hang: Arc<Barrier>,
    release: Arc<AtomicBool>,
}
impl Sink for Async {
    fn name(&self) -> &str {
        "async"
    }
    fn export(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        let d = data(batch);
        if d == 0 {
            return Ok(());
        }
        self.n += 1;
        if self.n == 1 {
            self.awaiting.add(d);
        } else {
            self.hang.wait();
            while !self.release.load(Ordering::SeqCst) {
                std::thread::park_timeout(Duration::from_millis(5));
            }
        }
        Ok(())
    }
    fn awaiting_delivery(&self) -> Option<Arc<AwaitingDelivery>> {
        Some(Arc::clone(&self.awaiting))
    }
}

#[test]
fn a_delivery_said_on_another_thread_during_a_hanging_export_counts() {
    let awaiting: Arc<AwaitingDelivery> = Arc::default();
    let hang = Arc::new(Barrier::new(2));
    let release = Arc::new(AtomicBool::new(false));
    let sink = Async {
        awaiting: awaiting.clone(),
        n: 0,
        hang: hang.clone(),
        release: release.clone(),
    };
    let (layer, guard) = OffloadLayer::builder()
        .sink(sink)
        .flush_interval(Duration::from_millis(20))
        .build()
        .unwrap();
    let h = guard.handle();
    let d = dispatch(layer);
    tracing::dispatcher::with_default(&d, || (0..10).for_each(|i| tracing::info!(i, "first")));
    h.flush(DEADLINE).unwrap();
    assert_eq!(awaiting.awaiting(), 10);
    tracing::dispatcher::with_default(&d, || (0..3).for_each(|i| tracing::info!(i, "second")));
    hang.wait(); // second export under way
    let confirm = std::thread::spawn({
        let a = awaiting.clone();
        move || a.delivered(10) // the destination confirmed the first batch
    });
    confirm.join().unwrap();
    let _ = guard.shutdown(Duration::from_millis(200));
    release.store(true, Ordering::SeqCst);
    let s = h.stats().sinks[0].clone();
    assert_eq!(s.dropped_for(DropReason::ShutdownDeadline), 3, "{s:#?}");
    assert_eq!(
        s.lost_after_export, 0,
        "the 10 were delivered (said before shutdown gave up), counted lost after export: {s:#?}"
    );
}

/// A sink whose answer after an export panics: the sink thread lives on, the panic says
/// nothing (as one in `lost_after_export` does), and the record is counted once.
fn goes_on_after_a_panic(sink: impl Sink, name: &str) {
    let (layer, guard) = OffloadLayer::builder()
        .sink(sink)
        .flush_interval(Duration::from_millis(20))
        .build()
        .unwrap();
    let h = guard.handle();
    let d = dispatch(layer);
    tracing::dispatcher::with_default(&d, || tracing::info!("one"));
    h.flush(Duration::from_secs(5)).expect("the flush returns");
    let report = guard
        .shutdown(Duration::from_secs(5))
        .expect("shutdown in time");
    assert!(report.unfinished_threads.is_empty(), "{report:?}");
    let s = h.stats().sink(name).unwrap().clone();
    assert_eq!((s.exported, s.dropped), (1, 0), "{s:#?}");
}
