//! The console sink writes one plain line per record when the stream is not a terminal. Runs
//! a child process (this test binary) so its stderr can be captured.
use std::process::Command;
use std::time::Duration;

use tracing_offload::{sink, OffloadLayer};
use tracing_subscriber::prelude::*;

const CHILD_ENV: &str = "OFFLOAD_CONSOLE_CHILD";

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
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "console_lines_are_plain_when_not_a_terminal",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
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
