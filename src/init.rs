//! The `init()` shortcut and its open form `init_with()`: the environment's settings, a console
//! sink (and OTLP when the environment asks for it), `RUST_LOG` as the filter, the `log`
//! bridge, and the global subscriber.

use tracing_subscriber::filter::{Directive, EnvFilter, LevelFilter};
use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::Registry;

use crate::{env, sink, BuildError, Builder, EnvWarning, Guard, OffloadLayer, Setting, Source};

/// The subscriber that [`init_with`] hands to its closure: the registry, filtered by `RUST_LOG`,
/// with the offload layer on top. Add your own layers to it with
/// [`SubscriberExt::with`](https://docs.rs/tracing-subscriber/0.3/tracing_subscriber/layer/trait.SubscriberExt.html#method.with).
pub type InitSubscriber = Layered<OffloadLayer, Layered<EnvFilter, Registry>>;

/// The variable [`init`] reads its filter from, as `tracing_subscriber::fmt::init()` does.
const FILTER_VAR: &str = "RUST_LOG";

/// Reads the environment, installs the layer with a console sink (stderr) as the global
/// subscriber, and returns the guard. Keep the guard alive (see [`Guard`]).
///
/// What it sets up:
/// - the pipeline from [`Builder::from_env`] (the `OFFLOAD_*` and `OTEL_*` variables), with a
///   [`Console`](sink::Console) sink on stderr; with the `otlp` feature, an
#[cfg_attr(
    feature = "otlp",
    doc = "  [`Otlp`](sink::Otlp) sink configured from OpenTelemetry's variables is added when"
)]
#[cfg_attr(
    not(feature = "otlp"),
    doc = "  `Otlp` sink configured from OpenTelemetry's variables is added when"
)]
///   `OTEL_EXPORTER_OTLP_ENDPOINT` (or its `_TRACES_`/`_LOGS_` form) is set, or
///   `OTEL_TRACES_EXPORTER` / `OTEL_LOGS_EXPORTER` names `otlp` (the variables take a
///   comma-separated list, `otlp,console` say; a value that is not one is a warning);
/// - a filter from `RUST_LOG` (tracing-subscriber's
///   [`EnvFilter`](https://docs.rs/tracing-subscriber/0.3/tracing_subscriber/filter/struct.EnvFilter.html) syntax, e.g. `warn,my_app=debug`),
///   `info` when it is unset or empty. An invalid directive is ignored with a warning (on
///   stderr and in [`Config::warnings`](crate::Config::warnings)); the valid ones still apply.
///   The filter applies to the whole subscriber, as `tracing_subscriber::fmt::init()` does;
/// - the `log` bridge (`tracing-log`'s `LogTracer`), so records of `log`-based crates arrive
///   too, filtered alike. If a `log` logger is already set, they keep going there: `init`
///   says so on stderr and succeeds without the bridge.
///
/// To add layers of your own (a second output, an error reporter, a per-layer filter) while
/// keeping all of this, use [`init_with`].
///
/// Fails if a global subscriber is already set, or if the pipeline cannot be built.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // RUST_LOG=warn,my_app=debug ./my_app
/// let _guard = tracing_offload::init()?;
/// tracing::info!("running");
/// # Ok(()) }
/// ```
pub fn init() -> Result<Guard, BuildError> {
    init_with(|subscriber| subscriber)
}

/// [`init`], with layers of your own: `add` receives the subscriber that `init` would install
/// (the registry, the `RUST_LOG` filter and the offload layer, an [`InitSubscriber`]) and
/// returns the one to install. Everything `init` reads from the environment still applies.
///
/// `RUST_LOG` filters the whole subscriber, so your layers see what it lets through; narrow
/// one of them further with a per-layer filter
/// ([`Layer::with_filter`](https://docs.rs/tracing-subscriber/0.3/tracing_subscriber/layer/trait.Layer.html#method.with_filter)).
///
/// ```no_run
/// use tracing_subscriber::filter::LevelFilter;
/// use tracing_subscriber::prelude::*;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let _guard = tracing_offload::init_with(|subscriber| {
///     // e.g. the warnings also as plain text on stdout
///     subscriber.with(
///         tracing_subscriber::fmt::layer()
///             .with_writer(std::io::stdout)
///             .with_filter(LevelFilter::WARN),
///     )
/// })?;
/// tracing::warn!("disk almost full");
/// # Ok(()) }
/// ```
///
/// (`tracing_subscriber::fmt` needs that crate's `fmt` feature in your `Cargo.toml`.)
pub fn init_with<S>(add: impl FnOnce(InitSubscriber) -> S) -> Result<Guard, BuildError>
where
    S: tracing::Subscriber + Send + Sync + 'static,
{
    install(
        || {
            let lossy = |var: &str| std::env::var_os(var).map(|v| v.to_string_lossy().into_owned());
            init_builder(Builder::from_env(), &lossy)
        },
        add,
    )
}

