//! Panics and the accounting (adversary pass 60: held; kept as regression tests). A panic hook
//! that logs through `tracing`, panics on other threads inside entered spans (spans closed
//! while unwinding), the crate's own panic hook chained with one that logs. Each scenario runs
//! in a child process with a deadline.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use tracing_offload::{sink, Backpressure, OffloadLayer};
use tracing_subscriber::prelude::*;

#[path = "support/child_scenario.rs"]
mod child_scenario;
use child_scenario::{report, run_checked, Outcome, FILE, SCENARIO};

const THREADS: u64 = 8;

static EVENTS: AtomicU64 = AtomicU64::new(0);
static SPANS: AtomicU64 = AtomicU64::new(0);

/// The events and spans the scenario offered.
fn offered() -> u64 {
    EVENTS.load(SeqCst) + SPANS.load(SeqCst)
}

fn check(scenario: &str) -> Vec<serde_json::Value> {
    let Outcome {
        verdict: v,
        records,
        written,
        stderr,
    } = run_checked(scenario);
    assert_eq!(
        written, v["offered"],
        "every record offered is in the file: {v:?}\n{stderr}"
    );
    assert_eq!(v["open_spans"], 0, "{v:?}");
    records
}

fn pipeline(file: &Path) -> (tracing_offload::Guard, tracing_offload::Handle) {
    let (layer, guard) = OffloadLayer::builder()
        .backpressure(Backpressure::Block {
            timeout: Duration::from_secs(5),
        })
        .sink(sink::JsonFile::new(file))
        .build()
        .unwrap();
    tracing_subscriber::registry().with(layer).init();
    let handle = guard.handle();
    (guard, handle)
}

/// A hook that logs the panic through tracing, then calls the previous one.
fn logging_hook() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        EVENTS.fetch_add(1, SeqCst);
        tracing::error!(panic = %info, "panicked");
        prev(info);
    }));
}

/// Threads that panic inside two entered spans, after an event.
fn panicking_threads() {
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                SPANS.fetch_add(1, SeqCst);
                let _outer = tracing::info_span!("outer", t).entered();
                SPANS.fetch_add(1, SeqCst);
                let _inner = tracing::info_span!("inner", t).entered();
                EVENTS.fetch_add(1, SeqCst);
                tracing::info!(t, "about to panic");
                panic!("thread {t} gives up");
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().is_err());
    }
}

/// A value whose `Debug` logs and then panics: a panic raised inside the layer's capture.
struct Bomb;
impl std::fmt::Debug for Bomb {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        panic!("Debug panics")
    }
}

fn scenario_hook_logs(file: &Path) {
    let (guard, handle) = pipeline(file);
    logging_hook();
    panicking_threads();
    guard.shutdown(Duration::from_secs(5)).unwrap();
    report(&handle, offered());
}

fn scenario_crate_hook_then_logging_hook(file: &Path) {
    let (guard, handle) = pipeline(file);
    handle.install_panic_hook(Duration::from_secs(2));
    logging_hook();
    panicking_threads();
    guard.shutdown(Duration::from_secs(5)).unwrap();
    report(&handle, offered());
}

fn scenario_logging_hook_then_crate_hook(file: &Path) {
    let (guard, handle) = pipeline(file);
    logging_hook();
    handle.install_panic_hook(Duration::from_secs(2));
    panicking_threads();
    guard.shutdown(Duration::from_secs(5)).unwrap();
    report(&handle, offered());
}

/// The panic is raised inside the layer (a field's Debug), in spans, with both hooks: the
/// logging hook re-enters the layer on the thread that is capturing.
fn scenario_panic_in_capture_with_hooks(file: &Path) {
    let (guard, handle) = pipeline(file);
    handle.install_panic_hook(Duration::from_secs(2));
    logging_hook();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                SPANS.fetch_add(1, SeqCst);
                let _outer = tracing::info_span!("outer", t).entered();
                EVENTS.fetch_add(1, SeqCst);
                tracing::info!(t, "fine");
                // the record whose capture panics is neither offered nor counted (README)
                tracing::info!(t, bomb = ?Bomb, "never");
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().is_err());
    }
    guard.shutdown(Duration::from_secs(5)).unwrap();
    report(&handle, offered());
}

#[test]
#[ignore = "run by the tests below in a child process"]
fn child_process() {
    let file = PathBuf::from(std::env::var_os(FILE).unwrap());
    match std::env::var(SCENARIO).unwrap().as_str() {
        "hook_logs" => scenario_hook_logs(&file),
        "crate_hook_then_logging_hook" => scenario_crate_hook_then_logging_hook(&file),
        "logging_hook_then_crate_hook" => scenario_logging_hook_then_crate_hook(&file),
        "panic_in_capture_with_hooks" => scenario_panic_in_capture_with_hooks(&file),
        other => panic!("unknown scenario {other}"),
    }
}

fn assert_hook_events_in_their_spans(records: &[serde_json::Value]) {
    let hooks: Vec<_> = records
        .iter()
        .filter(|r| r["message"] == "panicked")
        .collect();
    assert_eq!(hooks.len() as u64, THREADS, "one hook event per panic");
    for h in hooks {
        assert!(
            h["span_id"].is_string(),
            "the hook's event is inside the panicking span: {h}"
        );
    }
}

#[test]
fn a_logging_panic_hook_keeps_every_record() {
    let r = check("hook_logs");
    assert_hook_events_in_their_spans(&r);
}

#[test]
fn the_crate_hook_chained_under_a_logging_hook() {
    let r = check("crate_hook_then_logging_hook");
    assert_hook_events_in_their_spans(&r);
}

#[test]
fn a_logging_hook_chained_under_the_crate_hook() {
    let r = check("logging_hook_then_crate_hook");
    assert_hook_events_in_their_spans(&r);
}

#[test]
fn a_panic_inside_capture_with_hooks() {
    check("panic_in_capture_with_hooks");
}
