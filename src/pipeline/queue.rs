//! The bounded queue between the layer and the drain thread, the back-pressure policies, and
//! the [`Intake`]: everything the layer shares with the crate's threads.
//!
//! The queue is a `crossbeam_queue::ArrayQueue`: lock-free and bounded. Producers never take a
//! lock unless they chose [`Backpressure::Block`] and the queue is full. The drain thread is
//! woken once every `wake_every` accepted records (coalesced, never per record) and otherwise
//! wakes on its own timer.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use serde::Serialize;

use super::notify::Notify;
use crate::clock::deadline_after;
use crate::record::{DropReason, Record};
use crate::sampling::Sampler;
use crate::stats::Counters;

/// How long [`Backpressure::Block`] waits for room when the timeout comes from the environment
/// or from `"block".parse()`.
pub const DEFAULT_BLOCK_TIMEOUT: Duration = Duration::from_millis(100);

/// What the layer (the hot side) shares with the crate's threads and the handles.
#[derive(Debug)]
pub(crate) struct Intake {
    pub(crate) queue: Queue,
    pub(crate) counters: Counters,
    pub(crate) sampler: Sampler,
    /// No record is accepted once this is set.
    pub(crate) closed: Flag,
    /// Set by the guard's `Drop` (unless told to be quiet) before it closes the pipeline: the
    /// records offered afterwards are lost because the guard was dropped.
    pub(crate) closed_by_guard_drop: Flag,
    /// Whether the line about a dropped guard was printed (once per pipeline).
    guard_drop_notice_printed: AtomicBool,
}

impl Intake {
    pub(crate) fn new(queue: Queue, counters: Counters, sampler: Sampler) -> Self {
        Intake {
            queue,
            counters,
            sampler,
            closed: Flag::default(),
            closed_by_guard_drop: Flag::default(),
            guard_drop_notice_printed: AtomicBool::new(false),
        }
    }

    /// Called for a record offered after the pipeline closed. The first one after a dropped
    /// guard says on stderr what happened and how to keep the guard: otherwise that loss is
    /// silent (only the `shutdown` drop counter, which nobody may be reading, shows it).
    #[cold]
    pub(crate) fn offered_after_close(&self) {
        // `closed_by_guard_drop` is set before `closed` (a Release store), and the caller saw
        // `closed` with an Acquire load, so a flag set by a dropping guard is seen here.
        if self.closed_by_guard_drop.is_set()
            && !self.guard_drop_notice_printed.swap(true, Ordering::Relaxed)
        {
            // Not `eprintln!`, which panics when stderr is gone: this runs on an application
            // thread, inside its `tracing` call.
            let _ = writeln!(
                std::io::stderr(),
                "tracing-offload: a record was lost: the pipeline shut down when its Guard was \
                 dropped, and every later record is dropped too (counted as `shutdown`). Keep \
                 the guard alive for as long as the program logs: bind it to a name, e.g. \
                 `let _guard = tracing_offload::init()?;` in `main`, not `let _ = …`."
            );
        }
    }
}

/// What the layer does when the queue is full.
///
/// ```
/// use std::time::Duration;
/// use tracing_offload::Backpressure;
///
/// let p: Backpressure = "block".parse().unwrap();
/// assert_eq!(p, Backpressure::Block { timeout: tracing_offload::DEFAULT_BLOCK_TIMEOUT });
/// assert_eq!(Backpressure::Block { timeout: Duration::from_millis(5) }.to_string(), "block");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backpressure {
    /// Evict the oldest record to make room for the new one (the evicted record is counted as
    /// dropped with reason `queue_full_oldest`). Keeps the most recent history.
    DropOldest,
    /// Refuse the new record (counted with reason `queue_full_newest`). The cheapest policy: a
    /// refused record is never built, so nothing is allocated.
    DropNewest,
    /// Wait for room, at most `timeout`, then drop the record (reason `block_timeout`). The
    /// calling thread is delayed but never waits forever.
    Block {
        /// The longest a calling thread waits for room.
        timeout: Duration,
    },
}

impl Backpressure {
    /// The name used in configuration: `drop_oldest`, `drop_newest` or `block`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Backpressure::DropOldest => "drop_oldest",
            Backpressure::DropNewest => "drop_newest",
            Backpressure::Block { .. } => "block",
        }
    }
}

impl std::fmt::Display for Backpressure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Backpressure {
    type Err = ParseBackpressureError;

    /// Parses `drop_oldest`, `drop_newest` or `block` (the last with
    /// [`DEFAULT_BLOCK_TIMEOUT`]); `-` may stand for `_`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "drop_oldest" => Ok(Backpressure::DropOldest),
            "drop_newest" => Ok(Backpressure::DropNewest),
            "block" => Ok(Backpressure::Block {
                timeout: DEFAULT_BLOCK_TIMEOUT,
            }),
            _ => Err(ParseBackpressureError(s.to_owned())),
        }
    }
}

