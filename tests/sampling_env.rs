//! Sampling from the environment: OTel's variables and the crate's, valid, invalid and empty
//! values, precedence, the strict variant, and `reload_from_env` at run time.
mod support;

use support::*;
use tracing_offload::{BuildError, Builder, Source, TracesSampler};

fn lookup(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |var| {
        pairs
            .iter()
            .find(|(k, _)| *k == var)
            .map(|(_, v)| v.to_string())
    }
}

fn config(pairs: &'static [(&'static str, &'static str)]) -> tracing_offload::Config {
    let (_layer, guard) = Builder::from_env_with(&lookup(pairs)).build().unwrap();
    guard.handle().config()
}

#[test]
fn every_variable_applies_with_its_source() {
    let c = config(&[
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
        ("OFFLOAD_SAMPLE_RATE", "0.25"),
        ("OFFLOAD_SAMPLE_ALWAYS", " security. , system.shutdown,, "),
        ("OFFLOAD_SAMPLE_ADAPTIVE", "TRUE"),
    ]);
    assert_eq!(
        c.traces_sampler.value,
        TracesSampler::ParentBasedTraceIdRatio(0.1)
    );
    assert_eq!(
        c.traces_sampler.source,
        Source::Env("OTEL_TRACES_SAMPLER".into())
    );
    assert_eq!(c.sample_rate.value, 0.25);
    assert_eq!(c.sample_always.value, ["security.", "system.shutdown"]);
    assert!(c.sample_adaptive.value);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn invalid_values_warn_once_each_and_keep_the_defaults() {
    let c = config(&[
        ("OTEL_TRACES_SAMPLER", "jaeger_remote"),
        ("OFFLOAD_SAMPLE_RATE", "1.5"),
        ("OFFLOAD_SAMPLE_ADAPTIVE", "sometimes"),
    ]);
    assert_eq!(c.traces_sampler.value, TracesSampler::ParentBasedAlwaysOn);
    assert_eq!(c.sample_rate.value, 1.0);
    assert!(!c.sample_adaptive.value);
    let vars: Vec<&str> = c.warnings.iter().map(|w| w.var.as_str()).collect();
    assert_eq!(
        vars,
        [
            "OFFLOAD_SAMPLE_RATE",
            "OTEL_TRACES_SAMPLER",
            "OFFLOAD_SAMPLE_ADAPTIVE"
        ]
    );
    let text = c.warnings[0].to_string();
    assert!(
        text.contains("1.5") && text.contains("the default 1"),
        "{text}"
    );
    let c = config(&[("OFFLOAD_SAMPLE_RATE", "abc")]);
    assert!(c.warnings[0].to_string().contains("abc"));
}

#[test]
fn an_invalid_ratio_argument_uses_one_as_the_spec_says() {
    let c = config(&[
        ("OTEL_TRACES_SAMPLER", "traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "x"),
    ]);
    assert_eq!(c.traces_sampler.value, TracesSampler::TraceIdRatio(1.0));
    assert_eq!(c.warnings.len(), 1);
    assert_eq!(c.warnings[0].var, "OTEL_TRACES_SAMPLER_ARG");
}

#[test]
fn empty_values_are_unset() {
    let c = config(&[("OTEL_TRACES_SAMPLER", ""), ("OFFLOAD_SAMPLE_RATE", " ")]);
    assert_eq!(c.sample_rate.source, Source::Default);
    assert_eq!(c.traces_sampler.source, Source::Default);
    assert!(c.warnings.is_empty());
}

#[test]
fn code_wins_over_env_when_building() {
    let b = Builder::from_env_with(&lookup(&[("OFFLOAD_SAMPLE_RATE", "0.5")])).sample_rate(0.9);
    let (_layer, guard) = b.build().unwrap();
    let c = guard.handle().config();
    assert_eq!(
        (c.sample_rate.value, c.sample_rate.source),
        (0.9, Source::Code)
    );
}

#[test]
fn the_strict_variant_names_the_variable() {
    for (var, value) in [
        ("OFFLOAD_SAMPLE_RATE", "2"),
        ("OTEL_TRACES_SAMPLER", "jaeger_remote"),
        ("OFFLOAD_SAMPLE_ADAPTIVE", "maybe"),
    ] {
        let pairs = [(var, value), ("OTEL_TRACES_SAMPLER_ARG", "0.5")];
        let env = |v: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == v)
                .map(|(_, x)| x.to_string())
        };
        let err = Builder::try_from_env_with(&env).unwrap_err();
        assert!(
            matches!(&err, BuildError::InvalidEnv(w) if w.len() == 1 && w[0].var == var),
            "{err}"
        );
        assert!(err.to_string().contains(value), "{err}");
    }
    let env = |v: &str| (v == "OFFLOAD_SAMPLE_RATE").then(|| "0.5".to_owned());
    assert!(Builder::try_from_env_with(&env).is_ok());
}

