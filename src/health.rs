//! [`Health`]: whether telemetry is flowing, computed from a [`Stats`] snapshot by documented
//! rules. Read-only: checking health changes nothing in the pipeline.
//!
//! # Components and rules
//!
//! The overall status is the worst status of the components.
//!
//! | component | degraded when | unhealthy when |
//! |---|---|---|
//! | `queue` | depth ≥ [`queue_saturation`](HealthConfig::queue_saturation) × capacity, or records were dropped before the drain thread within the last [`drop_window`](HealthConfig::drop_window) | — |
//! | `drain` | — | the drain thread has stopped (died or shut down), or its heartbeat is older than [`heartbeat_timeout`](HealthConfig::heartbeat_timeout) |
//! | `sink:<name>` | the sink's last export failed; its collector is unreachable and it is spooling (a sink with a spool); one `export` (or `flush`) call has been running for longer than [`export_stuck_after`](HealthConfig::export_stuck_after), whatever the traffic, or (a sink with a spool) a request has waited that long for the collector's answer (stuck); its buffer, or its spool's budget, is ≥ [`sink_buffer_saturation`](HealthConfig::sink_buffer_saturation) full (stalled); or it dropped records (or lost spooled ones: evicted, corrupt, rejected, or learned that records it exported may be lost: `lost_after_export`) within the last `drop_window` | it has been failing, or its collector unreachable or not answering, for longer than [`sink_failing_timeout`](HealthConfig::sink_failing_timeout), or it was disabled after a panic |
//! | `open_spans` | a span has been open longer than [`stuck_span_after`](HealthConfig::stuck_span_after), or more than [`max_open_spans`](HealthConfig::max_open_spans) spans are open | — |
//! | `tail_sampling` (when on) | it holds ≥ [`tail_buffer_saturation`](HealthConfig::tail_buffer_saturation) × its budget, or it decided traces early because its budget was full within the last `drop_window` (they may be written in part, or dropped though they would have qualified) | — |
//!
//! A sink with a spool also shows it in [`ComponentHealth::spool`]: its bytes, the age of its
//! oldest request, whether it is replaying, which signals are unreachable, and how long the
//! oldest request still waiting for the collector's answer has waited.
//!
//! "Within the last window" needs memory of earlier checks: [`HealthMonitor`] keeps the last
//! drop totals and when they last grew. Drops seen on the first check count as recent.
//!
//! ```
//! use tracing_offload::health::{HealthConfig, HealthMonitor, HealthStatus};
//! use tracing_offload::OffloadLayer;
//!
//! let (_layer, guard) = OffloadLayer::builder().build()?;
//! let handle = guard.handle();
//! let monitor = HealthMonitor::new(HealthConfig::default());
//! let health = monitor.check(&handle.stats(), handle.is_running());
//! assert_eq!(health.status, HealthStatus::Healthy);
//! assert!(health.is_healthy());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::{Serialize, Serializer};

use crate::record::rfc3339;
use crate::stats::{SinkStats, SpoolStats, Stats};

/// Default for [`HealthConfig::queue_saturation`]: the queue is saturated at 90% full.
pub const DEFAULT_QUEUE_SATURATION: f64 = 0.9;
/// Default for [`HealthConfig::sink_buffer_saturation`]: a sink buffer 90% full means the
/// sink is not keeping up (stalled).
pub const DEFAULT_SINK_BUFFER_SATURATION: f64 = 0.9;
/// Default for [`HealthConfig::drop_window`]: drops in the last minute make a component
/// degraded.
pub const DEFAULT_DROP_WINDOW: Duration = Duration::from_secs(60);
/// Default for [`HealthConfig::heartbeat_timeout`]: the drain thread beats at least every
/// flush interval (10 ms by default), and at least once a second whatever the flush interval;
/// 5 s without a beat means it is stuck. Keep the timeout above a second.
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default for [`HealthConfig::sink_failing_timeout`]: a sink failing for a minute without a
/// success is unhealthy.
pub const DEFAULT_SINK_FAILING_TIMEOUT: Duration = Duration::from_secs(60);
/// Default for [`HealthConfig::export_stuck_after`]: one export call running for 5 s means the
/// sink is stuck (an OTLP collector that accepts the connection and never answers, a file on
/// a hung network mount), even when too few records arrive to fill its buffer.
pub const DEFAULT_EXPORT_STUCK_AFTER: Duration = Duration::from_secs(5);
/// Default for [`HealthConfig::stuck_span_after`]: a span open for 10 minutes is stuck.
pub const DEFAULT_STUCK_SPAN_AFTER: Duration = Duration::from_secs(600);
/// Default for [`HealthConfig::max_open_spans`]: more open spans than this suggests a leak.
pub const DEFAULT_MAX_OPEN_SPANS: u64 = 100_000;
/// Default for [`HealthConfig::tail_buffer_saturation`]: tail sampling holding 90% of its
/// budget is about to decide traces early.
pub const DEFAULT_TAIL_BUFFER_SATURATION: f64 = 0.9;

