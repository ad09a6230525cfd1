//! Recycled records: a [`Pool`] of boxed records that the calling thread takes from and fills,
//! and [`Shared`], the reference-counted handle through which sinks read a record. When the last
//! handle is dropped, the box goes back to its pool with its buffers' capacity, so that in steady
//! state the calling thread allocates nothing.
//!
//! The calling thread only moves a `Box` it took from the pool into the queue. The drain thread
//! wraps it in a [`Shared`] through a [`Sharer`], which reuses the reference-counted cells of
//! records that came back, and hands clones to the sinks. The sharer keeps one clone of each:
//! once the sinks have dropped theirs, it takes the box back for the pool, in the order the
//! records were shared. A record the sharer stopped following goes back when its last clone
//! is dropped, on whichever thread that is.
//!
//! A record comes back to the pool long after it was filled (the pool holds thousands), so its
//! memory has left the caches by the time it is reused. While records come back in the order
//! they were taken, their addresses follow one another and the CPU's prefetcher fetches them
//! ahead. When they come back out of order (records held longer than others: tail sampling's,
//! slow sinks', several threads'), each reuse waited for memory: with the pool's order
//! shuffled, resetting a record took 270 cycles instead of 30, and a span lifecycle 910 ns
//! instead of 590 (in a build timing each stage). So each thread takes its records two ahead:
//! a record is taken from the pool and its memory prefetched; on the next take its text buffer
//! (whose address is then in cache) is prefetched; on the one after, it is used. And a new
//! pool hands out its records in address order.

use std::cell::RefCell;
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Weak};
use std::thread::LocalKey;

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
pub(crate) trait Recycle: Default + 'static {
    /// Lets go of other records and bounds the buffers (on the releasing thread).
    fn release(&mut self);
    /// Empties the record, keeping its buffers (on the calling thread, before reuse).
    fn reset(&mut self);
    /// The memory the caller writes besides the record itself (its text buffer), to prefetch
    /// ahead of use.
    fn buffer(&self) -> &[u8];
    /// This thread's records of this type taken ahead of use.
    fn stage() -> &'static LocalKey<RefCell<Stage<Self>>>;
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
        // Handed out in address order: the memory a freed pipeline left behind comes back
        // scattered, and records reused in scattered order each wait for memory (see the
        // module docs).
        let mut records: Vec<Box<T>> = (0..prefill.min(capacity)).map(|_| Box::default()).collect();
        records.sort_unstable_by_key(|r| std::ptr::from_ref::<T>(r).addr());
        for record in records {
            let _ = free.push(record);
        }
        Pool { free }
    }

    /// An empty record: one this thread took ahead and prefetched (see the module docs), a
    /// recycled one, or a new one when the pool is empty (warming up, or more records in
    /// flight than the pool keeps).
    #[inline]
    pub(crate) fn take(self: &Arc<Self>) -> Box<T> {
        let staged = T::stage()
            .try_with(|stage| match stage.try_borrow_mut() {
                Ok(mut stage) => stage.advance(self),
                Err(_) => None,
            })
            .ok()
            .flatten();
        let mut record = staged.or_else(|| self.free.pop()).unwrap_or_default();
        record.reset();
        record
    }

    /// Keeps `record` for reuse, released (or frees it when the pool is full).
    pub(crate) fn give(&self, mut record: Box<T>) {
        record.release();
        let _ = self.free.push(record);
    }

    /// Records ready for reuse now (not counting those staged on threads).
    #[cfg(test)]
    pub(crate) fn available(&self) -> usize {
        self.free.len()
    }
}

/// How many pools a thread stages records for at once: two layers on one registry (one
/// pipeline each) take from two pools for every event; past this, the least recently used
/// pool's records go back to it.
const STAGED_POOLS: usize = 4;

/// One thread's records of one type taken ahead of use, for up to [`STAGED_POOLS`] pools.
pub(crate) struct Stage<T: Recycle> {
    lanes: [Lane<T>; STAGED_POOLS],
    /// Lane indexes, most recently used first.
    order: [u8; STAGED_POOLS],
}

