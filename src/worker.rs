//! The crate's threads: the drain thread and one thread per sink, plus the flush and shutdown
//! protocol.
//!
//! The drain thread is a small loop: wait for records (woken by producers every few records,
//! or by its timer), pop a batch, hand each record to every sink's buffer (an `Arc` bump, never
//! a copy; a full sink buffer counts a drop for that sink only), and repeat. It never blocks on
//! a sink. Each sink thread pops batches from its buffer, exports them, counts the outcome,
//! and flushes when its buffer runs dry.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_queue::ArrayQueue;

use crate::queue::{Flag, Notify, Queue};
use crate::record::{DropNotice, DropReason, Record};
use crate::silent::without_tracing;
use crate::sink::Sink;
use crate::stats::{Counters, SinkCounters};

/// Settings the threads need, fixed at build time.
#[derive(Debug, Clone)]
pub(crate) struct WorkerSettings {
    pub(crate) batch_size: usize,
    pub(crate) flush_interval: Duration,
    /// Under `Backpressure::Block { timeout }`, how long (`timeout / 2`) the drain thread waits
    /// for room in a stalled sink's buffer before dropping into it. `None`: never wait.
    pub(crate) sink_wait: Option<Duration>,
    /// Under `Backpressure::DropOldest`, a full sink buffer evicts its oldest record.
    pub(crate) sink_evict_oldest: bool,
}

/// One sink as the drain thread sees it.
#[derive(Debug)]
pub(crate) struct SinkSlot {
    pub(crate) buffer: ArrayQueue<Record>,
    pub(crate) counters: Arc<SinkCounters>,
    thread: std::sync::OnceLock<thread::Thread>,
    sleeping: AtomicBool,
    /// Set once the drain thread has exited: the sink finishes its buffer and stops.
    stop: Flag,
    finished: Flag,
    /// Set by shutdown when its deadline passed: the sink thread no longer counts outcomes.
    abandoned: Flag,
}

impl SinkSlot {
    pub(crate) fn new(counters: Arc<SinkCounters>, capacity: usize) -> Self {
        SinkSlot {
            buffer: ArrayQueue::new(capacity.max(1)),
            counters,
            thread: Default::default(),
            sleeping: AtomicBool::new(false),
            stop: Flag::default(),
            finished: Flag::default(),
            abandoned: Flag::default(),
        }
    }

    fn wake(&self) {
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }
}

/// Everything the layer, the threads and the handles share.
#[derive(Debug)]
pub(crate) struct Pipeline {
    pub(crate) queue: Queue,
    pub(crate) counters: Counters,
    pub(crate) sampler: crate::sampling::Sampler,
    pub(crate) sinks: Vec<Arc<SinkSlot>>,
    pub(crate) settings: WorkerSettings,
    /// No record is accepted once this is set.
    pub(crate) closed: Flag,
    /// Set by the guard's `Drop` (unless told to be quiet) before it closes the pipeline: the
    /// records offered afterwards are lost because the guard was dropped.
    pub(crate) closed_by_guard_drop: Flag,
    /// Whether the line about a dropped guard was printed (once per pipeline).
    guard_drop_notice_printed: AtomicBool,
    /// The drain thread exits once this is set and the queue is empty.
    stop_drain: Flag,
    drain_finished: Flag,
    /// Flush and shutdown wait here; the drain and sink threads notify after each batch.
    pub(crate) progress: Notify,
    /// The threads, each with the index of its sink (`None` for the drain thread).
    threads: Mutex<Vec<(Option<usize>, JoinHandle<()>)>>,
    shutdown_report: Mutex<Option<ShutdownReport>>,
}

/// What a [`flush`](crate::Handle::flush) or [`shutdown`](crate::Guard::shutdown) left undone.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pending {
    /// Records still in the queue.
    pub queued: u64,
    /// Records handed to sinks and not yet exported, failed or dropped, per sink name.
    pub per_sink: Vec<(String, u64)>,
}

