//! Counters the pipeline keeps about itself, and the [`Stats`] snapshot users read.
//!
//! Every counter is striped and updated with `Relaxed` ordering (see `counters.rs`): counters
//! carry no data between threads, they only count, and readers accept a view that is a few
//! increments old. Relaxed loads of different counters are not ordered with each other, so a
//! snapshot is not an instant of the pipeline. What holds anyway is by construction: each
//! record offered to the layer ends in exactly one outcome counter (`enqueued`, a `dropped`
//! reason, or `sampled_out`; a record that tail sampling drops after it was enqueued moves from
//! `enqueued` to `sampled_out`), and a snapshot's `offered` is the sum of the outcomes *it read*,
//! so `offered == enqueued + dropped + sampled_out` holds in every snapshot; differences of
//! counters that another thread may see out of order (`accepted - evicted`, `opened - closed`)
//! saturate at zero instead of going negative.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

pub(crate) use crate::counters::{Counter, DropCounters, Histogram};
pub use crate::counters::{LatencyHistogram, LATENCY_BUCKETS_SECONDS};
use crate::record::DropReason;
use crate::tail_sampling::{TailCounters, TailSamplingStats};

/// The counters of one sink.
#[derive(Debug)]
pub(crate) struct SinkCounters {
    pub(crate) name: String,
    /// Records the drain thread handed to this sink (pushed into its buffer or dropped there).
    pub(crate) forwarded: Counter,
    /// Records written successfully.
    pub(crate) exported: Counter,
    /// Records in batches whose export returned an error that was not permanent. Failed
    /// records are counted in two counters, each added once, and `failed` is their sum: a
    /// total and its part counted apart let a snapshot between the two additions see the new
    /// total with the old part, and the transient failures (the difference) went down at the
    /// next (adversary pass 54).
    pub(crate) failed_transient: Counter,
    /// Records in batches whose export returned a permanent error.
    pub(crate) failed_permanent: Counter,
    /// Records the sink wrote to its spool instead of exporting them (see [`SpoolStats`]).
    pub(crate) spooled: Counter,
    /// The sink's spool, as the sink thread last read it.
    pub(crate) spool: Mutex<Option<SpoolStats>>,
    /// Records this sink dropped, by reason.
    pub(crate) dropped: DropCounters,
    /// Export retries (sinks that retry report them).
    pub(crate) retries: Counter,
    /// Records counted exported that the sink learned since may not have reached their
    /// destination (see [`Sink::lost_after_export`](crate::sink::Sink::lost_after_export)).
    pub(crate) lost_after_export: Counter,
    /// Serialises [`add_lost_after_export`](Self::add_lost_after_export)'s check and add.
    lost_lock: Mutex<()>,
    /// Batches exported, whatever their outcome.
    pub(crate) batches: Counter,
    /// Time per `export` call.
    pub(crate) latency: Histogram,
    pub(crate) buffer_capacity: usize,
    pub(crate) disabled: std::sync::atomic::AtomicBool,
    pub(crate) last: Mutex<SinkLast>,
    /// When the sink's current `export` (or `flush`) call began, in nanoseconds since `epoch`
    /// plus one; 0 while no call is in progress.
    busy_since: AtomicU64,
    epoch: Instant,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct SinkLast {
    pub(crate) error: Option<String>,
    pub(crate) error_at: Option<SystemTime>,
    pub(crate) success_at: Option<SystemTime>,
    /// Start of the current run of failures (cleared by a success).
    pub(crate) failing_since: Option<Instant>,
}

impl SinkCounters {
    pub(crate) fn new(name: String, buffer_capacity: usize) -> Self {
        SinkCounters {
            name,
            forwarded: Counter::default(),
            exported: Counter::default(),
            failed_transient: Counter::default(),
            failed_permanent: Counter::default(),
            spooled: Counter::default(),
            spool: Mutex::new(None),
            dropped: DropCounters::default(),
            retries: Counter::default(),
            lost_after_export: Counter::default(),
            lost_lock: Mutex::new(()),
            batches: Counter::default(),
            latency: Histogram::default(),
            buffer_capacity,
            disabled: Default::default(),
            last: Mutex::new(SinkLast::default()),
            busy_since: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Counts `n` records lost after export: never more, in all, than were exported (a sink
    /// that says more lost than it exported is believed up to that).
    pub(crate) fn add_lost_after_export(&self, n: u64) {
        // The sink thread and a shutdown that gave up on the sink may count at once: the lock
        // keeps them from both taking the same room (a rare path: losses after export).
        let _one_at_a_time = self.lost_lock.lock().unwrap_or_else(|e| e.into_inner());
        let room = self
            .exported
            .get()
            .saturating_sub(self.lost_after_export.get());
        self.lost_after_export.add(n.min(room));
    }

    /// Marks the start of an `export` (or `flush`) call, for health to see a sink stuck in one.
    pub(crate) fn call_started(&self) {
        let since = self.epoch.elapsed().as_nanos().min(u64::MAX as u128 - 1) as u64;
        self.busy_since.store(since + 1, Relaxed);
    }

    /// Marks the end of the call begun by [`call_started`](Self::call_started).
    pub(crate) fn call_finished(&self) {
        self.busy_since.store(0, Relaxed);
    }

    /// How long the current call has been running; `None` when the sink is not in one.
    fn busy_for(&self) -> Option<Duration> {
        match self.busy_since.load(Relaxed) {
            0 => None,
            since => Some(
                self.epoch
                    .elapsed()
                    .saturating_sub(Duration::from_nanos(since - 1)),
            ),
        }
    }

    /// Records the sink is done with: exported, spooled (durable, replayed later), failed, or
    /// dropped at this sink.
    pub(crate) fn completed(&self) -> u64 {
        self.exported.get() + self.spooled.get() + self.failed() + self.dropped.total()
    }

    /// Keeps the sink's latest view of its spool.
    pub(crate) fn set_spool(&self, spool: Option<SpoolStats>) {
        if spool.is_some() {
            *self.spool.lock().unwrap_or_else(|e| e.into_inner()) = spool;
        }
    }

    /// Records in batches whose export returned an error, transient or permanent.
    pub(crate) fn failed(&self) -> u64 {
        self.failed_transient.get() + self.failed_permanent.get()
    }

    pub(crate) fn note_success(&self) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.success_at = Some(SystemTime::now());
        last.failing_since = None;
    }

    /// Some records reached their destination in a batch that failed in part: when the sink
    /// last delivered, without ending its failure.
    pub(crate) fn note_delivered(&self) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.success_at = Some(SystemTime::now());
    }

    /// An error that says records were lost after export: the last error, without the sink
    /// failing.
    pub(crate) fn note_loss(&self, error: String) {
        self.note(error, false);
    }

    /// A failed call: the last error, and the sink failing from now (if it was not already).
    pub(crate) fn note_error(&self, error: String) {
        self.note(error, true);
    }

    fn note(&self, error: String, failing: bool) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.error = Some(error);
        last.error_at = Some(SystemTime::now());
        if failing {
            last.failing_since.get_or_insert_with(Instant::now);
        }
    }

