//! The start times of the spans open right now, so that health can tell a stuck span (one
//! open for longer than a threshold) without holding on to any span.
//!
//! Each open span holds a [`SpanTicket`] (a slot number) in its registry state and gives it
//! back when it closes; the index keeps only `Instant`s, never a span. The slots are spread
//! over [`SHARDS`] mutex-protected shards chosen per thread, so that the two short critical
//! sections per span (insert on open, remove on close) rarely meet another thread. Finding
//! the oldest open span scans every slot; only health checks and stats snapshots do that.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

use crossbeam_utils::CachePadded;

/// Number of shards (a power of two).
const SHARDS: usize = 16;

/// The slot an open span holds in the index; give it back with [`OpenSpans::close`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpanTicket {
    shard: u8,
    slot: u32,
}

/// One shard: a slab of start times with a free list.
#[derive(Debug, Default)]
struct Shard {
    slots: Vec<Option<Instant>>,
    free: Vec<u32>,
}

impl Shard {
    fn insert(&mut self, started: Instant) -> Option<u32> {
        if let Some(slot) = self.free.pop() {
            self.slots[slot as usize] = Some(started);
            return Some(slot);
        }
        let slot = u32::try_from(self.slots.len()).ok()?;
        self.slots.push(Some(started));
        Some(slot)
    }

    fn remove(&mut self, slot: u32) {
        if let Some(s) = self.slots.get_mut(slot as usize) {
            if s.take().is_some() {
                self.free.push(slot);
            }
        }
    }

    fn oldest(&self) -> Option<Instant> {
        self.slots.iter().flatten().min().copied()
    }
}

/// The start times of the open spans, sharded by thread.
#[derive(Debug, Default)]
pub(crate) struct OpenSpans {
    shards: [CachePadded<Mutex<Shard>>; SHARDS],
}

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's shard: assigned round-robin on first use.
fn my_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    SHARD.with(|s| {
        if s.get() == usize::MAX {
            s.set(NEXT.fetch_add(1, Relaxed) % SHARDS);
        }
        s.get()
    })
}

impl OpenSpans {
    /// Records a span opened at `started`; `None` only if a shard holds 2³² spans.
    pub(crate) fn open(&self, started: Instant) -> Option<SpanTicket> {
        let shard = my_shard();
        let mut s = self.shards[shard].lock().unwrap_or_else(|e| e.into_inner());
        let slot = s.insert(started)?;
        Some(SpanTicket {
            shard: shard as u8,
            slot,
        })
    }

    /// Forgets a span (from any thread). A ticket given back twice is ignored.
    pub(crate) fn close(&self, ticket: SpanTicket) {
        if let Some(shard) = self.shards.get(ticket.shard as usize) {
            shard
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(ticket.slot);
        }
    }

    /// When the oldest span still open was opened; `None` when none is open.
    pub(crate) fn oldest(&self) -> Option<Instant> {
        self.shards
            .iter()
            .filter_map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).oldest())
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn the_oldest_open_span_is_found_and_forgotten_on_close() {
        let index = OpenSpans::default();
        assert_eq!(index.oldest(), None);
        let t0 = Instant::now();
        let a = index.open(t0).unwrap();
        let b = index.open(t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(index.oldest(), Some(t0));
        index.close(a);
        index.close(a); // twice: ignored
        assert_eq!(index.oldest(), Some(t0 + Duration::from_secs(1)));
        let c = index.open(t0 + Duration::from_secs(2)).unwrap();
        assert_eq!(c.slot, a.slot, "the freed slot is reused");
        index.close(b);
        index.close(c);
        assert_eq!(index.oldest(), None);
    }

    #[test]
    fn spans_closed_on_other_threads_are_forgotten() {
        let index = Arc::new(OpenSpans::default());
        let tickets: Vec<SpanTicket> = (0..8)
            .map(|_| {
                let index = Arc::clone(&index);
                std::thread::spawn(move || {
                    (0..100)
                        .map(|_| index.open(Instant::now()).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .flat_map(|h| h.join().unwrap())
            .collect();
        assert!(index.oldest().is_some());
        let (left, right) = tickets.split_at(tickets.len() / 2);
        let other = {
            let index = Arc::clone(&index);
            let right = right.to_vec();
            std::thread::spawn(move || right.into_iter().for_each(|t| index.close(t)))
        };
        left.iter().for_each(|t| index.close(*t));
        other.join().unwrap();
        assert_eq!(index.oldest(), None);
    }
}
