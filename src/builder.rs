//! [`Builder`]: every setting, its default, reading the environment, and `build()`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::config::{self, Config, Setting};
use crate::env::{self, saturating_millis, EnvReader, EnvWarning};
use crate::error::BuildError;
use crate::guard::{Guard, Handle};
use crate::health::{HealthConfig, HealthMonitor};
use crate::layer::{LayerSettings, OffloadLayer};
use crate::pipeline::queue::{Backpressure, Intake, Queue, EXPECTED_BACKPRESSURE};
use crate::pipeline::sink_thread::panic_message;
use crate::pipeline::{Pipeline, PipelineSettings, SinkSlot};
use crate::sampling::{
    Sampler, SamplingError, SamplingSettings, TracesSampler, DEFAULT_SAMPLE_RATE,
    DEFAULT_TRACES_SAMPLER,
};
use crate::sink::{Sink, SinkError};
use crate::stats::{Counters, SinkCounters};
use crate::tail_sampling::{TailControl, TailSampling, MAX_TAIL_BUFFERED_SPANS};

/// Records the queue holds by default.
pub const DEFAULT_CAPACITY: usize = 65_536;
/// The default back-pressure policy: refuse new records when full (cheapest, never blocks).
pub const DEFAULT_BACKPRESSURE: Backpressure = Backpressure::DropNewest;
pub use crate::pipeline::queue::DEFAULT_BLOCK_TIMEOUT;
/// How long a critical record waits for room when the policy is not `Block`.
pub const DEFAULT_CRITICAL_BLOCK_TIMEOUT: Duration = Duration::from_millis(100);
/// Records the drain thread (and each sink thread) takes per batch.
pub const DEFAULT_BATCH_SIZE: usize = 1_024;
/// The timer on which the drain and sink threads wake when producers have not woken them.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(10);
/// The cap on a captured string or `Debug` value, in bytes (longer ones are cut and marked).
pub const DEFAULT_MAX_FIELD_LEN: usize = 8 * 1024;
/// Events kept on a span for sinks that attach them (OTel's `OTEL_SPAN_EVENT_COUNT_LIMIT`).
pub const DEFAULT_SPAN_EVENT_LIMIT: usize = 128;
/// Each sink's own buffer, in records.
pub const DEFAULT_SINK_BUFFER_CAPACITY: usize = 16_384;
/// How long dropping the [`Guard`] may take to flush and stop.
pub const DEFAULT_DROP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a full sink may go without finishing an export before it counts as stalled: then
/// it no longer holds the other sinks back, and records for it are dropped at its buffer
/// (counted as `sink_buffer_full`) until it moves again.
pub const DEFAULT_SINK_STALL_AFTER: Duration = Duration::from_secs(1);
/// Whether spans count the time they are entered (busy) and not (idle).
pub const DEFAULT_SPAN_TIMINGS: bool = true;

/// The largest queue capacity (16 777 216 records), from [`Builder::capacity`] or
/// `OFFLOAD_CAPACITY`. The queue is allocated whole when the pipeline is built.
pub const MAX_CAPACITY: usize = 1 << 24;
pub use crate::sink::MAX_SINK_BUFFER_CAPACITY;
/// The largest batch (65 536 records), from [`Builder::batch_size`].
pub const MAX_BATCH_SIZE: usize = 65_536;
/// The most events kept per span (65 536), from [`Builder::span_event_limit`] or
/// `OTEL_SPAN_EVENT_COUNT_LIMIT`.
pub const MAX_SPAN_EVENT_LIMIT: usize = 65_536;
/// The longest block timeout `OFFLOAD_BLOCK_TIMEOUT_MS` may give (one minute): a larger value
/// in the environment is a typo, not a wish to hang `info!`. In code,
/// [`Backpressure::Block`] takes any timeout (`Duration::MAX` never gives up).
pub const MAX_ENV_BLOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// The variable that sets the admin endpoint's address.
const ADMIN_ADDR_VAR: &str = "OFFLOAD_ADMIN_ADDR";