/// A back-pressure name that is not `drop_oldest`, `drop_newest` or `block`.
///
/// ```
/// use tracing_offload::Backpressure;
/// let e = "fast".parse::<Backpressure>().unwrap_err();
/// assert_eq!(e.to_string(), "unknown back-pressure policy \"fast\": use drop_oldest, drop_newest or block");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown back-pressure policy {0:?}: use {EXPECTED_BACKPRESSURE}")]
pub struct ParseBackpressureError(String);

/// The accepted back-pressure names, as an env warning's "expected" text.
pub(crate) const EXPECTED_BACKPRESSURE: &str = "drop_oldest, drop_newest or block";

/// A one-way flag between threads (closed, stop, finished, abandoned).
///
/// `set` stores with `Release` and `is_set` loads with `Acquire`: a thread that sees the flag set
/// also sees everything the setting thread wrote before setting it (its final counters, the
/// records it pushed), which is what every waiter on these flags then reads.
#[derive(Debug, Default)]
pub(crate) struct Flag(AtomicBool);

impl Flag {
    #[inline]
    pub(crate) fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    #[inline]
    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The queue with its wake-up machinery.
#[derive(Debug)]
pub(crate) struct Queue {
    records: ArrayQueue<Record>,
    /// `accepted & wake_mask == 0` wakes the drain thread.
    wake_mask: u64,
    drain: OnceLock<Thread>,
    drain_sleeping: AtomicBool,
    /// Producers blocked for room wait here; the drain thread notifies after each batch.
    pub(crate) room: Notify,
}

/// What happened to an offered record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offer {
    Accepted,
    Dropped(DropReason),
}

impl Queue {
    pub(crate) fn new(capacity: usize, wake_every: usize) -> Self {
        let wake_every = wake_every.clamp(1, capacity.max(1)).next_power_of_two() as u64;
        Queue {
            records: ArrayQueue::new(capacity.max(1)),
            wake_mask: wake_every - 1,
            drain: OnceLock::new(),
            drain_sleeping: AtomicBool::new(false),
            room: Notify::default(),
        }
    }

    pub(crate) fn set_drain_thread(&self, thread: Thread) {
        let _ = self.drain.set(thread);
    }

    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.records.capacity()
    }

    pub(crate) fn pop(&self) -> Option<Record> {
        self.records.pop()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Wakes the drain thread now (flush, shutdown, a blocked producer).
    pub(crate) fn wake_drain(&self) {
        if let Some(t) = self.drain.get() {
            t.unpark();
        }
    }

    /// The drain thread calls this before parking; producers then know to wake it.
    pub(crate) fn set_drain_sleeping(&self, sleeping: bool) {
        self.drain_sleeping.store(sleeping, Ordering::Relaxed);
    }

    /// Offers one record under `policy`. `build` runs only when there is a chance to keep the
    /// record, so a record refused at a full queue is never built.
    #[inline]
    pub(crate) fn offer(
        &self,
        policy: Backpressure,
        counters: &Counters,
        build: impl FnOnce() -> Record,
    ) -> Offer {
        let outcome = match policy {
            Backpressure::DropNewest => {
                if self.records.is_full() {
                    Offer::Dropped(DropReason::QueueFullNewest)
                } else {
                    match self.records.push(build()) {
                        Ok(()) => Offer::Accepted,
                        Err(_) => Offer::Dropped(DropReason::QueueFullNewest),
                    }
                }
            }
            Backpressure::DropOldest => {
                let evicted = self.records.force_push(build());
                // Count the acceptance before the eviction it caused, so that a snapshot's
                // `accepted - evicted` never goes backwards.
                let n = counters.accepted.incr();
                self.after_accept(n, counters);
                if let Some(old) = evicted {
                    counters.dropped.add(DropReason::QueueFullOldest, 1);
                    drop(old);
                }
                return Offer::Accepted;
            }
            Backpressure::Block { timeout } => self.offer_blocking(timeout, build),
        };
        match outcome {
            Offer::Accepted => {
                let n = counters.accepted.incr();
                self.after_accept(n, counters);
            }
            Offer::Dropped(reason) => counters.dropped.add(reason, 1),
        }
        outcome
    }

    fn offer_blocking(&self, timeout: Duration, build: impl FnOnce() -> Record) -> Offer {
        if self.records.is_full() && !self.wait_for_room(deadline_after(timeout)) {
            return Offer::Dropped(DropReason::BlockTimeout);
        }
        let deadline = deadline_after(timeout);
        let mut record = build();
        loop {
            match self.records.push(record) {
                Ok(()) => return Offer::Accepted,
                Err(back) => record = back,
            }
            if !self.wait_for_room(deadline) {
                return Offer::Dropped(DropReason::BlockTimeout);
            }
        }
    }

    fn wait_for_room(&self, deadline: Instant) -> bool {
        self.wake_drain();
        self.room.wait_until(deadline, || !self.records.is_full())
    }

    #[inline]
    fn after_accept(&self, accepted_before: u64, counters: &Counters) {
        if accepted_before & self.wake_mask == 0 {
            let len = self.records.len();
            counters.high_water_mark.fetch_max(len, Ordering::Relaxed);
            if self.drain_sleeping.load(Ordering::Relaxed) {
                self.wake_drain();
            }
        }
    }
}
