//! The bounded queue between the layer and the drain thread, the back-pressure policies, and
//! the [`Intake`]: everything the layer shares with the crate's threads.
//!
//! The queue is a `crossbeam_queue::ArrayQueue`: lock-free and bounded. Producers never take a
//! lock unless they chose [`Backpressure::Block`] and the queue is full. The drain thread is
//! woken by a producer only when records pile up (a depth checked every few records, never per
//! record: waking a thread is a system call on the caller) and otherwise wakes on its own timer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use serde::Serialize;

use std::sync::Arc;

use super::notify::Notify;
use crate::clock::deadline_after;
use crate::record::{Captured, DropReason, EventRecord, Pool, SpanRecord};
use crate::sampling::Sampler;
use crate::stats::Counters;

/// How long [`Backpressure::Block`] waits for room when the timeout comes from the environment
/// or from `"block".parse()`.
pub const DEFAULT_BLOCK_TIMEOUT: Duration = Duration::from_millis(100);

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
    /// calling thread is delayed but never waits forever: a shutdown whose deadline passes
    /// lets it go too (reason `shutdown`), whatever its timeout.
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
/// `set` and `is_set` are `SeqCst`: besides publishing what the setting thread wrote before
/// (which Release/Acquire would do), the `closed` and `drain_finished` flags take part in a
/// store-then-load handshake with producers (see [`Intake::after_push`]) that needs one total
/// order. On x86 a `SeqCst` load is a plain load, so the hot path pays nothing for it.
#[derive(Debug, Default)]
pub(crate) struct Flag(AtomicBool);

impl Flag {
    #[inline]
    pub(crate) fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    #[inline]
    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The most records a pool keeps for reuse. A pool keeps up to what can be in flight at once
/// (the queue, the sink buffers, the batches: the memory the pipeline needed at its peak
/// anyway), so that even a saturated pipeline allocates nothing on the calling thread; past
/// this bound, extra records are freed when done and made anew when needed.
pub(crate) const MAX_POOL_CAPACITY: usize = 1 << 17;

/// Records each pool makes when the pipeline is built, at most: an eighth of the queue, so that
/// the first records are not allocated on the calling thread either, and so that a record is
/// reused only after thousands of others. That distance matters: a record comes back from the
/// thread that read it last, on another core, and reused at once its memory is still in that
/// core's cache, which makes the caller wait for it (measured with `benches/paced.rs`, pools of
/// 1 024 event and 256 span records against 8 192 each: a kept event 170 → 144 ns on average;
/// a span lifecycle with tail sampling dropping 99 % of traces, whose records come back at
/// once, 657 → 480 ns in one run, though later runs still put it 160 to 200 ns above the same
/// lifecycle without tail sampling).
const MAX_POOL_PREFILL: usize = 8_192;

/// What the layer (the hot side) shares with the crate's threads and the handles: the queue,
/// the record pools, the counters, the sampler, and the flags of shutdown.
#[derive(Debug)]
pub(crate) struct Intake {
    pub(crate) queue: Queue,
    pub(crate) events: Arc<Pool<EventRecord>>,
    pub(crate) spans: Arc<Pool<SpanRecord>>,
    pub(crate) counters: Counters,
    pub(crate) sampler: Sampler,
    /// No record is accepted once this is set.
    pub(crate) closed: Flag,
    /// Set by the drain thread when it has stopped for good.
    pub(crate) drain_finished: Flag,
    /// Set by shutdown when its deadline has passed and it empties the queue itself: nothing
    /// more will be drained. Callers waiting for room stop waiting, and a record pushed
    /// afterwards is taken back out at once (see [`Intake::after_push`]).
    pub(crate) gave_up: Flag,
    /// Set by the guard's `Drop` (unless told to be quiet) before it closes the pipeline: the
    /// records offered afterwards are lost because the guard was dropped.
    pub(crate) closed_by_guard_drop: Flag,
    /// Whether the line about a dropped guard was printed (once per pipeline).
    guard_drop_notice_printed: AtomicBool,
    /// The forks this process descended from when the pipeline was built (see `crate::fork`).
    fork_generation: u32,
    /// Whether the line about a forked child was printed (once per pipeline and child).
    fork_notice_printed: AtomicBool,
}

/// Whether a record may be built and pushed, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Build it and push it with this policy.
    Push(Backpressure),
    /// Don't build it: it was counted as dropped.
    Refused,
}

// === impl Intake ===

