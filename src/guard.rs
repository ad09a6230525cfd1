//! The [`Guard`] that owns the pipeline's threads, and the clonable [`Handle`] to observe and
//! control it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{apply_sampling_env, Config, EnvPrecedence};
use crate::env::{EnvReader, EnvWarning};
use crate::health::{Health, HealthMonitor};
use crate::pipeline::{FlushError, Pipeline, ShutdownReport};
use crate::sampling::{SamplingError, TracesSampler};
use crate::stats::Stats;
use crate::tail_sampling::TailSampling;

/// Tail sampling's setting as a warning's "current value".
fn tail_text(tail: Option<TailSampling>) -> String {
    tail.map_or_else(|| "off".to_owned(), |t| t.to_string())
}

/// A clonable, `Send + Sync` handle to a running pipeline: stats, config, flush.
///
/// Handles never keep the threads alive: once the [`Guard`] has shut the pipeline down, a
/// handle still answers `stats()` with the final counters.
#[derive(Clone)]
pub struct Handle {
    pub(crate) pipeline: Arc<Pipeline>,
    pub(crate) config: Arc<std::sync::RwLock<Config>>,
    pub(crate) health: Arc<HealthMonitor>,
    /// How many of `config.warnings` the build found; a reload replaces the ones after them.
    pub(crate) build_warnings: usize,
    /// The build-time variables a reload finds set to a value other than the one in force, or
    /// to an invalid one, as warnings (they are read when the pipeline is built; the builder
    /// knows how to read them).
    pub(crate) not_reloaded: fn(&EnvReader<'_>, &Config) -> Vec<EnvWarning>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

// === impl Handle ===

impl Handle {
    /// A snapshot of every counter: records offered, enqueued, dropped by reason, queue depth,
    /// and per-sink outcomes and latency.
    pub fn stats(&self) -> Stats {
        self.pipeline.stats()
    }

    /// The effective configuration: every setting, where it came from, and the warnings that
    /// reading the environment produced.
    pub fn config(&self) -> Config {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until every record offered before this call has been written (exported, failed or
    /// dropped with a reason) by every sink, or until `timeout` passes.
    ///
    /// On timeout, the error says what is still pending. Calling it does not stop the pipeline.
    /// Called on one of this pipeline's own threads (inside one of its sinks' `export`), where
    /// it would wait for itself, it returns [`FlushError::OnPipelineThread`] at once (another
    /// pipeline's threads may flush this one).
    pub fn flush(&self, timeout: Duration) -> Result<(), FlushError> {
        if crate::silent::serves(self.pipeline.id()) {
            return Err(FlushError::OnPipelineThread);
        }
        self.pipeline
            .flush_until(crate::clock::deadline_after(timeout))
    }

    /// The pipeline's health by the rules in [`crate::health`]: queue, drain thread, each sink,
    /// open spans. Thresholds: [`Builder::health_config`](crate::Builder::health_config).
    pub fn health(&self) -> Health {
        self.health.check(&self.stats(), self.is_running())
    }

    /// The [metrics](crate::metrics) in the Prometheus text format 0.0.4
    /// ([`PROMETHEUS_CONTENT_TYPE`](crate::metrics::PROMETHEUS_CONTENT_TYPE)).
    pub fn render_prometheus(&self) -> String {
        crate::metrics::render_prometheus(&self.stats(), self.effective_sampling_rate())
    }

    /// A `prometheus-client` collector reading this pipeline on each scrape; register it in
    /// the application's registry with
    /// [`OffloadCollector::register`](crate::metrics::OffloadCollector::register).
    pub fn metrics_collector(&self) -> crate::metrics::OffloadCollector {
        let stats = self.clone();
        let rate = self.clone();
        crate::metrics::OffloadCollector::new(move || stats.stats())
            .with_sampling_rate(move || rate.effective_sampling_rate())
    }

    /// The event keep rate in force (after the adaptive mode), exported as
    /// `offload_sampling_rate` by `/metrics`, [`render_prometheus`](Self::render_prometheus)
    /// and the collector.
    pub(crate) fn effective_sampling_rate(&self) -> Option<f64> {
        Some(self.pipeline.intake.sampler.stats().effective_rate)
    }

    // --- sampling at run time ---

    /// Sets the event keep rate (0.0 to 1.0) for events offered after this call returns.
    /// Whitelisted, critical and (by default) error events are kept whatever the rate. A rate
    /// outside 0.0..=1.0 (or NaN) is refused and changes nothing.
    ///
    /// ```
    /// let (_layer, guard) = tracing_offload::OffloadLayer::builder().build()?;
    /// let handle = guard.handle();
    /// handle.set_sample_rate(0.1)?;
    /// assert!(handle.set_sample_rate(1.5).is_err());
    /// assert_eq!(handle.config().sample_rate.value, 0.1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_sample_rate(&self, rate: f64) -> Result<(), SamplingError> {
        // `-0.0` is 0 (shown as `0`), as `set_traces_sampler` normalises its ratio.
        let rate = rate + 0.0;
        let mut config = self.config_mut();
        self.pipeline.intake.sampler.set_rate(rate)?;
        config.sample_rate.set_code(rate);
        Ok(())
    }

    /// Sets the traces sampler for root spans created after this call returns. Spans already
    /// open keep their decision, and so do the children they have later, whatever the
    /// sampler: a trace open during the change is kept whole or not at all. A ratio outside
    /// 0.0..=1.0 is refused and changes nothing.
    ///
    /// ```
    /// use tracing_offload::TracesSampler;
    /// let (_layer, guard) = tracing_offload::OffloadLayer::builder().build()?;
    /// guard.handle().set_traces_sampler(TracesSampler::ParentBasedTraceIdRatio(0.05))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_traces_sampler(&self, sampler: TracesSampler) -> Result<(), SamplingError> {
        let mut config = self.config_mut();
        let sampler = sampler.normalized();
        self.pipeline.intake.sampler.set_traces(sampler)?;
        config.traces_sampler.set_code(sampler);
        Ok(())
    }

    /// Replaces the prefixes that are never sampled out (matched against the target and the
    /// name of events; spans follow the traces sampler alone). Each callsite is matched again
    /// once, on its next use.
    pub fn set_sample_always(&self, prefixes: Vec<String>) {
        let mut config = self.config_mut();
        self.pipeline.intake.sampler.set_whitelist(prefixes.clone());
        config.sample_always.set_code(prefixes);
    }

    /// Sets tail sampling (`None` turns it off), for the local traces decided from now on
    /// (see [`TailSampling`]). The drain thread applies it within one loop:
    ///
    /// * traces already held stay held and are decided by the new criteria;
    /// * a lower budget decides the oldest held traces as is until they fit
    ///   ([`ForcedDecision::BufferFull`](crate::ForcedDecision::BufferFull));
    /// * off releases every held trace to the sinks (kept: with tail sampling off everything
    ///   sampled is written);
    /// * turned on, a local trace already under way (its local root started before the call)
    ///   may have written records already: it is written whole, not tail-sampled, and so is
    ///   the rest of it; the traces that start after the call are tail-sampled.
    ///
    /// A ratio outside 0.0..=1.0 or a budget outside 1 to
    /// [`MAX_TAIL_BUFFERED_SPANS`](crate::MAX_TAIL_BUFFERED_SPANS) is refused and changes
    /// nothing.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tracing_offload::TailSampling;
    ///
    /// let (_layer, guard) = tracing_offload::OffloadLayer::builder().build()?;
    /// let handle = guard.handle();
    /// let tail = TailSampling::new().keep_errors().keep_ratio(0.01);
    /// handle.set_tail_sampling(Some(tail))?;
    /// assert_eq!(handle.stats().tail_sampling.settings, Some(tail));
    /// assert!(handle.set_tail_sampling(Some(tail.keep_ratio(2.0))).is_err());
    /// handle.set_tail_sampling(None)?; // off
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_tail_sampling(&self, tail: Option<TailSampling>) -> Result<(), SamplingError> {
        if let Some(t) = &tail {
            t.validate()?;
        }
        let mut config = self.config_mut();
        self.pipeline.tail.set(tail);
        config.tail_sampling.set_code(tail);
        Ok(())
    }

    /// Turns the adaptive mode on or off; off restores the configured rate at once.
    pub fn set_sample_adaptive(&self, on: bool) {
        let mut config = self.config_mut();
        self.pipeline.intake.sampler.set_adaptive(on);
        config.sample_adaptive.set_code(on);
    }

    /// Re-reads the sampling variables (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`,
    /// `OFFLOAD_SAMPLE_RATE`, `OFFLOAD_SAMPLE_ALWAYS`, `OFFLOAD_SAMPLE_ADAPTIVE`,
    /// `OFFLOAD_TAIL_SAMPLING`) and applies them to records offered after the call returns
    /// (tail sampling: to the traces decided after it, see
    /// [`set_tail_sampling`](Self::set_tail_sampling)). This is an explicit request, so every
    /// variable that is set replaces the current value whatever its source (values set in
    /// code included); unset and empty ones leave it alone. Invalid values are ignored and
    /// returned as warnings (also on stderr and in [`Config::warnings`], which keeps the
    /// build's warnings and the last reload's), and so are values that are not UTF-8.
    ///
    /// The layer's other variables (`OTEL_SDK_DISABLED`, `OFFLOAD_CAPACITY`,
    /// `OFFLOAD_BACKPRESSURE`, `OFFLOAD_BLOCK_TIMEOUT_MS`, `OTEL_SPAN_EVENT_COUNT_LIMIT`,
    /// `OFFLOAD_ADMIN_ADDR`) are read when the pipeline is built: when it was built from the
    /// environment, one set to a value other than the one in force, or to an invalid one (and
    /// not set in code, which wins), is returned as a warning too, and changes nothing. The
    /// sinks' variables (`OTEL_EXPORTER_OTLP_*`) are read when the sink is built.
    ///
    /// The sampler argument: a missing or invalid `OTEL_TRACES_SAMPLER_ARG` keeps the ratio in
    /// force (with a warning naming it) instead of the spec's build-time fallback of 1.0, so a
    /// typo never turns a 5 % sampler into 100 %; `OTEL_TRACES_SAMPLER_ARG` set alone retunes
    /// the ratio sampler in force.
    pub fn reload_from_env(&self) -> Vec<EnvWarning> {
        self.reload(EnvReader::process())
    }

    /// [`reload_from_env`](Self::reload_from_env) with a custom lookup instead of the process
    /// environment (e.g. a configuration file re-read on `SIGHUP`).
    ///
    /// ```
    /// let (_layer, guard) = tracing_offload::OffloadLayer::builder().sample_rate(1.0).build()?;
    /// let handle = guard.handle();
    /// let storm = |var: &str| (var == "OFFLOAD_SAMPLE_RATE").then(|| "0.01".to_owned());
    /// assert!(handle.reload_from_env_with(&storm).is_empty());
    /// assert_eq!(handle.stats().sampling.unwrap().configured_rate, 0.01);
    /// let typo = |var: &str| (var == "OFFLOAD_SAMPLE_RATE").then(|| "1,0".to_owned());
    /// let warnings = handle.reload_from_env_with(&typo);
    /// assert_eq!(warnings[0].var, "OFFLOAD_SAMPLE_RATE");
    /// assert_eq!(warnings[0].used, "the current value 0.01");
    /// assert_eq!(handle.stats().sampling.unwrap().configured_rate, 0.01); // unchanged
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reload_from_env_with(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<EnvWarning> {
        self.reload(EnvReader::new(lookup))
    }

    fn reload(&self, mut env: EnvReader<'_>) -> Vec<EnvWarning> {
        // Held throughout, so a concurrent setter cannot leave the sampler and the config
        // disagreeing.
        let mut config = self.config_mut();
        let before = config.sample_always.value.clone();
        apply_sampling_env(&mut config, &mut env, EnvPrecedence::EnvWins);
        let not_reloaded = (self.not_reloaded)(&env, &config);
        env.warnings.extend(not_reloaded);
        let s = &self.pipeline.intake.sampler;
        // Values from the parser are in range, so these cannot fail.
        let _ = s.set_rate(config.sample_rate.value);
        let _ = s.set_traces(config.traces_sampler.value);
        if config.sample_always.value != before {
            s.set_whitelist(config.sample_always.value.clone());
        }
        s.set_adaptive(config.sample_adaptive.value);
        if config.tail_sampling.value != self.pipeline.tail.get() {
            // Parsed values are in range.
            self.pipeline.tail.set(config.tail_sampling.value);
        }
        // An invalid variable leaves the value in force, not the default: say so. (The
        // sampler argument's warnings already name the ratio kept.)
        for w in &mut env.warnings {
            let current = match w.var.as_str() {
                "OFFLOAD_SAMPLE_RATE" => Some(config.sample_rate.value.to_string()),
                "OTEL_TRACES_SAMPLER" => Some(config.traces_sampler.value.to_string()),
                "OFFLOAD_SAMPLE_ADAPTIVE" => Some(config.sample_adaptive.value.to_string()),
                "OFFLOAD_TAIL_SAMPLING" => Some(tail_text(config.tail_sampling.value)),
                _ => None,
            };
            if let Some(current) = current {
                w.used = format!("the current value {current}");
            }
            crate::notice::say(format_args!("{w}"));
        }
        // The build's warnings stay; the last reload's replace the previous reload's, so that
        // reloading on a timer does not pile them up.
        config.warnings.truncate(self.build_warnings);
        config.warnings.extend(env.warnings.iter().cloned());
        env.warnings
    }

    fn config_mut(&self) -> std::sync::RwLockWriteGuard<'_, Config> {
        self.config.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Installs a panic hook that flushes this pipeline, waiting at most `timeout`, then runs
    /// the hook that was installed before (by default the one that prints the panic message).
    ///
    /// A panic that ends the process without unwinding through the [`Guard`] — with
    /// `panic = "abort"`, in a thread whose panic leads to [`std::process::exit`], or with the
    /// guard kept in a `static` — would otherwise lose every record still queued, without a
    /// count (see [`Guard`]). The hook flushes on the panicking thread; on the crate's own
    /// threads (those named `offload-…`, e.g. a sink that panics, and the blocking threads of
    /// a sink's private runtime) it does not flush, since it would wait for itself. Install it
    /// once, after building; each call chains another hook.
    ///
    /// It runs for every panic, caught ones too (a tokio task's, `catch_unwind`): while a sink
    /// cannot keep up (a collector outage without a spool), each such panic holds its thread
    /// up to `timeout`. Keep `timeout` short where panics are caught and the process goes on.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let (_layer, guard) = tracing_offload::OffloadLayer::builder().build()?;
    /// guard.handle().install_panic_hook(Duration::from_secs(2));
    /// # let _ = std::panic::take_hook(); // doctest hygiene: back to the default hook
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn install_panic_hook(&self, timeout: Duration) {
        let handle = self.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            handle.flush_from_panic_hook(timeout);
            previous(info);
        }));
    }

