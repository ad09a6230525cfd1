//! Every error shows each cause once when printed as a chain (`anyhow`'s `{:#}`, `eyre`): a
//! message includes an inner error or `source()` returns it, never both (Rust API guidelines).
mod support;

use std::error::Error;

use support::*;
use tracing_offload::sink::SinkError;
use tracing_offload::{sink, BuildError, Builder, FlushError, OffloadLayer};

/// Asserts that no message in `err`'s chain repeats the message of the cause below it, and
/// returns the chain as text.
#[track_caller]
fn assert_each_cause_once(err: &dyn Error) -> String {
    let mut outer = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        assert!(
            !outer.contains(&text),
            "`{outer}` repeats its source `{text}`; chain: {}",
            error_chain(err)
        );
        outer = text;
        source = inner.source();
    }
    error_chain(err)
}

/// The message of the last error in the chain (the OS error, for I/O failures).
fn root_cause(err: &dyn Error) -> String {
    let mut last = err;
    while let Some(inner) = last.source() {
        last = inner;
    }
    last.to_string()
}

#[test]
fn a_sink_that_cannot_open_its_file_names_the_os_error_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let err = OffloadLayer::builder()
        .sink(sink::JsonFile::new(file.join("app.jsonl")))
        .build()
        .unwrap_err();
    let chain = assert_each_cause_once(&err);
    // The OS error's text, e.g. "Not a directory (os error 20)", appears exactly once.
    let os = root_cause(&err);
    assert_ne!(os, chain);
    assert_eq!(chain.matches(&os).count(), 1, "{chain}");
    assert!(
        chain.starts_with("sink `json` could not start: "),
        "{chain}"
    );
    assert!(chain.contains("app.jsonl"), "{chain}");
}

#[test]
fn every_build_error_variant_shows_each_cause_once() {
    let real = [
        OffloadLayer::builder().capacity(0).build().unwrap_err(),
        OffloadLayer::builder()
            .sink(Collect::new("same"))
            .sink(Collect::new("same"))
            .build()
            .unwrap_err(),
        Builder::try_from_env_with(&|v| (v == "OFFLOAD_CAPACITY").then(|| "-5".into()))
            .unwrap_err(),
        OffloadLayer::builder()
            .sample_rate(1.5)
            .build()
            .unwrap_err(),
    ];
    for err in &real {
        assert_each_cause_once(err);
    }
    // The sampling error names the value in its message and returns no source.
    assert!(real[3].to_string().contains("1.5") && real[3].source().is_none());
    // The variants that cannot be provoked on demand.
    let spawn = BuildError::Spawn {
        thread: "offload-drain".into(),
        source: std::io::ErrorKind::OutOfMemory.into(),
    };
    let chain = assert_each_cause_once(&spawn);
    assert_eq!(chain.matches(&root_cause(&spawn)).count(), 1, "{chain}");
    assert!(chain.contains("`offload-drain`"), "{chain}");
    assert_each_cause_once(&BuildError::GlobalSubscriberAlreadySet);
    let sink = BuildError::Sink {
        sink: "s".into(),
        source: SinkError::io("opening x", std::io::ErrorKind::NotFound.into()),
    };
    let chain = assert_each_cause_once(&sink);
    assert_eq!(
        chain,
        format!("sink `s` could not start: opening x: {}", root_cause(&sink))
    );
}

#[test]
fn sink_and_flush_errors_show_each_cause_once() {
    for err in [
        SinkError::io("writing", std::io::ErrorKind::BrokenPipe.into()),
        SinkError::Retryable("collector unreachable".into()),
        SinkError::Fatal("bad credentials".into()),
    ] {
        assert_each_cause_once(&err);
    }
    let timeout = FlushError::Timeout {
        pending: Default::default(),
    };
    assert_each_cause_once(&timeout);
}

#[cfg(feature = "admin")]
#[test]
fn an_admin_address_in_use_names_the_address_and_the_os_error_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = OffloadLayer::builder()
        .admin_addr(addr.as_str())
        .build()
        .unwrap_err();
    let chain = assert_each_cause_once(&err);
    let os = root_cause(&err);
    assert_ne!(os, chain);
    assert!(chain.contains(&addr), "{chain}");
    assert_eq!(chain.matches(&os).count(), 1, "{chain}");
    let spawn = tracing_offload::admin::AdminError::Spawn(std::io::ErrorKind::OutOfMemory.into());
    assert_each_cause_once(&spawn);
}
