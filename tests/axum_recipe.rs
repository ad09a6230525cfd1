//! The axum + `TraceLayer` recipe of `examples/axum_service.rs`, for real: the service calls
//! itself over HTTP for each request, under a parent-based ratio sampler. Every request of the
//! callee joins its caller's trace (no orphan root), every kept trace is whole, and every event
//! carries its trace id, kept or not.
#![cfg(feature = "otlp")]
mod support;

#[allow(dead_code)]
#[path = "../examples/axum_service.rs"]
mod service;

use std::collections::BTreeMap;

use support::*;
use tracing_offload::{OffloadLayer, Record, SpanRecord, TraceId, TracesSampler};
use tracing_subscriber::prelude::*;

const REQUESTS: usize = 40;

#[test]
fn requests_made_by_trace_layer_join_their_callers_trace() {
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder()
        .traces_sampler(TracesSampler::ParentBasedTraceIdRatio(0.5))
        .sink(sink.clone())
        .build()
        .unwrap();
    // The service's threads (the runtime's workers) log too: a global subscriber, as in an
    // application. This test binary has no other test.
    tracing_subscriber::registry().with(layer).init();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let base = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = service::app(base.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    });
    for _ in 0..REQUESTS {
        let reply = ureq::get(format!("{base}/checkout"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        assert_eq!(reply, "checked out order 42");
    }
    guard.handle().flush(DEADLINE).unwrap();
    let data = sink.data();
    let mut traces: BTreeMap<TraceId, Vec<SpanRecord>> = BTreeMap::new();
    for r in &data {
        if let Record::Span(s) = r {
            traces.entry(s.trace_id()).or_default().push((**s).clone());
        }
    }
    // Each kept trace: the checkout request (a root here), the orders request (its remote
    // child: it came back over HTTP) and the lookup under it. No orders request alone.
    for (trace, spans) in &traces {
        let uri = |s: &SpanRecord| s.fields().get("uri").map(|u| u.to_string());
        let checkout = spans
            .iter()
            .find(|s| uri(s).as_deref() == Some("/checkout"))
            .unwrap_or_else(|| panic!("an orphan in trace {trace}: {spans:#?}"));
        let orders = spans
            .iter()
            .find(|s| uri(s).as_deref() == Some("/orders/42"))
            .unwrap_or_else(|| panic!("trace {trace} is not whole: {spans:#?}"));
        let lookup = spans.iter().find(|s| s.name() == "lookup").unwrap();
        assert_eq!(spans.len(), 3, "{spans:#?}");
        assert_eq!(checkout.parent_span_id(), None);
        assert_eq!(orders.parent_span_id(), Some(checkout.span_id()));
        assert!(orders.parent_is_remote());
        assert_eq!(lookup.parent_span_id(), Some(orders.span_id()));
    }
    assert!(
        !traces.is_empty() && traces.len() < REQUESTS,
        "the ratio keeps some: {}",
        traces.len()
    );
    // Log correlation: both requests' events carry a trace id, the same one per request pair.
    let events: Vec<_> = data
        .iter()
        .filter_map(|r| match r {
            Record::Event(e) if e.target() == "axum_recipe::service" => Some(e.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(events.len(), 2 * REQUESTS, "{events:#?}");
    assert!(events.iter().all(|e| e.trace_id().is_some()));
    let sampled = events
        .iter()
        .filter(|e| e.span_context().unwrap().sampled)
        .count();
    assert_eq!(sampled, 2 * traces.len());
}