/// The records staged from one pool: `next` is used by the next take (its memory and its
/// buffer were prefetched), `after` by the one after (its memory was prefetched).
struct Lane<T> {
    pool: Weak<Pool<T>>,
    next: Option<Box<T>>,
    after: Option<Box<T>>,
}

impl<T: Recycle> Lane<T> {
    const EMPTY: Self = Lane {
        pool: Weak::new(),
        next: None,
        after: None,
    };

    /// Moves the lane one record along for a take: returns the record to use now (`None`
    /// while the lane fills, or when the pool is empty).
    #[inline]
    fn advance(&mut self, pool: &Pool<T>) -> Option<Box<T>> {
        let new = pool.free.pop();
        if let Some(new) = &new {
            prefetch(
                std::ptr::from_ref::<T>(new).cast(),
                std::mem::size_of::<T>(),
            );
        }
        if let Some(after) = &self.after {
            // Its memory was fetched on the last take: reading where its buffer is costs
            // nothing now.
            let buffer = after.buffer();
            prefetch(buffer.as_ptr(), buffer.len().min(256));
        }
        let now = self.next.take();
        self.next = self.after.take();
        self.after = new;
        now
    }

    /// Gives the staged records back to their pool (freed if it is gone).
    fn give_back(&mut self) {
        let pool = self.pool.upgrade();
        for record in [self.next.take(), self.after.take()].into_iter().flatten() {
            if let Some(pool) = &pool {
                pool.give(record);
            }
        }
    }
}

impl<T: Recycle> Stage<T> {
    /// An empty stage.
    pub(crate) const fn new() -> Self {
        Stage {
            lanes: [Lane::EMPTY; STAGED_POOLS],
            order: [0, 1, 2, 3],
        }
    }

    /// The record to use now for a take from `pool` (see [`Lane::advance`]).
    #[inline]
    fn advance(&mut self, pool: &Arc<Pool<T>>) -> Option<Box<T>> {
        let target = Arc::as_ptr(pool);
        let position = match self
            .order
            .iter()
            .position(|&i| std::ptr::eq(self.lanes[usize::from(i)].pool.as_ptr(), target))
        {
            Some(p) => p,
            None => {
                // A pool not staged here: it takes the least recently used lane, whose
                // records go back to their own pool.
                let p = STAGED_POOLS - 1;
                let lane = &mut self.lanes[usize::from(self.order[p])];
                lane.give_back();
                lane.pool = Arc::downgrade(pool);
                p
            }
        };
        let lane = self.order[position];
        if position > 0 {
            self.order.copy_within(0..position, 1);
            self.order[0] = lane;
        }
        self.lanes[usize::from(lane)].advance(pool)
    }
}

impl<T: Recycle> Drop for Stage<T> {
    /// A thread that ends gives its staged records back.
    fn drop(&mut self) {
        for lane in &mut self.lanes {
            lane.give_back();
        }
    }
}

/// Asks the CPU to fetch `len` bytes at `start` into its cache, without waiting for them.
#[inline]
pub(crate) fn prefetch(start: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    for offset in (0..len).step_by(64) {
        // SAFETY:
        // - `_mm_prefetch` is `unsafe` only because it needs SSE, which every x86_64 CPU has.
        // - A prefetch is a hint: it reads nothing into the program, changes no memory and
        //   never faults, whatever the address.
        // - The address is computed with `wrapping_add`, which makes no claim that it is in
        //   bounds (the caller passes a live record or buffer anyway).
        // - Miri runs the pool's tests through this block (`scripts/test`).
        #[allow(unsafe_code)]
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset).cast());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (start, len);
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

/// Shares the records of one pool without allocating in steady state (on the drain thread).
///
/// Putting a record behind a plain `Arc` allocates its reference count, and the last sink to
/// drop it frees that: a `malloc` on the drain thread and a `free` on a sink's, a tenth of the
/// pipeline's work at full speed. A sharer keeps a clone of each record it shares, oldest
/// first; once the sinks are done with a record, that clone is the only one left, and the
/// sharer takes the box back for the pool and keeps the counted cell for the next record.
/// Records also go back to the pool in the order they were shared, which keeps reuse in
/// address order.
///
/// A record still in use when it reaches the front of a full list (a slow sink, a sink that
/// keeps records, an event waiting for its span) is let go: it goes back to its pool the usual
/// way, when its last clone is dropped.
pub(crate) struct Sharer<T> {
    pool: Arc<Pool<T>>,
    reclaim: Arc<dyn Reclaim<T>>,
    /// Shared records, oldest first, with the sharer's clone.
    out: std::collections::VecDeque<Arc<Slot<T>>>,
    /// Cells whose record came back, empty, ready for the next one.
    spare: Vec<Arc<Slot<T>>>,
    /// The most records held in `out` (and cells in `spare`).
    limit: usize,
}

