//! Spans and events arrive in a real collector (Rotel) over gRPC, HTTP/protobuf and HTTP/JSON:
//! names, ids, parentage, typed attributes, span events, status, severities, resource.
#![cfg(feature = "otlp")]
mod support;

use support::collector::{Collector, SpanOut};
use support::*;
use tracing_offload::sink::otlp::{EventsAsLogs, Protocol};
use tracing_offload::sink::{Channel, Otlp};
use tracing_offload::{OffloadLayer, Record};

/// Emits one small trace (root with a child, an error inside, a warning outside) through a
/// pipeline with the OTLP sink and a channel (to learn the ids the layer made).
fn emit(sink: Otlp) -> (Vec<Record>, tracing_offload::Stats) {
    let (channel, rx) = Channel::new(1024);
    let (layer, guard) = OffloadLayer::builder()
        .sink(sink)
        .sink(channel)
        .build()
        .unwrap();
    with_layer(layer, || {
        let root = tracing::info_span!(
            "checkout",
            user = "ada",
            items = 3i64,
            express = true,
            total = 9.5,
            otel.kind = "server"
        )
        .entered();
        let child = tracing::info_span!("charge_card", otel.name = "payment.charge").entered();
        tracing::info!(attempt = 1u64, "charging");
        tracing::error!(code = 402u64, "payment failed");
        tracing::error!(error = "card declined");
        drop(child);
        drop(root);
        tracing::warn!(queue = "slow", "outside any span");
    });
    guard.shutdown(DEADLINE).unwrap();
    let stats = guard.handle().stats();
    (rx.drain(), stats)
}

fn span_out_named<'a>(spans: &'a [SpanOut], name: &str) -> &'a SpanOut {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name} in {spans:#?}"))
}

fn check(collector: &Collector, sink: Otlp) {
    let (records, stats) = emit(sink);
    let otlp = stats.sink("otlp").unwrap();
    assert_eq!(
        (otlp.exported, otlp.failed, otlp.dropped),
        (6, 0, 0),
        "{stats:#?}"
    );
    let spans = collector.wait_spans(2);
    let logs = collector.wait_logs(4);
    let ours = span_records(&records);
    let root_rec = support::span_named(&ours, "checkout");
    let child_rec = support::span_named(&ours, "charge_card");

    let root = span_out_named(&spans, "checkout");
    let child = span_out_named(&spans, "payment.charge"); // otel.name renames it
                                                          // Ids arrive unchanged, and the child points at the root.
    assert_eq!(root.trace_id, root_rec.trace_id().to_string());
    assert_eq!(root.span_id, root_rec.span_id().to_string());
    assert_eq!(root.parent_id, "");
    assert_eq!(child.span_id, child_rec.span_id().to_string());
    assert_eq!(child.parent_id, root.span_id);
    assert_eq!(child.trace_id, root.trace_id);
    // Typed attributes, kind, resource.
    assert_eq!(root.attr("user"), Some("Str(ada)"));
    assert_eq!(root.attr("items"), Some("Int(3)"));
    assert_eq!(root.attr("express"), Some("Bool(true)"));
    assert_eq!(root.attr("total"), Some("Double(9.5)"));
    assert!(root
        .attr("code.line.number")
        .is_some_and(|v| v.starts_with("Int(")));
    assert_eq!(root.kind, "SPAN_KIND_SERVER");
    assert_eq!(child.kind, "SPAN_KIND_INTERNAL");
    assert!(root
        .resource
        .contains(&("service.name".to_owned(), "Str(offload-test)".to_owned())));
    // Span events, the `error` field as an exception, and the error status.
    let names: Vec<&str> = child.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["charging", "payment failed", "exception"]);
    let exception = &child.events[2];
    assert!(exception.attributes.contains(&(
        "exception.message".to_owned(),
        "Str(card declined)".to_owned()
    )));
    assert_eq!(child.status_code, "STATUS_CODE_ERROR");
    // As tracing-opentelemetry: the `error` field's text, not the ERROR event's message.
    assert_eq!(child.status_message, "card declined");
    assert_eq!(root.status_code, "STATUS_CODE_UNSET");
    // Events as log records, linked to their span.
    let failed = logs
        .iter()
        .find(|l| l.body == "Str(payment failed)")
        .unwrap();
    assert_eq!(failed.severity_text, "ERROR");
    assert!(failed.severity_number.contains("17"), "{failed:?}");
    assert_eq!(failed.trace_id, root.trace_id);
    assert_eq!(failed.span_id, child.span_id);
    assert_eq!(failed.attr("code"), Some("Int(402)"));
    let outside = logs
        .iter()
        .find(|l| l.body == "Str(outside any span)")
        .unwrap();
    assert_eq!(outside.severity_text, "WARN");
    assert!(outside.severity_number.contains("13"));
    assert_eq!(outside.trace_id, "");
}