impl Pending {
    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.queued == 0 && self.per_sink.iter().all(|(_, n)| *n == 0)
    }

    /// Records left in the queue and in all sinks.
    pub fn total(&self) -> u64 {
        self.queued + self.per_sink.iter().map(|(_, n)| n).sum::<u64>()
    }
}

/// The outcome of a completed shutdown.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShutdownReport {
    /// How long the shutdown took.
    pub elapsed: Duration,
    /// What the deadline cut off; empty when everything was flushed. These records are counted
    /// as dropped with reason `shutdown_deadline` in the sinks' stats.
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
    /// Shutdown finished but could not flush everything by the deadline.
    #[error("shutdown abandoned {} records ({:?}); unfinished threads: {:?}", report.abandoned.total(), report.abandoned, report.unfinished_threads)]
    Abandoned {
        /// The full report.
        report: ShutdownReport,
    },
}

// === impl Pipeline ===

impl Pipeline {
    pub(crate) fn new(
        queue: Queue,
        counters: Counters,
        sampler: crate::sampling::Sampler,
        sinks: Vec<Arc<SinkSlot>>,
        settings: WorkerSettings,
    ) -> Self {
        Pipeline {
            queue,
            counters,
            sampler,
            sinks,
            settings,
            closed: Flag::default(),
            closed_by_guard_drop: Flag::default(),
            guard_drop_notice_printed: AtomicBool::new(false),
            stop_drain: Flag::default(),
            drain_finished: Flag::default(),
            progress: Notify::default(),
            threads: Mutex::new(Vec::new()),
            shutdown_report: Mutex::new(None),
        }
    }

    /// Starts the drain thread and one thread per sink. If a thread cannot be started, the
    /// ones already running are stopped.
    pub(crate) fn spawn(self: &Arc<Self>, sinks: Vec<Box<dyn Sink>>) -> Result<(), std::io::Error> {
        let mut handles = Vec::with_capacity(sinks.len() + 1);
        let result = self.spawn_into(sinks, &mut handles);
        *self.threads.lock().unwrap_or_else(|e| e.into_inner()) = handles;
        if result.is_err() {
            for s in &self.sinks {
                s.stop.set();
                s.wake();
            }
        }
        result
    }

    fn spawn_into(
        self: &Arc<Self>,
        sinks: Vec<Box<dyn Sink>>,
        handles: &mut Vec<(Option<usize>, JoinHandle<()>)>,
    ) -> Result<(), std::io::Error> {
        for (i, (sink, slot)) in sinks.into_iter().zip(self.sinks.iter()).enumerate() {
            let pipeline = Arc::clone(self);
            let slot = Arc::clone(slot);
            let name = format!("offload-sink-{}", slot.counters.name);
            let handle = thread::Builder::new()
                .name(name)
                .spawn(move || run_sink(pipeline, slot, sink))?;
            let _ = self.sinks[i].thread.set(handle.thread().clone());
            handles.push((Some(i), handle));
        }
        let pipeline = Arc::clone(self);
        let drain = thread::Builder::new()
            .name("offload-drain".into())
            .spawn(move || run_drain(pipeline))?;
        self.queue.set_drain_thread(drain.thread().clone());
        handles.push((None, drain));
        Ok(())
    }

    /// A snapshot of every counter, with the queue's and the sink buffers' current lengths.
    pub(crate) fn stats(&self) -> crate::stats::Stats {
        let mut stats = self
            .counters
            .snapshot(self.queue.len(), self.queue.capacity());
        for (s, slot) in stats.sinks.iter_mut().zip(&self.sinks) {
            s.buffered = slot.buffer.len();
        }
        let mut sampling = self.sampler.stats(&self.counters);
        sampling.kept_fraction = crate::sampling::kept_fraction(stats.offered, stats.sampled_out);
        stats.sampling = Some(sampling);
        stats
    }

