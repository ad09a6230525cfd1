//! A sink's spool replays on its own thread, and the stats (and health) show the spool as the
//! sink thread last read it. That thread read it only when it woke: after an export, or once per
//! `flush_interval` while idle. With a long `flush_interval`, a spool that had replayed
//! everything still showed its records waiting, and its collector unreachable, for up to that
//! long (found by an adversary's pass, with a one-minute interval). An idle sink thread with a
//! spool now reads it at least once a second.
#![cfg(feature = "otlp")]

mod support;

use std::time::Duration;

use support::collector::Collector;
use support::*;
use tracing_offload::health::HealthStatus;
use tracing_offload::sink::otlp::Protocol;
use tracing_offload::sink::Otlp;
use tracing_offload::OffloadLayer;

#[test]
fn the_stats_follow_the_spools_replay_while_the_sink_is_idle() {
    let Some((grpc, http)) = Collector::ports_for_later() else {
        return;
    };
    let silent = Unanswering::start_on(http);
    let dir = tempfile::tempdir().unwrap();
    let sink = Otlp::new()
        .endpoint(format!("http://127.0.0.1:{http}"))
        .protocol(Protocol::HttpProtobuf)
        .timeout(Duration::from_secs(3))
        .max_retries(0)
        .spool(dir.path())
        .spool_after(Duration::from_millis(200));
    let (layer, guard) = OffloadLayer::builder()
        // Far longer than the test: only the spool's own refresh can show the replay.
        .flush_interval(Duration::from_secs(3600))
        .sink(sink)
        .build()
        .unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        for i in 0..20u64 {
            tracing::info_span!("request", i).in_scope(|| {});
        }
    });
    handle.flush(DEADLINE).unwrap();
    assert_eq!(otlp_spool(&handle).spooled, 20);

    silent.stop();
    let collector = Collector::start_on(grpc, http).unwrap();
    collector.wait_for("every spooled span", DEADLINE, |c| c.span_count() >= 20);
    // Nothing is logged or flushed from here on: the sink thread stays idle.
    wait_until(
        "the stats show the spool replayed",
        Duration::from_secs(10),
        || {
            let spool = otlp_spool(&handle);
            spool.records == 0 && spool.replayed == 20 && spool.unreachable_for.is_none()
        },
    );
    let health = handle.health();
    let sink = health.component("sink:otlp").unwrap();
    assert_eq!(sink.status, HealthStatus::Healthy, "{sink:?}");
    guard.shutdown(DEADLINE).unwrap();
}
