//! The same instrumented workload sent once through this crate and once through the reference
//! stack to the same collector: `tracing-opentelemetry` + the SDK for spans,
//! `opentelemetry-appender-tracing` for log records. The same span names, parentage, kinds,
//! statuses (with their descriptions), links, attributes (`target`, `code.*`, `busy_ns` /
//! `idle_ns`, exceptions with their source chain), span events, log records (event name, scope,
//! body, attributes) and resource (`telemetry.sdk.*`); ids and timing values aside. Where this
//! crate differs on purpose (the README's "differences from tracing-opentelemetry"), the test
//! says so.
#![cfg(feature = "otlp")]
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use opentelemetry::trace::TracerProvider as _;
use support::collector::{Collector, LogOut, SpanOut};
use support::*;
use tracing_offload::sink::Otlp;
use tracing_offload::OffloadLayer;
use tracing_subscriber::prelude::*;

/// An error with a source, as applications have them.
#[derive(Debug)]
struct Declined(std::io::Error);

impl std::fmt::Display for Declined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("card declined")
    }
}

impl std::error::Error for Declined {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

fn declined() -> Declined {
    Declined(std::io::Error::other("insufficient funds"))
}

#[tracing::instrument(err)]
fn charge(amount: i64) -> Result<(), Declined> {
    Err(declined())
}

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
    // The status description convention.
    tracing::info_span!(
        "refund",
        otel.status_code = "error",
        otel.status_description = "refund window closed"
    )
    .in_scope(|| {});
    // `#[instrument(err)]`: the error's text is the status description.
    let _ = charge(12);
    // An `error` field without a message: an exception event.
    tracing::info_span!("notify").in_scope(|| {
        let e = declined();
        tracing::error!(error = %e);
    });
    // An error value with its source chain, and an event without a message.
    tracing::info_span!("audit").in_scope(|| {
        let e = declined();
        tracing::warn!(error = &e as &dyn std::error::Error, "audit failed");
        tracing::info!(checked = 2i64);
    });
    // `follows_from` as a span link.
    let cause = tracing::info_span!("enqueue");
    let effect = tracing::info_span!("consume");
    effect.follows_from(&cause);
    drop(cause);
    effect.in_scope(|| {});
}

const SPANS: usize = 10;

/// A span reduced to what both pipelines must agree on.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Shape {
    name: String,
    parent: String,
    kind: String,
    status: (String, String),
    links: Vec<String>,
    attributes: BTreeSet<(String, String)>,
    events: Vec<(String, BTreeSet<(String, String)>)>,
}

/// Attributes whose values differ between any two runs (thread numbering, timings) are
/// compared by name only.
fn comparable(attrs: &[(String, String)]) -> BTreeSet<(String, String)> {
    attrs
        .iter()
        .map(|(k, v)| match k.as_str() {
            "thread.id" | "busy_ns" | "idle_ns" => (k.clone(), "…".to_owned()),
            _ => (k.clone(), v.clone()),
        })
        .collect()
}

fn of_service<'a>(spans: &'a [SpanOut], service: &str) -> Vec<&'a SpanOut> {
    spans
        .iter()
        .filter(|s| {
            s.resource
                .iter()
                .any(|(k, v)| k == "service.name" && v == &format!("Str({service})"))
        })
        .collect()
}

fn shapes(spans: &[SpanOut], service: &str) -> BTreeSet<Shape> {
    let ours = of_service(spans, service);
    let name_of = |id: &str| {
        ours.iter()
            .find(|p| p.span_id == id)
            .map_or_else(String::new, |p| p.name.clone())
    };
    ours.iter()
        .map(|s| Shape {
            name: s.name.clone(),
            parent: name_of(&s.parent_id),
            kind: s.kind.clone(),
            status: (s.status_code.clone(), s.status_message.clone()),
            links: s.links.iter().map(|(_, id)| name_of(id)).collect(),
            attributes: comparable(&s.attributes),
            events: s
                .events
                .iter()
                .map(|e| (e.name.clone(), comparable(&e.attributes)))
                .collect(),
        })
        .collect()
}