    pub(crate) fn snapshot(&self) -> SinkStats {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let dropped_by_reason: Vec<(DropReason, u64)> = self
            .dropped
            .snapshot()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect();
        // Read while records flow: parts before their totals, outcomes before `forwarded`, and
        // each total at least its parts, so that a snapshot never shows more records done than
        // handed over (a record is forwarded before its outcome is counted).
        let failed_permanent = self.failed_permanent.get();
        let exported = self.exported.get();
        let failed = self.failed_transient.get() + failed_permanent;
        let spooled = self.spooled.get();
        let dropped: u64 = dropped_by_reason.iter().map(|(_, n)| n).sum();
        let forwarded = self
            .forwarded
            .get()
            .max(exported + failed + spooled + dropped);
        SinkStats {
            name: self.name.clone(),
            forwarded,
            exported,
            failed,
            failed_permanent,
            spooled,
            spool: self.spool.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            dropped,
            dropped_by_reason,
            retries: self.retries.get(),
            lost_after_export: self.lost_after_export.get(),
            batches: self.batches.get(),
            buffered: 0, // filled in by the pipeline, which owns the buffer
            buffer_capacity: self.buffer_capacity,
            disabled: self.disabled.load(Relaxed),
            export_latency: self.latency.snapshot(),
            last_error: last.error,
            last_error_at: last.error_at,
            last_success_at: last.success_at,
            failing_for: last.failing_since.map(|t| t.elapsed()),
            export_in_progress_for: self.busy_for(),
        }
    }
}

/// The drop reasons of records that were accepted into the queue and then left it without being
/// drained: evicted by `DropOldest`, or still queued when a shutdown deadline passed.
const EVICTIONS: [DropReason; 2] = [DropReason::QueueFullOldest, DropReason::ShutdownDeadline];

/// Every counter of one pipeline, shared by the layer, the drain thread, the sinks and handles.
#[derive(Debug)]
pub(crate) struct Counters {
    /// Records accepted into the queue (including ones later evicted by `DropOldest`).
    pub(crate) accepted: Counter,
    /// Records dropped before reaching the drain thread, by reason.
    pub(crate) dropped: DropCounters,
    /// Events the sampler decided not to keep.
    pub(crate) sampled_out: Counter,
    /// Spans not recorded because their trace was not sampled (counted when they close).
    pub(crate) spans_sampled_out: Counter,
    /// Records the drain thread has popped from the queue.
    pub(crate) drained: Counter,
    /// Records the drain thread is done with: handed to the sinks, dropped by tail sampling,
    /// or held by tail sampling for their trace (counted when taken in, not again when
    /// released). A flush waits for this to reach what was accepted.
    pub(crate) settled: Counter,
    /// Tail sampling's counts, and the drain thread's gauges.
    pub(crate) tail: TailCounters,
    /// Span states created (sampled spans opened).
    pub(crate) spans_opened: Counter,
    /// Span states removed (sampled spans closed).
    pub(crate) spans_closed: Counter,
    /// Field values cut at the length cap.
    pub(crate) truncated_values: Counter,
    /// Events inside spans that went past the span-event limit.
    pub(crate) span_events_dropped: Counter,
    /// Most records seen in the queue at once.
    pub(crate) high_water_mark: AtomicUsize,
    /// Batches the drain thread has fanned out.
    pub(crate) drain_batches: Counter,
    /// Last time the drain thread went round its loop, in ms since `started`.
    pub(crate) heartbeat_ms: AtomicU64,
    pub(crate) started: Instant,
    pub(crate) started_at: SystemTime,
    pub(crate) sinks: Vec<Arc<SinkCounters>>,
    /// Ages of the open spans, for stuck-span detection.
    pub(crate) open_spans: crate::open_spans::OpenSpans,
    /// Records that got into the queue after the drain thread had stopped, taken back out and
    /// counted as dropped with reason `shutdown`.
    pub(crate) shutdown_evicted: Counter,
    /// Remote parents set on spans that already had children, refused (the trace would split).
    pub(crate) reparent_refused: Counter,
}

impl Counters {
    pub(crate) fn new(sinks: Vec<Arc<SinkCounters>>) -> Self {
        Counters {
            accepted: Counter::default(),
            dropped: DropCounters::default(),
            sampled_out: Counter::default(),
            spans_sampled_out: Counter::default(),
            drained: Counter::default(),
            settled: Counter::default(),
            tail: TailCounters::default(),
            spans_opened: Counter::default(),
            spans_closed: Counter::default(),
            truncated_values: Counter::default(),
            span_events_dropped: Counter::default(),
            high_water_mark: AtomicUsize::new(0),
            drain_batches: Counter::default(),
            heartbeat_ms: AtomicU64::new(0),
            started: Instant::now(),
            started_at: SystemTime::now(),
            sinks,
            open_spans: Default::default(),
            shutdown_evicted: Counter::default(),
            reparent_refused: Counter::default(),
        }
    }

