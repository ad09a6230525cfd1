//! Loss that would go unheard is said on stderr: the first record offered after the guard was
//! dropped prints one line saying so and how to keep the guard, and a dropped guard whose
//! shutdown abandoned records says how many. An explicit `shutdown` and `quiet_on_drop` keep
//! stderr silent. Each scenario runs in a child process, whose stderr the parent reads.
mod support;

use std::time::Duration;

use support::*;
use tracing_offload::{DropReason, Guard, Handle, OffloadLayer};

const LOST_GUARD: &str = "the pipeline shut down when its Guard was dropped";
const ABANDONED: &str = "dropping the guard shut the pipeline down";

fn pipeline(sink: &Collect) -> (tracing::Dispatch, Guard) {
    let (layer, guard) = OffloadLayer::builder()
        .sink(sink.clone())
        .drop_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    (dispatch(layer), guard)
}

fn emit(dispatch: &tracing::Dispatch, n: u64) {
    tracing::dispatcher::with_default(dispatch, || {
        for i in 0..n {
            tracing::info!(i, "tick");
        }
    });
}

#[track_caller]
fn assert_dropped_at_shutdown(handle: &Handle, n: u64) {
    let stats = handle.stats();
    assert_eq!(stats.dropped_for(DropReason::Shutdown), n, "{stats:#?}");
}

// === children: each a scenario, run by the tests below in a process of its own ===

#[test]
#[ignore = "run in a child process by records_after_a_dropped_guard_are_announced_once"]
fn child_drops_the_guard_then_logs() {
    let sink = Collect::new("c");
    let (dispatch, guard) = pipeline(&sink);
    let handle = guard.handle();
    drop(guard);
    emit(&dispatch, 3);
    assert_dropped_at_shutdown(&handle, 3);
}

#[test]
#[ignore = "run in a child process by an_explicit_shutdown_or_a_quiet_guard_says_nothing"]
fn child_shuts_down_explicitly_then_logs() {
    let sink = Collect::new("c");
    let (dispatch, guard) = pipeline(&sink);
    let handle = guard.handle();
    guard.shutdown(DEADLINE).unwrap();
    emit(&dispatch, 2);
    drop(guard);
    emit(&dispatch, 2);
    assert_dropped_at_shutdown(&handle, 4);
}

#[test]
#[ignore = "run in a child process by an_explicit_shutdown_or_a_quiet_guard_says_nothing"]
fn child_drops_a_quiet_guard_then_logs() {
    let sink = Collect::new("c");
    let (dispatch, guard) = pipeline(&sink);
    let handle = guard.handle();
    drop(guard.quiet_on_drop());
    emit(&dispatch, 2);
    assert_dropped_at_shutdown(&handle, 2);
}

/// A stalled sink holds the 5 records when the guard is dropped; the drop timeout cuts them
/// off.
fn drop_a_guard_that_abandons_records(quiet: bool) {
    let sink = Collect::new("stalled");
    sink.stall();
    let (dispatch, guard) = pipeline(&sink);
    let handle = guard.handle();
    emit(&dispatch, 5);
    drop(if quiet { guard.quiet_on_drop() } else { guard });
    // Abandoned in the sink, or in the queue if the drain thread had not moved them yet.
    let stats = handle.stats();
    let in_sink = stats.sink("stalled").unwrap();
    let abandoned = stats.dropped_for(DropReason::ShutdownDeadline)
        + in_sink.dropped_for(DropReason::ShutdownDeadline);
    assert_eq!(abandoned, 5, "{stats:#?}");
}

#[test]
#[ignore = "run in a child process by a_dropped_guard_that_abandoned_records_says_how_many"]
fn child_drops_a_guard_that_abandons_records() {
    drop_a_guard_that_abandons_records(false);
}

#[test]
#[ignore = "run in a child process by an_explicit_shutdown_or_a_quiet_guard_says_nothing"]
fn child_drops_a_quiet_guard_that_abandons_records() {
    drop_a_guard_that_abandons_records(true);
}

// === the tests ===

#[test]
fn records_after_a_dropped_guard_are_announced_once() {
    let stderr = stderr_of_child_test("child_drops_the_guard_then_logs");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(LOST_GUARD)).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("tracing-offload: ") && lines[0].contains("let _guard ="),
        "{stderr}"
    );
}

#[test]
fn a_dropped_guard_that_abandoned_records_says_how_many() {
    let stderr = stderr_of_child_test("child_drops_a_guard_that_abandons_records");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(ABANDONED)).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("(200ms) passed with 5 records not written (")
            && lines[0].contains("threads still running: offload-sink-stalled")
            && lines[0].contains("shutdown_deadline")
            && lines[0].contains("Builder::drop_timeout"),
        "{stderr}"
    );
}

#[test]
fn an_explicit_shutdown_or_a_quiet_guard_says_nothing() {
    for child in [
        "child_shuts_down_explicitly_then_logs",
        "child_drops_a_quiet_guard_then_logs",
        "child_drops_a_quiet_guard_that_abandons_records",
    ] {
        let stderr = stderr_of_child_test(child);
        assert!(
            !stderr.contains("tracing-offload:"),
            "{child} printed:\n{stderr}"
        );
    }
}
