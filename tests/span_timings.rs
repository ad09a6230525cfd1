//! A span's busy time (entered) and idle time (open, not entered), as a user reads them from
//! `SpanRecord::busy_idle` (exported as `busy_ns` / `idle_ns`): every entered stretch counts as
//! busy, once, on whichever thread it happened; the rest of the span's life is idle; a span
//! entered again while it is already entered is not counted twice.
mod support;

use std::time::{Duration, Instant};

use support::*;
use tracing_offload::{OffloadLayer, Record, SpanRecord};
use tracing_subscriber::prelude::*;

/// Keeps this thread busy for at least `d` (what a span's time is made of here; nothing waits
/// for another thread).
fn spend(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Runs `f` under a pipeline collecting into memory; returns the span named `name`.
fn span_after(name: &str, timings: bool, f: impl FnOnce()) -> SpanRecord {
    let sink = Collect::new("timings");
    let (layer, guard) = OffloadLayer::builder()
        .sink(sink.clone())
        .span_timings(timings)
        .build()
        .unwrap();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
    guard.shutdown(DEADLINE).unwrap();
    let spans: Vec<SpanRecord> = sink
        .data()
        .into_iter()
        .filter_map(|r| match r {
            Record::Span(s) if s.name() == name => Some((*s).clone()),
            _ => None,
        })
        .collect();
    assert_eq!(spans.len(), 1, "one span named {name}");
    spans.into_iter().next().unwrap()
}

/// Busy and idle add up to the span's duration (each is rounded once to nanoseconds), each is at
/// least what was spent in it, and the idle stretches were not counted as busy.
fn assert_timings(span: &SpanRecord, busy_at_least: Duration, idle_at_least: Duration) -> Duration {
    let (busy, idle) = span.busy_idle().expect("span timings are on");
    let total = busy + idle;
    let diff = total.abs_diff(span.duration());
    assert!(
        diff <= Duration::from_micros(2),
        "busy {busy:?} + idle {idle:?} = {total:?}, duration {:?}",
        span.duration()
    );
    assert!(busy >= busy_at_least, "busy {busy:?}");
    assert!(idle >= idle_at_least, "idle {idle:?}");
    assert!(
        busy <= span.duration() - idle_at_least,
        "busy {busy:?} of {:?}",
        span.duration()
    );
    busy
}

#[test]
fn entered_time_is_busy_and_the_rest_is_idle() {
    let span = span_after("work", true, || {
        let span = tracing::info_span!("work");
        spend(ms(20)); // idle
        {
            let _e = span.enter();
            spend(ms(30)); // busy
                           // Entered again while entered: still one busy stretch, not two.
            let _again = span.enter();
            spend(ms(10));
        }
        spend(ms(20)); // idle
        span.in_scope(|| spend(ms(10))); // busy
        spend(ms(10)); // idle
    });
    // The idle stretches were not counted as busy, nor the nested entry twice.
    assert_timings(&span, ms(50), ms(50));
}

#[test]
fn time_entered_on_other_threads_is_busy() {
    let span = span_after("moved", true, || {
        let span = tracing::info_span!("moved");
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        for _ in 0..2 {
            let span = span.clone();
            let dispatch = dispatch.clone();
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || span.in_scope(|| spend(ms(20))))
            })
            .join()
            .unwrap();
        }
        spend(ms(20)); // idle
    });
    assert_timings(&span, ms(40), ms(20));
}

#[test]
fn a_span_never_entered_is_all_idle() {
    let span = span_after("waiting", true, || {
        let _span = tracing::info_span!("waiting");
        spend(ms(10));
    });
    assert_eq!(
        assert_timings(&span, Duration::ZERO, ms(10)),
        Duration::ZERO
    );
}

#[test]
fn without_timings_there_are_none() {
    let span = span_after("plain", false, || {
        tracing::info_span!("plain").in_scope(|| spend(ms(1)));
    });
    assert_eq!(span.busy_idle(), None);
}
