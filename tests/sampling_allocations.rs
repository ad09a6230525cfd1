//! A sampled-out event and an unsampled span allocate nothing on the calling thread: counted
//! by a global allocator that tallies this thread's allocations.
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use support::*;
use tracing_offload::{OffloadLayer, TracesSampler};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: defers to the system allocator; only counts on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn sampled_out_events_and_unsampled_spans_allocate_nothing() {
    let (layer, guard) = OffloadLayer::builder()
        .sample_rate(0.0)
        .traces_sampler(TracesSampler::AlwaysOff)
        .sink(Collect::new("collect"))
        .build()
        .unwrap();
    with_layer(layer, || {
        let work = || {
            for i in 0..1_000u64 {
                tracing::info!(i, text = "some text", "sampled out");
                let span = tracing::info_span!("unsampled", i);
                let _e = span.enter();
                tracing::debug!(i, "inside an unsampled span, sampled out");
                drop(_e);
                // A root joining a remote trace: the `traceparent` is read without allocating,
                // given as a `&str` or through `Display`.
                let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
                drop(tracing::info_span!("remote", traceparent = header).entered());
                drop(tracing::info_span!("remote", traceparent = %header).entered());
            }
        };
        work(); // warm up: callsite caches, the registry's slab pages, thread-locals
        let before = allocations();
        work();
        let after = allocations();
        assert_eq!(after - before, 0, "allocations on the calling thread");
    });
    guard.shutdown(DEADLINE).unwrap();
    let stats = guard.handle().stats();
    assert_eq!(stats.sampled_out, 10_000);
    assert_eq!(stats.enqueued, 0);
}