/// Configures and builds an [`OffloadLayer`] and its [`Guard`].
///
/// | setting | method | default | range | env variable |
/// |---|---|---|---|---|
/// | queue capacity | [`capacity`](Self::capacity) | [`DEFAULT_CAPACITY`] (65 536) | 1 – [`MAX_CAPACITY`] (16 777 216) | `OFFLOAD_CAPACITY` |
/// | back-pressure | [`backpressure`](Self::backpressure) | [`DEFAULT_BACKPRESSURE`] (`drop_newest`) | | `OFFLOAD_BACKPRESSURE` |
/// | block timeout | [`backpressure`](Self::backpressure) | [`DEFAULT_BLOCK_TIMEOUT`] (100 ms) | any; from the environment 0 – [`MAX_ENV_BLOCK_TIMEOUT`] (60 000 ms), with `OFFLOAD_BACKPRESSURE=block` (alone, a warning) | `OFFLOAD_BLOCK_TIMEOUT_MS` |
/// | critical block timeout | [`critical_block_timeout`](Self::critical_block_timeout) | [`DEFAULT_CRITICAL_BLOCK_TIMEOUT`] (100 ms) | any | |
/// | batch size | [`batch_size`](Self::batch_size) | [`DEFAULT_BATCH_SIZE`] (1 024) | 1 – [`MAX_BATCH_SIZE`] (65 536); 0 counts as 1 | |
/// | flush interval | [`flush_interval`](Self::flush_interval) | [`DEFAULT_FLUSH_INTERVAL`] (10 ms) | any; below 1 ms counts as 1 ms (the drain thread still wakes at least once a second, and so does the thread of a sink with a spool) | |
/// | text value cap | [`max_field_len`](Self::max_field_len) | [`DEFAULT_MAX_FIELD_LEN`] (8 KiB) | any | |
/// | span events kept | [`span_event_limit`](Self::span_event_limit) | [`DEFAULT_SPAN_EVENT_LIMIT`] (128) | 0 – [`MAX_SPAN_EVENT_LIMIT`] (65 536) | `OTEL_SPAN_EVENT_COUNT_LIMIT` |
/// | sink buffer | [`sink_buffer_capacity`](Self::sink_buffer_capacity) | [`DEFAULT_SINK_BUFFER_CAPACITY`] (16 384) | 1 – [`MAX_SINK_BUFFER_CAPACITY`] (16 777 216); 0 counts as 1 | |
/// | guard drop timeout | [`drop_timeout`](Self::drop_timeout) | [`DEFAULT_DROP_TIMEOUT`] (5 s) | any | |
/// | sink stall time | [`sink_stall_after`](Self::sink_stall_after) | [`DEFAULT_SINK_STALL_AFTER`] (1 s; under `Block`, at most half its timeout) | any | |
/// | span busy/idle timings | [`span_timings`](Self::span_timings) | [`DEFAULT_SPAN_TIMINGS`] (on) | | |
/// | critical targets | [`critical_target`](Self::critical_target) | none | | |
/// | enabled | [`enabled`](Self::enabled) | `true` | | `OTEL_SDK_DISABLED` |
/// | event keep rate | [`sample_rate`](Self::sample_rate) | [`DEFAULT_SAMPLE_RATE`] (1.0) | 0.0 – 1.0 | `OFFLOAD_SAMPLE_RATE` |
/// | traces sampler | [`traces_sampler`](Self::traces_sampler) | [`DEFAULT_TRACES_SAMPLER`] (`parentbased_always_on`) | ratio 0.0 – 1.0 | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` |
/// | never sampled out | [`sample_always`](Self::sample_always) | none | | `OFFLOAD_SAMPLE_ALWAYS` (comma-separated) |
/// | adaptive sampling | [`sample_adaptive`](Self::sample_adaptive) | off | | `OFFLOAD_SAMPLE_ADAPTIVE` |
/// | keep all errors | [`keep_errors`](Self::keep_errors) | `true` | | |
/// | events follow trace sampling | [`events_follow_trace_sampling`](Self::events_follow_trace_sampling) | `false` | | |
/// | tail sampling | [`tail_sampling`](Self::tail_sampling) | off | ratio 0.0 – 1.0; budget 1 – [`MAX_TAIL_BUFFERED_SPANS`] | `OFFLOAD_TAIL_SAMPLING` |
/// | admin HTTP endpoint (feature `admin`) | `admin_addr` | off | `host:port`: an IP address or a host name; port 0 picks a free port | `OFFLOAD_ADMIN_ADDR` |
/// | health thresholds | [`health_config`](Self::health_config) | [`HealthConfig::default`] | | |
///
/// Environment variables are read only by [`Builder::from_env`], [`Builder::try_from_env`] and
/// [`init`](crate::init); a value set with a method wins over the environment. A count set
/// with a method outside its range makes [`build`](Self::build) fail with
/// [`BuildError::OutOfRange`]; a value from the environment outside its range is ignored
/// with a warning (an error from `try_from_env`), like any other invalid value. Durations set
/// in code take any value: a deadline too far to count never passes.
///
/// ```
/// use std::time::Duration;
/// use tracing_offload::{Backpressure, OffloadLayer, sink};
/// use tracing_subscriber::prelude::*;
///
/// let (layer, guard) = OffloadLayer::builder()
///     .capacity(1024)
///     .backpressure(Backpressure::Block { timeout: Duration::from_millis(10) })
///     .sink(sink::Console::stderr())
///     .build()?;
/// let subscriber = tracing_subscriber::registry().with(layer);
/// tracing::subscriber::with_default(subscriber, || tracing::info!(answer = 42, "hello"));
/// guard.shutdown(Duration::from_secs(1))?;
/// assert_eq!(guard.handle().stats().enqueued, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a builder does nothing until `build()` is called"]
pub struct Builder {
    config: Config,
    backpressure: Backpressure,
    sampling_seed: Option<u64>,
    sinks: Vec<Box<dyn Sink>>,
    health: HealthConfig,
    /// Built from the environment (`from_env` and friends): a reload then reports the
    /// build-time variables it cannot apply.
    env_read: bool,
    /// The critical block timeout and the drop timeout as set in code, to the nanosecond (the
    /// configuration shows them in whole milliseconds, rounded up): in force while the
    /// configuration still shows them.
    exact_critical_block_timeout: Option<Duration>,
    exact_drop_timeout: Option<Duration>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A duration in whole milliseconds, rounded up: a configuration never shows a wait that is
/// in force as 0 (adversary pass 65: `critical_block_timeout(900 µs)` showed 0, and was 0).
fn millis_up(d: Duration) -> u64 {
    saturating_millis(d.saturating_add(Duration::from_nanos(999_999)))
}

/// The duration in force for a setting shown as `ms`: the one set in code, to the nanosecond,
/// while the configuration still shows it (nothing set it otherwise since).
fn in_force(ms: u64, exact: Option<Duration>) -> Duration {
    match exact {
        Some(d) if millis_up(d) == ms => d,
        _ => Duration::from_millis(ms),
    }
}

// === impl OffloadLayer ===

impl OffloadLayer {
    /// Starts a [`Builder`] with every setting at its default.
    pub fn builder() -> Builder {
        Builder::new()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

// === impl Builder ===

impl Builder {
    /// Every setting at its default; the environment is not read.
    pub fn new() -> Self {
        Builder {
            config: Config {
                enabled: Setting::default(true),
                capacity: Setting::default(DEFAULT_CAPACITY),
                backpressure: Setting::default(DEFAULT_BACKPRESSURE.as_str().to_owned()),
                block_timeout_ms: Setting::default(DEFAULT_BLOCK_TIMEOUT.as_millis() as u64),
                critical_block_timeout_ms: Setting::default(
                    DEFAULT_CRITICAL_BLOCK_TIMEOUT.as_millis() as u64,
                ),
                batch_size: Setting::default(DEFAULT_BATCH_SIZE),
                flush_interval_ms: Setting::default(DEFAULT_FLUSH_INTERVAL.as_millis() as u64),
                max_field_len: Setting::default(DEFAULT_MAX_FIELD_LEN),
                span_event_limit: Setting::default(DEFAULT_SPAN_EVENT_LIMIT),
                sink_buffer_capacity: Setting::default(DEFAULT_SINK_BUFFER_CAPACITY),
                drop_timeout_ms: Setting::default(DEFAULT_DROP_TIMEOUT.as_millis() as u64),
                sink_stall_after_ms: Setting::default(DEFAULT_SINK_STALL_AFTER.as_millis() as u64),
                span_timings: Setting::default(DEFAULT_SPAN_TIMINGS),
                critical_targets: Setting::default(Vec::new()),
                sinks: Vec::new(),
                sink_settings: Default::default(),
                sample_rate: Setting::default(DEFAULT_SAMPLE_RATE),
                traces_sampler: Setting::default(DEFAULT_TRACES_SAMPLER),
                sample_always: Setting::default(Vec::new()),
                sample_adaptive: Setting::default(false),
                keep_errors: Setting::default(true),
                events_follow_trace_sampling: Setting::default(false),
                tail_sampling: Setting::default(None),
                admin_addr: Setting::default(None),
                filter: None,
                warnings: Vec::new(),
            },
            backpressure: DEFAULT_BACKPRESSURE,
            sampling_seed: None,
            sinks: Vec::new(),
            health: HealthConfig::default(),
            env_read: false,
            exact_critical_block_timeout: None,
            exact_drop_timeout: None,
        }
    }

    /// Defaults overlaid with the environment (see the table above). Invalid values —
    /// unparsable, outside their range, or not UTF-8 — are ignored with a warning (on stderr
    /// at build time, and in [`Config::warnings`]).
    pub fn from_env() -> Self {
        Self::from_env_reader(EnvReader::process())
    }

    /// Like [`from_env`](Self::from_env), but an invalid variable is an error.
    pub fn try_from_env() -> Result<Self, BuildError> {
        Self::from_env_reader(EnvReader::process()).strict()
    }

    /// [`try_from_env`](Self::try_from_env) with a custom lookup instead of the process
    /// environment.
    ///
    /// ```
    /// use tracing_offload::{BuildError, Builder};
    /// let env = |var: &str| (var == "OFFLOAD_SAMPLE_RATE").then(|| "1.5".to_owned());
    /// match Builder::try_from_env_with(&env) {
    ///     Err(BuildError::InvalidEnv(warnings)) => {
    ///         assert_eq!(warnings[0].var, "OFFLOAD_SAMPLE_RATE");
    ///         assert_eq!(warnings[0].value, "1.5");
    ///     }
    ///     _ => unreachable!(),
    /// }
    /// ```
    pub fn try_from_env_with(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, BuildError> {
        Self::from_env_with(lookup).strict()
    }

    /// [`from_env`](Self::from_env) with a custom lookup instead of the process environment
    /// (for tests and for configuration systems that are not the environment).
    pub fn from_env_with(lookup: &dyn Fn(&str) -> Option<String>) -> Self {
        Self::from_env_reader(EnvReader::new(lookup))
    }

    fn from_env_reader(mut env: EnvReader<'_>) -> Self {
        let mut b = Self::new();
        b.apply_env(&mut env);
        b.config.warnings = env.warnings;
        b.env_read = true;
        b
    }

    /// Adds warnings found reading variables that are not the builder's own (`init()`'s
    /// `RUST_LOG`), so that they are printed and shown in [`Config::warnings`] with the rest.
    /// Whether a sink was added.
    pub(crate) fn has_sinks(&self) -> bool {
        !self.sinks.is_empty()
    }

    /// The filter `init` puts in front of the layer, for [`Config::filter`].
    pub(crate) fn init_filter(mut self, filter: Setting<String>) -> Self {
        self.config.filter = Some(filter);
        self
    }

    pub(crate) fn env_warnings(mut self, warnings: Vec<EnvWarning>) -> Self {
        self.config.warnings.extend(warnings);
        self
    }

    /// The builder, or its environment warnings as an error.
    fn strict(self) -> Result<Self, BuildError> {
        if self.config.warnings.is_empty() {
            Ok(self)
        } else {
            Err(BuildError::InvalidEnv(self.config.warnings))
        }
    }

    fn apply_env(&mut self, env: &mut EnvReader<'_>) {
        config::apply_sampling_env(&mut self.config, env, config::EnvPrecedence::CodeWins);
        let c = &mut self.config;
        if let Some(disabled) = env.parse("OTEL_SDK_DISABLED", &false, env::boolean) {
            c.enabled.set_env(!disabled, "OTEL_SDK_DISABLED");
        }
        if let Some(n) = env.parse(
            "OFFLOAD_CAPACITY",
            &DEFAULT_CAPACITY,
            env::whole_number_in(1..=MAX_CAPACITY),
        ) {
            c.capacity.set_env(n, "OFFLOAD_CAPACITY");
        }
        let timeout = env.parse(
            "OFFLOAD_BLOCK_TIMEOUT_MS",
            &DEFAULT_BLOCK_TIMEOUT.as_millis(),
            env::millis_in(Duration::ZERO..=MAX_ENV_BLOCK_TIMEOUT),
        );
        let policy = env.parse("OFFLOAD_BACKPRESSURE", &DEFAULT_BACKPRESSURE, |s| {
            s.parse::<Backpressure>()
                .map_err(|_| EXPECTED_BACKPRESSURE.to_owned())
        });
        match (policy, timeout) {
            (Some(Backpressure::Block { .. }), Some(t)) => {
                c.block_timeout_ms
                    .set_env(saturating_millis(t), "OFFLOAD_BLOCK_TIMEOUT_MS");
            }
            // The timeout is `block`'s: set without it, it would change nothing while `/config`
            // showed it as in force.
            (policy, Some(t)) => env.warnings.push(EnvWarning {
                var: "OFFLOAD_BLOCK_TIMEOUT_MS".into(),
                value: saturating_millis(t).to_string(),
                expected: format!(
                    "OFFLOAD_BACKPRESSURE=block with it (it is the timeout of that policy; \
                     OFFLOAD_BACKPRESSURE is {})",
                    policy.map_or("unset or invalid", |p| p.as_str())
                ),
                used: "nothing from it".into(),
            }),
            (_, None) => {}
        }
        if let Some(mut p) = policy {
            if let (Backpressure::Block { timeout: t }, Some(from_env)) = (&mut p, timeout) {
                *t = from_env;
            }
            c.backpressure
                .set_env(p.as_str().to_owned(), "OFFLOAD_BACKPRESSURE");
            self.backpressure = p;
        }
        if let Some(n) = env.parse(
            "OTEL_SPAN_EVENT_COUNT_LIMIT",
            &DEFAULT_SPAN_EVENT_LIMIT,
            env::whole_number_in(0..=MAX_SPAN_EVENT_LIMIT),
        ) {
            c.span_event_limit.set_env(n, "OTEL_SPAN_EVENT_COUNT_LIMIT");
        }
        if cfg!(feature = "admin") {
            // Checked here, like every variable: a value that is not an address is a warning
            // (an error from `try_from_env`), not a build that fails on binding it.
            if let Some(addr) =
                env.parse(ADMIN_ADDR_VAR, &"off (no admin endpoint)", env::host_port)
            {
                c.admin_addr.set_env(Some(addr), ADMIN_ADDR_VAR);
            }
        } else if let Some(addr) = env.raw(ADMIN_ADDR_VAR) {
            env.warnings.push(EnvWarning {
                var: ADMIN_ADDR_VAR.into(),
                value: addr,
                expected: "unset: this build lacks the `admin` feature".into(),
                used: "no admin endpoint".into(),
            });
        }
    }

    /// Records the queue holds (default [`DEFAULT_CAPACITY`]), 1 to [`MAX_CAPACITY`]; outside
    /// that range `build()` fails. The event and span record pools are each filled with an
    /// eighth of it when the pipeline is built (64 to 8 192 records; about 8 MB for the
    /// default), so that the first records are not allocated on the calling thread.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.config.capacity.set_code(capacity);
        self
    }

    /// What to do when the queue is full (default [`DEFAULT_BACKPRESSURE`]).
    pub fn backpressure(mut self, policy: Backpressure) -> Self {
        self.config
            .backpressure
            .set_code(policy.as_str().to_owned());
        // The block timeout is `block`'s: under another policy, none is in force (not one the
        // environment gave).
        match policy {
            Backpressure::Block { timeout } => {
                self.config.block_timeout_ms.set_code(millis_up(timeout))
            }
            _ => {
                self.config.block_timeout_ms =
                    Setting::default(DEFAULT_BLOCK_TIMEOUT.as_millis() as u64)
            }
        }
        self.backpressure = policy;
        self
    }

    /// How long a critical record waits for room when the policy is not `Block` (default
    /// [`DEFAULT_CRITICAL_BLOCK_TIMEOUT`]).
    pub fn critical_block_timeout(mut self, timeout: Duration) -> Self {
        self.config
            .critical_block_timeout_ms
            .set_code(millis_up(timeout));
        self.exact_critical_block_timeout = Some(timeout);
        self
    }

    /// Records per batch for the drain and sink threads (default [`DEFAULT_BATCH_SIZE`];
    /// 0 counts as 1), up to [`MAX_BATCH_SIZE`]; a larger one fails `build()`.
    pub fn batch_size(mut self, n: usize) -> Self {
        self.config.batch_size.set_code(n.max(1));
        self
    }

    /// The timer on which idle threads wake (default [`DEFAULT_FLUSH_INTERVAL`]): the longest a
    /// lone record waits before it is written. The drain thread wakes at least once a second
    /// whatever the interval, to beat the heartbeat that health checks, and so does the thread
    /// of a sink with a spool, to read the spool for the stats.
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.config
            .flush_interval_ms
            .set_code(saturating_millis(interval).max(1));
        self
    }

    /// The cap on a captured text value in bytes (default [`DEFAULT_MAX_FIELD_LEN`]). Longer
    /// values are cut on a character boundary and marked as truncated.
    pub fn max_field_len(mut self, bytes: usize) -> Self {
        self.config.max_field_len.set_code(bytes);
        self
    }

    /// Events kept on each span for sinks that attach events to spans (default
    /// [`DEFAULT_SPAN_EVENT_LIMIT`]), up to [`MAX_SPAN_EVENT_LIMIT`] (a larger one fails
    /// `build()`); later ones are counted on the span as dropped.
    pub fn span_event_limit(mut self, n: usize) -> Self {
        self.config.span_event_limit.set_code(n);
        self
    }

    /// Each sink's buffer in records (default [`DEFAULT_SINK_BUFFER_CAPACITY`]; 0 counts as 1),
    /// up to [`MAX_SINK_BUFFER_CAPACITY`]; a larger one fails `build()`.
    pub fn sink_buffer_capacity(mut self, n: usize) -> Self {
        self.config.sink_buffer_capacity.set_code(n.max(1));
        self
    }

    /// How long dropping the guard may take (default [`DEFAULT_DROP_TIMEOUT`]).
    pub fn drop_timeout(mut self, timeout: Duration) -> Self {
        self.config.drop_timeout_ms.set_code(millis_up(timeout));
        self.exact_drop_timeout = Some(timeout);
        self
    }

    /// How long a full sink may go without finishing an export before it is stalled (default
    /// [`DEFAULT_SINK_STALL_AFTER`]; under `Block`, at most half the block timeout). Until then
    /// the drain thread leaves records in the queue rather than drop them at that sink; after,
    /// the other sinks get theirs and this one's are dropped at its buffer, counted.
    pub fn sink_stall_after(mut self, after: Duration) -> Self {
        self.config.sink_stall_after_ms.set_code(millis_up(after));
        self
    }

    /// Whether spans count their busy time (entered) and idle time (open, not entered), as
    /// `busy_ns` / `idle_ns` in the sinks (default [`DEFAULT_SPAN_TIMINGS`], on). Off saves
    /// two clock readings and one span-store lookup per enter/exit pair.
    pub fn span_timings(mut self, on: bool) -> Self {
        self.config.span_timings.set_code(on);
        self
    }

    /// Makes `ERROR` events whose target starts with `prefix` critical (default: none). An
    /// `ERROR` event with the field `critical = true` is critical whatever its target.
    pub fn critical_target(mut self, prefix: impl Into<String>) -> Self {
        let mut targets = self.config.critical_targets.value.clone();
        targets.push(prefix.into());
        self.config.critical_targets.set_code(targets);
        self
    }

    /// Turns recording on or off (default on; `OTEL_SDK_DISABLED=true` turns it off).
    ///
    /// Off, the layer records nothing and `build()` starts no sink: no file or spool directory
    /// is created, no collector connected. The sinks are still listed, with their settings, in
    /// [`Handle::config`](crate::Handle::config), not in the stats. The admin endpoint, when
    /// one is set, is served.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.config.enabled.set_code(enabled);
        self
    }

