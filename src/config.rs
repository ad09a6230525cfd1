//! The effective configuration, where each setting came from, and reading it from the
//! environment.
//!
//! Precedence, everywhere in this crate: **a value set in code wins over the environment, and
//! the environment wins over the default.** Environment values are parsed by the OpenTelemetry
//! rules: an empty variable counts as unset; an invalid one produces one warning (on stderr and
//! in [`Config::warnings`]) naming the variable, the value and the default used instead, and
//! never a panic. [`Builder::try_from_env`](crate::Builder::try_from_env) turns those warnings
//! into a [`BuildError`](crate::BuildError).

use std::fmt;
use std::time::Duration;

use serde::Serialize;

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

/// A problem found while reading an environment variable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EnvWarning {
    /// The variable's name.
    pub var: String,
    /// Its value as found.
    pub value: String,
    /// What was expected.
    pub expected: String,
    /// The value used instead.
    pub used: String,
}

impl fmt::Display for EnvWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ignoring {}={:?}: expected {}; using {}",
            self.var, self.value, self.expected, self.used
        )
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
    /// Target prefixes that make an `ERROR` critical.
    pub critical_targets: Setting<Vec<String>>,
    /// The sinks, by name.
    pub sinks: Vec<String>,
    /// Each sink's own settings, as the sink describes them (secrets such as OTLP header
    /// values redacted).
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
    /// The admin HTTP endpoint's address (feature `admin`); `None` when it is off.
    pub admin_addr: Setting<Option<String>>,
    /// Problems found in the environment (also printed on stderr when the pipeline is built).
    pub warnings: Vec<EnvWarning>,
}

/// Reads environment variables with the OTel rules, collecting warnings.
pub(crate) struct EnvReader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    pub(crate) warnings: Vec<EnvWarning>,
}

impl<'a> EnvReader<'a> {
    pub(crate) fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        EnvReader {
            lookup,
            warnings: Vec::new(),
        }
    }

    /// The variable's trimmed value; `None` when unset or empty.
    pub(crate) fn raw(&self, var: &str) -> Option<String> {
        (self.lookup)(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// Parses `var`; on failure records a warning naming `default` and returns `None`.
    pub(crate) fn parse<T>(
        &mut self,
        var: &str,
        default: &dyn fmt::Display,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let raw = self.raw(var)?;
        match parse(&raw) {
            Ok(v) => Some(v),
            Err(expected) => {
                self.warnings.push(EnvWarning {
                    var: var.to_owned(),
                    value: raw,
                    expected,
                    used: format!("the default {default}"),
                });
                None
            }
        }
    }
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
/// `OFFLOAD_SAMPLE_RATE`, `OFFLOAD_SAMPLE_ALWAYS`, `OFFLOAD_SAMPLE_ADAPTIVE`.
pub(crate) fn apply_sampling_env(
    c: &mut Config,
    env: &mut EnvReader<'_>,
    precedence: EnvPrecedence,
) {
    use crate::sampling::{
        parse_ratio, TracesSampler, DEFAULT_SAMPLE_RATE, DEFAULT_TRACES_SAMPLER,
    };
    fn put<T>(s: &mut Setting<T>, v: T, var: &str, p: EnvPrecedence) {
        match p {
            EnvPrecedence::CodeWins => s.set_env(v, var),
            EnvPrecedence::EnvWins => s.set_env_forced(v, var),
        }
    }
    if let Some(rate) = env.parse("OFFLOAD_SAMPLE_RATE", &DEFAULT_SAMPLE_RATE, parse_ratio) {
        put(&mut c.sample_rate, rate, "OFFLOAD_SAMPLE_RATE", precedence);
    }
    let arg = env.raw("OTEL_TRACES_SAMPLER_ARG");
    let sampler = env.parse("OTEL_TRACES_SAMPLER", &DEFAULT_TRACES_SAMPLER, |name| {
        TracesSampler::parse(name, None)
    });
    if let Some(sampler) = sampler {
        // The argument only matters to the ratio samplers; an invalid one uses 1.0 (the spec).
        let sampler = match (sampler.ratio(), arg) {
            (Some(_), Some(arg)) => env
                .parse("OTEL_TRACES_SAMPLER_ARG", &1.0, |_| parse_ratio(&arg))
                .map_or(sampler, |r| with_ratio(sampler, r)),
            _ => sampler,
        };
        put(
            &mut c.traces_sampler,
            sampler,
            "OTEL_TRACES_SAMPLER",
            precedence,
        );
    }
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
}

fn with_ratio(sampler: crate::sampling::TracesSampler, r: f64) -> crate::sampling::TracesSampler {
    use crate::sampling::TracesSampler::*;
    match sampler {
        TraceIdRatio(_) => TraceIdRatio(r),
        ParentBasedTraceIdRatio(_) => ParentBasedTraceIdRatio(r),
        other => other,
    }
}

/// Parses a positive integer (`> 0`).
pub(crate) fn positive_usize(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("a whole number greater than 0".to_owned()),
    }
}

/// Parses milliseconds as a whole number.
pub(crate) fn millis(s: &str) -> Result<Duration, String> {
    s.parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| "a whole number of milliseconds".to_owned())
}

/// Parses an OTel boolean: `true` or `false`, any case.
pub(crate) fn boolean(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("true or false".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_unset_and_invalid_warns_with_the_default() {
        let lookup = |v: &str| match v {
            "EMPTY" => Some("  ".to_owned()),
            "BAD" => Some("abc".to_owned()),
            "GOOD" => Some(" 42 ".to_owned()),
            _ => None,
        };
        let mut env = EnvReader::new(&lookup);
        assert_eq!(env.parse("EMPTY", &7, positive_usize), None);
        assert_eq!(env.parse("UNSET", &7, positive_usize), None);
        assert_eq!(env.parse("GOOD", &7, positive_usize), Some(42));
        assert!(env.warnings.is_empty());
        assert_eq!(env.parse("BAD", &7, positive_usize), None);
        let w = env.warnings[0].to_string();
        assert!(
            w.contains("BAD") && w.contains("abc") && w.contains("the default 7"),
            "{w}"
        );
    }

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
