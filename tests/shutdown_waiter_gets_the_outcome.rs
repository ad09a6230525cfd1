//! Adversary pass 65: a `shutdown` that waits for another thread's shutdown (a signal handler's
//! or a panic hook's, say, with a short deadline) returns `Ok` with an empty
//! `ShutdownReport::abandoned` and a list of threads still running, although the shutdown it
//! waited for cut records off. `main`'s `guard.shutdown(..)?` then passes as if everything
//! was flushed (README, Use: "flush everything or report what was abandoned"); for the first
//! caller, the very same outcome is `FlushError::Abandoned`.
mod support;

use std::time::Duration;

use support::*;
use tracing_offload::{DropReason, FlushError, OffloadLayer};

#[test]
fn a_shutdown_that_waited_for_one_that_abandoned_records_does_not_return_ok() {
    let (guard, dispatch, _release_at_the_end) = stuck_in_an_export(OffloadLayer::builder(), 100);
    let handle = guard.handle();
    // The signal handler's shutdown: a short deadline, which the stalled sink makes it miss.
    let hasty = {
        let handle = handle.clone();
        std::thread::spawn(move || handle.shutdown(Duration::from_secs(2)))
    };
    wait_until("the first shutdown to close the pipeline", DEADLINE, || {
        tracing::dispatcher::with_default(&dispatch, || tracing::info!("after close"));
        handle.stats().dropped_for(DropReason::Shutdown) > 0
    });
    // `main`'s shutdown, made while the first one is under way, with all the time it needs.
    let patient = {
        let handle = handle.clone();
        std::thread::spawn(move || handle.shutdown(DEADLINE))
    };
    let first = hasty.join().unwrap();
    let Err(FlushError::Abandoned { report: first }) = first else {
        panic!("the first shutdown abandons the records of the stalled sink: {first:?}")
    };
    assert!(first.abandoned.total() > 0, "{first:?}");
    let second = patient.join().unwrap();
    match &second {
        Ok(report) => panic!(
            "the shutdown that waited for the first returned Ok (`?` passes: \"everything \
             flushed\") with abandoned = {} and unfinished threads {:?}, although the \
             shutdown it waited for abandoned {} records: {report:?}",
            report.abandoned.total(),
            report.unfinished_threads,
            first.abandoned.total()
        ),
        Err(FlushError::Abandoned { report }) => {
            assert_eq!(report.abandoned, first.abandoned, "{second:?}");
        }
        Err(other) => {
            // A timeout would at least not read as success; it must say what is missing.
            assert!(
                !matches!(other, FlushError::Timeout { pending } if pending.is_empty()),
                "{other:?}"
            );
        }
    }
    // The records the stalled sink was exporting are its loss (the queue's are the
    // pipeline's).
    let stats = handle.stats();
    assert_eq!(
        stats.dropped_for(DropReason::ShutdownDeadline)
            + stats.sinks[0].dropped_for(DropReason::ShutdownDeadline),
        first.abandoned.total(),
        "the loss is in the stats: {stats:#?}"
    );
}
