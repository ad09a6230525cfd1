//! A global allocator that counts the bytes allocated and not yet freed, on every thread. A
//! test binary that measures memory installs it:
//! `#[global_allocator] static GLOBAL: LiveBytes = LiveBytes;`, then reads [`live`].

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};

/// The system allocator, counting the bytes live.
pub struct LiveBytes;

static LIVE: AtomicI64 = AtomicI64::new(0);

/// The bytes allocated and not yet freed (through [`LiveBytes`], once installed).
pub fn live() -> i64 {
    LIVE.load(Ordering::Relaxed)
}

// SAFETY: defers to the system allocator; only counts on the side.
unsafe impl GlobalAlloc for LiveBytes {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
