//! `tracing_offload::init()` and `init_with()`: read the environment, install the global
//! subscriber with a console sink, filter by `RUST_LOG` (default `info`), bridge `log`
//! records, take layers of the user's own, and refuse a second global subscriber. The global
//! subscriber can be set once per process: one test here sets it in this process, and every
//! other behaviour runs in a child process of its own, whose stderr (the console sink's
//! output and the crate's warnings) the parent reads.
use std::time::Duration;

use tracing_offload::{BuildError, Source};

#[test]
fn init_installs_the_global_subscriber_from_the_environment() {
    std::env::set_var("OFFLOAD_CAPACITY", "1024");
    std::env::set_var("OFFLOAD_SAMPLE_ALWAYS", "audit");
    std::env::remove_var("OTEL_EXPORTER_OTLP_ENDPOINT");
    let guard = tracing_offload::init().expect("the first init succeeds");
    let handle = guard.handle();
    let config = handle.config();
    assert_eq!(config.capacity.value, 1024);
    assert_eq!(
        config.capacity.source,
        Source::Env("OFFLOAD_CAPACITY".into())
    );
    assert_eq!(config.sinks, ["console"]);

    tracing::info!(target: "audit", "through the global subscriber");
    handle.flush(Duration::from_secs(30)).unwrap();
    let stats = handle.stats();
    assert_eq!(stats.offered, 1);
    assert_eq!(stats.sink("console").unwrap().exported, 1);

    let err = tracing_offload::init().unwrap_err();
    assert!(
        matches!(err, BuildError::GlobalSubscriberAlreadySet),
        "{err}"
    );
    guard.shutdown(Duration::from_secs(10)).unwrap();
}

// === each behaviour below in a process of its own (the global subscriber is set once) ===

mod support;

use std::sync::atomic::{AtomicU64, Ordering};

use support::stderr_of_child_test;
use tracing_offload::Handle;

fn flushed_offered(handle: &Handle) -> u64 {
    handle.flush(Duration::from_secs(30)).unwrap();
    handle.stats().offered
}

/// The filter `init` installed, as `Config::filter` shows it: its text and where it came from.
#[track_caller]
fn filter_in_force(handle: &Handle) -> (String, Source) {
    let filter = handle
        .config()
        .filter
        .expect("init's filter is in the config");
    (filter.value, filter.source)
}

#[track_caller]
fn assert_shown_and_hidden(stderr: &str, shown: &[&str], hidden: &[&str]) {
    for s in shown {
        assert!(stderr.contains(s), "`{s}` missing from:\n{stderr}");
    }
    for h in hidden {
        assert!(!stderr.contains(h), "`{h}` shown in:\n{stderr}");
    }
}

#[test]
#[ignore = "run in a child process by without_rust_log_the_filter_is_info"]
fn child_without_rust_log() {
    std::env::remove_var("RUST_LOG");
    let guard = tracing_offload::init().unwrap();
    tracing::trace!("hidden-trace");
    tracing::debug!("hidden-debug");
    tracing::info!("kept-info");
    let handle = guard.handle();
    assert_eq!(flushed_offered(&handle), 1);
    assert_eq!(filter_in_force(&handle), ("info".into(), Source::Default));
}

#[test]
fn without_rust_log_the_filter_is_info() {
    let stderr = stderr_of_child_test("child_without_rust_log");
    assert_shown_and_hidden(&stderr, &["kept-info"], &["hidden-trace", "hidden-debug"]);
}

#[test]
#[ignore = "run in a child process by rust_log_filters_and_an_invalid_directive_warns"]
fn child_with_rust_log() {
    std::env::set_var("RUST_LOG", "warn,noisy=error,my_app=bogus");
    let guard = tracing_offload::init().unwrap();
    tracing::info!("hidden-info");
    tracing::warn!("kept-warn");
    tracing::warn!(target: "noisy", "hidden-noisy-warn");
    tracing::error!(target: "noisy", "kept-noisy-error");
    let handle = guard.handle();
    assert_eq!(flushed_offered(&handle), 2);
    let warnings = handle.config().warnings;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(
        (warnings[0].var.as_str(), warnings[0].value.as_str()),
        ("RUST_LOG", "my_app=bogus")
    );
    // The filter in force, as `/config` shows it (it was in no setting: adversary pass 34).
    assert_eq!(
        filter_in_force(&handle),
        ("noisy=error,warn".into(), Source::Env("RUST_LOG".into()))
    );
}

#[test]
fn rust_log_filters_and_an_invalid_directive_warns() {
    let stderr = stderr_of_child_test("child_with_rust_log");
    assert_shown_and_hidden(
        &stderr,
        &[
            "kept-warn",
            "kept-noisy-error",
            "ignoring RUST_LOG=\"my_app=bogus\"",
        ],
        &["hidden-info", "hidden-noisy-warn"],
    );
}

