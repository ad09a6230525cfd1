//! Sampling: a keep rate for events, OpenTelemetry's trace samplers for spans, a whitelist of
//! prefixes never sampled out, and an adaptive mode that lowers the event rate while the queue
//! is nearly full. Pure decisions over atomics; no I/O.
//!
//! Decisions are made before anything is captured: a sampled-out event or an unsampled span
//! costs a lookup and a random number, and allocates nothing.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{
    AtomicBool, AtomicU64, AtomicU8,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde::Serialize;

use crate::counters::Counter;
use crate::ids::TraceId;

/// Which spans are recorded: OpenTelemetry's samplers, with their `OTEL_TRACES_SAMPLER` names.
///
/// The ratio samplers decide from the trace id with the same algorithm as the OpenTelemetry
/// SDK's `TraceIdRatioBased`, so every service of a trace that uses either makes the same
/// decision. The parent-based samplers (the default is `parentbased_always_on`) decide only
/// at the root and let every child inherit the decision, so a trace is kept whole or not at all;
/// a remote parent's sampled flag is honoured.
///
/// ```
/// use tracing_offload::TracesSampler;
/// let s = TracesSampler::parse("parentbased_traceidratio", Some("0.25")).unwrap();
/// assert_eq!(s, TracesSampler::ParentBasedTraceIdRatio(0.25));
/// assert_eq!(s.name(), "parentbased_traceidratio");
/// // `Display` and `FromStr` use `name` or `name:arg`, and round-trip.
/// assert_eq!(s.to_string(), "parentbased_traceidratio:0.25");
/// assert_eq!("parentbased_traceidratio:0.25".parse(), Ok(s));
/// assert_eq!(TracesSampler::AlwaysOn.to_string(), "always_on");
/// assert!(TracesSampler::parse("sometimes", None).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "name", content = "arg", rename_all = "snake_case")]
pub enum TracesSampler {
    /// Record every span.
    AlwaysOn,
    /// Record no span.
    AlwaysOff,
    /// Record a trace when its id falls within the ratio (0.0 to 1.0).
    #[serde(rename = "traceidratio")]
    TraceIdRatio(f64),
    /// Roots: always; children: as their parent (the default).
    #[serde(rename = "parentbased_always_on")]
    ParentBasedAlwaysOn,
    /// Roots: never; children: as their parent.
    #[serde(rename = "parentbased_always_off")]
    ParentBasedAlwaysOff,
    /// Roots: by trace id ratio; children: as their parent.
    #[serde(rename = "parentbased_traceidratio")]
    ParentBasedTraceIdRatio(f64),
}

/// The default traces sampler, as in the OpenTelemetry SDKs.
pub const DEFAULT_TRACES_SAMPLER: TracesSampler = TracesSampler::ParentBasedAlwaysOn;
/// The default event keep rate: keep everything.
pub const DEFAULT_SAMPLE_RATE: f64 = 1.0;

// === impl TracesSampler ===

impl TracesSampler {
    /// Parses an `OTEL_TRACES_SAMPLER` name with its `OTEL_TRACES_SAMPLER_ARG`. A ratio
    /// sampler without an argument uses 1.0, as the OTel specification says.
    pub fn parse(name: &str, arg: Option<&str>) -> Result<Self, ParseSamplerError> {
        let ratio = || -> Result<f64, ParseSamplerError> {
            match arg.map(str::trim).filter(|a| !a.is_empty()) {
                None => Ok(1.0),
                Some(a) => parse_ratio(a).map_err(|_| ParseSamplerError::Ratio(a.to_owned())),
            }
        };
        Ok(match name.trim().to_ascii_lowercase().as_str() {
            "always_on" => TracesSampler::AlwaysOn,
            "always_off" => TracesSampler::AlwaysOff,
            "traceidratio" => TracesSampler::TraceIdRatio(ratio()?),
            "parentbased_always_on" => TracesSampler::ParentBasedAlwaysOn,
            "parentbased_always_off" => TracesSampler::ParentBasedAlwaysOff,
            "parentbased_traceidratio" => TracesSampler::ParentBasedTraceIdRatio(ratio()?),
            _ => return Err(ParseSamplerError::Name(name.to_owned())),
        })
    }

