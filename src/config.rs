//! The effective configuration, where each setting came from, and reading it from the
//! environment.
//!
//! Precedence, everywhere in this crate: **a value set in code wins over the environment, and
//! the environment wins over the default.** Environment values are parsed by the OpenTelemetry
//! rules: an empty variable counts as unset; an invalid one produces one warning (on stderr and
//! in [`Config::warnings`]) naming the variable, the value and the default used instead, and
//! never a panic. [`Builder::try_from_env`](crate::Builder::try_from_env) turns those warnings
//! into a [`BuildError`](crate::BuildError).

use serde::Serialize;

use crate::env::EnvWarning;
use crate::env::{boolean, EnvReader};

/// Where a setting's value came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "name")]
pub enum Source {
    /// The crate's default.
    Default,
    /// An environment variable (named).
    Env(String),
    /// A builder method or a handle call.
    Code,
}

/// One setting's value and where it came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Setting<T> {
    /// The value in force.
    pub value: T,
    /// Where it came from.
    pub source: Source,
}

impl<T> Setting<T> {
    pub(crate) fn default(value: T) -> Self {
        Setting {
            value,
            source: Source::Default,
        }
    }

    pub(crate) fn set(&mut self, value: T, source: Source) {
        self.value = value;
        self.source = source;
    }

    pub(crate) fn set_code(&mut self, value: T) {
        self.set(value, Source::Code)
    }

    /// Sets from the environment unless code already set it.
    pub(crate) fn set_env(&mut self, value: T, var: &str) {
        if self.source != Source::Code {
            self.set(value, Source::Env(var.to_owned()))
        }
    }

    /// Sets from the environment whatever the current source (an explicit reload).
    pub(crate) fn set_env_forced(&mut self, value: T, var: &str) {
        self.set(value, Source::Env(var.to_owned()))
    }
}

/// The effective configuration of a pipeline, from
/// [`Handle::config`](crate::Handle::config). Serialisable (e.g. for a `/config` endpoint).
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct Config {
    /// Whether the layer records anything (`OTEL_SDK_DISABLED=true` turns it off).
    pub enabled: Setting<bool>,
    /// Records the queue holds.
    pub capacity: Setting<usize>,
    /// The back-pressure policy (`drop_oldest`, `drop_newest`, `block`).
    pub backpressure: Setting<String>,
    /// How long `block` waits for room, in milliseconds.
    pub block_timeout_ms: Setting<u64>,
    /// How long a critical record waits for room when the policy is not `block`, in ms.
    pub critical_block_timeout_ms: Setting<u64>,
    /// Records the drain thread takes per batch.
    pub batch_size: Setting<usize>,
    /// The drain and sink threads' wake-up interval, in milliseconds.
    pub flush_interval_ms: Setting<u64>,
    /// The cap on a captured text value, in bytes.
    pub max_field_len: Setting<usize>,
    /// Events kept per span (for sinks that attach events to spans).
    pub span_event_limit: Setting<usize>,
    /// Each sink's buffer, in records.
    pub sink_buffer_capacity: Setting<usize>,
    /// How long dropping the guard may take, in milliseconds.
    pub drop_timeout_ms: Setting<u64>,
    /// How long a full sink may go without an export before it is stalled, in milliseconds:
    /// after `build()`, the one in force (under `Block`, at most half its timeout).
    pub sink_stall_after_ms: Setting<u64>,
    /// Whether spans count their busy and idle time.
    pub span_timings: Setting<bool>,
    /// Target prefixes that make an `ERROR` critical.
    pub critical_targets: Setting<Vec<String>>,
    /// The sinks, by name.
    pub sinks: Vec<String>,
    /// Each sink's own settings, as the sink describes them ([`Sink::settings`]: the JSON-lines
    /// sink's absolute path and rotation, the console's stream and colours as it decided them,
    /// the OTLP sink's endpoints and the rest, secrets such as its header values redacted;
    /// `null` for a sink that describes none).
    ///
    /// [`Sink::settings`]: crate::sink::Sink::settings
    pub sink_settings: std::collections::BTreeMap<String, serde_json::Value>,
    /// The event keep rate (0.0 to 1.0).
    pub sample_rate: Setting<f64>,
    /// The traces sampler (OTel's names and argument).
    pub traces_sampler: Setting<crate::sampling::TracesSampler>,
    /// Target or name prefixes never sampled out.
    pub sample_always: Setting<Vec<String>>,
    /// Whether the adaptive mode lowers the event rate while the queue is nearly full.
    pub sample_adaptive: Setting<bool>,
    /// Whether `ERROR` events are always kept.
    pub keep_errors: Setting<bool>,
    /// Whether events inside an unsampled trace are sampled out with it.
    pub events_follow_trace_sampling: Setting<bool>,
    /// Tail sampling's settings; `None` when it is off. Serialised in its text form, as
    /// `OFFLOAD_TAIL_SAMPLING` takes it.
    pub tail_sampling: Setting<Option<crate::tail_sampling::TailSampling>>,
    /// The admin HTTP endpoint's address (feature `admin`); `None` when it is off.
    pub admin_addr: Setting<Option<String>>,
    /// The filter that [`init`](crate::init), [`init_with`](crate::init_with) and
    /// [`init_from`](crate::init_from) installed in front of the layer, in `EnvFilter`'s text
    /// form: from `RUST_LOG`, or the default `info`. `None` for a layer installed otherwise
    /// (your subscriber's filters are yours to show).
    pub filter: Option<Setting<String>>,
    /// Problems found in the environment (also printed on stderr when the pipeline is built):
    /// the build's, then the last [`Handle::reload_from_env`](crate::Handle::reload_from_env)'s.
    pub warnings: Vec<EnvWarning>,
}

