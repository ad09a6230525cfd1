//! The pipeline's own metrics in the Prometheus formats, rendered through `prometheus-client`.
//!
//! The counters live in the pipeline's own atomics ([`Stats`] is a snapshot of them), so
//! nothing is counted twice: [`OffloadCollector`] implements `prometheus-client`'s
//! [`Collector`][Collector] and encodes a fresh snapshot on every scrape. Use it in three ways:
//!
//! * [`render_prometheus`] — the Prometheus text format 0.0.4 (what `/metrics` serves by
//!   default, content type [`PROMETHEUS_CONTENT_TYPE`]);
//! * [`render_openmetrics`] — the OpenMetrics 1.0 text format (content type
//!   [`OPENMETRICS_CONTENT_TYPE`]), served when a scraper asks for it;
//! * [`OffloadCollector::register`] — join the application's own
//!   [`Registry`][Registry].
//!
//! [Collector]: https://docs.rs/prometheus-client/0.25/prometheus_client/collector/trait.Collector.html
//! [Registry]: https://docs.rs/prometheus-client/0.25/prometheus_client/registry/struct.Registry.html
//!
//! # Metrics
//!
//! Every name starts with `offload_`. Counters end in `_total`; durations are in seconds and
//! say so. Variants are labels, never name suffixes.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `offload_records_total` | counter | `outcome` (`enqueued`, `dropped`, `sampled_out`), `reason` (drops only) | every record offered to the layer, by what happened to it: `enqueued` counts the records that entered the queue ([`Stats::accepted`]), so a record dropped from the queue later (`queue_full_oldest`, `shutdown`, `shutdown_deadline`) or sampled out by tail sampling counts under both, and each series only grows |
//! | `offload_records_drained_total` | counter | | records the drain thread took from the queue |
//! | `offload_queue_depth` | gauge | | records in the queue now |
//! | `offload_queue_capacity` | gauge | | records the queue holds |
//! | `offload_queue_high_water_mark` | gauge | | the most records seen in the queue at once |
//! | `offload_open_spans` | gauge | | spans open now |
//! | `offload_oldest_open_span_age_seconds` | gauge | | how long the oldest open span has been open (0 when none is); a growing value is a stuck span |
//! | `offload_truncated_values_total` | counter | | field values cut at the length cap |
//! | `offload_span_events_dropped_total` | counter | | events past the per-span limit |
//! | `offload_drain_batches_total` | counter | | batches the drain thread fanned out |
//! | `offload_drain_heartbeat_age_seconds` | gauge | | time since the drain thread last went round its loop |
//! | `offload_uptime_seconds` | gauge | | time since the pipeline was built |
//! | `offload_start_time_seconds` | gauge | | when the pipeline was built (Unix time) |
//! | `offload_sampling_rate` | gauge | | effective sampling rate (0–1), when a sampler reports one |
//! | `offload_tail_sampled_out_records_total` | counter | | records of local traces that tail sampling dropped (part of `offload_records_total{outcome="sampled_out"}`) |
//! | `offload_tail_traces_total` | counter | `decision` (`kept`, `dropped`), `reason` (kept only: `error`, `slow`, `ratio`) | local traces tail sampling decided |
//! | `offload_tail_forced_decisions_total` | counter | `reason` (`decision_wait`, `buffer_full`, `shutdown`) | local traces decided before their local root closed |
//! | `offload_tail_buffered_records` | gauge | | records held now, waiting for their local root |
//! | `offload_tail_buffered_traces` | gauge | | local traces held now |
//! | `offload_tail_buffer_capacity` | gauge | | the budget, `max_buffered_spans` (0 when tail sampling is off) |
//! | `offload_tail_buffer_high_water_mark` | gauge | | the most records held at once |
//! | `offload_sink_records_total` | counter | `sink`, `outcome` (`exported`, `spooled`, `failed`, `dropped`), `reason` (drops: the drop reason; failures: `permanent`, refused for good, or `transient`, might have gone through later) | what became of the records each sink was handed (`spooled`: written to the sink's spool, see below) |
//! | `offload_sink_forwarded_records_total` | counter | `sink` | records the drain thread handed to the sink |
//! | `offload_sink_retries_total` | counter | `sink` | export retries |
//! | `offload_sink_lost_after_export_records_total` | counter | `sink` | records counted `exported` that the sink learned since may not have reached their destination (the JSON-lines sink: a sync reported that the system could not write them back; the channel sink: left unread when its receiver was dropped; the OTLP sink: events sent only on a span whose record did not reach the collector) |
//! | `offload_sink_export_batches_total` | counter | `sink` | export calls |
//! | `offload_sink_buffer_depth` | gauge | `sink` | records in the sink's buffer now |
//! | `offload_sink_buffer_capacity` | gauge | `sink` | the sink buffer's capacity |
//! | `offload_sink_disabled` | gauge | `sink` | 1 when the sink was disabled after a panic |
//! | `offload_sink_failing_seconds` | gauge | `sink` | how long the sink has been failing without a success (0 when it is not) |
//! | `offload_sink_export_in_progress_seconds` | gauge | `sink` | how long the sink's current export (or flush) call has been running (0 when it is not in one); a growing value is a stuck sink |
//! | `offload_sink_last_success_timestamp_seconds` | gauge | `sink` | Unix time of the last successful export (absent before the first) |
//! | `offload_sink_export_duration_seconds` | histogram | `sink` | time per export call |
//! | `offload_sink_spool_records_total` | counter | `sink`, `outcome` (`replayed`, `evicted`, `corrupt`, `rejected`) | what became of the records in the sink's spool |
//! | `offload_sink_spool_restored_records_total` | counter | `sink` | records found in the spool at start, left by an earlier process |
//! | `offload_sink_spool_corrupt_batches_total` | counter | `sink` | requests (or damaged stretches of a file) found damaged in the spool and skipped |
//! | `offload_sink_spool_depth` | gauge | `sink` | records in the spool now |
//! | `offload_sink_spool_bytes` | gauge | `sink` | bytes the spool takes on disk now |
//! | `offload_sink_spool_capacity_bytes` | gauge | `sink` | the spool's budget |
//! | `offload_sink_spool_oldest_age_seconds` | gauge | `sink` | how long ago the oldest request in the spool was written (0 when it is empty) |
//! | `offload_sink_spool_replaying` | gauge | `sink` | 1 while the spool is replayed (it holds requests and the collector is reachable) |
//! | `offload_sink_spool_unreachable_seconds` | gauge | `sink` | how long the collector has been unreachable (0 when it is not): the longer of the two signals' outages |
//! | `offload_sink_spool_unanswered_seconds` | gauge | `sink` | how long the oldest request still waiting for the collector's answer has waited (0 when none waits) |
//!
//! The `offload_sink_spool_*` families are there for sinks with a spool (an OTLP sink with
#![cfg_attr(
    feature = "otlp",
    doc = "[`Otlp::spool`](crate::sink::Otlp::spool)), their counters at 0 until they happen. A spooled"
)]
#![cfg_attr(
    not(feature = "otlp"),
    doc = "`Otlp::spool`), their counters at 0 until they happen. A spooled"
)]
//! record ends at the sink as `spooled`; the spool's own ledger is
//! `restored + spooled == replayed + evicted + corrupt + rejected + depth`.
//!
//! Drop reasons that the queue can produce (`queue_full_oldest`, `queue_full_newest`,
//! `block_timeout`, `shutdown`) and those a sink can produce (`sink_buffer_full`,
//! `sink_disabled`, `shutdown_deadline`) are always present, at 0 until
//! they happen, so that `rate()` and `increase()` see the first drop.
//!
//! # Example
//!
//! ```
//! use prometheus_client::registry::Registry;
//! use tracing_offload::OffloadLayer;
//!
//! let (_layer, guard) = OffloadLayer::builder().build()?;
//! let handle = guard.handle();
//!
//! // The text a `/metrics` endpoint serves (`render_prometheus(&handle.stats(), rate)`):
//! let text = handle.render_prometheus();
//! assert!(text.contains("offload_queue_capacity 65536"));
//!
//! // Or join the application's registry (scraped with the application's own metrics):
//! let mut registry = Registry::default();
//! handle.metrics_collector().register(&mut registry);
//! // …which is `OffloadCollector::new(move || handle.stats())` plus the sampling rate.
//! let mut scrape = String::new();
//! prometheus_client::encoding::text::encode(&mut scrape, &registry)?;
//! assert!(scrape.contains("offload_records_total{outcome=\"enqueued\"} 0"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::record::DropReason;
use crate::stats::{LatencyHistogram, SinkStats, SpoolStats, Stats};
use crate::tail_sampling::{ForcedDecision, TailSamplingStats};