/// [`init`] with a pipeline of your own: the sinks and settings of `builder` instead of the
/// console (and OTLP) that `init` adds, with the rest of `init` (the `RUST_LOG` filter, `info`
/// when unset, and the `log` bridge). Start from [`Builder::from_env`] to keep reading the
/// `OFFLOAD_*` and `OTEL_*` variables; the OTLP sink is added only if you add it. A builder
/// without a sink writes the records nowhere: `init_from` says so on stderr.
///
/// `RUST_LOG` is read as [`init`] reads it, once: an invalid directive is a warning (in
/// [`Config::warnings`](crate::Config::warnings)) even with a builder from
/// [`Builder::try_from_env`], and [`Handle::reload_from_env`](crate::Handle::reload_from_env)
/// does not read it again.
///
/// ```no_run
/// use tracing_offload::{sink, Builder};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // RUST_LOG=warn,my_app=debug ./my_app
/// let _guard = tracing_offload::init_from(
///     Builder::from_env().sink(sink::JsonFile::new("logs/app.jsonl")),
///     // and e.g. `.sink(sink::Otlp::from_env())` with the `otlp` feature
/// )?;
/// tracing::info!("running");
/// # Ok(()) }
/// ```
pub fn init_from(builder: Builder) -> Result<Guard, BuildError> {
    if !builder.has_sinks() {
        crate::notice::say(format_args!(
            "init_from: the builder has no sink, so records are written nowhere (add one with \
             `.sink(…)`)"
        ));
    }
    install(|| builder, |subscriber| subscriber)
}

/// What [`init_with`] and [`init_from`] share: the pipeline `builder` makes, under the
/// `RUST_LOG` filter, with the layers `add` puts on, as the global subscriber; then the `log`
/// bridge.
fn install<S>(
    builder: impl FnOnce() -> Builder,
    add: impl FnOnce(InitSubscriber) -> S,
) -> Result<Guard, BuildError>
where
    S: tracing::Subscriber + Send + Sync + 'static,
{
    // Said before anything is built: a second pipeline from the same environment would fail
    // first on what the first one holds (its admin address, its spool directory), with an
    // error about that. (`set_global_default` below still refuses one set meanwhile.)
    if tracing::dispatcher::has_been_set() {
        return Err(BuildError::GlobalSubscriberAlreadySet);
    }
    // The pipeline's variables are read by `Builder::from_env`, which warns about a value that
    // is not UTF-8; so is `RUST_LOG` here.
    let (filter, shown, mut filter_warnings) = log_filter(&|var: &str| std::env::var(var).ok());
    filter_warnings.extend(not_utf8(FILTER_VAR, "the default info"));
    let (layer, guard) = builder()
        .env_warnings(filter_warnings)
        .init_filter(shown)
        .build()?;
    let subscriber = tracing_subscriber::registry().with(filter).with(layer);
    tracing::subscriber::set_global_default(add(subscriber))
        .map_err(|_| BuildError::GlobalSubscriberAlreadySet)?;
    install_log_bridge();
    Ok(guard)
}

/// A warning for `var` when its value is not UTF-8 (then it is ignored, and `used` applies).
fn not_utf8(var: &str, used: &str) -> Option<EnvWarning> {
    let value = std::env::var_os(var)?;
    if value.to_str().is_some() {
        return None;
    }
    Some(EnvWarning {
        var: var.to_owned(),
        value: value.to_string_lossy().into_owned(),
        expected: "a UTF-8 value".to_owned(),
        used: used.to_owned(),
    })
}

