//! The spool's settings: from the environment (a budget out of its documented range is a
//! warning and the default), shown in the effective configuration, and refused with a clear
//! error when the directory cannot be used — a file in its place, or a directory another sink
//! already spools into.
#![cfg(feature = "otlp")]
mod support;

use support::error_chain;
use tracing_offload::sink::otlp::DEFAULT_SPOOL_MAX_BYTES;
use tracing_offload::sink::Otlp;
use tracing_offload::{BuildError, OffloadLayer};

#[test]
fn the_spool_comes_from_the_environment_and_shows_in_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool").display().to_string();
    let vars = [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://127.0.0.1:9".to_owned(),
        ),
        ("OFFLOAD_OTLP_SPOOL_DIR", spool_dir.clone()),
        ("OFFLOAD_OTLP_SPOOL_MAX_BYTES", "1024".to_owned()),
    ];
    let lookup = |v: &str| vars.iter().find(|(k, _)| *k == v).map(|(_, x)| x.clone());
    let sink = Otlp::from_env_with(&lookup);
    let warnings: Vec<String> = sink.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("OFFLOAD_OTLP_SPOOL_MAX_BYTES")
            && warnings[0].contains("from 65536 to 1099511627776")
            && warnings[0].contains(&format!("the default {DEFAULT_SPOOL_MAX_BYTES}")),
        "{warnings:?}"
    );
    let (_layer, guard) = OffloadLayer::builder().sink(sink).build().unwrap();
    let config = guard.handle().config();
    let settings = &config.sink_settings["otlp"];
    assert_eq!(settings["spool_dir"], spool_dir.as_str());
    assert_eq!(settings["spool_max_bytes"], DEFAULT_SPOOL_MAX_BYTES);
    assert_eq!(settings["spool_after_ms"], 250);
    assert!(
        std::path::Path::new(&spool_dir).is_dir(),
        "created at build"
    );
    let spool = guard.handle().stats().sink("otlp").unwrap().spool.clone();
    assert_eq!(spool.map(|s| s.records), Some(0));
    guard.shutdown(support::DEADLINE).unwrap();
}

#[track_caller]
fn sink_error(result: Result<impl Sized, BuildError>) -> String {
    match result {
        Err(e @ BuildError::Sink { .. }) => error_chain(&e),
        Err(other) => panic!("expected a sink error, got {other}"),
        Ok(_) => panic!("expected a sink error, got a pipeline"),
    }
}

#[test]
fn an_unusable_spool_directory_fails_the_build_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, "x").unwrap();
    let err = sink_error(
        OffloadLayer::builder()
            .sink(Otlp::new().spool(&file))
            .build(),
    );
    assert!(
        err.contains(&format!(
            "cannot open the OTLP spool directory {}",
            file.display()
        )),
        "{err}"
    );

    // One directory per sink: the second is refused, the first keeps it.
    let shared = dir.path().join("shared");
    let err = sink_error(
        OffloadLayer::builder()
            .sink(Otlp::new().spool(&shared))
            .sink(Otlp::new().name("otlp-2").spool(&shared))
            .build(),
    );
    assert!(err.contains("sink `otlp-2` could not start"), "{err}");
    assert!(
        err.contains("another sink or process is using this spool directory"),
        "{err}"
    );
}

/// A spool budget outside its range, given in code, fails the build with an error that says
/// the range; it used to be clamped without a word.
#[test]
fn a_spool_budget_out_of_range_fails_the_build() {
    use tracing_offload::sink::otlp::{MAX_SPOOL_MAX_BYTES, MIN_SPOOL_MAX_BYTES};
    for bytes in [
        0,
        MIN_SPOOL_MAX_BYTES - 1,
        MAX_SPOOL_MAX_BYTES + 1,
        u64::MAX,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let sink = Otlp::new().spool(dir.path()).spool_max_bytes(bytes);
        let error = OffloadLayer::builder()
            .sink(sink)
            .build()
            .err()
            .unwrap_or_else(|| panic!("{bytes} accepted"));
        let text = error_chain(&error);
        assert!(text.contains("out of range"), "{bytes}: {text}");
        assert!(text.contains(&MIN_SPOOL_MAX_BYTES.to_string()), "{text}");
    }
}