fn our_layer(collector: &Collector) -> (OffloadLayer, tracing_offload::Guard) {
    OffloadLayer::builder()
        .sink(
            Otlp::new()
                .endpoint(collector.grpc_endpoint())
                .service_name("ours"),
        )
        .build()
        .unwrap()
}

/// The reference: tracing-opentelemetry + the SDK's batch processor + the OTLP exporter, with
/// the SDK's default resource.
fn run_reference_spans(collector: &Collector) {
    let (rt, exporter) = collector.reference_exporter();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("reference")
                .build(),
        )
        .build();
    let reference = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("reference")));
    tracing::subscriber::with_default(reference, workload);
    provider.shutdown().unwrap();
    drop(rt);
}

fn shape_of<'a>(shapes: &'a BTreeSet<Shape>, name: &str) -> &'a Shape {
    shapes
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name}: {shapes:#?}"))
}

#[test]
fn this_crate_and_tracing_opentelemetry_deliver_the_same_spans() {
    let Some(collector) = Collector::start() else {
        return;
    };
    let (layer, guard) = our_layer(&collector);
    with_layer(layer, workload);
    guard.shutdown(DEADLINE).unwrap();
    run_reference_spans(&collector);

    collector.wait_spans(2 * SPANS);
    // The collector prints a span's lines one by one: the last span counted may not be printed
    // whole yet. Wait (a while) until the two agree; if they never do, the asserts below say
    // how they differ.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut spans = collector.spans();
    while shapes(&spans, "ours") != shapes(&spans, "reference") && Instant::now() < deadline {
        std::thread::park_timeout(Duration::from_millis(5));
        spans = collector.spans();
    }
    let ours = shapes(&spans, "ours");
    let theirs = shapes(&spans, "reference");
    assert_eq!(ours.len(), SPANS, "{ours:#?}");
    for (o, t) in ours.iter().zip(&theirs) {
        assert_eq!(o, t, "span {}", o.name);
    }
    assert_eq!(ours, theirs);

    // The regressions this comparison guards, spelled out.
    let refund = shape_of(&ours, "refund");
    assert_eq!(refund.status.1, "refund window closed");
    let charge = shape_of(&ours, "charge");
    assert_eq!(charge.status.1, "card declined", "#[instrument(err)]");
    assert_eq!(charge.events[0].0, "exception");
    let notify = shape_of(&ours, "notify");
    assert_eq!(notify.status.1, "card declined", "error = %e");
    let audit = shape_of(&ours, "audit");
    assert!(audit
        .attributes
        .iter()
        .any(|(k, v)| k == "exception.stacktrace" && v.contains("insufficient funds")));
    assert!(audit.events[0]
        .1
        .iter()
        .any(|(k, v)| k == "error.chain" && v.contains("insufficient funds")));
    assert!(audit.events[1]
        .0
        .starts_with("event tests/otlp_differential.rs:"));
    assert_eq!(shape_of(&ours, "consume").links, ["enqueue"]);
    let db = shape_of(&ours, "db.select");
    for key in ["target", "busy_ns", "idle_ns", "code.file.path"] {
        assert!(
            db.attributes.iter().any(|(k, _)| k == key),
            "{key}: {db:#?}"
        );
    }
    assert!(db.events[0].1.iter().any(|(k, _)| k == "code.line.number"));

    // Scope: this crate, with its version.
    let ours_raw = of_service(&spans, "ours");
    assert!(ours_raw
        .iter()
        .all(|s| s.scope == format!("tracing-offload {}", env!("CARGO_PKG_VERSION"))));

    // Resource: what the SDK gives, plus host, OS and process attributes.
    let resource = &ours_raw[0].resource;
    let reference = &of_service(&spans, "reference")[0].resource;
    for (k, v) in reference.iter().filter(|(k, _)| k != "service.name") {
        assert!(
            resource.contains(&(k.clone(), v.clone())),
            "{k}={v} missing from {resource:#?}"
        );
    }
    for key in [
        "telemetry.sdk.name",
        "host.name",
        "host.arch",
        "os.type",
        "process.pid",
        "telemetry.distro.name",
    ] {
        assert!(
            resource.iter().any(|(k, _)| k == key),
            "{key}: {resource:#?}"
        );
    }
    assert!(!resource.iter().any(|(k, _)| k == "process.command_args"));
}

