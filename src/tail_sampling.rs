//! Tail sampling's settings and its pure decision: [`TailSampling`] (what to keep: traces that
//! failed, that were slow, and a ratio of the rest), its text form for the environment, the
//! live settings a [`Handle`](crate::Handle) changes, and the counters and [`Stats`](crate::Stats)
//! part it reports. The buffering itself is the drain thread's (`pipeline/tail.rs`).
//!
//! The unit is the **local trace**: a local root (a root span, or a span whose parent is in
//! another process) with all its descendants in this process and the events inside them.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crossbeam_utils::CachePadded;
use serde::{Serialize, Serializer};

use crate::clock::Tick;
use crate::counters::Counter;
use crate::ids::TraceId;
use crate::sampling::{ratio_threshold, trace_id_in_ratio, SamplingError};

/// How long a local trace waits for its local root by default before it is decided as is
/// ([`TailSampling::decision_wait`]).
pub const DEFAULT_TAIL_DECISION_WAIT: Duration = Duration::from_secs(30);
/// The default tail-sampling budget: records held at once ([`TailSampling::max_buffered_spans`]).
pub const DEFAULT_TAIL_MAX_BUFFERED_SPANS: usize = 100_000;
/// The largest tail-sampling budget (16 777 216 records).
pub const MAX_TAIL_BUFFERED_SPANS: usize = 1 << 24;

/// Tail sampling: which sampled local traces are written, decided when the trace's local root
/// closes, once everything that happened in it is known. Set it with
/// [`Builder::tail_sampling`](crate::Builder::tail_sampling), `OFFLOAD_TAIL_SAMPLING`, or at run
/// time with [`Handle::set_tail_sampling`](crate::Handle::set_tail_sampling).
///
/// A local trace is kept when any of the criteria set holds; otherwise it is dropped whole and
/// each of its records is counted in `stats.tail_sampling.sampled_out`:
///
/// * [`keep_errors`](Self::keep_errors): a span of the local trace has the field
///   `otel.status_code` with the text `error` (any case), or an event inside it is `ERROR` or
///   critical;
/// * [`keep_slower_than`](Self::keep_slower_than): the local root's duration is longer;
/// * [`keep_ratio`](Self::keep_ratio): the trace id falls within the ratio, by the algorithm of
///   OpenTelemetry's `TraceIdRatioBased` sampler (the one
///   [`TracesSampler::TraceIdRatio`](crate::TracesSampler::TraceIdRatio) uses), so every
///   service with the same ratio keeps the same traces.
///
/// With no criterion set, every sampled trace is dropped (the events the event sampler never
/// samples out are still written, see below).
///
/// ```
/// use std::time::Duration;
/// use tracing_offload::TailSampling;
///
/// let tail = TailSampling::new()
///     .keep_errors()
///     .keep_slower_than(Duration::from_millis(500))
///     .keep_ratio(0.05)
///     .decision_wait(Duration::from_secs(30))
///     .max_buffered_spans(100_000);
/// // The same as text, as `OFFLOAD_TAIL_SAMPLING` takes it:
/// assert_eq!(
///     tail.to_string(),
///     "errors,slow:500ms,ratio:0.05,wait:30s,max_buffered_spans:100000"
/// );
/// assert_eq!("errors,slow:500ms,ratio:0.05".parse::<TailSampling>(), Ok(tail));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TailSampling {
    keep_errors: bool,
    keep_slower_than: Option<Duration>,
    keep_ratio: f64,
    decision_wait: Duration,
    max_buffered_spans: usize,
}

impl Default for TailSampling {
    fn default() -> Self {
        Self::new()
    }
}

// === impl TailSampling ===

impl TailSampling {
    /// No criterion yet (every sampled trace would be dropped), a decision wait of
    /// [`DEFAULT_TAIL_DECISION_WAIT`] and a budget of [`DEFAULT_TAIL_MAX_BUFFERED_SPANS`].
    pub const fn new() -> Self {
        TailSampling {
            keep_errors: false,
            keep_slower_than: None,
            keep_ratio: 0.0,
            decision_wait: DEFAULT_TAIL_DECISION_WAIT,
            max_buffered_spans: DEFAULT_TAIL_MAX_BUFFERED_SPANS,
        }
    }

