//! A child process forked after a pipeline was built (a daemonising service, a pre-fork server)
//! has none of the pipeline's threads: they stayed in the parent (adversary pass 58).
//! - A fork made while other threads logged could leave one of the lock-free queues with a
//!   push the fork cut short, and the child's first span waited for it for ever (1 to 3 forks
//!   in 300), under `DropNewest`.
//! - In the child, `is_running()` said true and health healthy, while nothing was written.
//! - The crate's lines on stderr went to a notice thread that is the parent's.
//!
//! In a forked child the pipeline records nothing, counts what is offered as dropped
//! (`shutdown`), says it is not running, and says why on stderr, once.
#![cfg(unix)]
mod support;

use std::io::Read;
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use tracing_offload::health::HealthStatus;
use tracing_offload::sink::{Sink, SinkError};
use tracing_offload::{DropReason, FlushError, OffloadLayer, OffloadSpanExt, Record};

/// Takes every batch and keeps nothing.
struct Discard;

impl Sink for Discard {
    fn name(&self) -> &str {
        "discard"
    }
    fn export(&mut self, _batch: &[Record]) -> Result<(), SinkError> {
        Ok(())
    }
}

/// What the loggers and the children do: a span with an event in it, and an event alone.
fn work() {
    tracing::info_span!("work", n = 1u64).in_scope(|| tracing::info!(k = 2u64, "inside"));
    tracing::info!("outside");
}

/// Waits for a forked child; its exit code, or `None` if it did not exit (killed by the alarm
/// it set itself).
fn wait_for(pid: libc::pid_t) -> Option<i32> {
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid out-pointer.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status))
}

/// Forks made while two threads log: enough for a few to cut a push short.
const FORKS: usize = 1_000;

