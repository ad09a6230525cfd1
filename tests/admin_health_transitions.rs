//! Health transitions, asserted through `GET /health` with a real HTTP client: a stalled sink
//! and a full queue make it degraded, a failing sink degraded then unhealthy, a dead sink or a
//! stopped drain thread unhealthy (503), a stuck span degraded, and recovery returns it to
//! healthy.
#![cfg(feature = "admin")]

mod support;

use std::time::Duration;

use support::admin::*;
use support::*;
use tracing_offload::health::HealthConfig;
use tracing_offload::{Guard, OffloadLayer};
use tracing_subscriber::prelude::*;

/// Short windows so that recovery is seen quickly.
fn health_config() -> HealthConfig {
    HealthConfig::default()
        .drop_window(Duration::from_millis(200))
        .sink_failing_timeout(Duration::from_secs(3))
}

fn pipeline(capacity: usize, gate: &Gate) -> (tracing::Dispatch, Guard) {
    let (layer, guard) = OffloadLayer::builder()
        .capacity(capacity)
        .sink_buffer_capacity(8)
        .health_config(health_config())
        .drop_timeout(Duration::from_secs(5))
        .admin_addr("127.0.0.1:0")
        .sink(gate.clone())
        .build()
        .unwrap();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    (dispatch, guard)
}

fn emit(dispatch: &tracing::Dispatch, n: u64) {
    tracing::dispatcher::with_default(dispatch, || {
        for i in 0..n {
            tracing::info!(i, "tick");
        }
    });
}

#[test]
fn a_stalled_sink_is_degraded_and_recovers() {
    let gate = Gate::new("slow");
    let (dispatch, guard) = pipeline(1_024, &gate);
    let addr = guard.admin_addr().unwrap();
    wait_for_health(addr, "healthy");
    gate.set(Mode::Stall);
    emit(&dispatch, 50); // one batch blocks in export, 8 fill the buffer, the rest are dropped
    let h = wait_for_health(addr, "degraded");
    let sink = component(&h, "sink:slow");
    assert_eq!(sink["status"], "degraded", "{h:#}");
    gate.set(Mode::Pass);
    let h = wait_for_health(addr, "healthy");
    assert_eq!(component(&h, "sink:slow")["status"], "healthy");
}

#[test]
fn a_full_queue_is_degraded_and_recovers() {
    let gate = Gate::new("gate");
    let (dispatch, guard) = pipeline(2, &gate);
    let addr = guard.admin_addr().unwrap();
    let handle = guard.handle();
    wait_until("a record dropped at the full queue", DEADLINE, || {
        emit(&dispatch, 1_000);
        handle.stats().dropped > 0
    });
    // Let the drain thread empty the queue first: until it has, the queue may still be full,
    // and health then leads with "saturated" (the race this test once lost).
    handle.flush(DEADLINE).unwrap();
    assert_eq!(handle.stats().queue_depth, 0);
    let h = wait_for_health(addr, "degraded");
    let queue = component(&h, "queue");
    assert_eq!(queue["status"], "degraded", "{h:#}");
    assert!(
        queue["message"].as_str().unwrap().contains("dropped"),
        "{h:#}"
    );
    wait_for_health(addr, "healthy");
}

#[test]
fn a_failing_sink_is_degraded_then_unhealthy_then_recovers() {
    let gate = Gate::new("flaky");
    let (dispatch, guard) = pipeline(1_024, &gate);
    let addr = guard.admin_addr().unwrap();
    gate.set(Mode::Fail);
    emit(&dispatch, 1);
    let h = wait_for_health(addr, "degraded");
    let sink = component(&h, "sink:flaky");
    assert_eq!(sink["last_error"], "gate told to fail", "{h:#}");
    // Failing for longer than `sink_failing_timeout` (3 s).
    let h = wait_for_health(addr, "unhealthy");
    assert_eq!(component(&h, "sink:flaky")["status"], "unhealthy");
    gate.set(Mode::Pass);
    emit(&dispatch, 1);
    let h = wait_for_health(addr, "healthy");
    assert!(
        component(&h, "sink:flaky")["last_success_at"].is_string(),
        "{h:#}"
    );
}

#[test]
fn a_dead_sink_is_unhealthy() {
    let gate = Gate::new("doomed");
    let (dispatch, guard) = pipeline(1_024, &gate);
    let addr = guard.admin_addr().unwrap();
    gate.set(Mode::Panic);
    emit(&dispatch, 1);
    let h = wait_for_health(addr, "unhealthy");
    let sink = component(&h, "sink:doomed");
    assert!(
        sink["message"].as_str().unwrap().contains("disabled"),
        "{h:#}"
    );
}

#[test]
fn a_stopped_drain_thread_is_unhealthy() {
    let gate = Gate::new("gate");
    let (_dispatch, guard) = pipeline(1_024, &gate);
    let addr = guard.admin_addr().unwrap();
    wait_for_health(addr, "healthy");
    guard.shutdown(DEADLINE).unwrap();
    // The endpoint keeps serving the final state until the guard is dropped.
    let h = wait_for_health(addr, "unhealthy");
    assert_eq!(component(&h, "drain")["status"], "unhealthy", "{h:#}");
}

#[test]
fn a_stuck_span_is_degraded_until_it_closes() {
    let (layer, guard) = OffloadLayer::builder()
        .health_config(health_config().stuck_span_after(Duration::from_millis(100)))
        .admin_addr("127.0.0.1:0")
        .sink(Gate::new("gate"))
        .build()
        .unwrap();
    let addr = guard.admin_addr().unwrap();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let span = tracing::dispatcher::with_default(&dispatch, || tracing::info_span!("stuck"));
    let h = wait_for_health(addr, "degraded");
    let spans = component(&h, "open_spans");
    assert!(
        spans["message"].as_str().unwrap().contains("stuck"),
        "{h:#}"
    );
    let metrics = get(addr, "/metrics").body;
    assert!(metrics.contains("offload_open_spans 1\n"), "{metrics}");
    drop(span);
    wait_for_health(addr, "healthy");
}