/// The content type of [`render_prometheus`]'s output (Prometheus text format 0.0.4).
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The content type of [`render_openmetrics`]'s output (OpenMetrics 1.0 text format).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Drop reasons the queue (before the drain thread) produces; always exported, 0 until seen.
const QUEUE_DROP_REASONS: [DropReason; 4] = [
    DropReason::QueueFullOldest,
    DropReason::QueueFullNewest,
    DropReason::BlockTimeout,
    DropReason::Shutdown,
];

/// Drop reasons a sink produces; always exported per sink, 0 until seen.
const SINK_DROP_REASONS: [DropReason; 3] = [
    DropReason::SinkBufferFull,
    DropReason::SinkDisabled,
    DropReason::ShutdownDeadline,
];

/// Renders a snapshot in the Prometheus text format 0.0.4 ([`PROMETHEUS_CONTENT_TYPE`]).
///
/// `sampling_rate` is the effective sampling rate (0.0–1.0) when the pipeline samples; `None`
/// leaves `offload_sampling_rate` out.
pub fn render_prometheus(stats: &Stats, sampling_rate: Option<f64>) -> String {
    openmetrics_to_prometheus(&render_openmetrics(stats, sampling_rate))
}

/// Renders a snapshot in the OpenMetrics 1.0 text format ([`OPENMETRICS_CONTENT_TYPE`]),
/// ending with `# EOF`.
pub fn render_openmetrics(stats: &Stats, sampling_rate: Option<f64>) -> String {
    let stats = stats.clone();
    let collector = OffloadCollector::new(move || stats.clone());
    let collector = match sampling_rate {
        Some(rate) => collector.with_sampling_rate(move || Some(rate)),
        None => collector,
    };
    let mut registry = Registry::default();
    collector.register(&mut registry);
    let mut out = String::new();
    // Writing into a `String` cannot fail, and every value we encode is finite or a valid
    // float; should the encoder ever refuse, serve what was written rather than panic.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// Converts `prometheus-client`'s OpenMetrics text into the Prometheus 0.0.4 text format.
///
/// The two differ only in framing: OpenMetrics names a counter family without its `_total`
/// suffix in `# HELP`/`# TYPE`, has `# UNIT` lines and ends with `# EOF`. The samples are the
/// same. Text Prometheus 0.0.4 parsers read `# TYPE x counter` followed by `x_total` samples
/// as an empty counter plus an untyped metric, so the family name gets its suffix back here.
fn openmetrics_to_prometheus(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut counters: Vec<&str> = Vec::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.strip_suffix(" counter") {
                counters.push(name);
            }
        }
    }
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(&name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// The labels the metrics carry of their own (and the ones Prometheus gives histogram and
/// summary samples): a combined collector's label must be another.
const OWN_LABELS: [&str; 6] = ["sink", "outcome", "reason", "decision", "le", "quantile"];

/// Why [`OffloadCollector::combine`] refused: its scrape would not be valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot combine the pipelines' metrics: {0}")]
pub struct CombineError(String);

/// A source of stats snapshots.
type StatsSource = Arc<dyn Fn() -> Stats + Send + Sync>;
/// A source of the effective sampling rate.
type RateSource = Arc<dyn Fn() -> Option<f64> + Send + Sync>;

/// A `prometheus-client` [`Collector`](https://docs.rs/prometheus-client/0.25/prometheus_client/collector/trait.Collector.html)
/// that encodes a fresh [`Stats`] snapshot on each scrape.
///
/// Build it from anything that returns a snapshot, typically `move || handle.stats()`.
#[derive(Clone)]
pub struct OffloadCollector {
    source: Source,
}

/// What a collector encodes.
#[derive(Clone)]
enum Source {
    /// One pipeline's snapshots, and its effective event sampling rate, exported as
    /// `offload_sampling_rate` when set.
    One {
        stats: StatsSource,
        sampling_rate: Option<RateSource>,
    },
    /// Pipelines encoded together ([`combine`](OffloadCollector::combine)): each one's samples
    /// carry `label` with its name.
    Many {
        label: &'static str,
        pipelines: Vec<(String, OffloadCollector)>,
    },
}

// === impl OffloadCollector ===

impl OffloadCollector {
    /// A collector that calls `stats` on each scrape.
    pub fn new(stats: impl Fn() -> Stats + Send + Sync + 'static) -> Self {
        OffloadCollector {
            source: Source::One {
                stats: Arc::new(stats),
                sampling_rate: None,
            },
        }
    }

    /// One collector for several pipelines (one per destination, say), each pipeline's
    /// samples labelled `label="<its name>"`: every metric family is declared once, as
    /// OpenMetrics requires. Registering two collectors in one registry (under
    /// `sub_registry_with_label` too) declares each family twice, which Prometheus refuses
    /// (adversary pass 65).
    ///
    /// ```
    /// use prometheus_client::registry::Registry;
    /// use tracing_offload::{metrics::OffloadCollector, sink, OffloadLayer};
    ///
    /// let (app_layer, app) = OffloadLayer::builder().sink(sink::Console::stderr()).build()?;
    /// let (audit_layer, audit) = OffloadLayer::builder().sink(sink::Console::stdout()).build()?;
    /// let mut registry = Registry::default();
    /// OffloadCollector::combine(
    ///     "pipeline",
    ///     [
    ///         ("app", app.handle().metrics_collector()),
    ///         ("audit", audit.handle().metrics_collector()),
    ///     ],
    /// )?
    /// .register(&mut registry);
    /// let mut scrape = String::new();
    /// prometheus_client::encoding::text::encode(&mut scrape, &registry)?;
    /// assert_eq!(scrape.matches("# TYPE offload_records counter").count(), 1);
    /// assert!(scrape.contains("offload_records_total{pipeline=\"audit\",outcome=\"enqueued\"} 0"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// An error when the scrape could not be valid: a `label` that is not a label name
    /// (`[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`), one the metrics already carry
    /// (`sink`, `outcome`, `reason`, `decision`, and `le` or `quantile`), one a combined
    /// collector inside already uses, or two pipelines of one name (adversary pass 66: each
    /// gave samples Prometheus refuses or drops, without a word).
    pub fn combine(
        label: &'static str,
        pipelines: impl IntoIterator<Item = (impl Into<String>, OffloadCollector)>,
    ) -> Result<Self, CombineError> {
        let valid = label
            .chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
        if label.is_empty() || !valid || label.starts_with("__") {
            return Err(CombineError(format!(
                "{label:?} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"
            )));
        }
        if OWN_LABELS.contains(&label) {
            return Err(CombineError(format!(
                "{label:?} is a label the metrics carry already ({}): choose another, such as \
                 \"pipeline\"",
                OWN_LABELS.join(", ")
            )));
        }
        let pipelines: Vec<(String, OffloadCollector)> = pipelines
            .into_iter()
            .map(|(name, c)| (name.into(), c))
            .collect();
        for (i, (name, c)) in pipelines.iter().enumerate() {
            if pipelines[..i].iter().any(|(other, _)| other == name) {
                return Err(CombineError(format!(
                    "two pipelines named {name:?}: their series would be the same"
                )));
            }
            if c.uses_label(label) {
                return Err(CombineError(format!(
                    "pipeline {name:?} is a combined collector that labels with {label:?} \
                     already"
                )));
            }
        }
        Ok(OffloadCollector {
            source: Source::Many { label, pipelines },
        })
    }

    /// Whether this collector, or one combined in it, labels its pipelines with `label`.
    fn uses_label(&self, label: &str) -> bool {
        match &self.source {
            Source::One { .. } => false,
            Source::Many {
                label: own,
                pipelines,
            } => *own == label || pipelines.iter().any(|(_, c)| c.uses_label(label)),
        }
    }

    /// Also exports `offload_sampling_rate` from `rate` (0.0–1.0; `None` leaves it out). A
    /// combined collector takes each pipeline's from that pipeline's collector: on it, this
    /// does nothing.
    pub fn with_sampling_rate(
        mut self,
        rate: impl Fn() -> Option<f64> + Send + Sync + 'static,
    ) -> Self {
        if let Source::One { sampling_rate, .. } = &mut self.source {
            *sampling_rate = Some(Arc::new(rate));
        }
        self
    }

    /// Registers this collector in `registry`; its metrics are encoded with the registry's own
    /// on every scrape (under the registry's prefix, if it has one).
    pub fn register(self, registry: &mut Registry) {
        registry.register_collector(Box::new(self));
    }

    /// This collector's families, samples labelled with `base` first (a combined one's: each
    /// pipeline's, with its label).
    fn collect(&self, base: &Labels, out: &mut Families) {
        let (stats, sampling_rate) = match &self.source {
            Source::One {
                stats,
                sampling_rate,
            } => (stats, sampling_rate),
            Source::Many { label, pipelines } => {
                for (name, c) in pipelines {
                    let mut labels = base.clone();
                    labels.push((label, name.clone()));
                    c.collect(&labels, out);
                }
                return;
            }
        };
        let stats = stats();
        let rate = sampling_rate.as_ref().and_then(|r| r());
        out.base = base.clone();
        // Collecting cannot fail: each returns `Ok`.
        let _ = encode_records(&stats, out);
        let _ = encode_queue(&stats, out);
        let _ = encode_drain(&stats, out);
        let _ = encode_tail(&stats.tail_sampling, out);
        if let Some(rate) = rate.filter(|r| r.is_finite()) {
            let _ = gauge(
                out,
                "offload_sampling_rate",
                "Effective sampling rate: the fraction of records kept (0 to 1).",
                None,
                rate,
            );
        }
        let _ = encode_sinks(&stats.sinks, out);
    }
}

impl fmt::Debug for OffloadCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("OffloadCollector");
        match &self.source {
            Source::One { sampling_rate, .. } => d.field("sampling_rate", &sampling_rate.is_some()),
            Source::Many { label, pipelines } => d.field("label", label).field(
                "pipelines",
                &pipelines.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            ),
        };
        d.finish_non_exhaustive()
    }
}