    /// Keeps every local trace with an error: a span whose `otel.status_code` field is the text
    /// `error` (any case; `tracing-opentelemetry`'s convention, which `sink::Otlp` turns into
    /// the span's status), or an `ERROR` or critical event inside one of its spans. Events the
    /// layer sampled out (by [`Builder::sample_rate`](crate::Builder::sample_rate) with
    /// [`Builder::keep_errors`](crate::Builder::keep_errors) off) are not seen. Default: off.
    pub const fn keep_errors(mut self) -> Self {
        self.keep_errors = true;
        self
    }

    /// Keeps every local trace whose local root lasted longer than `threshold` (from its
    /// creation to its close, monotonic). Default: no threshold.
    pub const fn keep_slower_than(mut self, threshold: Duration) -> Self {
        self.keep_slower_than = Some(threshold);
        self
    }

    /// Keeps this ratio (0.0 to 1.0) of the other local traces, chosen by trace id with the
    /// OpenTelemetry SDK's `TraceIdRatioBased` algorithm: consistent across services and with
    /// the ratio head samplers. Default: 0.0. A ratio outside 0.0..=1.0 fails
    /// [`build`](crate::Builder::build) (and [`Handle::set_tail_sampling`](crate::Handle::set_tail_sampling)).
    pub const fn keep_ratio(mut self, ratio: f64) -> Self {
        // `-0.0` is 0 (shown as `ratio:0`).
        self.keep_ratio = ratio + 0.0;
        self
    }

    /// How long a local trace's records wait for its local root to close, counted from the
    /// first of them reaching the drain thread (default [`DEFAULT_TAIL_DECISION_WAIT`]). A
    /// trace still open then is decided as is: kept if it qualifies already (an error seen,
    /// its trace id in the ratio, or open for longer than the slow threshold), dropped
    /// otherwise; the decision is counted as forced ([`ForcedDecision::DecisionWait`]) and
    /// applies to the trace's later records too. While the drain thread is behind (records
    /// queued because the sinks hold it back), the wait counts in the time the records it
    /// takes were made: a root that closed in time and waits in the queue is not given up on.
    pub const fn decision_wait(mut self, wait: Duration) -> Self {
        self.decision_wait = wait;
        self
    }

    /// The budget: the most records (spans and events alike: each counts one) held at once
    /// waiting for their local root, 1 to [`MAX_TAIL_BUFFERED_SPANS`] (default
    /// [`DEFAULT_TAIL_MAX_BUFFERED_SPANS`]). When a record would go past it, the oldest
    /// undecided trace is decided as is ([`ForcedDecision::BufferFull`]). The undecided traces
    /// are bounded by it too, and so are the remembered early decisions (a few dozen bytes
    /// each; at least 16 384 are remembered, whatever the budget).
    pub const fn max_buffered_spans(mut self, records: usize) -> Self {
        self.max_buffered_spans = records;
        self
    }

    /// Whether traces with an error are kept.
    pub const fn keeps_errors(&self) -> bool {
        self.keep_errors
    }

    /// The slow threshold, if one is set.
    pub const fn slow_threshold(&self) -> Option<Duration> {
        self.keep_slower_than
    }

    /// The ratio of the other traces kept.
    pub const fn ratio(&self) -> f64 {
        self.keep_ratio
    }

    /// The longest a trace waits for its local root.
    pub const fn max_wait(&self) -> Duration {
        self.decision_wait
    }

    /// The most records held at once.
    pub const fn budget(&self) -> usize {
        self.max_buffered_spans
    }

    /// Checks the ratio (0.0 to 1.0) and the budget (1 to [`MAX_TAIL_BUFFERED_SPANS`]).
    pub fn validate(&self) -> Result<(), SamplingError> {
        if !(0.0..=1.0).contains(&self.keep_ratio) {
            return Err(SamplingError::Rate(self.keep_ratio));
        }
        if !(1..=MAX_TAIL_BUFFERED_SPANS).contains(&self.max_buffered_spans) {
            return Err(SamplingError::TailBudget(self.max_buffered_spans));
        }
        Ok(())
    }

