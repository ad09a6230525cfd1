//! A shutdown whose deadline passes while tail sampling still hands decided traces to a slow
//! sink: the counts stay true. What the sink had not finished is counted dropped
//! (`shutdown_deadline`) and is then not written (except the one batch it was writing), and
//! nothing handed to the sink after the deadline escapes its accounting.
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tracing_offload::sink::{Sink, SinkError};
use tracing_offload::{OffloadLayer, Record, TailSampling};

const BATCH: usize = 64;

/// Counts what it is given, slowly (1 ms a batch, a slow disk), and says when it is shut down.
#[derive(Clone, Default)]
struct Slow {
    received: Arc<AtomicU64>,
    shut_down: Arc<AtomicBool>,
}

impl Sink for Slow {
    fn name(&self) -> &str {
        "slow"
    }
    fn export(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        std::thread::sleep(Duration::from_millis(1)); // simulated slow I/O, not synchronisation
        let data = batch.iter().filter(|r| !matches!(r, Record::Dropped(_)));
        self.received
            .fetch_add(data.count() as u64, Ordering::SeqCst);
        Ok(())
    }
    fn shutdown(&mut self, _deadline: std::time::Instant) -> Result<(), SinkError> {
        self.shut_down.store(true, Ordering::SeqCst);
        Ok(())
    }
}

#[test]
fn a_deadline_that_cuts_tail_sampling_short_leaves_true_counts() {
    let sink = Slow::default();
    let (layer, guard) = OffloadLayer::builder()
        .batch_size(BATCH)
        .tail_sampling(TailSampling::new().keep_ratio(1.0))
        .sink(sink.clone())
        .build()
        .unwrap();
    let handle = guard.handle();
    let dispatch = dispatch(layer);
    // Open local roots, each with a closed child and an event: all held by tail sampling
    // until shutdown decides them.
    let roots: Vec<tracing::Span> = tracing::dispatcher::with_default(&dispatch, || {
        (0..5_000u64)
            .map(|i| {
                let root = tracing::info_span!("root", i);
                root.in_scope(|| tracing::info_span!("child").in_scope(|| tracing::info!("ev")));
                root
            })
            .collect()
    });
    let report = guard.shutdown(Duration::from_millis(50));
    assert!(
        report.is_err(),
        "the deadline was meant to pass: {report:?}"
    );
    tracing::dispatcher::with_default(&dispatch, || drop(roots));
    wait_until("the sink thread ended", DEADLINE, || {
        sink.shut_down.load(Ordering::SeqCst)
    });

    let stats = handle.stats();
    let s = stats.sink("slow").unwrap();
    assert_eq!(
        s.exported + s.spooled + s.failed + s.dropped,
        s.forwarded,
        "every record handed to the sink is accounted for: {s:#?}"
    );
    assert!(s.dropped > 0, "{s:#?}");
    let received = sink.received.load(Ordering::SeqCst);
    assert!(
        received >= s.exported && received <= s.exported + BATCH as u64,
        "the sink got {received} records, {} counted exported: what is counted dropped must \
         not be written, but for the batch it was writing at the deadline",
        s.exported
    );
    assert_eq!(
        stats.offered,
        stats.enqueued + stats.dropped + stats.sampled_out,
        "{stats:#?}"
    );
}

/// After a shutdown past its deadline, a stalled sink's buffer no longer shows as records
/// waiting: they were counted dropped (`shutdown_deadline`), and showing them in `buffered` too
/// counted them twice (adversary pass 54).
#[test]
fn records_given_up_at_the_deadline_are_not_shown_as_buffered() {
    let sink = support::Collect::new("stalled");
    sink.stall();
    let (layer, guard) = OffloadLayer::builder()
        .batch_size(BATCH)
        .sink_buffer_capacity(1_024)
        .sink(sink.clone())
        .build()
        .unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        for i in 0..2_000u64 {
            tracing::info!(i, "queued behind a stalled sink");
        }
    });
    wait_until("the stalled sink's buffer holds records", DEADLINE, || {
        handle.stats().sink("stalled").unwrap().buffered > 0
    });
    let report = guard.shutdown(Duration::from_millis(20));
    assert!(
        report.is_err(),
        "the deadline was meant to pass: {report:?}"
    );
    let stats = handle.stats();
    let s = stats.sink("stalled").unwrap();
    assert!(
        s.dropped_for(tracing_offload::DropReason::ShutdownDeadline) > 0,
        "{s:#?}"
    );
    assert_eq!(s.buffered, 0, "given up, not waiting: {s:#?}");
    sink.release();
}