    pub(crate) fn beat(&self) {
        self.heartbeat_ms
            .store(self.started.elapsed().as_millis() as u64, Relaxed);
    }

    pub(crate) fn heartbeat_age(&self) -> Duration {
        let now = self.started.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.heartbeat_ms.load(Relaxed)))
    }

    /// Records accepted into the queue and then dropped from it: evicted by `DropOldest`, or
    /// left in it when a shutdown deadline passed.
    pub(crate) fn evicted(&self) -> u64 {
        EVICTIONS.iter().map(|r| self.dropped.get(*r)).sum::<u64>() + self.shutdown_evicted.get()
    }

    pub(crate) fn snapshot(&self, queue_len: usize, capacity: usize) -> Stats {
        // The later stages first: a record reaches a sink after the drain thread took it, and
        // the drain thread after it entered the queue, so a stage read before the one ahead of
        // it is never ahead of it in the snapshot (read the other way round, records that
        // entered and were handed over in between showed a sink `forwarded` more than
        // `accepted`: adversary pass 46).
        let sinks = self.sinks.iter().map(|s| s.snapshot()).collect();
        let drained = self.drained.get();
        // `offered` is derived from the outcomes read here, so the invariant holds in this
        // snapshot whatever other threads do meanwhile; `accepted - evicted` saturates.
        let dropped_by_reason: Vec<(DropReason, u64)> = self.dropped.snapshot();
        // Read once, used for both terms: a record tail sampling dropped leaves `enqueued`
        // for `sampled_out`.
        let tail = self.tail.snapshot(None);
        let sampled_out = self.sampled_out.get() + self.spans_sampled_out.get() + tail.sampled_out;
        let accepted = self.accepted.get();
        let evicted: u64 = EVICTIONS
            .iter()
            .map(|r| dropped_by_reason[r.index()].1)
            .sum::<u64>()
            + self.shutdown_evicted.get();
        let enqueued = accepted.saturating_sub(evicted + tail.sampled_out);
        let dropped: u64 = dropped_by_reason.iter().map(|(_, n)| n).sum();
        Stats {
            offered: enqueued + dropped + sampled_out,
            accepted,
            enqueued,
            dropped,
            dropped_by_reason: dropped_by_reason
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect(),
            sampled_out,
            sampling: None,      // filled in by the pipeline, which owns the sampler
            tail_sampling: tail, // its settings filled in by the pipeline
            drained,
            queue_depth: queue_len,
            capacity,
            high_water_mark: self.high_water_mark.load(Relaxed).max(queue_len),
            // Saturating: the two counters are read separately and may be seen out of order.
            open_spans: {
                let closed = self.spans_closed.get();
                self.spans_opened.get().saturating_sub(closed)
            },

            oldest_open_span_age: self.open_spans.oldest_age(),
            truncated_values: self.truncated_values.get(),
            span_events_dropped: self.span_events_dropped.get(),
            reparent_refused: self.reparent_refused.get(),
            drain_batches: self.drain_batches.get(),
            heartbeat_age: self.heartbeat_age(),
            uptime: self.started.elapsed(),
            started_at: self.started_at,
            sinks,
        }
    }
}

