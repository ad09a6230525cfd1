//! Adversary pass 65: `sink::Channel::new(capacity)` takes any `usize` and hands it to
//! `std::sync::mpsc::sync_channel`, which allocates every slot at once: `usize::MAX` panics
//! ("capacity overflow") and 2^32 aborts the whole process (the allocation of 64 GiB fails),
//! before `build()` can say anything. Every other count of the crate has a range and "a count
//! outside its range given to a builder method makes `build()` fail with
//! `BuildError::OutOfRange`, which says the range" (README, Configuration); the sink buffer
//! in front of the channel is capped at `MAX_SINK_BUFFER_CAPACITY` for the same reason ("a huge
//! value would abort the process").
mod support;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;

use support::*;
use tracing_offload::sink::Channel;
use tracing_offload::OffloadLayer;

/// Builds a pipeline with a channel of `capacity`: the error's text, or "built".
fn build_with_channel(capacity: usize) -> String {
    let (channel, _records) = Channel::new(capacity);
    match OffloadLayer::builder().sink(channel).build() {
        Ok(_) => "built".to_owned(),
        Err(e) => error_chain(&e),
    }
}

#[test]
fn a_channel_of_usize_max_records_is_a_build_error_not_a_panic() {
    let outcome = catch_unwind(AssertUnwindSafe(|| build_with_channel(usize::MAX)));
    let text =
        outcome.expect("Channel::new(usize::MAX) panicked instead of letting build() refuse it");
    assert!(
        text.contains(&tracing_offload::sink::MAX_SINK_BUFFER_CAPACITY.to_string()),
        "build() says the range: {text}"
    );
}

#[test]
#[ignore = "run by a_channel_of_four_billion_records_does_not_abort_the_process, in a child"]
fn child_builds_a_channel_of_four_billion_records() {
    let text = catch_unwind(AssertUnwindSafe(|| build_with_channel(1 << 32)));
    eprintln!("CHILD OUTCOME: {text:?}");
}

#[test]
fn a_channel_of_four_billion_records_does_not_abort_the_process() {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "child_builds_a_channel_of_four_billion_records",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.contains("CHILD OUTCOME"),
        "the process died building a pipeline with Channel::new(1 << 32): {:?}\n{stderr}",
        out.status
    );
}