    fn flush_from_panic_hook(&self, timeout: Duration) {
        if crate::silent::is_internal() || !self.is_running() {
            return;
        }
        if let Err(e) = self.flush(timeout) {
            crate::notice::say(format_args!("flushing from the panic hook: {e}"));
        }
    }

    /// Whether the drain thread is running (false after shutdown or if it died).
    pub fn is_running(&self) -> bool {
        self.pipeline.drain_alive()
    }

    /// Shuts the pipeline down: stops accepting records, flushes, and stops the threads, all
    /// within `timeout`. Idempotent. See [`Guard::shutdown`]. Like [`flush`](Self::flush), it
    /// is refused at once on this pipeline's own threads.
    pub fn shutdown(&self, timeout: Duration) -> Result<ShutdownReport, FlushError> {
        if crate::silent::serves(self.pipeline.id()) {
            return Err(FlushError::OnPipelineThread);
        }
        self.pipeline.shutdown(timeout)
    }
}

#[cfg(feature = "admin")]
#[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
impl crate::admin::AdminSource for Handle {
    fn stats(&self) -> Stats {
        Handle::stats(self)
    }
    fn health(&self) -> Health {
        Handle::health(self)
    }
    fn config_json(&self) -> String {
        // Plain data with string keys: serialising cannot fail.
        serde_json::to_string(&self.config()).unwrap_or_else(|_| String::from("{}"))
    }
    fn sampling_rate(&self) -> Option<f64> {
        self.effective_sampling_rate()
    }
}