/// The count for `reason` in a list of non-zero counts by reason.
fn count_for(counts: &[(DropReason, u64)], reason: DropReason) -> u64 {
    counts
        .iter()
        .find(|(r, _)| *r == reason)
        .map_or(0, |(_, n)| *n)
}

/// A snapshot of a pipeline's counters, from [`Handle::stats`](crate::Handle::stats).
///
/// Every record offered to the layer ends in exactly one of `enqueued`, `dropped` (with a
/// reason) or `sampled_out`, so `offered == enqueued + dropped + sampled_out`. `sampled_out`
/// has three terms: events the event sampler did not keep, spans of unsampled traces (both
/// decided on the calling thread, in [`sampling`](Self::sampling)), and records of local traces
/// that tail sampling dropped ([`tail_sampling`](Self::tail_sampling)`.sampled_out`). A record
/// tail sampling drops was enqueued first and leaves `enqueued` when it is dropped; a record
/// it holds for its trace is still `enqueued`. Each enqueued record is handed to every sink
/// (once tail sampling has decided to keep it), where it ends as `exported`, `spooled` (a sink
/// with a spool: on disk, replayed later; see [`SpoolStats`]), `failed` or `dropped`.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Records offered to the layer (events, and spans when they close).
    pub offered: u64,
    /// Records that entered the queue and were not evicted from it.
    pub enqueued: u64,
    /// Records that entered the queue, those later dropped from it (evicted by `drop_oldest`,
    /// left there at a shutdown's deadline) or sampled out by tail sampling included: unlike
    /// `enqueued`, it only grows (`offload_records_total{outcome="enqueued"}` in the
    /// Prometheus text).
    pub accepted: u64,
    /// Records dropped before the drain thread (sum of `dropped_by_reason`).
    pub dropped: u64,
    /// Non-zero drop counts by reason.
    pub dropped_by_reason: Vec<(DropReason, u64)>,
    /// Records the samplers did not keep: events, spans of unsampled traces, and records
    /// dropped by tail sampling.
    pub sampled_out: u64,
    /// The sampling settings in force and their counts.
    pub sampling: Option<crate::sampling::SamplingStats>,
    /// Tail sampling: its settings, what it holds, and what it decided.
    pub tail_sampling: TailSamplingStats,
    /// Records the drain thread has taken from the queue.
    pub drained: u64,
    /// Records in the queue now.
    pub queue_depth: usize,
    /// The queue's capacity.
    pub capacity: usize,
    /// The most records seen in the queue at once.
    pub high_water_mark: usize,
    /// Spans open right now (their state is alive in the layer's span store).
    pub open_spans: u64,
    /// How long the oldest span still open has been open; `None` when there is no open span
    /// or the layer does not track it.
    pub oldest_open_span_age: Option<Duration>,
    /// Field values cut at the length cap.
    pub truncated_values: u64,
    /// Events inside spans past the span-event limit (kept as events, not on the span).
    pub span_events_dropped: u64,
    /// Remote parents set too late (on a span that already had child spans or events, or has a
    /// local parent), refused so that the trace does not split (see
    /// [`OffloadSpanExt::set_parent_traceparent`](crate::OffloadSpanExt::set_parent_traceparent)).
    pub reparent_refused: u64,
    /// Batches the drain thread has fanned out.
    pub drain_batches: u64,
    /// Time since the drain thread last went round its loop.
    pub heartbeat_age: Duration,
    /// Time since the pipeline was built.
    pub uptime: Duration,
    /// When the pipeline was built.
    pub started_at: SystemTime,
    /// One entry per sink, in the order they were added.
    pub sinks: Vec<SinkStats>,
}

