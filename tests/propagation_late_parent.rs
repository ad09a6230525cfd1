//! Joining the caller's trace after the request span was made (middleware, `#[instrument]`):
//! `OffloadSpanExt::set_parent_traceparent` and recording the `traceparent` field both work while the span
//! has no children; afterwards the call is refused, counted, and the trace does not split.
mod support;

use support::*;
use tracing_offload::{
    OffloadLayer, OffloadSpanExt, Record, SetParentError, SpanId, SpanRecord, TraceId,
    TracesSampler,
};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn header(sampled: bool) -> String {
    format!("00-{TRACE}-{PARENT}-{}", if sampled { "01" } else { "00" })
}

fn spans(sink: &Collect) -> Vec<SpanRecord> {
    sink.data()
        .into_iter()
        .filter_map(|r| match r {
            Record::Span(s) => Some((*s).clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn set_parent_traceparent_and_recording_traceparent_join_the_remote_trace() {
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder().sink(sink.clone()).build().unwrap();
    with_layer(layer, || {
        let request = tracing::info_span!("request", method = "GET");
        request.set_parent_traceparent(&header(true)).unwrap();
        request.in_scope(|| drop(tracing::info_span!("child")));
        drop(request);
        let recorded = tracing::info_span!("recorded", traceparent = tracing::field::Empty);
        recorded.record("traceparent", header(true).as_str());
        drop(recorded);
    });
    guard.shutdown(DEADLINE).unwrap();
    let spans = spans(&sink);
    let trace = TraceId::from_hex(TRACE).unwrap();
    assert!(spans.iter().all(|s| s.trace_id() == trace), "{spans:#?}");
    for name in ["request", "recorded"] {
        let s = spans.iter().find(|s| s.name() == name).unwrap();
        assert_eq!(s.parent_span_id(), SpanId::from_hex(PARENT));
        assert!(s.parent_is_remote());
        // The header is transport metadata, not an attribute.
        assert!(s.fields().get("traceparent").is_none());
    }
    let request = spans.iter().find(|s| s.name() == "request").unwrap();
    let child = spans.iter().find(|s| s.name() == "child").unwrap();
    assert_eq!(child.parent_span_id(), Some(request.span_id()));
    assert_eq!(request.fields().get("method").unwrap().to_string(), "GET");
}

#[test]
fn a_parent_set_after_children_exist_is_refused_and_counted() {
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder().sink(sink.clone()).build().unwrap();
    with_layer(layer, || {
        let request = tracing::info_span!("request");
        let child = request.in_scope(|| tracing::info_span!("child"));
        assert_eq!(
            request.set_parent_traceparent(&header(true)),
            Err(SetParentError::HasChildren)
        );
        assert!(matches!(
            request.set_parent_traceparent("garbage"),
            Err(SetParentError::InvalidTraceparent(_))
        ));
        assert_eq!(
            tracing::Span::none().set_parent_traceparent(&header(true)),
            Err(SetParentError::NotRecorded)
        );
        drop(child);
    });
    guard.shutdown(DEADLINE).unwrap();
    assert_eq!(guard.handle().stats().reparent_refused, 1);
    let spans = spans(&sink);
    let request = spans.iter().find(|s| s.name() == "request").unwrap();
    let child = spans.iter().find(|s| s.name() == "child").unwrap();
    // The trace stayed whole: both kept the trace they started with.
    assert_eq!(child.trace_id(), request.trace_id());
    assert_ne!(request.trace_id().to_string(), TRACE);
}

#[test]
fn a_parent_based_sampler_follows_a_parent_set_later_both_ways() {
    // Ratio 0: a new root is never sampled; a sampled remote parent makes it sampled, with
    // the fields it was created with.
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder()
        .traces_sampler(TracesSampler::ParentBasedTraceIdRatio(0.0))
        .sink(sink.clone())
        .build()
        .unwrap();
    with_layer(layer, || {
        let joined = tracing::info_span!("joined", route = "/orders");
        assert!(joined.is_unsampled());
        joined.set_parent_traceparent(&header(true)).unwrap();
        assert!(!joined.is_unsampled());
        drop(joined);
        let alone = tracing::info_span!("alone");
        alone.set_parent_traceparent(&header(false)).unwrap();
        assert!(alone.is_unsampled());
        assert!(alone.traceparent().unwrap().ends_with("-00"));
        drop(alone);
    });
    guard.shutdown(DEADLINE).unwrap();
    let spans = spans(&sink);
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(spans[0].name(), "joined");
    assert_eq!(
        spans[0].fields().get("route").unwrap().to_string(),
        "/orders"
    );
}

#[test]
fn events_in_unsampled_traces_carry_their_ids_with_the_sampled_flag_clear() {
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder()
        .traces_sampler(TracesSampler::AlwaysOff)
        .sink(sink.clone())
        .build()
        .unwrap();
    let mut expected = None;
    with_layer(layer, || {
        let span = tracing::info_span!("unsampled");
        expected = span.offload_context();
        span.in_scope(|| tracing::info!("correlated"));
    });
    guard.shutdown(DEADLINE).unwrap();
    let event = sink.events().into_iter().next().unwrap();
    let c = event
        .span_context()
        .expect("the event carries its span's ids");
    assert_eq!(Some(c), expected);
    assert!(!c.sampled);
}

#[test]
fn a_parent_set_after_events_or_on_a_local_child_is_refused_and_counted() {
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder().sink(sink.clone()).build().unwrap();
    let handle = guard.handle();
    let (after_event, on_child) = with_layer(layer, || {
        // An event already went out with the span's own trace id: moving the span now would
        // leave it behind in a trace of its own.
        let request = tracing::info_span!("request", traceparent = tracing::field::Empty);
        request.in_scope(|| tracing::info!("before"));
        let after_event = request.set_parent_traceparent(&header(true));
        request.record("traceparent", header(true).as_str());
        drop(request);
        // A span with a parent in this process belongs to that parent's trace.
        let root = tracing::info_span!("root");
        let child =
            root.in_scope(|| tracing::info_span!("child", traceparent = tracing::field::Empty));
        let on_child = child.set_parent_traceparent(&header(true));
        child.record("traceparent", header(true).as_str());
        drop(child);
        drop(root);
        (after_event, on_child)
    });
    guard.shutdown(DEADLINE).unwrap();
    assert_eq!(after_event, Err(SetParentError::HasEvents));
    assert_eq!(on_child, Err(SetParentError::HasLocalParent));
    // Both calls and both recorded fields were refused, and counted.
    assert_eq!(handle.stats().reparent_refused, 4);
    // Nothing split: the event and its span share a trace, the child its root's.
    let data = sink.data();
    let spans = spans(&sink);
    let request = spans.iter().find(|s| s.name() == "request").unwrap();
    let event = data
        .iter()
        .find_map(|r| match r {
            Record::Event(e) => Some(e.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(event.span_context().unwrap().trace_id, request.trace_id());
    assert_ne!(request.trace_id(), TraceId::from_hex(TRACE).unwrap());
    let root = spans.iter().find(|s| s.name() == "root").unwrap();
    let child = spans.iter().find(|s| s.name() == "child").unwrap();
    assert_eq!(child.trace_id(), root.trace_id());
    assert_eq!(child.parent_span_id(), Some(root.span_id()));
    assert!(!child.parent_is_remote());
}

#[test]
fn an_event_that_was_sampled_out_does_not_stop_a_late_parent() {
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder()
        .sample_rate(0.0)
        .sink(sink.clone())
        .build()
        .unwrap();
    let handle = guard.handle();
    let joined = with_layer(layer, || {
        let request = tracing::info_span!("request");
        // Sampled out: it never leaves the process, so joining the caller's trace now splits
        // nothing.
        request.in_scope(|| tracing::info!("sampled out"));
        let joined = request.set_parent_traceparent(&header(true));
        // Errors are kept whatever the rate: this one goes out in the joined trace.
        request.in_scope(|| tracing::error!("kept"));
        drop(request);
        joined
    });
    guard.shutdown(DEADLINE).unwrap();
    assert_eq!(joined, Ok(()));
    assert_eq!(handle.stats().reparent_refused, 0);
    let trace = TraceId::from_hex(TRACE).unwrap();
    let spans = spans(&sink);
    let request = spans.iter().find(|s| s.name() == "request").unwrap();
    assert_eq!(request.trace_id(), trace);
    assert_eq!(request.parent_span_id(), SpanId::from_hex(PARENT));
    let events = sink.events();
    assert_eq!(events.len(), 1, "only the error is kept");
    assert_eq!(events[0].span_context().unwrap().trace_id, trace);
}

/// A `traceparent` given at creation to a span with a local parent (an `#[instrument]`ed
/// handler under the request span of a tower layer) is refused as one recorded later is:
/// counted, the span kept in its local trace. It was dropped without a count (adversary pass
/// 48), while the same value recorded later was counted.
#[test]
fn a_traceparent_given_at_creation_to_a_span_with_a_local_parent_is_counted() {
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder().sink(sink.clone()).build().unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        let server = tracing::info_span!("server");
        server.in_scope(|| {
            let value = header(true);
            drop(tracing::info_span!("at creation", traceparent = %value));
            let later = tracing::info_span!("later", traceparent = tracing::field::Empty);
            later.record("traceparent", value.as_str());
        });
    });
    guard.shutdown(DEADLINE).unwrap();
    assert_eq!(handle.stats().reparent_refused, 2);
    let spans = spans(&sink);
    let server = spans.iter().find(|s| s.name() == "server").unwrap();
    for name in ["at creation", "later"] {
        let span = spans.iter().find(|s| s.name() == name).unwrap();
        assert_eq!(span.trace_id(), server.trace_id(), "{name}");
        assert_eq!(span.parent_span_id(), Some(server.span_id()), "{name}");
    }
}

/// A remote parent set on a span after the span's own `traceparent()` was handed out (an
/// outgoing call made from the root before the incoming header was applied): the callee had
/// joined the span's first trace, and moving the span to another one left the callee's part
/// orphaned, with nothing refused, counted or said (adversary pass 62). It is refused now.
#[test]
fn a_parent_set_after_the_span_sent_its_traceparent_on_is_refused() {
    use tracing_offload::{OffloadLayer, OffloadSpanExt, SetParentError};
    const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (front, back) = (Collect::new("a"), Collect::new("b"));
    let (la, ga) = OffloadLayer::builder().sink(front.clone()).build().unwrap();
    let (lb, gb) = OffloadLayer::builder().sink(back.clone()).build().unwrap();
    let (a, b) = (dispatch(la), dispatch(lb));
    let result = tracing::dispatcher::with_default(&a, || {
        let request = tracing::info_span!("request");
        // An outgoing call made in the root itself (no child span, no event).
        let outgoing = request.traceparent().unwrap();
        tracing::dispatcher::with_default(&b, || {
            tracing::info_span!("callee", traceparent = %outgoing).in_scope(|| {});
        });
        request.set_parent_traceparent(INCOMING)
    });
    ga.shutdown(DEADLINE).unwrap();
    gb.shutdown(DEADLINE).unwrap();
    let a_spans = span_records(&front.data());
    let b_spans = span_records(&back.data());
    let (request, callee) = (
        span_named(&a_spans, "request"),
        span_named(&b_spans, "callee"),
    );
    assert_eq!(result, Err(SetParentError::Propagated));
    assert_eq!(callee.trace_id(), request.trace_id(), "one trace, whole");
    assert_eq!(callee.parent_span_id(), Some(request.span_id()));
    assert_eq!(ga.handle().stats().reparent_refused, 1);
}