    /// What is still on its way: records in the queue and, per sink, handed over but not done.
    pub(crate) fn pending(&self) -> Pending {
        Pending {
            queued: self.queue.len() as u64,
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
    /// by every sink, or until `deadline`.
    pub(crate) fn flush_until(&self, deadline: Instant) -> Result<(), FlushError> {
        let target = self.counters.accepted.get();
        self.queue.wake_drain();
        let drained = self.progress.wait_until(deadline, || {
            self.counters.drained.get() + self.counters.evicted() >= target
                || self.drain_finished.is_set()
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
            eprintln!(
                "tracing-offload: a record was lost: the pipeline shut down when its Guard was \
                 dropped, and every later record is dropped too (counted as `shutdown`). Keep \
                 the guard alive for as long as the program logs: bind it to a name, e.g. \
                 `let _guard = tracing_offload::init()?;` in `main`, not `let _ = …`."
            );
        }
    }

    /// Closes the queue, flushes, stops the threads; idempotent (later calls return the first
    /// report).
    pub(crate) fn shutdown(&self, timeout: Duration) -> Result<ShutdownReport, FlushError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut report_slot = self
            .shutdown_report
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(report) = report_slot.as_ref() {
            return Ok(ShutdownReport {
                elapsed: Duration::ZERO,
                abandoned: Pending::default(),
                unfinished_threads: report.unfinished_threads.clone(),
            });
        }
        self.closed.set();
        self.stop_drain.set();
        self.queue.wake_drain();
        self.queue.room.notify();
        let _ = self.progress.wait_until(deadline, || {
            self.drain_finished.is_set() && self.sinks.iter().all(|s| s.finished.is_set())
        });
        let abandoned = self.abandon_unfinished();
        let mut unfinished_threads = Vec::new();
        let handles = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for (sink, handle) in handles {
            let finished = match sink {
                None => &self.drain_finished,
                Some(i) => &self.sinks[i].finished,
            };
            if finished.is_set() {
                let _ = handle.join();
            } else {
                let name = handle.thread().name().unwrap_or("offload").to_owned();
                unfinished_threads.push(name);
            }
        }
        let report = ShutdownReport {
            elapsed: started.elapsed(),
            abandoned,
            unfinished_threads,
        };
        *report_slot = Some(report.clone());
        if report.abandoned.is_empty() && report.unfinished_threads.is_empty() {
            Ok(report)
        } else {
            Err(FlushError::Abandoned { report })
        }
    }

    /// After the shutdown deadline: counts whatever has not reached its end as dropped with
    /// reason `shutdown_deadline`, so the per-sink accounting still adds up.
    fn abandon_unfinished(&self) -> Pending {
        let mut queued = 0;
        while let Some(r) = self.queue.pop() {
            if !matches!(r, Record::Dropped(_)) {
                queued += 1;
            }
        }
        self.counters
            .dropped
            .add(DropReason::ShutdownDeadline, queued);
        let mut per_sink = Vec::new();
        for s in &self.sinks {
            if s.finished.is_set() {
                per_sink.push((s.counters.name.clone(), 0));
                continue;
            }
            s.abandoned.set();
            let c = &s.counters;
            let left = c.forwarded.get().saturating_sub(c.completed());
            c.dropped.add(DropReason::ShutdownDeadline, left);
            per_sink.push((c.name.clone(), left));
        }
        Pending { queued, per_sink }
    }

    pub(crate) fn drain_alive(&self) -> bool {
        !self.drain_finished.is_set()
    }
}

// === the drain thread ===

fn run_drain(pipeline: Arc<Pipeline>) {
    without_tracing(|| {
        let mut drain = Drain::new(&pipeline);
        drain.run();
        pipeline.drain_finished.set();
        for s in &pipeline.sinks {
            s.stop.set();
            s.wake();
        }
        pipeline.progress.notify();
    })
}

struct Drain<'a> {
    p: &'a Pipeline,
    batch: Vec<Record>,
    /// Per sink: its export count and when that last changed or its buffer was last seen
    /// empty (under `Block`, to tell a stalled sink from a busy one).
    sink_progress: Vec<SinkProgress>,
}

impl<'a> Drain<'a> {
    fn new(p: &'a Pipeline) -> Self {
        Drain {
            p,
            batch: Vec::with_capacity(p.settings.batch_size),
            sink_progress: vec![SinkProgress::new(); p.sinks.len()],
        }
    }

