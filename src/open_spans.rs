//! How long the oldest open span has been open, for stuck-span health, without holding any span
//! and without a lock that span creation needs.
//!
//! Time is cut into coarse epochs (a power of two of raw clock ticks, about a second). Each shard
//! of the layer's span store keeps a ring of counters, one per recent epoch: a span opened in
//! epoch `e` counts in slot `e % RING` while it is open. A slot carries its epoch as a tag, so a
//! slot reused by a later epoch first moves its count to the shard's *stale* counter (spans open
//! longer than the ring covers). Only the span store writes a shard's ring, under that shard's
//! own lock; readers (stats, health) load the counters without any lock, so reading never
//! blocks the hot path, and its cost is fixed (shards × slots), whatever the history.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::clock::{RawSpan, Tick};

/// Slots per ring: epochs tracked exactly (at least 17 minutes); older spans are counted as
/// stale.
const RING: usize = 1024;

/// Shards of the span store, each with its own ring.
pub(crate) const SHARDS: usize = 32;

/// The clock ticks per epoch, as a shift: the smallest power of two lasting a second or more.
fn epoch_shift() -> u32 {
    static SHIFT: OnceLock<u32> = OnceLock::new();
    *SHIFT.get_or_init(|| {
        (10..63)
            .find(|&s| RawSpan::from_raw(1u64 << s).duration() >= Duration::from_secs(1))
            .unwrap_or(30)
    })
}

/// The epoch of a tick.
#[cfg(test)]
fn epoch_of(tick: Tick) -> u32 {
    (tick.raw() >> epoch_shift()) as u32
}

/// The length of an epoch.
fn epoch_length() -> Duration {
    RawSpan::from_raw(1u64 << epoch_shift()).duration()
}

/// One shard's ring. Written only under the owning span-store shard's lock.
#[derive(Debug)]
struct Ring {
    /// `epoch << 32 | count` per slot.
    slots: Box<[AtomicU64]>,
    /// Spans open longer than the ring covers, and the epoch of the oldest of them.
    stale: AtomicU64,
    stale_oldest: AtomicU64,
    /// The oldest epoch with an open span in `slots` (`u64::MAX`: none), kept by the writer so
    /// that a reader loads one word per ring instead of scanning it.
    oldest: AtomicU64,
    /// Spans counted in `slots` (not the stale ones). Written under the shard's lock.
    open: AtomicU64,
}

/// The open-span ages of every shard of one span store.
#[derive(Debug)]
pub(crate) struct OpenSpans {
    rings: Box<[CachePadded<Ring>]>,
    /// [`epoch_shift`], read once here rather than from its `OnceLock` for every span.
    shift: u32,
}

fn pack(epoch: u32, count: u32) -> u64 {
    u64::from(epoch) << 32 | u64::from(count)
}

fn unpack(v: u64) -> (u32, u32) {
    ((v >> 32) as u32, v as u32)
}

impl Ring {
    fn new() -> Self {
        Ring {
            slots: (0..RING).map(|_| AtomicU64::new(pack(0, 0))).collect(),
            stale: AtomicU64::new(0),
            stale_oldest: AtomicU64::new(u64::MAX),
            oldest: AtomicU64::new(u64::MAX),
            open: AtomicU64::new(0),
        }
    }

    #[inline]
    fn open(&self, epoch: u32) {
        let slot = &self.slots[epoch as usize % RING];
        let (tag, count) = unpack(slot.load(Relaxed));
        let (count, moved) = if tag == epoch {
            (count, false)
        } else {
            // The slot held an epoch RING or more ago: its spans are stale now.
            if count > 0 {
                self.stale.fetch_add(u64::from(count), Relaxed);
                self.stale_oldest.fetch_min(u64::from(tag), Relaxed);
                self.open
                    .store(self.open.load(Relaxed) - u64::from(count), Relaxed);
            }
            (0, count > 0)
        };
        slot.store(pack(epoch, count.saturating_add(1)), Relaxed);
        self.open.store(self.open.load(Relaxed) + 1, Relaxed);
        let oldest = self.oldest.load(Relaxed);
        if moved {
            self.find_oldest(epoch);
        } else if oldest == u64::MAX || (epoch.wrapping_sub(oldest as u32) as i32) < 0 {
            // The first open span, or one whose tick was taken a moment before another
            // thread's (epochs only move forward otherwise).
            self.oldest.store(u64::from(epoch), Relaxed);
        }
    }

    #[inline]
    fn close(&self, epoch: u32) {
        let slot = &self.slots[epoch as usize % RING];
        let (tag, count) = unpack(slot.load(Relaxed));
        if tag == epoch && count > 0 {
            slot.store(pack(epoch, count - 1), Relaxed);
            let open = self.open.load(Relaxed) - 1;
            self.open.store(open, Relaxed);
            if count == 1 && self.oldest.load(Relaxed) == u64::from(epoch) {
                if open == 0 {
                    self.oldest.store(u64::MAX, Relaxed);
                } else {
                    self.find_next_oldest(epoch);
                }
            }
        } else if self.stale.load(Relaxed) > 0 && self.stale.fetch_sub(1, Relaxed) == 1 {
            self.stale_oldest.store(u64::MAX, Relaxed);
        }
    }