#[test]
fn reload_warnings_name_the_value_kept_and_invalid_values_change_nothing() {
    let (_layer, guard) = Builder::new().sample_rate(0.3).build().unwrap();
    let handle = guard.handle();
    let warnings = handle.reload_from_env_with(&lookup(&[
        ("OFFLOAD_SAMPLE_RATE", "-1"),
        ("OTEL_TRACES_SAMPLER", "sometimes"),
    ]));
    let used: Vec<&str> = warnings.iter().map(|w| w.used.as_str()).collect();
    assert_eq!(
        used,
        [
            "the current value 0.3",
            "the current value parentbased_always_on"
        ]
    );
    let c = handle.config();
    assert_eq!(
        (c.sample_rate.value, c.sample_rate.source),
        (0.3, Source::Code)
    );
    assert_eq!(handle.stats().sampling.unwrap().configured_rate, 0.3);
}

#[test]
fn reload_from_env_changes_later_events() {
    let sink = Collect::new("collect");
    let (layer, guard) = Builder::new()
        .sample_rate(1.0)
        .sink(sink.clone())
        .build()
        .unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        tracing::info!("kept");
        let warnings = handle.reload_from_env_with(&lookup(&[
            ("OFFLOAD_SAMPLE_RATE", "0"),
            ("OTEL_TRACES_SAMPLER", "always_off"),
            ("OFFLOAD_SAMPLE_ADAPTIVE", "maybe"),
        ]));
        assert_eq!(warnings.len(), 1);
        tracing::info!("not kept");
        drop(tracing::info_span!("not recorded").entered());
        let c = handle.config();
        assert_eq!(
            c.sample_rate.source,
            Source::Env("OFFLOAD_SAMPLE_RATE".into())
        );
        assert_eq!(c.traces_sampler.value, TracesSampler::AlwaysOff);
        assert_eq!(c.warnings.len(), 1);
        // Reloading with nothing set leaves everything as it is.
        assert!(handle.reload_from_env_with(&lookup(&[])).is_empty());
        tracing::info!("still not kept");
    });
    guard.shutdown(DEADLINE).unwrap();
    assert_eq!(sink.count(), 1);
    assert_eq!(guard.handle().stats().sampled_out, 3);
}

#[test]
fn a_reload_with_a_bad_or_missing_sampler_argument_keeps_the_ratio_in_force() {
    let sink = Collect::new("collect");
    let (layer, guard) = Builder::new()
        .traces_sampler(TracesSampler::TraceIdRatio(0.05))
        .sink(sink.clone())
        .build()
        .unwrap();
    let handle = guard.handle();
    let in_force = || handle.stats().sampling.unwrap().traces_sampler;

    // A typo: before, the ratio became 1.0 and the warning claimed "the current value".
    let warnings = handle.reload_from_env_with(&lookup(&[
        ("OTEL_TRACES_SAMPLER", "traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.o5"),
    ]));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(
        (warnings[0].var.as_str(), warnings[0].value.as_str()),
        ("OTEL_TRACES_SAMPLER_ARG", "0.o5")
    );
    assert_eq!(warnings[0].used, "the ratio in force 0.05");
    assert_eq!(in_force(), TracesSampler::TraceIdRatio(0.05));
    assert_eq!(
        handle.config().traces_sampler.value,
        TracesSampler::TraceIdRatio(0.05)
    );

    // The argument unset: before, the ratio silently became 1.0.
    let warnings = handle.reload_from_env_with(&lookup(&[(
        "OTEL_TRACES_SAMPLER",
        "parentbased_traceidratio",
    )]));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].var, "OTEL_TRACES_SAMPLER_ARG");
    assert_eq!(warnings[0].used, "the ratio in force 0.05");
    assert_eq!(in_force(), TracesSampler::ParentBasedTraceIdRatio(0.05));

    // Root spans after the reloads are sampled at 5 %, not 100 %.
    with_layer(layer, || {
        for i in 0..2_000 {
            drop(tracing::info_span!("request", i).entered());
        }
    });
    guard.shutdown(DEADLINE).unwrap();
    let recorded = sink.count();
    assert!(
        recorded < 500,
        "{recorded} of 2000 spans recorded at ratio 0.05"
    );
}

