//! Each `shutdown(timeout)` holds its own deadline, also while another thread's shutdown is
//! under way (a panic hook, a signal handler and `main` may all shut down): it returns by its
//! deadline, saying what is still pending, instead of waiting for the other call — which used
//! to keep it waiting as long as the other call's deadline, for ever with `Duration::MAX`.
mod support;

use std::time::Duration;

use support::*;
use tracing_offload::{DropReason, FlushError, OffloadLayer};

#[test]
fn a_second_shutdown_returns_by_its_own_deadline() {
    let (guard, dispatch, stalled) = stuck_in_an_export(OffloadLayer::builder(), 1);
    let sink = &stalled.0;
    let handle = guard.handle();
    // A shutdown that waits as long as it takes (the sink is stalled).
    let patient = {
        let handle = handle.clone();
        std::thread::spawn(move || handle.shutdown(Duration::MAX))
    };
    wait_until("the first shutdown to close the pipeline", DEADLINE, || {
        tracing::dispatcher::with_default(&dispatch, || tracing::info!("after close"));
        handle.stats().dropped_for(DropReason::Shutdown) > 0
    });
    // A second one with a short deadline.
    let hasty = {
        let handle = handle.clone();
        std::thread::spawn(move || handle.shutdown(Duration::from_millis(10)))
    };
    wait_until("the second shutdown to return", DEADLINE, || {
        hasty.is_finished()
    });
    match hasty.join().unwrap() {
        Err(FlushError::Timeout { pending }) => {
            assert!(pending.total() > 0, "{pending:?}");
        }
        other => panic!("expected a timeout saying what is pending, got {other:?}"),
    }
    assert!(
        !patient.is_finished(),
        "the first shutdown is still waiting"
    );
    sink.release();
    let report = patient.join().unwrap().expect("everything was written");
    assert!(report.abandoned.is_empty(), "{report:?}");
    let stats = handle.stats();
    assert_eq!(sink.count() as u64, stats.enqueued, "{stats:#?}");
    // Once one shutdown has finished, later calls do nothing more and return its outcome.
    handle.shutdown(Duration::ZERO).unwrap();
}