    /// The same sampler with a ratio of `-0.0` as 0 (shown as `0`).
    pub(crate) fn normalized(self) -> Self {
        match self {
            TracesSampler::TraceIdRatio(r) => TracesSampler::TraceIdRatio(r + 0.0),
            TracesSampler::ParentBasedTraceIdRatio(r) => {
                TracesSampler::ParentBasedTraceIdRatio(r + 0.0)
            }
            other => other,
        }
    }

    /// The `OTEL_TRACES_SAMPLER` name.
    pub const fn name(&self) -> &'static str {
        match self {
            TracesSampler::AlwaysOn => "always_on",
            TracesSampler::AlwaysOff => "always_off",
            TracesSampler::TraceIdRatio(_) => "traceidratio",
            TracesSampler::ParentBasedAlwaysOn => "parentbased_always_on",
            TracesSampler::ParentBasedAlwaysOff => "parentbased_always_off",
            TracesSampler::ParentBasedTraceIdRatio(_) => "parentbased_traceidratio",
        }
    }

    /// The ratio of the ratio samplers.
    pub const fn ratio(&self) -> Option<f64> {
        match self {
            TracesSampler::TraceIdRatio(r) | TracesSampler::ParentBasedTraceIdRatio(r) => Some(*r),
            _ => None,
        }
    }

    /// Checks the ratio is within 0.0 to 1.0.
    pub fn validate(&self) -> Result<(), SamplingError> {
        match self.ratio() {
            Some(r) if !(0.0..=1.0).contains(&r) => Err(SamplingError::Rate(r)),
            _ => Ok(()),
        }
    }

    /// The sampler as one word, so that a decision never mixes two settings: bit 63 says
    /// parent-based, the low 63 bits are the root threshold ([`ROOT_ALWAYS`] keeps every root,
    /// 0 none, anything else is a trace-id-ratio threshold).
    fn encode(&self) -> u64 {
        let (parent_based, root) = match *self {
            TracesSampler::AlwaysOn => (false, ROOT_ALWAYS),
            TracesSampler::AlwaysOff => (false, 0),
            TracesSampler::TraceIdRatio(r) => (false, ratio_threshold(r)),
            TracesSampler::ParentBasedAlwaysOn => (true, ROOT_ALWAYS),
            TracesSampler::ParentBasedAlwaysOff => (true, 0),
            TracesSampler::ParentBasedTraceIdRatio(r) => (true, ratio_threshold(r)),
        };
        root | if parent_based { PARENT_BASED } else { 0 }
    }
}

impl fmt::Display for TracesSampler {
    /// `name`, or `name:arg` for the ratio samplers (e.g. `traceidratio:0.25`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ratio() {
            Some(r) => write!(f, "{}:{r}", self.name()),
            None => f.write_str(self.name()),
        }
    }
}

impl FromStr for TracesSampler {
    type Err = ParseSamplerError;

    /// Parses `name` or `name:arg` (e.g. `traceidratio:0.25`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some((name, arg)) => Self::parse(name, Some(arg)),
            None => Self::parse(s, None),
        }
    }
}

/// A traces sampler that could not be parsed.
///
/// ```
/// use tracing_offload::{ParseSamplerError, TracesSampler};
/// let e = "sometimes".parse::<TracesSampler>().unwrap_err();
/// assert_eq!(e, ParseSamplerError::Name("sometimes".into()));
/// assert!(e.to_string().starts_with("unknown traces sampler \"sometimes\": use one of always_on,"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseSamplerError {
    /// Not one of OpenTelemetry's sampler names.
    #[error("unknown traces sampler {0:?}: use one of {SAMPLER_NAMES}")]
    Name(String),
    /// The ratio argument was not a number from 0.0 to 1.0.
    #[error("invalid sampler ratio {0:?}: use a number from 0.0 to 1.0")]
    Ratio(String),
}

