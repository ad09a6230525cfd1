//! Recycled records: a [`Pool`] of boxed records that the calling thread takes from and fills,
//! and [`Shared`], the reference-counted handle through which sinks read a record. When the last
//! handle is dropped, the box goes back to its pool with its buffers' capacity, so that in steady
//! state the calling thread allocates nothing.
//!
//! The calling thread only moves a `Box` it took from the pool into the queue. The drain thread
//! wraps it in a [`Shared`] (its reference count is allocated there, off the calling thread)
//! and hands clones to the sinks; whichever thread drops the last clone returns the box.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

/// A record that can be emptied for reuse, in two steps on two threads.
///
/// `release` runs on whichever thread drops the record last (a sink's, the drain's): it lets go
/// of what the record holds of others (a span's events) and cuts oversized buffers back. `reset`
/// runs on the calling thread when it takes the record again: it empties the record, keeping
/// its buffers. Splitting them keeps the releasing thread from writing to the record's memory
/// just before another core reuses it: its lines stay shared rather than modified there, which
/// costs the caller less when it writes them (measured: a quarter of a microsecond per span
/// when tail sampling released records at once on the drain thread).
pub(crate) trait Recycle: Default {
    /// Lets go of other records and bounds the buffers (on the releasing thread).
    fn release(&mut self);
    /// Empties the record, keeping its buffers (on the calling thread, before reuse).
    fn reset(&mut self);
}

/// Boxed records ready for reuse, shared by the calling threads (take) and whichever thread
/// drops a record last (give).
pub(crate) struct Pool<T> {
    free: ArrayQueue<Box<T>>,
}

impl<T: Recycle> Pool<T> {
    /// A pool that keeps at most `capacity` records, `prefill` of them made now.
    pub(crate) fn new(capacity: usize, prefill: usize) -> Self {
        let free = ArrayQueue::new(capacity.max(1));
        for _ in 0..prefill.min(capacity) {
            let _ = free.push(Box::default());
        }
        Pool { free }
    }

    /// An empty record: a recycled one, or a new one when the pool is empty (warming up, or
    /// more records in flight than the pool keeps).
    #[inline]
    pub(crate) fn take(&self) -> Box<T> {
        match self.free.pop() {
            Some(mut record) => {
                record.reset();
                record
            }
            None => Box::default(),
        }
    }

    /// Keeps `record` for reuse, released (or frees it when the pool is full).
    pub(crate) fn give(&self, mut record: Box<T>) {
        record.release();
        let _ = self.free.push(record);
    }

    /// Records ready for reuse now.
    #[cfg(test)]
    pub(crate) fn available(&self) -> usize {
        self.free.len()
    }
}

impl<T> fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("available", &self.free.len())
            .field("capacity", &self.free.capacity())
            .finish()
    }
}

/// A record shared by the sinks: cloning it is a reference-count bump, reading it goes through
/// `Deref`. When the last clone is dropped, the record's storage is recycled by the pipeline
/// that made it.
///
/// ```
/// use tracing_offload::{EventRecord, Shared};
/// let record = Shared::new(EventRecord::default());
/// let copy = record.clone(); // shares, does not copy
/// assert_eq!(copy.target(), record.target());
/// ```
pub struct Shared<T>(Arc<Slot<T>>);

/// The value and where it goes back to.
struct Slot<T> {
    /// `None` only while `Drop` moves it back to the pool.
    value: Option<Box<T>>,
    pool: Option<Arc<dyn Reclaim<T>>>,
}

/// Where a dropped record's box goes back to.
trait Reclaim<T>: Send + Sync {
    fn reclaim(&self, value: Box<T>);
}

impl<T: Recycle + Send> Reclaim<T> for Pool<T> {
    fn reclaim(&self, value: Box<T>) {
        self.give(value)
    }
}

impl<T> Shared<T> {
    /// Shares a value that belongs to no pool (e.g. a record built by hand in a test).
    pub fn new(value: T) -> Self {
        Shared(Arc::new(Slot {
            value: Some(Box::new(value)),
            pool: None,
        }))
    }

    /// Whether `a` and `b` are the same record (not merely equal ones).
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

/// Shares a pooled record; its box returns to `pool` after the last clone.
pub(crate) fn share<T: Recycle + Send + 'static>(value: Box<T>, pool: &Arc<Pool<T>>) -> Shared<T> {
    let pool: Arc<dyn Reclaim<T>> = Arc::clone(pool) as _;
    Shared(Arc::new(Slot {
        value: Some(value),
        pool: Some(pool),
    }))
}

impl<T> Deref for Shared<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        match &self.0.value {
            Some(v) => v,
            // `value` is taken only in `Slot::drop`, when no `Shared` is left to deref.
            None => unreachable!("a shared record read after it was recycled"),
        }
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(Arc::clone(&self.0))
    }
}

impl<T: fmt::Debug> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl<T> Drop for Slot<T> {
    fn drop(&mut self) {
        if let (Some(value), Some(pool)) = (self.value.take(), self.pool.as_ref()) {
            pool.reclaim(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, Debug)]
    struct Thing {
        data: Vec<u8>,
        recycled: u32,
    }

    impl Recycle for Thing {
        fn release(&mut self) {
            self.recycled += 1;
        }
        fn reset(&mut self) {
            self.data.clear();
        }
    }

    #[test]
    fn the_last_clone_returns_the_box_to_the_pool_from_any_thread() {
        let pool = Arc::new(Pool::<Thing>::new(4, 0));
        let mut b = pool.take();
        b.data.extend_from_slice(b"hello");
        let ptr: *const Thing = &*b;
        let shared = share(b, &pool);
        let clones: Vec<_> = (0..3).map(|_| shared.clone()).collect();
        drop(shared);
        assert_eq!(pool.available(), 0);
        std::thread::spawn(move || drop(clones)).join().unwrap();
        assert_eq!(pool.available(), 1);
        let again = pool.take();
        assert_eq!(
            &*again as *const Thing, ptr,
            "the same allocation comes back"
        );
        assert!(again.data.is_empty() && again.data.capacity() >= 5);
        assert_eq!(again.recycled, 1);
    }

    #[test]
    fn a_full_pool_frees_and_an_empty_one_allocates() {
        let pool = Arc::new(Pool::<Thing>::new(1, 1));
        assert_eq!(pool.available(), 1);
        let (a, b) = (pool.take(), pool.take()); // the second is new
        pool.give(a);
        pool.give(b); // full: freed
        assert_eq!(pool.available(), 1);
        drop(Shared::new(Thing::default())); // no pool: nothing to return to
        assert_eq!(pool.available(), 1);
    }
}
