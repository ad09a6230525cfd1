//! A stalled sink does not delay another sink: the other one receives everything.
mod support;

use std::time::Duration;

use support::*;
use tracing_offload::{Backpressure, DropReason, OffloadLayer};

/// Under `Block` nothing may be lost at the queue, and the healthy sink waits for room rather
/// than dropping; the stalled sink may hold the drain thread for one block timeout, then is
/// dropped into until it moves again.
#[test]
fn a_stalled_sink_does_not_delay_the_others() {
    let stalled = Collect::new("stalled");
    stalled.stall();
    let healthy = Collect::new("healthy");
    let (layer, guard) = OffloadLayer::builder()
        .capacity(1_024)
        .sink_buffer_capacity(64)
        .backpressure(Backpressure::Block {
            timeout: Duration::from_secs(2),
        })
        .sink(stalled.clone())
        .sink(healthy.clone())
        .build()
        .unwrap();
    let n = 20_000u64;
    with_layer(layer, || {
        for seq in 0..n {
            tracing::info!(producer = 0u64, seq, "tick");
        }
    });
    // While the other sink is still stalled, the healthy one gets everything.
    let handle = guard.handle();
    handle.flush(Duration::ZERO).unwrap_err(); // the stalled sink is behind
    let healthy_done = || {
        let s = handle.stats();
        s.sink("healthy").unwrap().completed() == s.enqueued
    };
    wait_until(
        "the healthy sink to finish every record",
        DEADLINE,
        healthy_done,
    );
    let stats = handle.stats();
    assert_eq!(stats.dropped, 0, "{stats:#?}");
    assert_eq!(healthy.count() as u64, n, "{stats:#?}");
    let s = stats.sink("stalled").unwrap();
    assert!(s.dropped_for(DropReason::SinkBufferFull) > 0, "{s:#?}");
    stalled.release();
    guard.shutdown(DEADLINE).unwrap();
    assert_accounting(&guard.handle().stats(), n);
}

#[test]
fn a_panicking_sink_is_disabled_and_counted_while_the_others_flow() {
    let bad = Collect::new("bad");
    bad.panic_on_export
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let good = Collect::new("good");
    let (layer, guard) = OffloadLayer::builder()
        .sink(bad.clone())
        .sink(good.clone())
        .build()
        .unwrap();
    with_layer(layer, || {
        for seq in 0..1_000u64 {
            tracing::info!(producer = 0u64, seq, "tick");
        }
    });
    guard.shutdown(DEADLINE).unwrap();
    let stats = guard.handle().stats();
    assert_accounting(&stats, 1_000);
    assert_eq!(good.count(), 1_000);
    let bad_stats = stats.sink("bad").unwrap();
    assert!(bad_stats.disabled);
    assert_eq!(bad_stats.dropped_for(DropReason::SinkDisabled), 1_000);
    assert!(bad_stats
        .last_error
        .as_deref()
        .unwrap()
        .contains("told to panic"));
}

#[test]
fn a_failing_sink_counts_failed_records_and_its_last_error() {
    let failing = Collect::new("failing");
    failing
        .fail
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (layer, guard) = OffloadLayer::builder()
        .sink(failing.clone())
        .build()
        .unwrap();
    with_layer(layer, || {
        for seq in 0..100u64 {
            tracing::info!(producer = 0u64, seq, "tick");
        }
    });
    guard.shutdown(DEADLINE).unwrap();
    let stats = guard.handle().stats();
    assert_accounting(&stats, 100);
    let s = stats.sink("failing").unwrap();
    assert_eq!(s.failed, 100);
    // `SinkError::Retryable`: it might have gone through later.
    assert_eq!(s.failed_permanent, 0);
    assert_eq!(s.last_error.as_deref(), Some("told to fail"));
    assert!(s.failing_for.is_some());
}

/// Writes the first record of each batch, then is refused for good.
struct Rejecting;

impl tracing_offload::sink::Sink for Rejecting {
    fn name(&self) -> &str {
        "rejecting"
    }
    fn export(
        &mut self,
        batch: &[tracing_offload::Record],
    ) -> Result<(), tracing_offload::sink::SinkError> {
        use tracing_offload::sink::SinkError;
        Err(SinkError::Partial {
            written: batch.len().min(1),
            source: Box::new(SinkError::Fatal("rejected as invalid".into())),
        })
    }
}

#[test]
fn records_refused_for_good_are_counted_failed_permanent() {
    let (layer, guard) = OffloadLayer::builder().sink(Rejecting).build().unwrap();
    with_layer(layer, || {
        for seq in 0..100u64 {
            tracing::info!(seq, "tick");
        }
    });
    guard.shutdown(DEADLINE).unwrap();
    let stats = guard.handle().stats();
    assert_accounting(&stats, 100);
    let s = stats.sink("rejecting").unwrap();
    // The first record of each batch went through; every other one was refused for good.
    assert!(s.exported >= 1 && s.exported <= s.batches, "{s:#?}");
    assert_eq!(s.exported + s.failed, 100, "{s:#?}");
    assert_eq!(s.failed_permanent, s.failed, "{s:#?}");
}