/// The pipeline `init` builds: `builder` (the environment's settings), the console, and OTLP
/// when `lookup` says the environment asks for it.
#[cfg_attr(not(feature = "otlp"), allow(unused_variables))]
fn init_builder(builder: Builder, lookup: &dyn Fn(&str) -> Option<String>) -> Builder {
    let builder = builder.sink(sink::Console::stderr());
    #[cfg(feature = "otlp")]
    if otlp_requested(lookup) {
        // The OTLP sink reads (and warns about) the exporter variables itself.
        return builder.sink(sink::Otlp::from_env());
    }
    builder.env_warnings(exporter_warnings(lookup))
}

/// The exporter variables ([`EXPORTER_VARS`]) when `init` adds no OTLP sink, which would read
/// them: a warning for a value that is not a list of exporter names, and (in a build without the
/// `otlp` feature) for one that asks for OTLP, so that neither is ignored without a word.
fn exporter_warnings(lookup: &dyn Fn(&str) -> Option<String>) -> Vec<EnvWarning> {
    let mut warnings = Vec::new();
    let no_otlp = "nothing: this build of tracing-offload has no `otlp` feature";
    let used = "no OTLP export (the console sink only)";
    #[cfg(not(feature = "otlp"))]
    for var in ENDPOINT_VARS {
        if let Some(value) = lookup(var).filter(|v| !v.trim().is_empty()) {
            warnings.push(EnvWarning {
                var: var.to_owned(),
                value: value.trim().to_owned(),
                expected: no_otlp.to_owned(),
                used: used.to_owned(),
            });
        }
    }
    for var in EXPORTER_VARS {
        let Some(value) = lookup(var).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        let expected = match env::exporters(&value) {
            Err(expected) => expected,
            Ok(true) if cfg!(not(feature = "otlp")) => no_otlp.to_owned(),
            Ok(_) => continue,
        };
        warnings.push(EnvWarning {
            var: var.to_owned(),
            value: value.trim().to_owned(),
            expected,
            used: used.to_owned(),
        });
    }
    warnings
}

/// The variables that name the exporters of traces and of logs.
const EXPORTER_VARS: [&str; 2] = [env::OTEL_TRACES_EXPORTER, env::OTEL_LOGS_EXPORTER];

/// The variables that give an OTLP endpoint.
const ENDPOINT_VARS: [&str; 3] = [
    env::OTEL_EXPORTER_OTLP_ENDPOINT,
    env::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    env::OTEL_EXPORTER_OTLP_LOGS_ENDPOINT,
];

/// The filter from `RUST_LOG` (default `info`), the same as [`Config::filter`](crate::Config::filter)
/// shows it, and a warning for each invalid directive.
///
/// Directives are split at commas, as `EnvFilter`'s own lenient parser does, so that one bad
/// directive costs only itself.
fn log_filter(
    lookup: &dyn Fn(&str) -> Option<String>,
) -> (EnvFilter, Setting<String>, Vec<EnvWarning>) {
    let raw = lookup(FILTER_VAR).unwrap_or_default();
    let (valid, invalid): (Vec<&str>, Vec<&str>) = raw
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .partition(|d| d.parse::<Directive>().is_ok());
    let used = if valid.is_empty() {
        "the default info"
    } else {
        "the other directives"
    };
    let warnings = invalid
        .iter()
        .map(|directive| EnvWarning {
            var: FILTER_VAR.to_owned(),
            value: (*directive).to_owned(),
            expected: "a filter directive such as `info`, `my_crate=debug` or \
                       `my_crate::db=trace`"
                .to_owned(),
            used: used.to_owned(),
        })
        .collect();
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse_lossy(valid.join(","));
    let source = if valid.is_empty() {
        Source::Default
    } else {
        Source::Env(FILTER_VAR.to_owned())
    };
    let shown = Setting {
        value: filter.to_string(),
        source,
    };
    (filter, shown, warnings)
}