impl Stats {
    /// The drop count for one reason.
    pub fn dropped_for(&self, reason: DropReason) -> u64 {
        count_for(&self.dropped_by_reason, reason)
    }

    /// The stats of the sink with this name.
    pub fn sink(&self, name: &str) -> Option<&SinkStats> {
        self.sinks.iter().find(|s| s.name == name)
    }
}

/// The counters of one sink.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct SinkStats {
    /// The sink's name.
    pub name: String,
    /// Records handed to this sink by the drain thread.
    pub forwarded: u64,
    /// Records written successfully.
    pub exported: u64,
    /// Records in batches whose export failed.
    pub failed: u64,
    /// Of [`failed`](Self::failed), those refused for good: the error was permanent
    /// ([`SinkError::is_permanent`](crate::sink::SinkError::is_permanent): the destination
    /// rejected them as invalid or unauthorised, or the sink is misconfigured), so no retry or
    /// spool could have helped. The rest failed transiently (the collector unreachable once the
    /// retries were spent, an I/O error) and might have gone through later.
    pub failed_permanent: u64,
    /// Records written to the sink's spool instead of being exported (0 without a spool): they
    /// are on disk, and [`spool`](Self::spool) says what became of them since.
    pub spooled: u64,
    /// The sink's spool, when it has one.
    pub spool: Option<SpoolStats>,
    /// Records dropped at this sink (sum of `dropped_by_reason`).
    pub dropped: u64,
    /// Non-zero drop counts by reason.
    pub dropped_by_reason: Vec<(DropReason, u64)>,
    /// Export retries.
    pub retries: u64,
    /// Records counted `exported` that the sink learned since may not have reached their
    /// destination: for the JSON-lines sink, written to the file before a sync that reported
    /// that the system could not write them back to the device (a failing disk, a thin volume
    /// out of space); for the channel sink, records its channel still held, unread, when its
    /// receiver was dropped; for the OTLP sink, events sent only on their span's record when
    /// that record did not reach the collector (see `EventsAsLogs`). Also counted in `exported` (only the system knows which of them
    /// are lost); health shows them as a loss, as drops are.
    pub lost_after_export: u64,
    /// Export calls.
    pub batches: u64,
    /// Records waiting in the sink's buffer now; none once a shutdown gave up on the sink at
    /// its deadline (what was left is counted dropped, `shutdown_deadline`).
    pub buffered: usize,
    /// The sink buffer's capacity.
    pub buffer_capacity: usize,
    /// Whether the sink was disabled after a panic.
    pub disabled: bool,
    /// Time per export call.
    pub export_latency: LatencyHistogram,
    /// The last export error.
    pub last_error: Option<String>,
    /// When the last export error happened.
    pub last_error_at: Option<SystemTime>,
    /// When the last export succeeded.
    pub last_success_at: Option<SystemTime>,
    /// How long the sink has been failing without a success in between.
    pub failing_for: Option<Duration>,
    /// How long the sink's current `export` (or `flush`) call has been running; `None` when it
    /// is not in one. A sink stuck in a call shows here whatever the traffic (health:
    /// [`HealthConfig::export_stuck_after`](crate::health::HealthConfig::export_stuck_after)).
    pub export_in_progress_for: Option<Duration>,
}