/// The sampler names [`TracesSampler::parse`] accepts.
pub(crate) const SAMPLER_NAMES: &str = "always_on, always_off, traceidratio, \
    parentbased_always_on, parentbased_always_off, parentbased_traceidratio";

/// A sampling setting that was out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplingError {
    /// A rate or ratio outside 0.0 to 1.0 (or not a number).
    #[error("sampling rate {0} is outside 0.0..=1.0")]
    Rate(f64),
    /// A tail-sampling budget ([`TailSampling::max_buffered_spans`](crate::TailSampling::max_buffered_spans))
    /// outside 1 to [`MAX_TAIL_BUFFERED_SPANS`](crate::MAX_TAIL_BUFFERED_SPANS).
    #[error("tail sampling's max_buffered_spans {0} is outside 1..=16777216")]
    TailBudget(usize),
}

/// Parses a rate or ratio in 0.0 to 1.0.
pub(crate) fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        // `-0` is 0 (shown as `0`, not `-0.0`).
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r + 0.0),
        _ => Err("a number from 0.0 to 1.0".to_owned()),
    }
}

/// The event threshold meaning "always".
const ALWAYS: u64 = u64::MAX;

/// The bit of an encoded traces sampler that says it is parent-based.
const PARENT_BASED: u64 = 1 << 63;

/// The root threshold meaning "always". Ratio thresholds never reach it: the largest, for the
/// largest ratio below 1.0, is `2^63 - 1024`.
const ROOT_ALWAYS: u64 = PARENT_BASED - 1;

/// The OTel SDK's `TraceIdRatioBased` threshold: keep when the trace id's low 64 bits,
/// shifted right by one, are below it. A ratio of 1.0 or more keeps everything.
pub(crate) fn ratio_threshold(ratio: f64) -> u64 {
    if ratio >= 1.0 {
        ROOT_ALWAYS
    } else {
        (ratio.max(0.0) * (1u64 << 63) as f64) as u64
    }
}

/// The OTel SDK's `TraceIdRatioBased` decision for a trace id.
pub(crate) fn trace_id_in_ratio(trace_id: TraceId, threshold: u64) -> bool {
    if threshold == ROOT_ALWAYS {
        return true;
    }
    let low = u64::from_be_bytes([
        trace_id.0[8],
        trace_id.0[9],
        trace_id.0[10],
        trace_id.0[11],
        trace_id.0[12],
        trace_id.0[13],
        trace_id.0[14],
        trace_id.0[15],
    ]);
    (low >> 1) < threshold
}

/// An event keep rate as a threshold on a uniform `u64`.
fn rate_threshold(rate: f64) -> u64 {
    if rate >= 1.0 {
        ALWAYS
    } else {
        (rate.max(0.0) * 18_446_744_073_709_551_616.0) as u64
    }
}

/// The adaptive steps: the factor applied to the configured event rate.
pub const ADAPTIVE_FACTORS: [f64; 3] = [1.0, 0.7, 0.5];
/// Queue utilisation above which the adaptive mode steps down to 0.7, and to 0.5.
pub const ADAPTIVE_STEP_DOWN_AT: [f64; 2] = [0.8, 0.9];
/// Queue utilisation below which the adaptive mode restores the configured rate.
pub const ADAPTIVE_RESTORE_BELOW: f64 = 0.5;

/// A parent's sampling decision, as a child sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Parent {
    /// No parent: a root.
    None,
    /// A parent span in this process, with its decision. Every sampler inherits it: the
    /// decision is made once at the root, so a trace is kept whole or not at all, even when
    /// the sampler changes while the trace is open.
    Local(bool),
    /// A parent in another process (a W3C `traceparent`), with its sampled flag. The
    /// parent-based samplers honour the flag; the others decide by themselves, as in OTel.
    Remote(bool),
}