/// Thresholds of the health rules. Every field has a `DEFAULT_*` constant.
///
/// | field | default |
/// |---|---|
/// | `queue_saturation` | [`DEFAULT_QUEUE_SATURATION`] (0.9) |
/// | `sink_buffer_saturation` | [`DEFAULT_SINK_BUFFER_SATURATION`] (0.9) |
/// | `drop_window` | [`DEFAULT_DROP_WINDOW`] (60 s) |
/// | `heartbeat_timeout` | [`DEFAULT_HEARTBEAT_TIMEOUT`] (5 s) |
/// | `sink_failing_timeout` | [`DEFAULT_SINK_FAILING_TIMEOUT`] (60 s) |
/// | `export_stuck_after` | [`DEFAULT_EXPORT_STUCK_AFTER`] (5 s) |
/// | `stuck_span_after` | [`DEFAULT_STUCK_SPAN_AFTER`] (10 min) |
/// | `max_open_spans` | [`DEFAULT_MAX_OPEN_SPANS`] (100 000) |
/// | `tail_buffer_saturation` | [`DEFAULT_TAIL_BUFFER_SATURATION`] (0.9) |
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct HealthConfig {
    /// Fraction of the queue's capacity (0–1) at which the queue is degraded.
    pub queue_saturation: f64,
    /// Fraction of a sink buffer's capacity (0–1) at which the sink is degraded (stalled).
    pub sink_buffer_saturation: f64,
    /// Drops within this window make the queue or the sink degraded.
    pub drop_window: Duration,
    /// A drain heartbeat older than this makes the drain unhealthy.
    pub heartbeat_timeout: Duration,
    /// A sink failing for longer than this (no success in between) is unhealthy.
    pub sink_failing_timeout: Duration,
    /// A sink whose current `export` (or `flush`) call has been running for longer than this is
    /// degraded (stuck), however few records it has buffered
    /// ([`SinkStats::export_in_progress_for`](crate::SinkStats::export_in_progress_for)).
    pub export_stuck_after: Duration,
    /// A span open longer than this is stuck: `open_spans` is degraded.
    pub stuck_span_after: Duration,
    /// More open spans than this make `open_spans` degraded.
    pub max_open_spans: u64,
    /// Fraction of tail sampling's budget (0–1) at which `tail_sampling` is degraded.
    pub tail_buffer_saturation: f64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            queue_saturation: DEFAULT_QUEUE_SATURATION,
            sink_buffer_saturation: DEFAULT_SINK_BUFFER_SATURATION,
            drop_window: DEFAULT_DROP_WINDOW,
            heartbeat_timeout: DEFAULT_HEARTBEAT_TIMEOUT,
            sink_failing_timeout: DEFAULT_SINK_FAILING_TIMEOUT,
            export_stuck_after: DEFAULT_EXPORT_STUCK_AFTER,
            stuck_span_after: DEFAULT_STUCK_SPAN_AFTER,
            max_open_spans: DEFAULT_MAX_OPEN_SPANS,
            tail_buffer_saturation: DEFAULT_TAIL_BUFFER_SATURATION,
        }
    }
}

// === impl HealthConfig ===

impl HealthConfig {
    /// Sets [`queue_saturation`](Self::queue_saturation) (clamped to 0–1).
    pub fn queue_saturation(mut self, fraction: f64) -> Self {
        self.queue_saturation = clamp_fraction(fraction, DEFAULT_QUEUE_SATURATION);
        self
    }

    /// Sets [`sink_buffer_saturation`](Self::sink_buffer_saturation) (clamped to 0–1).
    pub fn sink_buffer_saturation(mut self, fraction: f64) -> Self {
        self.sink_buffer_saturation = clamp_fraction(fraction, DEFAULT_SINK_BUFFER_SATURATION);
        self
    }

    /// Sets [`drop_window`](Self::drop_window).
    pub fn drop_window(mut self, window: Duration) -> Self {
        self.drop_window = window;
        self
    }

    /// Sets [`heartbeat_timeout`](Self::heartbeat_timeout).
    pub fn heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.heartbeat_timeout = timeout;
        self
    }

    /// Sets [`sink_failing_timeout`](Self::sink_failing_timeout).
    pub fn sink_failing_timeout(mut self, timeout: Duration) -> Self {
        self.sink_failing_timeout = timeout;
        self
    }

    /// Sets [`export_stuck_after`](Self::export_stuck_after).
    pub fn export_stuck_after(mut self, age: Duration) -> Self {
        self.export_stuck_after = age;
        self
    }

    /// Sets [`stuck_span_after`](Self::stuck_span_after).
    pub fn stuck_span_after(mut self, age: Duration) -> Self {
        self.stuck_span_after = age;
        self
    }

    /// Sets [`max_open_spans`](Self::max_open_spans).
    pub fn max_open_spans(mut self, n: u64) -> Self {
        self.max_open_spans = n;
        self
    }

    /// Sets [`tail_buffer_saturation`](Self::tail_buffer_saturation) (clamped to 0–1).
    pub fn tail_buffer_saturation(mut self, fraction: f64) -> Self {
        self.tail_buffer_saturation = clamp_fraction(fraction, DEFAULT_TAIL_BUFFER_SATURATION);
        self
    }
}

fn clamp_fraction(f: f64, default: f64) -> f64 {
    if f.is_nan() {
        default
    } else {
        f.clamp(0.0, 1.0)
    }
}

/// A health status, ordered from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Working as intended.
    Healthy,
    /// Working, but losing or about to lose records, or a sink is failing.
    Degraded,
    /// Not working: records are not flowing to at least one destination.
    Unhealthy,
}

