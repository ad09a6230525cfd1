//! The `offload-drain` thread: pops batches from the queue and hands each record to every
//! sink's buffer. It never blocks on a sink (except, under `Block`, for a sink that keeps
//! moving).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::notify::Notify;
use super::{Pipeline, SinkSlot};
use crate::clock::{deadline_after, deadline_from};
use crate::record::{DropReason, Record};
use crate::silent::without_tracing;

pub(super) fn run(pipeline: Arc<Pipeline>) {
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
            self.p.intake.counters.beat();
            let depth = self.p.intake.queue.len();
            self.p
                .intake
                .sampler
                .adapt(depth as f64 / self.p.intake.queue.capacity() as f64);
            self.p
                .intake
                .counters
                .high_water_mark
                .fetch_max(depth, Ordering::Relaxed);
            if depth == 0 {
                if self.p.stop_drain.is_set() {
                    // A record may have been accepted between the last pop and `closed`.
                    if self.p.intake.queue.is_empty() {
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
        let deadline = deadline_after(self.p.settings.flush_interval);
        self.p.progress.wait_until(deadline, || {
            self.p.stop_drain.is_set() || self.p.sinks.iter().any(|s| !s.buffer.is_full())
        });
    }

    fn sleep(&self) {
        self.p.intake.queue.set_drain_sleeping(true);
        if self.p.intake.queue.is_empty() && !self.p.stop_drain.is_set() {
            thread::park_timeout(self.p.settings.flush_interval);
        }
        self.p.intake.queue.set_drain_sleeping(false);
    }

    fn drain_batch(&mut self) {
        while self.batch.len() < self.p.settings.batch_size {
            match self.p.intake.queue.pop() {
                Some(r) => self.batch.push(r),
                None => break,
            }
        }
        let data = self.batch.len() as u64;
        // Room was made: wake producers blocked on a full queue.
        self.p.intake.queue.room.notify();
        let batch = std::mem::take(&mut self.batch);
        self.forward_all(&batch);
        self.batch = batch;
        self.batch.clear();
        self.p.intake.counters.drained.add(data);
        self.p.intake.counters.drain_batches.incr();
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
            let deadline = deadline_from(self.progress.at, self.wait);
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
