//! A root span given a W3C `traceparent` joins the remote trace, and the parent-based samplers
//! honour the remote sampled flag; its local children follow it.
mod support;

use support::*;
use tracing_offload::{OffloadLayer, Record, SpanId, SpanRecord, TraceId, TracesSampler};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn traceparent(flags: &str) -> String {
    format!("00-{TRACE}-{PARENT}-{flags}")
}

/// Runs one request span (given `traceparent`, in all three ways a field can be recorded) with
/// a child under `sampler`, and returns the spans kept.
#[track_caller]
fn spans_kept(sampler: TracesSampler, header: &str) -> Vec<SpanRecord> {
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder()
        .traces_sampler(sampler)
        .sink(sink.clone())
        .build()
        .unwrap();
    with_layer(layer, || {
        {
            let _r = tracing::info_span!("request", traceparent = header).entered();
            let _c = tracing::info_span!("child").entered();
        }
        {
            let _r = tracing::info_span!("request", traceparent = %header).entered();
        }
        {
            let _r = tracing::info_span!("request", traceparent = ?header).entered();
        }
    });
    guard.shutdown(DEADLINE).unwrap();
    sink.data()
        .into_iter()
        .map(|r| match r {
            Record::Span(s) => (*s).clone(),
            other => panic!("only spans expected, got {other:?}"),
        })
        .collect()
}

#[test]
fn a_sampled_remote_parent_is_followed_even_by_parentbased_always_off() {
    let spans = spans_kept(TracesSampler::ParentBasedAlwaysOff, &traceparent("01"));
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let trace = TraceId::from_hex(TRACE).unwrap();
    assert!(spans.iter().all(|s| s.trace_id() == trace));
    let roots: Vec<_> = spans
        .iter()
        .filter(|s| s.metadata().name() == "request")
        .collect();
    assert_eq!(roots.len(), 3);
    for root in roots {
        assert_eq!(root.parent_span_id(), SpanId::from_hex(PARENT));
        assert!(root.parent_is_remote());
    }
    let child = spans
        .iter()
        .find(|s| s.metadata().name() == "child")
        .unwrap();
    assert!(!child.parent_is_remote());
    assert_ne!(child.parent_span_id(), SpanId::from_hex(PARENT));
}

#[test]
fn an_unsampled_remote_parent_drops_the_trace_under_parentbased_always_on() {
    let spans = spans_kept(TracesSampler::ParentBasedAlwaysOn, &traceparent("00"));
    assert!(spans.is_empty(), "{spans:#?}");
}

#[test]
fn plain_samplers_decide_alone_as_in_opentelemetry() {
    // always_on ignores the remote flag, but the span still joins the remote trace.
    let spans = spans_kept(TracesSampler::AlwaysOn, &traceparent("00"));
    assert_eq!(spans.len(), 4);
    assert!(spans.iter().all(|s| s.trace_id().to_string() == TRACE));
}

#[test]
fn an_invalid_traceparent_starts_a_new_trace() {
    for bad in [
        "",
        "00-not-a-traceparent",
        &traceparent("01").to_uppercase(),
    ] {
        let spans = spans_kept(TracesSampler::ParentBasedAlwaysOn, bad);
        assert_eq!(spans.len(), 4, "{bad:?}");
        for s in spans.iter().filter(|s| s.metadata().name() == "request") {
            assert_eq!(s.parent_span_id(), None, "{bad:?}");
            assert!(!s.parent_is_remote());
            assert_ne!(s.trace_id().to_string(), TRACE);
        }
    }
}
