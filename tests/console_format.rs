//! The console sink writes one plain line per record when the stream is not a terminal. Runs
//! a child process (this test binary) so its stderr can be captured.
use std::process::Command;
use std::time::Duration;

use tracing_offload::{sink, OffloadLayer};
use tracing_subscriber::prelude::*;

#[path = "support/skip.rs"]
mod skip;

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

/// Whether util-linux's `script`, which gives the terminal tests' child a terminal, is on
/// `PATH` (Debian: `bsdutils`; `scripts/test` installs it); after a `SKIPPED:` line if not.
#[cfg(target_os = "linux")]
fn has_script() -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join("script").is_file()));
    if !found {
        skip::skip_unless_required(
            "OFFLOAD_REQUIRE_TOOLS",
            "`script` (util-linux) is not on PATH (Debian: `apt-get install bsdutils`)",
        );
    }
    found
}

/// Runs the test `name` of this binary as a child process on a terminal (`script`, from
/// util-linux, gives it one), with `NO_COLOR` set to `no_color` or unset, and returns what it
/// wrote there.
#[cfg(target_os = "linux")]
fn output_of_this_test_on_a_terminal(name: &str, no_color: Option<&str>) -> String {
    let child = format!(
        "'{}' --exact {name} --nocapture --test-threads 1",
        std::env::current_exe().unwrap().display()
    );
    let mut cmd = Command::new("script");
    cmd.args(["--quiet", "--return", "--command", &child, "/dev/null"])
        .env(CHILD_ENV, "1");
    match no_color {
        Some(v) => cmd.env("NO_COLOR", v),
        None => cmd.env_remove("NO_COLOR"),
    };
    let out = cmd
        .output()
        .expect("`script` (util-linux) runs the child on a terminal");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[cfg(target_os = "linux")]
/// The child's side of the terminal tests: one warning on the console sink, coloured or not
/// as `ansi` (if given) and the environment say.
fn log_one_warning_on_the_console(ansi: Option<bool>) {
    let console = match ansi {
        Some(ansi) => sink::Console::stderr().ansi(ansi),
        None => sink::Console::stderr(),
    };
    let (layer, guard) = OffloadLayer::builder().sink(console).build().unwrap();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::warn!("slow provider");
    });
    guard.shutdown(Duration::from_secs(10)).unwrap();
}

#[cfg(target_os = "linux")]
/// The warning's line in what a child wrote on its terminal.
fn warning_line(out: &str) -> &str {
    out.lines()
        .find(|l| l.contains("slow provider"))
        .unwrap_or_else(|| panic!("no warning line in {out:?}"))
}

/// On a terminal the level is coloured, unless `NO_COLOR` is set to a non-empty value
/// (no-color.org, as `tracing_subscriber::fmt` does).
#[cfg(target_os = "linux")]
#[test]
fn console_colours_a_terminal_unless_no_color_is_set() {
    if std::env::var_os(CHILD_ENV).is_some() {
        log_one_warning_on_the_console(None);
        return;
    }
    if !has_script() {
        return;
    }
    let name = "console_colours_a_terminal_unless_no_color_is_set";
    let coloured = output_of_this_test_on_a_terminal(name, None);
    assert!(
        warning_line(&coloured).contains("\x1b[33m WARN\x1b[0m"),
        "coloured on a terminal: {coloured:?}"
    );
    let empty = output_of_this_test_on_a_terminal(name, Some(""));
    assert!(
        warning_line(&empty).contains('\x1b'),
        "an empty NO_COLOR asks for nothing: {empty:?}"
    );
    let plain = output_of_this_test_on_a_terminal(name, Some("1"));
    assert!(
        !warning_line(&plain).contains('\x1b'),
        "NO_COLOR=1 turns colours off: {plain:?}"
    );
}

/// `.ansi(true)` is the program's explicit choice: it wins over `NO_COLOR`.
#[cfg(target_os = "linux")]
#[test]
fn console_ansi_true_wins_over_no_color() {
    if std::env::var_os(CHILD_ENV).is_some() {
        log_one_warning_on_the_console(Some(true));
        return;
    }
    if !has_script() {
        return;
    }
    let out = output_of_this_test_on_a_terminal("console_ansi_true_wins_over_no_color", Some("1"));
    assert!(warning_line(&out).contains('\x1b'), "{out:?}");
}