impl<T: Recycle + Send> Sharer<T> {
    /// A sharer for `pool`'s records that holds at most `limit` of them.
    pub(crate) fn new(pool: &Arc<Pool<T>>, limit: usize) -> Self {
        Sharer {
            pool: Arc::clone(pool),
            reclaim: Arc::clone(pool) as _,
            out: std::collections::VecDeque::new(),
            spare: Vec::new(),
            limit: limit.max(1),
        }
    }

    /// Shares `value`, in a cell that came back if there is one.
    pub(crate) fn share(&mut self, value: Box<T>) -> Shared<T> {
        let cell = match self.spare.pop() {
            Some(mut cell) => match Arc::get_mut(&mut cell) {
                Some(slot) => {
                    slot.value = Some(value);
                    cell
                }
                // Spare cells are unique; should one not be, it is simply not reused.
                None => self.new_cell(value),
            },
            None => self.new_cell(value),
        };
        if self.out.len() >= self.limit {
            self.collect();
            if self.out.len() >= self.limit {
                // The oldest is still in use: its last clone will send it back.
                self.out.pop_front();
            }
        }
        self.out.push_back(Arc::clone(&cell));
        Shared(cell)
    }

    fn new_cell(&self, value: Box<T>) -> Arc<Slot<T>> {
        Arc::new(Slot {
            value: Some(value),
            pool: Some(Arc::clone(&self.reclaim)),
        })
    }

    /// Takes back the records the sinks are done with, oldest first, up to the first one still
    /// in use.
    pub(crate) fn collect(&mut self) {
        // Each cell's count was last written by the sink thread that dropped its clone, often
        // on the other core: fetching the counts a few cells ahead overlaps those waits
        // instead of paying them one after another.
        for cell in self.out.iter().take(COLLECT_AHEAD) {
            prefetch_cell(cell);
        }
        while let Some(front) = self.out.front_mut() {
            let Some(slot) = Arc::get_mut(front) else {
                break;
            };
            if let Some(value) = slot.value.take() {
                self.pool.give(value);
            }
            if let Some(cell) = self.out.pop_front() {
                if self.spare.len() < self.limit {
                    self.spare.push(cell);
                }
            }
            // The cell that just came within reach (the first ones were fetched above).
            if let Some(ahead) = self.out.get(COLLECT_AHEAD - 1) {
                prefetch_cell(ahead);
            }
        }
    }

    /// Takes back every record the sinks are done with, wherever it is in the list: not only
    /// up to the first still in use, which may stay in use for long (an event waiting for its
    /// span, which stays open, kept the records shared after it from coming back, and their
    /// text with them: adversary pass 43). A walk over the whole list, for an idle drain thread.
    pub(crate) fn collect_all(&mut self) {
        self.collect();
        // Once round the list: those still in use go to its back, in their order.
        for _ in 0..self.out.len() {
            let Some(mut cell) = self.out.pop_front() else {
                break;
            };
            let Some(slot) = Arc::get_mut(&mut cell) else {
                self.out.push_back(cell);
                continue;
            };
            if let Some(value) = slot.value.take() {
                self.pool.give(value);
            }
            if self.spare.len() < self.limit {
                self.spare.push(cell);
            }
        }
    }

    /// Records shared and not yet back (for tests).
    #[cfg(test)]
    pub(crate) fn outstanding(&self) -> usize {
        self.out.len()
    }
}

/// How far ahead [`Sharer::collect`] fetches the cells it checks.
const COLLECT_AHEAD: usize = 8;

