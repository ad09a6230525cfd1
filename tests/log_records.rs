//! Records from `log`-based crates, through the `tracing-log` bridge, are normalised in every
//! sink: their real target, module, file and line, no `log.*` fields; and the critical targets
//! and the sampling whitelist match their real target.
mod support;

use support::*;
use tracing_offload::{sink, LogLevel, OffloadLayer};

#[test]
fn log_records_have_their_real_target_and_source_everywhere() {
    tracing_log::LogTracer::init().expect("the only logger of this test binary");
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