#[test]
#[ignore = "run in a child process by log_records_arrive_filtered_alike"]
fn child_with_log_records() {
    std::env::remove_var("RUST_LOG");
    let guard = tracing_offload::init().unwrap();
    assert_eq!(log::max_level(), log::LevelFilter::Info);
    log::info!(target: "legacy", "from-the-log-crate");
    log::debug!("hidden-log-debug");
    assert_eq!(flushed_offered(&guard.handle()), 1);
}

#[test]
fn log_records_arrive_filtered_alike() {
    let stderr = stderr_of_child_test("child_with_log_records");
    assert_shown_and_hidden(&stderr, &["from-the-log-crate"], &["hidden-log-debug"]);
}

/// A `log` logger of the application's own, set before `init`.
struct OwnLogger(AtomicU64);

impl log::Log for OwnLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, _: &log::Record<'_>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn flush(&self) {}
}

static OWN_LOGGER: OwnLogger = OwnLogger(AtomicU64::new(0));

#[test]
#[ignore = "run in a child process by a_log_logger_already_set_is_kept_and_init_says_so"]
fn child_with_a_log_logger_already_set() {
    log::set_logger(&OWN_LOGGER).unwrap();
    log::set_max_level(log::LevelFilter::Info);
    let guard = tracing_offload::init().expect("init succeeds without the bridge");
    log::info!("to-the-own-logger");
    tracing::info!("through-tracing");
    assert_eq!(OWN_LOGGER.0.load(Ordering::SeqCst), 1);
    assert_eq!(flushed_offered(&guard.handle()), 1);
}

#[test]
fn a_log_logger_already_set_is_kept_and_init_says_so() {
    let stderr = stderr_of_child_test("child_with_a_log_logger_already_set");
    assert_shown_and_hidden(
        &stderr,
        &["a `log` logger is already set", "through-tracing"],
        &["to-the-own-logger"],
    );
}

/// A layer of the user's own that counts the events it sees.
struct Counting(&'static AtomicU64);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Counting {
    fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
#[ignore = "run in a child process by init_with_adds_layers_and_keeps_the_environment"]
fn child_with_layers_of_its_own() {
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::prelude::*;
    static ALL: AtomicU64 = AtomicU64::new(0);
    static WARN_ONLY: AtomicU64 = AtomicU64::new(0);
    std::env::set_var("RUST_LOG", "info");
    std::env::set_var("OFFLOAD_CAPACITY", "512");
    let guard = tracing_offload::init_with(|subscriber| {
        subscriber
            .with(Counting(&ALL))
            .with(Counting(&WARN_ONLY).with_filter(LevelFilter::WARN))
    })
    .unwrap();
    tracing::debug!("hidden-debug");
    tracing::info!("kept-info");
    tracing::warn!("kept-warn");
    log::info!("kept-log-info");
    let handle = guard.handle();
    assert_eq!(flushed_offered(&handle), 3);
    assert_eq!(ALL.load(Ordering::SeqCst), 3);
    assert_eq!(WARN_ONLY.load(Ordering::SeqCst), 1);
    assert_eq!(handle.config().capacity.value, 512);
}

#[test]
fn init_with_adds_layers_and_keeps_the_environment() {
    let stderr = stderr_of_child_test("child_with_layers_of_its_own");
    assert_shown_and_hidden(
        &stderr,
        &["kept-info", "kept-warn", "kept-log-info"],
        &["hidden-debug"],
    );
}

#[cfg(feature = "admin")]
#[test]
#[ignore = "run in a child process by a_second_init_says_the_subscriber_is_set_before_building"]
fn child_initialising_twice_on_one_admin_address() {
    std::env::set_var("OFFLOAD_ADMIN_ADDR", "127.0.0.1:0");
    let guard = tracing_offload::init().unwrap();
    // The same environment again, its address now taken by the first pipeline.
    let taken = guard.admin_addr().unwrap().to_string();
    std::env::set_var("OFFLOAD_ADMIN_ADDR", &taken);
    let err = tracing_offload::init().unwrap_err();
    assert!(
        matches!(err, BuildError::GlobalSubscriberAlreadySet),
        "the second init built a pipeline before finding the subscriber set: {err}"
    );
}

/// A second `init()` says that the global subscriber is set, whatever else its environment
/// asks for: it used to build its pipeline first, and then failed on what the first one held
/// (the admin address, a spool directory) with an error about that instead.
#[cfg(feature = "admin")]
#[test]
fn a_second_init_says_the_subscriber_is_set_before_building() {
    stderr_of_child_test("child_initialising_twice_on_one_admin_address");
}

#[test]
#[ignore = "run in a child process by init_from_takes_the_builders_sinks_and_keeps_the_rest"]
fn child_init_from_a_builder_of_its_own() {
    std::env::set_var("RUST_LOG", "warn,my_app=debug");
    std::env::set_var("OFFLOAD_CAPACITY", "512");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.jsonl");
    let guard = tracing_offload::init_from(
        tracing_offload::Builder::from_env().sink(tracing_offload::sink::JsonFile::new(&path)),
    )
    .unwrap();
    tracing::info!("hidden-info");
    tracing::debug!(target: "my_app", "kept-app-debug");
    tracing::warn!("kept-warn");
    log::warn!("kept-log-warn");
    log::info!("hidden-log-info");
    let handle = guard.handle();
    assert_eq!(flushed_offered(&handle), 3);
    let config = handle.config();
    assert_eq!(
        config.capacity.value, 512,
        "the builder read the environment"
    );
    assert_eq!(
        config.sinks,
        ["json"],
        "the builder's sinks, no console added"
    );
    let written = std::fs::read_to_string(&path).unwrap();
    for kept in ["kept-app-debug", "kept-warn", "kept-log-warn"] {
        assert!(written.contains(kept), "{kept} missing from {written}");
    }
    assert!(!written.contains("hidden"), "{written}");
    assert!(matches!(
        tracing_offload::init_from(tracing_offload::Builder::new()),
        Err(BuildError::GlobalSubscriberAlreadySet)
    ));
}

/// A newcomer who wanted `init()`'s `RUST_LOG` filter and `log` bridge with a JSON file (and
/// OTLP) had no way to get them (found by an adversary): `init_from` takes a builder of one's
/// own.
#[test]
fn init_from_takes_the_builders_sinks_and_keeps_the_rest() {
    stderr_of_child_test("child_init_from_a_builder_of_its_own");
}

#[test]
#[ignore = "run in a child process by init_from_a_builder_without_sinks_says_so"]
fn child_init_from_a_builder_without_sinks() {
    let guard = tracing_offload::init_from(tracing_offload::Builder::new()).unwrap();
    tracing::warn!("written nowhere");
    assert_eq!(flushed_offered(&guard.handle()), 1);
}

/// A builder without a sink writes the records nowhere, and `init_from` used to say nothing
/// of it (found by an adversary).
#[test]
fn init_from_a_builder_without_sinks_says_so() {
    let stderr = stderr_of_child_test("child_init_from_a_builder_without_sinks");
    assert_shown_and_hidden(&stderr, &["init_from: the builder has no sink"], &[]);
}

/// Sets `var` to `value`, with no OTLP endpoint and no other exporter variable set.
fn only_exporter_var(var: &str, value: &str) {
    for other in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
        "OTEL_TRACES_EXPORTER",
        "OTEL_LOGS_EXPORTER",
    ] {
        std::env::remove_var(other);
    }
    std::env::set_var(var, value);
}

