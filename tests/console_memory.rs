//! The console sink gives back the memory of a big batch: it kept its line buffer at the size
//! of the biggest batch it ever wrote, for the pipeline's whole life (64 MiB after a burst of
//! big values; adversary pass 57), as the JSON sink once did. Measured with a global allocator
//! that tracks the bytes live, in a child process whose stdout (the console) the parent takes.
mod support;

use std::time::{Duration, Instant};

use support::live_bytes::{live, LiveBytes};
use support::*;
use tracing_offload::{sink, OffloadLayer};

#[global_allocator]
static GLOBAL: LiveBytes = LiveBytes;

const MB: i64 = 1 << 20;

#[test]
#[ignore = "run by console_gives_back_the_memory_of_a_big_batch, with its stdout taken"]
fn child_console_burst() {
    let (layer, guard) = OffloadLayer::builder()
        .max_field_len(8 << 20)
        .sink(sink::Console::stdout())
        .build()
        .unwrap();
    let handle = guard.handle();
    let big = "x".repeat(6 << 20);
    let before = live();
    with_layer(layer, || {
        tracing::info!(big = big.as_str(), "one big value")
    });
    handle.flush(DEADLINE).unwrap();
    drop(big);
    // The record's own text goes back once the sink is done (pass 41); the sink's buffer must
    // too.
    let start = Instant::now();
    let mut held = live() - before;
    while held > MB && start.elapsed() < Duration::from_secs(5) {
        std::thread::park_timeout(Duration::from_millis(10));
        held = live() - before;
    }
    assert!(
        held < MB,
        "{} MiB still held after the batch was written",
        held / MB
    );
    guard.shutdown(DEADLINE).unwrap();
}

#[test]
fn console_gives_back_the_memory_of_a_big_batch() {
    // The child's stdout is the console; `output()` takes it (6 MiB), so it does not flood
    // the test's.
    stderr_of_child_test("child_console_burst");
}
