//! The layer's own span storage: state lives with the span, keyed by its `tracing` id, and goes
//! when the span closes.
//!
//! Sharded: each shard keeps [`SpanEntry`] slots and a map from span id to slot. An entry holds
//! the span's place in its trace (ids and the sampled flag, for every span, sampled or not, so
//! "not sampled" propagates) and, for a recorded span, the record being built, in a box from the
//! pipeline's pool. Nothing is boxed per span: slots are reused, the maps keep their capacity,
//! and the records are recycled. Each shard has its own short lock; a thread touching one span
//! never waits for threads working on others, except on a shard collision. Nothing else the
//! crate keeps refers to a span but by id.

use parking_lot::{Mutex, MutexGuard};

use crossbeam_utils::CachePadded;
use tracing_core::span::Id;

use crate::clock::{RawSpan, Tick};
use crate::ids::{SpanContext, SpanId, TraceId};
use crate::open_spans::{OpenSpans, SHARDS};
use crate::record::SpanRecord;

use super::id_index::IdIndex;

/// One open span's state, kept in place in its shard's slots: it is written field by field
/// where it lives and never moved while the span is open (moving a freshly written entry stalls
/// the loads that copy it: each one spans several of the stores that wrote it).
#[derive(Debug)]
pub(crate) struct SpanEntry {
    /// Trace id, span id, sampled flag.
    pub(crate) context: SpanContext,
    /// The local root of the span's trace (the span itself for a local root).
    pub(crate) local_root: SpanId,
    /// When the local root started (tail sampling tells a trace under way at a switch by it).
    pub(crate) root_start: Tick,
    /// Whether a child span was created under it (it can no longer change its trace).
    pub(crate) has_children: bool,
    /// Whether it has a parent span in this process.
    pub(crate) has_local_parent: bool,
    /// Whether an event happened in it (with its trace id: it can no longer change its trace).
    pub(crate) has_events: bool,
    /// Whether its `traceparent` was handed out for an outgoing call (the callee joined its
    /// trace: it can no longer change its trace).
    pub(crate) propagated: bool,
    /// The record being built: recorded spans, and roots (whose sampling may still change when
    /// a remote parent is set); `None` for the rest.
    pub(crate) record: Option<Box<SpanRecord>>,
    /// The coarse epoch it opened in (open-span ages).
    epoch: u32,
}

impl SpanEntry {
    /// A free slot.
    const VACANT: SpanEntry = SpanEntry {
        context: SpanContext {
            trace_id: TraceId::INVALID,
            span_id: SpanId::INVALID,
            sampled: false,
        },
        local_root: SpanId::INVALID,
        root_start: Tick::ZERO,
        has_children: false,
        has_local_parent: false,
        has_events: false,
        propagated: false,
        record: None,
        epoch: 0,
    };

    /// Time spent entered, on one thread, from an enter to its exit (`on_exit`).
    #[inline]
    pub(crate) fn add_busy(&mut self, busy: RawSpan) {
        if let Some(r) = self.record.as_deref_mut() {
            r.busy_raw.add(busy);
        }
    }
}

/// A trace's local root in this process, and when it started.
pub(crate) type LocalRoot = (SpanId, Tick);

/// What a new span is opened with.
pub(crate) struct NewSpan {
    pub(crate) context: SpanContext,
    pub(crate) local_root: SpanId,
    pub(crate) root_start: Tick,
    pub(crate) has_local_parent: bool,
    pub(crate) record: Option<Box<SpanRecord>>,
    pub(crate) opened: Tick,
}

/// One shard: open spans' entries in slots, found by span id.
#[derive(Debug, Default)]
struct Shard {
    /// Span id to slot.
    index: IdIndex,
    slots: Vec<SpanEntry>,
    /// Slots not in use.
    free: Vec<u32>,
}

impl Shard {
    /// Gives the memory of a burst back once the shard is mostly empty: live entries move to
    /// the front of a smaller slot vector (a rare O(open spans) step under the shard's lock).
    #[inline]
    fn compact_if_mostly_empty(&mut self) {
        let len = self.index.len();
        if self.slots.len() <= SHRINK_ABOVE || len * 8 >= self.slots.len() {
            return;
        }
        self.compact(len);
    }

