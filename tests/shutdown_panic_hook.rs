//! Shutdown from a panic hook (its own file: it replaces the process-wide hook).
mod support;

use std::time::Duration;

use support::*;
use tracing_offload::{sink, OffloadLayer};

#[test]
fn shutdown_from_a_panic_hook_flushes_what_came_before() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("panic.jsonl");
    let (layer, guard) = OffloadLayer::builder()
        .flush_interval(Duration::from_secs(60))
        .sink(sink::JsonFile::new(&path))
        .build()
        .unwrap();
    let handle = guard.handle();
    let hook_handle = handle.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |_| {
        let _ = hook_handle.shutdown(Duration::from_secs(5));
    }));
    let dispatch = dispatch(layer);
    let result = std::thread::spawn(move || {
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::error!("about to panic");
            panic!("boom");
        })
    })
    .join();
    std::panic::set_hook(previous);
    assert!(result.is_err());
    assert!(!handle.is_running());
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    drop(guard);
}