impl HealthStatus {
    /// `"healthy"`, `"degraded"` or `"unhealthy"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The health of one part of the pipeline.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct ComponentHealth {
    /// `queue`, `drain`, `open_spans`, `tail_sampling`, or `sink:<name>`.
    pub name: String,
    /// The component's status.
    pub status: HealthStatus,
    /// What the status is based on, e.g. `"812 of 1024 records queued"`.
    pub message: String,
    /// When this was computed.
    #[serde(serialize_with = "ser_time")]
    pub checked_at: SystemTime,
    /// Sinks only: the last export error (for a sink with a spool, the newer of its exports'
    /// and its spool's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Sinks only: when [`last_error`](Self::last_error) happened.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_time"
    )]
    pub last_error_at: Option<SystemTime>,
    /// Sinks only: when the last export succeeded.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_opt_time"
    )]
    pub last_success_at: Option<SystemTime>,
    /// Sinks with a spool only: what it holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spool: Option<SpoolHealth>,
}

/// A sink's spool in [`ComponentHealth`] (serialised with durations in seconds).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SpoolHealth {
    /// Bytes on disk.
    pub bytes: u64,
    /// The budget in bytes.
    pub max_bytes: u64,
    /// Records waiting in it.
    pub records: u64,
    /// How long ago its oldest request was written, in seconds (0 when it is empty).
    pub oldest_age_seconds: f64,
    /// Whether it is being replayed (it holds requests and the collector is reachable).
    pub replaying: bool,
    /// How long the collector has been unreachable, in seconds (absent when it is reachable):
    /// the longer outage of the two signals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable_seconds: Option<f64>,
    /// The signals whose endpoint is unreachable: `"spans"`, `"logs"` (absent when none is).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreachable_signals: Vec<&'static str>,
    /// How long the oldest request still waiting for the collector's answer has waited, in
    /// seconds (absent when none waits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unanswered_seconds: Option<f64>,
}

impl SpoolHealth {
    fn of(spool: &SpoolStats) -> SpoolHealth {
        SpoolHealth {
            bytes: spool.bytes,
            max_bytes: spool.max_bytes,
            records: spool.records,
            oldest_age_seconds: spool.oldest_age.unwrap_or_default().as_secs_f64(),
            replaying: spool.replaying,
            unreachable_seconds: spool.unreachable_for.map(|d| d.as_secs_f64()),
            unreachable_signals: spool.unreachable_signals.clone(),
            unanswered_seconds: spool.unanswered_for.map(|d| d.as_secs_f64()),
        }
    }
}

/// The pipeline's health: an overall status and one entry per component.
///
/// Serialises to JSON as
/// `{"status":"healthy","uptime_seconds":12.5,"checked_at":"…","components":[…]}`.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct Health {
    /// The worst status of the components.
    pub status: HealthStatus,
    /// Time since the pipeline was built.
    pub uptime_seconds: f64,
    /// When this was computed.
    #[serde(serialize_with = "ser_time")]
    pub checked_at: SystemTime,
    /// Every component, in the order queue, drain, open_spans, tail_sampling (when it is on),
    /// then each sink.
    pub components: Vec<ComponentHealth>,
}

// === impl Health ===

impl Health {
    /// Whether the overall status is [`HealthStatus::Healthy`].
    pub fn is_healthy(&self) -> bool {
        self.status == HealthStatus::Healthy
    }

    /// Whether records still flow: healthy or degraded (what a readiness probe wants).
    pub fn is_serving(&self) -> bool {
        self.status != HealthStatus::Unhealthy
    }

    /// The component with this name.
    pub fn component(&self, name: &str) -> Option<&ComponentHealth> {
        self.components.iter().find(|c| c.name == name)
    }

    /// The health as a JSON string.
    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

fn ser_time<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

fn ser_opt_time<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&rfc3339(*t)),
        None => s.serialize_none(),
    }
}

/// Computes [`Health`] from snapshots, remembering drop totals between checks so that "drops
/// within the last window" can be told. Cheap; share it (`Send + Sync`).
#[derive(Debug)]
pub struct HealthMonitor {
    config: HealthConfig,
    window: Mutex<DropWindow>,
}

/// Drop totals seen by earlier checks and when each last grew.
#[derive(Debug, Default)]
struct DropWindow {
    queue: Seen,
    /// Tail sampling's decisions forced by a full budget.
    tail_full: Seen,
    sinks: HashMap<String, Seen>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    total: u64,
    grew_at: Option<Instant>,
}

impl Seen {
    /// Records `total` at `now` and says whether it grew within `window`.
    fn update(&mut self, total: u64, now: Instant, window: Duration) -> bool {
        if total > self.total {
            self.grew_at = Some(now);
        }
        self.total = total;
        self.grew_at
            .is_some_and(|t| now.saturating_duration_since(t) < window)
    }
}

/// What the drop window says about the current snapshot.
#[derive(Debug, Default, Clone)]
struct RecentDrops {
    queue: bool,
    tail_full: bool,
    sinks: Vec<String>,
}

// === impl HealthMonitor ===

impl HealthMonitor {
    /// A monitor applying `config`'s thresholds.
    pub fn new(config: HealthConfig) -> Self {
        HealthMonitor {
            config,
            window: Mutex::new(DropWindow::default()),
        }
    }

    /// The thresholds in use.
    pub fn config(&self) -> &HealthConfig {
        &self.config
    }

    /// Computes the health of a snapshot. `drain_running` is whether the drain thread is alive
    /// ([`Handle::is_running`](crate::Handle::is_running)).
    pub fn check(&self, stats: &Stats, drain_running: bool) -> Health {
        let recent = self.update_window(stats, Instant::now());
        evaluate(
            &self.config,
            stats,
            drain_running,
            &recent,
            SystemTime::now(),
        )
    }

