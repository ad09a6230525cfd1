//! A spool over its byte budget evicts its oldest requests, counted: the stats, the Prometheus
//! metrics (checked by `promtool`) and health say how many records were lost; the spool never
//! takes more than its budget on disk; what is left, the newest spans, is delivered when the
//! collector is up.
#![cfg(feature = "otlp")]
mod support;

use std::collections::BTreeSet;

use support::admin::{promtool_check, tool};
use support::collector::{span_numbers, Collector};
use support::*;
use tracing_offload::health::HealthStatus;
use tracing_offload::sink::otlp::{EventsAsLogs, MIN_SPOOL_MAX_BYTES};
use tracing_offload::sink::Otlp;
use tracing_offload::OffloadLayer;

const SPANS: u64 = 3_000;

/// A sink to a gRPC port where nothing listens yet, with a spool far too small for `SPANS`.
fn tiny_spool(grpc: u16, dir: &std::path::Path) -> Otlp {
    spooling_sink(
        format!("http://127.0.0.1:{grpc}"),
        "offload-spool-budget",
        dir,
    )
    .max_export_batch_size(20)
    .spool_max_bytes(MIN_SPOOL_MAX_BYTES)
}

fn bytes_on_disk(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

#[test]
fn a_full_spool_evicts_the_oldest_requests_and_counts_them() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    // Ports where a collector will listen later.
    let Some((grpc, http)) = Collector::ports_for_later() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sink = tiny_spool(grpc, dir.path()).events_as_logs(EventsAsLogs::None);
    let (layer, guard) = OffloadLayer::builder().sink(sink).build().unwrap();
    let handle = guard.handle();

    // The collector is down: everything goes to a spool far too small for it.
    work_spans(layer, SPANS);
    handle.flush(DEADLINE).unwrap();
    let stats = handle.stats();
    let s = stats.sink("otlp").unwrap();
    let spool = s.spool.clone().unwrap();
    assert_eq!((s.spooled, s.failed, s.dropped), (SPANS, 0, 0), "{s:#?}");
    assert!(spool.evicted > 0, "{spool:#?}");
    assert!(spool.bytes <= MIN_SPOOL_MAX_BYTES, "{spool:#?}");
    assert!(
        bytes_on_disk(dir.path()) <= MIN_SPOOL_MAX_BYTES,
        "{spool:#?}"
    );
    assert_eq!(spool.spooled, spool.evicted + spool.records, "{spool:#?}");
    assert_accounting(&stats, SPANS);

    let text = handle.render_prometheus();
    promtool_check(&promtool, &text);
    for line in [
        format!(
            "offload_sink_spool_records_total{{sink=\"otlp\",outcome=\"evicted\"}} {}",
            spool.evicted
        ),
        format!("offload_sink_records_total{{sink=\"otlp\",outcome=\"spooled\"}} {SPANS}"),
        format!(
            "offload_sink_spool_capacity_bytes{{sink=\"otlp\"}} {}",
            MIN_SPOOL_MAX_BYTES
        ),
    ] {
        assert!(
            text.contains(&format!("{line}\n")),
            "{line} missing:\n{text}"
        );
    }

    // The collector is back: the newest spans, all that is left, are delivered.
    let collector = Collector::start_on(grpc, http).unwrap();
    wait_spool_replayed("the spool replayed", &handle);
    let spool = otlp_spool(&handle);
    assert_eq!(spool.spooled, spool.replayed + spool.evicted, "{spool:#?}");
    let received = collector.wait_spans(spool.replayed as usize);
    let numbers = span_numbers(&received);
    assert_eq!(
        numbers,
        (SPANS - spool.replayed..SPANS).collect::<BTreeSet<_>>()
    );

    // The losses stay visible in health for the drop window.
    let sink = handle.health().component("sink:otlp").unwrap().clone();
    assert_eq!(sink.status, HealthStatus::Degraded, "{sink:?}");
    assert!(
        sink.message.contains(&format!("evicted {}", spool.evicted)),
        "{sink:?}"
    );
    guard.shutdown(DEADLINE).unwrap();
    promtool_check(&promtool, &handle.render_prometheus());
}

/// The records a spool lost are reported in-band once the collector is back: a `WARN` log
/// record, the sink's drop marker, says how many were evicted.
#[test]
fn the_collector_is_told_in_band_how_many_records_the_spool_evicted() {
    let Some((grpc, http)) = Collector::ports_for_later() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Events as logs (the default): drop markers go as log records.
    let (layer, guard) = OffloadLayer::builder()
        .sink(tiny_spool(grpc, dir.path()))
        .build()
        .unwrap();
    let handle = guard.handle();
    work_spans(layer, SPANS);
    handle.flush(DEADLINE).unwrap();
    let evicted = handle
        .stats()
        .sink("otlp")
        .unwrap()
        .spool
        .clone()
        .unwrap()
        .evicted;
    assert!(evicted > 0);

    let collector = Collector::start_on(grpc, http).unwrap();
    let reported = |c: &Collector| -> u64 {
        c.logs()
            .iter()
            .filter(|l| l.severity_text == "WARN")
            .filter_map(|l| {
                let n = l.body.split("spool_evicted: ").nth(1)?;
                n.split(|ch: char| !ch.is_ascii_digit())
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    };
    collector.wait_for("a marker for the evicted records", DEADLINE, |c| {
        reported(c) >= evicted
    });
    guard.shutdown(DEADLINE).unwrap();
    let spool = otlp_spool(&handle);
    assert_eq!(spool.evicted, evicted, "{spool:#?}");
    // Reported once, not again at shutdown.
    assert_eq!(reported(&collector), evicted, "{}", collector.output());
}