    /// Hands a batch to every sink. Under `Block`, a full sink buffer is waited on, up to the
    /// block timeout per stall: a sink that made no progress for that long is dropped into at
    /// once until it moves again, so one stalled sink delays the others at most once.
    fn forward_all(&mut self, batch: &[Record]) {
        for (slot, progress) in self.p.sinks.iter().zip(&mut self.sink_progress) {
            progress.observe(slot);
            let wait = self.p.settings.sink_wait.map(|wait| Wait {
                wait,
                progress,
                notify: &self.p.progress,
            });
            forward(slot, batch, wait, self.p.settings.sink_evict_oldest);
        }
    }

    fn run(&mut self) {
        loop {
            self.p.counters.beat();
            let depth = self.p.queue.len();
            self.p
                .sampler
                .adapt(depth as f64 / self.p.queue.capacity() as f64);
            self.p
                .counters
                .high_water_mark
                .fetch_max(depth, Ordering::Relaxed);
            if depth == 0 {
                if self.p.stop_drain.is_set() {
                    // A record may have been accepted between the last pop and `closed`.
                    if self.p.queue.is_empty() {
                        return;
                    }
                } else {
                    self.p.progress.notify();
                    self.sleep();
                    continue;
                }
            } else if self.every_sink_is_full() {
                // Draining now would only move records from the queue into drops at the
                // sinks. Leave them queued: the queue fills, and producers take the cheap
                // full-queue path (under DropNewest a refused record is never even built).
                self.wait_for_a_sink();
                continue;
            }
            self.drain_batch();
        }
    }

    /// Whether no sink can take a record now (and there is at least one sink). Only under the
    /// dropping policies: under `Block` the drain keeps going so that callers do not wait on a
    /// stalled sink (see `forward`).
    fn every_sink_is_full(&self) -> bool {
        self.p.settings.sink_wait.is_none()
            && !self.p.stop_drain.is_set()
            && !self.p.sinks.is_empty()
            && self
                .p
                .sinks
                .iter()
                .all(|s| s.buffer.is_full() && !s.counters.disabled.load(Ordering::Relaxed))
    }

    /// Sleeps until a sink may have room (its thread notifies progress after each batch) or
    /// the timer fires.
    fn wait_for_a_sink(&self) {
        let deadline = Instant::now() + self.p.settings.flush_interval;
        self.p.progress.wait_until(deadline, || {
            self.p.stop_drain.is_set() || self.p.sinks.iter().any(|s| !s.buffer.is_full())
        });
    }

    fn sleep(&self) {
        self.p.queue.set_drain_sleeping(true);
        if self.p.queue.is_empty() && !self.p.stop_drain.is_set() {
            thread::park_timeout(self.p.settings.flush_interval);
        }
        self.p.queue.set_drain_sleeping(false);
    }

    fn drain_batch(&mut self) {
        while self.batch.len() < self.p.settings.batch_size {
            match self.p.queue.pop() {
                Some(r) => self.batch.push(r),
                None => break,
            }
        }
        let data = self.batch.len() as u64;
        // Room was made: wake producers blocked on a full queue.
        self.p.queue.room.notify();
        let batch = std::mem::take(&mut self.batch);
        self.forward_all(&batch);
        self.batch = batch;
        self.batch.clear();
        self.p.counters.drained.add(data);
        self.p.counters.drain_batches.incr();
        self.p.progress.notify();
    }
}

/// When a sink last showed it was alive: it finished an export, or had nothing to do.
#[derive(Debug, Clone, Copy)]
struct SinkProgress {
    batches: u64,
    at: Instant,
}

impl SinkProgress {
    fn new() -> Self {
        SinkProgress {
            batches: 0,
            at: Instant::now(),
        }
    }

    fn observe(&mut self, slot: &SinkSlot) {
        let batches = slot.counters.batches.get();
        if batches != self.batches || slot.buffer.is_empty() {
            *self = SinkProgress {
                batches,
                at: Instant::now(),
            };
        }
    }
}

/// Under `Block`: how long the drain thread may wait for room in a sink's buffer.
struct Wait<'a> {
    wait: Duration,
    progress: &'a mut SinkProgress,
    notify: &'a Notify,
}