impl Collector for OffloadCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let mut families = Families::default();
        self.collect(&Labels::new(), &mut families);
        families.encode(&mut encoder)
    }
}

/// Metric families collected from one or more pipelines, each declared once, then encoded.
#[derive(Default)]
struct Families {
    /// Labels every sample added now starts with (a combined collector's pipeline label).
    base: Labels,
    list: Vec<Family>,
}

struct Family {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    kind: MetricType,
    samples: Vec<(Labels, Value)>,
}

/// One sample's value.
enum Value {
    Counter(u64),
    GaugeInt(i64),
    GaugeFloat(f64),
    Histogram(LatencyHistogram),
}

impl Value {
    fn encode(&self, m: MetricEncoder<'_>) -> fmt::Result {
        match self {
            Value::Counter(v) => ConstCounter::new(*v).encode(m),
            Value::GaugeInt(v) => ConstGauge::new(*v).encode(m),
            Value::GaugeFloat(v) => ConstGauge::new(*v).encode(m),
            Value::Histogram(h) => encode_histogram(h, m),
        }
    }
}

impl Families {
    /// Adds a sample to the family `name`, declared on its first sample.
    fn add(
        &mut self,
        name: &'static str,
        help: &'static str,
        unit: Option<&Unit>,
        kind: MetricType,
        labels: &Labels,
        value: Value,
    ) {
        let mut all = self.base.clone();
        all.extend(labels.iter().cloned());
        let at = self.declare(name, help, unit, kind);
        self.list[at].samples.push((all, value));
    }