/// The live sampling settings of one pipeline, shared by the layer, the drain thread and the
/// handles. Every read on the hot path is one relaxed atomic load: settings are independent
/// values, and a decision that sees a setting a moment late is still a valid decision.
#[derive(Debug)]
pub(crate) struct Sampler {
    configured_rate: AtomicU64,
    /// The threshold in force: the configured rate times the adaptive factor.
    event_threshold: AtomicU64,
    /// The traces sampler in force, [encoded](TracesSampler::encode) in one word.
    traces_word: AtomicU64,
    /// The same sampler as set, for stats and config (not read on the hot path).
    traces: RwLock<TracesSampler>,
    /// Serialises the writers of `configured_rate`, `adaptive_step` and `event_threshold`
    /// (run-time setters and the drain thread's adaptive steps), so the threshold in force
    /// always matches the last rate and step; readers on the hot path never take it.
    writer: Mutex<()>,
    whitelist: RwLock<Arc<[String]>>,
    /// Bumped whenever the whitelist changes, so per-callsite caches recompute.
    generation: AtomicU64,
    pub(crate) keep_errors: bool,
    pub(crate) events_follow_traces: bool,
    adaptive: AtomicBool,
    adaptive_step: AtomicU8,
    pub(crate) adaptive_changes: Counter,
    seed: Option<u64>,
}

/// The sampling part of [`Stats`](crate::Stats).
#[derive(Clone, Debug, Serialize, PartialEq)]
#[non_exhaustive]
pub struct SamplingStats {
    /// The configured event keep rate.
    pub configured_rate: f64,
    /// The event keep rate in force (lower while the adaptive mode has stepped down).
    pub effective_rate: f64,
    /// The delivery rate measured since the start: the fraction of the records offered
    /// (events and spans) that sampling kept, `1 - sampled_out / offered` (head and tail
    /// sampling together). Whitelisted, critical and error events raise it above
    /// `effective_rate`. `None` before any record.
    pub kept_fraction: Option<f64>,
    /// The traces sampler in force.
    pub traces_sampler: TracesSampler,
    /// Prefixes never sampled out.
    pub whitelist: Vec<String>,
    /// Whether the adaptive mode is on.
    pub adaptive: bool,
    /// The adaptive step: 0 (configured rate), 1 (× 0.7), 2 (× 0.5).
    pub adaptive_step: u8,
    /// How many times the adaptive mode changed step.
    pub adaptive_changes: u64,
    /// Events the sampler did not keep.
    pub events_sampled_out: u64,
    /// Spans not recorded because their trace was not sampled.
    pub spans_sampled_out: u64,
}

/// Sampling settings fixed at build time (the live ones start from these).
#[derive(Clone, Debug)]
pub(crate) struct SamplingSettings {
    pub(crate) rate: f64,
    pub(crate) traces: TracesSampler,
    pub(crate) whitelist: Vec<String>,
    pub(crate) adaptive: bool,
    pub(crate) keep_errors: bool,
    pub(crate) events_follow_traces: bool,
    pub(crate) seed: Option<u64>,
}

// === impl Sampler ===

impl Sampler {
    pub(crate) fn new(s: SamplingSettings) -> Self {
        Sampler {
            configured_rate: AtomicU64::new(s.rate.to_bits()),
            event_threshold: AtomicU64::new(rate_threshold(s.rate)),
            traces_word: AtomicU64::new(s.traces.encode()),
            traces: RwLock::new(s.traces),
            writer: Mutex::new(()),
            whitelist: RwLock::new(s.whitelist.into()),
            generation: AtomicU64::new(0),
            keep_errors: s.keep_errors,
            events_follow_traces: s.events_follow_traces,
            adaptive: AtomicBool::new(s.adaptive),
            adaptive_step: AtomicU8::new(0),
            adaptive_changes: Counter::default(),
            seed: s.seed,
        }
    }

    /// Whether a callsite matches the whitelist (by target or name prefix).
    pub(crate) fn whitelisted(&self, target: &str, name: &str) -> bool {
        let list = self.whitelist.read().unwrap_or_else(|e| e.into_inner());
        list.iter()
            .any(|p| target.starts_with(p.as_str()) || name.starts_with(p.as_str()))
    }

    /// The rate decision for one event (not whitelisted, not critical).
    #[inline]
    pub(crate) fn keep_event(&self, layer_id: u64) -> bool {
        let threshold = self.event_threshold.load(Relaxed);
        threshold == ALWAYS || (threshold != 0 && random(layer_id, self.seed) < threshold)
    }

