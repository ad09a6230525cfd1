//! Span state cannot leak: a million spans, with dropped close records and spans kept open and
//! then dropped, leave no live span state; a long-lived span does not grow as events arrive.
mod support;

use support::*;
use tracing_offload::{sink, Backpressure, OffloadLayer};

#[test]
fn a_million_spans_leave_no_span_state_behind() {
    let (layer, guard) = OffloadLayer::builder()
        .capacity(64) // tiny: most close records are dropped
        .backpressure(Backpressure::DropNewest)
        .sink(Collect::new("collect").slow(std::time::Duration::from_micros(50)))
        .build()
        .unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        let mut kept_open = Vec::new();
        for i in 0..1_000_000u64 {
            let span = tracing::info_span!("work", i);
            if i % 10_000 == 0 {
                kept_open.push(span); // kept open for a while, then dropped below
            } else {
                let _e = span.enter();
                tracing::debug!("inside");
            }
        }
        assert_eq!(handle.stats().open_spans, kept_open.len() as u64);
        drop(kept_open);
    });
    let stats = handle.stats();
    assert_eq!(stats.open_spans, 0, "{stats:#?}");
    assert!(
        stats.dropped > 0,
        "the test should exercise dropped close records"
    );
    guard.shutdown(DEADLINE).unwrap();
    assert_eq!(guard.handle().stats().open_spans, 0);
}

#[test]
fn a_long_lived_span_keeps_at_most_the_event_limit() {
    let (channel, rx) = sink::Channel::new(1 << 20);
    let (layer, guard) = OffloadLayer::builder()
        .span_event_limit(16)
        .sink(channel)
        .build()
        .unwrap();
    with_layer(layer, || {
        let span = tracing::info_span!("long", step = 0u64);
        let _e = span.enter();
        for step in 0..100_000u64 {
            span.record("step", step); // replaces, never appends
            tracing::info!(step, "progress");
        }
    });
    guard.shutdown(DEADLINE).unwrap();
    let spans = span_records(&rx.drain());
    let span = span_named(&spans, "long");
    assert_eq!(span.events().len(), 16);
    assert_eq!(span.dropped_events(), 100_000 - 16);
    assert_eq!(span.fields().len(), 1);
    assert_eq!(guard.handle().stats().span_events_dropped, 100_000 - 16);
}
