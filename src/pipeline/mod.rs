//! The private engine: the queue between the layer and the crate's threads, the drain thread,
//! one thread per sink, and the flush and shutdown protocol.
//!
//! | file | owns |
//! |---|---|
//! | `queue.rs` | the [`Intake`] the layer pushes into: the `ArrayQueue`, back-pressure, counters, sampler, the closed flag |
//! | `notify.rs` | waiting with a deadline for a condition another thread makes true (loom-checked) |
//! | `drain.rs` | the `offload-drain` thread: pops batches and hands them to every sink's buffer |
//! | `tail.rs` | tail sampling on the drain thread: holds local traces until their local root, keeps or drops them whole |
//! | `sink_thread.rs` | one `offload-sink-<name>` thread per sink: exports, counts, flushes, markers |
//! | `mod.rs` | [`Pipeline`]: starting the threads, stats, flush and shutdown |
//! | `spawn_failure_tests.rs` | unit tests: a build whose thread cannot start leaves nothing behind |
//!
//! The drain thread is a small loop: wait for records (woken by producers every few records,
//! or by its timer), pop a batch, hand each record to every sink's buffer (an `Arc` bump, never
//! a copy; a full sink buffer counts a drop for that sink only), and repeat. It never blocks on
//! a sink. With tail sampling on, the records of sampled local traces wait on the drain thread
//! between the pop and the hand-over, until their trace is decided (`tail.rs`). Each sink thread pops batches from its buffer, exports them, counts the outcome,
//! and flushes when its buffer runs dry.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

pub(crate) mod drain;
pub(crate) mod notify;
pub(crate) mod queue;
pub(crate) mod sink_thread;
pub(crate) mod tail;

use self::notify::Notify;
pub(crate) use self::queue::{Flag, Intake};
use crate::clock::deadline_after;
use crate::record::{Captured, DropReason, Record};
use crate::sink::{AwaitingDelivery, Sink};
use crate::stats::SinkCounters;
use crate::tail_sampling::TailControl;

/// Settings the threads need, fixed at build time.
#[derive(Debug, Clone)]
pub(crate) struct PipelineSettings {
    pub(crate) batch_size: usize,
    pub(crate) flush_interval: Duration,
    /// The policy is `Block`: the drain waits for a sink that is moving rather than drop.
    pub(crate) block: bool,
    /// How long a full sink may go without finishing an export before it is stalled, and no
    /// longer holds the others back.
    pub(crate) sink_stall_after: Duration,
    /// Under `Backpressure::DropOldest`, a full sink buffer evicts its oldest record.
    pub(crate) sink_evict_oldest: bool,
    /// Events kept per span for sinks that want span events; `None` when none does.
    pub(crate) span_event_limit: Option<usize>,
}

/// A sink on its way to its thread (see [`Pipeline::spawn`]).
type Handoff = Arc<Mutex<Option<Box<dyn Sink>>>>;

/// Why [`Pipeline::spawn`] failed: the thread that could not start, the system's error, and
/// every sink, untouched and in order, to be [abandoned](Sink::abandon).
pub(crate) struct SpawnFailed {
    pub(crate) thread: String,
    pub(crate) source: std::io::Error,
    pub(crate) sinks: Vec<Box<dyn Sink>>,
}

/// One sink as the drain thread sees it.
#[derive(Debug)]
pub(crate) struct SinkSlot {
    pub(crate) buffer: ArrayQueue<Record>,
    pub(crate) counters: Arc<SinkCounters>,
    thread: OnceLock<thread::Thread>,
    sleeping: AtomicBool,
    /// Set once the drain thread has exited: the sink finishes its buffer and stops.
    stop: Flag,
    finished: Flag,
    /// Set by shutdown when its deadline passed: the sink thread no longer counts outcomes,
    /// and writes no more.
    abandoned: Flag,
    /// Held while the drain thread hands a batch over and while shutdown gives up on the sink,
    /// so that every record forwarded is counted by exactly one of them.
    handover: std::sync::Mutex<()>,
    /// What the sink counted exported and has yet to deliver ([`Sink::awaiting_delivery`]):
    /// counted lost when the pipeline gives up on the sink.
    ///
    /// [`Sink::awaiting_delivery`]: crate::sink::Sink::awaiting_delivery
    pub(crate) awaiting: Option<Arc<AwaitingDelivery>>,
}