#[test]
fn a_reload_with_only_the_sampler_argument_retunes_the_ratio_in_force() {
    let (_layer, guard) = Builder::new()
        .traces_sampler(TracesSampler::ParentBasedTraceIdRatio(0.05))
        .build()
        .unwrap();
    let handle = guard.handle();
    let warnings = handle.reload_from_env_with(&lookup(&[("OTEL_TRACES_SAMPLER_ARG", "0.2")]));
    assert!(warnings.is_empty(), "{warnings:?}");
    let c = handle.config();
    assert_eq!(
        c.traces_sampler.value,
        TracesSampler::ParentBasedTraceIdRatio(0.2)
    );
    assert_eq!(
        c.traces_sampler.source,
        Source::Env("OTEL_TRACES_SAMPLER_ARG".into())
    );
    // A typo alone changes nothing and says what stays.
    let warnings = handle.reload_from_env_with(&lookup(&[("OTEL_TRACES_SAMPLER_ARG", "2O%")]));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].used, "the ratio in force 0.2");
    assert_eq!(
        handle.stats().sampling.unwrap().traces_sampler,
        TracesSampler::ParentBasedTraceIdRatio(0.2)
    );
}

/// A reload applies the sampling variables only; the layer's other variables are read when the
/// pipeline is built. One set to a value other than the one in force is a warning that names
/// it and the value kept, and changes nothing; one set to the value in force is no warning (a
/// reload on a timer stays quiet). They used to be dropped without a word, while the README
/// said a reload applied every variable that is set (found by an adversary).
#[test]
fn a_reload_warns_about_build_time_variables_it_does_not_apply() {
    let built_with: &'static [(&'static str, &'static str)] = &[
        ("OFFLOAD_CAPACITY", "1024"),
        ("OFFLOAD_BACKPRESSURE", "drop_oldest"),
    ];
    let (_layer, guard) = Builder::from_env_with(&lookup(built_with)).build().unwrap();
    let handle = guard.handle();
    assert!(handle.reload_from_env_with(&lookup(built_with)).is_empty());

    let warnings = handle.reload_from_env_with(&lookup(&[
        ("OFFLOAD_BACKPRESSURE", "block"),
        ("OFFLOAD_CAPACITY", "128"),
        ("OTEL_SDK_DISABLED", "true"),
        ("OFFLOAD_SAMPLE_RATE", "0.5"),
    ]));
    let mut vars: Vec<&str> = warnings.iter().map(|w| w.var.as_str()).collect();
    vars.sort_unstable();
    assert_eq!(
        vars,
        [
            "OFFLOAD_BACKPRESSURE",
            "OFFLOAD_CAPACITY",
            "OTEL_SDK_DISABLED"
        ],
        "{warnings:?}"
    );
    let capacity = warnings
        .iter()
        .find(|w| w.var == "OFFLOAD_CAPACITY")
        .unwrap()
        .to_string();
    assert!(
        capacity.contains("\"128\"") && capacity.contains("restart") && capacity.contains("1024"),
        "{capacity}"
    );
    let c = handle.config();
    assert_eq!(c.sample_rate.value, 0.5, "the sampling variable applied");
    assert_eq!(
        (c.capacity.value, c.backpressure.value.as_str()),
        (1024, "drop_oldest")
    );
    assert!(c.enabled.value);
    assert_eq!(handle.stats().capacity, 1024);
    assert_eq!(
        c.warnings.len(),
        3,
        "shown in the config too: {:?}",
        c.warnings
    );
}

/// No warning where the environment would not apply at build time either: a value set in code
/// (code wins; a restart would change nothing), and a pipeline built without reading the
/// environment (`OffloadLayer::builder()`). They used to be told "expected a restart" on every
/// reload (found by an adversary).
#[test]
fn a_reload_says_nothing_of_variables_the_build_would_not_take_either() {
    let env: &'static [(&'static str, &'static str)] = &[
        ("OFFLOAD_CAPACITY", "1024"),
        ("OFFLOAD_BACKPRESSURE", "block"),
        ("OFFLOAD_BLOCK_TIMEOUT_MS", "700"),
    ];
    let code_set = Builder::from_env_with(&lookup(env))
        .capacity(64)
        .backpressure(tracing_offload::Backpressure::DropNewest);
    let not_from_env = Builder::new();
    for builder in [code_set, not_from_env] {
        let (_layer, guard) = builder.build().unwrap();
        let handle = guard.handle();
        for _ in 0..2 {
            let warnings = handle.reload_from_env_with(&lookup(env));
            assert!(warnings.is_empty(), "{warnings:?}");
        }
        assert!(handle.config().warnings.is_empty());
    }
}