    /// The oldest slot emptied, others still open: the next oldest is a later epoch. Scans
    /// forward from `emptied`, so it costs the distance to the next open span's epoch (spans
    /// that open and close at once make it one step), under the shard lock.
    fn find_next_oldest(&self, emptied: u32) {
        for step in 1..RING as u32 {
            let e = emptied.wrapping_add(step);
            let (tag, count) = unpack(self.slots[e as usize % RING].load(Relaxed));
            if tag == e && count > 0 {
                self.oldest.store(u64::from(e), Relaxed);
                return;
            }
        }
        self.oldest.store(u64::MAX, Relaxed);
    }

    /// Recomputes `oldest` by scanning the ring (when spans were moved to stale: at most once
    /// per epoch), under the shard lock.
    fn find_oldest(&self, now: u32) {
        // A slot's tag is the exact epoch of the spans it counts: it changes only when a later
        // epoch reuses the slot, which first moves those spans to `stale`.
        let oldest = self
            .slots
            .iter()
            .map(|s| unpack(s.load(Relaxed)))
            .filter(|&(_, count)| count > 0)
            .map(|(tag, _)| tag)
            .max_by_key(|&tag| now.wrapping_sub(tag));
        self.oldest
            .store(oldest.map_or(u64::MAX, u64::from), Relaxed);
    }

    /// The oldest epoch with an open span in this ring: two loads.
    fn oldest(&self) -> Option<u32> {
        let stale = self.stale_oldest.load(Relaxed);
        if stale != u64::MAX && self.stale.load(Relaxed) > 0 {
            return Some(stale as u32);
        }
        match self.oldest.load(Relaxed) {
            u64::MAX => None,
            e => Some(e as u32),
        }
    }
}

impl OpenSpans {
    /// Ages for a span store of `shards` shards.
    pub(crate) fn new(shards: usize) -> Self {
        OpenSpans {
            rings: (0..shards.max(1))
                .map(|_| CachePadded::new(Ring::new()))
                .collect(),
            shift: epoch_shift(),
        }
    }

    /// The epoch of a tick.
    #[inline]
    pub(crate) fn epoch_of(&self, tick: Tick) -> u32 {
        (tick.raw() >> self.shift) as u32
    }

    /// A span opened in `epoch` in `shard`; the caller holds that shard's lock.
    #[inline]
    pub(crate) fn open(&self, shard: usize, epoch: u32) {
        self.rings[shard % self.rings.len()].open(epoch);
    }

    /// A span opened in `epoch` closed; the caller holds `shard`'s lock.
    #[inline]
    pub(crate) fn close(&self, shard: usize, epoch: u32) {
        self.rings[shard % self.rings.len()].close(epoch);
    }

    /// How long the oldest open span has been open, to within an epoch; `None` when none is.
    pub(crate) fn oldest_age(&self) -> Option<Duration> {
        let now = self.epoch_of(Tick::now());
        let oldest = self
            .rings
            .iter()
            .filter_map(|r| r.oldest())
            .max_by_key(|&tag| now.wrapping_sub(tag))?;
        Some(epoch_length() * now.wrapping_sub(oldest))
    }
}

impl Default for OpenSpans {
    fn default() -> Self {
        OpenSpans::new(SHARDS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_open_span_is_found_and_forgotten_on_close() {
        let spans = OpenSpans::new(2);
        let now = epoch_of(Tick::now());
        assert_eq!(spans.oldest_age(), None);
        spans.open(0, now.wrapping_sub(100));
        spans.open(1, now.wrapping_sub(10));
        spans.open(1, now);
        let age = spans.oldest_age().unwrap();
        assert_eq!(age, epoch_length() * 100);
        spans.close(0, now.wrapping_sub(100));
        assert_eq!(spans.oldest_age().unwrap(), epoch_length() * 10);
        spans.close(1, now.wrapping_sub(10));
        spans.close(1, now);
        assert_eq!(spans.oldest_age(), None);
    }

    #[test]
    fn spans_older_than_the_ring_are_stale_and_still_counted() {
        let spans = OpenSpans::new(1);
        let now = epoch_of(Tick::now());
        let old = now.wrapping_sub(3 * RING as u32);
        spans.open(0, old);
        // A newer span in the same slot moves the old one to stale.
        spans.open(0, old.wrapping_add(RING as u32));
        assert_eq!(
            spans.oldest_age().unwrap(),
            epoch_length() * (3 * RING as u32)
        );
        spans.close(0, old); // found stale
        assert_eq!(
            spans.oldest_age().unwrap(),
            epoch_length() * (2 * RING as u32)
        );
        spans.close(0, old.wrapping_add(RING as u32));
        assert_eq!(spans.oldest_age(), None);
    }
}
