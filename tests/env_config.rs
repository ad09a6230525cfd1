//! The core's environment variables: valid, invalid, empty, precedence, strict mode.
use tracing_offload::{BuildError, Builder, Source};

fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |var| {
        pairs
            .iter()
            .find(|(k, _)| *k == var)
            .map(|(_, v)| v.to_string())
    }
}

fn config_of(b: Builder) -> tracing_offload::Config {
    let (_layer, guard) = b.build().unwrap();
    guard.handle().config()
}

#[test]
fn valid_values_apply_and_say_where_they_came_from() {
    let c = config_of(Builder::from_env_with(&env(&[
        ("OFFLOAD_CAPACITY", "1024"),
        ("OFFLOAD_BACKPRESSURE", "block"),
        ("OFFLOAD_BLOCK_TIMEOUT_MS", "25"),
    ])));
    assert_eq!(c.capacity.value, 1024);
    assert_eq!(c.capacity.source, Source::Env("OFFLOAD_CAPACITY".into()));
    assert_eq!(c.backpressure.value, "block");
    assert_eq!(c.block_timeout_ms.value, 25);
    assert!(c.warnings.is_empty());
}

#[test]
fn invalid_values_warn_and_fall_back_to_the_default() {
    let c = config_of(Builder::from_env_with(&env(&[
        ("OFFLOAD_CAPACITY", "abc"),
        ("OFFLOAD_BACKPRESSURE", "sometimes"),
        ("OTEL_SDK_DISABLED", "yes"),
    ])));
    assert_eq!(c.capacity.value, tracing_offload::DEFAULT_CAPACITY);
    assert_eq!(c.capacity.source, Source::Default);
    assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
    let text = c.warnings[1].to_string();
    assert!(
        text.contains("OFFLOAD_CAPACITY") && text.contains("abc") && text.contains("65536"),
        "{text}"
    );
}

/// The block timeout is `block`'s: set without `OFFLOAD_BACKPRESSURE=block`, it changes
/// nothing. It used to be taken silently (and shown in `/config` as in force from the
/// environment) while the pipeline dropped at once; it is now a warning, and an error for the
/// strict reader (found by an adversary).
#[test]
fn a_block_timeout_without_block_back_pressure_is_a_warning() {
    for policy in [None, Some("drop_oldest")] {
        let pairs: Vec<(&str, &str)> = [("OFFLOAD_BLOCK_TIMEOUT_MS", "700")]
            .into_iter()
            .chain(policy.map(|p| ("OFFLOAD_BACKPRESSURE", p)))
            .collect();
        let lookup = |var: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == var)
                .map(|(_, v)| v.to_string())
        };
        let c = config_of(Builder::from_env_with(&lookup));
        assert_eq!(c.backpressure.value, policy.unwrap_or("drop_newest"));
        assert_eq!(c.block_timeout_ms.source, Source::Default, "{c:?}");
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        let text = c.warnings[0].to_string();
        assert!(
            text.contains("OFFLOAD_BLOCK_TIMEOUT_MS")
                && text.contains("700")
                && text.contains("OFFLOAD_BACKPRESSURE=block"),
            "{text}"
        );
        let err = Builder::try_from_env_with(&lookup).unwrap_err();
        assert!(
            matches!(&err, BuildError::InvalidEnv(w) if w.len() == 1),
            "{err}"
        );
    }
}

/// A policy set in code brings its own timeout, or none: the environment's block timeout is not
/// shown as in force under a policy that has none (it was, with `drop_newest` from code and
/// 700 ms "from the environment"; found by an adversary).
#[test]
fn a_policy_set_in_code_leaves_no_block_timeout_from_the_environment() {
    let pairs = env(&[
        ("OFFLOAD_BACKPRESSURE", "block"),
        ("OFFLOAD_BLOCK_TIMEOUT_MS", "700"),
    ]);
    let c = config_of(
        Builder::from_env_with(&pairs).backpressure(tracing_offload::Backpressure::DropNewest),
    );
    assert_eq!(c.backpressure.value, "drop_newest");
    assert_eq!(c.block_timeout_ms.source, Source::Default, "{c:?}");
    let c = config_of(Builder::from_env_with(&pairs).backpressure(
        tracing_offload::Backpressure::Block {
            timeout: std::time::Duration::from_millis(1_500),
        },
    ));
    assert_eq!(
        (c.block_timeout_ms.value, c.block_timeout_ms.source),
        (1_500, Source::Code)
    );
    // The warning of a timeout given without the policy does not guess what code sets later.
    let alone = env(&[("OFFLOAD_BLOCK_TIMEOUT_MS", "200")]);
    let c = config_of(Builder::from_env_with(&alone).backpressure(
        tracing_offload::Backpressure::Block {
            timeout: std::time::Duration::from_millis(1_500),
        },
    ));
    let text = c.warnings[0].to_string();
    assert!(
        text.contains("OFFLOAD_BACKPRESSURE is unset") && !text.contains("drop_newest"),
        "{text}"
    );
}

#[test]
fn empty_values_count_as_unset() {
    let c = config_of(Builder::from_env_with(&env(&[("OFFLOAD_CAPACITY", "")])));
    assert_eq!(c.capacity.source, Source::Default);
    assert!(c.warnings.is_empty());
}

#[test]
fn code_wins_over_the_environment() {
    let c = config_of(Builder::from_env_with(&env(&[("OFFLOAD_CAPACITY", "1024")])).capacity(8));
    assert_eq!(c.capacity.value, 8);
    assert_eq!(c.capacity.source, Source::Code);
}

