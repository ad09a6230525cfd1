//! Every record lost at a sink is reported in-band once the sink writes again. A marker counts
//! the records that failed to be written as well as those dropped, and a marker that was
//! itself in a batch that failed is not lost: its counts go into the next one. So the markers a
//! sink received add up to every record it did not get.
mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use support::*;
use tracing_offload::{Backpressure, OffloadLayer, Record, UndeliveredReason};

#[test]
fn the_markers_a_sink_gets_add_up_to_every_record_it_lost() {
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder()
        .capacity(64)
        .sink_buffer_capacity(64)
        .batch_size(16)
        .backpressure(Backpressure::DropNewest)
        .sink(sink.clone())
        .build()
        .unwrap();
    let handle = guard.handle();
    let dispatch = dispatch(layer);
    // The sink stalls: the queue and its buffer fill, and the rest is dropped at the queue.
    sink.stall();
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..2_000u64 {
            tracing::info!(i, "while stalled");
        }
    });
    // Then every batch fails, the first markers with them; then the sink recovers.
    sink.fail.store(true, Ordering::SeqCst);
    sink.release();
    handle.flush(DEADLINE).unwrap();
    let failing = handle.stats();
    assert!(failing.sink("collect").unwrap().failed > 0, "{failing:#?}");
    sink.fail.store(false, Ordering::SeqCst);
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..10u64 {
            tracing::info!(i, "after");
        }
    });
    guard.shutdown(DEADLINE).unwrap();

    let stats = handle.stats();
    let s = stats.sink("collect").unwrap();
    assert!(stats.dropped > 0 && s.failed > 0, "{stats:#?}");
    let (mut dropped, mut failed) = (0, 0);
    for m in sink.markers() {
        let Record::Dropped(d) = m else {
            unreachable!()
        };
        dropped += d.by_reason.iter().map(|(_, n)| n).sum::<u64>();
        for (reason, n) in &d.undelivered {
            assert_eq!(*reason, UndeliveredReason::Failed, "{d}");
            failed += n;
        }
        // The text says it too.
        assert!(d
            .to_string()
            .starts_with(&format!("{} records dropped since", d.total())));
    }
    assert_eq!(dropped, stats.dropped + s.dropped, "{stats:#?}");
    assert_eq!(failed, s.failed, "{stats:#?}");
    // And what it did get is the rest.
    assert_eq!(sink.count() as u64 + dropped + failed, 2_010, "{stats:#?}");
}

/// A sink that fails its first `fails` exports, then takes everything.
#[derive(Clone)]
struct FailsFirst {
    fails: Arc<std::sync::atomic::AtomicU64>,
    records: Arc<std::sync::Mutex<Vec<Record>>>,
}

impl tracing_offload::sink::Sink for FailsFirst {
    fn name(&self) -> &str {
        "fails-first"
    }
    fn export(&mut self, batch: &[Record]) -> Result<(), tracing_offload::sink::SinkError> {
        let left = self.fails.load(Ordering::SeqCst);
        if left > 0 {
            self.fails.store(left - 1, Ordering::SeqCst);
            return Err(tracing_offload::sink::SinkError::Retryable(
                "told to fail".into(),
            ));
        }
        self.records.lock().unwrap().extend(batch.iter().cloned());
        Ok(())
    }
}

#[test]
fn the_last_marker_is_retried_within_the_shutdown_deadline() {
    // The data batch fails, and so does the first try of the final marker at shutdown; the
    // sink would take the next one, and the deadline leaves time for it.
    let sink = FailsFirst {
        fails: Arc::new(std::sync::atomic::AtomicU64::new(2)),
        records: Arc::default(),
    };
    let (layer, guard) = OffloadLayer::builder().sink(sink.clone()).build().unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        for i in 0..10u64 {
            tracing::info!(i, "lost");
        }
    });
    guard.shutdown(DEADLINE).unwrap();
    let stats = handle.stats();
    assert_eq!(stats.sink("fails-first").unwrap().failed, 10, "{stats:#?}");
    let reported: u64 = sink
        .records
        .lock()
        .unwrap()
        .iter()
        .map(|r| match r {
            Record::Dropped(d) => d.total(),
            _ => 0,
        })
        .sum();
    assert_eq!(reported, 10, "{stats:#?}");
}