    /// Why a local trace with these facts is kept; `None` when it is dropped. The first
    /// criterion that holds is the reason: error, then slow, then ratio.
    pub(crate) fn keep_reason(&self, trace: &TraceFacts) -> Option<KeepReason> {
        if self.keep_errors && trace.error {
            return Some(KeepReason::Error);
        }
        if self.keep_slower_than.is_some_and(|t| trace.duration > t) {
            return Some(KeepReason::Slow);
        }
        if trace_id_in_ratio(trace.trace_id, ratio_threshold(self.keep_ratio)) {
            return Some(KeepReason::Ratio);
        }
        None
    }
}

/// What tail sampling knows of a local trace when it decides.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TraceFacts {
    pub(crate) trace_id: TraceId,
    /// A span with error status, or an `ERROR`/critical event, was seen.
    pub(crate) error: bool,
    /// The local root's duration; for a trace decided before its root closed, a lower bound
    /// (from the earliest record seen to now).
    pub(crate) duration: Duration,
}

/// Why a local trace was kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeepReason {
    Error,
    Slow,
    Ratio,
}

impl KeepReason {
    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for TailSampling {
    /// The text form `OFFLOAD_TAIL_SAMPLING` takes, every setting spelled out:
    /// `errors,slow:500ms,ratio:0.05,wait:30s,max_buffered_spans:100000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.keep_errors {
            f.write_str("errors,")?;
        }
        if let Some(t) = self.keep_slower_than {
            write!(f, "slow:{},", DurationText(t))?;
        }
        write!(
            f,
            "ratio:{},wait:{},max_buffered_spans:{}",
            self.keep_ratio,
            DurationText(self.decision_wait),
            self.max_buffered_spans
        )
    }
}

impl Serialize for TailSampling {
    /// As its text form (see [`Display`](fmt::Display)).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl FromStr for TailSampling {
    type Err = ParseTailSamplingError;

    /// Parses comma-separated items, each at most once (one given twice is an error: which
    /// did the writer mean? adversary pass 65):
    /// `errors`, `slow:<duration>`, `ratio:<0.0 to 1.0>`, `wait:<duration>`,
    /// `max_buffered_spans:<1 to 16777216>`. Durations are a number and a unit: `ns`, `us`
    /// (or `µs`), `ms`, `s` or `m`, in any case (`500ms`, `1.5s`, `2S`). Settings not named
    /// keep their defaults. A text with no item at all (empty, or only commas), or with no
    /// criterion of what to keep (`errors`, `slow:` or `ratio:`, since without one every trace
    /// would be dropped), is an error;
    /// `ratio:0` alone says it on purpose.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut tail = TailSampling::new();
        let mut items = s
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .peekable();
        if items.peek().is_none() {
            return Err(ParseTailSamplingError(s.to_owned()));
        }
        let mut criterion = false;
        let mut seen: Vec<String> = Vec::new();
        for item in items {
            let (key, value) = match item.split_once(':') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (item, None),
            };
            let bad = || ParseTailSamplingError(item.to_owned());
            let key = key.to_ascii_lowercase();
            if seen.contains(&key) {
                return Err(ParseTailSamplingError(format!(
                    "{item} ({key} given twice)"
                )));
            }
            seen.push(key.clone());
            criterion |= matches!(key.as_str(), "errors" | "slow" | "ratio");
            match (key.as_str(), value) {
                ("errors", None) => tail.keep_errors = true,
                ("slow", Some(v)) => {
                    tail.keep_slower_than = Some(parse_duration(v).ok_or_else(bad)?)
                }
                ("ratio", Some(v)) => {
                    tail.keep_ratio = crate::sampling::parse_ratio(v).map_err(|_| bad())?
                }
                ("wait", Some(v)) => tail.decision_wait = parse_duration(v).ok_or_else(bad)?,
                ("max_buffered_spans", Some(v)) => {
                    tail.max_buffered_spans = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_TAIL_BUFFERED_SPANS).contains(n))
                        .ok_or_else(bad)?
                }
                _ => return Err(bad()),
            }
        }
        if !criterion {
            return Err(ParseTailSamplingError(format!(
                "{s} (no errors, slow: or ratio: item: every trace would be dropped)"
            )));
        }
        Ok(tail)
    }
}