#[test]
fn forks_made_while_threads_log_never_hang_the_child() {
    let dir = tempfile::tempdir().unwrap();
    let (layer, guard) = OffloadLayer::builder()
        .capacity(4096)
        .sink(tracing_offload::sink::JsonFile::new(
            dir.path().join("forks.jsonl"),
        ))
        .build()
        .unwrap();
    let dispatch = dispatch(layer);
    // Every callsite registered before the forks (`tracing`'s registration takes a lock).
    tracing::dispatcher::with_default(&dispatch, work);
    let stop = Arc::new(AtomicBool::new(false));
    let loggers: Vec<_> = (0..2)
        .map(|_| {
            let (dispatch, stop) = (dispatch.clone(), stop.clone());
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    while !stop.load(Ordering::Relaxed) {
                        work();
                    }
                })
            })
        })
        .collect();
    let handle = guard.handle();
    let mut guard = Some(guard);
    let (mut hung, mut failed) = (0, Vec::new());
    for _ in 0..FORKS {
        // SAFETY: the child only logs through the pipeline and leaves with `_exit`.
        match unsafe { libc::fork() } {
            0 => {
                // SAFETY: plain system calls in the child; a hung child is killed by SIGALRM.
                unsafe { libc::alarm(10) };
                tracing::dispatcher::with_default(&dispatch, || (0..20).for_each(|_| work()));
                // Flush, shutdown and the guard's drop: nothing of the parent's to wait for
                // (pass 59: they waited for its locks for ever, or the whole drop timeout).
                let start = Instant::now();
                let flushed = handle.flush(Duration::from_secs(5));
                let shut = handle.shutdown(Duration::from_secs(5));
                drop(guard.take());
                let code = if flushed != Err(FlushError::ForkedChild)
                    || !matches!(shut, Err(FlushError::ForkedChild))
                {
                    2
                } else if start.elapsed() > Duration::from_secs(1) {
                    3
                } else {
                    0
                };
                unsafe { libc::_exit(code) }
            }
            pid => {
                assert!(pid > 0, "fork failed");
                match wait_for(pid) {
                    Some(0) => {}
                    Some(code) => failed.push(code),
                    None => hung += 1,
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    loggers.into_iter().for_each(|t| t.join().unwrap());
    guard.take().unwrap().shutdown(DEADLINE).unwrap();
    assert_eq!(hung, 0, "children that hung (killed after 10 s) of {FORKS}");
    assert!(
        failed.is_empty(),
        "2: flush or shutdown not refused as in a forked child, 3: slow: {failed:?}"
    );
}

#[test]
fn a_forked_child_records_nothing_counts_what_it_drops_and_says_why() {
    let (layer, guard) = OffloadLayer::builder().sink(Discard).build().unwrap();
    let handle = guard.handle();
    let dispatch = dispatch(layer);
    // A line on stderr before the fork starts the parent's notice thread, which the child does
    // not have.
    tracing::dispatcher::with_default(&dispatch, || {
        let root = tracing::info_span!("root");
        let _child = tracing::info_span!(parent: &root, "child");
        assert!(root
            .set_parent_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            .is_err());
    });
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child logs through the pipeline, reads its state, and leaves with `_exit`.
    match unsafe { libc::fork() } {
        0 => {
            // SAFETY: plain system calls on descriptors this process owns.
            unsafe {
                libc::alarm(10);
                libc::dup2(fds[1], 2);
            }
            let before = handle.stats().dropped_for(DropReason::Shutdown);
            tracing::dispatcher::with_default(&dispatch, || (0..10).for_each(|_| work()));
            let dropped = handle.stats().dropped_for(DropReason::Shutdown) - before;
            let code = if handle.is_running() {
                1
            } else if dropped != 30 {
                2
            } else if handle.health().status == HealthStatus::Healthy {
                3
            } else {
                0
            };
            unsafe { libc::_exit(code) }
        }
        pid => {
            assert!(pid > 0, "fork failed");
            // SAFETY: the write end is ours to close (the child has its own copy).
            unsafe { libc::close(fds[1]) };
            let code = wait_for(pid);
            let mut stderr = String::new();
            // SAFETY: the read end is ours, and owned by this `File` from here on.
            let mut read_end = unsafe { std::fs::File::from_raw_fd(fds[0]) };
            read_end.read_to_string(&mut stderr).unwrap();
            assert_eq!(
                code,
                Some(0),
                "1: running, 2: not 30 records counted dropped, 3: healthy, none: hung; \
                 stderr:\n{stderr}"
            );
            assert!(stderr.contains("forked"), "{stderr:?}");
            assert_eq!(stderr.matches("forked").count(), 1, "{stderr:?}");
        }
    }
    // The parent goes on as before.
    assert!(handle.is_running());
    tracing::dispatcher::with_default(&dispatch, work);
    guard.shutdown(DEADLINE).unwrap();
    let stats = handle.stats();
    assert_eq!(stats.dropped, 0, "{stats:#?}");
}

/// The resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// A span entered and exited in a forked child: the thread's stack of entered spans was pushed
/// and never popped there, and grew for ever (94 MB for 4 000 000 pairs; adversary pass 59).
#[test]
fn spans_entered_in_a_forked_child_leave_nothing_behind() {
    let (layer, guard) = OffloadLayer::builder().sink(Discard).build().unwrap();
    let dispatch = dispatch(layer);
    tracing::dispatcher::with_default(&dispatch, work);
    // SAFETY: the child enters a span in a loop and leaves with `_exit`.
    match unsafe { libc::fork() } {
        0 => {
            // SAFETY: a plain system call; a hung child is killed by SIGALRM.
            unsafe { libc::alarm(60) };
            let grew = tracing::dispatcher::with_default(&dispatch, || {
                let span = tracing::info_span!("entered again and again");
                let before = rss_kib();
                for _ in 0..2_000_000 {
                    let _entered = span.enter();
                }
                rss_kib().saturating_sub(before)
            });
            unsafe { libc::_exit(i32::from(grew > 8 * 1024)) }
        }
        pid => {
            assert!(pid > 0, "fork failed");
            assert_eq!(
                wait_for(pid),
                Some(0),
                "1: 2 000 000 enters grew the child by more than 8 MiB; none: it hung"
            );
        }
    }
    guard.shutdown(DEADLINE).unwrap();
}
