//! The OTLP sink works and shuts down from `Drop` whether the application has no tokio
//! runtime, a current-thread one or a multi-thread one.
#![cfg(feature = "otlp")]
mod support;

use support::collector::Collector;
use support::*;
use tracing_offload::sink::Otlp;
use tracing_offload::{BuildError, OffloadLayer};

fn emit_and_drop(collector: &Collector, name: &'static str) {
    let sink = Otlp::new().endpoint(collector.grpc_endpoint());
    let (layer, guard) = OffloadLayer::builder().sink(sink).build().unwrap();
    with_layer(layer, || {
        drop(tracing::info_span!("in a runtime", name).entered())
    });
    drop(guard); // flushes and stops from Drop
}

#[test]
fn without_a_runtime() {
    let Some(collector) = Collector::start() else {
        return;
    };
    emit_and_drop(&collector, "none");
    assert_eq!(collector.wait_spans(1)[0].attr("name"), Some("Str(none)"));
}

#[test]
fn inside_a_current_thread_runtime() {
    let Some(collector) = Collector::start() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { emit_and_drop(&collector, "current_thread") });
    assert_eq!(
        collector.wait_spans(1)[0].attr("name"),
        Some("Str(current_thread)")
    );
}

#[test]
fn inside_a_multi_thread_runtime() {
    let Some(collector) = Collector::start() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { emit_and_drop(&collector, "multi_thread") });
    assert_eq!(
        collector.wait_spans(1)[0].attr("name"),
        Some("Str(multi_thread)")
    );
}

#[test]
fn a_failed_build_drops_a_started_sink_inside_a_runtime_without_panicking() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let err = OffloadLayer::builder()
            .sink(Otlp::new().name("dup"))
            .sink(Collect::new("dup"))
            .build()
            .unwrap_err();
        assert!(matches!(err, BuildError::DuplicateSinkName(_)));
    });
}
