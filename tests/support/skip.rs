//! Skipping a test whose external tool is missing, so that it shows (see
//! [`skip_unless_required`]). Its own file, because the benchmarks include `collector.rs`
//! without the rest of `support`.
#![allow(dead_code)]

/// Reports that the calling test cannot run because an external tool is missing: a failure when
/// the environment variable `require_var` is `1` (as `scripts/test` and CI set it), otherwise one
/// `SKIPPED: <test binary>::<test>: <why>` line and the test returns without running.
///
/// The line is written to the process's real stderr, not through `eprintln!`, which libtest
/// captures (and shows only for failing tests): a skipped test reports `ok`, and this line is
/// what says it did not run. `scripts/test` lists these lines again at the end.
#[track_caller]
pub fn skip_unless_required(require_var: &str, why: &str) {
    use std::io::Write;
    let required = std::env::var(require_var).is_ok_and(|v| v == "1");
    assert!(!required, "{why}, and {require_var}=1 requires it");
    let line = format!("SKIPPED: {}: {why}\n", current_test());
    // One write of the whole line, so that parallel tests do not interleave within it.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// `<test binary>::<test>`: libtest runs each test on a thread named after it.
fn current_test() -> String {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|stem| match stem.rsplit_once('-') {
            Some((name, _hash)) => name.to_owned(),
            None => stem,
        })
        .unwrap_or_default();
    let thread = std::thread::current();
    format!("{binary}::{}", thread.name().unwrap_or("<unnamed thread>"))
}