impl SinkStats {
    /// Records this sink has finished with: exported, spooled, failed or dropped. Once the
    /// sink is idle, `completed() == forwarded`.
    pub fn completed(&self) -> u64 {
        self.exported + self.spooled + self.failed + self.dropped
    }

    /// The drop count for one reason.
    pub fn dropped_for(&self, reason: DropReason) -> u64 {
        count_for(&self.dropped_by_reason, reason)
    }
}

/// A sink's spool ([`SinkStats::spool`]): what it holds now, and what became of the records it
/// took. Its own ledger, apart from the sink's (where `spooled` is where a record ends):
///
/// `restored + spooled == replayed + evicted + corrupt_records + rejected + records`
///
/// where `restored` are the records earlier processes left in the spool directory. The records
/// delivered are the sink's `exported` plus the spool's `replayed`; the records lost there are
/// [`lost`](Self::lost).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SpoolStats {
    /// Bytes the spool takes on disk now.
    pub bytes: u64,
    /// Its budget in bytes.
    pub max_bytes: u64,
    /// Records in the spool now (waiting for replay, or being replayed).
    pub records: u64,
    /// Requests (batches) in the spool now.
    pub batches: u64,
    /// How long ago the oldest request in the spool was written; `None` when it is empty.
    pub oldest_age: Option<Duration>,
    /// Whether the spool is being replayed: it holds requests of a signal (spans or log
    /// records) whose endpoint is reachable.
    pub replaying: bool,
    /// How long the collector has been unreachable (the last attempt failed transiently);
    /// `None` when the last attempt succeeded. Requests go straight to the spool meanwhile.
    /// Spans and log records are judged apart (they often have separate endpoints): this is the
    /// longer of the two, and the other signal may be flowing meanwhile.
    pub unreachable_for: Option<Duration>,
    /// The signals whose endpoint is unreachable now: `"spans"`, `"logs"`, both or none.
    pub unreachable_signals: Vec<&'static str>,
    /// How long the oldest request still waiting for the collector's answer has waited: a live
    /// export whose request was spooled while it ran, or the replay's request in flight. A
    /// collector that accepts connections and never answers shows here (health: stuck), not as
    /// unreachable, until the request times out.
    pub unanswered_for: Option<Duration>,
    /// Records found in the spool when the sink started: left by an earlier process.
    pub restored: u64,
    /// Records written to the spool since the sink started.
    pub spooled: u64,
    /// Records delivered from the spool (including requests spooled while their live export
    /// was still running, which then succeeded).
    pub replayed: u64,
    /// Records evicted, oldest first, to keep the spool within its budget.
    pub evicted: u64,
    /// Records in requests found damaged (cut short by a crash, or failing their checksum),
    /// skipped. A damaged request whose record count cannot be read counts in
    /// [`corrupt_batches`](Self::corrupt_batches) only.
    pub corrupt_records: u64,
    /// Requests (or damaged stretches of a file) found damaged and skipped.
    pub corrupt_batches: u64,
    /// Records the collector refused for good when they were replayed.
    pub rejected: u64,
    /// The last error of the collector, or the last problem with the spool's files. It stays
    /// after the collector is back and the spool has drained:
    /// [`last_error_at`](Self::last_error_at) says how old it is.
    pub last_error: Option<String>,
    /// When [`last_error`](Self::last_error) happened.
    pub last_error_at: Option<SystemTime>,
}