/// Sends `log` records into `tracing` (`tracing-log`'s `LogTracer`), with `log`'s maximum level
/// set from the installed subscriber's, so that records it would filter out cost `log` one
/// comparison. When a `log` logger is already set, says so and leaves it in place.
fn install_log_bridge() {
    use tracing_log::AsLog;
    // After `set_global_default`, so that the current maximum level is the new subscriber's.
    let max_level = LevelFilter::current().as_log();
    if tracing_log::LogTracer::builder()
        .with_max_level(max_level)
        .init()
        .is_err()
    {
        crate::notice::say(format_args!(
            "a `log` logger is already set, so records of `log`-based crates keep going to it, \
             not to this pipeline (the `log` bridge is installed only when no logger is set)"
        ));
    }
}

/// Whether the environment asks for OTLP export (see [`init`]).
#[cfg(feature = "otlp")]
fn otlp_requested(lookup: &dyn Fn(&str) -> Option<String>) -> bool {
    let set = |var: &str| lookup(var).is_some_and(|v| !v.trim().is_empty());
    let otlp = |var: &str| lookup(var).is_some_and(|v| crate::env::exporters(&v) == Ok(true));
    ENDPOINT_VARS.into_iter().any(set) || EXPORTER_VARS.into_iter().any(otlp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |v: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == v)
                .map(|(_, x)| x.to_string())
        }
    }

    #[cfg(feature = "otlp")]
    #[test]
    fn otlp_is_requested_by_an_endpoint_or_an_exporter_name() {
        assert!(!otlp_requested(&env(&[])));
        assert!(!otlp_requested(&env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            " "
        )])));
        assert!(otlp_requested(&env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://c:4317"
        )])));
        assert!(otlp_requested(&env(&[("OTEL_TRACES_EXPORTER", "OTLP")])));
        assert!(otlp_requested(&env(&[(
            "OTEL_LOGS_EXPORTER",
            "console, otlp"
        )])));
        assert!(!otlp_requested(&env(&[("OTEL_TRACES_EXPORTER", "none")])));
    }

    #[test]
    fn an_exporter_value_init_does_not_act_on_is_a_warning() {
        let vars = |w: Vec<EnvWarning>| w.into_iter().map(|w| (w.var, w.value)).collect::<Vec<_>>();
        let typo = exporter_warnings(&env(&[("OTEL_LOGS_EXPORTER", " otlpp ")]));
        assert_eq!(vars(typo), [("OTEL_LOGS_EXPORTER".into(), "otlpp".into())]);
        assert!(exporter_warnings(&env(&[("OTEL_TRACES_EXPORTER", "console,none")])).len() == 1);
        assert!(exporter_warnings(&env(&[("OTEL_TRACES_EXPORTER", "none")])).is_empty());
        // Asking for OTLP is a warning only in a build that cannot export it.
        let asked = exporter_warnings(&env(&[
            ("OTEL_TRACES_EXPORTER", "otlp,console"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
        ]));
        assert_eq!(
            asked.len(),
            if cfg!(feature = "otlp") { 0 } else { 2 },
            "{asked:?}"
        );
    }

    #[test]
    fn the_filter_defaults_to_info() {
        for unset in [env(&[]), env(&[("RUST_LOG", " ")])] {
            let (filter, shown, warnings) = log_filter(&unset);
            assert!(warnings.is_empty());
            assert_eq!(filter.to_string(), "info");
            assert_eq!(
                (shown.value.as_str(), shown.source),
                ("info", Source::Default)
            );
        }
    }

    #[test]
    fn an_invalid_directive_is_a_warning_and_the_others_apply() {
        let (filter, shown, warnings) =
            log_filter(&env(&[("RUST_LOG", "warn,my_app=loud,db=debug")]));
        assert_eq!(filter.to_string(), "db=debug,warn");
        assert_eq!(shown.value, "db=debug,warn");
        assert_eq!(shown.source, Source::Env("RUST_LOG".into()));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].var, "RUST_LOG");
        assert_eq!(warnings[0].value, "my_app=loud");
        assert_eq!(warnings[0].used, "the other directives");
        let (filter, shown, warnings) = log_filter(&env(&[("RUST_LOG", "my_app=loud")]));
        assert_eq!(filter.to_string(), "info");
        assert_eq!(shown.source, Source::Default);
        assert_eq!(warnings[0].used, "the default info");
    }
}