/// Owns the pipeline's threads. Dropping it flushes and stops them, waiting at most the
/// configured [`Builder::drop_timeout`](crate::Builder::drop_timeout)
/// ([`DEFAULT_DROP_TIMEOUT`](crate::DEFAULT_DROP_TIMEOUT)). Dropped on one of the pipeline's
/// own threads (a sink that owns it), which cannot wait for themselves, it leaves that to a
/// thread of its own, with the same deadline.
///
/// Keep it alive for as long as the program logs, typically in `main`:
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let _guard = tracing_offload::init()?; // a named binding: lives until the end of `main`
/// tracing::info!("running");
/// # Ok(()) }
/// ```
///
/// **`let _ = init()?` drops the guard at once**: the pipeline shuts down immediately and every
/// later record is dropped (counted with reason `shutdown`). Bind it to a name such as `_guard`.
///
/// Dropping the guard speaks on stderr where records are lost, so that the loss is heard:
/// - when the shutdown it makes abandons records at the drop timeout, one line says how many
///   and where they were;
/// - the first record offered after the guard was dropped prints one line (once per pipeline)
///   saying that the guard was dropped and how to keep it. Records offered after an explicit
///   [`shutdown`](Self::shutdown) are expected to be lost and print nothing.
///
/// [`quiet_on_drop`](Self::quiet_on_drop) silences both, for programs that drop the guard on
/// purpose; the losses are still counted in [`Handle::stats`].
///
/// **[`std::process::exit`] does not drop the guard**, and neither does a panic with
/// `panic = "abort"`, nor the end of `main` for a guard kept in a `static`: records still queued
/// are lost, and no counter can say so because the process is gone. Flush first — or shut
/// down — and, for panics, install [`Handle::install_panic_hook`]:
///
/// ```no_run
/// # use std::time::Duration;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let guard = tracing_offload::init()?;
/// guard.handle().install_panic_hook(Duration::from_secs(2));
/// // …
/// tracing::error!("fatal configuration error");
/// let _ = guard.handle().flush(Duration::from_secs(2)); // or guard.shutdown(..)
/// std::process::exit(2);
/// # }
/// ```
#[must_use = "dropping the guard shuts the pipeline down at once; bind it, e.g. `let _guard = …`"]
pub struct Guard {
    handle: Handle,
    drop_timeout: Duration,
    /// Whether `Drop` keeps stderr silent (see [`Guard::quiet_on_drop`]).
    quiet_on_drop: bool,
    /// The admin endpoint; dropped (stopped) after `Drop::drop` has shut the pipeline down.
    #[cfg(feature = "admin")]
    admin: Option<crate::admin::AdminServer>,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("drop_timeout", &self.drop_timeout)
            .field("quiet_on_drop", &self.quiet_on_drop)
            .finish_non_exhaustive()
    }
}