/// An invalid build-time variable is a warning at a reload too (it was not, while a valid
/// different value was), and an address written differently is the same address; the block
/// timeout in force under another policy is none (found by an adversary).
#[cfg(feature = "admin")] // without it, `OFFLOAD_ADMIN_ADDR` is itself a warning
#[test]
fn a_reload_warns_about_invalid_build_time_variables_and_reads_addresses_as_addresses() {
    let built_with: &'static [(&'static str, &'static str)] =
        &[("OFFLOAD_ADMIN_ADDR", "127.0.0.1:0")];
    let (_layer, guard) = Builder::from_env_with(&lookup(built_with)).build().unwrap();
    let handle = guard.handle();
    for same in ["127.0.0.1:00", " 127.0.0.1:0 "] {
        let pairs = [("OFFLOAD_ADMIN_ADDR", same)];
        let env = |var: &str| (var == pairs[0].0).then(|| pairs[0].1.to_owned());
        let warnings = handle.reload_from_env_with(&env);
        assert!(warnings.is_empty(), "{same:?}: {warnings:?}");
    }
    let warnings = handle.reload_from_env_with(&lookup(&[
        ("OFFLOAD_CAPACITY", "banana"),
        ("OTEL_SPAN_EVENT_COUNT_LIMIT", "-1"),
        ("OFFLOAD_BACKPRESSURE", "block"),
        ("OFFLOAD_BLOCK_TIMEOUT_MS", "700"),
    ]));
    let text = |var: &str| {
        warnings
            .iter()
            .find(|w| w.var == var)
            .unwrap_or_else(|| panic!("no warning for {var}: {warnings:?}"))
            .to_string()
    };
    assert_eq!(warnings.len(), 4, "{warnings:?}");
    assert!(
        text("OFFLOAD_CAPACITY").contains("\"banana\"")
            && text("OFFLOAD_CAPACITY").contains("the value in force, 65536"),
        "{}",
        text("OFFLOAD_CAPACITY")
    );
    assert!(text("OTEL_SPAN_EVENT_COUNT_LIMIT").contains("\"-1\""));
    assert!(
        text("OFFLOAD_BLOCK_TIMEOUT_MS").contains("none (the back-pressure is drop_newest)"),
        "{}",
        text("OFFLOAD_BLOCK_TIMEOUT_MS")
    );
}

/// An invalid `OTEL_TRACES_SAMPLER_ARG` with a sampler that takes no argument is said to change
/// nothing: it was ignored without a word (adversary pass 53). A valid one is ignored quietly,
/// as OTel says.
#[test]
fn an_invalid_sampler_argument_the_sampler_does_not_take_is_said_to_change_nothing() {
    assert!(config(&[("OTEL_TRACES_SAMPLER_ARG", "0.25")])
        .warnings
        .is_empty());
    for pairs in [
        &[("OTEL_TRACES_SAMPLER_ARG", "abc")][..],
        &[
            ("OTEL_TRACES_SAMPLER", "always_on"),
            ("OTEL_TRACES_SAMPLER_ARG", "abc"),
        ],
    ] {
        let c = config(pairs);
        assert_eq!(c.warnings.len(), 1, "{pairs:?}: {:#?}", c.warnings);
        assert_eq!(c.warnings[0].var, "OTEL_TRACES_SAMPLER_ARG");
        assert!(
            c.warnings[0].used.contains("takes no argument"),
            "{:#?}",
            c.warnings
        );
    }
}

/// A tail sampling value of the documented form without a criterion is refused with the
/// reason, not only the form it matches (adversary pass 53).
#[test]
fn a_tail_sampling_value_without_a_criterion_says_why_it_is_refused() {
    let c = config(&[("OFFLOAD_TAIL_SAMPLING", "wait:5s")]);
    assert_eq!(c.warnings.len(), 1, "{:#?}", c.warnings);
    let expected = &c.warnings[0].expected;
    assert!(
        expected.contains("errors, slow: or ratio:") || expected.contains("criterion"),
        "{expected}"
    );
}