impl SinkSlot {
    pub(crate) fn new(
        counters: Arc<SinkCounters>,
        capacity: usize,
        awaiting: Option<Arc<AwaitingDelivery>>,
    ) -> Self {
        SinkSlot {
            awaiting,
            buffer: ArrayQueue::new(capacity.max(1)),
            counters,
            thread: Default::default(),
            sleeping: AtomicBool::new(false),
            stop: Flag::default(),
            finished: Flag::default(),
            abandoned: Flag::default(),
            handover: std::sync::Mutex::new(()),
        }
    }

    /// Counts what the sink had yet to deliver as lost after export: the pipeline gave up on
    /// it (or it stopped).
    pub(crate) fn close_awaiting(&self) {
        if let Some(a) = &self.awaiting {
            self.counters.add_lost_after_export(a.close());
        }
    }

    fn wake(&self) {
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }
}

/// The threads' side of a pipeline, shared with the handles: the [`Intake`] (shared with the
/// layer too), the sinks' slots, and the state of flush and shutdown.
#[derive(Debug)]
pub(crate) struct Pipeline {
    /// See [`id`](Self::id).
    id: usize,
    pub(crate) intake: Arc<Intake>,
    pub(crate) sinks: Vec<Arc<SinkSlot>>,
    pub(crate) settings: PipelineSettings,
    /// Tail sampling's settings in force (the drain thread applies them).
    pub(crate) tail: TailControl,
    /// The drain thread exits once this is set and the queue is empty.
    stop_drain: Flag,
    /// Flush and shutdown wait here; the drain and sink threads notify after each batch.
    pub(crate) progress: Notify,
    /// The threads, each with the index of its sink (`None` for the drain thread).
    threads: Mutex<Vec<(Option<usize>, JoinHandle<()>)>>,
    /// Whether a shutdown has begun: the first caller does it, later ones wait for it (each up
    /// to its own deadline). Taken under `shutdown_report`'s lock.
    shutdown_begun: Flag,
    /// The first shutdown's report, once it has finished (`progress` is notified then).
    shutdown_report: Mutex<Option<ShutdownReport>>,
    /// What the first shutdown call returned, for the calls that waited for it.
    shutdown_outcome: Mutex<Option<Result<ShutdownReport, FlushError>>>,
    /// The shutdown's deadline, which the sinks' own `shutdown` calls get too.
    shutdown_deadline: OnceLock<Instant>,
    /// The records the drain thread held and dropped when the shutdown's deadline passed. It
    /// counts them and empties its gauges under this lock, which the shutdown's report takes
    /// to read both: a drain thread done with them before the report looked had emptied the
    /// gauges, and the shutdown returned `Ok` with nothing abandoned (adversary pass 30).
    pub(crate) held_abandoned: Mutex<u64>,
}

/// What a [`flush`](crate::Handle::flush) or [`shutdown`](crate::Guard::shutdown) left undone.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pending {
    /// Records still in the queue.
    pub queued: u64,
    /// Records the drain thread holds: tail sampling's undecided local traces, and decided
    /// ones waiting for room in the sinks' buffers. A flush does not wait for the undecided
    /// ones (their local root is still open); a shutdown decides them.
    pub held: u64,
    /// Records handed to sinks and not yet exported, failed or dropped, per sink name.
    pub per_sink: Vec<(String, u64)>,
}

impl Pending {
    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.queued == 0 && self.held == 0 && self.per_sink.iter().all(|(_, n)| *n == 0)
    }

    /// Records left in the queue, on the drain thread and in all sinks.
    pub fn total(&self) -> u64 {
        self.queued + self.held + self.per_sink.iter().map(|(_, n)| n).sum::<u64>()
    }
}

/// The drain thread's name.
pub(crate) const DRAIN_THREAD: &str = "offload-drain";

