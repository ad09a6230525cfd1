//! Shutdown flushes everything offered before it, is idempotent, counts later records, and never
//! hangs inside a tokio runtime.
mod support;

use std::time::Duration;

use support::*;
use tracing_offload::{sink, DropReason, OffloadLayer};

fn json_pipeline(
    path: &std::path::Path,
) -> (tracing_offload::OffloadLayer, tracing_offload::Guard) {
    OffloadLayer::builder()
        .flush_interval(Duration::from_secs(60)) // only shutdown can make the records appear
        .sink(sink::JsonFile::new(path))
        .build()
        .unwrap()
}

fn lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path).unwrap().lines().count()
}

#[test]
fn everything_offered_before_shutdown_reaches_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    let (layer, guard) = json_pipeline(&path);
    let dispatch = dispatch(layer);
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..10_000u64 {
            tracing::info!(i, "before");
        }
    });
    let report = guard.shutdown(DEADLINE).unwrap();
    assert!(report.abandoned.is_empty());
    assert_eq!(lines(&path), 10_000);
    // Later records are counted, not written.
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("after"));
    let stats = guard.handle().stats();
    assert_eq!(stats.dropped_for(DropReason::Shutdown), 1);
    assert_eq!(stats.offered, 10_001);
    // A second shutdown is a no-op.
    let again = guard.shutdown(DEADLINE).unwrap();
    assert!(again.abandoned.is_empty());
    assert_eq!(lines(&path), 10_000);
}

#[test]
fn flush_waits_for_everything_offered_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flush.jsonl");
    let (layer, guard) = json_pipeline(&path);
    with_layer(layer, || {
        for i in 0..1_000u64 {
            tracing::info!(i, "x");
        }
    });
    guard.handle().flush(DEADLINE).unwrap();
    assert_eq!(lines(&path), 1_000);
    assert!(guard.handle().is_running());
}

#[test]
fn shutdown_reports_what_a_stalled_sink_kept_from_being_written() {
    let stalled = Collect::new("stalled");
    stalled.stall();
    let (layer, guard) = OffloadLayer::builder()
        .sink(stalled.clone())
        .build()
        .unwrap();
    with_layer(layer, || {
        for i in 0..100u64 {
            tracing::info!(i, "x");
        }
    });
    let started = std::time::Instant::now();
    let err = guard.shutdown(Duration::from_millis(200)).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the deadline must hold"
    );
    let tracing_offload::FlushError::Abandoned { report } = err else {
        panic!("expected Abandoned, got {err:?}")
    };
    assert_eq!(report.abandoned.total(), 100);
    assert_eq!(
        report.unfinished_threads,
        vec!["offload-sink-stalled".to_owned()]
    );
    let stats = guard.handle().stats();
    assert_accounting(&stats, 100);
    assert_eq!(
        stats.sinks[0].dropped_for(DropReason::ShutdownDeadline),
        100
    );
    stalled.release();
}

#[test]
fn dropping_the_guard_inside_a_current_thread_runtime_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokio-ct.jsonl");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (layer, guard) = json_pipeline(&path);
        with_layer(layer, || tracing::info!("inside tokio"));
        drop(guard);
    });
    assert_eq!(lines(&path), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_guard_inside_a_multi_thread_runtime_does_not_hang() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokio-mt.jsonl");
    let (layer, guard) = json_pipeline(&path);
    with_layer(layer, || tracing::info!("inside tokio"));
    drop(guard);
    assert_eq!(lines(&path), 1);
}