impl Wait<'_> {
    /// Waits for room while the sink keeps moving: a sink that has not finished an export for
    /// `wait` is stalled, and records for it are dropped at once until it moves again. So one
    /// stalled sink holds up the others at most once, for `wait`.
    fn for_room(&mut self, slot: &SinkSlot) -> bool {
        loop {
            self.progress.observe(slot);
            let deadline = self.progress.at + self.wait;
            if Instant::now() >= deadline {
                return false;
            }
            slot.wake();
            let seen = self.progress.batches;
            let room = self.notify.wait_until(deadline, || {
                !slot.buffer.is_full() || slot.counters.batches.get() != seen
            });
            if !slot.buffer.is_full() {
                return true;
            }
            if !room {
                return false;
            }
        }
    }
}

/// Hands a batch to one sink's buffer. When the buffer is full: under `Block` (`wait`), wait
/// for room while the sink moves; under `DropOldest` (`evict_oldest`), evict its oldest record;
/// otherwise drop the new one. Every record not handed over is counted as dropped at that sink.
fn forward(slot: &SinkSlot, batch: &[Record], mut wait: Option<Wait<'_>>, evict_oldest: bool) {
    let c = &slot.counters;
    c.forwarded.add(batch.len() as u64);
    if c.disabled.load(Ordering::Relaxed) {
        c.dropped.add(DropReason::SinkDisabled, batch.len() as u64);
        return;
    }
    for record in batch {
        let mut record = record.clone();
        if evict_oldest {
            if slot.buffer.force_push(record).is_some() {
                c.dropped.add(DropReason::SinkBufferFull, 1);
            }
            continue;
        }
        while let Err(back) = slot.buffer.push(record) {
            record = back;
            if !wait.as_mut().is_some_and(|w| w.for_room(slot)) {
                c.dropped.add(DropReason::SinkBufferFull, 1);
                break;
            }
        }
    }
    if slot.sleeping.load(Ordering::Relaxed) || slot.buffer.len() >= slot.buffer.capacity() / 2 {
        slot.wake();
    }
}

// === the sink threads ===

fn run_sink(pipeline: Arc<Pipeline>, slot: Arc<SinkSlot>, sink: Box<dyn Sink>) {
    without_tracing(|| {
        let mut runner = SinkRunner::new(&pipeline, &slot, sink);
        runner.run();
        slot.finished.set();
        pipeline.progress.notify();
    })
}

struct SinkRunner<'a> {
    p: &'a Pipeline,
    slot: &'a SinkSlot,
    sink: Box<dyn Sink>,
    batch: Vec<Record>,
    /// Sink-level drop counts already reported in a marker.
    reported: Vec<u64>,
    last_notice_at: SystemTime,
    dirty: bool,
    /// The sink's retry count already added to its counters.
    retries_seen: u64,
}

impl<'a> SinkRunner<'a> {
    fn new(p: &'a Pipeline, slot: &'a SinkSlot, sink: Box<dyn Sink>) -> Self {
        SinkRunner {
            p,
            slot,
            sink,
            batch: Vec::with_capacity(p.settings.batch_size),
            reported: vec![0; DropReason::ALL.len()],
            last_notice_at: p.counters.started_at,
            dirty: false,
            retries_seen: 0,
        }
    }