#[test]
fn the_strict_variant_is_an_error() {
    std::env::set_var("OFFLOAD_CAPACITY", "-5");
    let err = Builder::try_from_env().unwrap_err();
    std::env::remove_var("OFFLOAD_CAPACITY");
    assert!(matches!(err, BuildError::InvalidEnv(ref w) if w[0].var == "OFFLOAD_CAPACITY"));
    assert!(err.to_string().contains("-5"));
}

#[test]
fn an_invalid_backpressure_warning_reads_as_one_sentence() {
    let c = config_of(Builder::from_env_with(&env(&[(
        "OFFLOAD_BACKPRESSURE",
        "fast",
    )])));
    assert_eq!(
        c.warnings[0].to_string(),
        "ignoring OFFLOAD_BACKPRESSURE=\"fast\": expected drop_oldest, drop_newest or block; \
         using the default drop_newest"
    );
    let err = "fast".parse::<tracing_offload::Backpressure>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown back-pressure policy \"fast\": use drop_oldest, drop_newest or block"
    );
}

/// The configuration shows the sink stall time in force: under `Block`, at most half the
/// callers' timeout, as the README's table says (it showed the one set: adversary pass 53).
#[test]
fn the_stall_time_shown_is_the_one_in_force() {
    let block = |timeout| tracing_offload::Backpressure::Block { timeout };
    for (policy, shown) in [
        (block(std::time::Duration::from_secs(1)), 500),
        (block(std::time::Duration::from_millis(100)), 50),
        (block(std::time::Duration::from_secs(60)), 1_000),
        (tracing_offload::Backpressure::DropNewest, 1_000),
    ] {
        let (_layer, guard) = tracing_offload::OffloadLayer::builder()
            .backpressure(policy)
            .build()
            .unwrap();
        let config = guard.handle().config();
        assert_eq!(config.sink_stall_after_ms.value, shown, "{policy:?}");
    }
}

/// Prefixes set in code replace `OFFLOAD_SAMPLE_ALWAYS`'s, as code wins over the environment:
/// they were added to them, and the whole list shown as set in code (adversary pass 53).
#[test]
fn sample_always_in_code_replaces_the_environments_list() {
    let c = config_of(
        Builder::from_env_with(&env(&[("OFFLOAD_SAMPLE_ALWAYS", "shop")]))
            .sample_always("db")
            .sample_always("audit"),
    );
    assert_eq!(c.sample_always.value, ["db", "audit"]);
    assert_eq!(c.sample_always.source, Source::Code);
    let c = config_of(Builder::from_env_with(&env(&[(
        "OFFLOAD_SAMPLE_ALWAYS",
        "shop",
    )])));
    assert_eq!(c.sample_always.value, ["shop"]);
}

/// A capacity of 0 is outside its range as any other count is, and the error says the range
/// (it was an error of its own, whose hint asked for a power of two: adversary pass 53).
#[test]
fn a_capacity_of_zero_is_out_of_range() {
    let err = Builder::new().capacity(0).build().map(drop).unwrap_err();
    assert!(
        matches!(&err, BuildError::OutOfRange { setting, .. } if setting.contains("capacity")),
        "{err:?}"
    );
    assert!(err.to_string().contains("1 to 16777216"), "{err}");
}

/// A stall time halved from `Block`'s timeout shows in whole milliseconds up (500 µs showed as
/// 0) and comes from where the policy came (it said `Default`: adversary pass 55).
#[test]
fn a_halved_stall_time_shows_rounded_up_and_from_the_policy() {
    let c = config_of(
        Builder::new().backpressure(tracing_offload::Backpressure::Block {
            timeout: std::time::Duration::from_millis(1),
        }),
    );
    assert_eq!(c.sink_stall_after_ms.value, 1);
    assert_eq!(c.sink_stall_after_ms.source, Source::Code);
    let c = config_of(Builder::from_env_with(&env(&[
        ("OFFLOAD_BACKPRESSURE", "block"),
        ("OFFLOAD_BLOCK_TIMEOUT_MS", "600"),
    ])));
    assert_eq!(c.sink_stall_after_ms.value, 300);
    assert_eq!(
        c.sink_stall_after_ms.source,
        Source::Env("OFFLOAD_BACKPRESSURE".into())
    );
}

/// The strict reader's error says what is wrong with each variable, and not what the lenient
/// reader would use instead: nothing is used, the build is refused ("using the default" in the
/// error misled; adversary pass 53).
#[test]
fn the_strict_error_names_the_value_and_what_was_expected_without_a_fallback() {
    let pairs = env(&[("OFFLOAD_SAMPLE_RATE", "1.5"), ("OFFLOAD_CAPACITY", "zero")]);
    let err = Builder::try_from_env_with(&pairs).unwrap_err();
    let text = err.to_string();
    for part in [
        "OFFLOAD_SAMPLE_RATE=\"1.5\"",
        "OFFLOAD_CAPACITY=\"zero\"",
        "expected",
    ] {
        assert!(text.contains(part), "{part:?} missing from: {text}");
    }
    for misleading in ["using", "ignoring"] {
        assert!(!text.contains(misleading), "{misleading:?} in: {text}");
    }
    let BuildError::InvalidEnv(warnings) = err else {
        panic!("{err:?}")
    };
    let strict = tracing_offload::InvalidEnv(warnings).to_string();
    assert_eq!(strict, text);
}