/// What the text form of [`TailSampling`] accepts, as an env warning's "expected" text.
pub(crate) const EXPECTED_TAIL_SAMPLING: &str = "off, or comma-separated errors, \
    slow:<duration>, ratio:<0.0 to 1.0>, wait:<duration>, max_buffered_spans:<1 to 16777216> \
    (durations such as 500ms or 2s)";

/// An item of a tail-sampling text that could not be parsed.
///
/// ```
/// use tracing_offload::TailSampling;
/// let e = "errors,slow:fast".parse::<TailSampling>().unwrap_err();
/// assert!(e.to_string().starts_with("invalid tail sampling item \"slow:fast\": use "));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid tail sampling item {0:?}: use {EXPECTED_TAIL_SAMPLING}")]
pub struct ParseTailSamplingError(String);

/// Parses a number with a unit: `ns`, `us` (`µs`), `ms`, `s`, `m`, in any case.
fn parse_duration(s: &str) -> Option<Duration> {
    // The unit starts at the first letter (`µ` included), and is read in any case, like the
    // rule names around it.
    let split = s.find(|c: char| c.is_alphabetic())?;
    let (number, unit) = s.split_at(split);
    let unit = unit.trim().to_lowercase();
    let unit = unit.as_str();
    let seconds_per_unit = match unit {
        "ns" => 1e-9,
        "us" | "µs" | "μs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        _ => return None,
    };
    let number = number.trim();
    if let Ok(whole) = number.parse::<u64>() {
        // Exact for whole numbers (no float rounding).
        return match unit {
            "ns" => Some(Duration::from_nanos(whole)),
            "us" | "µs" | "μs" => Some(Duration::from_micros(whole)),
            "ms" => Some(Duration::from_millis(whole)),
            "s" => Some(Duration::from_secs(whole)),
            _ => whole.checked_mul(60).map(Duration::from_secs),
        };
    }
    let n: f64 = number.parse().ok().filter(|n: &f64| *n >= 0.0)?;
    Duration::try_from_secs_f64(n * seconds_per_unit).ok()
}

/// A duration in the largest of `s`, `ms`, `us`, `ns` that shows it exactly.
struct DurationText(Duration);

impl fmt::Display for DurationText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        let (n, unit) = match nanos {
            n if n % 1_000_000_000 == 0 => (n / 1_000_000_000, "s"),
            n if n % 1_000_000 == 0 => (n / 1_000_000, "ms"),
            n if n % 1_000 == 0 => (n / 1_000, "us"),
            n => (n, "ns"),
        };
        write!(f, "{n}{unit}")
    }
}

/// Why a local trace was decided before its local root closed ("as is").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ForcedDecision {
    /// It waited [`TailSampling::decision_wait`] for its local root.
    DecisionWait,
    /// The budget ([`TailSampling::max_buffered_spans`]) was full and it was the oldest
    /// undecided trace (or the budget was lowered at run time).
    BufferFull,
    /// The pipeline shut down.
    Shutdown,
}

impl ForcedDecision {
    /// Every reason, in a fixed order.
    pub const ALL: [ForcedDecision; 3] = [
        ForcedDecision::DecisionWait,
        ForcedDecision::BufferFull,
        ForcedDecision::Shutdown,
    ];