/// The outcome of a completed shutdown.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShutdownReport {
    /// How long the shutdown took.
    pub elapsed: Duration,
    /// What the deadline cut off; empty when everything was flushed. These records are counted
    /// as dropped with reason `shutdown_deadline`: those `queued` and `held` in the pipeline's
    /// [`Stats::dropped_by_reason`](crate::Stats::dropped_by_reason), those of `per_sink` in
    /// each sink's [`SinkStats::dropped_by_reason`](crate::SinkStats::dropped_by_reason).
    ///
    /// Exact when every thread finished (`unfinished_threads` empty). With the drain thread
    /// still running, it is what was known when the call returned: what that thread held then
    /// (records taken from the queue, in a batch it was handing over) is counted as dropped
    /// (`shutdown_deadline`) in the stats as it lets go of it, or delivered.
    pub abandoned: Pending,
    /// Threads that had not finished by the deadline (left running, detached).
    pub unfinished_threads: Vec<String>,
}

/// Errors from [`Handle::flush`](crate::Handle::flush) and
/// [`Guard::shutdown`](crate::Guard::shutdown).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlushError {
    /// The deadline passed with records still on their way.
    #[error("deadline passed with {} records not yet written ({pending:?})", pending.total())]
    Timeout {
        /// What was left.
        pending: Pending,
    },
    /// Called on one of the pipeline's own threads (its drain, or a sink's `export`), it would
    /// wait for that thread itself: refused at once, nothing done.
    #[error(
        "flush or shutdown called on one of the pipeline's own threads (inside one of its \
         sinks?): it would wait for itself; refused"
    )]
    OnPipelineThread,
    /// Called in a child process forked after the pipeline was built: the pipeline's threads,
    /// and the records they had, are the parent's. Nothing done (see the README's `fork()`).
    #[error(
        "flush or shutdown called in a child process forked after the pipeline was built: its \
         threads and records are in the parent; nothing done"
    )]
    ForkedChild,
    /// Shutdown finished but could not flush everything by the deadline, or the pipeline's
    /// threads had not ended by then (`report.abandoned` empty: no record was abandoned, but a
    /// sink still running its last calls, a file's sync say, may not have finished them).
    #[error("{}", abandoned_message(report))]
    Abandoned {
        /// The full report.
        report: ShutdownReport,
    },
}

/// [`FlushError::Abandoned`]'s text: what was abandoned, or that nothing was (adversary pass
/// 65: "abandoned 0 records" read as a loss).
fn abandoned_message(report: &ShutdownReport) -> String {
    let threads = report.unfinished_threads.join(", ");
    if !report.abandoned.is_empty() {
        return format!(
            "shutdown abandoned {} records ({:?}); unfinished threads: {:?}",
            report.abandoned.total(),
            report.abandoned,
            report.unfinished_threads
        );
    }
    if report.unfinished_threads.iter().any(|t| t == DRAIN_THREAD) {
        format!(
            "shutdown's deadline passed while the pipeline's threads still ran ({threads}): \
             nothing was known abandoned; what the drain thread held is counted as dropped \
             (shutdown_deadline) in the stats as it lets go of it"
        )
    } else {
        format!(
            "shutdown's deadline passed while sink threads still ran ({threads}): every \
             record was written or counted, but their last calls may not have finished"
        )
    }
}

// === impl Pipeline ===

impl Pipeline {
    /// This pipeline's identity for the threads that serve it: a number no other pipeline of
    /// the process has. (Its address was one, but a thread keeps the identity while its
    /// thread-local values drop, after the pipeline may be gone and another built there.)
    pub(crate) fn id(&self) -> usize {
        self.id
    }

    pub(crate) fn new(
        intake: Arc<Intake>,
        sinks: Vec<Arc<SinkSlot>>,
        settings: PipelineSettings,
        tail: TailControl,
    ) -> Self {
        /// The identity of the next pipeline (0 is no pipeline's: see `silent::serves`).
        static NEXT_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
        Pipeline {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            intake,
            sinks,
            settings,
            tail,
            stop_drain: Flag::default(),
            progress: Notify::default(),
            threads: Mutex::new(Vec::new()),
            shutdown_begun: Flag::default(),
            shutdown_report: Mutex::new(None),
            shutdown_outcome: Mutex::new(None),
            shutdown_deadline: OnceLock::new(),
            held_abandoned: Mutex::new(0),
        }
    }

