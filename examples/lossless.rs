//! The paced bench's lossless workload (`benches/paced.rs`, `throughput`) with a chosen number
//! of events, to count the instructions each of the pipeline's threads runs per event:
//! `scripts/count-lossless` runs this under callgrind with `--separate-threads=yes` and prints
//! the calling thread's, the drain thread's and the JSON sink thread's count per event.
//!
//! The pipeline is the bench's: `Block` (60 s), one `sink::JsonFile` in a temporary directory
//! (in RAM, `/dev/shm`, where it exists); one thread offers the bench's event (three fields
//! and a message) in a tight loop, then flushes and checks that the sink exported every one.
//!
//! Run alone it only does the work: `cargo run --release --example lossless -- 300000` (the
//! number of events, default 300 000).

use std::time::Duration;

use tracing::Dispatch;
use tracing_offload::{sink, Backpressure, OffloadLayer};
use tracing_subscriber::prelude::*;

#[allow(dead_code)]
#[path = "../benches/support/mod.rs"]
mod support;

fn main() {
    let n: u64 = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 300_000,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("the number of events: {e}");
            std::process::exit(2);
        }
    };
    let dir = support::bench_dir();
    let (layer, guard) = OffloadLayer::builder()
        .backpressure(Backpressure::Block {
            timeout: Duration::from_secs(60),
        })
        .sink(sink::JsonFile::new(dir.path().join("lossless.jsonl")))
        .build()
        .expect("the pipeline builds");
    let handle = guard.handle();
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, || {
        for _ in 0..n {
            support::event();
        }
    });
    drop(dispatch);
    handle
        .flush(Duration::from_secs(600))
        .expect("the pipeline flushes");
    let exported = handle.stats().sinks[0].exported;
    assert_eq!(exported, n, "nothing may be lost under Block");
    drop(guard);
    println!("{n} events");
}