// === impl Guard ===

impl Guard {
    pub(crate) fn new(handle: Handle, drop_timeout: Duration) -> Self {
        Guard {
            handle,
            drop_timeout,
            quiet_on_drop: false,
            #[cfg(feature = "admin")]
            admin: None,
        }
    }

    #[cfg(feature = "admin")]
    pub(crate) fn with_admin(mut self, admin: Option<crate::admin::AdminServer>) -> Self {
        self.admin = admin;
        self
    }

    /// The address the admin endpoint listens on (the actual port when port 0 was asked for);
    /// `None` when it is off.
    #[cfg(feature = "admin")]
    #[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
    pub fn admin_addr(&self) -> Option<std::net::SocketAddr> {
        self.admin.as_ref().map(|a| a.local_addr())
    }

    /// Keeps dropping this guard silent on stderr: no line when the drop's shutdown abandons
    /// records, and none when records are offered after the drop. The losses are still counted
    /// ([`Handle::stats`]: `shutdown_deadline` and `shutdown`). For programs and tests that drop
    /// the guard on purpose.
    ///
    /// ```
    /// let (_layer, guard) = tracing_offload::OffloadLayer::builder().build()?;
    /// let guard = guard.quiet_on_drop();
    /// drop(guard); // says nothing on stderr, whatever it abandoned
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn quiet_on_drop(mut self) -> Self {
        self.quiet_on_drop = true;
        self
    }