    /// Starts one thread per sink, then the drain thread. If a thread cannot be started, the
    /// sinks are given back untouched, in order, for the builder to
    /// [abandon](Sink::abandon), and the threads already started have ended.
    ///
    /// A sink thread takes its sink only once every thread has started: until then, this
    /// holds the lock of each sink's hand-off, which the sink thread waits for. When a thread
    /// cannot start, the sinks are taken back from their hand-offs under those locks, so the
    /// sink threads already started find none and end at once, having run none of the sink's
    /// code (no flush, no `shutdown`, which would keep a file sink's new file): joining them
    /// cannot hang.
    pub(crate) fn spawn(self: &Arc<Self>, sinks: Vec<Box<dyn Sink>>) -> Result<(), SpawnFailed> {
        let handoffs: Vec<Handoff> = sinks
            .into_iter()
            .map(|sink| Arc::new(Mutex::new(Some(sink))))
            .collect();
        let mut held: Vec<_> = handoffs.iter().map(|h| lock(h)).collect();
        let mut handles = Vec::with_capacity(handoffs.len() + 1);
        match self.spawn_into(&handoffs, &mut handles) {
            Ok(()) => {
                *lock(&self.threads) = handles;
                drop(held);
                Ok(())
            }
            Err((thread, source)) => {
                let sinks = held.iter_mut().filter_map(|sink| sink.take()).collect();
                drop(held);
                for (_, handle) in handles {
                    let _ = handle.join();
                }
                Err(SpawnFailed {
                    thread,
                    source,
                    sinks,
                })
            }
        }
    }

    /// Starts the threads; on failure, the name of the thread that could not start.
    fn spawn_into(
        self: &Arc<Self>,
        handoffs: &[Handoff],
        handles: &mut Vec<(Option<usize>, JoinHandle<()>)>,
    ) -> Result<(), (String, std::io::Error)> {
        for (i, (handoff, slot)) in handoffs.iter().zip(&self.sinks).enumerate() {
            let pipeline = Arc::clone(self);
            let slot = Arc::clone(slot);
            let handoff = Arc::clone(handoff);
            let name = format!("offload-sink-{}", slot.counters.name);
            let handle = spawn_thread(thread::Builder::new().name(name.clone()), move || {
                // Waits until every thread has started (see `spawn`); no sink: one could not.
                let sink = lock(&handoff).take();
                if let Some(sink) = sink {
                    sink_thread::run(pipeline, slot, sink);
                }
            })
            .map_err(|e| (name, e))?;
            let _ = self.sinks[i].thread.set(handle.thread().clone());
            handles.push((Some(i), handle));
        }
        let pipeline = Arc::clone(self);
        let name = DRAIN_THREAD;
        let drain = spawn_thread(thread::Builder::new().name(name.into()), move || {
            drain::run(pipeline)
        })
        .map_err(|e| (name.to_owned(), e))?;
        self.intake.queue.set_drain_thread(drain.thread().clone());
        handles.push((None, drain));
        Ok(())
    }

    /// A snapshot of every counter, with the queue's and the sink buffers' current lengths.
    pub(crate) fn stats(&self) -> crate::stats::Stats {
        let mut stats = self
            .intake
            .counters
            .snapshot(self.intake.queue.len(), self.intake.queue.capacity());
        for (s, slot) in stats.sinks.iter_mut().zip(&self.sinks) {
            // A sink given up on at the shutdown deadline: what is left in its buffer was
            // counted dropped (`shutdown_deadline`), not waiting (adversary pass 54).
            s.buffered = if slot.abandoned.is_set() {
                0
            } else {
                slot.buffer.len()
            };
        }
        let counters = &self.intake.counters;
        let mut sampling = self.intake.sampler.stats();
        sampling.events_sampled_out = counters.sampled_out.get();
        sampling.spans_sampled_out = counters.spans_sampled_out.get();
        sampling.kept_fraction = crate::sampling::kept_fraction(stats.offered, stats.sampled_out);
        stats.sampling = Some(sampling);
        stats.tail_sampling.settings = self.tail.get();
        stats
    }