    fn update_window(&self, stats: &Stats, now: Instant) -> RecentDrops {
        let window = self.config.drop_window;
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let queue = w.queue.update(stats.dropped, now, window);
        let full = stats
            .tail_sampling
            .forced_for(crate::ForcedDecision::BufferFull);
        let tail_full = w.tail_full.update(full, now, window);
        let sinks = stats
            .sinks
            .iter()
            .filter(|s| {
                w.sinks.entry(s.name.clone()).or_default().update(
                    s.dropped
                        .saturating_add(s.spool.as_ref().map_or(0, |p| p.lost()))
                        .saturating_add(s.lost_after_export),
                    now,
                    window,
                )
            })
            .map(|s| s.name.clone())
            .collect();
        RecentDrops {
            queue,
            tail_full,
            sinks,
        }
    }
}

impl Default for HealthMonitor {
    fn default() -> Self {
        HealthMonitor::new(HealthConfig::default())
    }
}

// === the rules ===

fn evaluate(
    config: &HealthConfig,
    stats: &Stats,
    drain_running: bool,
    recent: &RecentDrops,
    now: SystemTime,
) -> Health {
    let mut components = vec![
        queue_health(config, stats, recent.queue),
        drain_health(config, stats, drain_running),
        open_spans_health(config, stats),
    ];
    if stats.tail_sampling.settings.is_some() {
        components.push(tail_health(config, stats, recent.tail_full));
    }
    for sink in &stats.sinks {
        let dropped_recently = recent.sinks.contains(&sink.name);
        components.push(sink_health(config, sink, dropped_recently));
    }
    for c in &mut components {
        c.checked_at = now;
    }
    Health {
        status: components
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(HealthStatus::Healthy),
        uptime_seconds: stats.uptime.as_secs_f64(),
        checked_at: now,
        components,
    }
}

fn component(name: impl Into<String>, status: HealthStatus, message: String) -> ComponentHealth {
    ComponentHealth {
        name: name.into(),
        status,
        message,
        checked_at: SystemTime::UNIX_EPOCH,
        last_error: None,
        last_error_at: None,
        last_success_at: None,
        spool: None,
    }
}

fn is_saturated(depth: usize, capacity: usize, fraction: f64) -> bool {
    capacity > 0 && depth as f64 >= fraction * capacity as f64
}

