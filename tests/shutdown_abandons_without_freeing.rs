//! A shutdown whose deadline has passed abandons what is still queued: it takes the records
//! out and counts them, and that is all the calling thread does with them. Freeing them (their
//! boxes and their text) is left to a thread of the pipeline's: on the caller it took 200 ms
//! for a queue of a million records in a release build, past a deadline of zero (found by an
//! adversary, pass 31). Counted by a global allocator that tallies this thread's frees.
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use support::*;
use tracing_offload::sink::Channel;
use tracing_offload::{Backpressure, DropReason, FlushError, OffloadLayer};

struct Counting;

thread_local! {
    static FREES: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: defers to the system allocator; only counts on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = FREES.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn frees() -> u64 {
    FREES.with(Cell::get)
}

// More than a pool keeps (`MAX_POOL_CAPACITY`, 131 072): records past it are freed when they
// go back.
const CAPACITY: usize = 150_000;

#[test]
fn a_shutdown_past_its_deadline_frees_none_of_the_records_it_abandons_on_the_caller() {
    // A sink that takes one record and is never read: the drain thread stops at its buffer,
    // and the queue fills.
    let (channel, _never_read) = Channel::new(1);
    let (layer, guard) = OffloadLayer::builder()
        .capacity(CAPACITY)
        .backpressure(Backpressure::DropNewest)
        .sink_buffer_capacity(1)
        .sink(channel)
        .build()
        .unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        for i in 0..CAPACITY as u64 + 1_000 {
            tracing::info!(i, text = "some text to free", "filling the queue");
        }
    });
    wait_until("the queue is full", DEADLINE, || {
        handle.stats().queue_depth == CAPACITY
    });

    let before = frees();
    let result = handle.shutdown(Duration::ZERO);
    let freed = frees() - before;

    let Err(FlushError::Abandoned { report }) = result else {
        panic!("records were abandoned: {result:?}");
    };
    assert!(
        report.abandoned.queued >= CAPACITY as u64 - 16,
        "{report:?}"
    );
    assert!(
        freed < 1_000,
        "the caller freed {freed} allocations abandoning {} records",
        report.abandoned.queued
    );
    let stats = handle.stats();
    assert_eq!(
        stats.dropped_for(DropReason::ShutdownDeadline),
        report.abandoned.queued + report.abandoned.held,
        "{stats:#?}"
    );
    drop(guard);
}