    /// The snake-case name used in JSON and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            ForcedDecision::DecisionWait => "decision_wait",
            ForcedDecision::BufferFull => "buffer_full",
            ForcedDecision::Shutdown => "shutdown",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ForcedDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The tail-sampling part of [`Stats`](crate::Stats).
///
/// Each record tail sampling drops is counted once in `sampled_out` (and in the pipeline's
/// `sampled_out`, which it is part of); each trace decided is counted once, in one of
/// `traces_kept_error`, `traces_kept_slow`, `traces_kept_ratio` (the first criterion that held)
/// or `traces_dropped`; a trace decided before its local root closed is also counted in
/// `forced_by_reason`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct TailSamplingStats {
    /// The settings in force; `None` when tail sampling is off.
    pub settings: Option<TailSampling>,
    /// Records (spans and events) held now, waiting for their local root.
    pub buffered_records: usize,
    /// Local traces waiting for their local root now.
    pub buffered_traces: usize,
    /// The most records held at once.
    pub high_water_mark: usize,
    /// Records dropped by tail sampling.
    pub sampled_out: u64,
    /// Traces kept for an error.
    pub traces_kept_error: u64,
    /// Traces kept for being slow (and without an error).
    pub traces_kept_slow: u64,
    /// Traces kept by the ratio (neither failed nor slow).
    pub traces_kept_ratio: u64,
    /// Traces dropped.
    pub traces_dropped: u64,
    /// Decisions made before the local root closed, by reason (every reason, in
    /// [`ForcedDecision::ALL`]'s order).
    pub forced_by_reason: Vec<(ForcedDecision, u64)>,
}

impl TailSamplingStats {
    /// Decisions made before the local root closed, all reasons together.
    pub fn forced_decisions(&self) -> u64 {
        self.forced_by_reason.iter().map(|(_, n)| n).sum()
    }

    /// The forced decisions for one reason.
    pub fn forced_for(&self, reason: ForcedDecision) -> u64 {
        self.forced_by_reason
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }

    /// Traces decided, kept or dropped.
    pub fn traces_decided(&self) -> u64 {
        self.traces_kept_error
            + self.traces_kept_slow
            + self.traces_kept_ratio
            + self.traces_dropped
    }
}

/// Tail sampling's counters, updated by the drain thread (`Relaxed`: they only count, see
/// `counters.rs`), read by snapshots.
#[derive(Debug, Default)]
pub(crate) struct TailCounters {
    /// Records dropped.
    pub(crate) sampled_out: Counter,
    /// Traces kept, by [`KeepReason`].
    kept: [Counter; 3],
    pub(crate) traces_dropped: Counter,
    forced: [Counter; ForcedDecision::ALL.len()],
    /// The drain thread's gauges, on a cache line of their own: the drain writes them every
    /// batch, and no calling thread's data may share the line.
    pub(crate) gauges: CachePadded<DrainGauges>,
}

/// Gauges only the drain thread writes, published once per batch or loop.
#[derive(Debug, Default)]
pub(crate) struct DrainGauges {
    /// Records held now (undecided).
    pub(crate) buffered_records: AtomicUsize,
    pub(crate) buffered_traces: AtomicUsize,
    pub(crate) high_water_mark: AtomicUsize,
    /// Records ready for the sinks that wait for room in their buffers.
    pub(crate) backlog: AtomicUsize,
    /// `buffered_records + backlog`, stored at once: what the drain thread holds, for flush
    /// and shutdown (the two gauges read one after the other could be caught half-updated).
    pub(crate) held: AtomicU64,
    /// Records the drain thread has put in its backlog for the sinks, and taken from it
    /// (handed over, or abandoned at the shutdown deadline): a flush also waits for the
    /// records released (e.g. by a trace decided early) before it was called.
    pub(crate) backlog_pushed: AtomicU64,
    pub(crate) backlog_taken: AtomicU64,
}

impl TailCounters {
    pub(crate) fn kept(&self, reason: KeepReason) {
        self.kept[reason.index()].incr();
    }

    pub(crate) fn forced(&self, reason: ForcedDecision) {
        self.forced[reason.index()].incr();
    }

    /// Records the drain thread holds now: undecided, and decided but not yet handed over.
    pub(crate) fn held_by_drain(&self) -> u64 {
        self.gauges.held.load(Ordering::Relaxed)
    }