    /// What is still on its way: records in the queue and, per sink, handed over but not done.
    pub(crate) fn pending(&self) -> Pending {
        Pending {
            queued: self.intake.queue.len() as u64,
            held: self.intake.counters.tail.held_by_drain(),
            per_sink: self
                .sinks
                .iter()
                .map(|s| {
                    let c = &s.counters;
                    (
                        c.name.clone(),
                        c.forwarded.get().saturating_sub(c.completed()),
                    )
                })
                .collect(),
        }
    }

    /// Waits until every record accepted before the call has been exported, failed or dropped
    /// by every sink, or until `deadline`. Records tail sampling holds for a local trace still
    /// undecided are not waited for; those of traces decided before the call (or decided by
    /// the records it waits for: their local roots) are.
    pub(crate) fn flush_until(&self, deadline: Instant) -> Result<(), FlushError> {
        if self.intake.forked() {
            // Nothing of the parent's: not its locks, which its threads may have held at the
            // fork, nor its queue (adversary pass 59: flush and shutdown hung in a child).
            return Err(FlushError::ForkedChild);
        }
        let counters = &self.intake.counters;
        let target = counters.accepted.get();
        // Acquire: pairs with the drain thread's Release in publishing its backlog.
        let gauges = &counters.tail.gauges;
        let released = gauges.backlog_pushed.load(Ordering::Acquire);
        self.intake.queue.wake_drain();
        let drained = self.progress.wait_until(deadline, || {
            (counters.settled.get() + counters.evicted() >= target
                && gauges.backlog_taken.load(Ordering::Acquire) >= released)
                || self.intake.drain_finished.is_set()
        });
        if drained {
            let targets: Vec<u64> = self
                .sinks
                .iter()
                .map(|s| s.counters.forwarded.get())
                .collect();
            for s in &self.sinks {
                s.wake();
            }
            let done = self.progress.wait_until(deadline, || {
                self.sinks
                    .iter()
                    .zip(&targets)
                    .all(|(s, t)| s.counters.completed() >= *t || s.finished.is_set())
            });
            if done {
                return Ok(());
            }
        }
        Err(FlushError::Timeout {
            pending: self.pending(),
        })
    }

    /// Closes the queue, flushes, stops the threads; idempotent (later calls, and those that
    /// waited for the first, return its outcome).
    pub(crate) fn shutdown(&self, timeout: Duration) -> Result<ShutdownReport, FlushError> {
        if self.intake.forked() {
            // As `flush_until`: in a forked child there is nothing of ours to stop.
            return Err(FlushError::ForkedChild);
        }
        let started = Instant::now();
        let deadline = deadline_after(timeout);
        {
            // Held only to decide who shuts down, never during a shutdown: a concurrent call
            // waits for the first one up to its own deadline, not up to the first one's.
            // A later call gets the first call's outcome at once, as one made during it does
            // when it ends (adversary pass 66: `main`'s shutdown after a signal handler's that
            // cut records off returned `Ok`).
            let report_slot = self.lock_shutdown_report();
            if report_slot.is_some() || self.shutdown_begun.is_set() {
                drop(report_slot);
                return self.wait_for_shutdown(deadline);
            }
            self.shutdown_begun.set();
        }
        let report = self.shut_down(started, deadline);
        let outcome = if report.abandoned.is_empty() && report.unfinished_threads.is_empty() {
            Ok(report.clone())
        } else {
            Err(FlushError::Abandoned {
                report: report.clone(),
            })
        };
        *self.lock_shutdown_outcome() = Some(outcome.clone());
        *self.lock_shutdown_report() = Some(report);
        self.progress.notify();
        outcome
    }

