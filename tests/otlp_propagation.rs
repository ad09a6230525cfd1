//! Two processes' worth of pipelines pass a W3C `traceparent`: the collector sees one trace.
#![cfg(feature = "otlp")]
mod support;

use support::collector::Collector;
use support::*;
use tracing_offload::sink::Otlp;
use tracing_offload::{OffloadLayer, OffloadSpanExt};

fn service(collector: &Collector, name: &str) -> (tracing::Dispatch, tracing_offload::Guard) {
    let sink = Otlp::new()
        .endpoint(collector.grpc_endpoint())
        .service_name(name);
    let (layer, guard) = OffloadLayer::builder().sink(sink).build().unwrap();
    (dispatch(layer), guard)
}

#[test]
fn a_traceparent_joins_two_services_into_one_trace() {
    let Some(collector) = Collector::start() else {
        return;
    };
    let (frontend, frontend_guard) = service(&collector, "frontend");
    let (backend, backend_guard) = service(&collector, "backend");

    // The frontend makes a request inside its span and sends its traceparent...
    let header = tracing::dispatcher::with_default(&frontend, || {
        let span = tracing::info_span!("GET /checkout", otel.kind = "client");
        let mut headers = http::HeaderMap::new();
        assert!(tracing_offload::propagation::inject_traceparent(
            &span,
            &mut headers
        ));
        headers
    });
    // ...which the backend (another thread, another pipeline) continues.
    std::thread::spawn(move || {
        tracing::dispatcher::with_default(&backend, || {
            let tp = tracing_offload::propagation::traceparent_from_headers(&header).unwrap();
            let span =
                tracing::info_span!("handle checkout", traceparent = tp, otel.kind = "server");
            let _e = span.enter();
            tracing::info_span!("db query").in_scope(|| {});
        })
    })
    .join()
    .unwrap();
    frontend_guard.shutdown(DEADLINE).unwrap();
    backend_guard.shutdown(DEADLINE).unwrap();

    let spans = collector.wait_spans(3);
    let find = |n: &str| spans.iter().find(|s| s.name == n).unwrap().clone();
    let (client, server, db) = (
        find("GET /checkout"),
        find("handle checkout"),
        find("db query"),
    );
    assert_eq!(server.trace_id, client.trace_id);
    assert_eq!(db.trace_id, client.trace_id);
    assert_eq!(server.parent_id, client.span_id);
    assert_eq!(db.parent_id, server.span_id);
    let service = |s: &support::collector::SpanOut| {
        s.resource
            .iter()
            .find(|(k, _)| k == "service.name")
            .unwrap()
            .1
            .clone()
    };
    assert_eq!(service(&client), "Str(frontend)");
    assert_eq!(service(&server), "Str(backend)");
}

#[test]
fn unsampled_spans_propagate_their_trace_with_the_sampled_flag_clear() {
    let (layer, guard) = OffloadLayer::builder()
        .traces_sampler(tracing_offload::TracesSampler::AlwaysOff)
        .build()
        .unwrap();
    with_layer(layer, || {
        let span = tracing::info_span!("unsampled");
        assert!(span.is_unsampled());
        let header = span
            .traceparent()
            .expect("an unsampled span still has a context");
        assert!(
            header.starts_with("00-") && header.ends_with("-00"),
            "{header}"
        );
        let child = span.in_scope(|| tracing::info_span!("child"));
        let c = child.offload_context().unwrap();
        assert_eq!(c.trace_id, span.offload_context().unwrap().trace_id);
        assert!(!c.sampled);
        assert_eq!(tracing::Span::none().traceparent(), None);
    });
    drop(guard);
}