#[test]
fn busy_and_idle_time_can_be_turned_off() {
    let Some(collector) = Collector::start() else {
        return;
    };
    let (layer, guard) = OffloadLayer::builder()
        .span_timings(false)
        .sink(Otlp::new().endpoint(collector.grpc_endpoint()))
        .build()
        .unwrap();
    with_layer(layer, || tracing::info_span!("quiet").in_scope(|| {}));
    guard.shutdown(DEADLINE).unwrap();
    // Printed whole (the collector prints a span's lines one by one).
    collector.wait_for("the span printed whole", DEADLINE, |c| {
        c.spans()
            .first()
            .is_some_and(|s| s.attr("target").is_some())
    });
    let span = &collector.spans()[0];
    assert!(span.attr("busy_ns").is_none() && span.attr("idle_ns").is_none());
}

/// A log record reduced to what both pipelines must agree on. This crate adds `code.*` and
/// `thread.*` attributes, the enclosing span's ids, an error's source chain
/// (`exception.stacktrace`), and each error value under its field's name with its chain
/// (`<field>`, `<field>.chain`): left out here, on purpose.
fn log_shape(
    l: &LogOut,
) -> (
    String,
    String,
    String,
    String,
    String,
    BTreeSet<(String, String)>,
) {
    let errors: Vec<&str> = l
        .attributes
        .iter()
        .filter_map(|(k, _)| k.strip_suffix(".chain"))
        .collect();
    let attributes = l
        .attributes
        .iter()
        .filter(|(k, _)| {
            !k.starts_with("code.")
                && !k.starts_with("thread.")
                && k != "exception.stacktrace"
                && !k.ends_with(".chain")
                && !errors.contains(&k.as_str())
        })
        .cloned()
        .collect();
    (
        l.scope.clone(),
        l.event_name.clone(),
        l.severity_text.clone(),
        l.severity_number.clone(),
        l.body.clone(),
        attributes,
    )
}

fn logs_of(logs: &[LogOut], service: &str) -> Vec<LogOut> {
    logs.iter()
        .filter(|l| {
            l.resource
                .iter()
                .any(|(k, v)| k == "service.name" && v == &format!("Str({service})"))
        })
        .cloned()
        .collect()
}

#[test]
fn this_crate_and_the_appender_deliver_the_same_log_records() {
    let Some(collector) = Collector::start() else {
        return;
    };
    let (layer, guard) = our_layer(&collector);
    with_layer(layer, workload);
    guard.shutdown(DEADLINE).unwrap();

    let (rt, exporter) = collector.reference_log_exporter();
    let provider = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("reference")
                .build(),
        )
        .build();
    let bridge = opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge::new(&provider);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(bridge), workload);
    provider.shutdown().unwrap();
    drop(rt);

    let events = 8;
    collector.wait_logs(2 * events);
    let logs = collector.logs();
    let ours: Vec<_> = logs_of(&logs, "ours").iter().map(log_shape).collect();
    let theirs: Vec<_> = logs_of(&logs, "reference").iter().map(log_shape).collect();
    assert_eq!(ours.len(), events, "{ours:#?}");
    assert_eq!(ours, theirs);
    // The scope is named after the target, without this crate's version.
    assert_eq!(ours[0].0.trim(), "otlp_differential");
    assert!(ours
        .iter()
        .all(|l| l.1.starts_with("event tests/otlp_differential.rs:")));
    // The source chain is kept (the appender has no way to).
    let audit = logs_of(&logs, "ours")
        .into_iter()
        .find(|l| l.body == "Str(audit failed)")
        .unwrap();
    assert!(audit
        .attr("exception.stacktrace")
        .is_some_and(|v| v.contains("insufficient funds")));
}
