//! The layer's own span storage: state lives with the span, keyed by its `tracing` id, and goes
//! when the span closes.
//!
//! A sharded map from span id to [`SpanEntry`]: the span's place in its trace (ids and the
//! sampled flag, for every span, sampled or not: 24 bytes, so "not sampled" propagates), and for
//! a recorded span the record being built, in a box from the pipeline's pool. Nothing is boxed
//! per span: the maps keep their capacity, and the records are recycled. Each shard has its own
//! short lock; a thread touching one span never waits for threads working on others, except on
//! a shard collision. Nothing else the crate keeps refers to a span but by id.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard};

use crossbeam_utils::CachePadded;
use tracing_core::span::Id;

use crate::clock::{RawSpan, Tick};
use crate::ids::{SpanContext, SpanId};
use crate::open_spans::{epoch_of, OpenSpans, SHARDS};
use crate::record::SpanRecord;

/// One open span's state.
#[derive(Debug)]
pub(crate) struct SpanEntry {
    /// Trace id, span id, sampled flag.
    pub(crate) context: SpanContext,
    /// The local root of the span's trace (the span itself for a local root).
    pub(crate) local_root: SpanId,
    /// Whether a child span was created under it (it can no longer change its trace).
    pub(crate) has_children: bool,
    /// Whether it has a parent span in this process.
    pub(crate) has_local_parent: bool,
    /// Whether an event happened in it (with its trace id: it can no longer change its trace).
    pub(crate) has_events: bool,
    /// The record being built: recorded spans, and roots (whose sampling may still change when
    /// a remote parent is set); `None` for the rest.
    pub(crate) record: Option<Box<SpanRecord>>,
    /// How many times the span is entered right now, and when that last changed (busy/idle).
    pub(crate) depth: u32,
    pub(crate) last_change: Tick,
    /// The coarse epoch it opened in (open-span ages).
    epoch: u32,
}

impl SpanEntry {
    pub(crate) fn new(
        context: SpanContext,
        local_root: SpanId,
        has_local_parent: bool,
        record: Option<Box<SpanRecord>>,
        opened: Tick,
    ) -> Self {
        SpanEntry {
            context,
            local_root,
            has_children: false,
            has_local_parent,
            has_events: false,
            record,
            depth: 0,
            last_change: opened,
            epoch: epoch_of(opened),
        }
    }

    /// Entered (`on_enter`): the time since the last change was idle.
    pub(crate) fn enter(&mut self, now: Tick) {
        if self.depth == 0 {
            self.account(now, |r| &mut r.idle_raw);
        }
        self.depth = self.depth.saturating_add(1);
    }

    /// Exited (`on_exit`): the time since entering was busy.
    pub(crate) fn exit(&mut self, now: Tick) {
        self.depth = self.depth.saturating_sub(1);
        if self.depth == 0 {
            self.account(now, |r| &mut r.busy_raw);
        }
    }

    /// Closed: the time since the last exit was idle (busy if it is still entered).
    pub(crate) fn close(&mut self, now: Tick) {
        if self.depth == 0 {
            self.account(now, |r| &mut r.idle_raw);
        } else {
            self.account(now, |r| &mut r.busy_raw);
        }
    }

    fn account(&mut self, now: Tick, slot: impl FnOnce(&mut SpanRecord) -> &mut RawSpan) {
        if let Some(r) = self.record.as_deref_mut() {
            slot(r).add(now.since(self.last_change));
        }
        self.last_change = now;
    }
}

type Shard = HashMap<u64, SpanEntry, BuildHasherDefault<IdHasher>>;

/// A shard holding room for more spans than this shrinks once it is mostly empty.
const SHRINK_ABOVE: usize = 4_096;

/// Open spans by `tracing` id.
#[derive(Debug)]
pub(crate) struct SpanStore {
    shards: Box<[CachePadded<Mutex<Shard>>]>,
}

/// The multiplier that spreads ids (Fibonacci hashing).
const SPREAD: u64 = 0x9e37_79b9_7f4a_7c15;