    fn lock_shutdown_outcome(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<Result<ShutdownReport, FlushError>>> {
        self.shutdown_outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn lock_shutdown_report(&self) -> std::sync::MutexGuard<'_, Option<ShutdownReport>> {
        self.shutdown_report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Waits, up to `deadline`, for the shutdown another call is doing, and returns its
    /// outcome: a caller that waited for it is told what it abandoned (adversary pass 65:
    /// `main`'s shutdown, waiting for a signal handler's that cut records off, returned `Ok`
    /// with nothing abandoned).
    fn wait_for_shutdown(&self, deadline: Instant) -> Result<ShutdownReport, FlushError> {
        self.progress
            .wait_until(deadline, || self.lock_shutdown_outcome().is_some());
        match self.lock_shutdown_outcome().as_ref() {
            Some(outcome) => outcome.clone(),
            None => Err(FlushError::Timeout {
                pending: self.pending(),
            }),
        }
    }

    /// Tells the pipeline to stop, without waiting for it (a guard dropped on one of the
    /// pipeline's own threads, when no thread can be started to wait): records are refused
    /// from now on; the drain thread drops what it holds past `timeout`, the rest is written,
    /// and the threads end. A later [`shutdown`](Self::shutdown) from another thread waits for
    /// them as usual.
    pub(crate) fn stop_without_waiting(&self, timeout: Duration) {
        let _ = self.shutdown_deadline.set(deadline_after(timeout));
        self.intake.closed.set();
        self.stop_drain.set();
        self.intake.queue.wake_drain();
        self.intake.queue.room.notify();
    }

    /// The shutdown itself, done by the first call.
    fn shut_down(&self, started: Instant, deadline: Instant) -> ShutdownReport {
        let _ = self.shutdown_deadline.set(deadline);
        self.intake.closed.set();
        self.stop_drain.set();
        self.intake.queue.wake_drain();
        self.intake.queue.room.notify();
        let _ = self.progress.wait_until(deadline, || {
            self.intake.drain_finished.is_set() && self.sinks.iter().all(|s| s.finished.is_set())
        });
        let (mut abandoned, taken) = self.abandon_unfinished();
        let mut unfinished_threads = Vec::new();
        let handles = std::mem::take(&mut *lock(&self.threads));
        let mut done = Vec::new();
        for (sink, handle) in handles {
            let finished = match sink {
                None => &self.intake.drain_finished,
                Some(i) => &self.sinks[i].finished,
            };
            if finished.is_set() {
                done.push(handle);
            } else {
                let name = handle.thread().name().unwrap_or("offload").to_owned();
                unfinished_threads.push(name);
            }
        }
        finish_elsewhere(done, taken, deadline);
        if self.intake.drain_finished.is_set() {
            // The drain thread is done: what it dropped at the deadline, and what it handed to
            // a sink after the sink was given up on, are final now. (Read before, they were a
            // guess: a batch it handed over meanwhile was in neither, or in both.)
            abandoned.held = *lock(&self.held_abandoned);
            for (slot, (_, n)) in self.sinks.iter().zip(&mut abandoned.per_sink) {
                *n = slot.counters.dropped.get(DropReason::ShutdownDeadline);
            }
        }
        ShutdownReport {
            elapsed: started.elapsed(),
            abandoned,
            unfinished_threads,
        }
    }

    /// After the shutdown deadline: counts whatever has not reached its end as dropped with
    /// reason `shutdown_deadline`, so the per-sink accounting still adds up. What the drain
    /// thread holds is counted by the drain thread itself when it sees the deadline passed.
    /// Returns the records taken out of the queue, for another thread to free: freeing a
    /// million of them took 200 ms, past a deadline of zero (adversary pass 31).
    fn abandon_unfinished(&self) -> (Pending, Vec<Captured>) {
        // Before emptying the queue: a producer that pushes after this sees it and takes its
        // record back out (see `Intake::after_push`); callers waiting for room stop waiting.
        self.intake.gave_up.set();
        self.intake.queue.room.notify();
        let mut taken = Vec::with_capacity(self.intake.queue.len());
        while let Some(r) = self.intake.queue.pop() {
            taken.push(r);
        }
        let queued = taken.len() as u64;
        self.intake
            .counters
            .dropped
            .add(DropReason::ShutdownDeadline, queued);
        // What the drain thread holds, before the sinks are marked abandoned: a batch it hands
        // over meanwhile is then in a sink's count, not in neither.
        let held = {
            let abandoned = lock(&self.held_abandoned);
            *abandoned + self.intake.counters.tail.held_by_drain()
        };
        let mut per_sink = Vec::new();
        for s in &self.sinks {
            if s.finished.is_set() {
                per_sink.push((s.counters.name.clone(), 0));
                continue;
            }
            let _handover = s.handover.lock().unwrap_or_else(|e| e.into_inner());
            s.abandoned.set();
            let c = &s.counters;
            // Records it counted exported and had yet to deliver reach nobody now.
            s.close_awaiting();
            let left = c.forwarded.get().saturating_sub(c.completed());
            c.dropped.add(DropReason::ShutdownDeadline, left);
            per_sink.push((c.name.clone(), left));
        }
        let pending = Pending {
            queued,
            held,
            per_sink,
        };
        (pending, taken)
    }

    pub(crate) fn drain_alive(&self) -> bool {
        // In a forked child the drain thread is the parent's (adversary pass 58).
        !self.intake.drain_finished.is_set() && !self.intake.forked()
    }

    /// The deadline a sink's own `shutdown` gets: the pipeline's shutdown deadline (sinks stop
    /// only after a shutdown began; otherwise at once).
    pub(crate) fn sink_shutdown_deadline(&self) -> Instant {
        self.shutdown_deadline
            .get()
            .copied()
            .unwrap_or_else(Instant::now)
    }
}

/// Joins threads that have done their work, waiting no later than `deadline`, and frees the
/// records a shutdown abandoned, without waiting. A thread's thread-local values are dropped
/// after its work is done, and a join waits for them (a sink's `Drop` of a value it kept in a
/// `thread_local!`, closing a connection say, held a shutdown three seconds past its deadline:
/// adversary pass 32). A thread of its own does both; the threads not joined by the deadline
/// are left to it.
fn finish_elsewhere(threads: Vec<JoinHandle<()>>, abandoned: Vec<Captured>, deadline: Instant) {
    if threads.is_empty() && abandoned.is_empty() {
        return;
    }
    let (joined, all_joined) = std::sync::mpsc::channel();
    let joiner = std::thread::Builder::new()
        .name("offload-join".into())
        .spawn(move || {
            for thread in threads {
                let _ = thread.join();
            }
            let _ = joined.send(());
            drop(abandoned);
        });
    if joiner.is_ok() {
        let _ = all_joined.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
    // Without a thread, the threads are detached (their work is done) and the records were
    // freed here, with the closure that could not be started.
}

/// Locks `m`, poisoned or not.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts one of the crate's own threads (a sink's, the drain, the admin endpoint's): `builder`
/// spawns `f`. Unit tests can make it fail, as the system does when it is out of threads or
/// memory (see [`spawn_seam`]).
pub(crate) fn spawn_thread<F, T>(builder: thread::Builder, f: F) -> std::io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    #[cfg(test)]
    spawn_seam::check()?;
    builder.spawn(f)
}

/// Failing a thread's start on purpose: `std::thread::Builder::spawn` cannot be made to fail for
/// real in a test (a process run as root ignores `RLIMIT_NPROC`).
#[cfg(test)]
pub(crate) mod spawn_seam {
    use std::cell::Cell;

    thread_local! {
        /// The spawn (counted from 0) that fails, and how many [`spawn_thread`](super::spawn_thread)
        /// started on this thread since [`fail_spawn`] was called.
        static SEAM: Cell<Option<(usize, usize)>> = const { Cell::new(None) };
    }

    /// Makes the `n`th (from 0) thread that this thread starts through
    /// [`spawn_thread`](super::spawn_thread) from now on fail to start; those before it start.
    pub(crate) fn fail_spawn(n: usize) {
        SEAM.set(Some((n, 0)));
    }

    /// The error of a thread that could not start, when this one is to fail.
    pub(super) fn check() -> std::io::Result<()> {
        let Some((fail_at, started)) = SEAM.get() else {
            return Ok(());
        };
        if started == fail_at {
            SEAM.set(None);
            return Err(std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                "Resource temporarily unavailable (injected by a test)",
            ));
        }
        SEAM.set(Some((fail_at, started + 1)));
        Ok(())
    }
}

#[cfg(test)]
mod spawn_failure_tests;