    /// Declares the family `name` unless it is already (a family whose samples are per sink
    /// is declared with no sink too); returns its place.
    fn declare(
        &mut self,
        name: &'static str,
        help: &'static str,
        unit: Option<&Unit>,
        kind: MetricType,
    ) -> usize {
        if let Some(at) = self.list.iter().position(|f| f.name == name) {
            return at;
        }
        self.list.push(Family {
            name,
            help,
            unit: unit.cloned(),
            kind,
            samples: Vec::new(),
        });
        self.list.len() - 1
    }

    fn encode(&self, enc: &mut DescriptorEncoder<'_>) -> fmt::Result {
        for f in &self.list {
            let mut family = enc.encode_descriptor(f.name, f.help, f.unit.as_ref(), f.kind)?;
            match f.samples.as_slice() {
                // One sample with no label: `name value`, not `name{} value`.
                [(labels, value)] if labels.is_empty() => value.encode(family)?,
                samples => {
                    for (labels, value) in samples {
                        value.encode(family.encode_family(labels)?)?;
                    }
                }
            }
        }
        Ok(())
    }
}

// === encoding helpers ===

type Labels = Vec<(&'static str, String)>;

fn sink_label(sink: &SinkStats) -> Labels {
    vec![("sink", sink.name.clone())]
}

/// Encodes one counter family from `(labels, value)` pairs.
fn counter_family(
    enc: &mut Families,
    name: &'static str,
    help: &'static str,
    samples: &[(Labels, u64)],
) -> fmt::Result {
    enc.declare(name, help, None, MetricType::Counter);
    for (labels, value) in samples {
        enc.add(
            name,
            help,
            None,
            MetricType::Counter,
            labels,
            Value::Counter(*value),
        );
    }
    Ok(())
}

/// A gauge's value type.
trait GaugeValue: Copy {
    fn value(self) -> Value;
}

impl GaugeValue for i64 {
    fn value(self) -> Value {
        Value::GaugeInt(self)
    }
}

impl GaugeValue for f64 {
    fn value(self) -> Value {
        Value::GaugeFloat(self)
    }
}

/// Encodes one gauge family from `(labels, value)` pairs.
fn gauge_family<V: GaugeValue>(
    enc: &mut Families,
    name: &'static str,
    help: &'static str,
    unit: Option<&Unit>,
    samples: &[(Labels, V)],
) -> fmt::Result {
    enc.declare(name, help, unit, MetricType::Gauge);
    for (labels, value) in samples {
        enc.add(name, help, unit, MetricType::Gauge, labels, value.value());
    }
    Ok(())
}

/// Encodes a single unlabelled gauge.
fn gauge<V: GaugeValue>(
    enc: &mut Families,
    name: &'static str,
    help: &'static str,
    unit: Option<&Unit>,
    value: V,
) -> fmt::Result {
    enc.add(
        name,
        help,
        unit,
        MetricType::Gauge,
        &Labels::new(),
        value.value(),
    );
    Ok(())
}

/// Encodes a single unlabelled counter.
fn counter(enc: &mut Families, name: &'static str, help: &'static str, value: u64) -> fmt::Result {
    enc.add(
        name,
        help,
        None,
        MetricType::Counter,
        &Labels::new(),
        Value::Counter(value),
    );
    Ok(())
}

/// Reasons to export: the fixed set for this stage, plus any other non-zero one.
fn drop_samples(
    base: &Labels,
    fixed: &[DropReason],
    seen: &[(DropReason, u64)],
    count: impl Fn(DropReason) -> u64,
) -> Vec<(Labels, u64)> {
    let mut reasons: Vec<DropReason> = fixed.to_vec();
    for (r, n) in seen {
        if *n > 0 && !reasons.contains(r) {
            reasons.push(*r);
        }
    }
    reasons
        .into_iter()
        .map(|r| {
            (
                with_reason(&with_outcome(base, "dropped"), r.as_str()),
                count(r),
            )
        })
        .collect()
}

fn with_outcome(base: &Labels, outcome: &str) -> Labels {
    let mut l = base.clone();
    l.push(("outcome", outcome.into()));
    l
}

fn with_reason(base: &Labels, reason: &str) -> Labels {
    let mut l = base.clone();
    l.push(("reason", reason.into()));
    l
}

fn encode_records(stats: &Stats, enc: &mut Families) -> fmt::Result {
    let none = Labels::new();
    let mut samples = vec![
        (with_outcome(&none, "enqueued"), stats.accepted),
        (with_outcome(&none, "sampled_out"), stats.sampled_out),
    ];
    samples.extend(drop_samples(
        &none,
        &QUEUE_DROP_REASONS,
        &stats.dropped_by_reason,
        |r| stats.dropped_for(r),
    ));
    counter_family(
        enc,
        "offload_records",
        "Records offered to the layer, by what happened to them: enqueued (entered the queue), dropped (with a reason) or sampled_out. A record enqueued and then dropped from the queue (queue_full_oldest, shutdown, shutdown_deadline) or sampled out by tail sampling counts under both, so that each series only grows.",
        &samples,
    )?;
    counter(
        enc,
        "offload_records_drained",
        "Records the drain thread took from the queue.",
        stats.drained,
    )?;
    counter(
        enc,
        "offload_truncated_values",
        "Field values cut at the length cap.",
        stats.truncated_values,
    )?;
    counter(
        enc,
        "offload_span_events_dropped",
        "Events inside spans past the per-span event limit (kept as events, not on the span).",
        stats.span_events_dropped,
    )
}

fn encode_queue(stats: &Stats, enc: &mut Families) -> fmt::Result {
    gauge(
        enc,
        "offload_queue_depth",
        "Records in the queue now.",
        None,
        to_i64(stats.queue_depth),
    )?;
    gauge(
        enc,
        "offload_queue_capacity",
        "Records the queue holds.",
        None,
        to_i64(stats.capacity),
    )?;
    gauge(
        enc,
        "offload_queue_high_water_mark",
        "The most records seen in the queue at once.",
        None,
        to_i64(stats.high_water_mark),
    )?;
    gauge(
        enc,
        "offload_open_spans",
        "Spans open now.",
        None,
        i64::try_from(stats.open_spans).unwrap_or(i64::MAX),
    )?;
    gauge(
        enc,
        "offload_oldest_open_span_age",
        "How long the oldest span still open has been open (0 when none is open).",
        Some(&Unit::Seconds),
        stats
            .oldest_open_span_age
            .map_or(0.0, |age| age.as_secs_f64()),
    )
}

fn encode_drain(stats: &Stats, enc: &mut Families) -> fmt::Result {
    counter(
        enc,
        "offload_drain_batches",
        "Batches the drain thread fanned out to the sinks.",
        stats.drain_batches,
    )?;
    gauge(
        enc,
        "offload_drain_heartbeat_age",
        "Time since the drain thread last went round its loop.",
        Some(&Unit::Seconds),
        stats.heartbeat_age.as_secs_f64(),
    )?;
    gauge(
        enc,
        "offload_uptime",
        "Time since the pipeline was built.",
        Some(&Unit::Seconds),
        stats.uptime.as_secs_f64(),
    )?;
    gauge(
        enc,
        "offload_start_time",
        "When the pipeline was built, in seconds since the Unix epoch.",
        Some(&Unit::Seconds),
        unix_seconds(stats.started_at),
    )
}

/// Tail sampling's families, present (at 0) when it is off, so that `rate()` sees the first
/// decision.
fn encode_tail(tail: &TailSamplingStats, enc: &mut Families) -> fmt::Result {
    counter(
        enc,
        "offload_tail_sampled_out_records",
        "Records of local traces that tail sampling dropped (part of offload_records_total{outcome=\"sampled_out\"}).",
        tail.sampled_out,
    )?;
    let kept =
        |reason: &str| -> Labels { vec![("decision", "kept".into()), ("reason", reason.into())] };
    counter_family(
        enc,
        "offload_tail_traces",
        "Local traces tail sampling decided: kept (with the first criterion that held) or dropped.",
        &[
            (kept("error"), tail.traces_kept_error),
            (kept("slow"), tail.traces_kept_slow),
            (kept("ratio"), tail.traces_kept_ratio),
            (vec![("decision", "dropped".into())], tail.traces_dropped),
        ],
    )?;
    let forced: Vec<(Labels, u64)> = ForcedDecision::ALL
        .iter()
        .map(|r| (vec![("reason", r.as_str().into())], tail.forced_for(*r)))
        .collect();
    counter_family(
        enc,
        "offload_tail_forced_decisions",
        "Local traces decided before their local root closed, by reason.",
        &forced,
    )?;
    gauge(
        enc,
        "offload_tail_buffered_records",
        "Records tail sampling holds now, waiting for their local root.",
        None,
        to_i64(tail.buffered_records),
    )?;
    gauge(
        enc,
        "offload_tail_buffered_traces",
        "Local traces tail sampling holds now.",
        None,
        to_i64(tail.buffered_traces),
    )?;
    gauge(
        enc,
        "offload_tail_buffer_capacity",
        "The most records tail sampling holds at once (0 when it is off).",
        None,
        to_i64(tail.settings.map_or(0, |t| t.budget())),
    )?;
    gauge(
        enc,
        "offload_tail_buffer_high_water_mark",
        "The most records tail sampling has held at once.",
        None,
        to_i64(tail.high_water_mark),
    )
}

fn encode_sinks(sinks: &[SinkStats], enc: &mut Families) -> fmt::Result {
    if sinks.is_empty() {
        return Ok(());
    }
    let mut outcomes = Vec::new();
    for s in sinks {
        let base = sink_label(s);
        outcomes.push((with_outcome(&base, "exported"), s.exported));
        outcomes.push((with_outcome(&base, "spooled"), s.spooled));
        let failed = with_outcome(&base, "failed");
        outcomes.push((with_reason(&failed, "permanent"), s.failed_permanent));
        outcomes.push((
            with_reason(&failed, "transient"),
            s.failed.saturating_sub(s.failed_permanent),
        ));
        outcomes.extend(drop_samples(
            &base,
            &SINK_DROP_REASONS,
            &s.dropped_by_reason,
            |r| s.dropped_for(r),
        ));
    }
    counter_family(
        enc,
        "offload_sink_records",
        "What became of the records each sink was handed: exported, spooled (written to its spool), failed (export error: permanent or transient) or dropped (with a reason).",
        &outcomes,
    )?;
    let per_sink = |f: &dyn Fn(&SinkStats) -> u64| -> Vec<(Labels, u64)> {
        sinks.iter().map(|s| (sink_label(s), f(s))).collect()
    };
    counter_family(
        enc,
        "offload_sink_forwarded_records",
        "Records the drain thread handed to the sink.",
        &per_sink(&|s| s.forwarded),
    )?;
    counter_family(
        enc,
        "offload_sink_retries",
        "Export retries.",
        &per_sink(&|s| s.retries),
    )?;
    counter_family(
        enc,
        "offload_sink_lost_after_export_records",
        "Records counted exported that the sink learned since may not have reached their \
         destination (the JSON-lines sink: a sync of its file reported that the system could \
         not write them back to the device). Also in the exported outcome.",
        &per_sink(&|s| s.lost_after_export),
    )?;
    counter_family(
        enc,
        "offload_sink_export_batches",
        "Export calls, whatever their outcome.",
        &per_sink(&|s| s.batches),
    )?;
    let gauge_per_sink = |f: &dyn Fn(&SinkStats) -> i64| -> Vec<(Labels, i64)> {
        sinks.iter().map(|s| (sink_label(s), f(s))).collect()
    };
    gauge_family(
        enc,
        "offload_sink_buffer_depth",
        "Records waiting in the sink's buffer now.",
        None,
        &gauge_per_sink(&|s| to_i64(s.buffered)),
    )?;
    gauge_family(
        enc,
        "offload_sink_buffer_capacity",
        "The sink buffer's capacity in records.",
        None,
        &gauge_per_sink(&|s| to_i64(s.buffer_capacity)),
    )?;
    gauge_family(
        enc,
        "offload_sink_disabled",
        "1 when the sink was disabled after a panic, else 0.",
        None,
        &gauge_per_sink(&|s| i64::from(s.disabled)),
    )?;
    let failing: Vec<(Labels, f64)> = sinks
        .iter()
        .map(|s| {
            let d = s.failing_for.unwrap_or(Duration::ZERO);
            (sink_label(s), d.as_secs_f64())
        })
        .collect();
    gauge_family(
        enc,
        "offload_sink_failing",
        "How long the sink has been failing without a success in between (0 when it is not failing).",
        Some(&Unit::Seconds),
        &failing,
    )?;
    let in_progress: Vec<(Labels, f64)> = sinks
        .iter()
        .map(|s| {
            let d = s.export_in_progress_for.unwrap_or(Duration::ZERO);
            (sink_label(s), d.as_secs_f64())
        })
        .collect();
    gauge_family(
        enc,
        "offload_sink_export_in_progress",
        "How long the sink's current export (or flush) call has been running (0 when it is not in one).",
        Some(&Unit::Seconds),
        &in_progress,
    )?;
    let last_success: Vec<(Labels, f64)> = sinks
        .iter()
        .filter_map(|s| Some((sink_label(s), unix_seconds(s.last_success_at?))))
        .collect();
    if !last_success.is_empty() {
        gauge_family(
            enc,
            "offload_sink_last_success_timestamp",
            "When the sink last exported successfully, in seconds since the Unix epoch.",
            Some(&Unit::Seconds),
            &last_success,
        )?;
    }
    let (name, help) = ("offload_sink_export_duration", "Time per export call.");
    enc.declare(name, help, Some(&Unit::Seconds), MetricType::Histogram);
    for s in sinks {
        enc.add(
            name,
            help,
            Some(&Unit::Seconds),
            MetricType::Histogram,
            &sink_label(s),
            Value::Histogram(s.export_latency.clone()),
        );
    }
    encode_spools(sinks, enc)
}

/// The `offload_sink_spool_*` families, for the sinks that have a spool.
fn encode_spools(sinks: &[SinkStats], enc: &mut Families) -> fmt::Result {
    let spools: Vec<(Labels, &SpoolStats)> = sinks
        .iter()
        .filter_map(|s| Some((sink_label(s), s.spool.as_ref()?)))
        .collect();
    if spools.is_empty() {
        return Ok(());
    }
    let mut outcomes = Vec::new();
    for (base, p) in &spools {
        outcomes.push((with_outcome(base, "replayed"), p.replayed));
        outcomes.push((with_outcome(base, "evicted"), p.evicted));
        outcomes.push((with_outcome(base, "corrupt"), p.corrupt_records));
        outcomes.push((with_outcome(base, "rejected"), p.rejected));
    }
    counter_family(
        enc,
        "offload_sink_spool_records",
        "What became of the records in the sink's spool: replayed (delivered), evicted (over the budget), corrupt (damaged on disk) or rejected (refused by the collector).",
        &outcomes,
    )?;
    let per_spool = |f: &dyn Fn(&SpoolStats) -> u64| -> Vec<(Labels, u64)> {
        spools.iter().map(|(l, p)| (l.clone(), f(p))).collect()
    };
    counter_family(
        enc,
        "offload_sink_spool_restored_records",
        "Records found in the spool when the sink started, left by an earlier process.",
        &per_spool(&|p| p.restored),
    )?;
    counter_family(
        enc,
        "offload_sink_spool_corrupt_batches",
        "Requests (or damaged stretches of a file) found damaged in the spool and skipped.",
        &per_spool(&|p| p.corrupt_batches),
    )?;
    let gauge_per_spool = |f: &dyn Fn(&SpoolStats) -> i64| -> Vec<(Labels, i64)> {
        spools.iter().map(|(l, p)| (l.clone(), f(p))).collect()
    };
    let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    gauge_family(
        enc,
        "offload_sink_spool_depth",
        "Records in the spool now.",
        None,
        &gauge_per_spool(&|p| clamp(p.records)),
    )?;
    gauge_family(
        enc,
        "offload_sink_spool",
        "Bytes the spool takes on disk now.",
        Some(&Unit::Bytes),
        &gauge_per_spool(&|p| clamp(p.bytes)),
    )?;
    gauge_family(
        enc,
        "offload_sink_spool_capacity",
        "The spool's budget.",
        Some(&Unit::Bytes),
        &gauge_per_spool(&|p| clamp(p.max_bytes)),
    )?;
    gauge_family(
        enc,
        "offload_sink_spool_replaying",
        "1 while the spool is replayed (it holds requests and the collector is reachable), else 0.",
        None,
        &gauge_per_spool(&|p| i64::from(p.replaying)),
    )?;
    let seconds = |f: &dyn Fn(&SpoolStats) -> Option<Duration>| -> Vec<(Labels, f64)> {
        spools
            .iter()
            .map(|(l, p)| (l.clone(), f(p).unwrap_or_default().as_secs_f64()))
            .collect()
    };
    gauge_family(
        enc,
        "offload_sink_spool_oldest_age",
        "How long ago the oldest request in the spool was written (0 when it is empty).",
        Some(&Unit::Seconds),
        &seconds(&|p| p.oldest_age),
    )?;
    gauge_family(
        enc,
        "offload_sink_spool_unreachable",
        "How long the collector has been unreachable, requests going to the spool (0 when it is reachable).",
        Some(&Unit::Seconds),
        &seconds(&|p| p.unreachable_for),
    )?;
    gauge_family(
        enc,
        "offload_sink_spool_unanswered",
        "How long the oldest request still waiting for the collector's answer has waited (0 when none waits).",
        Some(&Unit::Seconds),
        &seconds(&|p| p.unanswered_for),
    )
}

/// Encodes our histogram. Ours stores a count per bucket (not cumulative) with a last,
/// unbounded bucket; `prometheus-client` takes exactly that — per-bucket counts with `+Inf`
/// last — and writes the cumulative `_bucket` series Prometheus expects.
fn encode_histogram(h: &LatencyHistogram, mut enc: MetricEncoder<'_>) -> fmt::Result {
    let buckets = histogram_buckets(h);
    let count: u64 = buckets.iter().map(|(_, c)| c).sum();
    let sum = if h.sum_seconds.is_finite() {
        h.sum_seconds
    } else {
        0.0
    };
    enc.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
}

/// `(upper bound, count in this bucket)` pairs ending with `+Inf`, tolerant of a snapshot
/// whose `counts` and `bounds_seconds` do not match in length.
fn histogram_buckets(h: &LatencyHistogram) -> Vec<(f64, u64)> {
    let mut buckets: Vec<(f64, u64)> = h
        .bounds_seconds
        .iter()
        .enumerate()
        .map(|(i, b)| (*b, h.counts.get(i).copied().unwrap_or(0)))
        .collect();
    let overflow: u64 = h.counts.iter().skip(h.bounds_seconds.len()).sum();
    buckets.push((f64::INFINITY, overflow));
    buckets
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::tests_support::sample_stats;

    #[test]
    fn a_spool_has_its_families_and_a_sink_without_one_has_none() {
        let text = render_prometheus(&sample_stats(), None);
        assert!(
            text.contains("offload_sink_records_total{sink=\"json\",outcome=\"spooled\"} 0\n"),
            "{text}"
        );
        assert!(!text.contains("offload_sink_spool_"), "{text}");

        let mut stats = sample_stats();
        stats.sinks[0].spool = Some(SpoolStats {
            bytes: 10_240,
            max_bytes: 1 << 20,
            records: 40,
            oldest_age: Some(Duration::from_millis(2500)),
            unreachable_for: Some(Duration::from_secs(3)),
            unanswered_for: Some(Duration::from_millis(1500)),
            restored: 5,
            spooled: 50,
            replayed: 10,
            evicted: 3,
            corrupt_records: 2,
            corrupt_batches: 1,
            ..SpoolStats::default()
        });
        let text = render_prometheus(&stats, None);
        for line in [
            "offload_sink_spool_records_total{sink=\"json\",outcome=\"replayed\"} 10",
            "offload_sink_spool_records_total{sink=\"json\",outcome=\"evicted\"} 3",
            "offload_sink_spool_records_total{sink=\"json\",outcome=\"corrupt\"} 2",
            "offload_sink_spool_records_total{sink=\"json\",outcome=\"rejected\"} 0",
            "offload_sink_spool_restored_records_total{sink=\"json\"} 5",
            "offload_sink_spool_corrupt_batches_total{sink=\"json\"} 1",
            "offload_sink_spool_depth{sink=\"json\"} 40",
            "offload_sink_spool_bytes{sink=\"json\"} 10240",
            "offload_sink_spool_capacity_bytes{sink=\"json\"} 1048576",
            "offload_sink_spool_oldest_age_seconds{sink=\"json\"} 2.5",
            "offload_sink_spool_replaying{sink=\"json\"} 0",
            "offload_sink_spool_unreachable_seconds{sink=\"json\"} 3.0",
            "offload_sink_spool_unanswered_seconds{sink=\"json\"} 1.5",
        ] {
            assert!(
                text.contains(&format!("{line}\n")),
                "{line} missing:\n{text}"
            );
        }
    }

    #[test]
    fn counters_get_their_total_suffix_back_in_the_prometheus_format() {
        let text = render_prometheus(&sample_stats(), None);
        assert!(
            text.contains("# TYPE offload_records_total counter\n"),
            "{text}"
        );
        assert!(text.contains("# HELP offload_records_total Records offered"));
        assert!(!text.contains("# EOF"));
        assert!(!text.contains("# UNIT"));
        let om = render_openmetrics(&sample_stats(), None);
        assert!(om.ends_with("# EOF\n"));
        assert!(om.contains("# TYPE offload_records counter\n"));
    }

    #[test]
    fn records_are_labelled_by_outcome_and_reason() {
        let text = render_prometheus(&sample_stats(), None);
        assert!(text.contains("offload_records_total{outcome=\"enqueued\"} 90\n"));
        assert!(text.contains("offload_records_total{outcome=\"sampled_out\"} 3\n"));
        assert!(text.contains(
            "offload_records_total{outcome=\"dropped\",reason=\"queue_full_newest\"} 7\n"
        ));
        // Reasons that did not happen yet are exported at 0.
        assert!(text
            .contains("offload_records_total{outcome=\"dropped\",reason=\"block_timeout\"} 0\n"));
        assert!(text.contains("offload_queue_capacity 1024\n"));
        assert!(text.contains("offload_queue_high_water_mark 512\n"));
        assert!(text.contains("offload_drain_heartbeat_age_seconds 0.25\n"));
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let text = render_prometheus(&sample_stats(), None);
        // sample_stats: 2 observations in the 0.001 bucket, 1 in the 0.01 bucket, 1 overflow.
        assert!(
            text.contains(
                "offload_sink_export_duration_seconds_bucket{le=\"0.001\",sink=\"json\"} 2\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "offload_sink_export_duration_seconds_bucket{le=\"0.01\",sink=\"json\"} 3\n"
        ));
        assert!(text.contains(
            "offload_sink_export_duration_seconds_bucket{le=\"+Inf\",sink=\"json\"} 4\n"
        ));
        assert!(text.contains("offload_sink_export_duration_seconds_count{sink=\"json\"} 4\n"));
    }

    #[test]
    fn sinks_are_labels_not_names() {
        let text = render_prometheus(&sample_stats(), None);
        assert!(text.contains(
            "offload_sink_records_total{sink=\"json\",outcome=\"failed\",reason=\"permanent\"} 2\n"
        ));
        assert!(text.contains(
            "offload_sink_records_total{sink=\"json\",outcome=\"failed\",reason=\"transient\"} 3\n"
        ));
        assert!(text.contains(
            "offload_sink_records_total{sink=\"json\",outcome=\"dropped\",reason=\"sink_buffer_full\"} 2\n"
        ));
        assert!(text.contains("offload_sink_disabled{sink=\"json\"} 0\n"));
        assert!(text.contains("offload_sink_failing_seconds{sink=\"json\"} 1.5\n"));
        assert!(text.contains("offload_sink_export_in_progress_seconds{sink=\"json\"} 0.0\n"));
    }

    #[test]
    fn names_follow_the_prometheus_rules() {
        let text = render_prometheus(&sample_stats(), Some(1.0));
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(name.starts_with("offload_"), "{line}");
                if kind == "counter" {
                    assert!(name.ends_with("_total"), "{line}");
                }
                let timed = [
                    "age",
                    "uptime",
                    "time",
                    "duration",
                    "failing",
                    "timestamp",
                    "in_progress",
                ];
                if timed.iter().any(|t| name.contains(t)) {
                    assert!(name.ends_with("_seconds"), "{line}");
                }
            } else if !line.starts_with('#') {
                assert!(line.starts_with("offload_"), "{line}");
            }
        }
    }

    #[test]
    fn sampling_rate_is_exported_only_when_known() {
        assert!(!render_prometheus(&sample_stats(), None).contains("offload_sampling_rate"));
        let text = render_prometheus(&sample_stats(), Some(0.25));
        assert!(text.contains("offload_sampling_rate 0.25\n"));
        assert!(!render_prometheus(&sample_stats(), Some(f64::NAN)).contains("sampling_rate"));
    }

    #[test]
    fn a_mismatched_histogram_does_not_panic() {
        let mut stats = sample_stats();
        stats.sinks[0].export_latency.counts.truncate(2);
        stats.sinks[0].export_latency.bounds_seconds.clear();
        let text = render_prometheus(&stats, None);
        assert!(text.contains("offload_sink_export_duration_seconds_bucket{le=\"+Inf\""));
    }

    #[test]
    fn the_collector_joins_a_user_registry_under_its_prefix() {
        let mut registry = Registry::with_prefix("app");
        OffloadCollector::new(sample_stats).register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(out.contains("app_offload_queue_capacity 1024\n"), "{out}");
    }
}
