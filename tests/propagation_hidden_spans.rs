//! An outgoing `traceparent` taken inside a span the OffloadLayer does not record because of
//! its per-layer filter (the README's recommended way to filter it:
//! `offload_layer.with_filter(..)`), while another layer (a `fmt` layer, say) sees that span.
//!
//! README: "get the value for an outgoing request from `span.traceparent()`"; recipe:
//! "outgoing: tracing::Span::current().traceparent() (or inject_traceparent)". A child span or
//! an event made in the same place is put in the nearest recorded ancestor's trace (the
//! registry walks to it); the header for the outgoing call must carry that same trace, or the
//! downstream service starts a new one and the distributed trace splits with nothing said
//! (adversary pass 62: it was `None`; and an event given such a span as its explicit parent
//! was taken for one outside any span).
mod support;

use std::time::Duration;

use support::*;
use tracing_offload::{Backpressure, OffloadLayer, OffloadSpanExt, SpanRecord};

const REMOTE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn spans_of(c: &Collect) -> Vec<SpanRecord> {
    span_records(&c.data())
}
use tracing_subscriber::filter::{filter_fn, LevelFilter};
use tracing_subscriber::prelude::*;

/// A layer that sees every span (stands for `fmt::layer()` at debug).
struct SeesAll;
impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SeesAll {}

/// Inside a `debug_span!` hidden from the offload layer by its per-layer
/// INFO filter, `Span::current().traceparent()` is `None` (so `inject_traceparent` adds no
/// header), though an event or a child span made right there belongs to the request's trace.
#[test]
fn traceparent_inside_a_span_hidden_by_a_per_layer_filter_names_the_recorded_trace() {
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder()
        .backpressure(Backpressure::Block {
            timeout: Duration::from_secs(60),
        })
        .sink(sink.clone())
        .build()
        .unwrap();
    let subscriber = tracing_subscriber::registry()
        .with(SeesAll)
        .with(layer.with_filter(LevelFilter::INFO));
    let (request_trace, outgoing, child_trace) =
        tracing::subscriber::with_default(subscriber, || {
            let request = tracing::info_span!("request");
            let _r = request.enter();
            let request_trace = request.offload_context().unwrap().trace_id;
            let client = tracing::debug_span!("http_client");
            let _c = client.enter();
            tracing::info!("sending");
            let outgoing = tracing::Span::current().traceparent();
            let child = tracing::info_span!("encode");
            let child_trace = child.offload_context().map(|c| c.trace_id);
            (request_trace, outgoing, child_trace)
        });
    guard.shutdown(DEADLINE).unwrap();
    let events = sink.events();
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].trace_id(),
        Some(request_trace),
        "the event is in the request's trace"
    );
    assert_eq!(
        child_trace,
        Some(request_trace),
        "a child made there is in the request's trace"
    );
    let prefix = format!("00-{request_trace}-");
    assert!(
        outgoing.as_deref().is_some_and(|h| h.starts_with(&prefix)),
        "the header for an outgoing call made in the same place must carry the request's trace \
         ({request_trace}); got {outgoing:?}: the callee starts a new trace and nothing counts \
         or says it"
    );
}

/// An event given its parent explicitly (`parent: &span`), where that span
/// is hidden from the layer by its per-layer filter, was taken for an event outside any span
/// (no trace id, not held with its trace), while the same event made contextually inside the
/// same span is put in the request's trace. With tail sampling dropping the request's trace,
/// the explicit one is written anyway: a dropped trace written in part. README: "the trace is
/// then decided and written whole ... or not at all"; JSON `trace_id`, `span_id`: "events in a
/// span".
#[test]
fn an_event_given_a_hidden_parent_explicitly_stays_in_its_trace() {
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder()
        .backpressure(Backpressure::Block {
            timeout: Duration::from_secs(60),
        })
        // No criterion: every sampled local trace is dropped whole.
        .tail_sampling(tracing_offload::TailSampling::new())
        .sink(sink.clone())
        .build()
        .unwrap();
    let handle = guard.handle();
    let subscriber = tracing_subscriber::registry()
        .with(SeesAll)
        .with(layer.with_filter(LevelFilter::INFO));
    tracing::subscriber::with_default(subscriber, || {
        let request = tracing::info_span!("request");
        let _r = request.enter();
        let hidden = tracing::debug_span!("hidden");
        hidden.in_scope(|| tracing::info!("contextual"));
        tracing::info!(parent: &hidden, "explicit");
    });
    guard.shutdown(DEADLINE).unwrap();
    let written: Vec<String> = sink
        .events()
        .iter()
        .map(|e| {
            format!(
                "{} trace={:?}",
                e.message().map(|m| m.text.to_owned()).unwrap_or_default(),
                e.trace_id()
            )
        })
        .collect();
    let t = handle.stats().tail_sampling;
    assert!(
        written.is_empty(),
        "the request's trace was dropped ({} records sampled out), yet these of its events \
         were written: {written:?}",
        t.sampled_out
    );
}

