//! A long flush interval (the idle wake-up, documented as taking any value) does not make an
//! idle, healthy pipeline look stuck: the drain thread still beats often enough for the
//! heartbeat rule. With `flush_interval` longer than `heartbeat_timeout`, the idle drain
//! thread used to sleep through it, and `/health` said "unhealthy" (503) while nothing was
//! wrong.
mod support;

use std::time::Duration;

use support::*;
use tracing_offload::health::{HealthConfig, HealthStatus};
use tracing_offload::OffloadLayer;

#[test]
fn an_idle_pipeline_with_a_long_flush_interval_stays_healthy() {
    let heartbeat_timeout = Duration::from_secs(3);
    let (_layer, guard) = OffloadLayer::builder()
        .flush_interval(Duration::from_secs(3600))
        .health_config(HealthConfig::default().heartbeat_timeout(heartbeat_timeout))
        .sink(Collect::new("collect"))
        .build()
        .unwrap();
    let handle = guard.handle();
    // Idle for longer than the heartbeat timeout: what the rule is about.
    wait_until("the heartbeat timeout to pass", DEADLINE, || {
        handle.stats().uptime > heartbeat_timeout + Duration::from_secs(1)
    });
    let health = handle.health();
    let drain = health
        .components
        .iter()
        .find(|c| c.name == "drain")
        .unwrap();
    assert_eq!(drain.status, HealthStatus::Healthy, "{drain:?}");
    guard.shutdown(DEADLINE).unwrap();
}