/// Fetches a shared cell's reference count (stored just before the value) and the value.
#[inline]
fn prefetch_cell<T>(cell: &Arc<Slot<T>>) {
    prefetch(Arc::as_ptr(cell).cast::<u8>().wrapping_sub(16), 64);
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
        fn buffer(&self) -> &[u8] {
            &self.data
        }
        fn stage() -> &'static LocalKey<RefCell<Stage<Self>>> {
            thread_local! {
                static STAGE: RefCell<Stage<Thing>> = const { RefCell::new(Stage::new()) };
            }
            &STAGE
        }
    }

    /// Runs `test` on a thread of its own, whose staged records start empty.
    fn on_own_thread(test: impl FnOnce() + Send + 'static) {
        std::thread::spawn(test).join().unwrap();
    }

    /// Takes from `pool` until `ptr` comes back (it is staged two takes ahead); the takes made
    /// meanwhile go back to the pool.
    fn take_until(pool: &Arc<Pool<Thing>>, ptr: *const Thing) -> Option<Box<Thing>> {
        let mut others = Vec::new();
        let mut found = None;
        for _ in 0..3 {
            let b = pool.take();
            if std::ptr::eq(&*b, ptr) {
                found = Some(b);
                break;
            }
            others.push(b);
        }
        for b in others {
            pool.give(b);
        }
        found
    }

    #[test]
    fn the_last_clone_returns_the_box_to_the_pool_from_any_thread() {
        on_own_thread(|| {
            let pool = Arc::new(Pool::<Thing>::new(8, 0));
            let mut b = pool.take();
            b.data.extend_from_slice(b"hello");
            let ptr: *const Thing = &*b;
            let mut sharer = Sharer::new(&pool, 16);
            let shared = sharer.share(b);
            let clones: Vec<_> = (0..3).map(|_| shared.clone()).collect();
            drop(shared);
            assert_eq!(pool.available(), 0);
            std::thread::spawn(move || drop(clones)).join().unwrap();
            // The sharer still holds one: the box comes back when it lets go.
            assert_eq!(pool.available(), 0);
            drop(sharer);
            assert_eq!(pool.available(), 1);
            let again = take_until(&pool, ptr).expect("the same allocation comes back");
            assert!(again.data.is_empty() && again.data.capacity() >= 5);
            assert_eq!(again.recycled, 1);
        });
    }

    #[test]
    fn a_full_pool_frees_and_an_empty_one_allocates() {
        on_own_thread(|| {
            let pool = Arc::new(Pool::<Thing>::new(1, 1));
            assert_eq!(pool.available(), 1);
            // The first take stages the pooled record and makes a new one.
            let (a, b) = (pool.take(), pool.take());
            assert_eq!(pool.available(), 0);
            pool.give(a);
            pool.give(b); // full: freed
            assert_eq!(pool.available(), 1);
            drop(Shared::new(Thing::default())); // no pool: nothing to return to
            assert_eq!(pool.available(), 1);
        });
    }

    #[test]
    fn each_pool_has_its_own_lane_and_the_oldest_lane_gives_back() {
        on_own_thread(|| {
            let pools: Vec<_> = (0..=STAGED_POOLS)
                .map(|_| Arc::new(Pool::<Thing>::new(8, 8)))
                .collect();
            // Two pools taken from in turn (two layers on one registry) keep their lanes.
            for _ in 0..3 {
                for pool in &pools[..2] {
                    let b = pool.take();
                    pool.give(b);
                }
            }
            for pool in &pools[..2] {
                assert_eq!(pool.available(), 8 - 2, "two staged, the rest back");
            }
            // A fifth pool evicts the least recently used lane: pool 0's records go back.
            for pool in &pools[2..] {
                let b = pool.take();
                pool.give(b);
            }
            assert_eq!(pools[0].available(), 8);
            assert_eq!(pools[1].available(), 8 - 2);
        });
    }

    #[test]
    fn a_thread_that_ends_gives_its_staged_records_back() {
        let pool = Arc::new(Pool::<Thing>::new(8, 8));
        let p = Arc::clone(&pool);
        std::thread::spawn(move || {
            drop(p.take());
            drop(p.take());
        })
        .join()
        .unwrap();
        // Two taken and dropped (freed); the two staged came back.
        assert_eq!(pool.available(), 6);
    }

    #[test]
    fn reuse_is_in_order_and_every_record_is_reused() {
        on_own_thread(|| {
            let pool = Arc::new(Pool::<Thing>::new(16, 16));
            let mut seen = std::collections::HashSet::new();
            for _ in 0..100 {
                let b = pool.take();
                seen.insert(&*b as *const Thing as usize);
                pool.give(b);
            }
            assert_eq!(seen.len(), 16, "every pooled record is used, none is made");
        });
    }

    #[test]
    fn a_sharer_takes_records_back_in_order_and_reuses_their_cells() {
        on_own_thread(|| {
            let pool = Arc::new(Pool::<Thing>::new(16, 0));
            let mut sharer = Sharer::new(&pool, 16);
            let a = sharer.share(Box::default());
            let b = sharer.share(Box::default());
            let (cell_a, cell_b) = (Arc::as_ptr(&a.0), Arc::as_ptr(&b.0));
            let a_clone = a.clone();
            drop(b);
            // `a` is still in use (two clones out): nothing comes back, not even `b`, behind it.
            sharer.collect();
            assert_eq!((pool.available(), sharer.outstanding()), (0, 2));
            drop(a);
            drop(a_clone);
            sharer.collect();
            assert_eq!((pool.available(), sharer.outstanding()), (2, 0));
            // The next records get the same cells: no allocation for the count.
            let c = sharer.share(Box::default());
            let d = sharer.share(Box::default());
            let cells = [Arc::as_ptr(&c.0), Arc::as_ptr(&d.0)];
            assert!(cells.contains(&cell_a) && cells.contains(&cell_b));
        });
    }

    /// The idle walk takes back every record no one uses, also behind one still in use, and
    /// leaves the one in use where it was, intact.
    #[test]
    fn collect_all_takes_back_every_record_done_with_and_leaves_those_in_use() {
        on_own_thread(|| {
            let pool = Arc::new(Pool::<Thing>::new(16, 0));
            let mut sharer = Sharer::new(&pool, 16);
            let a = sharer.share(Box::new(Thing {
                data: vec![7; 3],
                recycled: 0,
            }));
            let kept = a.clone();
            drop(a);
            for _ in 0..3 {
                drop(sharer.share(Box::default()));
            }
            sharer.collect();
            assert_eq!((pool.available(), sharer.outstanding()), (0, 4));
            sharer.collect_all();
            assert_eq!((pool.available(), sharer.outstanding()), (3, 1));
            assert_eq!(kept.data, [7, 7, 7], "in use: not recycled");
            drop(kept);
            sharer.collect_all();
            assert_eq!((pool.available(), sharer.outstanding()), (4, 0));
        });
    }

    #[test]
    fn a_record_kept_past_the_limit_comes_back_when_its_last_clone_goes() {
        on_own_thread(|| {
            let pool = Arc::new(Pool::<Thing>::new(16, 0));
            let mut sharer = Sharer::new(&pool, 2);
            let kept = sharer.share(Box::default()); // a sink that keeps it
            drop(sharer.share(Box::default()));
            // Full, and the oldest still in use: it is let go, and what is behind it comes back.
            drop(sharer.share(Box::default()));
            assert_eq!(sharer.outstanding(), 2);
            sharer.collect();
            assert_eq!((pool.available(), sharer.outstanding()), (2, 0));
            drop(kept);
            assert_eq!(
                pool.available(),
                3,
                "the kept record came back with its last clone"
            );
        });
    }

    #[test]
    fn a_new_pool_hands_out_its_records_in_address_order() {
        // Leave scattered free memory of the records' size behind, as a dropped pipeline does.
        let mut old: Vec<Box<Thing>> = (0..64).map(|_| Box::default()).collect();
        for i in (0..64).step_by(2).rev() {
            drop(old.swap_remove(i));
        }
        let pool = Pool::<Thing>::new(32, 32);
        let mut addresses = Vec::new();
        while let Some(r) = pool.free.pop() {
            addresses.push(std::ptr::from_ref::<Thing>(&r).addr());
        }
        assert_eq!(addresses.len(), 32);
        assert!(addresses.is_sorted(), "{addresses:x?}");
        drop(old);
    }
}
