//! Tail sampling's decision wait counted from when a trace's first record reached the drain
//! thread, and the drain thread stops taking records while its sinks are full. A local trace
//! whose root *closed* in time, but whose root record still waited in the queue behind a slow
//! sink, was then "decided as is" (forced, `decision_wait`), judged on the part that arrived:
//! its error root dropped, or a fast trace kept as "slow" (adversary pass 62). While records
//! are queued, the wait now counts in the time the records were made.
//!
//! README, Tail sampling: "Waiting for the local root is exact: ... the local root's record is
//! the last of its trace to reach the drain thread; the trace is then decided and written whole
//! ... or not at all." and "Decided as is: a trace whose local root has not come after
//! decision_wait (a leaked span, a root whose record was dropped at a full queue)";
//! `TailSampling::decision_wait` docs: "How long a local trace's records wait for its local root
//! to close ... A trace still open then is decided as is".
mod support;

use std::time::{Duration, Instant};

use support::*;
use tracing_offload::{Backpressure, ForcedDecision, Guard, OffloadLayer, TailSampling};

fn pipeline(tail: TailSampling) -> (OffloadLayer, Guard, Collect) {
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder()
        .backpressure(Backpressure::Block {
            timeout: Duration::from_secs(60),
        })
        // A sink that is slow, not stalled: the drain thread waits for it (nothing dropped).
        .sink_stall_after(Duration::from_secs(60))
        .sink_buffer_capacity(1)
        .batch_size(1)
        .tail_sampling(tail)
        .sink(sink.clone())
        .build()
        .unwrap();
    (layer, guard, sink)
}

/// Runs one short trace (root + child + event); the drain thread takes the child and the event,
/// then the sink is held back (as a slow collector would) before the root closes; the root
/// closes at once (marked failed if `fail`), and the sink stays slow for about
/// `hold` (or until a forced decision is seen). Returns the root's real duration.
fn short_trace_behind_a_slow_sink(
    sink: &Collect,
    handle: &tracing_offload::Handle,
    fail: bool,
    hold: Duration,
) -> Duration {
    let root = tracing::info_span!("root", otel.status_code = tracing::field::Empty);
    root.in_scope(|| {
        tracing::info_span!("child").in_scope(|| tracing::info!("in child"));
    });
    wait_until("the child and its event held", DEADLINE, || {
        handle.stats().tail_sampling.buffered_records == 2
    });
    // The sink goes slow; a few records outside any trace fill its buffer and the batch it is
    // exporting, so the drain thread stops taking from the queue.
    sink.stall();
    for i in 0..4 {
        tracing::info!(i, "filler");
    }
    wait_until("records waiting in the queue", DEADLINE, || {
        handle.stats().queue_depth >= 1
    });
    if fail {
        root.record("otel.status_code", "error");
    }
    let started = Instant::now();
    drop(root); // closes now: its record is queued behind the fillers
    let closed_after = started.elapsed();
    // The collector stays slow for `hold`: a condition with a deadline, not a sleep for
    // synchronisation (the scenario is "slow for this long").
    let until = Instant::now() + hold;
    while Instant::now() < until
        && handle
            .stats()
            .tail_sampling
            .forced_for(ForcedDecision::DecisionWait)
            == 0
    {
        std::thread::park_timeout(Duration::from_millis(5));
    }
    sink.release();
    closed_after
}

