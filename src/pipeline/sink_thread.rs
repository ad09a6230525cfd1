//! One `offload-sink-<name>` thread per sink: pops batches from the sink's buffer, exports
//! them, counts the outcome, flushes when the buffer runs dry, and writes the in-band drop
//! markers.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use super::{Pipeline, SinkSlot};
use crate::record::{DropNotice, DropReason, Record, UndeliveredReason};
use crate::silent;
use crate::sink::{Sink, SinkError};
use crate::stats::SinkCounters;

/// How often an idle sink thread with a spool reads the spool for the stats, at least: the
/// spool replays on its own thread, and the stats and health show it as last read.
const SPOOL_REFRESH: Duration = Duration::from_secs(1);

pub(super) fn run(pipeline: Arc<Pipeline>, slot: Arc<SinkSlot>, sink: Box<dyn Sink>) {
    silent::mark_pipeline_thread(pipeline.id());
    let mut runner = SinkRunner::new(&pipeline, &slot, sink);
    runner.run();
    // The sink goes before the thread says it has finished, since shutdown joins finished
    // threads without a deadline: a `Drop` that hangs leaves the thread unfinished (reported,
    // not waited for), and one that panics is caught.
    let _ = catch_unwind(AssertUnwindSafe(move || drop(runner)));
    slot.finished.set();
    pipeline.progress.notify();
}

struct SinkRunner<'a> {
    p: &'a Pipeline,
    slot: &'a SinkSlot,
    sink: Box<dyn Sink>,
    batch: Vec<Record>,
    /// The counts already reported in markers: drops (queue and sink) by reason, then this
    /// sink's undelivered records by reason.
    reported: Reported,
    /// What `reported` was before the marker now being exported, restored if its batch fails.
    before_marker: Option<Reported>,
    /// The last export failed: a marker then waits for data to go with (or for the last one,
    /// at shutdown), rather than being tried alone at every tick while the destination fails.
    failing: bool,
    /// Shutdown has begun and a batch was exported since: no marker until the final one.
    stopping_marker_made: bool,
    dirty: bool,
    /// The sink's retry count already added to its counters.
    retries_seen: u64,
    /// The sink's [`lost_after_export`](Sink::lost_after_export) total last read.
    lost_seen: u64,
    /// Losses counted after an export, whose error the sink reports at its next flush (the
    /// sync of a file it closed).
    lost_pending: u64,
    /// The sink's spooled count already added to its counters.
    spooled_seen: u64,
}

impl<'a> SinkRunner<'a> {
    fn new(p: &'a Pipeline, slot: &'a SinkSlot, sink: Box<dyn Sink>) -> Self {
        SinkRunner {
            p,
            slot,
            sink,
            batch: Vec::with_capacity(p.settings.batch_size),
            reported: Reported {
                dropped: vec![0; DropReason::ALL.len()],
                undelivered: [0; UNDELIVERED.len()],
                at: p.intake.counters.started_at,
            },
            before_marker: None,
            failing: false,
            stopping_marker_made: false,
            dirty: false,
            retries_seen: 0,
            lost_seen: 0,
            lost_pending: 0,
            spooled_seen: 0,
        }
    }

