//! Tail sampling's memory stays within its budget with 100,000 local traces open at once:
//! each has a closed child span and an event waiting for its root, twice as many records as
//! the budget allows ten times over. The oldest traces are decided early (counted), the held
//! records never pass the budget, the heap holds no more than the budget's worth of records
//! beyond the same workload without tail sampling, and the accounting is exact.
mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use support::live_bytes::{live, LiveBytes};
use support::*;
use tracing_offload::sink::{Sink, SinkError};
use tracing_offload::{ForcedDecision, OffloadLayer, Record, TailSampling};

#[global_allocator]
static GLOBAL: LiveBytes = LiveBytes;

const TRACES: u64 = 100_000;
const BUDGET: usize = 10_000;
/// What one held record may cost at most, all in: its record box (about 600 bytes) and text
/// buffer, its shared handle, its place in its trace, and its share of the per-trace
/// bookkeeping and of the remembered early decisions (about 830 bytes measured). Holding every
/// record of the open traces instead would take twenty times the budget.
const PER_HELD_RECORD: i64 = 1536;

/// A sink that reads nothing and keeps nothing: records go back to the pool at once.
#[derive(Clone, Default)]
struct Discard(Arc<AtomicU64>);

impl Sink for Discard {
    fn name(&self) -> &str {
        "discard"
    }
    fn export(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Opens `TRACES` local traces and keeps their roots open; each has a closed child and an
/// event in it. Calls `check` every 1,000 traces.
fn open_traces(mut check: impl FnMut()) -> Vec<tracing::Span> {
    let mut roots = Vec::with_capacity(TRACES as usize);
    for i in 0..TRACES {
        let root = tracing::info_span!("request", i);
        root.in_scope(|| {
            tracing::info_span!("step").in_scope(|| tracing::info!(i, "working"));
        });
        roots.push(root);
        if i % 1_000 == 999 {
            check();
        }
    }
    roots
}

/// Runs the workload on a fresh pipeline: returns the heap's growth while the traces are open
/// and everything offered so far has been through the drain thread.
fn heap_growth_with(tail: Option<TailSampling>) -> i64 {
    let sink = Discard::default();
    let before = live();
    let mut builder = OffloadLayer::builder()
        .backpressure(tracing_offload::Backpressure::Block {
            timeout: std::time::Duration::from_secs(60),
        })
        .sink(sink.clone());
    if let Some(tail) = tail {
        builder = builder.tail_sampling(tail);
    }
    let (layer, guard) = builder.build().unwrap();
    let handle = guard.handle();
    let dispatch = dispatch(layer);
    let mut peak_held = 0;
    let roots = tracing::dispatcher::with_default(&dispatch, || {
        open_traces(|| {
            let held = handle.stats().tail_sampling.buffered_records;
            assert!(held <= BUDGET, "{held} records held, over the budget");
            peak_held = peak_held.max(held);
        })
    });
    handle.flush(DEADLINE).unwrap();
    let growth = live() - before;
    let stats = handle.stats();
    let t = &stats.tail_sampling;
    if tail.is_some() {
        assert!(peak_held > 0);
        assert!(t.high_water_mark <= BUDGET, "{t:#?}");
        assert!(t.buffered_traces <= BUDGET / 2, "{t:#?}");
        // Every trace not held any more was decided early, to make room.
        assert_eq!(
            t.forced_for(ForcedDecision::BufferFull) + t.buffered_traces as u64,
            TRACES,
            "{t:#?}"
        );
    }
    tracing::dispatcher::with_default(&dispatch, || drop(roots));
    guard.shutdown(DEADLINE).unwrap();
    let stats = handle.stats();
    assert_accounting(&stats, 3 * TRACES);
    assert_eq!(
        stats.sinks[0].exported + stats.tail_sampling.sampled_out,
        3 * TRACES,
        "{stats:#?}"
    );
    assert_eq!(stats.sinks[0].exported, sink.0.load(Ordering::Relaxed));
    growth
}

#[test]
fn a_hundred_thousand_open_traces_stay_within_the_budget() {
    // Warm-up: one-time allocations (the clock's calibration, thread-locals) out of the way.
    heap_growth_with(None);
    let without = heap_growth_with(None);
    let tail = TailSampling::new()
        .keep_errors()
        .keep_ratio(0.01)
        .max_buffered_spans(BUDGET);
    let with = heap_growth_with(Some(tail));
    let extra = with - without;
    assert!(
        extra <= BUDGET as i64 * PER_HELD_RECORD,
        "tail sampling held {extra} bytes beyond the same workload without it, over \
         {BUDGET} records of {PER_HELD_RECORD} bytes"
    );
    eprintln!("heap growth: {without} bytes without tail sampling, {with} with it");
}
