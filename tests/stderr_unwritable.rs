//! The crate's own lines on stderr when stderr cannot take them (adversary pass 57):
//! - written to `/dev/full` (or a pipe whose reader is gone), `eprintln!` panicked: in
//!   `build()` and `init()` with an invalid variable, in `reload_from_env()`, and in a refused
//!   remote parent, on the application's thread inside its `tracing` call;
//! - on a full pipe nobody reads, which the console sink, stuck writing to it, holds locked, a
//!   dropped guard's line about what it abandoned never returned (the program could not exit),
//!   nor did an `info!` after the guard was dropped (its one-time line about the lost record).
mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;
use tracing_offload::{sink, Builder, OffloadLayer, OffloadSpanExt};

/// From here on, this process's stderr is `/dev/full`: every write to it fails.
fn stderr_to_dev_full() {
    use std::os::fd::AsRawFd;
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    // SAFETY: `dup2` on two open descriptors; fd 2 now refers to /dev/full.
    assert_eq!(unsafe { libc::dup2(full.as_raw_fd(), 2) }, 2);
}

#[test]
#[ignore = "run by the crate_lines_on_an_unwritable_stderr_do_not_panic, in a child process"]
fn child_crate_lines_on_dev_full() {
    stderr_to_dev_full();
    let invalid = |var: &str| match var {
        "OFFLOAD_CAPACITY" => Some("lots".to_owned()),
        "OFFLOAD_SAMPLE_RATE" => Some("most".to_owned()),
        _ => None,
    };
    let (channel, _records) = sink::Channel::new(1024);
    let (layer, guard) = Builder::from_env_with(&invalid)
        .sink(channel)
        .build()
        .unwrap();
    let handle = guard.handle();
    let refused = with_layer(layer, || {
        let root = tracing::info_span!("root");
        let _child = tracing::info_span!(parent: &root, "child");
        root.set_parent_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    });
    assert!(refused.is_err());
    assert_eq!(handle.stats().reparent_refused, 1);
    assert!(!handle.reload_from_env_with(&invalid).is_empty());
    guard.shutdown(DEADLINE).unwrap();
}

#[test]
fn crate_lines_on_an_unwritable_stderr_do_not_panic() {
    stderr_of_child_test("child_crate_lines_on_dev_full");
}

#[test]
#[ignore = "run by a_full_stderr_pipe_blocks_neither_the_guard_drop_nor_the_caller, with its \
            stderr a pipe nobody reads"]
fn child_console_on_a_full_stderr_pipe() {
    let (layer, guard) = OffloadLayer::builder()
        .sink(sink::Console::stderr())
        .drop_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let handle = guard.handle();
    let dispatch = dispatch(layer);
    let pad = "p".repeat(200);
    // Until the console sink is stuck writing to the full pipe.
    wait_until("the console sink stuck in a write", DEADLINE, || {
        tracing::dispatcher::with_default(&dispatch, || {
            for i in 0..500 {
                tracing::info!(i, pad = pad.as_str(), "filling the pipe");
            }
        });
        handle
            .stats()
            .sink("console")
            .and_then(|s| s.export_in_progress_for)
            .is_some_and(|d| d > Duration::from_millis(300))
    });
    let start = Instant::now();
    drop(guard);
    println!("guard dropped after {:?}", start.elapsed());
    // A record after the guard is gone: refused, with a one-time line on stderr.
    let start = Instant::now();
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("after the guard"));
    println!("info! returned after {:?}", start.elapsed());
}

#[test]
fn a_full_stderr_pipe_blocks_neither_the_guard_drop_nor_the_caller() {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "child_console_on_a_full_stderr_pipe",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped()) // never read: it fills
        .spawn()
        .unwrap();
    let _unread_stderr = child.stderr.take();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::park_timeout(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(
        status.is_some_and(|s| s.success()) && stdout.contains("1 passed"),
        "the child hung or failed ({status:?}):\n{stdout}"
    );
    assert!(stdout.contains("guard dropped after"), "{stdout}");
    assert!(stdout.contains("info! returned after"), "{stdout}");
}
