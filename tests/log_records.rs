//! Records from `log`-based crates, through the `tracing-log` bridge, are normalised in every
//! sink: their real target, module, file and line, no `log.*` fields; and the critical targets
//! and the sampling whitelist match their real target.
mod support;

use support::*;
use tracing_offload::{sink, LogLevel, OffloadLayer};

/// Installs the `log` bridge, once for this test binary.
fn bridge() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| tracing_log::LogTracer::init().expect("the only logger of this binary"));
}

#[test]
fn log_records_have_their_real_target_and_source_everywhere() {
    bridge();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.jsonl");
    let collect = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder()
        .sample_rate(0.0)
        .sample_always("payments")
        .critical_target("payments::fraud")
        .sink(sink::JsonFile::new(&path))
        .sink(collect.clone())
        .build()
        .unwrap();
    let line = line!() + 2; // the first `log::info!` below
    with_layer(layer, || {
        log::info!(target: "payments", "card accepted");
        log::error!(target: "payments::fraud", "card stolen");
        log::info!(target: "other", "sampled out at rate 0");
    });
    guard.shutdown(DEADLINE).unwrap();
    let events = collect.events();
    assert_eq!(
        events.len(),
        2,
        "the whitelist matched the real targets: {events:#?}"
    );
    assert_eq!(events[0].target(), "payments");
    assert_eq!(events[0].line(), Some(line));
    assert_eq!(events[0].file(), Some(file!()));
    assert_eq!(events[0].module_path(), Some(module_path!()));
    assert!(events[0].is_from_log());
    assert_eq!(events[0].fields().len(), 0, "{:?}", events[0].fields());
    assert_eq!(events[1].level(), LogLevel::Critical);
    let text = std::fs::read_to_string(&path).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["target"], "payments");
    assert_eq!(first["message"], "card accepted");
    assert!(!text.contains("log.target"), "{text}");
}

/// A `log` record's target, module and file are names, not values: `max_field_len` cut them
/// (`payments::fraud::detector` written as `payments`, with no mark: another target that looks
/// valid, which the whitelist and the critical targets then matched; adversary pass 50).
#[test]
fn the_value_cap_does_not_cut_a_log_records_target() {
    bridge();
    let collect = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder()
        .max_field_len(8)
        .critical_target("payments::fraud::detector")
        .sink(collect.clone())
        .build()
        .unwrap();
    with_layer(layer, || {
        log::error!(target: "payments::fraud::detector", "card stolen");
    });
    guard.shutdown(DEADLINE).unwrap();
    let events = collect.events();
    assert_eq!(events[0].target(), "payments::fraud::detector");
    assert_eq!(events[0].module_path(), Some(module_path!()));
    assert_eq!(events[0].file(), Some(file!()));
    assert_eq!(events[0].level(), LogLevel::Critical);
}

/// Only the bridge's own records are `log` records: a `tracing` event with a field named
/// `log.target` took that field's value (which may come from user input) for its target, and
/// with it the whitelist's and the critical targets' decisions (adversary pass 50).
#[test]
fn a_field_named_log_target_does_not_make_an_event_a_log_record() {
    let collect = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder()
        .sample_rate(0.0)
        .sample_always("elsewhere")
        .sink(collect.clone())
        .build()
        .unwrap();
    with_layer(layer, || {
        tracing::info!(log.target = "elsewhere", user = 1, "spoof");
        tracing::info!(target: "elsewhere", "kept by the whitelist");
    });
    guard.shutdown(DEADLINE).unwrap();
    let events = collect.events();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].target(), "elsewhere");
    assert!(!events[0].is_from_log());
}

/// The bound on a `log` record's names is its own, whatever `max_field_len` is: under the
/// default (8 KiB), a 3 000-byte target was kept whole and not counted (adversary pass 52).
#[test]
fn a_log_records_target_is_cut_at_1_kib_whatever_max_field_len_is() {
    bridge();
    let collect = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder()
        .sink(collect.clone())
        .build()
        .unwrap();
    let handle = guard.handle();
    let target = "t::".repeat(1000);
    with_layer(layer, || {
        log::warn!(target: &target, "long target");
    });
    guard.shutdown(DEADLINE).unwrap();
    let events = collect.events();
    assert_eq!(events[0].target(), &target[..1024]);
    assert_eq!(handle.stats().truncated_values, 1);
}