/// How [`apply_sampling_env`] treats values set in code.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnvPrecedence {
    /// Building: code wins over the environment.
    CodeWins,
    /// `Handle::reload_from_env`: every variable that is set replaces the current value.
    EnvWins,
}

/// Reads the sampling variables into `c`: `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`,
/// `OFFLOAD_SAMPLE_RATE`, `OFFLOAD_SAMPLE_ALWAYS`, `OFFLOAD_SAMPLE_ADAPTIVE`,
/// `OFFLOAD_TAIL_SAMPLING`.
pub(crate) fn apply_sampling_env(
    c: &mut Config,
    env: &mut EnvReader<'_>,
    precedence: EnvPrecedence,
) {
    use crate::sampling::{parse_ratio, DEFAULT_SAMPLE_RATE};
    fn put<T>(s: &mut Setting<T>, v: T, var: &str, p: EnvPrecedence) {
        match p {
            EnvPrecedence::CodeWins => s.set_env(v, var),
            EnvPrecedence::EnvWins => s.set_env_forced(v, var),
        }
    }
    if let Some(rate) = env.parse("OFFLOAD_SAMPLE_RATE", &DEFAULT_SAMPLE_RATE, parse_ratio) {
        put(&mut c.sample_rate, rate, "OFFLOAD_SAMPLE_RATE", precedence);
    }
    apply_traces_sampler_env(c, env, precedence);
    if let Some(list) = env.raw("OFFLOAD_SAMPLE_ALWAYS") {
        let prefixes: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        put(
            &mut c.sample_always,
            prefixes,
            "OFFLOAD_SAMPLE_ALWAYS",
            precedence,
        );
    }
    if let Some(on) = env.parse("OFFLOAD_SAMPLE_ADAPTIVE", &false, boolean) {
        put(
            &mut c.sample_adaptive,
            on,
            "OFFLOAD_SAMPLE_ADAPTIVE",
            precedence,
        );
    }
    if let Some(tail) = env.parse("OFFLOAD_TAIL_SAMPLING", &"off", parse_tail_sampling) {
        put(
            &mut c.tail_sampling,
            tail,
            "OFFLOAD_TAIL_SAMPLING",
            precedence,
        );
    }
}

/// `OFFLOAD_TAIL_SAMPLING`: `off` (or `none`), or [`TailSampling`]'s text form.
///
/// [`TailSampling`]: crate::tail_sampling::TailSampling
fn parse_tail_sampling(s: &str) -> Result<Option<crate::tail_sampling::TailSampling>, String> {
    use crate::tail_sampling::{TailSampling, EXPECTED_TAIL_SAMPLING};
    if matches!(s.to_ascii_lowercase().as_str(), "off" | "none") {
        return Ok(None);
    }
    match s.parse::<TailSampling>() {
        Ok(tail) => Ok(Some(tail)),
        // The parser's own reason (a criterion missing, say) before the general form: a value
        // that matches the form can still be refused.
        Err(e) => Err(format!("{EXPECTED_TAIL_SAMPLING} ({e})")),
    }
}

/// `OTEL_TRACES_SAMPLER_ARG` as found.
enum SamplerArg {
    Unset,
    Valid(f64),
    /// Unparsable, out of range or not UTF-8; its warning is at this index, or not pushed yet.
    Invalid(Option<usize>, String),
}