#[inline]
fn shard_of(id: &Id) -> usize {
    // The middle bits of the product: the top bits also feed the maps' own control bytes.
    ((id.into_u64().wrapping_mul(SPREAD) >> 40) as usize) & (SHARDS - 1)
}

impl Default for SpanStore {
    fn default() -> Self {
        SpanStore {
            shards: (0..SHARDS)
                .map(|_| CachePadded::new(Mutex::new(Shard::default())))
                .collect(),
        }
    }
}

impl SpanStore {
    fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        // A panic while a shard was locked left it consistent (every update is a single
        // insert, remove or field write): carry on.
        self.shards[shard].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores a new span's state (replacing a stale entry for a reused id, which is returned).
    pub(crate) fn insert(&self, id: &Id, entry: SpanEntry, ages: &OpenSpans) -> Option<SpanEntry> {
        let shard = shard_of(id);
        let mut map = self.lock(shard);
        ages.open(shard, entry.epoch);
        let old = map.insert(id.into_u64(), entry);
        if let Some(old) = &old {
            ages.close(shard, old.epoch);
        }
        old
    }

    /// Runs `f` on a span's state.
    #[inline]
    pub(crate) fn with<R>(&self, id: &Id, f: impl FnOnce(&mut SpanEntry) -> R) -> Option<R> {
        let mut map = self.lock(shard_of(id));
        map.get_mut(&id.into_u64()).map(f)
    }

    /// A span's place in its trace, and its local root.
    #[inline]
    pub(crate) fn context(&self, id: &Id) -> Option<(SpanContext, SpanId)> {
        self.with(id, |e| (e.context, e.local_root))
    }

    /// [`context`](Self::context) for an event inside the span, which marks the span as having
    /// had one.
    #[inline]
    pub(crate) fn event_in(&self, id: &Id) -> Option<(SpanContext, SpanId)> {
        self.with(id, |e| {
            e.has_events = true;
            (e.context, e.local_root)
        })
    }

    /// Takes a closing span's state out.
    pub(crate) fn remove(&self, id: &Id, ages: &OpenSpans) -> Option<SpanEntry> {
        let shard = shard_of(id);
        let mut map = self.lock(shard);
        let entry = map.remove(&id.into_u64())?;
        ages.close(shard, entry.epoch);
        // A map keeps its capacity for the next spans (no allocation in steady state), but not
        // a burst's: once it is mostly empty, it gives the memory back (a rare reallocation).
        let len = map.len();
        if map.capacity() > SHRINK_ABOVE && len * 8 < map.capacity() {
            map.shrink_to(len * 2);
        }
        Some(entry)
    }

    /// Spans held now (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        (0..SHARDS).map(|s| self.lock(s).len()).sum()
    }

    /// Room held for spans (for tests).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        (0..SHARDS).map(|s| self.lock(s).capacity()).sum()
    }
}

/// A hasher for span ids that are spread already by [`SPREAD`].
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(SPREAD);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(SPREAD);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_found_by_id_and_leave_on_close() {
        let store = SpanStore::default();
        let ages = OpenSpans::default();
        let ids: Vec<Id> = (1..=200_000u64).map(Id::from_u64).collect();
        for (i, id) in ids.iter().enumerate() {
            let ctx = SpanContext {
                span_id: SpanId::from_u64(i as u64 + 1),
                ..Default::default()
            };
            assert!(store
                .insert(
                    id,
                    SpanEntry::new(ctx, ctx.span_id, false, None, Tick::now()),
                    &ages
                )
                .is_none());
        }
        assert_eq!(store.len(), 200_000);
        assert!(ages.oldest_age().is_some());
        assert_eq!(
            store.context(&ids[41]).unwrap().0.span_id,
            SpanId::from_u64(42)
        );
        for id in &ids {
            assert!(store.remove(id, &ages).is_some());
        }
        assert_eq!(store.len(), 0);
        assert_eq!(ages.oldest_age(), None);
        assert!(
            store.capacity() <= SHARDS * SHRINK_ABOVE * 2,
            "{}",
            store.capacity()
        );
        assert!(store.remove(&ids[0], &ages).is_none());
    }
}