    /// A clonable handle for stats, config and flush, usable from any thread.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Stops accepting records (later ones are dropped with reason `shutdown`), flushes
    /// everything offered before, and stops the threads, all within `timeout`.
    ///
    /// Returns the report, or [`FlushError::Abandoned`] saying what the deadline cut off (those
    /// records are counted as dropped with reason `shutdown_deadline`), or that the threads had
    /// not ended by then (with nothing abandoned, its text says so). A second call does nothing
    /// more and returns the first call's outcome; one made while another thread's shutdown is
    /// under way waits for it up to its own `timeout` and returns its outcome too, or, if its
    /// own `timeout` passes first, [`FlushError::Timeout`] saying what is still pending. A
    /// guard dropped after (or during) a shutdown another call began waits for it, up to its
    /// drop timeout, and says nothing: that call's caller has the outcome.
    /// Safe to call from `Drop`, a panic hook, or inside a tokio runtime: it blocks the calling
    /// thread only, never longer than `timeout`, and needs no async runtime. On one of this
    /// pipeline's own threads (inside one of its sinks' `export`), where it would wait for
    /// itself, it is refused at once with [`FlushError::OnPipelineThread`] and shuts nothing
    /// down.
    pub fn shutdown(&self, timeout: Duration) -> Result<ShutdownReport, FlushError> {
        self.handle.shutdown(timeout)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let intake = &self.handle.pipeline.intake;
        // Only a drop that does the shutdown counts: after an explicit `shutdown`, later
        // records are expected to be lost. Nor does it say anything of a shutdown another
        // call began (whose caller is told its outcome): the drop waits for it, and its line
        // would blame the drop timeout for that shutdown's deadline (adversary pass 66).
        let begun_elsewhere = intake.closed.is_set();
        if !self.quiet_on_drop && !begun_elsewhere {
            intake.closed_by_guard_drop.set();
        }
        let quiet = self.quiet_on_drop || begun_elsewhere;
        if crate::silent::serves(self.handle.pipeline.id()) {
            // On one of the pipeline's own threads (inside a sink), which a shutdown would wait
            // for: a thread of its own shuts the pipeline down, with the same deadline
            // (adversary passes 32, 33: it was left running with no owner, and the line blamed
            // a flush never called).
            let (handle, timeout) = (self.handle.clone(), self.drop_timeout);
            let stopper = std::thread::Builder::new()
                .name("offload-stop".into())
                .spawn(move || shut_down_on_drop(&handle, timeout, quiet));
            if stopper.is_err() {
                // No thread to wait: told to stop, the pipeline writes what it has and ends.
                self.handle.pipeline.stop_without_waiting(self.drop_timeout);
            }
            return;
        }
        shut_down_on_drop(&self.handle, self.drop_timeout, quiet);
    }
}