impl Intake {
    /// `in_flight`: how many records can be on their way at once (the queue, the sinks'
    /// buffers and batches); the pools keep that many, up to [`MAX_POOL_CAPACITY`].
    pub(crate) fn new(
        queue: Queue,
        counters: Counters,
        sampler: Sampler,
        in_flight: usize,
    ) -> Self {
        let pool = in_flight.clamp(1, MAX_POOL_CAPACITY);
        let prefill = (queue.capacity() / 8).clamp(64, MAX_POOL_PREFILL).min(pool);
        Intake {
            queue,
            events: Arc::new(Pool::new(pool, prefill)),
            spans: Arc::new(Pool::new(pool, prefill)),
            counters,
            sampler,
            closed: Flag::default(),
            drain_finished: Flag::default(),
            gave_up: Flag::default(),
            closed_by_guard_drop: Flag::default(),
            guard_drop_notice_printed: AtomicBool::new(false),
            fork_generation: crate::fork::generation(),
            fork_notice_printed: AtomicBool::new(false),
        }
    }

    /// Called for a record offered after the pipeline closed. The first one after a dropped
    /// guard says on stderr what happened and how to keep the guard: otherwise that loss is
    /// silent (only the `shutdown` drop counter, which nobody may be reading, shows it).
    #[cold]
    fn offered_after_close(&self) {
        // `closed_by_guard_drop` is set before `closed`, and the caller saw `closed` set (both
        // `SeqCst`), so a flag set by a dropping guard is seen here.
        if self.closed_by_guard_drop.is_set()
            && !self.guard_drop_notice_printed.swap(true, Ordering::Relaxed)
        {
            // Written by the notice thread: this runs on an application thread, inside its
            // `tracing` call, and stderr may be a full pipe (adversary pass 57). Waited for a
            // little, once per pipeline, so that a program that ends next still shows it.
            crate::notice::post_and_wait(
                "a record was lost: the pipeline shut down when its Guard was dropped, and \
                 every later record is dropped too (counted as `shutdown`). Keep the guard \
                 alive for as long as the program logs: bind it to a name, e.g. `let _guard = \
                 tracing_offload::init()?;` in `main`, not `let _ = …`."
                    .to_owned(),
                crate::notice::LAST_WORDS_WAIT,
            );
        }
    }

    /// Whether this process is a child forked after the pipeline was built: the pipeline's
    /// threads are in the parent, so nothing here may touch its queues or pools (a push the
    /// fork cut short would make a take wait for ever; adversary pass 58).
    #[inline(always)]
    pub(crate) fn forked(&self) -> bool {
        crate::fork::forked_since(self.fork_generation)
    }

    /// Counts a record offered in a forked child (see [`forked`](Self::forked)) as dropped
    /// (`shutdown`: the pipeline does not run here), and says so once.
    #[cold]
    #[inline(never)]
    pub(crate) fn refuse_in_forked_child(&self) {
        self.counters.dropped.add(DropReason::Shutdown, 1);
        if !self.fork_notice_printed.swap(true, Ordering::Relaxed) {
            // Waited for a little (once): a forked child often ends soon.
            crate::notice::post_and_wait(
                "this process was forked after the pipeline was built, and the pipeline's \
                 threads stayed in the parent: records offered here are dropped (counted as \
                 `shutdown`). Build a pipeline in the child process (before its first record), \
                 or fork before building one."
                    .to_owned(),
                crate::notice::LAST_WORDS_WAIT,
            );
        }
    }

    /// Decides, before anything is built, whether a record can be offered: refused after
    /// shutdown, and under `DropNewest` at a full queue (counted here); under `Block`, waits for
    /// room up to the deadline first (or until a shutdown gives up).
    #[inline(always)]
    pub(crate) fn admit(&self, policy: Backpressure) -> Admission {
        let c = &self.counters;
        if self.closed.is_set() {
            c.dropped.add(DropReason::Shutdown, 1);
            self.offered_after_close();
            return Admission::Refused;
        }
        match policy {
            Backpressure::DropNewest if self.queue.is_full() => {
                c.dropped.add(DropReason::QueueFullNewest, 1);
                Admission::Refused
            }
            Backpressure::Block { timeout } if self.queue.is_full() => {
                let deadline = deadline_after(timeout);
                match self.queue.wait_for_room(deadline, &self.gave_up) {
                    // The push waits, if the room is taken again first, for what is left of
                    // the call's timeout, not for another whole one.
                    Wait::Room => Admission::Push(Backpressure::Block {
                        timeout: deadline.saturating_duration_since(Instant::now()),
                    }),
                    refused => {
                        self.count_refused_wait(refused);
                        Admission::Refused
                    }
                }
            }
            _ => Admission::Push(policy),
        }
    }

