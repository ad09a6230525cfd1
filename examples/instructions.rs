//! The instructions a kept record costs on the calling thread, counted rather than timed:
//! `scripts/count-instructions` runs this under callgrind (valgrind's deterministic
//! instruction counter) for each workload of the benches, with this crate and with the floor.
//!
//! Run alone it only does the work: `cargo run --release --example instructions -- event offload`
//! (workload `event` or `span`, pipeline `offload` or `floor`).
//!
//! The pipeline is warmed up first (its pools filled, its callsites cached); callgrind counts
//! only inside `measured`, 10 000 calls after that. `Block` keeps every record.

use std::time::Duration;

use tracing::Dispatch;
use tracing_offload::{sink, Backpressure, OffloadLayer};
use tracing_subscriber::prelude::*;

#[allow(dead_code)]
#[path = "../benches/support/mod.rs"]
mod support;

/// The calls counted (`scripts/count-instructions` divides by this).
const CALLS: u64 = 10_000;

/// Callgrind counts from entering this function to leaving it (`--toggle-collect`).
#[inline(never)]
fn measured(op: fn(), calls: u64) {
    for _ in 0..calls {
        op();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let op: fn() = match args.first().map(String::as_str) {
        Some("span") => support::span_lifecycle,
        Some("event") | None => support::event,
        Some(other) => {
            eprintln!("unknown workload {other:?}: event or span");
            std::process::exit(2);
        }
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (dispatch, guard) = match args.get(1).map(String::as_str) {
        Some("floor") => (
            Dispatch::new(tracing_subscriber::registry().with(support::NoopLayer)),
            None,
        ),
        Some("offload") | None => {
            let (layer, guard) = OffloadLayer::builder()
                .backpressure(Backpressure::Block {
                    timeout: Duration::from_secs(60),
                })
                .sink(sink::JsonFile::new(dir.path().join("instructions.jsonl")))
                .build()
                .expect("the pipeline builds");
            (
                Dispatch::new(tracing_subscriber::registry().with(layer)),
                Some(guard),
            )
        }
        Some(other) => {
            eprintln!("unknown pipeline {other:?}: offload or floor");
            std::process::exit(2);
        }
    };
    let flush = || {
        if let Some(g) = &guard {
            g.handle()
                .flush(Duration::from_secs(60))
                .expect("the pipeline flushes");
        }
    };
    tracing::dispatcher::with_default(&dispatch, || {
        for _ in 0..3 {
            warm_up(op);
            flush();
        }
        measured(op, CALLS);
    });
    flush();
    println!("{CALLS} calls");
}

/// The same calls, not counted: fills the pools and the caches.
#[inline(never)]
fn warm_up(op: fn()) {
    for _ in 0..30_000 {
        op();
    }
}