fn drop_summary(by_reason: &[(crate::DropReason, u64)]) -> String {
    by_reason
        .iter()
        .map(|(r, n)| format!("{r}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn queue_health(config: &HealthConfig, stats: &Stats, dropped_recently: bool) -> ComponentHealth {
    let fill = format!("{} of {} records queued", stats.queue_depth, stats.capacity);
    let saturated = is_saturated(stats.queue_depth, stats.capacity, config.queue_saturation);
    // Both conditions are named when both hold: a saturated queue is usually also dropping,
    // and the message must not hide the loss.
    let drops = dropped_recently.then(|| {
        format!(
            "records dropped within the last {:?} ({} in total: {})",
            config.drop_window,
            stats.dropped,
            drop_summary(&stats.dropped_by_reason)
        )
    });
    match (saturated, drops) {
        (true, Some(drops)) => {
            let msg = format!("saturated: {fill}; {drops}");
            component("queue", HealthStatus::Degraded, msg)
        }
        (true, None) => component(
            "queue",
            HealthStatus::Degraded,
            format!("saturated: {fill}"),
        ),
        (false, Some(drops)) => {
            component("queue", HealthStatus::Degraded, format!("{drops}; {fill}"))
        }
        (false, None) => component("queue", HealthStatus::Healthy, fill),
    }
}

fn drain_health(config: &HealthConfig, stats: &Stats, running: bool) -> ComponentHealth {
    let age = stats.heartbeat_age;
    if !running {
        let msg = "the drain thread has stopped; records are not being delivered".to_owned();
        return component("drain", HealthStatus::Unhealthy, msg);
    }
    if age > config.heartbeat_timeout {
        let msg = format!(
            "heartbeat is {age:?} old (limit {:?}): the drain thread is stuck",
            config.heartbeat_timeout
        );
        return component("drain", HealthStatus::Unhealthy, msg);
    }
    let msg = format!("running; last heartbeat {age:?} ago");
    component("drain", HealthStatus::Healthy, msg)
}

fn open_spans_health(config: &HealthConfig, stats: &Stats) -> ComponentHealth {
    let n = stats.open_spans;
    if let Some(age) = stats
        .oldest_open_span_age
        .filter(|a| *a > config.stuck_span_after)
    {
        let msg = format!(
            "{n} spans open; the oldest has been open for {age:?} (limit {:?}): stuck span",
            config.stuck_span_after
        );
        return component("open_spans", HealthStatus::Degraded, msg);
    }
    if n > config.max_open_spans {
        let msg = format!(
            "{n} spans open (limit {}): spans are not being closed",
            config.max_open_spans
        );
        return component("open_spans", HealthStatus::Degraded, msg);
    }
    component(
        "open_spans",
        HealthStatus::Healthy,
        format!("{n} spans open"),
    )
}

fn tail_health(config: &HealthConfig, stats: &Stats, forced_recently: bool) -> ComponentHealth {
    let tail = &stats.tail_sampling;
    let budget = tail.settings.map_or(0, |t| t.budget());
    let fill = format!(
        "{} of {budget} records held in {} traces; {} traces decided, {} records sampled out",
        tail.buffered_records,
        tail.buffered_traces,
        tail.traces_decided(),
        tail.sampled_out
    );
    let full = is_saturated(tail.buffered_records, budget, config.tail_buffer_saturation);
    let forced = forced_recently.then(|| {
        format!(
            "traces decided before their local root closed because the budget was full, within \
             the last {:?} ({} in total): raise max_buffered_spans or lower decision_wait",
            config.drop_window,
            tail.forced_for(crate::ForcedDecision::BufferFull)
        )
    });
    match (full, forced) {
        (_, Some(forced)) => component(
            "tail_sampling",
            HealthStatus::Degraded,
            format!("{forced}; {fill}"),
        ),
        (true, None) => component(
            "tail_sampling",
            HealthStatus::Degraded,
            format!("nearly full: {fill}"),
        ),
        (false, None) => component("tail_sampling", HealthStatus::Healthy, fill),
    }
}

fn sink_health(config: &HealthConfig, sink: &SinkStats, dropped_recently: bool) -> ComponentHealth {
    let (status, message) = sink_status(config, sink, dropped_recently);
    let mut c = component(format!("sink:{}", sink.name), status, message);
    // A spooling sink's errors come from its exports and from its spool (its replay, its
    // files): the newer one is shown, with its time.
    let spool = sink.spool.as_ref();
    let spool_at = spool.and_then(|s| s.last_error_at);
    let spool_newer = match (spool_at, sink.last_error_at) {
        (Some(spool_at), Some(sink_at)) => spool_at >= sink_at,
        (Some(_), None) => true,
        (None, Some(_)) => false,
        // Times unknown: while the collector is unreachable, the spool probes it.
        (None, None) => spool.and_then(|s| s.unreachable_for).is_some(),
    };
    let spool_error = spool
        .and_then(|s| s.last_error.clone())
        .map(|e| (e, spool_at));
    let sink_error = sink.last_error.clone().map(|e| (e, sink.last_error_at));
    let shown = if spool_newer {
        spool_error.or(sink_error)
    } else {
        sink_error.or(spool_error)
    };
    (c.last_error, c.last_error_at) = match shown {
        Some((error, at)) => (Some(error), at),
        None => (None, None),
    };
    c.last_success_at = sink.last_success_at;
    c.spool = sink.spool.as_ref().map(SpoolHealth::of);
    c
}

/// What a spool holds, for messages: `"12 records spooled (3400 of 1048576 bytes, oldest 2.5s
/// old)"`.
fn spool_summary(spool: &SpoolStats) -> String {
    format!(
        "{} records spooled ({} of {} bytes, oldest {:.1?} old)",
        spool.records,
        spool.bytes,
        spool.max_bytes,
        spool.oldest_age.unwrap_or_default()
    )
}

fn sink_status(
    config: &HealthConfig,
    sink: &SinkStats,
    dropped_recently: bool,
) -> (HealthStatus, String) {
    let error = sink.last_error.as_deref().unwrap_or("unknown error");
    if sink.disabled {
        let msg = format!("disabled after a panic: {error}");
        return (HealthStatus::Unhealthy, msg);
    }
    if let Some(failing) = sink.failing_for {
        if failing > config.sink_failing_timeout {
            let msg = format!(
                "failing for {failing:?} (limit {:?}): {error}",
                config.sink_failing_timeout
            );
            return (HealthStatus::Unhealthy, msg);
        }
        return (
            HealthStatus::Degraded,
            format!("failing for {failing:?}: {error}"),
        );
    }
    if let Some((spool, down)) = sink
        .spool
        .as_ref()
        .and_then(|s| Some((s, s.unreachable_for?)))
    {
        let error = spool.last_error.as_deref().unwrap_or("unknown error");
        // Spans and log records are judged apart (they often have separate endpoints).
        let which = match spool.unreachable_signals.as_slice() {
            [] => String::new(),
            signals => format!(" ({})", signals.join(", ")),
        };
        let msg = format!(
            "collector unreachable for {down:.1?}{which}; {}: {error}",
            spool_summary(spool)
        );
        if down > config.sink_failing_timeout {
            let limit = config.sink_failing_timeout;
            return (HealthStatus::Unhealthy, format!("{msg} (limit {limit:?})"));
        }
        return (HealthStatus::Degraded, msg);
    }
    if let Some(busy) = sink
        .export_in_progress_for
        .filter(|busy| *busy > config.export_stuck_after)
    {
        let msg = format!(
            "stuck: one export has been running for {busy:?} (limit {:?}); {} of {} records buffered",
            config.export_stuck_after, sink.buffered, sink.buffer_capacity
        );
        return (HealthStatus::Degraded, msg);
    }
    if let Some((spool, waited)) = sink
        .spool
        .as_ref()
        .and_then(|s| Some((s, s.unanswered_for?)))
        .filter(|(_, waited)| *waited > config.export_stuck_after)
    {
        // Requests go to the spool while the collector keeps them waiting: nothing is lost,
        // but nothing is delivered either.
        let msg = format!(
            "stuck: the collector has not answered a request for {waited:.1?} (stuck after \
             {:?}); {}",
            config.export_stuck_after,
            spool_summary(spool)
        );
        if waited > config.sink_failing_timeout {
            let limit = config.sink_failing_timeout;
            return (
                HealthStatus::Unhealthy,
                format!("{msg} (unhealthy after {limit:?})"),
            );
        }
        return (HealthStatus::Degraded, msg);
    }
    let fill = format!(
        "{} of {} records buffered",
        sink.buffered, sink.buffer_capacity
    );
    if is_saturated(
        sink.buffered,
        sink.buffer_capacity,
        config.sink_buffer_saturation,
    ) {
        return (
            HealthStatus::Degraded,
            format!("not keeping up (stalled?): {fill}"),
        );
    }
    if let Some(spool) = sink.spool.as_ref().filter(|s| {
        s.max_bytes > 0 && s.bytes as f64 >= config.sink_buffer_saturation * s.max_bytes as f64
    }) {
        let msg = format!(
            "spool nearly full, the oldest requests are evicted next: {}",
            spool_summary(spool)
        );
        return (HealthStatus::Degraded, msg);
    }
    if dropped_recently {
        let mut what = Vec::new();
        if sink.dropped > 0 {
            what.push(format!(
                "{} in total: {}",
                sink.dropped,
                drop_summary(&sink.dropped_by_reason)
            ));
        }
        if let Some(s) = sink.spool.as_ref().filter(|s| s.lost() > 0) {
            what.push(format!(
                "lost from the spool: evicted {}, corrupt {}, rejected {}",
                s.evicted, s.corrupt_records, s.rejected
            ));
        }
        if sink.lost_after_export > 0 {
            let error = sink.last_error.as_deref().unwrap_or("unknown error");
            what.push(format!(
                "exported and then possibly lost: {} (the last error: {error})",
                sink.lost_after_export
            ));
        }
        let msg = format!(
            "records dropped within the last {:?} ({}); {fill}",
            config.drop_window,
            what.join("; ")
        );
        return (HealthStatus::Degraded, msg);
    }
    let spool = match &sink.spool {
        Some(s) if s.replaying => format!("; replaying: {}", spool_summary(s)),
        Some(s) if s.records > 0 => format!("; {}", spool_summary(s)),
        Some(_) => "; spool empty".to_owned(),
        None => String::new(),
    };
    (
        HealthStatus::Healthy,
        format!("{} records exported; {fill}{spool}", sink.exported),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::tests_support::sample_stats;

    fn healthy_stats() -> Stats {
        let mut s = sample_stats();
        s.queue_depth = 0;
        s.dropped = 0;
        s.dropped_by_reason.clear();
        let sink = &mut s.sinks[0];
        sink.failing_for = None;
        sink.dropped = 0;
        sink.dropped_by_reason.clear();
        s
    }

    fn check(config: &HealthConfig, stats: &Stats, running: bool) -> Health {
        evaluate(
            config,
            stats,
            running,
            &RecentDrops::default(),
            SystemTime::now(),
        )
    }

    /// The sample's sink with a spool of 100 records (1 MiB budget, 10 KiB used).
    fn with_spool(f: impl FnOnce(&mut SpoolStats)) -> Stats {
        let mut s = healthy_stats();
        let mut spool = SpoolStats {
            bytes: 10 * 1024,
            max_bytes: 1024 * 1024,
            records: 100,
            batches: 2,
            oldest_age: Some(Duration::from_secs(3)),
            replaying: true,
            spooled: 100,
            ..SpoolStats::default()
        };
        f(&mut spool);
        s.sinks[0].spool = Some(spool);
        s
    }

    #[test]
    fn a_spooling_sink_whose_collector_does_not_answer_is_stuck_then_unhealthy() {
        let config = HealthConfig::default();
        let waiting = |d| {
            with_spool(|p| {
                p.replaying = true;
                p.unanswered_for = Some(d);
            })
        };
        let h = check(&config, &waiting(Duration::from_secs(1)), false);
        let sink = h.component("sink:json").unwrap();
        assert_eq!(sink.status, HealthStatus::Healthy, "{sink:?}");
        let h = check(&config, &waiting(Duration::from_secs(6)), false);
        let sink = h.component("sink:json").unwrap();
        assert_eq!(sink.status, HealthStatus::Degraded, "{sink:?}");
        assert!(
            sink.message
                .starts_with("stuck: the collector has not answered a request for 6.0s"),
            "{sink:?}"
        );
        assert!(sink.message.contains("100 records spooled"), "{sink:?}");
        assert_eq!(sink.spool.as_ref().unwrap().unanswered_seconds, Some(6.0));
        let h = check(&config, &waiting(Duration::from_secs(61)), false);
        let sink = h.component("sink:json").unwrap();
        assert_eq!(sink.status, HealthStatus::Unhealthy, "{sink:?}");
        assert!(sink.message.ends_with("(unhealthy after 60s)"), "{sink:?}");
    }

    #[test]
    fn a_spooling_sink_shows_the_newer_of_its_exports_and_its_spools_errors() {
        let config = HealthConfig::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let later = t0 + Duration::from_secs(60);
        let errors = |export_at, spool_at, unreachable: bool| {
            let mut s = with_spool(|p| {
                p.last_error = Some("replay refused (HTTP 400)".into());
                p.last_error_at = Some(spool_at);
                p.unreachable_for = unreachable.then_some(Duration::from_secs(5));
            });
            s.sinks[0].last_error = Some("export timed out".into());
            s.sinks[0].last_error_at = Some(export_at);
            s
        };
        let shown = |s: &Stats| {
            let h = check(&config, s, false);
            let c = h.component("sink:json").unwrap();
            (c.last_error.clone().unwrap_or_default(), c.last_error_at)
        };
        let replay = "replay refused (HTTP 400)".to_owned();
        let export = "export timed out".to_owned();
        for unreachable in [false, true] {
            // The replay failed after the export: its error, not the export's older one.
            assert_eq!(
                shown(&errors(t0, later, unreachable)),
                (replay.clone(), Some(later))
            );
            // The export failed after the replay (even while the collector is unreachable: an
            // export whose records were lost, say).
            assert_eq!(
                shown(&errors(later, t0, unreachable)),
                (export.clone(), Some(later))
            );
        }
    }

    #[test]
    fn a_sink_spooling_while_its_collector_is_unreachable_is_degraded_then_unhealthy() {
        let config = HealthConfig::default();
        let down = |d| {
            with_spool(|p| {
                p.replaying = false;
                p.unreachable_for = Some(d);
                p.unreachable_signals = vec!["logs"];
                p.last_error = Some("tcp connect error".into());
                p.last_error_at = Some(SystemTime::now());
            })
        };
        let h = check(&config, &down(Duration::from_secs(5)), true);
        let sink = h.component("sink:json").unwrap();
        assert_eq!(sink.status, HealthStatus::Degraded, "{sink:?}");
        assert!(
            sink.message
                .starts_with("collector unreachable for 5.0s (logs); 100 records spooled"),
            "{sink:?}"
        );
        assert!(sink.message.ends_with("tcp connect error"), "{sink:?}");
        assert_eq!(sink.last_error.as_deref(), Some("tcp connect error"));
        let spool = sink.spool.as_ref().unwrap();
        assert_eq!((spool.records, spool.bytes), (100, 10 * 1024));
        assert_eq!(spool.unreachable_seconds, Some(5.0));
        let json = h.to_json();
        assert!(json.contains("\"spool\":{\"bytes\":10240"), "{json}");
        assert!(
            json.contains("\"unreachable_signals\":[\"logs\"]"),
            "{json}"
        );

        let h = check(&config, &down(Duration::from_secs(61)), true);
        assert_eq!(h.status, HealthStatus::Unhealthy, "{h:#?}");
    }

    #[test]
    fn a_replaying_spool_is_healthy_and_a_nearly_full_one_degraded() {
        let config = HealthConfig::default();
        let h = check(&config, &with_spool(|_| {}), true);
        let sink = h.component("sink:json").unwrap();
        assert_eq!(sink.status, HealthStatus::Healthy, "{sink:?}");
        assert!(
            sink.message.contains("replaying: 100 records spooled"),
            "{sink:?}"
        );
        assert!(sink.spool.as_ref().unwrap().replaying);

        let full = with_spool(|p| p.bytes = 1000 * 1024);
        let sink = check(&config, &full, true).components.pop().unwrap();
        assert_eq!(sink.status, HealthStatus::Degraded, "{sink:?}");
        assert!(sink.message.contains("spool nearly full"), "{sink:?}");
    }

    #[test]
    fn records_lost_from_the_spool_are_recent_drops() {
        let monitor = HealthMonitor::default();
        let before = with_spool(|_| {});
        assert!(monitor.check(&before, true).is_healthy());
        let after = with_spool(|p| {
            p.evicted = 7;
            p.records = 93;
        });
        let h = monitor.check(&after, true);
        let sink = h.component("sink:json").unwrap();
        assert_eq!(sink.status, HealthStatus::Degraded, "{sink:?}");
        assert!(
            sink.message
                .contains("(lost from the spool: evicted 7, corrupt 0, rejected 0)"),
            "{sink:?}"
        );
        assert!(
            !sink.message.contains("in total"),
            "no sink drops: {sink:?}"
        );
    }

    #[test]
    fn a_quiet_pipeline_is_healthy() {
        let h = check(&HealthConfig::default(), &healthy_stats(), true);
        assert_eq!(h.status, HealthStatus::Healthy, "{h:#?}");
        assert!(h.is_healthy() && h.is_serving());
        let names: Vec<_> = h.components.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["queue", "drain", "open_spans", "sink:json"]);
    }

    #[test]
    fn a_saturated_queue_is_degraded() {
        let mut s = healthy_stats();
        s.queue_depth = 1000;
        let h = check(&HealthConfig::default(), &s, true);
        assert_eq!(h.status, HealthStatus::Degraded);
        assert!(h.component("queue").unwrap().message.contains("saturated"));
    }

    #[test]
    fn a_saturated_queue_that_dropped_records_says_both() {
        let mut s = healthy_stats();
        s.queue_depth = s.capacity;
        s.dropped = 3;
        s.dropped_by_reason = vec![(crate::DropReason::QueueFullNewest, 3)];
        let recent = RecentDrops {
            queue: true,
            sinks: Vec::new(),
            ..Default::default()
        };
        let config = HealthConfig::default();
        let h = evaluate(&config, &s, true, &recent, SystemTime::now());
        let queue = h.component("queue").unwrap();
        assert_eq!(queue.status, HealthStatus::Degraded);
        assert_eq!(
            queue.message,
            format!(
                "saturated: {0} of {0} records queued; records dropped within the last 60s \
                 (3 in total: queue_full_newest: 3)",
                s.capacity
            )
        );
    }

    #[test]
    fn a_stopped_or_stuck_drain_is_unhealthy() {
        let h = check(&HealthConfig::default(), &healthy_stats(), false);
        assert_eq!(h.status, HealthStatus::Unhealthy);
        assert!(!h.is_serving());
        let mut s = healthy_stats();
        s.heartbeat_age = Duration::from_secs(30);
        let h = check(&HealthConfig::default(), &s, true);
        assert_eq!(
            h.component("drain").unwrap().status,
            HealthStatus::Unhealthy
        );
    }

    #[test]
    fn a_failing_sink_is_degraded_then_unhealthy() {
        let mut s = healthy_stats();
        s.sinks[0].failing_for = Some(Duration::from_secs(5));
        let config = HealthConfig::default().sink_failing_timeout(Duration::from_secs(10));
        let h = check(&config, &s, true);
        let sink = h.component("sink:json").unwrap();
        assert_eq!(sink.status, HealthStatus::Degraded);
        assert_eq!(sink.last_error.as_deref(), Some("collector unreachable"));
        s.sinks[0].failing_for = Some(Duration::from_secs(11));
        assert_eq!(check(&config, &s, true).status, HealthStatus::Unhealthy);
    }

    #[test]
    fn a_disabled_sink_is_unhealthy() {
        let mut s = healthy_stats();
        s.sinks[0].disabled = true;
        assert_eq!(
            check(&HealthConfig::default(), &s, true).status,
            HealthStatus::Unhealthy
        );
    }

    #[test]
    fn a_stalled_sink_is_degraded() {
        let mut s = healthy_stats();
        s.sinks[0].buffered = 95;
        let h = check(&HealthConfig::default(), &s, true);
        assert_eq!(h.status, HealthStatus::Degraded);
        assert!(h
            .component("sink:json")
            .unwrap()
            .message
            .contains("stalled"));
    }

    #[test]
    fn a_sink_stuck_in_one_export_is_degraded_whatever_its_buffer() {
        let mut s = healthy_stats();
        s.sinks[0].buffered = 1;
        s.sinks[0].export_in_progress_for = Some(Duration::from_secs(4));
        let config = HealthConfig::default().export_stuck_after(Duration::from_secs(5));
        assert_eq!(check(&config, &s, true).status, HealthStatus::Healthy);
        s.sinks[0].export_in_progress_for = Some(Duration::from_secs(8));
        let h = check(&config, &s, true);
        let sink = h.component("sink:json").unwrap();
        assert_eq!(sink.status, HealthStatus::Degraded);
        assert!(sink.message.contains("stuck"), "{}", sink.message);
    }

    #[test]
    fn stuck_spans_are_degraded() {
        let mut s = healthy_stats();
        s.open_spans = 3;
        s.oldest_open_span_age = Some(Duration::from_secs(700));
        assert_eq!(
            check(&HealthConfig::default(), &s, true).status,
            HealthStatus::Degraded
        );
        s.oldest_open_span_age = None;
        s.open_spans = 200_000;
        assert_eq!(
            check(&HealthConfig::default(), &s, true).status,
            HealthStatus::Degraded
        );
    }

    #[test]
    fn drops_count_only_within_the_window() {
        let monitor =
            HealthMonitor::new(HealthConfig::default().drop_window(Duration::from_secs(60)));
        let mut s = healthy_stats();
        let t0 = Instant::now();
        assert!(!monitor.update_window(&s, t0).queue);
        s.dropped = 4;
        assert!(monitor.update_window(&s, t0 + Duration::from_secs(1)).queue);
        assert!(
            monitor
                .update_window(&s, t0 + Duration::from_secs(60))
                .queue
        );
        assert!(
            !monitor
                .update_window(&s, t0 + Duration::from_secs(62))
                .queue
        );
        s.sinks[0].dropped = 1;
        let recent = monitor.update_window(&s, t0 + Duration::from_secs(63));
        assert_eq!(recent.sinks, ["json"]);
    }

    #[test]
    fn serialises_to_the_documented_json() {
        let h = check(&HealthConfig::default(), &healthy_stats(), true);
        let v: serde_json::Value = serde_json::from_str(&h.to_json()).unwrap();
        assert_eq!(v["status"], "healthy");
        assert!(v["uptime_seconds"].is_number());
        assert!(v["checked_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(v["components"][0]["name"], "queue");
        assert_eq!(v["components"][3]["last_error"], "collector unreachable");
    }

    #[test]
    fn tail_sampling_is_a_component_when_on_and_degraded_near_or_at_its_budget() {
        let config = HealthConfig::default();
        let mut s = healthy_stats();
        assert!(check(&config, &s, true)
            .component("tail_sampling")
            .is_none());
        s.tail_sampling.settings = Some(crate::TailSampling::new().max_buffered_spans(100));
        s.tail_sampling.buffered_records = 89;
        let h = check(&config, &s, true);
        let names: Vec<&str> = h.components.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["queue", "drain", "open_spans", "tail_sampling", "sink:json"]
        );
        assert_eq!(h.status, HealthStatus::Healthy);
        s.tail_sampling.buffered_records = 90;
        let tail = check(&config, &s, true);
        let tail = tail.component("tail_sampling").unwrap();
        assert_eq!(tail.status, HealthStatus::Degraded);
        assert!(
            tail.message.starts_with("nearly full: 90 of 100"),
            "{}",
            tail.message
        );
        // Decisions forced by the full budget: degraded within the window only.
        s.tail_sampling.buffered_records = 0;
        s.tail_sampling.forced_by_reason = vec![(crate::ForcedDecision::BufferFull, 4)];
        let monitor = HealthMonitor::new(config.clone());
        let t0 = Instant::now();
        assert!(monitor.update_window(&s, t0).tail_full);
        assert!(
            !monitor
                .update_window(&s, t0 + Duration::from_secs(61))
                .tail_full
        );
        let recent = RecentDrops {
            tail_full: true,
            ..Default::default()
        };
        let h = evaluate(&config, &s, true, &recent, SystemTime::now());
        let tail = h.component("tail_sampling").unwrap();
        assert_eq!(tail.status, HealthStatus::Degraded);
        assert!(tail.message.contains("(4 in total)"), "{}", tail.message);
    }

    #[test]
    fn bad_fractions_do_not_panic() {
        let c = HealthConfig::default()
            .queue_saturation(f64::NAN)
            .sink_buffer_saturation(7.0);
        assert_eq!(c.queue_saturation, DEFAULT_QUEUE_SATURATION);
        assert_eq!(c.sink_buffer_saturation, 1.0);
    }
}
