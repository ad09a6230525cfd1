//! Ending the process without dropping the guard: `Handle::install_panic_hook` flushes what is
//! queued when a panic ends the process, chaining the hook installed before it, and never
//! waits on itself when a crate thread panics; `flush` before `process::exit` keeps what was
//! queued.
//!
//! Each scenario runs in a child process (this test binary run again with its scenario in
//! the environment, for one `#[ignore]`d entry point: `support/child_scenario.rs`): the process must really end, and a panic hook is
//! process-wide.
#[path = "support/child_scenario.rs"]
mod child_scenario;
mod support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use child_scenario::{lines, run_child, FILE, SCENARIO};

use support::admin::{Gate, Mode};
use support::*;
use tracing_offload::{sink, Guard, OffloadLayer};

const EVENTS: usize = 100;

fn file_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("app.jsonl")
}

#[test]
fn a_panic_with_the_hook_installed_writes_what_was_queued() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stderr) = run_child("panic_with_hook", &file_in(&dir));
    assert!(!status.success(), "the child must fail: {stderr}");
    assert!(stderr.contains("the previous hook ran"), "{stderr}");
    assert!(stderr.contains("boom after queueing"), "{stderr}");
    let events = lines(&file_in(&dir));
    assert_eq!(events.len(), EVENTS, "{stderr}");
    assert_eq!(events[EVENTS - 1]["fields"]["i"], EVENTS - 1);
}

#[test]
fn flush_before_process_exit_writes_what_was_queued() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stderr) = run_child("flush_then_exit", &file_in(&dir));
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert_eq!(lines(&file_in(&dir)).len(), EVENTS);
}

#[test]
fn a_sink_that_panics_under_the_hook_is_disabled_without_waiting_for_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stderr) = run_child("sink_panics_with_hook", &file_in(&dir));
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("gate told to panic"), "{stderr}");
}

/// Leaked on purpose: a guard that is never dropped, as with one kept in a `static`.
static GUARD: OnceLock<Guard> = OnceLock::new();

#[test]
#[ignore = "a child process of the other tests in this file"]
fn child_process() {
    let Ok(scenario) = std::env::var(SCENARIO) else {
        return;
    };
    let file = PathBuf::from(std::env::var_os(FILE).unwrap());
    match scenario.as_str() {
        "panic_with_hook" => panic_with_hook(&file),
        "flush_then_exit" => flush_then_exit(&file),
        "sink_panics_with_hook" => sink_panics_with_hook(),
        other => panic!("unknown scenario {other}"),
    }
}

/// A pipeline whose threads only write when woken: a long flush interval, and fewer events
/// than wake the drain thread, so without a flush nothing reaches the file.
fn quiet_pipeline(file: &Path) -> tracing::Dispatch {
    let (layer, guard) = OffloadLayer::builder()
        .flush_interval(Duration::from_secs(60))
        .sink(sink::JsonFile::new(file))
        .build()
        .unwrap();
    let _ = GUARD.set(guard);
    dispatch(layer)
}

fn emit(dispatch: &tracing::Dispatch) {
    tracing::dispatcher::with_default(dispatch, || {
        for i in 0..EVENTS {
            tracing::info!(i, "queued");
        }
    });
}

fn panic_with_hook(file: &Path) {
    let dispatch = quiet_pipeline(file);
    std::panic::set_hook(Box::new(|info| eprintln!("the previous hook ran: {info}")));
    GUARD
        .get()
        .unwrap()
        .handle()
        .install_panic_hook(Duration::from_secs(10));
    emit(&dispatch);
    panic!("boom after queueing");
}

fn flush_then_exit(file: &Path) {
    let dispatch = quiet_pipeline(file);
    emit(&dispatch);
    let _ = GUARD.get().unwrap().handle().flush(Duration::from_secs(10));
    std::process::exit(3);
}

fn sink_panics_with_hook() {
    let gate = Gate::new("gate");
    gate.set(Mode::Panic);
    let (layer, guard) = OffloadLayer::builder().sink(gate).build().unwrap();
    let handle = guard.handle();
    // A timeout far past the test's deadline: a hook that waited for the panicking sink
    // thread to finish would hold it (and the sink's disabling) that long.
    handle.install_panic_hook(Duration::from_secs(3_600));
    tracing::dispatcher::with_default(&dispatch(layer), || tracing::info!("makes the sink panic"));
    wait_until("the panicking sink to be disabled", DEADLINE, || {
        handle.stats().sink("gate").unwrap().disabled
    });
    let _ = guard.shutdown(DEADLINE); // the disabled sink counts what it never wrote
}