    /// Moves the `len` live entries to a smaller slot vector.
    #[cold]
    fn compact(&mut self, len: usize) {
        let mut slots = Vec::with_capacity(len * 2);
        for slot in self.index.slots_mut() {
            let entry = std::mem::replace(&mut self.slots[*slot as usize], SpanEntry::VACANT);
            *slot = slots.len() as u32;
            slots.push(entry);
        }
        self.slots = slots;
        self.free = Vec::new();
        self.index.shrink_to(len * 2);
    }
}

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
    #[inline]
    fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        // `parking_lot`'s lock: its fast path is one compare-and-swap each way, with no
        // poisoning to check (std's costs 80 more instructions per span lifecycle). A panic
        // while a shard was locked leaves it consistent anyway (every update is a single
        // insert, remove or field write).
        self.shards[shard].lock()
    }

    /// Stores a new span's state. A stale entry for a reused id (a span this store never saw
    /// close) is replaced: `Err` carries its record.
    #[inline]
    pub(crate) fn insert(
        &self,
        id: &Id,
        new: NewSpan,
        ages: &OpenSpans,
    ) -> Result<(), Option<Box<SpanRecord>>> {
        let shard = shard_of(id);
        let epoch = ages.epoch_of(new.opened);
        let mut guard = self.lock(shard);
        let map = &mut *guard;
        ages.open(shard, epoch);
        let (slots, free) = (&mut map.slots, &mut map.free);
        let (slot, stale) = match map.index.get_or_insert(id.into_u64(), || match free.pop() {
            Some(slot) => slot,
            None => {
                slots.push(SpanEntry::VACANT);
                (slots.len() - 1) as u32
            }
        }) {
            Ok(slot) => {
                let old = &mut map.slots[slot as usize];
                ages.close(shard, old.epoch);
                (slot, Err(old.record.take()))
            }
            Err(slot) => (slot, Ok(())),
        };
        let e = &mut map.slots[slot as usize];
        e.context = new.context;
        e.local_root = new.local_root;
        e.root_start = new.root_start;
        e.has_children = false;
        e.has_local_parent = new.has_local_parent;
        e.has_events = false;
        e.propagated = false;
        e.record = new.record;
        e.epoch = epoch;
        stale
    }

    /// Runs `f` on a span's state.
    #[inline(always)]
    pub(crate) fn with<R>(&self, id: &Id, f: impl FnOnce(&mut SpanEntry) -> R) -> Option<R> {
        let mut guard = self.lock(shard_of(id));
        let map = &mut *guard;
        let slot = map.index.get(id.into_u64())?;
        Some(f(&mut map.slots[slot as usize]))
    }

    /// A span's place in its trace, and its local root.
    #[inline]
    pub(crate) fn context(&self, id: &Id) -> Option<(SpanContext, SpanId)> {
        self.with(id, |e| (e.context, e.local_root))
    }

    /// [`context`](Self::context) for an event inside the span, and whether `keep` keeps the
    /// event given that context. A kept event marks the span as having had one (its ids have
    /// gone out); one sampled out does not.
    #[inline]
    pub(crate) fn event_in(
        &self,
        id: &Id,
        keep: impl FnOnce(SpanContext) -> bool,
    ) -> Option<(SpanContext, LocalRoot, bool)> {
        self.with(id, |e| {
            let kept = keep(e.context);
            e.has_events |= kept;
            (e.context, (e.local_root, e.root_start), kept)
        })
    }

    /// Takes a closing span's state out: its record, and whether it is sampled.
    #[inline]
    pub(crate) fn remove(
        &self,
        id: &Id,
        ages: &OpenSpans,
    ) -> Option<(Option<Box<SpanRecord>>, bool)> {
        let shard = shard_of(id);
        let mut guard = self.lock(shard);
        let map = &mut *guard;
        let slot = map.index.remove(id.into_u64())?;
        let e = &mut map.slots[slot as usize];
        ages.close(shard, e.epoch);
        let taken = (e.record.take(), e.context.sampled);
        map.free.push(slot);
        map.compact_if_mostly_empty();
        Some(taken)
    }

    /// Spans held now (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        (0..SHARDS).map(|s| self.lock(s).index.len()).sum()
    }

    /// Room held for spans (for tests).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        (0..SHARDS)
            .map(|s| {
                let shard = self.lock(s);
                shard.slots.capacity().max(shard.index.capacity())
            })
            .sum()
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
            let new = NewSpan {
                context: ctx,
                local_root: ctx.span_id,
                root_start: Tick::ZERO,
                has_local_parent: false,
                record: None,
                opened: Tick::now(),
            };
            assert!(store.insert(id, new, &ages).is_ok());
        }
        assert_eq!(store.len(), 200_000);
        assert!(ages.oldest_age().is_some());
        assert_eq!(
            store.context(&ids[41]).unwrap().0.span_id,
            SpanId::from_u64(42)
        );
        // Most close: the shards compact, and the spans still open keep their state.
        let kept = |i: usize| i % 1_000 == 0;
        for (i, id) in ids.iter().enumerate() {
            if !kept(i) {
                assert!(store.remove(id, &ages).is_some());
            }
        }
        assert_eq!(store.len(), 200);
        assert!(store.capacity() <= SHARDS * SHRINK_ABOVE * 2);
        for (i, id) in ids.iter().enumerate() {
            let found = store.context(id).map(|(c, _)| c.span_id);
            let expected = kept(i).then(|| SpanId::from_u64(i as u64 + 1));
            assert_eq!(found, expected, "span {i}");
        }
        for (i, id) in ids.iter().enumerate() {
            if kept(i) {
                assert!(store.remove(id, &ages).is_some());
            }
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