    /// Counts a record whose wait for room ended without room.
    #[cold]
    fn count_refused_wait(&self, wait: Wait) {
        if wait == Wait::GaveUp {
            self.counters.dropped.add(DropReason::Shutdown, 1);
            self.offered_after_close();
        } else {
            self.counters.dropped.add(DropReason::BlockTimeout, 1);
        }
    }

    /// Pushes a record that [`admit`](Self::admit) let through. Every outcome is counted; a
    /// record that does not get in goes back to its pool.
    #[inline(always)]
    pub(crate) fn push(&self, policy: Backpressure, record: Captured) {
        let c = &self.counters;
        match policy {
            Backpressure::DropOldest => {
                let evicted = self.queue.records.force_push(record);
                // Count the acceptance before the eviction it caused, so that a snapshot's
                // `accepted - evicted` never goes backwards.
                let n = c.accepted.incr();
                self.queue.after_accept(n, c);
                if let Some(old) = evicted {
                    c.dropped.add(DropReason::QueueFullOldest, 1);
                    self.recycle(old);
                }
            }
            Backpressure::DropNewest => match self.queue.records.push(record) {
                Ok(()) => {
                    let n = c.accepted.incr();
                    self.queue.after_accept(n, c);
                }
                Err(back) => {
                    c.dropped.add(DropReason::QueueFullNewest, 1);
                    self.recycle(back);
                    return;
                }
            },
            Backpressure::Block { timeout } => {
                if let Err((back, wait)) = self.queue.push_blocking(record, timeout, &self.gave_up)
                {
                    self.count_refused_wait(wait);
                    self.recycle(back);
                    return;
                }
                let n = c.accepted.incr();
                self.queue.after_accept(n, c);
            }
        }
        self.after_push();
    }

    /// A producer that passed the `closed` check before shutdown may push after the drain
    /// thread took its last record. Then it (or the drain thread, whichever comes second)
    /// takes the record back out and counts it, so nothing is stranded in the queue:
    ///
    /// * shutdown sets `closed` before it stops the drain; the drain's last empty check and
    ///   then `drain_finished.set()` come after. All four are `SeqCst`, and so are the queue's
    ///   tail update in `push` and its check in `pop`.
    /// * A push that the drain's last check missed comes after that check in the total order,
    ///   so the producer's load of `closed` below sees it set. If the producer's load of
    ///   `drain_finished` sees it unset, that load precedes the drain's store, which precedes
    ///   the drain's final [`sweep_late`](Self::sweep_late): the sweep sees the push. If it
    ///   sees it set, the producer sweeps itself.
    /// * When the shutdown's deadline passes first, the drain thread may never finish (a sink
    ///   that does not move). Shutdown sets `gave_up` (after `closed`), then empties the queue
    ///   itself. The same argument holds with `gave_up` and shutdown's emptying in place of
    ///   `drain_finished` and the drain's sweep.
    #[inline]
    fn after_push(&self) {
        if self.closed.is_set() && (self.drain_finished.is_set() || self.gave_up.is_set()) {
            self.sweep_late();
        }
    }

    /// Takes out whatever is left in the queue after the drain thread stopped, counting each
    /// record as dropped with reason `shutdown`.
    pub(crate) fn sweep_late(&self) {
        while let Some(r) = self.queue.pop() {
            self.counters.dropped.add(DropReason::Shutdown, 1);
            self.counters.shutdown_evicted.incr();
            self.recycle(r);
        }
    }

    /// Returns a record that will not be sent to its pool.
    pub(crate) fn recycle(&self, record: Captured) {
        match record {
            Captured::Event(e) => self.events.give(e),
            Captured::Span(s) => self.spans.give(s),
        }
    }
}

/// How a wait for room in the queue ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// There is room.
    Room,
    /// The caller's deadline passed first.
    TimedOut,
    /// A shutdown gave up draining first.
    GaveUp,
}

/// The queue with its wake-up machinery.
#[derive(Debug)]
pub(crate) struct Queue {
    records: ArrayQueue<Captured>,
    /// Every `wake_mask + 1` records a producer looks at the depth...
    wake_mask: u64,
    /// ...and wakes the drain thread if at least this many are queued.
    wake_depth: usize,
    drain: OnceLock<Thread>,
    drain_sleeping: AtomicBool,
    /// Producers blocked for room wait here; the drain thread notifies after each batch.
    pub(crate) room: Notify,
}