/// One layer, filtered at INFO; `request` recorded, `client` (a `debug_span!` child of
/// `request` given as explicit parent, the way a span handed to a spawned task is made) hidden.
/// An event inside `client`, with `request` not entered on this thread, was taken for one
/// outside any span: no trace id (and, under tail sampling, written whatever its trace's fate):
/// the layer's own stack of entered spans was empty, and it trusted that over the registry
/// (adversary pass 63).
#[test]
fn a_contextual_event_in_a_hidden_span_whose_ancestor_is_not_entered_here_is_in_its_trace() {
    let sink = Collect::new("c");
    let (layer, guard) = OffloadLayer::builder().sink(sink.clone()).build().unwrap();
    let subscriber = tracing_subscriber::registry()
        .with(SeesAll)
        .with(layer.with_filter(LevelFilter::INFO));
    let dispatch = tracing::Dispatch::new(subscriber);
    let request = tracing::dispatcher::with_default(&dispatch, || tracing::info_span!("request"));
    let client = tracing::dispatcher::with_default(
        &dispatch,
        || tracing::debug_span!(parent: &request, "client"),
    );
    // The task that owns `client` runs on another thread.
    let d = dispatch.clone();
    std::thread::spawn(move || {
        tracing::dispatcher::with_default(&d, || {
            client.in_scope(|| tracing::info!("sending"));
        })
    })
    .join()
    .unwrap();
    let ctx = tracing::dispatcher::with_default(&dispatch, || request.offload_context()).unwrap();
    drop(request);
    drop(dispatch);
    guard.shutdown(DEADLINE).unwrap();
    let e = sink.events();
    assert_eq!(e.len(), 1);
    assert_eq!(
        (e[0].trace_id(), e[0].span_id()),
        (Some(ctx.trace_id), Some(ctx.span_id)),
        "the event made in `client` is not in `request`'s trace"
    );
}

/// Two layers; the `client` span is hidden from `audit` but recorded by `all`. The
/// outgoing `traceparent()` taken in `client` marks `client` only; for the audit layer the
/// events made in `client` belong to `request` (its nearest recorded ancestor), which is not
/// marked. A remote parent set on `request` afterwards: `all` refused (`HasChildren`) while
/// `audit` joined the remote trace, leaving the trace the callee joined (adversary pass 63).
/// Each layer marks the ancestor it records now.
#[test]
fn traceparent_in_a_span_one_layer_hides_protects_that_layers_ancestor() {
    let all = Collect::new("all");
    let audit = Collect::new("audit");
    let (layer_all, g1) = OffloadLayer::builder().sink(all.clone()).build().unwrap();
    let (layer_audit, g2) = OffloadLayer::builder().sink(audit.clone()).build().unwrap();
    let subscriber = tracing_subscriber::registry()
        .with(layer_all)
        .with(layer_audit.with_filter(filter_fn(|m| m.name() != "client")));
    let (outgoing, result) = tracing::subscriber::with_default(subscriber, || {
        let request = tracing::info_span!("request");
        let client = tracing::info_span!(parent: &request, "client");
        let outgoing = client.traceparent().unwrap();
        // The outgoing call made in `client`, nothing logged (a logged event would make the
        // audit layer refuse with `HasEvents`).
        drop(client);
        let result = request.set_parent_traceparent(REMOTE);
        (outgoing, result)
    });
    g1.shutdown(DEADLINE).unwrap();
    g2.shutdown(DEADLINE).unwrap();
    let callee_trace = &outgoing[3..35];
    let audit_request = spans_of(&audit)
        .into_iter()
        .find(|s| s.name() == "request")
        .unwrap();
    let all_request = spans_of(&all)
        .into_iter()
        .find(|s| s.name() == "request")
        .unwrap();
    assert_eq!(
        all_request.trace_id().to_string(),
        callee_trace,
        "held at `all`"
    );
    assert_eq!(
        audit_request.trace_id().to_string(),
        callee_trace.to_string(),
        "set_parent_traceparent returned {result:?}; the audit destination's request left \
         the trace the callee joined ({outgoing})"
    );
}
