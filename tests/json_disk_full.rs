//! A full disk in the middle of a batch: every line in the file is whole, the records that
//! reached the file are counted exported (and only those), the rest failed, and once there is
//! room again the next records start on a line of their own, after an in-band marker that says
//! how many records the file is missing.
//!
//! The disk fills for real through the kernel's file-size limit: a child process (this test
//! binary run again) sets `RLIMIT_FSIZE` and ignores `SIGXFSZ`, so a `write` that crosses the
//! limit is cut short by the kernel and the next one fails with `EFBIG` — the same short write
//! then error that a full disk (`ENOSPC`) gives, without root or a mount. Raising the limit
//! again stands in for freeing space.
#![cfg(unix)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;
use tracing_offload::sink::JsonFile;
use tracing_offload::OffloadLayer;

const FILE: &str = "DISK_FULL_CHILD_FILE";
/// The file-size limit, far below what the records need.
const LIMIT_BYTES: u64 = 20_000;
const WHILE_FULL: u64 = 1_000;
const AFTER: u64 = 10;

#[test]
fn a_full_disk_leaves_whole_lines_and_counts_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.jsonl");
    let report = run_child(&file);
    let (exported, failed) = (report["exported"].as_u64(), report["failed"].as_u64());
    let (exported, failed) = (exported.unwrap(), failed.unwrap());

    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.ends_with('\n'), "the file ends in a torn line");
    let mut events = Vec::new();
    let mut reported_failed = 0;
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("a broken line ({e}): {line:?}"));
        if v["kind"] == "event" {
            events.push(v["message"].as_str().unwrap().to_owned());
        }
        if v["kind"] == "dropped" {
            reported_failed += v["dropped"]["failed"].as_u64().unwrap_or(0);
            // The gap is where the marker is: after the last record the disk took.
            assert!(
                !events.iter().any(|m| m == "after"),
                "the marker comes before the records written after the disk had room: {line}\n{text}"
            );
            assert!(
                v["message"].as_str().unwrap().contains("failed: "),
                "{line}"
            );
        }
    }
    // The file itself says how many records it is missing.
    assert_eq!(reported_failed, failed, "{report}\n{text}");
    // The limit really bit, and what reached the file is exactly what was counted exported.
    assert!(failed > 0 && exported > AFTER, "{report}");
    assert_eq!(exported + failed, WHILE_FULL + AFTER, "{report}");
    assert_eq!(events.len() as u64, exported, "{report}");
    // With room again, the later records were written whole, after the last whole line.
    let after = events.iter().filter(|m| *m == "after").count() as u64;
    assert_eq!(after, AFTER, "{report}");
    assert!(events.ends_with(&vec!["after".to_owned(); AFTER as usize]));
}

/// Runs the child scenario; returns the sink's counts it printed.
fn run_child(file: &Path) -> serde_json::Value {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_process", "--exact", "--ignored", "--nocapture"])
        .env(FILE, file)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the test binary runs again");
    let deadline = Instant::now() + 2 * DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the child did not end");
        }
        std::thread::park_timeout(Duration::from_millis(5));
    };
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert!(status.success(), "child failed: {stdout}");
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("REPORT "))
        .unwrap_or_else(|| panic!("no report in: {stdout}"));
    serde_json::from_str(line).unwrap()
}

#[test]
#[ignore = "a child process of the test above"]
fn child_process() {
    let Some(file) = std::env::var_os(FILE).map(PathBuf::from) else {
        return;
    };
    let (layer, guard) = OffloadLayer::builder()
        .batch_size(64)
        .sink(JsonFile::new(&file))
        .build()
        .unwrap();
    let handle = guard.handle();
    let dispatch = dispatch(layer);
    ignore_sigxfsz();
    set_file_size_limit(LIMIT_BYTES);
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..WHILE_FULL {
            tracing::info!(i, padding = "x".repeat(100), "while full");
        }
    });
    handle.flush(DEADLINE).unwrap();
    set_file_size_limit(libc::RLIM_INFINITY);
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..AFTER {
            tracing::info!(i, "after");
        }
    });
    guard.shutdown(DEADLINE).unwrap();
    let s = handle.stats();
    let json = s.sink("json").unwrap();
    println!(
        "REPORT {}",
        serde_json::json!({
            "exported": json.exported,
            "failed": json.failed,
            "last_error": json.last_error,
        })
    );
}

/// A write past the limit then fails with `EFBIG` instead of killing the process.
fn ignore_sigxfsz() {
    // SAFETY: `signal` with `SIG_IGN` installs no handler code; it only sets the disposition.
    let previous = unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    assert_ne!(previous, libc::SIG_ERR);
}

/// Sets this process's soft file-size limit (the hard limit is left as it is).
fn set_file_size_limit(bytes: libc::rlim_t) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable `rlimit` for the duration of the call.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit) },
        0
    );
    limit.rlim_cur = bytes.min(limit.rlim_max);
    // SAFETY: `limit` is a valid `rlimit` for the duration of the call.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &limit) }, 0);
}