    fn run(&mut self) {
        loop {
            let data = self.fill_batch();
            if self.batch.is_empty() {
                if self.slot.stop.is_set() && self.slot.buffer.is_empty() {
                    // Last chance to report drops in-band.
                    if let Some(notice) = self.notice() {
                        self.batch.push(Record::Dropped(Arc::new(notice)));
                        self.export_batch(0);
                    }
                }
                if self.dirty {
                    self.call("flush", |s| s.flush());
                    self.dirty = false;
                    continue;
                }
                if self.slot.stop.is_set() && self.slot.buffer.is_empty() {
                    break;
                }
                self.sleep();
                continue;
            }
            self.export_batch(data);
            self.p.progress.notify();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        self.call("shutdown", |s| s.shutdown(deadline));
    }

    fn sleep(&self) {
        self.slot.sleeping.store(true, Ordering::Relaxed);
        if self.slot.buffer.is_empty() && !self.slot.stop.is_set() {
            thread::park_timeout(self.p.settings.flush_interval);
        }
        self.slot.sleeping.store(false, Ordering::Relaxed);
    }

    /// Pops up to one batch; returns how many data records (not markers) it holds.
    fn fill_batch(&mut self) -> u64 {
        if let Some(notice) = self.notice() {
            self.batch.push(Record::Dropped(Arc::new(notice)));
        }
        let mut data = 0;
        while self.batch.len() < self.p.settings.batch_size {
            match self.slot.buffer.pop() {
                Some(r) => {
                    if !matches!(r, Record::Dropped(_)) {
                        data += 1;
                    }
                    self.batch.push(r);
                }
                None => break,
            }
        }
        data
    }

    fn export_batch(&mut self, data: u64) {
        let c = &self.slot.counters;
        if c.disabled.load(Ordering::Relaxed) {
            self.count(|c| c.dropped.add(DropReason::SinkDisabled, data));
            self.batch.clear();
            return;
        }
        let started = Instant::now();
        let batch = std::mem::take(&mut self.batch);
        let result = catch_unwind(AssertUnwindSafe(|| self.sink.export(&batch)));
        c.latency.record(started.elapsed());
        c.batches.incr();
        let retries = self.sink.retries();
        c.retries.add(retries.saturating_sub(self.retries_seen));
        self.retries_seen = retries;
        match result {
            Ok(Ok(())) => {
                self.count(|c| c.exported.add(data));
                c.note_success();
            }
            Ok(Err(e)) => {
                self.count(|c| c.failed.add(data));
                c.note_error(e.with_sources());
            }
            Err(panic) => {
                c.disabled.store(true, Ordering::Relaxed);
                self.count(|c| c.dropped.add(DropReason::SinkDisabled, data));
                c.note_error(format!(
                    "sink panicked and was disabled: {}",
                    panic_message(&panic)
                ));
            }
        }
        self.batch = batch;
        self.batch.clear();
        self.dirty = true;
    }

    /// Updates counters unless shutdown already counted this sink's records as abandoned.
    fn count(&self, f: impl FnOnce(&SinkCounters)) {
        if !self.slot.abandoned.is_set() {
            f(&self.slot.counters)
        }
    }

    fn call(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut dyn Sink) -> Result<(), crate::sink::SinkError>,
    ) {
        let c = &self.slot.counters;
        if c.disabled.load(Ordering::Relaxed) {
            return;
        }
        match catch_unwind(AssertUnwindSafe(|| f(self.sink.as_mut()))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => c.note_error(format!("{what}: {}", e.with_sources())),
            Err(panic) => {
                c.disabled.store(true, Ordering::Relaxed);
                c.note_error(format!(
                    "sink panicked in {what} and was disabled: {}",
                    panic_message(&panic)
                ));
            }
        }
    }

    /// A marker for the drops (queue-level and this sink's) since the last marker, if any.
    fn notice(&mut self) -> Option<DropNotice> {
        let queue = self.p.counters.dropped.snapshot();
        let own = self.slot.counters.dropped.snapshot();
        let now: Vec<(DropReason, u64)> = queue
            .iter()
            .zip(&own)
            .map(|((r, a), (_, b))| (*r, a + b))
            .collect();
        let by_reason: Vec<(DropReason, u64)> = now
            .iter()
            .zip(&self.reported)
            .filter(|((_, n), seen)| *n > **seen)
            .map(|((r, n), seen)| (*r, n - seen))
            .collect();
        if by_reason.is_empty() {
            return None;
        }
        self.reported = now.iter().map(|(_, n)| *n).collect();
        let at = SystemTime::now();
        let since = std::mem::replace(&mut self.last_notice_at, at);
        Some(DropNotice {
            since,
            at,
            by_reason,
        })
    }
}

fn panic_message(panic: &Box<dyn Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_owned()
    }
}
