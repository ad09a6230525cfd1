//! The console sink writes one plain line per record when the stream is not a terminal. Runs
//! a child process (this test binary) so its stderr can be captured.
use std::process::Command;
use std::time::Duration;

use tracing_offload::{sink, OffloadLayer};
use tracing_subscriber::prelude::*;

const CHILD_ENV: &str = "OFFLOAD_CONSOLE_CHILD";

/// Runs the test `name` of this binary as a child process (where it logs to the console sink,
/// as `CHILD_ENV` tells it), and returns what it wrote on stderr.
fn stderr_of_this_test_as_child(name: &str) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn console_lines_are_plain_when_not_a_terminal() {
    if std::env::var_os(CHILD_ENV).is_some() {
        let (layer, guard) = OffloadLayer::builder()
            .sink(sink::Console::stderr())
            .build()
            .unwrap();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            let _s = tracing::info_span!("checkout", order = 7u64).entered();
            tracing::warn!(retry = true, who = "ada", "slow provider");
        });
        guard.shutdown(Duration::from_secs(10)).unwrap();
        return;
    }
    let stderr = stderr_of_this_test_as_child("console_lines_are_plain_when_not_a_terminal");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("console_format"))
        .collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "no colour codes off a terminal: {stderr:?}"
    );
    assert!(
        lines[0].contains(" WARN console_format: slow provider retry=true who=\"ada\" trace_id="),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(" INFO console_format: span `checkout` closed in "),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains("order=7"), "{}", lines[1]);
}

/// What users put in messages, error values and span fields cannot drive the terminal (ANSI
/// escapes, as in RUSTSEC-2025-0055) nor forge a line of its own: control characters are
/// written escaped, and each record stays one line.
#[test]
fn user_text_cannot_inject_escape_codes_or_lines() {
    const HOSTILE: &str =
        "bob\x1b[2J\x1b[31m\r\n2026-01-01T00:00:00.000000Z ERROR auth: admin login\u{9b}31m";
    // Line and paragraph separators, a right-to-left override (Trojan Source), and the Arabic
    // letter mark (a direction mark that was written raw: adversary pass 37).
    const UNICODE: &str = "a\u{2028}b\u{2029}c\u{202e}d\u{61c}e";
    if std::env::var_os(CHILD_ENV).is_some() {
        #[derive(Debug)]
        struct Failure;
        impl std::fmt::Display for Failure {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(HOSTILE)
            }
        }
        impl std::error::Error for Failure {}
        let (layer, guard) = OffloadLayer::builder()
            .sink(sink::Console::stderr().ansi(false))
            .build()
            .unwrap();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            tracing::info!("login attempt by {HOSTILE}");
            tracing::info!("{UNICODE}");
            tracing::warn!(
                error = &Failure as &(dyn std::error::Error + 'static),
                "failed"
            );
            tracing::info_span!("request", path = %HOSTILE, user = HOSTILE).in_scope(|| {});
        });
        guard.shutdown(Duration::from_secs(10)).unwrap();
        return;
    }
    let stderr = stderr_of_this_test_as_child("user_text_cannot_inject_escape_codes_or_lines");
    assert!(
        !stderr.contains(['\x1b', '\r', '\u{9b}', '\u{2028}', '\u{2029}', '\u{202e}', '\u{61c}']),
        "control characters written raw: {stderr:?}"
    );
    // One line per record, each starting with its own timestamp; no forged ERROR line.
    let records: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("console_format"))
        .collect();
    assert_eq!(records.len(), 4, "{stderr}");
    assert!(
        !stderr.lines().any(|l| l.starts_with("2026-01-01")),
        "{stderr}"
    );
    // The text is still there to read, escaped as Rust's `Debug` escapes it.
    let escaped =
        r"bob\u{1b}[2J\u{1b}[31m\r\n2026-01-01T00:00:00.000000Z ERROR auth: admin login\u{9b}31m";
    assert!(
        records[0].contains(&format!("login attempt by {escaped}")),
        "{}",
        records[0]
    );
    assert!(
        records[1].contains(r"a\u{2028}b\u{2029}c\u{202e}d\u{61c}e"),
        "{}",
        records[1]
    );
    assert!(
        records[2].contains(&format!("error={escaped}")),
        "{}",
        records[2]
    );
    assert!(
        records[3].contains(&format!("path=\"{escaped}\"")),
        "{}",
        records[3]
    );
}
