//! Adversary pass 66: pass 65 made a `shutdown` that *waited* for another thread's shutdown
//! return that shutdown's outcome (`Err(Abandoned)`), so `main`'s `guard.shutdown(..)?` no
//! longer passes when a signal handler's / panic hook's shutdown cut records off. But the same
//! call made a moment later — after the first shutdown finished, the more common order —
//! still returns `Ok`, with `abandoned` empty and the still-running sink thread in
//! `unfinished_threads`: an `Ok` the first call itself would never return (it returns
//! `Abandoned` whenever threads are unfinished). The outcome `main` sees depends on timing.
mod support;

use std::time::Duration;

use support::*;
use tracing_offload::{FlushError, OffloadLayer};

#[test]
fn a_shutdown_after_one_that_abandoned_records_does_not_return_ok() {
    let (guard, _dispatch, _release_at_the_end) = stuck_in_an_export(OffloadLayer::builder(), 100);
    let handle = guard.handle();
    // The signal handler's shutdown, with a short deadline the stalled sink makes it miss.
    let first = handle.shutdown(Duration::from_millis(300));
    let Err(FlushError::Abandoned { report: first }) = first else {
        panic!("the first shutdown abandons the stalled sink's records: {first:?}")
    };
    assert!(first.abandoned.total() > 0, "{first:?}");
    // `main`'s shutdown, called after the handler's returned (sink still stalled).
    let second = handle.shutdown(Duration::from_secs(1));
    if let Ok(report) = &second {
        panic!(
            "a shutdown called after one that abandoned {} records returned Ok (`?` passes) with \
             abandoned = {} and unfinished threads {:?} — a call that overlapped the first gets \
             Err(Abandoned) for the same pipeline state: {report:?}",
            first.abandoned.total(),
            report.abandoned.total(),
            report.unfinished_threads,
        );
    }
}

#[test]
fn an_ok_shutdown_never_lists_unfinished_threads() {
    // Same pipeline state; whatever a later call returns, `Ok` with threads still running
    // contradicts the doc ("Returns the report, or Abandoned … or that the threads had not
    // ended by then").
    let (guard, _dispatch, _release_at_the_end) = stuck_in_an_export(OffloadLayer::builder(), 1);
    let handle = guard.handle();
    let first = handle.shutdown(Duration::from_millis(200));
    assert!(first.is_err(), "{first:?}");
    for _ in 0..3 {
        if let Ok(report) = handle.shutdown(Duration::from_millis(100)) {
            assert!(
                report.unfinished_threads.is_empty(),
                "Ok with unfinished threads {:?}",
                report.unfinished_threads
            );
        }
    }
}