    /// The decision for a new span.
    pub(crate) fn sample_span(&self, trace_id: TraceId, parent: Parent) -> bool {
        let word = match parent {
            Parent::Local(sampled) => return sampled,
            _ => self.traces_word.load(Relaxed),
        };
        match parent {
            Parent::Remote(sampled) if word & PARENT_BASED != 0 => sampled,
            _ => trace_id_in_ratio(trace_id, word & !PARENT_BASED),
        }
    }

    pub(crate) fn set_rate(&self, rate: f64) -> Result<(), SamplingError> {
        if !(0.0..=1.0).contains(&rate) {
            return Err(SamplingError::Rate(rate));
        }
        let _writer = self.writer();
        self.configured_rate.store((rate + 0.0).to_bits(), Relaxed);
        self.apply_step(self.adaptive_step.load(Relaxed));
        Ok(())
    }

    fn writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_traces(&self, sampler: TracesSampler) -> Result<(), SamplingError> {
        sampler.validate()?;
        let mut shown = self.traces.write().unwrap_or_else(|e| e.into_inner());
        *shown = sampler;
        self.traces_word.store(sampler.encode(), Relaxed);
        Ok(())
    }

    pub(crate) fn set_whitelist(&self, prefixes: Vec<String>) {
        *self.whitelist.write().unwrap_or_else(|e| e.into_inner()) = prefixes.into();
        // Release: a thread that loads the new generation (with Acquire) then reads the new
        // list, so it never caches a class computed from the old list under the new number.
        self.generation.fetch_add(1, Release);
    }

    pub(crate) fn set_adaptive(&self, on: bool) {
        let _writer = self.writer();
        self.adaptive.store(on, Relaxed);
        if !on {
            self.change_step_locked(0);
        }
    }

    /// The whitelist generation, for per-callsite caches: a class cached under this number
    /// was computed from the list in force.
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        // Acquire: pairs with the Release in `set_whitelist`, so the list read after this
        // load is at least as new as the generation returned.
        self.generation.load(Acquire)
    }

    /// The adaptive state machine, called by the drain thread with the queue's utilisation
    /// (0.0 to 1.0) once per batch.
    pub(crate) fn adapt(&self, utilisation: f64) {
        if !self.adaptive.load(Relaxed) {
            return;
        }
        let step = self.adaptive_step.load(Relaxed);
        let target = if utilisation > ADAPTIVE_STEP_DOWN_AT[1] {
            2
        } else if utilisation > ADAPTIVE_STEP_DOWN_AT[0] {
            step.max(1)
        } else if utilisation < ADAPTIVE_RESTORE_BELOW {
            0
        } else {
            step
        };
        if target != step {
            let _writer = self.writer();
            // Turned off meanwhile: `set_adaptive(false)` has restored the configured rate.
            if self.adaptive.load(Relaxed) {
                self.change_step_locked(target);
            }
        }
    }

    /// Moves to `target` and counts the change; the caller holds `writer`.
    fn change_step_locked(&self, target: u8) {
        if self.adaptive_step.swap(target, Relaxed) != target {
            self.adaptive_changes.incr();
            self.apply_step(target);
        }
    }

    fn apply_step(&self, step: u8) {
        let rate = f64::from_bits(self.configured_rate.load(Relaxed));
        let factor = ADAPTIVE_FACTORS[usize::from(step).min(2)];
        self.event_threshold
            .store(rate_threshold(rate * factor), Relaxed);
    }

    /// The settings in force; the pipeline fills in the counts from its own snapshot.
    pub(crate) fn stats(&self) -> SamplingStats {
        let configured_rate = f64::from_bits(self.configured_rate.load(Relaxed));
        let step = self.adaptive_step.load(Relaxed);
        SamplingStats {
            configured_rate,
            effective_rate: configured_rate * ADAPTIVE_FACTORS[usize::from(step).min(2)],
            kept_fraction: None, // filled in by the pipeline, from a consistent snapshot
            traces_sampler: *self.traces.read().unwrap_or_else(|e| e.into_inner()),
            whitelist: self
                .whitelist
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .to_vec(),
            adaptive: self.adaptive.load(Relaxed),
            adaptive_step: step,
            adaptive_changes: self.adaptive_changes.get(),
            events_sampled_out: 0,
            spans_sampled_out: 0,
        }
    }
}