    fn run(&mut self) {
        loop {
            // Once stopping, drops (records offered after shutdown, say) are still counted but
            // make at most one more marker here, with the first batch (so that the losses from
            // before show where they happened), and one final marker below: producers that keep
            // logging cannot keep this thread exporting markers for ever.
            // Shutdown gave up on this sink: what is left in its buffer is counted dropped
            // (`shutdown_deadline`), so it must not be written now.
            if self.slot.abandoned.is_set() {
                break;
            }
            let stopping = self.slot.stop.is_set();
            let notices = !stopping || !self.stopping_marker_made;
            let data = self.fill_batch(notices);
            if stopping && !self.batch.is_empty() {
                self.stopping_marker_made = true;
            }
            if self.batch.is_empty() {
                if self.dirty {
                    self.call("flush", |s| s.flush());
                    self.dirty = false;
                    continue;
                }
                if stopping && self.slot.buffer.is_empty() {
                    break;
                }
                self.sleep();
                self.refresh_spool();
                // A loss the sink learns of while idle (a channel's receiver dropped with
                // records unread) shows now, not at the next export (adversary pass 61).
                self.lost_pending += self.take_lost();
                if self.holds_records() {
                    self.call("flush", |s| s.flush());
                }
                continue;
            }
            self.export_batch(data);
            self.p.progress.notify();
            if data == 0 {
                // A marker alone: drops go on while this sink has nothing to write (another
                // sink stalls the queue, say). One marker per timer tick is enough.
                self.sleep();
            }
        }
        // Last chance to report losses in-band. There is no later batch for the counts of a
        // marker that fails to go into, so it is tried again, backing off, a few times while
        // the shutdown deadline allows: enough for a sink that fails now and then, while one
        // that fails for good does not hold shutdown to its deadline.
        let deadline = self.p.sink_shutdown_deadline();
        let mut pause = FINAL_MARKER_FIRST_PAUSE;
        let mut tries = 0;
        while let Some(notice) = self.notice() {
            tries += 1;
            self.batch.push(Record::Dropped(Arc::new(notice)));
            self.export_batch(0);
            let now = Instant::now();
            if !self.failing
                || tries == FINAL_MARKER_TRIES
                || now >= deadline
                || self.slot.abandoned.is_set()
                || self.slot.counters.disabled.load(Ordering::Relaxed)
            {
                break;
            }
            thread::park_timeout(pause.min(deadline - now));
            pause *= 2;
        }
        if tries > 0 || self.holds_records() {
            self.call("flush", |s| s.flush());
        }
        self.call("shutdown", |s| s.shutdown(deadline));
        self.refresh_spool();
        // The sink has stopped: what it still had to deliver, it never will.
        self.slot.close_awaiting();
    }

    /// Whether the sink holds records of its own for its next flush (see
    /// [`Sink::holds_records`]); a sink that panics here holds none.
    fn holds_records(&self) -> bool {
        let sink = &self.sink;
        !self.slot.counters.disabled.load(Ordering::Relaxed)
            && catch_unwind(AssertUnwindSafe(|| sink.holds_records())).unwrap_or(false)
    }

    /// Keeps the stats' view of the sink's spool current while the sink is idle (it works on
    /// its own thread).
    fn refresh_spool(&self) {
        if !self.slot.counters.disabled.load(Ordering::Relaxed) {
            let sink = &self.sink;
            if let Ok(spool) = catch_unwind(AssertUnwindSafe(|| sink.spool())) {
                self.slot.counters.set_spool(spool);
            }
        }
    }

    /// Records of the last export that the sink spooled (its spool's count, read after the
    /// export), and its spool for the stats.
    fn take_spooled(&mut self) -> u64 {
        let sink = &self.sink;
        let Ok(spool) = catch_unwind(AssertUnwindSafe(|| sink.spool())) else {
            return 0;
        };
        let total = spool.as_ref().map_or(0, |s| s.spooled);
        self.slot.counters.set_spool(spool);
        let spooled = total.saturating_sub(self.spooled_seen);
        self.spooled_seen = total.max(self.spooled_seen);
        spooled
    }

    /// Sleeps until woken or the flush interval passes; with a spool, at most
    /// [`SPOOL_REFRESH`], so that the stats follow what the spool's own thread replays.
    fn sleep(&self) {
        self.slot.sleeping.store(true, Ordering::Relaxed);
        if self.slot.buffer.is_empty() && !self.slot.stop.is_set() {
            let mut wait = self.p.settings.flush_interval;
            if self.has_spool() {
                wait = wait.min(SPOOL_REFRESH);
            }
            thread::park_timeout(wait);
        }
        self.slot.sleeping.store(false, Ordering::Relaxed);
    }