    /// Serves `/metrics`, `/health` and `/config` over HTTP at `addr` (e.g. `"127.0.0.1:9464"`;
    /// port 0 picks a free port, see [`Guard::admin_addr`]) on a crate-owned thread, from
    /// `build()` until the [`Guard`] is dropped. Default: off; `OFFLOAD_ADMIN_ADDR` sets it.
    ///
    /// `addr` is `host:port`: an IP address (`127.0.0.1:9464`, `[::1]:9464`) or a host name
    /// (`localhost:9464`, resolved when bound). A value that is not one (a scheme, a path, a
    /// port past 65535) makes `build()` fail with [`BuildError::Admin`] saying so; so does an
    /// address that cannot be bound (the port in use, a name that does not resolve, an address
    /// of another host). From `OFFLOAD_ADMIN_ADDR`, a value that is not `host:port` is instead
    /// ignored with a warning, like any invalid variable; one that cannot be bound fails the
    /// build as here. See [`crate::admin`].
    #[cfg(feature = "admin")]
    #[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
    pub fn admin_addr(mut self, addr: impl Into<String>) -> Self {
        self.config.admin_addr.set_code(Some(addr.into()));
        self
    }

    /// The thresholds of [`Handle::health`] (default [`HealthConfig::default`], see
    /// [`crate::health`] for the rules).
    pub fn health_config(mut self, config: HealthConfig) -> Self {
        self.health = config;
        self
    }