/// A trace whose root failed, closed in time, was dropped: decided "as is" on its
/// children alone because the root waited in the queue behind a slow sink.
#[test]
fn a_failed_trace_whose_root_closed_in_time_is_kept_when_the_sink_is_slow() {
    let tail = TailSampling::new()
        .keep_errors()
        .decision_wait(Duration::from_millis(300));
    let (layer, guard, sink) = pipeline(tail);
    let handle = guard.handle();
    with_layer(layer, || {
        short_trace_behind_a_slow_sink(&sink, &handle, true, Duration::from_secs(3));
    });
    guard.shutdown(DEADLINE).unwrap();
    let stats = handle.stats();
    let names = names_sorted(&sink.data());
    let t = &stats.tail_sampling;
    assert_eq!(
        (names.as_slice(), t.traces_kept_error, t.forced_decisions()),
        (
            &["child", "event", "event", "event", "event", "event", "root"][..],
            1,
            0
        ),
        "the failed trace (root closed within 1 ms of its child) must be kept whole, decided \
         at its root; got records {names:?}, tail stats {t:#?}"
    );
    assert_accounting(&stats, 7);
}

/// A fast trace was kept as "slow": the forced decision measures the root as open
/// from its start to the moment the drain thread gave up waiting, though the root had closed.
#[test]
fn a_fast_trace_is_not_kept_as_slow_because_the_sink_was_slow() {
    let tail = TailSampling::new()
        .keep_slower_than(Duration::from_millis(100))
        .decision_wait(Duration::from_millis(300));
    let (layer, guard, sink) = pipeline(tail);
    let handle = guard.handle();
    with_layer(layer, || {
        short_trace_behind_a_slow_sink(&sink, &handle, false, Duration::from_secs(3));
    });
    guard.shutdown(DEADLINE).unwrap();
    let stats = handle.stats();
    let data = sink.data();
    let spans = span_records(&data);
    let t = &stats.tail_sampling;
    let root_duration = spans
        .iter()
        .find(|s| s.name() == "root")
        .map(|s| s.duration());
    assert!(
        spans.is_empty() && t.traces_kept_slow == 0 && t.traces_dropped == 1,
        "a trace whose root lasted well under the 100 ms threshold (root's duration as \
         exported: {root_duration:?}) must be dropped, decided at its root; written: {:?}, \
         tail stats {t:#?}",
        names_sorted(&data)
    );
}

/// The same, with every setting at its default but the decision wait: a sink that
/// pauses for well under its stall time (1 s) while 20 000 records wait for it held the drain
/// thread back long enough for a 200 ms decision wait to drop a failed trace whose root had
/// closed at once.
#[test]
fn with_default_settings_a_short_sink_pause_drops_a_failed_trace() {
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder()
        .tail_sampling(
            TailSampling::new()
                .keep_errors()
                .decision_wait(Duration::from_millis(200)),
        )
        .sink(sink.clone())
        .build()
        .unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        let root = tracing::info_span!("root", otel.status_code = tracing::field::Empty);
        root.in_scope(|| tracing::info_span!("child").in_scope(|| {}));
        wait_until("the child held", DEADLINE, || {
            handle.stats().tail_sampling.buffered_records == 1
        });
        sink.stall();
        for i in 0..20_000u32 {
            tracing::info!(i, "filler");
        }
        wait_until("records waiting in the queue", DEADLINE, || {
            handle.stats().queue_depth >= 1
        });
        root.record("otel.status_code", "error");
        drop(root);
        // The pause: at most 700 ms (under the 1 s stall time), or until a decision is forced.
        let until = Instant::now() + Duration::from_millis(700);
        while Instant::now() < until
            && handle
                .stats()
                .tail_sampling
                .forced_for(ForcedDecision::DecisionWait)
                == 0
        {
            std::thread::park_timeout(Duration::from_millis(5));
        }
        sink.release();
    });
    guard.shutdown(DEADLINE).unwrap();
    let stats = handle.stats();
    let spans: Vec<_> = span_records(&sink.data())
        .iter()
        .map(|s| s.name())
        .collect();
    let t = &stats.tail_sampling;
    assert_eq!(stats.dropped, 0, "{stats:#?}");
    assert_eq!(
        (spans.len(), t.traces_kept_error, t.forced_decisions()),
        (2, 1, 0),
        "the failed trace must be kept whole; written spans {spans:?}; {t:#?}"
    );
}
