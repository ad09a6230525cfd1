//! Ending the process without dropping the guard: `Handle::install_panic_hook` flushes what is
//! queued when a panic ends the process, chaining the hook installed before it, and never
//! waits on itself when a crate thread panics; `flush` before `process::exit` keeps what was
//! queued.
//!
//! Each scenario runs in a child process (this test binary run again with `CHILD_SCENARIO`
//! set, for one `#[ignore]`d entry point): the process must really end, and a panic hook is
//! process-wide.
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::admin::{Gate, Mode};
use support::*;
use tracing_offload::{sink, Guard, OffloadLayer};

const SCENARIO: &str = "CHILD_SCENARIO";
const FILE: &str = "CHILD_FILE";
const EVENTS: usize = 100;

/// What a child process left: its exit status and its stderr.
struct Child {
    status: std::process::ExitStatus,
    stderr: String,
}

/// Runs the child entry point with `scenario`, writing to `file`; a child that has not ended
/// by the deadline is killed and fails the test (a hook that waits for itself hangs).
fn run_child(scenario: &str, file: &Path) -> Child {
    let stderr_path = file.with_extension("stderr");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_process", "--exact", "--ignored", "--nocapture"])
        .env(SCENARIO, scenario)
        .env(FILE, file)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("the test binary runs again");
    let mut status = None;
    let deadline = Instant::now() + 2 * DEADLINE;
    while status.is_none() && Instant::now() < deadline {
        status = child.try_wait().unwrap();
        std::thread::park_timeout(Duration::from_millis(5));
    }
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the child `{scenario}` did not end; stderr:\n{stderr}");
    };
    Child { status, stderr }
}

fn lines(file: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("whole JSON lines"))
        .collect()
}

fn file_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("app.jsonl")
}

#[test]
fn a_panic_with_the_hook_installed_writes_what_was_queued() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_child("panic_with_hook", &file_in(&dir));
    let stderr = &out.stderr;
    assert!(!out.status.success(), "the child must fail: {stderr}");
    assert!(stderr.contains("the previous hook ran"), "{stderr}");
    assert!(stderr.contains("boom after queueing"), "{stderr}");
    let events = lines(&file_in(&dir));
    assert_eq!(events.len(), EVENTS, "{stderr}");
    assert_eq!(events[EVENTS - 1]["fields"]["i"], EVENTS - 1);
}

#[test]
fn flush_before_process_exit_writes_what_was_queued() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_child("flush_then_exit", &file_in(&dir));
    assert_eq!(out.status.code(), Some(3), "{}", out.stderr);
    assert_eq!(lines(&file_in(&dir)).len(), EVENTS);
}

#[test]
fn a_sink_that_panics_under_the_hook_is_disabled_without_waiting_for_itself() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_child("sink_panics_with_hook", &file_in(&dir));
    let stderr = &out.stderr;
    assert!(out.status.success(), "{stderr}");
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
