//! `init()` reports a variable whose value is not UTF-8 with a warning, as `Builder::from_env`
//! does and as the README says, instead of taking it as unset without a word: `init` read the
//! environment through `std::env::var(..).ok()`, which turns such a value into "unset". That
//! held for every `OFFLOAD_*`/`OTEL_*` variable and for `RUST_LOG`. Runs in a child process
//! (`init` sets the global subscriber).
#![cfg(unix)]

mod support;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use support::stderr_of_child_test;

#[test]
#[ignore = "run in a child process by init_warns_about_values_that_are_not_utf8"]
fn child_init_with_values_that_are_not_utf8() {
    std::env::set_var("OFFLOAD_CAPACITY", OsStr::from_bytes(b"1024\xff"));
    std::env::set_var("RUST_LOG", OsStr::from_bytes(b"debug\xff"));
    std::env::remove_var("OTEL_EXPORTER_OTLP_ENDPOINT");
    let guard = tracing_offload::init().unwrap();
    let config = guard.handle().config();
    let vars: Vec<&str> = config.warnings.iter().map(|w| w.var.as_str()).collect();
    assert!(
        vars.contains(&"OFFLOAD_CAPACITY") && vars.contains(&"RUST_LOG"),
        "warnings: {:?}",
        config.warnings
    );
    for w in &config.warnings {
        assert_eq!(w.expected, "a UTF-8 value", "{w}");
    }
    assert_eq!(config.capacity.value, tracing_offload::DEFAULT_CAPACITY);
    // The filter is the default, `info`.
    tracing::debug!("hidden-debug");
    tracing::info!("kept-info");
    guard.shutdown(support::DEADLINE).unwrap();
}

#[test]
fn init_warns_about_values_that_are_not_utf8() {
    let stderr = stderr_of_child_test("child_init_with_values_that_are_not_utf8");
    for shown in [
        "tracing-offload: ignoring OFFLOAD_CAPACITY",
        "tracing-offload: ignoring RUST_LOG",
        "kept-info",
    ] {
        assert!(stderr.contains(shown), "`{shown}` missing from:\n{stderr}");
    }
    assert!(!stderr.contains("hidden-debug"), "{stderr}");
}