/// Reads `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` into `c`.
///
/// The argument matters only to the ratio samplers. When building, a missing or invalid one
/// gives the spec's fallback, 1.0 (an invalid one with a warning). During a reload
/// ([`EnvPrecedence::EnvWins`]) a missing or invalid argument keeps the ratio in force, with a
/// warning that names it, and an argument set alone retunes the ratio sampler in force.
fn apply_traces_sampler_env(c: &mut Config, env: &mut EnvReader<'_>, precedence: EnvPrecedence) {
    use crate::sampling::{TracesSampler, DEFAULT_TRACES_SAMPLER, SAMPLER_NAMES};
    const SAMPLER: &str = "OTEL_TRACES_SAMPLER";
    const ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
    let arg = read_sampler_arg(env);
    let warnings_before = env.warnings.len();
    let named = env.parse(SAMPLER, &DEFAULT_TRACES_SAMPLER, |name| {
        TracesSampler::parse(name, None).map_err(|_| SAMPLER_NAMES.to_owned())
    });
    let name_invalid = env.warnings.len() > warnings_before;
    let reload = precedence == EnvPrecedence::EnvWins;
    let in_force = c.traces_sampler.value;
    let (sampler, var) = match named {
        Some(sampler) => (sampler, SAMPLER),
        // A reload with only the argument set retunes the ratio sampler in force.
        None if reload && !name_invalid && in_force.ratio().is_some() => match arg {
            SamplerArg::Unset => return,
            _ => (in_force, ARG),
        },
        None => {
            // An invalid sampler name has its own warning.
            if !name_invalid {
                warn_unused_arg(env, arg, in_force);
            }
            return;
        }
    };
    let put = |s: &mut Setting<TracesSampler>, v| match precedence {
        EnvPrecedence::CodeWins => s.set_env(v, var),
        EnvPrecedence::EnvWins => s.set_env_forced(v, var),
    };
    if sampler.ratio().is_none() {
        put(&mut c.traces_sampler, sampler);
        warn_unused_arg(env, arg, sampler);
        return;
    }
    let kept = in_force.ratio().filter(|_| reload);
    let used = |kept: Option<f64>| match kept {
        Some(r) => format!("the ratio in force {r}"),
        None => "the default 1".to_owned(),
    };
    let ratio = match arg {
        SamplerArg::Valid(r) => r,
        SamplerArg::Invalid(index, value) => {
            let warning = EnvWarning {
                var: ARG.to_owned(),
                value,
                expected: "a number from 0.0 to 1.0".to_owned(),
                used: used(kept),
            };
            match index {
                // Not UTF-8: the reader already warned; say what was used instead.
                Some(i) => env.warnings[i].used = warning.used,
                None => env.warnings.push(warning),
            }
            if var == ARG {
                return; // nothing changes
            }
            kept.unwrap_or(1.0)
        }
        SamplerArg::Unset => match kept {
            Some(r) => {
                env.warnings.push(EnvWarning {
                    var: ARG.to_owned(),
                    value: String::new(),
                    expected: "a number from 0.0 to 1.0 for the ratio sampler".to_owned(),
                    used: used(kept),
                });
                r
            }
            None => 1.0,
        },
    };
    put(&mut c.traces_sampler, with_ratio(sampler, ratio));
}

/// An invalid `OTEL_TRACES_SAMPLER_ARG` while the sampler in force takes no argument: ignored,
/// with a warning (it was ignored without a word). A valid one is ignored as OTel says, quietly
/// (a strict build does not fail on it).
fn warn_unused_arg(
    env: &mut EnvReader<'_>,
    arg: SamplerArg,
    sampler: crate::sampling::TracesSampler,
) {
    let used = format!(
        "nothing from it: the traces sampler {sampler} takes no argument (set \
         OTEL_TRACES_SAMPLER=traceidratio or parentbased_traceidratio with it)"
    );
    let SamplerArg::Invalid(index, value) = arg else {
        return;
    };
    match index {
        // Not UTF-8: the reader already warned; say what was used instead.
        Some(i) => env.warnings[i].used = used,
        None => env.warnings.push(EnvWarning {
            var: "OTEL_TRACES_SAMPLER_ARG".to_owned(),
            value,
            expected: "a number from 0.0 to 1.0, for a ratio sampler".to_owned(),
            used,
        }),
    }
}

fn read_sampler_arg(env: &mut EnvReader<'_>) -> SamplerArg {
    let warnings_before = env.warnings.len();
    match env.raw("OTEL_TRACES_SAMPLER_ARG") {
        Some(text) => match crate::sampling::parse_ratio(&text) {
            Ok(r) => SamplerArg::Valid(r),
            Err(_) => SamplerArg::Invalid(None, text),
        },
        None if env.warnings.len() > warnings_before => {
            let value = env.warnings[warnings_before].value.clone();
            SamplerArg::Invalid(Some(warnings_before), value)
        }
        None => SamplerArg::Unset,
    }
}

fn with_ratio(sampler: crate::sampling::TracesSampler, r: f64) -> crate::sampling::TracesSampler {
    use crate::sampling::TracesSampler::*;
    match sampler {
        TraceIdRatio(_) => TraceIdRatio(r),
        ParentBasedTraceIdRatio(_) => ParentBasedTraceIdRatio(r),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_wins_over_env() {
        let mut s = Setting::default(1);
        s.set_code(2);
        s.set_env(3, "X");
        assert_eq!((s.value, s.source), (2, Source::Code));
        let mut s = Setting::default(1);
        s.set_env(3, "X");
        assert_eq!((s.value, s.source), (3, Source::Env("X".into())));
    }
}