    /// The event keep rate, 0.0 to 1.0 (default [`DEFAULT_SAMPLE_RATE`], keep all). Decided
    /// before any field is captured. Whitelisted, critical and (by default) error events are
    /// always kept. A rate outside 0.0..=1.0 fails the build.
    pub fn sample_rate(mut self, rate: f64) -> Self {
        // `-0.0` is 0 (shown as `0`).
        self.config.sample_rate.set_code(rate + 0.0);
        self
    }

    /// Which spans are recorded (default [`DEFAULT_TRACES_SAMPLER`], `parentbased_always_on`).
    pub fn traces_sampler(mut self, sampler: TracesSampler) -> Self {
        self.config.traces_sampler.set_code(sampler.normalized());
        self
    }

    /// Adds a prefix whose events are never sampled out, matched against the target and the
    /// name of events (default: none), e.g. `"security."`. It does not override the traces
    /// sampler: spans follow [`traces_sampler`](Self::traces_sampler) alone. The prefixes set
    /// in code replace `OFFLOAD_SAMPLE_ALWAYS`'s, as code wins over the environment.
    pub fn sample_always(mut self, prefix: impl Into<String>) -> Self {
        let mut list = match self.config.sample_always.source {
            // The first prefix set in code: the environment's list is not kept under the
            // code's name (it was, adversary pass 53).
            crate::config::Source::Code => self.config.sample_always.value.clone(),
            _ => Vec::new(),
        };
        list.push(prefix.into());
        self.config.sample_always.set_code(list);
        self
    }