impl SpoolStats {
    /// Records lost in the spool: evicted, corrupt or rejected.
    pub fn lost(&self) -> u64 {
        self.evicted + self.corrupt_records + self.rejected
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// A pipeline with drops, a failing sink and a few latency observations.
    pub(crate) fn sample_stats() -> Stats {
        let json = SinkCounters::new("json".into(), 100);
        json.forwarded.add(90);
        json.exported.add(83);
        json.failed_transient.add(3);
        json.failed_permanent.add(2);
        json.dropped.add(DropReason::SinkBufferFull, 2);
        json.retries.add(1);
        json.batches.add(4);
        json.latency.record(Duration::from_micros(900));
        json.latency.record(Duration::from_micros(900));
        json.latency.record(Duration::from_millis(9));
        json.latency.record(Duration::from_secs(20));
        json.note_error("collector unreachable".into());
        let c = Counters::new(vec![Arc::new(json)]);
        c.accepted.add(90);
        c.dropped.add(DropReason::QueueFullNewest, 7);
        c.sampled_out.add(3);
        c.drained.add(90);
        c.high_water_mark.store(512, Relaxed);
        let mut s = c.snapshot(10, 1024);
        s.heartbeat_age = Duration::from_millis(250);
        s.sinks[0].failing_for = Some(Duration::from_millis(1500));
        s
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_sink_snapshot_never_shows_more_done_than_forwarded() {
        // As a snapshot can read them while records flow: the outcomes of records counted
        // after the read of `forwarded` that preceded them.
        let c = SinkCounters::new("json".into(), 100);
        c.forwarded.add(3);
        c.exported.add(4);
        c.failed_permanent.add(2);
        c.dropped.add(DropReason::SinkBufferFull, 1);
        let s = c.snapshot();
        assert_eq!(s.failed, 2);
        assert_eq!(s.forwarded, 7);
        assert_eq!(s.completed(), s.forwarded);
    }

    use super::*;

    #[test]
    fn snapshot_never_counts_evicted_records_as_enqueued() {
        let c = Counters::new(vec![]);
        c.accepted.add(10);
        c.dropped.add(DropReason::QueueFullOldest, 4);
        c.dropped.add(DropReason::QueueFullNewest, 3);
        c.sampled_out.add(2);
        let s = c.snapshot(6, 8);
        assert_eq!(s.enqueued, 6);
        assert_eq!(s.dropped, 7);
        assert_eq!(s.offered, 15);
        assert_eq!(s.dropped_for(DropReason::QueueFullNewest), 3);
    }

    /// The sink thread and a shutdown that gave up on the sink can count losses after export
    /// at once: together they never count more than were exported (each read the room left,
    /// then added, so both could take the same room).
    #[test]
    fn losses_after_export_counted_at_once_stay_within_what_was_exported() {
        let threads = 4;
        for _ in 0..2_000 {
            let c = Arc::new(SinkCounters::new("otlp".into(), 100));
            c.exported.add(10);
            let start = Arc::new(std::sync::Barrier::new(threads));
            let counting: Vec<_> = (0..threads)
                .map(|_| {
                    let (c, start) = (Arc::clone(&c), Arc::clone(&start));
                    std::thread::spawn(move || {
                        start.wait();
                        c.add_lost_after_export(10);
                    })
                })
                .collect();
            for t in counting {
                t.join().unwrap();
            }
            let lost = c.lost_after_export.get();
            assert_eq!(lost, 10, "{lost} lost after export of 10 exported");
        }
    }
}
