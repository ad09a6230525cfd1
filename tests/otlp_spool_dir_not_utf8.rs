//! A spool directory or a TLS file whose name is not UTF-8 (a Unix path may hold any bytes):
//! `build()` panicked showing the OTLP sink's settings (`serde_json` cannot write such a path).
//! The settings show it with U+FFFD in place of the bytes that are not UTF-8, and the sink
//! works. (Found reading the code after adversary pass 65.)
#![cfg(all(feature = "otlp", unix))]
mod support;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use support::collector::free_port;
use support::*;
use tracing_offload::OffloadLayer;

#[test]
fn a_spool_directory_whose_name_is_not_utf8_is_shown_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join(OsStr::from_bytes(b"spool-\xff"));
    let sink = spooling_sink(
        format!("http://127.0.0.1:{}", free_port()),
        "offload-spool-not-utf8",
        &spool,
    );
    let (layer, guard) = OffloadLayer::builder().sink(sink).build().unwrap();
    let handle = guard.handle();
    let shown = handle.config().sink_settings["otlp"]["spool_dir"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(shown.ends_with("spool-\u{fffd}"), "{shown}");
    work_spans(layer, 3);
    handle.flush(DEADLINE).unwrap();
    assert_eq!(handle.stats().sink("otlp").unwrap().spooled, 3);
}

#[cfg(feature = "tls")]
#[test]
fn a_tls_file_whose_name_is_not_utf8_is_shown_not_a_panic() {
    use tracing_offload::sink::otlp::Tls;
    let pki = support::tls::TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join(OsStr::from_bytes(b"ca-\xff.pem"));
    std::fs::copy(&pki.ca, &ca).unwrap();
    let sink = tracing_offload::sink::Otlp::new()
        .endpoint(format!("https://127.0.0.1:{}", free_port()))
        .tls(Tls::new().certificate(&ca));
    let (_layer, guard) = OffloadLayer::builder().sink(sink).build().unwrap();
    let settings = guard.handle().config().sink_settings["otlp"].to_string();
    assert!(settings.contains("ca-\u{fffd}.pem"), "{settings}");
}