/// Random-number streams kept per thread: one per layer, for this many layers at once.
const RNG_SLOTS: usize = 4;

/// The fraction of `offered` records that were not sampled out; `None` when none was offered.
pub(crate) fn kept_fraction(offered: u64, sampled_out: u64) -> Option<f64> {
    (offered > 0).then(|| 1.0 - sampled_out.min(offered) as f64 / offered as f64)
}

/// A per-thread random `u64` for sampling: wyrand, one stream per (layer, thread), seeded from
/// the configured seed and the thread's index (reproducible: a new layer on a thread replays
/// the same stream) or from the OS's random hasher keys. Layers used in turn on one thread
/// keep their own streams; a fifth evicts the oldest slot. A stream made in an evicted slot
/// is seeded with the thread's count of evictions too: restarted from the seed alone, five
/// layers used in turn each drew the first number of their stream for every event, and kept
/// all of their events or none.
fn random(layer_id: u64, seed: Option<u64>) -> u64 {
    use std::cell::Cell;
    thread_local! {
        /// (owning layer, wyrand state); layer 0 marks a free slot.
        static STREAMS: [Cell<(u64, u64)>; RNG_SLOTS] = const {
            [const { Cell::new((0, 0)) }; RNG_SLOTS]
        };
        /// Slots evicted on this thread so far (the next is this modulo the slots).
        static EVICTIONS: Cell<u64> = const { Cell::new(0) };
    }
    STREAMS.with(|slots| {
        let slot = match slots.iter().find(|c| c.get().0 == layer_id) {
            Some(slot) => slot,
            None => {
                let (slot, evictions) = match slots.iter().find(|c| c.get().0 == 0) {
                    Some(free) => (free, 0),
                    None => EVICTIONS.with(|n| {
                        let count = n.get().wrapping_add(1);
                        n.set(count);
                        (&slots[(count % RNG_SLOTS as u64) as usize], count)
                    }),
                };
                let state = match seed {
                    Some(seed) => {
                        let base = seed ^ splitmix64(crate::ids::thread_index());
                        splitmix64(match evictions {
                            0 => base,
                            n => base ^ splitmix64(n).rotate_left(17),
                        })
                    }
                    None => crate::ids::random_u64(),
                };
                slot.set((layer_id, state));
                slot
            }
        };
        let mut state = slot.get().1;
        let v = crate::ids::wyrand(&mut state);
        slot.set((layer_id, state));
        v
    })
}