    pub(crate) fn snapshot(&self, settings: Option<TailSampling>) -> TailSamplingStats {
        TailSamplingStats {
            settings,
            buffered_records: self.gauges.buffered_records.load(Ordering::Relaxed),
            buffered_traces: self.gauges.buffered_traces.load(Ordering::Relaxed),
            high_water_mark: self.gauges.high_water_mark.load(Ordering::Relaxed),
            sampled_out: self.sampled_out.get(),
            traces_kept_error: self.kept[KeepReason::Error.index()].get(),
            traces_kept_slow: self.kept[KeepReason::Slow.index()].get(),
            traces_kept_ratio: self.kept[KeepReason::Ratio.index()].get(),
            traces_dropped: self.traces_dropped.get(),
            forced_by_reason: ForcedDecision::ALL
                .iter()
                .map(|r| (*r, self.forced[r.index()].get()))
                .collect(),
        }
    }
}

/// The tail-sampling settings in force, shared by the handles (which change them) and the
/// drain thread (which applies them).
///
/// Every change is also logged with its time, for the drain thread to apply in order, each to
/// the records offered after it: the drain thread comes to records late (a queue's backlog, a
/// stalled sink), and the newest settings alone would judge records offered before they were
/// set, and merge two switches made in that time into one (adversary pass 28).
#[derive(Debug, Default)]
pub(crate) struct TailControl {
    state: Mutex<ControlState>,
    /// Bumped on every change; the drain thread compares it before each record.
    generation: AtomicU64,
}

#[derive(Debug, Default)]
struct ControlState {
    /// The settings in force (the newest set).
    settings: Option<TailSampling>,
    /// The changes the drain thread has not taken yet, oldest first, with when each was made
    /// (the calling thread's clock). At most [`MAX_PENDING_SWITCHES`]: past that, the two
    /// oldest are merged into one (the newer's settings from the older's time).
    switches: VecDeque<Switch>,
}

/// A change of the tail-sampling settings, and when it was made.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Switch {
    pub(crate) settings: Option<TailSampling>,
    pub(crate) at: Tick,
}

/// The most changes kept for the drain thread before it applies them (see [`TailControl`]).
const MAX_PENDING_SWITCHES: usize = 1024;

/// Adds `switch` to the end of `log`: past [`MAX_PENDING_SWITCHES`], the two oldest become one
/// from the older's time (the drain thread applies none: stopped, or held back by a sink), with
/// the settings that keep more: off if either is (the records made while it was off are then
/// not tail-sampled), else the newer's. (The newer's always dated an "on" from an earlier "off",
/// and the records made while off could be dropped.)
fn push_switch(log: &mut VecDeque<Switch>, switch: Switch) {
    if log.len() >= MAX_PENDING_SWITCHES {
        if let Some(oldest) = log.pop_front() {
            if let Some(next) = log.front_mut() {
                next.at = oldest.at;
                if oldest.settings.is_none() {
                    next.settings = None;
                }
            }
        }
    }
    log.push_back(switch);
}