/// A dropped guard's shutdown, and its line on stderr when it left something undone.
fn shut_down_on_drop(handle: &Handle, drop_timeout: Duration, quiet: bool) {
    let line = match handle.shutdown(drop_timeout) {
        Err(FlushError::Abandoned { report }) => abandoned_on_drop(&report, drop_timeout),
        // A forked child's copy of the guard: the pipeline is the parent's, which goes on.
        Err(FlushError::ForkedChild) => return,
        Err(e) => e.to_string(),
        Ok(_) => return,
    };
    if !quiet {
        // Written by the notice thread: stderr may be a full pipe nobody reads, which the
        // console sink, stuck writing to it, holds locked; the drop would never return
        // (adversary pass 57). Waited for a little, so that a program that exits next still
        // shows it.
        crate::notice::post_and_wait(line, crate::notice::LAST_WORDS_WAIT);
    }
}

/// The line a dropped guard prints when its shutdown abandoned records or threads.
fn abandoned_on_drop(report: &ShutdownReport, drop_timeout: Duration) -> String {
    let abandoned = &report.abandoned;
    let mut places = Vec::new();
    if abandoned.queued > 0 {
        places.push(format!("{} in the queue", abandoned.queued));
    }
    if abandoned.held > 0 {
        places.push(format!("{} held by tail sampling", abandoned.held));
    }
    for (sink, n) in abandoned.per_sink.iter().filter(|(_, n)| *n > 0) {
        places.push(format!("{n} in sink `{sink}`"));
    }
    let mut line = format!(
        "dropping the guard shut the pipeline down and the drop timeout ({drop_timeout:?}) \
         passed"
    );
    let drain_running = report
        .unfinished_threads
        .iter()
        .any(|t| t == crate::pipeline::DRAIN_THREAD);
    if abandoned.total() == 0 && drain_running {
        // What the drain thread still holds is not known here.
        line.push_str(" while the drain thread still ran");
    } else if abandoned.total() == 0 {
        // Only sink threads were late (still exporting, or in their own shutdown).
        line.push_str(" with every record written or counted");
    } else {
        line.push_str(&format!(
            " with {} records not written ({}); they are counted as dropped with reason \
             `shutdown_deadline`",
            abandoned.total(),
            places.join(", ")
        ));
    }
    if !report.unfinished_threads.is_empty() {
        line.push_str(&format!(
            "; threads still running: {}",
            report.unfinished_threads.join(", ")
        ));
    }
    if drain_running {
        line.push_str(
            " (what the drain thread holds is counted as dropped with reason `shutdown_deadline` in the stats as it lets go of it)",
        );
    }
    line.push_str(
        ". Raise `Builder::drop_timeout`, or call `Guard::shutdown` with a longer deadline \
         before the guard goes out of scope.",
    );
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Pending;

    #[test]
    fn a_drop_that_left_the_drain_thread_running_does_not_say_every_record_is_counted() {
        let report = ShutdownReport {
            elapsed: Duration::from_millis(1),
            abandoned: Pending::default(),
            unfinished_threads: vec![crate::pipeline::DRAIN_THREAD.into()],
        };
        let line = abandoned_on_drop(&report, Duration::from_millis(1));
        assert!(
            !line.contains("every record written or counted")
                && line.contains("while the drain thread still ran")
                && line.contains("counted as dropped with reason `shutdown_deadline` in the stats"),
            "{line}"
        );
    }

    /// A pipeline's threads carry its identity while their thread-local values drop, after
    /// the pipeline may be gone. Taken from its address, the identity was the next
    /// pipeline's too when that one was built at the same address, and such a thread was
    /// taken for one of its own.
    #[test]
    fn a_pipeline_built_where_another_was_has_an_identity_of_its_own() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..8 {
            let (_layer, guard) = crate::OffloadLayer::builder()
                .sink(crate::sink::Channel::new(1).0)
                .build()
                .unwrap();
            assert!(
                seen.insert(guard.handle().pipeline.id()),
                "an identity given twice"
            );
            guard.shutdown(Duration::from_secs(10)).unwrap();
        }
    }

    #[test]
    fn a_drop_that_abandons_only_threads_does_not_speak_of_records() {
        let report = ShutdownReport {
            elapsed: Duration::from_secs(5),
            abandoned: Pending::default(),
            unfinished_threads: vec!["offload-sink-otlp".into()],
        };
        let line = abandoned_on_drop(&report, Duration::from_secs(5));
        assert!(
            line.contains("every record written or counted")
                && line.contains("threads still running: offload-sink-otlp")
                && !line.contains("records not written")
                && !line.contains("shutdown_deadline"),
            "{line}"
        );
        let report = ShutdownReport {
            abandoned: Pending {
                queued: 2,
                held: 0,
                per_sink: vec![("json".into(), 3)],
            },
            ..report
        };
        let line = abandoned_on_drop(&report, Duration::from_secs(5));
        assert!(
            line.contains("passed with 5 records not written (2 in the queue, 3 in sink `json`)")
                && line.contains("shutdown_deadline"),
            "{line}"
        );
    }
}
