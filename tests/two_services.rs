//! Traces whole across services: two pipelines in one process stand for two services, the first
//! calling the second with a W3C `traceparent` for each of 1,000 requests, under the ratio
//! samplers (parent-based and not) at several ratios.
//!
//! * Zero orphan roots downstream: the callee records a trace exactly when the caller did, and
//!   its request span is the child of the caller's span.
//! * Every kept trace is whole (the caller's span, the callee's span and its child).
//! * Every event inside a span carries its trace id, sampled or not (log correlation).
//! * The same span counts per trace as `tracing-opentelemetry` with the OpenTelemetry SDK
//!   gives for the same trace ids, propagated by the SDK's own `TraceContextPropagator`.
mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, InMemorySpanExporter, Sampler, SdkTracerProvider};
use support::*;
use tracing::Dispatch;
use tracing_offload::{OffloadLayer, OffloadSpanExt, Record, TraceId, TracesSampler};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::prelude::*;

const REQUESTS: usize = 1_000;

/// What one service does per request: the caller's span, and the callee's request span with a
/// child and an event in it.
fn call(caller: &Dispatch, callee: &Dispatch, inject: impl Fn(&tracing::Span) -> String) {
    let header = tracing::dispatcher::with_default(caller, || {
        let client = tracing::info_span!("client_request");
        let _e = client.enter();
        inject(&client)
    });
    tracing::dispatcher::with_default(callee, || {
        let server = tracing::info_span!("server_request", traceparent = %header);
        let _s = server.enter();
        let db = tracing::info_span!("db_query");
        let _d = db.enter();
        tracing::info!("rows fetched");
    });
}

