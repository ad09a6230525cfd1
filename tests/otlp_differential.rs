//! The same instrumented workload sent once through this crate and once through
//! `tracing-opentelemetry` + the OpenTelemetry SDK to the same collector: the same span names,
//! parentage, kinds, attributes, span events and statuses (ids and timings aside).
#![cfg(feature = "otlp")]
mod support;

use std::collections::BTreeSet;

use opentelemetry::trace::TracerProvider as _;
use support::collector::{Collector, SpanOut};
use support::*;
use tracing_offload::sink::Otlp;
use tracing_offload::OffloadLayer;
use tracing_subscriber::prelude::*;

fn workload() {
    let root = tracing::info_span!("order", id = 7i64, express = true, otel.kind = "server");
    let _root = root.enter();
    tracing::info!(step = "validate", "validating");
    tracing::info_span!("db", table = "orders", otel.name = "db.select").in_scope(|| {
        tracing::debug!(rows = 3i64, "fetched");
    });
    tracing::info_span!("pay", amount = 9.5, otel.kind = "client").in_scope(|| {
        tracing::error!(code = 402i64, "declined");
    });
    tracing::info_span!("ship", carrier = "dhl", otel.status_code = "ok").in_scope(|| {
        tracing::warn!(minutes = 90i64, "slow carrier");
    });
}

/// A span reduced to what both pipelines must agree on.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Shape {
    name: String,
    parent: String,
    kind: String,
    status: String,
    attributes: BTreeSet<(String, String)>,
    events: Vec<(String, BTreeSet<(String, String)>)>,
}

/// Attributes each pipeline adds on its own (source locations, threads, timings, event level
/// and target) are left out.
fn user(attrs: &[(String, String)]) -> BTreeSet<(String, String)> {
    attrs
        .iter()
        .filter(|(k, _)| {
            !k.starts_with("code.")
                && !k.starts_with("thread.")
                && !matches!(k.as_str(), "busy_ns" | "idle_ns" | "level" | "target")
        })
        .cloned()
        .collect()
}

fn shapes(spans: &[SpanOut], service: &str) -> BTreeSet<Shape> {
    let ours: Vec<&SpanOut> = spans
        .iter()
        .filter(|s| {
            s.resource
                .iter()
                .any(|(k, v)| k == "service.name" && v == &format!("Str({service})"))
        })
        .collect();
    ours.iter()
        .map(|s| Shape {
            name: s.name.clone(),
            parent: ours
                .iter()
                .find(|p| p.span_id == s.parent_id)
                .map_or_else(String::new, |p| p.name.clone()),
            kind: s.kind.clone(),
            status: s.status_code.clone(),
            attributes: user(&s.attributes),
            events: s
                .events
                .iter()
                .map(|e| (e.name.clone(), user(&e.attributes)))
                .collect(),
        })
        .collect()
}

#[test]
fn this_crate_and_tracing_opentelemetry_deliver_the_same_spans() {
    let Some(collector) = Collector::start() else {
        return;
    };

    // This crate.
    let (layer, guard) = OffloadLayer::builder()
        .sink(
            Otlp::new()
                .endpoint(collector.grpc_endpoint())
                .service_name("ours"),
        )
        .build()
        .unwrap();
    with_layer(layer, workload);
    guard.shutdown(DEADLINE).unwrap();

    // The reference: tracing-opentelemetry + the SDK's batch processor + the OTLP exporter.
    let (rt, exporter) = collector.reference_exporter();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder_empty()
                .with_service_name("reference")
                .build(),
        )
        .build();
    let reference = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("reference")));
    tracing::subscriber::with_default(reference, workload);
    provider.shutdown().unwrap();

    let spans = collector.wait_spans(8);
    let ours = shapes(&spans, "ours");
    let theirs = shapes(&spans, "reference");
    assert_eq!(ours.len(), 4, "{ours:#?}");
    assert_eq!(ours, theirs);
    drop(rt);
}