#[cfg(feature = "otlp")]
#[test]
#[ignore = "run in a child process by an_exporter_list_naming_otlp_adds_the_otlp_sink"]
fn child_with_an_exporter_list() {
    only_exporter_var("OTEL_TRACES_EXPORTER", "otlp, console");
    let guard = tracing_offload::init().unwrap();
    let config = guard.handle().config();
    assert_eq!(config.sinks, ["console", "otlp"], "{:?}", config.warnings);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

/// OpenTelemetry's exporter variables take a comma-separated list; `init()` compared the whole
/// value with `otlp`, so `otlp,console` (the spec's own example) gave no OTLP sink and no
/// warning when no endpoint was set (adversary pass 34).
#[cfg(feature = "otlp")]
#[test]
fn an_exporter_list_naming_otlp_adds_the_otlp_sink() {
    stderr_of_child_test("child_with_an_exporter_list");
}

#[test]
#[ignore = "run in a child process by a_mistyped_exporter_name_is_a_warning"]
fn child_with_a_mistyped_exporter() {
    only_exporter_var("OTEL_LOGS_EXPORTER", "otlpp");
    let guard = tracing_offload::init().unwrap();
    let config = guard.handle().config();
    assert_eq!(config.sinks, ["console"]);
    let warnings: Vec<_> = config
        .warnings
        .iter()
        .map(|w| (w.var.as_str(), w.value.as_str()))
        .collect();
    assert_eq!(warnings, [("OTEL_LOGS_EXPORTER", "otlpp")]);
}

/// A value of an exporter variable that `init()` cannot read was ignored without a word when
/// no endpoint was set (only the OTLP sink read it, and it was not added: adversary pass 34).
#[test]
fn a_mistyped_exporter_name_is_a_warning() {
    let stderr = stderr_of_child_test("child_with_a_mistyped_exporter");
    assert_shown_and_hidden(&stderr, &["ignoring OTEL_LOGS_EXPORTER=\"otlpp\""], &[]);
}
