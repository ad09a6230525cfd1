//! A shutdown's report against what the stats count as dropped at its deadline. Its own test
//! binary: the first test keeps three threads busy, which would starve the timing of other
//! shutdown tests running beside it.
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tracing_offload::{OffloadLayer, TailSampling};

/// A trace held by tail sampling (its root open) when a shutdown's deadline passes is dropped
/// by the drain thread, which then empties its gauges and ends. When it did so before the
/// shutdown call read them, the call returned `Ok` with nothing abandoned while the trace had
/// been dropped (adversary pass 30: 14 runs in 200 on a loaded machine). Whichever comes
/// first, the report now says what was cut off, exactly as the stats count it.
#[test]
fn a_held_trace_dropped_at_the_deadline_is_in_the_report_whoever_comes_first() {
    use tracing_offload::{DropReason, FlushError};
    use tracing_subscriber::prelude::*;
    const ROUNDS: usize = 100;
    // Busy threads, so that the shutting-down thread is preempted between its wait for the
    // drain thread and its look at what is left, as on a loaded machine.
    let stop = Arc::new(AtomicBool::new(false));
    let busy: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let mut wrong = Vec::new();
    for round in 0..ROUNDS {
        let (layer, guard) = OffloadLayer::builder()
            .sink(Collect::new("collect"))
            .flush_interval(Duration::from_secs(3600))
            .tail_sampling(TailSampling::new().keep_ratio(1.0))
            .build()
            .unwrap();
        let handle = guard.handle();
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        let root = tracing::dispatcher::with_default(&dispatch, || {
            let root = tracing::info_span!("root");
            root.in_scope(|| {
                for _ in 0..20 {
                    tracing::info_span!("child").in_scope(|| tracing::info!("step"));
                }
            });
            root
        });
        handle.flush(DEADLINE).unwrap();
        assert_eq!(handle.stats().tail_sampling.buffered_records, 40);
        let reported = match guard.shutdown(Duration::ZERO) {
            Ok(_) => 0,
            Err(FlushError::Abandoned { report }) => {
                report.abandoned.queued + report.abandoned.held
            }
            Err(other) => panic!("round {round}: {other}"),
        };
        wait_until("the drain thread's end", DEADLINE, || !handle.is_running());
        let dropped = handle.stats().dropped_for(DropReason::ShutdownDeadline);
        if reported != dropped {
            wrong.push((round, reported, dropped));
        }
        drop(root);
    }
    stop.store(true, Ordering::Relaxed);
    for b in busy {
        b.join().unwrap();
    }
    assert!(
        wrong.is_empty(),
        "{} of {ROUNDS} shutdowns reported other than what was dropped at the deadline \
         (round, reported, dropped): {wrong:?}",
        wrong.len()
    );
}

/// Deadlines swept across the moment the drain thread hands over traces that tail sampling
/// decided at shutdown: the report is exact whenever every thread finished, and never `Ok`
/// while records were dropped at the deadline (adversary pass 31).
#[test]
fn a_report_is_exact_when_every_thread_finished() {
    use tracing_offload::{DropReason, FlushError};
    use tracing_subscriber::prelude::*;
    const ROUNDS: u64 = 60;
    let mut wrong = Vec::new();
    for round in 0..ROUNDS {
        let (layer, guard) = OffloadLayer::builder()
            .tail_sampling(
                TailSampling::new()
                    .keep_ratio(1.0)
                    .max_buffered_spans(1 << 16),
            )
            .sink(Collect::new("collect"))
            .build()
            .unwrap();
        let handle = guard.handle();
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        let roots: Vec<tracing::Span> = tracing::dispatcher::with_default(&dispatch, || {
            (0..50)
                .map(|_| {
                    let root = tracing::info_span!("root");
                    root.in_scope(|| {
                        for _ in 0..40 {
                            tracing::info_span!("child").in_scope(|| tracing::info!("step"));
                        }
                    });
                    root
                })
                .collect()
        });
        handle.flush(DEADLINE).unwrap();
        let deadline = Duration::from_micros(round % 20 * 100);
        let result = guard.shutdown(deadline);
        wait_until("the threads' end", DEADLINE, || !handle.is_running());
        wait_until("the sink's last batch", DEADLINE, || {
            let s = handle.stats();
            s.sinks[0].completed() == s.sinks[0].forwarded
        });
        let stats = handle.stats();
        // The roots close after: offered then.
        assert_accounting(&stats, 50 * 80);
        let pipeline = stats.dropped_for(DropReason::ShutdownDeadline);
        let sink = stats.sinks[0].dropped_for(DropReason::ShutdownDeadline);
        let report = match result {
            Ok(_) => {
                if pipeline + sink > 0 {
                    wrong.push(format!("round {round}: Ok, {pipeline} + {sink} dropped"));
                }
                continue;
            }
            Err(FlushError::Abandoned { report }) => report,
            Err(other) => panic!("round {round}: {other}"),
        };
        let per_sink: u64 = report.abandoned.per_sink.iter().map(|(_, n)| n).sum();
        let exact = report.abandoned.queued + report.abandoned.held == pipeline && per_sink == sink;
        if report.unfinished_threads.is_empty() && !exact {
            wrong.push(format!(
                "round {round}: {report:?} against {pipeline} + {sink}"
            ));
        }
        tracing::dispatcher::with_default(&dispatch, || drop(roots));
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
