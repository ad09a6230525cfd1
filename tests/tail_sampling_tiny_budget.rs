//! With a budget far too small for the traffic (one record), tail sampling decides most traces
//! early; each trace is still decided once, and the rest of a trace decided early follows its
//! decision: a kept trace arrives whole, a dropped one not at all.
mod support;

use std::collections::HashMap;

use support::*;
use tracing_offload::{OffloadLayer, Record, TailSampling};

const THREADS: u64 = 4;
const TRACES: u64 = 300;
const CHILDREN: usize = 3;

#[test]
fn a_tiny_budget_decides_each_trace_once_and_keeps_it_whole() {
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder()
        .tail_sampling(TailSampling::new().keep_ratio(0.5).max_buffered_spans(1))
        .sink(sink.clone())
        .build()
        .unwrap();
    let handle = guard.handle();
    let dispatch = dispatch(layer);
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let dispatch = dispatch.clone();
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    for i in 0..TRACES {
                        let root = tracing::info_span!("root", i);
                        root.in_scope(|| {
                            for _ in 0..CHILDREN {
                                tracing::info_span!("child").in_scope(|| tracing::info!("ev"));
                            }
                        });
                    }
                })
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    guard.shutdown(DEADLINE).unwrap();
    let stats = handle.stats();
    let tail = &stats.tail_sampling;
    assert_eq!(tail.traces_decided(), THREADS * TRACES, "{tail:#?}");
    // Every trace that reached the sink is whole: its root and all its children.
    let mut spans_per_trace: HashMap<String, usize> = HashMap::new();
    for r in sink.data() {
        if let Record::Span(s) = r {
            *spans_per_trace.entry(s.trace_id().to_string()).or_default() += 1;
        }
    }
    let partial: Vec<_> = spans_per_trace
        .iter()
        .filter(|(_, n)| **n != CHILDREN + 1)
        .collect();
    assert!(partial.is_empty(), "partial traces: {partial:?}");
    assert_eq!(
        spans_per_trace.len() as u64,
        tail.traces_kept_ratio,
        "{tail:#?}"
    );
    assert_eq!(
        stats.offered,
        stats.enqueued + stats.dropped + stats.sampled_out,
        "{stats:#?}"
    );
}

/// An `ERROR` event holds no record (it is written at once and marks its trace): with every
/// record of the budget held, it decided the oldest trace as is, as if it needed room, and a
/// trace whose root failed a moment later was dropped (adversary pass 30).
#[test]
fn an_error_event_elsewhere_does_not_force_a_full_budget() {
    use tracing_offload::ForcedDecision;
    let run = |other_fails: bool| {
        let sink = Collect::new("collect");
        let (layer, guard) = OffloadLayer::builder()
            .sink(sink.clone())
            .tail_sampling(TailSampling::new().keep_errors().max_buffered_spans(2))
            .build()
            .unwrap();
        let handle = guard.handle();
        with_layer(layer, || {
            let t = tracing::info_span!("t", otel.status_code = tracing::field::Empty);
            t.in_scope(|| {
                tracing::info_span!("a").in_scope(|| {});
                tracing::info_span!("b").in_scope(|| {});
            });
            // The budget's two records are held. Another request fails.
            if other_fails {
                tracing::info_span!(parent: None, "u").in_scope(|| tracing::error!("u failed"));
            }
            t.record("otel.status_code", "ERROR");
            drop(t); // decided at its root, with its error
        });
        handle.flush(DEADLINE).unwrap();
        guard.shutdown(DEADLINE).unwrap();
        (handle.stats(), names_sorted(&sink.data()))
    };
    let (alone, _) = run(false);
    assert_eq!(alone.tail_sampling.traces_kept_error, 1, "{alone:#?}");
    let (stats, names) = run(true);
    let tail = &stats.tail_sampling;
    assert_eq!(tail.forced_for(ForcedDecision::BufferFull), 0, "{tail:#?}");
    assert_eq!(tail.traces_kept_error, 2, "{tail:#?}");
    assert_eq!(names, ["a", "b", "event", "t", "u"]);
}