#[test]
fn over_grpc() {
    let Some(collector) = Collector::start() else {
        return;
    };
    let sink = Otlp::new()
        .endpoint(collector.grpc_endpoint())
        .protocol(Protocol::Grpc)
        .service_name("offload-test");
    check(&collector, sink);
}

#[test]
fn over_http_protobuf() {
    let Some(collector) = Collector::start() else {
        return;
    };
    let sink = Otlp::new()
        .endpoint(collector.http_endpoint())
        .protocol(Protocol::HttpProtobuf)
        .service_name("offload-test");
    check(&collector, sink);
}

#[test]
fn over_http_json_with_gzip() {
    let Some(collector) = Collector::start() else {
        return;
    };
    let sink = Otlp::new()
        .endpoint(collector.http_endpoint())
        .protocol(Protocol::HttpJson)
        .gzip(true)
        .service_name("offload-test");
    check(&collector, sink);
}

#[test]
fn from_env_reaches_the_collector_and_events_can_stay_on_spans() {
    let Some(collector) = Collector::start() else {
        return;
    };
    let endpoint = collector.grpc_endpoint();
    let lookup = move |var: &str| match var {
        "OTEL_EXPORTER_OTLP_ENDPOINT" => Some(endpoint.clone()),
        "OTEL_SERVICE_NAME" => Some("offload-test".to_owned()),
        "OTEL_EXPORTER_OTLP_HEADERS" => Some("x-team=core".to_owned()),
        _ => None,
    };
    let sink = Otlp::from_env_with(&lookup).events_as_logs(EventsAsLogs::OutsideSpans);
    assert!(sink.warnings().is_empty());
    let (_, stats) = emit(sink);
    assert_eq!(stats.sink("otlp").unwrap().failed, 0);
    collector.wait_spans(2);
    let logs = collector.wait_logs(1);
    // Only the event outside any span went as a log record (all three would have travelled
    // in the one request that carried it).
    assert_eq!(logs.len(), 1, "{logs:#?}");
    assert_eq!(logs[0].body, "Str(outside any span)");
}

#[test]
fn the_effective_config_shows_the_sink_and_redacts_header_values() {
    let lookup = |var: &str| match var {
        "OTEL_EXPORTER_OTLP_HEADERS" => Some("api-key=topsecret".to_owned()),
        "OTEL_EXPORTER_OTLP_TIMEOUT" => Some("soon".to_owned()),
        _ => None,
    };
    let (_layer, guard) = OffloadLayer::builder()
        .sink(Otlp::from_env_with(&lookup))
        .build()
        .unwrap();
    let config = guard.handle().config();
    let json = serde_json::to_string(&config).unwrap();
    assert!(!json.contains("topsecret"), "{json}");
    let otlp = &config.sink_settings["otlp"];
    assert_eq!(otlp["headers"]["api-key"], "[redacted]");
    assert_eq!(otlp["traces_endpoint"], "http://localhost:4317");
    // As OTEL_EXPORTER_OTLP_PROTOCOL spells it (it was the Rust name, `Grpc`: adversary pass 34).
    assert_eq!(otlp["protocol"], "grpc");
    assert_eq!(config.warnings.len(), 1);
    assert_eq!(config.warnings[0].var, "OTEL_EXPORTER_OTLP_TIMEOUT");
}

#[test]
fn drop_markers_arrive_as_warning_logs() {
    let Some(collector) = Collector::start() else {
        return;
    };
    let stats = flood_a_one_record_queue(Otlp::new().endpoint(collector.grpc_endpoint()));
    let otlp = stats.sink("otlp").unwrap();
    assert!(!otlp.disabled, "{otlp:#?}");
    collector.wait_for("a drop marker", DEADLINE, |c| {
        c.logs()
            .iter()
            .any(|l| l.severity_text == "WARN" && l.body.contains("records dropped since"))
    });
}
