//! The collector is down at start, comes up, is killed, comes back: every span is either
//! received or counted as failed, the counts add up exactly, and export resumes by itself.
#![cfg(feature = "otlp")]
mod support;

use std::time::Duration;

use support::collector::Collector;
use support::*;
use tracing_offload::sink::Otlp;
use tracing_offload::{Handle, OffloadLayer};

fn spans(dispatch: &tracing::Dispatch, phase: &'static str, n: u64) {
    tracing::dispatcher::with_default(dispatch, || {
        for i in 0..n {
            let _s = tracing::info_span!("work", phase, i).entered();
        }
    });
}

fn otlp(handle: &Handle) -> tracing_offload::SinkStats {
    handle.stats().sink("otlp").unwrap().clone()
}

#[test]
fn spans_survive_or_are_counted_across_collector_outages() {
    // Learn two free ports by starting (and stopping) a collector once.
    let Some(probe) = Collector::start() else {
        return;
    };
    let (grpc, http) = (probe.grpc_port, probe.http_port);
    drop(probe);

    let sink = Otlp::new()
        .endpoint(format!("http://127.0.0.1:{grpc}"))
        .service_name("offload-outage")
        .timeout(Duration::from_millis(500))
        .export_timeout(Duration::from_secs(2))
        .max_retries(2);
    let (layer, guard) = OffloadLayer::builder().sink(sink).build().unwrap();
    let handle = guard.handle();
    let dispatch = dispatch(layer);

    // 1. Collector down: the spans fail after their retries, counted, with the error kept.
    spans(&dispatch, "down", 50);
    handle.flush(DEADLINE).unwrap();
    let s = otlp(&handle);
    assert_eq!((s.exported, s.failed), (0, 50), "{s:#?}");
    assert!(s.retries > 0 && s.last_error.is_some(), "{s:#?}");
    assert!(handle.health().components.iter().any(
        |c| c.name == "sink:otlp" && c.status != tracing_offload::health::HealthStatus::Healthy
    ));

    // 2. Collector up: export resumes by itself.
    let first = Collector::start_on(grpc, http).unwrap();
    spans(&dispatch, "up", 50);
    handle.flush(DEADLINE).unwrap();
    let received_first = first.wait_spans(50).len();
    assert_eq!(otlp(&handle).exported, 50);

    // 3. Killed mid-stream: counted again.
    drop(first);
    spans(&dispatch, "killed", 50);
    handle.flush(DEADLINE).unwrap();

    // 4. Back again.
    let second = Collector::start_on(grpc, http).unwrap();
    spans(&dispatch, "back", 50);
    handle.flush(DEADLINE).unwrap();
    guard.shutdown(DEADLINE).unwrap();
    let s = otlp(&handle);
    let received_second = second.wait_spans(50).len();
    let stats = handle.stats();
    assert_accounting(&stats, 200);
    assert_eq!(
        s.exported as usize,
        received_first + received_second,
        "{s:#?}"
    );
    assert_eq!(s.exported + s.failed, 200, "{s:#?}");
    assert!(s.failed >= 100, "the down and killed phases failed: {s:#?}");
    assert!(second
        .spans()
        .iter()
        .all(|sp| sp.attr("phase") != Some("Str(down)")));
}
