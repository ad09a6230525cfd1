//! Adversary pass 65: the README supports several pipelines in one process ("Two
//! `OffloadLayer`s on one registry (each with its own filter)", one per destination) and tells
//! how to expose a pipeline's metrics in the application's own `prometheus-client` registry
//! (`handle.metrics_collector().register(&mut registry)`). Doing that for two pipelines — as
//! is, or each under its own label with `Registry::sub_registry_with_label`, the
//! `prometheus-client` way to tell two sources apart — gives a scrape with every metric family
//! twice (`# HELP`/`# TYPE offload_records counter` two times), which OpenMetrics forbids
//! ("MetricFamily names MUST be unique") and `promtool check metrics` refuses ("second HELP
//! line for metric name"). There is no way to give one pipeline's collector a label or a
//! prefix of its own, nor to register both as one collector. `OffloadCollector::combine`
//! registers them as one collector, each pipeline's samples labelled.
use std::collections::HashMap;

use prometheus_client::registry::Registry;
use tracing_offload::metrics::OffloadCollector;
use tracing_offload::sink::Channel;
use tracing_offload::OffloadLayer;

/// The metric families declared more than once in `text`.
fn repeated_families(text: &str) -> Vec<String> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap_or(rest);
            *seen.entry(name).or_default() += 1;
        }
    }
    let mut repeated: Vec<String> = seen
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(name, _)| name.to_owned())
        .collect();
    repeated.sort();
    repeated
}

#[test]
fn two_pipelines_in_one_registry_give_a_valid_exposition() {
    let (app_sink, _app_records) = Channel::new(16);
    let (audit_sink, _audit_records) = Channel::new(16);
    let (_app_layer, app) = OffloadLayer::builder().sink(app_sink).build().unwrap();
    let (_audit_layer, audit) = OffloadLayer::builder()
        .sink(audit_sink.name("audit"))
        .build()
        .unwrap();
    let mut registry = Registry::default();
    // Two pipelines in one collector, each one's samples labelled (README: "several
    // pipelines in one registry").
    OffloadCollector::combine(
        "pipeline",
        [
            ("app", app.handle().metrics_collector()),
            ("audit", audit.handle().metrics_collector()),
        ],
    )
    .unwrap()
    .register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let repeated = repeated_families(&text);
    assert!(
        repeated.is_empty(),
        "{} metric families declared twice in one scrape, e.g. {:?}",
        repeated.len(),
        &repeated[..repeated.len().min(3)]
    );
    for pipeline in ["app", "audit"] {
        let line =
            format!("offload_records_total{{pipeline=\"{pipeline}\",outcome=\"enqueued\"}} 0");
        assert!(text.contains(&line), "{line} missing:\n{text}");
    }
    assert!(
        text.contains("sink=\"audit\"") && text.contains("sink=\"channel\""),
        "each pipeline's sinks: {text}"
    );
}