    /// Whether the sink has a spool (the stats hold its view once the sink has given one).
    fn has_spool(&self) -> bool {
        self.slot
            .counters
            .spool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Pops up to one batch, after a drop marker when `notices` and there were losses (while
    /// the sink fails, only when there is data to go with it); returns how many data records
    /// (not markers) it holds.
    fn fill_batch(&mut self, notices: bool) -> u64 {
        let notices = notices && !(self.failing && self.slot.buffer.is_empty());
        if let Some(notice) = notices.then(|| self.notice()).flatten() {
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
        c.call_started();
        let result = self.in_call(|sink| sink.export(&batch), Commit::WithBatch);
        c.call_finished();
        c.latency.record(started.elapsed());
        c.batches.incr();
        // A sink that panics here says nothing (adversary pass 64: the thread died, and its
        // records ended nowhere).
        let sink = &self.sink;
        let retries = catch_unwind(AssertUnwindSafe(|| sink.retries())).unwrap_or(0);
        c.retries.add(retries.saturating_sub(self.retries_seen));
        self.retries_seen = retries;
        self.lost_pending += self.take_lost();
        // Records the sink wrote to its spool: counted there, not as exported or failed.
        let spooled = match result {
            Err(_) => 0,
            Ok(_) => self.take_spooled().min(data),
        };
        // Markers the sink held back (not written): their counts go into the next marker.
        let sink = &mut self.sink;
        if result.is_ok()
            && catch_unwind(AssertUnwindSafe(|| sink.markers_deferred())).unwrap_or(false)
        {
            self.restore_reported();
        }
        match result {
            // The outcome's notes before its counts: a flush returns once the counts add up,
            // and what it then reads must show the success or the error that made them (the
            // counts came first: a flush saw 50 failed and no last error, on a loaded machine).
            Ok(Ok(())) => {
                self.failing = false;
                // A batch that went to the spool whole did not reach its destination (yet).
                if spooled < data || data == 0 {
                    c.note_success();
                }
                self.lost_pending += self.count(|c| {
                    c.spooled.add(spooled);
                    c.exported.add(data - spooled);
                    self.commit_awaiting()
                });
            }
            Ok(Err(e)) => {
                // A marker that did not reach the destination: its counts go into the next.
                self.failing = true;
                if !e.markers_written() {
                    self.restore_reported();
                }
                // Records the sink says reached their destination despite the error.
                let written = match &e {
                    SinkError::Mixed { failed, .. } => {
                        data.saturating_sub(spooled + (*failed as u64).min(data - spooled))
                    }
                    _ => data_records(&batch[..e.written().min(batch.len())]),
                };
                let failed = data.saturating_sub(written + spooled);
                // Of those, the ones refused for good.
                let permanent = match &e {
                    _ if e.is_permanent() => failed,
                    SinkError::Mixed { permanent, .. } => (*permanent as u64).min(failed),
                    _ => 0,
                };
                c.note_error(e.with_sources());
                if written > 0 {
                    // Part of the batch reached its destination (the spans of a collector
                    // that refuses logs, say): a success too, though the sink is failing
                    // (adversary pass 54: it never showed one).
                    c.note_delivered();
                }
                self.lost_pending += self.count(|c| {
                    c.spooled.add(spooled);
                    c.exported.add(written.min(data - spooled));
                    c.failed_transient.add(failed - permanent);
                    c.failed_permanent.add(permanent);
                    self.commit_awaiting()
                });
            }
            Err(panic) => {
                self.restore_reported();
                c.disabled.store(true, Ordering::Relaxed);
                c.note_error(format!(
                    "sink panicked and was disabled: {}",
                    panic_message(&panic)
                ));
                self.count(|c| c.dropped.add(DropReason::SinkDisabled, data));
                // What it counted exported and had yet to deliver will not be delivered.
                self.slot.close_awaiting();
            }
        }
        self.before_marker = None;
        self.batch = batch;
        self.batch.clear();
        self.dirty = true;
    }

    /// Forgets the marker of the batch just exported, which did not reach the destination: the
    /// next marker reports its counts again.
    fn restore_reported(&mut self) {
        if let Some(before) = self.before_marker.take() {
            self.reported = before;
        }
    }

    /// Updates counters unless shutdown already counted this sink's records as abandoned (under
    /// the hand-over lock, which shutdown holds while it counts them: never both).
    fn count<R: Default>(&self, f: impl FnOnce(&SinkCounters) -> R) -> R {
        let _handover = self.slot.handover.lock().unwrap_or_else(|e| e.into_inner());
        if self.slot.abandoned.is_set() {
            return R::default();
        }
        f(&self.slot.counters)
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
        c.call_started();
        let result = self.in_call(f, Commit::AtReturn);
        c.call_finished();
        // Read now, counted after the note: what reads the count then sees why (the same
        // order as an export's outcome).
        let lost = if result.is_ok() { self.lost_since() } else { 0 };
        let earlier = std::mem::take(&mut self.lost_pending);
        let c = &self.slot.counters;
        match result {
            Ok(Ok(())) => {}
            // A loss the sink learned of (a failed sync), not a failure to export: shown for
            // the drop window, as drops are, without making the sink failing until its next
            // export (an idle sink went unhealthy for good: adversary pass 55).
            Ok(Err(e)) if lost + earlier > 0 => {
                c.note_loss(format!("{what}: {}", e.with_sources()));
            }
            Ok(Err(e)) => c.note_error(format!("{what}: {}", e.with_sources())),
            Err(panic) => {
                c.disabled.store(true, Ordering::Relaxed);
                c.note_error(format!(
                    "sink panicked in {what} and was disabled: {}",
                    panic_message(&panic)
                ));
                self.slot.close_awaiting();
            }
        }
        c.add_lost_after_export(lost);
    }

    /// Calls the sink, catching a panic. What it says of its records awaiting delivery during
    /// the call counts once the call returns ([`AwaitingDelivery`]): a call given up on (at
    /// shutdown's deadline) or that panics has its batch counted dropped instead.
    ///
    /// [`AwaitingDelivery`]: crate::sink::AwaitingDelivery
    fn in_call<R>(
        &mut self,
        f: impl FnOnce(&mut dyn Sink) -> R,
        commit: Commit,
    ) -> std::thread::Result<R> {
        let awaiting = self.slot.awaiting.as_deref();
        if let Some(a) = awaiting {
            a.begin();
        }
        let result = catch_unwind(AssertUnwindSafe(|| f(self.sink.as_mut())));
        if let (Some(a), Commit::AtReturn) = (awaiting, commit) {
            a.commit();
        }
        result
    }

    /// An export's words on records awaiting delivery count with its batch's outcome, under
    /// the hand-over lock: never after shutdown gave up on the sink and counted the batch
    /// dropped (adversary pass 64: a deadline between the two counted the batch twice).
    /// Returns the records the export found lost (counted now, with its batch: a flush that
    /// returns once the batch's counts add up sees them too).
    fn commit_awaiting(&self) -> u64 {
        let Some(a) = &self.slot.awaiting else {
            return 0;
        };
        a.commit();
        let lost = a.take_lost();
        self.slot.counters.add_lost_after_export(lost);
        lost
    }

    /// Counts what the sink says it lost after export since it was last asked, and returns
    /// it.
    fn take_lost(&mut self) -> u64 {
        let new = self.lost_since();
        self.slot.counters.add_lost_after_export(new);
        new
    }

    /// What the sink says it lost after export since it was last asked, not counted yet: never
    /// more than it exported (a sink that panics here says nothing), and the records it had
    /// yet to deliver that it since found lost ([`Sink::awaiting_delivery`]).
    fn lost_since(&mut self) -> u64 {
        let sink = &self.sink;
        let said = catch_unwind(AssertUnwindSafe(|| sink.lost_after_export())).map_or(0, |lost| {
            let lost = lost.min(self.slot.counters.exported.get());
            let new = lost.saturating_sub(self.lost_seen);
            self.lost_seen = self.lost_seen.max(lost);
            new
        });
        said + self.slot.awaiting.as_ref().map_or(0, |a| a.take_lost())
    }

    /// A marker for the drops (queue-level and this sink's) and this sink's undelivered
    /// records since the last marker, if any.
    fn notice(&mut self) -> Option<DropNotice> {
        let queue = self.p.intake.counters.dropped.snapshot();
        let own = self.slot.counters.dropped.snapshot();
        let dropped: Vec<u64> = queue
            .iter()
            .zip(&own)
            .map(|((_, a), (_, b))| a + b)
            .collect();
        let undelivered = self.undelivered_now();
        let by_reason: Vec<(DropReason, u64)> = DropReason::ALL
            .iter()
            .zip(dropped.iter().zip(&self.reported.dropped))
            .filter(|(_, (n, seen))| n > seen)
            .map(|(r, (n, seen))| (*r, n - seen))
            .collect();
        let undelivered_by_reason: Vec<(UndeliveredReason, u64)> = UNDELIVERED
            .iter()
            .zip(undelivered.iter().zip(&self.reported.undelivered))
            .filter(|(_, (n, seen))| n > seen)
            .map(|(r, (n, seen))| (*r, n - seen))
            .collect();
        if by_reason.is_empty() && undelivered_by_reason.is_empty() {
            return None;
        }
        let at = SystemTime::now();
        let now = Reported {
            dropped,
            undelivered,
            at,
        };
        let before = std::mem::replace(&mut self.reported, now);
        let since = before.at;
        self.before_marker = Some(before);
        Some(DropNotice {
            since,
            at,
            by_reason,
            undelivered: undelivered_by_reason,
        })
    }

    /// This sink's undelivered records so far, in the order of [`UNDELIVERED`]. Its spool's
    /// losses count only while the collector is reachable: a marker made during an outage would
    /// go to the spool, whose losses it reports, and could be evicted in turn.
    fn undelivered_now(&self) -> [u64; UNDELIVERED.len()] {
        let failed = self.slot.counters.failed();
        let spool = self
            .slot
            .counters
            .spool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let seen = &self.reported.undelivered;
        match spool {
            Some(s) if s.unreachable_for.is_none() => {
                [failed, s.evicted, s.corrupt_records, s.rejected]
            }
            _ => [failed, seen[1], seen[2], seen[3]],
        }
    }
}

/// How often the final marker is tried at most while the sink fails, and the first pause
/// between two tries (doubling: 10, 20, 40 ms).
const FINAL_MARKER_TRIES: u32 = 4;
const FINAL_MARKER_FIRST_PAUSE: Duration = Duration::from_millis(10);

/// What the markers have reported so far, and when the last one was made.
#[derive(Clone)]
struct Reported {
    dropped: Vec<u64>,
    undelivered: [u64; UNDELIVERED.len()],
    at: SystemTime,
}

/// The undelivered reasons, in the order `Reported::undelivered` keeps them.
const UNDELIVERED: [UndeliveredReason; 4] = [
    UndeliveredReason::Failed,
    UndeliveredReason::SpoolEvicted,
    UndeliveredReason::SpoolCorrupt,
    UndeliveredReason::SpoolRejected,
];

/// Records in `batch` that are data, not drop markers.
fn data_records(batch: &[Record]) -> u64 {
    batch
        .iter()
        .filter(|r| !matches!(r, Record::Dropped(_)))
        .count() as u64
}

/// The text of a panic's payload (a `&str` or a `String`; anything else said so).
pub(crate) fn panic_message(panic: &Box<dyn Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_owned()
    }
}

/// When what a sink says of its records awaiting delivery during a call counts.
#[derive(Clone, Copy)]
enum Commit {
    /// With the batch's outcome (an export).
    WithBatch,
    /// When the call ends, panicking or not (a flush, the shutdown: no batch to count).
    AtReturn,
}