    /// Turns the adaptive mode on or off (default off): while the queue is over 80 % full the
    /// event rate is multiplied by 0.7, over 90 % by 0.5, restored below 50 %. Whitelisted and
    /// critical events are never affected.
    pub fn sample_adaptive(mut self, on: bool) -> Self {
        self.config.sample_adaptive.set_code(on);
        self
    }

    /// Whether `ERROR` events are always kept whatever the rate (default `true`).
    pub fn keep_errors(mut self, keep: bool) -> Self {
        self.config.keep_errors.set_code(keep);
        self
    }

    /// Whether events inside an unsampled trace are sampled out with it (default `false`).
    ///
    /// By default events are logs, kept or not by the event rate alone, as OpenTelemetry's
    /// logs SDK does: a trace sampled out to save tracing volume must not hide a warning. Such
    /// events still carry their (unsampled) span's trace and span ids, with the sampled flag
    /// clear, so logs stay correlated. Set `true` to drop them with their trace; whitelisted,
    /// critical and (with [`keep_errors`](Self::keep_errors)) error events are kept even then.
    pub fn events_follow_trace_sampling(mut self, follow: bool) -> Self {
        self.config.events_follow_trace_sampling.set_code(follow);
        self
    }

    /// Turns tail sampling on (default: off): the records of each sampled local trace wait on
    /// the drain thread until its local root closes, and the trace is then written whole if it
    /// failed, was slow, or falls within a ratio, and dropped whole otherwise (see
    /// [`TailSampling`] for the rules, and the crate docs' "Tail sampling"). Nothing of it runs
    /// on the calling thread. A ratio outside 0.0..=1.0 fails `build()` with
    /// [`BuildError::Sampling`], a budget outside its range with [`BuildError::OutOfRange`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracing_offload::{OffloadLayer, TailSampling};
    ///
    /// let (_layer, guard) = OffloadLayer::builder()
    ///     .tail_sampling(
    ///         TailSampling::new()
    ///             .keep_errors()
    ///             .keep_slower_than(Duration::from_millis(500))
    ///             .keep_ratio(0.05),
    ///     )
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tail_sampling(mut self, tail: TailSampling) -> Self {
        self.config.tail_sampling.set_code(Some(tail));
        self
    }