impl TailControl {
    pub(crate) fn new(settings: Option<TailSampling>) -> Self {
        TailControl {
            state: Mutex::new(ControlState {
                settings,
                switches: VecDeque::new(),
            }),
            generation: AtomicU64::new(0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ControlState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The settings in force (the newest set).
    pub(crate) fn get(&self) -> Option<TailSampling> {
        self.state().settings
    }

    /// For a new drain thread: the settings in force, the changes before them dropped.
    pub(crate) fn start(&self) -> Option<TailSampling> {
        let mut state = self.state();
        state.switches.clear();
        state.settings
    }

    /// Moves the changes made since the last call to the end of `into` (the drain thread's
    /// changes not applied yet), oldest first; `into` stays within [`MAX_PENDING_SWITCHES`].
    pub(crate) fn take_switches(&self, into: &mut VecDeque<Switch>) {
        for switch in self.state().switches.drain(..) {
            push_switch(into, switch);
        }
    }

    /// Replaces the settings (validated by the caller).
    pub(crate) fn set(&self, settings: Option<TailSampling>) {
        let mut state = self.state();
        // Bumped under the lock, before the change's time is taken: a drain thread that sees
        // the generation of a change takes the lock after it, and finds the change logged; a
        // record made after the change's time was made after the bump.
        self.generation.fetch_add(1, Ordering::Release);
        let at = Tick::now();
        state.settings = settings;
        push_switch(&mut state.switches, Switch { settings, at });
    }

    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        // Acquire: pairs with the Release in `set`.
        self.generation.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_logged_in_order_and_a_full_log_merges_its_oldest() {
        let control = TailControl::new(None);
        let ratio = |r: f64| Some(TailSampling::new().keep_ratio(r));
        let before = control.generation();
        control.set(ratio(0.5));
        control.set(None);
        assert_eq!(control.generation(), before + 2);
        let mut taken = VecDeque::new();
        control.take_switches(&mut taken);
        assert_eq!(taken.len(), 2);
        assert_eq!(taken[0].settings, ratio(0.5));
        assert_eq!(taken[1].settings, None);
        assert!(taken[0].at <= taken[1].at);
        control.take_switches(&mut taken);
        assert_eq!(taken.len(), 2, "taken once");

        // A drain thread that takes nothing: the log stays bounded, the newest last, and the
        // first change's time is kept (merged into the next).
        let mut first_at = None;
        for i in 0..MAX_PENDING_SWITCHES + 10 {
            control.set(ratio(i as f64 / 4096.0));
            if first_at.is_none() {
                let mut peek = VecDeque::new();
                control.take_switches(&mut peek);
                first_at = Some(peek[0].at);
                control.state().switches.extend(peek);
            }
        }
        let mut log = VecDeque::new();
        control.take_switches(&mut log);
        assert_eq!(log.len(), MAX_PENDING_SWITCHES);
        assert_eq!(log[0].at, first_at.unwrap());
        let last = (MAX_PENDING_SWITCHES + 9) as f64 / 4096.0;
        assert_eq!(log.back().unwrap().settings, ratio(last));
        assert!(log
            .iter()
            .zip(log.iter().skip(1))
            .all(|(a, b)| a.at <= b.at));
        assert_eq!(control.get(), ratio(last));
        // Taken into a list of changes not applied yet (a drain thread held back): it stays
        // bounded too, the newest last.
        for _ in 0..5 {
            control.set(ratio(1.0));
        }
        control.take_switches(&mut log);
        assert_eq!(log.len(), MAX_PENDING_SWITCHES);
        assert_eq!(log.back().unwrap().settings, ratio(1.0));
        assert_eq!(log[0].at, first_at.unwrap());
        // A new drain thread starts from the settings in force, with no change to apply.
        control.set(None);
        assert_eq!(control.start(), None);
        control.take_switches(&mut log);
        assert_eq!(log.len(), MAX_PENDING_SWITCHES);

        // Merged, an "off" and the "on" after it are off from the older's time: the records
        // made while it was off are not tail-sampled (the "on" was dated from the "off").
        let mut log = VecDeque::new();
        let at = |n: u64| Tick::from_raw(n);
        push_switch(
            &mut log,
            Switch {
                settings: None,
                at: at(1),
            },
        );
        for n in 2..=MAX_PENDING_SWITCHES as u64 + 1 {
            push_switch(
                &mut log,
                Switch {
                    settings: ratio(0.5),
                    at: at(n),
                },
            );
        }
        assert_eq!(log.len(), MAX_PENDING_SWITCHES);
        assert_eq!((log[0].settings, log[0].at), (None, at(1)));
        assert_eq!(log[1].settings, ratio(0.5));
    }

    #[test]
    fn a_text_without_a_criterion_is_an_error_not_a_drop_everything() {
        for bad in [
            "wait:5s",
            "max_buffered_spans:10",
            "wait:1s,max_buffered_spans:5",
            ",",
        ] {
            assert!(bad.parse::<TailSampling>().is_err(), "{bad:?}");
        }
        for good in [
            "ratio:0",
            "errors,wait:1s",
            "slow:1s",
            "ratio:0.5,max_buffered_spans:9",
        ] {
            assert!(good.parse::<TailSampling>().is_ok(), "{good:?}");
        }
    }

    #[test]
    fn text_round_trips_and_bad_items_are_errors() {
        for text in [
            "errors,slow:500ms,ratio:0.05,wait:30s,max_buffered_spans:100000",
            "ratio:0,wait:1500us,max_buffered_spans:1",
            "errors,slow:7ns,ratio:1,wait:0s,max_buffered_spans:16777216",
        ] {
            let t: TailSampling = text.parse().unwrap();
            assert_eq!(t.to_string(), text);
        }
        let t: TailSampling = " Errors , slow: 1.5s ,ratio:0.25, wait:2m".parse().unwrap();
        assert!(t.keeps_errors());
        assert_eq!(t.slow_threshold(), Some(Duration::from_millis(1500)));
        assert_eq!(t.max_wait(), Duration::from_secs(120));
        assert_eq!(t.budget(), DEFAULT_TAIL_MAX_BUFFERED_SPANS);
        // Units are read in any case, like the names; `µs` (micro sign or Greek mu) is `us`.
        let t: TailSampling = "SLOW:1S,WAIT:500MS".parse().unwrap();
        assert_eq!(t.slow_threshold(), Some(Duration::from_secs(1)));
        assert_eq!(t.max_wait(), Duration::from_millis(500));
        for micros in ["slow:500µs", "slow:500μs", "slow:0.5ms", "slow:500US"] {
            let t: TailSampling = micros.parse().unwrap();
            assert_eq!(
                t.slow_threshold(),
                Some(Duration::from_micros(500)),
                "{micros}"
            );
        }
        for bad in [
            "slow",
            "slow:500",
            "slow:-1s",
            "slow:1h",
            "ratio:1.5",
            "ratio:0,05",
            "errors:yes",
            "max_buffered_spans:0",
            "max_buffered_spans:16777217",
            "fast",
            "wait:NaNs",
        ] {
            assert!(bad.parse::<TailSampling>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_ratio_of_minus_zero_set_in_code_is_zero() {
        let t = TailSampling::new().keep_errors().keep_ratio(-0.0);
        assert_eq!(
            t.to_string(),
            "errors,ratio:0,wait:30s,max_buffered_spans:100000"
        );
    }

    /// An item given twice (`ratio:0.01,…,ratio:0.5`: an edit that left the old value in) is
    /// an error, in any case; it kept the last value without a word (adversary pass 65).
    #[test]
    fn an_item_given_twice_is_an_error() {
        for text in [
            "errors,ratio:0.01,ratio:0.5",
            "slow:5s,errors,SLOW:10ms",
            "errors,errors",
        ] {
            let e = text.parse::<TailSampling>().unwrap_err();
            assert!(e.to_string().contains("given twice"), "{text}: {e}");
        }
        assert!("errors,ratio:0.5,wait:1s".parse::<TailSampling>().is_ok());
    }

    #[test]
    fn validate_checks_the_ratio_and_the_budget() {
        assert!(TailSampling::new().keep_ratio(0.5).validate().is_ok());
        assert!(TailSampling::new().keep_ratio(f64::NAN).validate().is_err());
        assert_eq!(
            TailSampling::new().max_buffered_spans(0).validate(),
            Err(SamplingError::TailBudget(0))
        );
    }

    #[test]
    fn the_reason_is_the_first_criterion_that_holds() {
        let tail = TailSampling::new()
            .keep_errors()
            .keep_slower_than(Duration::from_millis(10));
        let in_none = TraceId::from_u128(u128::MAX); // outside any ratio below 1
        let facts = |error, ms| TraceFacts {
            trace_id: in_none,
            error,
            duration: Duration::from_millis(ms),
        };
        assert_eq!(tail.keep_reason(&facts(true, 50)), Some(KeepReason::Error));
        assert_eq!(tail.keep_reason(&facts(false, 50)), Some(KeepReason::Slow));
        assert_eq!(tail.keep_reason(&facts(false, 10)), None); // "slower than": strictly
        let everything = tail.keep_ratio(1.0);
        assert_eq!(
            everything.keep_reason(&facts(false, 1)),
            Some(KeepReason::Ratio)
        );
        let errors_off = TailSampling::new();
        assert_eq!(errors_off.keep_reason(&facts(true, 50)), None);
    }
}
