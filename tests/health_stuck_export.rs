//! A sink stuck in one export at low traffic (one record, a buffer far from full) is degraded
//! in health, shows how long the export has been running in stats and in the Prometheus
//! output (checked by `promtool`), and recovers when the export returns.
mod support;

use std::time::Duration;

use support::admin::*;
use support::*;
use tracing_offload::health::{HealthConfig, HealthStatus};
use tracing_offload::OffloadLayer;

#[test]
fn a_sink_stuck_in_one_export_is_degraded_however_little_it_holds() {
    let gate = Gate::new("stuck");
    let (layer, guard) = OffloadLayer::builder()
        .health_config(HealthConfig::default().export_stuck_after(Duration::from_millis(50)))
        .sink(gate.clone())
        .build()
        .unwrap();
    let handle = guard.handle();
    let dispatch = dispatch(layer);
    let sink_health =
        |h: &tracing_offload::health::Health| h.component("sink:stuck").unwrap().clone();
    assert_eq!(sink_health(&handle.health()).status, HealthStatus::Healthy);

    gate.set(Mode::Stall);
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("the only record"));
    // The export of that single record blocks: the buffer stays nearly empty and nothing is
    // dropped, so only the time spent in the export can tell.
    wait_until(
        "the stuck export to make the sink degraded",
        DEADLINE,
        || sink_health(&handle.health()).status == HealthStatus::Degraded,
    );
    let sink = sink_health(&handle.health());
    assert!(sink.message.contains("stuck"), "{}", sink.message);
    let stats = handle.stats();
    let s = stats.sink("stuck").unwrap();
    assert_eq!((s.buffered, s.dropped, s.failed), (0, 0, 0), "{s:#?}");
    assert!(s.export_in_progress_for.unwrap() > Duration::from_millis(50));

    let text = handle.render_prometheus();
    let gauge = text
        .lines()
        .find_map(|l| l.strip_prefix("offload_sink_export_in_progress_seconds{sink=\"stuck\"} "))
        .unwrap_or_else(|| panic!("no in-progress gauge in:\n{text}"));
    assert!(gauge.parse::<f64>().unwrap() > 0.05, "{gauge}");
    if let Some(promtool) = tool("promtool") {
        promtool_check(&promtool, &text);
    }

    gate.set(Mode::Pass);
    wait_until(
        "the sink to recover once the export returns",
        DEADLINE,
        || {
            let s = handle.stats().sink("stuck").unwrap().clone();
            s.exported == 1
                && s.export_in_progress_for.is_none()
                && sink_health(&handle.health()).status == HealthStatus::Healthy
                && handle
                    .render_prometheus()
                    .contains("offload_sink_export_in_progress_seconds{sink=\"stuck\"} 0.0\n")
        },
    );
    guard.shutdown(DEADLINE).unwrap();
}
