//! `Sink::awaiting_delivery` / `AwaitingDelivery` and the OTLP sink's riders: each record ends
//! once (adversary pass 63 found the records of a batch given up on, or whose export panicked,
//! counted dropped and lost after export; and a sink's count unbounded by what it exported).
//!
//! The contract (CHANGELOG, Unreleased): `lost_after_export` counts "records a sink counted
//! exported and learned since may not have reached their destination", and "no sink is counted
//! as having lost more than it exported (pass 55)". `SinkStats::lost_after_export`: "Also
//! counted in `exported`". README: "every record enqueued ends, at each sink, as exported,
//! spooled, failed or dropped with a reason" — one end each.
#![cfg(feature = "otlp")]
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use tracing_offload::sink::otlp::EventsAsLogs;
use tracing_offload::sink::{AwaitingDelivery, Otlp, Sink, SinkError};
use tracing_offload::{DropReason, OffloadLayer, Record};

const EVENTS: u64 = 10;

fn wait_sink(
    handle: &tracing_offload::Handle,
    name: &str,
    what: &str,
    mut cond: impl FnMut(&tracing_offload::SinkStats) -> bool,
) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let s = handle.stats().sink(name).unwrap().clone();
        if cond(&s) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {s:#?}");
        std::thread::park_timeout(Duration::from_millis(10));
    }
}

/// One batch holds a closed span's record (whose request the collector never answers)
/// and ten events of a span still open (riders, `EventsAsLogs::None`). The OTLP sink adds the
/// riders to its `AwaitingDelivery` while it converts the batch, before the request hangs.
/// Shutdown's deadline gives up on the sink mid-export: the whole batch is counted dropped
/// (`shutdown_deadline`), never `exported`, and `close()` counts the same ten events again as
/// `lost_after_export`. Each event ends twice; the sink "lost" ten records after export while
/// it exported none.
#[test]
fn riders_of_a_batch_given_up_on_are_counted_dropped_only() {
    let silent = Unanswering::start();
    let sink = Otlp::new()
        .endpoint(format!("http://127.0.0.1:{}", silent.port))
        .events_as_logs(EventsAsLogs::None)
        .timeout(Duration::from_secs(60))
        .max_retries(0);
    let (layer, guard) = OffloadLayer::builder()
        .sink(sink)
        .flush_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    let handle = guard.handle();
    let open = with_layer(layer, || {
        let open = tracing::info_span!("still_open");
        // A closed span first, so that the batch has a request to hang on.
        tracing::info_span!("closed").in_scope(|| {});
        open.in_scope(|| {
            for i in 0..EVENTS {
                tracing::info!(i, "step");
            }
        });
        open
    });
    wait_sink(&handle, "otlp", "the batch never went out", |s| {
        s.forwarded == EVENTS + 1 && s.export_in_progress_for.is_some()
    });
    let _ = guard.shutdown(Duration::from_millis(300));
    let s = handle.stats().sink("otlp").unwrap().clone();
    drop(open);
    silent.stop();
    let dropped = s.dropped_for(DropReason::ShutdownDeadline);
    assert_eq!(dropped, EVENTS + 1, "{s:#?}");
    assert!(
        s.lost_after_export <= s.exported,
        "lost_after_export ({}) counts records never counted exported (exported {}); the {} \
         events are counted dropped (shutdown_deadline) AND lost after export: {s:#?}",
        s.lost_after_export,
        s.exported,
        EVENTS
    );
}

/// A custom sink that uses `AwaitingDelivery` as documented: what it exports whose delivery is
/// still to come is `add`ed. `behaviour` decides what it then does.
struct Deferring {
    awaiting: Arc<AwaitingDelivery>,
    /// Add this many per record (a sink that adds more than it resolves).
    per_record: u64,
    /// Declare everything awaiting lost after each export.
    lose: bool,
    /// Panic in the export (after `add`).
    panic: Arc<AtomicBool>,
}

impl Sink for Deferring {
    fn name(&self) -> &str {
        "deferring"
    }
    fn export(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        let data = batch
            .iter()
            .filter(|r| !matches!(r, Record::Dropped(_)))
            .count() as u64;
        self.awaiting.add(data * self.per_record);
        if self.panic.load(Ordering::Relaxed) && data > 0 {
            panic!("deferring sink gives up");
        }
        if self.lose {
            self.awaiting.lost(self.awaiting.awaiting());
        }
        Ok(())
    }
    fn awaiting_delivery(&self) -> Option<Arc<AwaitingDelivery>> {
        Some(Arc::clone(&self.awaiting))
    }
}

/// A sink that adds more than it exported (a bug in the sink, "adding more than they
/// resolve") and then says they were lost: the pipeline counts every one in
/// `lost_after_export`, unbounded, though `lost_after_export()` itself is clamped to `exported`
/// ("never more than it exported") and the changelog says no sink is counted as having lost more
/// than it exported.
#[test]
fn a_sink_never_loses_more_than_it_exported() {
    let sink = Deferring {
        awaiting: Arc::default(),
        per_record: 1000,
        lose: true,
        panic: Arc::default(),
    };
    let (layer, guard) = OffloadLayer::builder().sink(sink).build().unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        for i in 0..5 {
            tracing::info!(i, "x");
        }
    });
    handle.flush(DEADLINE).unwrap();
    guard.shutdown(DEADLINE).unwrap();
    let s = handle.stats().sink("deferring").unwrap().clone();
    assert_eq!(s.exported, 5);
    assert!(
        s.lost_after_export <= s.exported,
        "lost_after_export {} > exported {}: {s:#?}",
        s.lost_after_export,
        s.exported
    );
}

/// The same as the OTLP case, deterministic. A sink adds the batch's records as
/// awaiting delivery, then panics in the same export: the pipeline counts the batch dropped
/// (`sink_disabled`), never exported, and `close_awaiting` counts the same records lost after
/// export.
#[test]
fn a_batch_whose_export_panics_is_counted_once() {
    let panic = Arc::new(AtomicBool::new(true));
    let sink = Deferring {
        awaiting: Arc::default(),
        per_record: 1,
        lose: false,
        panic: Arc::clone(&panic),
    };
    let (layer, guard) = OffloadLayer::builder().sink(sink).build().unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        for i in 0..5 {
            tracing::info!(i, "x");
        }
    });
    let _ = handle.flush(DEADLINE);
    let _ = guard.shutdown(DEADLINE);
    let s = handle.stats().sink("deferring").unwrap().clone();
    assert!(s.disabled, "{s:#?}");
    let ends = s.exported + s.dropped + s.failed;
    assert_eq!(ends, 5, "{s:#?}");
    assert!(
        s.lost_after_export <= s.exported,
        "the 5 records are dropped (sink_disabled) and also lost after export \
         ({} > exported {}): {s:#?}",
        s.lost_after_export,
        s.exported
    );
}

/// A sink that panics in `awaiting_delivery()` at build time.
#[test]
fn build_survives_a_panicking_awaiting_delivery() {
    struct Bad;
    impl Sink for Bad {
        fn name(&self) -> &str {
            "bad"
        }
        fn export(&mut self, _: &[Record]) -> Result<(), SinkError> {
            Ok(())
        }
        fn awaiting_delivery(&self) -> Option<Arc<AwaitingDelivery>> {
            panic!("no")
        }
    }
    let r = std::panic::catch_unwind(|| OffloadLayer::builder().sink(Bad).build().map(|_| ()));
    assert!(
        matches!(r, Ok(Err(_)) | Ok(Ok(()))),
        "build() panicked because a sink's awaiting_delivery() panicked"
    );
}