    /// Seeds the event sampler's random numbers, for reproducible tests (default: random).
    pub fn sampling_seed(mut self, seed: u64) -> Self {
        self.sampling_seed = Some(seed);
        self
    }

    /// Adds a sink. Each sink gets its own thread and buffer.
    pub fn sink(mut self, sink: impl Sink) -> Self {
        self.sinks.push(Box::new(sink));
        self
    }

    /// Adds a boxed sink.
    pub fn boxed_sink(mut self, sink: Box<dyn Sink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Starts the sinks and the threads, and returns the layer and the guard that owns them.
    /// A disabled pipeline ([`enabled`](Self::enabled)`(false)`, `OTEL_SDK_DISABLED=true`)
    /// starts no sink: it creates no file and connects to no collector.
    pub fn build(mut self) -> Result<(OffloadLayer, Guard), BuildError> {
        let sampling = self.validate()?;
        print_warnings(&self.config.warnings);
        // Bound before any sink starts, so that an address in use fails `build()` before a
        // sink has created a file (or its directory) or connected.
        #[cfg(feature = "admin")]
        let admin = self.bind_admin()?;
        let names = self.start_sinks()?;
        crate::clock::warm_up();
        let pipeline = Arc::new(self.make_pipeline(names, sampling));
        // The configuration shows the stall time in force: under `Block`, at most half its
        // timeout (it showed the one set, adversary pass 53).
        let stall_in_force = pipeline.settings.sink_stall_after;
        let stall = &mut self.config.sink_stall_after_ms;
        if stall_in_force < Duration::from_millis(stall.value) {
            // Halved from `Block`'s timeout: shown whole milliseconds up (not 0 for 500 µs),
            // from where the policy came.
            stall.value = millis_up(stall_in_force);
            stall.source = self.config.backpressure.source.clone();
        }
        // The handle exists before the threads, so that the admin endpoint is served (its
        // thread started, which can fail) before the pipeline's threads start.
        let handle = Handle {
            pipeline: Arc::clone(&pipeline),
            config: Arc::new(RwLock::new(self.config.clone())),
            health: Arc::new(HealthMonitor::new(self.health.clone())),
            build_warnings: self.config.warnings.len(),
            // A pipeline built without reading the environment takes none of these from it.
            not_reloaded: if self.env_read {
                not_reloaded
            } else {
                |_, _| Vec::new()
            },
        };
        #[cfg(feature = "admin")]
        let admin = match admin
            .map(|bound| bound.serve(Arc::new(handle.clone())))
            .transpose()
        {
            Ok(admin) => admin,
            Err(e) => {
                abandon_sinks(&mut self.sinks);
                return Err(e.into());
            }
        };
        if let Err(failed) = pipeline.spawn(std::mem::take(&mut self.sinks)) {
            // The admin endpoint's thread (if any) is stopped and joined as `admin` drops,
            // which frees its port.
            let mut sinks = failed.sinks;
            abandon_sinks(&mut sinks);
            return Err(BuildError::Spawn {
                thread: failed.thread,
                source: failed.source,
            });
        }
        let layer = OffloadLayer::new(Arc::clone(&pipeline.intake), self.layer_settings());
        let guard = Guard::new(
            handle,
            in_force(self.config.drop_timeout_ms.value, self.exact_drop_timeout),
        );
        #[cfg(feature = "admin")]
        let guard = guard.with_admin(admin);
        Ok((layer, guard))
    }

    /// Checks the settings that can be wrong, and gives the sampler's.
    fn validate(&self) -> Result<SamplingSettings, BuildError> {
        let c = &self.config;
        // A capacity of 0 too: `OutOfRange`, which says the range, as for every count.
        self.check_ranges()?;
        let sampling = SamplingSettings {
            rate: c.sample_rate.value,
            traces: c.traces_sampler.value,
            whitelist: c.sample_always.value.clone(),
            adaptive: c.sample_adaptive.value,
            keep_errors: c.keep_errors.value,
            events_follow_traces: c.events_follow_trace_sampling.value,
            seed: self.sampling_seed,
        };
        if !(0.0..=1.0).contains(&sampling.rate) {
            return Err(BuildError::Sampling(SamplingError::Rate(sampling.rate)));
        }
        if let Some(tail) = &c.tail_sampling.value {
            in_range(
                "tail sampling's `max_buffered_spans`",
                tail.budget(),
                1..=MAX_TAIL_BUFFERED_SPANS,
                "records",
            )?;
            tail.validate().map_err(BuildError::Sampling)?;
        }
        sampling.traces.validate().map_err(BuildError::Sampling)?;
        Ok(sampling)
    }

    /// Every count against its documented range (the table above): the queue, the batches and
    /// the sink buffers are allocated whole, so a huge value would abort the process.
    fn check_ranges(&self) -> Result<(), BuildError> {
        let c = &self.config;
        in_range("`capacity`", c.capacity.value, 1..=MAX_CAPACITY, "records")?;
        in_range(
            "`batch_size`",
            c.batch_size.value,
            1..=MAX_BATCH_SIZE,
            "records",
        )?;
        in_range(
            "`span_event_limit`",
            c.span_event_limit.value,
            0..=MAX_SPAN_EVENT_LIMIT,
            "events",
        )?;
        in_range(
            "`sink_buffer_capacity`",
            c.sink_buffer_capacity.value,
            1..=MAX_SINK_BUFFER_CAPACITY,
            "records",
        )?;
        for sink in &self.sinks {
            if let Some(n) = sink.buffer_capacity() {
                let setting = format!("the buffer of sink `{}`", sink.name());
                in_range(&setting, n, 1..=MAX_SINK_BUFFER_CAPACITY, "records")?;
            }
        }
        Ok(())
    }

    /// Starts every sink (names must be unique: checked before any starts), and records their
    /// names, settings and environment warnings in the config. Returns the names of the sinks
    /// started, in order. When one fails to start (or panics), it and those started before it
    /// are [abandoned](Sink::abandon), so that the failed build leaves nothing behind.
    ///
    /// A disabled pipeline records nothing for a sink to write: its sinks are checked and
    /// listed in the config, but dropped without being started (a file sink would create its
    /// file, a spooling OTLP sink its directory), and none is returned.
    fn start_sinks(&mut self) -> Result<Vec<String>, BuildError> {
        let names = self.sink_names()?;
        if self.config.enabled.value {
            for (i, name) in names.iter().enumerate() {
                // A sink of one's own that panics while starting fails the build like one
                // that returns an error.
                let started = catch_unwind(AssertUnwindSafe(|| self.sinks[i].start()))
                    .unwrap_or_else(|panic| {
                        Err(SinkError::Fatal(format!(
                            "it panicked while starting: {}",
                            panic_message(&panic)
                        )))
                    });
                if let Err(source) = started {
                    // This sink undoes what it made before it failed, and those started before
                    // it what they made.
                    abandon_sinks(&mut self.sinks[..=i]);
                    return Err(BuildError::Sink {
                        sink: name.clone(),
                        source,
                    });
                }
            }
        }
        let c = &mut self.config;
        c.sinks = names.clone();
        for sink in &self.sinks {
            c.sink_settings
                .insert(sink.name().to_owned(), sink.settings());
            let warnings = sink.env_warnings();
            print_warnings(&warnings);
            c.warnings.extend(warnings);
        }
        if !c.enabled.value {
            self.sinks.clear();
            return Ok(Vec::new());
        }
        Ok(names)
    }

    /// The sinks' names, checked (unique, no NUL) before any sink starts.
    fn sink_names(&self) -> Result<Vec<String>, BuildError> {
        let mut names: Vec<String> = Vec::with_capacity(self.sinks.len());
        for sink in &self.sinks {
            let name = sink.name().to_owned();
            if names.contains(&name) {
                return Err(BuildError::DuplicateSinkName(name));
            }
            if name.contains('\0') {
                // The name is part of the sink thread's name, which cannot hold a NUL.
                return Err(BuildError::Sink {
                    sink: name,
                    source: SinkError::Fatal(
                        "its name contains a NUL character; give it a name without one \
                         (e.g. `JsonFile::new(..).name(\"audit\")`)"
                            .to_owned(),
                    ),
                });
            }
            names.push(name);
        }
        Ok(names)
    }

    /// The queue, the counters, the sampler and one slot per sink; no thread yet.
    fn make_pipeline(&self, names: Vec<String>, sampling: SamplingSettings) -> Pipeline {
        let c = &self.config;
        let slots: Vec<Arc<SinkSlot>> = names
            .into_iter()
            .zip(&self.sinks)
            .map(|(name, sink)| {
                // A sink's answers here that panic count as none (adversary pass 63: a panic
                // in one of them panicked `build()`).
                let capacity =
                    ask(|| sink.buffer_capacity()).unwrap_or(c.sink_buffer_capacity.value);
                let counters = Arc::new(SinkCounters::new(name, capacity));
                // What a spool holds from the start (left by an earlier process).
                counters.set_spool(ask(|| sink.spool()));
                let awaiting = ask(|| sink.awaiting_delivery());
                Arc::new(SinkSlot::new(counters, capacity, awaiting))
            })
            .collect();
        let counters = Counters::new(slots.iter().map(|s| Arc::clone(&s.counters)).collect());
        let capacity = c.capacity.value;
        let batch = c.batch_size.value;
        // Producers check the depth every quarter batch, and wake the drain thread once an
        // eighth of the queue (at least a batch, at most half) is waiting: below that, its
        // timer (`flush_interval`) takes the records.
        let wake_depth = (capacity / 8).max(batch).min(capacity / 2).max(1);
        let queue = Queue::new(capacity, (capacity / 4).min(batch / 4).max(1), wake_depth);
        // Tail sampling holds up to its budget on the drain thread.
        let held = c.tail_sampling.value.map_or(0, |t| t.budget());
        let in_flight = capacity
            + slots.iter().map(|s| s.buffer.capacity()).sum::<usize>()
            + 2 * (slots.len() + 1) * c.batch_size.value
            + held;
        let intake = Arc::new(Intake::new(
            queue,
            counters,
            Sampler::new(sampling),
            in_flight,
        ));
        let wants_span_events = self.sinks.iter().any(|s| s.wants_span_events());
        Pipeline::new(
            intake,
            slots,
            self.pipeline_settings(wants_span_events),
            TailControl::new(c.tail_sampling.value),
        )
    }

    fn pipeline_settings(&self, wants_span_events: bool) -> PipelineSettings {
        let c = &self.config;
        let stall_after = Duration::from_millis(c.sink_stall_after_ms.value);
        PipelineSettings {
            batch_size: c.batch_size.value,
            flush_interval: Duration::from_millis(c.flush_interval_ms.value),
            block: matches!(self.backpressure, Backpressure::Block { .. }),
            sink_stall_after: match self.backpressure {
                // Half the callers' timeout: a stalled sink stops holding the others back
                // before a caller waiting for room gives up.
                Backpressure::Block { timeout } => (timeout / 2).min(stall_after),
                _ => stall_after,
            },
            sink_evict_oldest: self.backpressure == Backpressure::DropOldest,
            span_event_limit: wants_span_events.then_some(c.span_event_limit.value),
        }
    }

    fn layer_settings(&self) -> LayerSettings {
        let c = &self.config;
        LayerSettings {
            enabled: c.enabled.value,
            backpressure: self.backpressure,
            critical_block_timeout: in_force(
                c.critical_block_timeout_ms.value,
                self.exact_critical_block_timeout,
            ),
            max_field_len: c.max_field_len.value,
            critical_targets: c.critical_targets.value.clone().into(),
            span_timings: c.span_timings.value,
        }
    }

    /// The admin endpoint's address bound, not yet served, when one is configured.
    #[cfg(feature = "admin")]
    fn bind_admin(&self) -> Result<Option<crate::admin::BoundAdmin>, BuildError> {
        let Some(addr) = self.config.admin_addr.value.as_deref() else {
            return Ok(None);
        };
        Ok(Some(crate::admin::AdminServer::bind(addr)?))
    }
}

/// Nothing may stay behind a failed build: the started `sinks` undo what they made (a file
/// sink's new, empty file and its directories), the last first (a directory the first made may
/// hold the file of a later one), each on its own (one that panics stops none of the others).
fn abandon_sinks(sinks: &mut [Box<dyn Sink>]) {
    for sink in sinks.iter_mut().rev() {
        let _ = catch_unwind(AssertUnwindSafe(|| sink.abandon()));
    }
}

/// Environment warnings go to stderr once, when the pipeline is built (they are also kept in
/// [`Config::warnings`]).
fn print_warnings(warnings: &[EnvWarning]) {
    for w in warnings {
        crate::notice::say(format_args!("{w}"));
    }
}

/// `value` within `range`, or [`BuildError::OutOfRange`] saying the range.
fn in_range(
    setting: &str,
    value: usize,
    range: std::ops::RangeInclusive<usize>,
    unit: &str,
) -> Result<(), BuildError> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(BuildError::OutOfRange {
        setting: setting.to_owned(),
        value: format!("{value} {unit}"),
        range: format!("{} to {} {unit}", range.start(), range.end()),
    })
}

/// The layer's build-time variables (not sampling's, which a reload applies) that `env` sets to
/// a value other than the one in force in `current`, or to an invalid one, as warnings: a
/// reload does not apply them. Not those set in code, which wins at build time too.
fn not_reloaded(env: &EnvReader<'_>, current: &Config) -> Vec<EnvWarning> {
    let mut reader = env.fresh();
    let mut read = Builder::new();
    read.apply_env(&mut reader);
    let read = read.config;
    let code = |s: &config::Source| *s == config::Source::Code;
    // Code that sets the policy sets (or leaves out) its timeout.
    let policy_in_code = code(&current.backpressure.source);
    let under_block = matches!(
        current.backpressure.value.parse(),
        Ok(Backpressure::Block { .. })
    );
    let block_timeout = if under_block {
        format!("{} ms", current.block_timeout_ms.value)
    } else {
        format!("none (the back-pressure is {})", current.backpressure.value)
    };
    let enabled = if current.enabled.value {
        "enabled"
    } else {
        "disabled"
    };
    // Each: the variable, whether the value read differs from the one in force, that value as
    // shown, and whether code set it.
    let vars = [
        (
            "OTEL_SDK_DISABLED",
            differs(&read.enabled, &current.enabled, PartialEq::eq),
            enabled.to_owned(),
            code(&current.enabled.source),
        ),
        (
            "OFFLOAD_CAPACITY",
            differs(&read.capacity, &current.capacity, PartialEq::eq),
            current.capacity.value.to_string(),
            code(&current.capacity.source),
        ),
        (
            "OFFLOAD_BACKPRESSURE",
            differs(&read.backpressure, &current.backpressure, PartialEq::eq),
            current.backpressure.value.clone(),
            policy_in_code,
        ),
        (
            "OFFLOAD_BLOCK_TIMEOUT_MS",
            differs(
                &read.block_timeout_ms,
                &current.block_timeout_ms,
                PartialEq::eq,
            ),
            block_timeout,
            policy_in_code || code(&current.block_timeout_ms.source),
        ),
        (
            "OTEL_SPAN_EVENT_COUNT_LIMIT",
            differs(
                &read.span_event_limit,
                &current.span_event_limit,
                PartialEq::eq,
            ),
            current.span_event_limit.value.to_string(),
            code(&current.span_event_limit.source),
        ),
        (
            ADMIN_ADDR_VAR,
            differs(&read.admin_addr, &current.admin_addr, |a, b| match (a, b) {
                (Some(a), Some(b)) => same_address(a, b),
                (a, b) => a == b,
            }),
            current
                .admin_addr
                .value
                .clone()
                .unwrap_or_else(|| "off".into()),
            code(&current.admin_addr.source),
        ),
    ];
    let mut out = Vec::new();
    for (var, differ, in_force, set_in_code) in vars {
        if set_in_code {
            continue;
        }
        let used = format!("the value in force, {in_force}");
        // An invalid value: the warning the build gives, with what the reload keeps.
        if let Some(invalid) = reader.warnings.iter().find(|w| w.var == var) {
            out.push(EnvWarning {
                used,
                ..invalid.clone()
            });
        } else if differ {
            out.push(EnvWarning {
                var: var.to_owned(),
                value: reader.raw(var).unwrap_or_default(),
                expected: "a restart: it is read when the pipeline is built, not by a reload"
                    .into(),
                used,
            });
        }
    }
    out
}

/// Whether `read` was read from the environment and differs from `current` (by `eq`).
fn differs<T>(read: &Setting<T>, current: &Setting<T>, eq: impl Fn(&T, &T) -> bool) -> bool {
    matches!(read.source, config::Source::Env(_)) && !eq(&read.value, &current.value)
}

/// Whether two `host:port` addresses are the same written differently (`127.0.0.1:00`,
/// `[0::1]:0`, `LOCALHOST:0`).
fn same_address(a: &str, b: &str) -> bool {
    let key = |s: &str| -> Option<(String, u16)> {
        if let Ok(addr) = s.parse::<std::net::SocketAddr>() {
            return Some((addr.ip().to_string(), addr.port()));
        }
        let (host, port) = s.rsplit_once(':')?;
        Some((host.to_ascii_lowercase(), port.parse().ok()?))
    };
    match (key(a), key(b)) {
        (Some(a), Some(b)) => a == b,
        _ => a == b,
    }
}

/// A sink's answer to a question asked at build time; one that panics is taken for none.
fn ask<T>(f: impl FnOnce() -> Option<T>) -> Option<T> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).ok().flatten()
}