/// Ours: two pipelines; returns span counts per trace, the headers sent (in order), and checks
/// the orphan, wholeness and correlation properties on the way.
fn ours(sampler: TracesSampler) -> (BTreeMap<TraceId, usize>, Vec<TraceId>) {
    let (front, back) = (Collect::new("frontend"), Collect::new("backend"));
    let (layer_a, guard_a) = OffloadLayer::builder()
        .traces_sampler(sampler)
        .sink(front.clone())
        .build()
        .unwrap();
    let (layer_b, guard_b) = OffloadLayer::builder()
        .traces_sampler(sampler)
        .sink(back.clone())
        .build()
        .unwrap();
    let (a, b) = (dispatch(layer_a), dispatch(layer_b));
    let sent = Mutex::new(Vec::new());
    for _ in 0..REQUESTS {
        call(&a, &b, |span| {
            let header = span
                .traceparent()
                .expect("every span propagates, sampled or not");
            sent.lock().unwrap().push(header.clone());
            header
        });
    }
    guard_a.shutdown(DEADLINE).unwrap();
    guard_b.shutdown(DEADLINE).unwrap();
    let sent: Vec<String> = sent.into_inner().unwrap();
    let parsed: Vec<(TraceId, String, bool)> = sent
        .iter()
        .map(|h| {
            let parts: Vec<&str> = h.split('-').collect();
            (
                TraceId::from_hex(parts[1]).unwrap(),
                parts[2].to_owned(),
                parts[3] == "01",
            )
        })
        .collect();
    let mut counts = BTreeMap::new();
    let (a_records, b_records) = (front.data(), back.data());
    for r in a_records.iter().chain(&b_records) {
        if let Record::Span(s) = r {
            *counts.entry(s.trace_id()).or_insert(0) += 1;
        }
    }
    // The caller's sampled flag is what the callee follows (parent-based), or the callee's
    // own decision on the same trace id agrees with it (ratio): no orphan, no fragment.
    for (trace, span_id, sampled) in &parsed {
        let expected = if *sampled { 3 } else { 0 };
        assert_eq!(
            counts.get(trace).copied().unwrap_or(0),
            expected,
            "trace {trace}"
        );
        if *sampled {
            let server = b_records
                .iter()
                .find_map(|r| match r {
                    Record::Span(s) if s.trace_id() == *trace && s.name() == "server_request" => {
                        Some(s.clone())
                    }
                    _ => None,
                })
                .unwrap();
            assert_eq!(server.parent_span_id().unwrap().to_string(), *span_id);
            assert!(server.parent_is_remote());
        }
    }
    // Log correlation: every event carries its trace, kept or not.
    let events: Vec<_> = b_records
        .iter()
        .filter_map(|r| match r {
            Record::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(events.len(), REQUESTS);
    for (e, (trace, _, sampled)) in events.iter().zip(&parsed) {
        let c = e
            .span_context()
            .expect("a trace id on every event in a span");
        assert_eq!((c.trace_id, c.sampled), (*trace, *sampled));
    }
    (counts, parsed.into_iter().map(|(t, _, _)| t).collect())
}

/// Replays the trace ids the first service made, in order, for the SDK's first service.
#[derive(Debug)]
struct Replay(Mutex<std::vec::IntoIter<TraceId>>);

impl IdGenerator for Replay {
    fn new_trace_id(&self) -> opentelemetry::trace::TraceId {
        let next = self
            .0
            .lock()
            .unwrap()
            .next()
            .expect("one trace id per request");
        opentelemetry::trace::TraceId::from_bytes(next.0)
    }
    fn new_span_id(&self) -> opentelemetry::trace::SpanId {
        opentelemetry_sdk::trace::RandomIdGenerator::default().new_span_id()
    }
}

/// `tracing-opentelemetry` + the SDK for the same requests and trace ids.
fn theirs(sampler: fn() -> Sampler, traces: Vec<TraceId>) -> BTreeMap<TraceId, usize> {
    let (export_a, export_b) = (
        InMemorySpanExporter::default(),
        InMemorySpanExporter::default(),
    );
    let provider_a = SdkTracerProvider::builder()
        .with_sampler(sampler())
        .with_id_generator(Replay(Mutex::new(traces.into_iter())))
        .with_simple_exporter(export_a.clone())
        .build();
    let provider_b = SdkTracerProvider::builder()
        .with_sampler(sampler())
        .with_simple_exporter(export_b.clone())
        .build();
    let a = Dispatch::new(
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider_a.tracer("frontend"))),
    );
    let b = Dispatch::new(
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider_b.tracer("backend"))),
    );
    let propagator = TraceContextPropagator::new();
    for _ in 0..REQUESTS {
        // The callee takes the header through the SDK's propagator, as a real service would.
        let header = tracing::dispatcher::with_default(&a, || {
            let client = tracing::info_span!("client_request");
            let _e = client.enter();
            let mut carrier = HashMap::new();
            propagator.inject_context(&client.context(), &mut carrier);
            carrier.remove("traceparent").unwrap()
        });
        tracing::dispatcher::with_default(&b, || {
            let server = tracing::info_span!("server_request");
            let carrier = HashMap::from([("traceparent".to_owned(), header)]);
            let _ = server.set_parent(propagator.extract(&carrier));
            let _s = server.enter();
            let db = tracing::info_span!("db_query");
            let _d = db.enter();
            tracing::info!("rows fetched");
        });
    }
    provider_a.force_flush().unwrap();
    provider_b.force_flush().unwrap();
    let mut counts = BTreeMap::new();
    for s in export_a
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .chain(export_b.get_finished_spans().unwrap())
    {
        *counts
            .entry(TraceId(s.span_context.trace_id().to_bytes()))
            .or_insert(0) += 1;
    }
    counts
}

#[test]
fn traces_stay_whole_across_two_services_as_with_the_opentelemetry_sdk() {
    let cases: [(TracesSampler, fn() -> Sampler); 4] = [
        (TracesSampler::ParentBasedTraceIdRatio(0.5), || {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(0.5)))
        }),
        (TracesSampler::ParentBasedTraceIdRatio(0.1), || {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(0.1)))
        }),
        (TracesSampler::TraceIdRatio(0.5), || {
            Sampler::TraceIdRatioBased(0.5)
        }),
        (TracesSampler::TraceIdRatio(0.25), || {
            Sampler::TraceIdRatioBased(0.25)
        }),
    ];
    for (sampler, sdk) in cases {
        let (our_counts, traces) = ours(sampler);
        let kept = our_counts.len();
        assert!(kept > 0 && kept < REQUESTS, "{sampler}: {kept} kept");
        assert_eq!(
            our_counts,
            theirs(sdk, traces),
            "{sampler}: span counts per trace"
        );
    }
}