/// SplitMix64's finaliser: spreads the bits of a seed.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(rate: f64, traces: TracesSampler) -> Sampler {
        Sampler::new(SamplingSettings {
            rate,
            traces,
            whitelist: vec!["security.".into()],
            adaptive: true,
            keep_errors: true,
            events_follow_traces: false,
            seed: Some(7),
        })
    }

    #[test]
    fn a_rate_of_minus_zero_set_in_code_is_zero() {
        let s = sampler(1.0, TracesSampler::AlwaysOn);
        s.set_rate(-0.0).unwrap();
        let rate = f64::from_bits(s.configured_rate.load(Relaxed));
        assert!(rate == 0.0 && rate.is_sign_positive(), "{rate:?}");
        let sampler = TracesSampler::ParentBasedTraceIdRatio(-0.0).normalized();
        assert!(
            matches!(sampler, TracesSampler::ParentBasedTraceIdRatio(r) if r.is_sign_positive()),
            "{sampler:?}"
        );
    }

    #[test]
    fn a_ratio_of_minus_zero_is_zero() {
        let r = parse_ratio("-0").unwrap();
        assert!(r == 0.0 && r.is_sign_positive(), "{r:?}");
        assert_eq!(parse_ratio("-0.0").unwrap().to_string(), "0");
        assert!(parse_ratio("-0.1").is_err());
    }

    /// The ratio decision is the OpenTelemetry SDK's, id for id.
    #[test]
    fn trace_id_ratio_matches_the_opentelemetry_sdk() {
        use opentelemetry::trace::{SpanKind, TraceId as OtelTraceId};
        use opentelemetry_sdk::trace::{Sampler as SdkSampler, ShouldSample};
        for ratio in [0.0, 0.001, 0.25, 0.5, 0.999_999, 1.0] {
            let ours = sampler(1.0, TracesSampler::TraceIdRatio(ratio));
            let theirs = SdkSampler::TraceIdRatioBased(ratio);
            let mut kept = 0;
            // Random ids, then ids at the edges of the thresholds.
            let edges = [
                0,
                1,
                u64::MAX,
                u64::MAX - 1,
                u64::MAX - 2047,
                1 << 63,
                (1 << 62) - 1,
            ];
            let ids = (0..20_000u64)
                .map(|i| {
                    u128::from(crate::ids::random_u64()) << 64
                        | u128::from(crate::ids::random_u64() ^ i)
                })
                .chain(edges.iter().map(|&low| 0xabcd << 64 | u128::from(low)));
            for id in ids {
                let id = TraceId::from_u128(id);
                let sdk = theirs.should_sample(
                    None,
                    OtelTraceId::from_bytes(id.0),
                    "span",
                    &SpanKind::Internal,
                    &[],
                    &[],
                );
                let sdk_keeps =
                    sdk.decision == opentelemetry_sdk::trace::SamplingDecision::RecordAndSample;
                assert_eq!(
                    ours.sample_span(id, Parent::None),
                    sdk_keeps,
                    "{ratio} {id}"
                );
                kept += u32::from(sdk_keeps);
            }
            if ratio == 0.25 {
                assert!((4_500..5_510).contains(&kept), "{kept}");
            }
        }
    }

    #[test]
    fn names_round_trip_and_bad_values_are_errors() {
        for name in [
            "always_on",
            "always_off",
            "traceidratio",
            "parentbased_always_on",
            "parentbased_always_off",
            "parentbased_traceidratio",
        ] {
            let s = TracesSampler::parse(name, Some("0.5")).unwrap();
            assert_eq!(s.name(), name);
            assert_eq!(s.to_string().parse(), Ok(s));
        }
        assert_eq!(
            TracesSampler::parse("traceidratio", None).unwrap(),
            TracesSampler::TraceIdRatio(1.0)
        );
        assert!(TracesSampler::parse("traceidratio", Some("1.5")).is_err());
        assert!(TracesSampler::parse("jaeger_remote", None).is_err());
        assert_eq!(
            "traceidratio:0.25".parse(),
            Ok(TracesSampler::TraceIdRatio(0.25))
        );
    }

    #[test]
    fn parent_based_samplers_honour_a_remote_flag_and_plain_ones_decide_alone() {
        let id = TraceId::from_u128(u128::MAX); // low bits all ones: outside any ratio < 1
        let s = sampler(1.0, TracesSampler::ParentBasedTraceIdRatio(0.5));
        assert!(!s.sample_span(id, Parent::None));
        assert!(s.sample_span(id, Parent::Remote(true)));
        assert!(!s.sample_span(TraceId::from_u128(1), Parent::Remote(false)));
        s.set_traces(TracesSampler::AlwaysOn).unwrap();
        assert!(s.sample_span(id, Parent::Remote(false)));
        s.set_traces(TracesSampler::TraceIdRatio(0.5)).unwrap();
        assert!(!s.sample_span(id, Parent::Remote(true)));
        assert!(s.set_traces(TracesSampler::TraceIdRatio(-0.1)).is_err());
    }

    #[test]
    fn local_children_inherit_whatever_the_sampler() {
        let id = TraceId::from_u128(u128::MAX);
        for traces in [
            TracesSampler::AlwaysOn,
            TracesSampler::AlwaysOff,
            TracesSampler::TraceIdRatio(0.5),
            TracesSampler::ParentBasedAlwaysOff,
        ] {
            let s = sampler(1.0, traces);
            assert!(s.sample_span(id, Parent::Local(true)), "{traces}");
            assert!(!s.sample_span(TraceId::from_u128(1), Parent::Local(false)));
        }
    }

    #[test]
    fn adaptive_steps_down_and_restores_and_counts_changes() {
        let s = sampler(1.0, DEFAULT_TRACES_SAMPLER);
        s.adapt(0.85);
        assert_eq!(
            (s.stats().adaptive_step, s.stats().effective_rate),
            (1, 0.7)
        );
        s.adapt(0.95);
        assert_eq!(
            (s.stats().adaptive_step, s.stats().effective_rate),
            (2, 0.5)
        );
        s.adapt(0.85); // between: stays down until below the restore mark
        s.adapt(0.6);
        assert_eq!(s.stats().adaptive_step, 2);
        s.adapt(0.3);
        assert_eq!(
            (s.stats().adaptive_step, s.stats().effective_rate),
            (0, 1.0)
        );
        assert_eq!(s.stats().adaptive_changes, 3);
    }

    #[test]
    fn alternating_layers_on_one_thread_keep_a_fair_rate_with_a_seed() {
        let s = sampler(0.5, DEFAULT_TRACES_SAMPLER);
        let kept = (0..20_000u64)
            .filter(|i| s.keep_event(1_000 + i % 2))
            .count();
        // 5 standard deviations of a binomial(20 000, 0.5) is about 354.
        assert!((9_646..=10_354).contains(&kept), "{kept}");
    }

    #[test]
    fn turning_adaptive_off_restores_the_configured_rate_and_blocks_later_steps() {
        let s = sampler(0.8, DEFAULT_TRACES_SAMPLER);
        s.adapt(0.95);
        assert_eq!(s.stats().effective_rate, 0.4);
        s.set_adaptive(false);
        s.adapt(0.95);
        let st = s.stats();
        assert_eq!((st.adaptive_step, st.effective_rate), (0, 0.8));
        assert_eq!(s.event_threshold.load(Relaxed), rate_threshold(0.8));
        // A new rate while stepped down keeps the step.
        s.set_adaptive(true);
        s.adapt(0.85);
        s.set_rate(0.5).unwrap();
        assert_eq!(s.event_threshold.load(Relaxed), rate_threshold(0.5 * 0.7));
    }

    #[test]
    fn rates_are_validated_and_the_whitelist_matches_prefixes() {
        let s = sampler(1.0, DEFAULT_TRACES_SAMPLER);
        assert_eq!(s.set_rate(1.5), Err(SamplingError::Rate(1.5)));
        assert!(s.set_rate(f64::NAN).is_err());
        s.set_rate(0.0).unwrap();
        assert!((0..1000).all(|_| !s.keep_event(1)));
        assert!(s.whitelisted("security.audit", "x") && s.whitelisted("app", "security.login"));
        assert!(!s.whitelisted("app::security", "x"));
        let g = s.generation();
        s.set_whitelist(vec!["app".into()]);
        assert!(s.whitelisted("app::security", "x"));
        assert_ne!(s.generation(), g);
    }

    #[test]
    fn five_seeded_layers_used_in_turn_each_sample_at_their_rate() {
        // More layers than a thread keeps streams for: each event evicts a stream. Restarted
        // from the seed alone, every event of a layer drew the same first number.
        std::thread::spawn(|| {
            let layers = [101u64, 102, 103, 104, 105];
            let mut below_half = [0u32; 5];
            let rounds = 2_000;
            for _ in 0..rounds {
                for (i, &layer) in layers.iter().enumerate() {
                    if random(layer, Some(7)) < u64::MAX / 2 {
                        below_half[i] += 1;
                    }
                }
            }
            for (i, n) in below_half.iter().enumerate() {
                let fraction = f64::from(*n) / f64::from(rounds);
                assert!((0.4..0.6).contains(&fraction), "layer {i}: {fraction}");
            }
        })
        .join()
        .unwrap();
    }
}
