//! OpenTelemetry defines per-signal forms of the OTLP variables. This crate reads the
//! per-signal endpoints and TLS files; the per-signal headers, timeout, compression and
//! protocol it does not read. Set, they used to be ignored without a word (a vendor's API key
//! in `OTEL_EXPORTER_OTLP_TRACES_HEADERS` was simply not sent): each now gives a warning that
//! names it and says which variable to use, without showing a header's value.
#![cfg(feature = "otlp")]

use tracing_offload::sink::Otlp;

const SECRET: &str = "s3cr3t-token";

#[test]
fn per_signal_variables_that_are_not_read_are_named_in_a_warning() {
    let set = [
        (
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            format!("api-key={SECRET}"),
        ),
        (
            "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
            format!("api-key={SECRET}"),
        ),
        ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2000".to_owned()),
        ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "gzip".to_owned()),
        (
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "http/protobuf".to_owned(),
        ),
    ];
    let lookup = |var: &str| set.iter().find(|(k, _)| *k == var).map(|(_, v)| v.clone());
    let sink = Otlp::from_env_with(&lookup);
    let warnings = sink.warnings();
    for (var, _) in &set {
        let w = warnings
            .iter()
            .find(|w| w.var == *var)
            .unwrap_or_else(|| panic!("no warning names {var}: {warnings:?}"));
        let general = var.replace("_TRACES", "").replace("_LOGS", "");
        assert!(w.to_string().contains(&general), "{w}");
    }
    for w in warnings {
        assert!(!format!("{w} {w:?}").contains(SECRET), "{w:?}");
    }
    // The general forms are read, and give no warning.
    let general = |var: &str| (var == "OTEL_EXPORTER_OTLP_TIMEOUT").then(|| "2000".to_owned());
    assert!(Otlp::from_env_with(&general).warnings().is_empty());
}