impl Queue {
    /// `wake_every`: how often a producer checks the depth; `wake_depth`: the depth at which it
    /// wakes the drain thread (which otherwise wakes on its timer).
    pub(crate) fn new(capacity: usize, wake_every: usize, wake_depth: usize) -> Self {
        let wake_every = wake_every.clamp(1, capacity.max(1)).next_power_of_two() as u64;
        Queue {
            records: ArrayQueue::new(capacity.max(1)),
            wake_mask: wake_every - 1,
            wake_depth: wake_depth.clamp(1, capacity.max(1)),
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

    pub(crate) fn pop(&self) -> Option<Captured> {
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

    #[inline]
    pub(crate) fn is_full(&self) -> bool {
        self.records.is_full()
    }

    /// Pushes, waiting for room up to `timeout` (the clock is read only if it must wait) or
    /// until a shutdown gives up; gives the record back, with why, if there was no room.
    #[inline]
    fn push_blocking(
        &self,
        record: Captured,
        timeout: Duration,
        gave_up: &Flag,
    ) -> Result<(), (Captured, Wait)> {
        match self.records.push(record) {
            Ok(()) => Ok(()),
            Err(back) => self.push_when_room(back, timeout, gave_up),
        }
    }

    /// [`push_blocking`](Self::push_blocking) once the queue was found full.
    #[cold]
    fn push_when_room(
        &self,
        mut record: Captured,
        timeout: Duration,
        gave_up: &Flag,
    ) -> Result<(), (Captured, Wait)> {
        let deadline = deadline_after(timeout);
        loop {
            match self.wait_for_room(deadline, gave_up) {
                Wait::Room => {}
                refused => return Err((record, refused)),
            }
            match self.records.push(record) {
                Ok(()) => return Ok(()),
                Err(back) => record = back,
            }
        }
    }

    /// Waits until the queue has room, `deadline` passes, or a shutdown gives up (after its
    /// own deadline nothing more is drained, so room would never come).
    fn wait_for_room(&self, deadline: Instant, gave_up: &Flag) -> Wait {
        self.wake_drain();
        let woken = self
            .room
            .wait_until(deadline, || gave_up.is_set() || !self.records.is_full());
        if gave_up.is_set() {
            Wait::GaveUp
        } else if woken {
            // The room may be taken again before the caller pushes: `push_blocking` waits
            // again then.
            Wait::Room
        } else {
            Wait::TimedOut
        }
    }

    #[inline]
    fn after_accept(&self, accepted_before: u64, counters: &Counters) {
        if accepted_before & self.wake_mask == 0 {
            let len = self.records.len();
            counters.high_water_mark.fetch_max(len, Ordering::Relaxed);
            // Waking a thread is a system call on the caller: leave it to the drain thread's
            // timer unless records pile up faster than the timer takes them.
            if len >= self.wake_depth && self.drain_sleeping.load(Ordering::Relaxed) {
                self.wake_drain();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::{SamplingSettings, TracesSampler};

    fn intake(capacity: usize) -> Intake {
        Intake::new(
            Queue::new(capacity, 1, 1),
            Counters::new(Vec::new()),
            Sampler::new(SamplingSettings {
                rate: 1.0,
                traces: TracesSampler::AlwaysOn,
                whitelist: Vec::new(),
                adaptive: false,
                keep_errors: false,
                events_follow_traces: false,
                seed: None,
            }),
            capacity,
        )
    }

    /// A `Block` call waits for room once against one deadline: a call whose admission waited
    /// for room, then found the room taken by another producer when it pushed, waited a whole
    /// timeout again (twice its timeout in all: adversary pass 49). What admission hands on is
    /// what is left of the call's timeout.
    #[test]
    fn a_block_call_keeps_one_deadline_from_admission_to_push() {
        let intake = Arc::new(intake(1));
        intake.push(Backpressure::DropNewest, Captured::Event(Box::default()));
        assert!(intake.queue.is_full());
        let waited = Duration::from_millis(200);
        let timeout = Duration::from_secs(60);
        let started = Instant::now();
        let taker = std::thread::spawn({
            let intake = Arc::clone(&intake);
            move || {
                // Makes room once the call has waited `waited`.
                while started.elapsed() < waited {
                    std::thread::park_timeout(waited.saturating_sub(started.elapsed()));
                }
                intake.queue.pop()
            }
        });
        // The call starts after the thread (a loaded machine takes milliseconds to start one),
        // and the room comes `waited` after `started`: the call waited at least the difference.
        let called = Instant::now();
        let admitted = intake.admit(Backpressure::Block { timeout });
        let in_call = called.elapsed();
        let waited_at_least = waited.saturating_sub(called - started);
        assert!(taker.join().unwrap().is_some());
        match admitted {
            Admission::Push(Backpressure::Block { timeout: left }) => assert!(
                left <= timeout - waited_at_least && left + in_call >= timeout,
                "{left:?} left of {timeout:?} after a call of {in_call:?} that waited at least \
                 {waited_at_least:?}"
            ),
            other => panic!("{other:?}"),
        }
    }
}
