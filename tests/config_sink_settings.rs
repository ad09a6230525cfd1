//! `Handle::config()` (and `/config`) shows the JSON-lines and console sinks' settings, as it
//! shows the OTLP sink's (endpoint, protocol, spool, …): the JSON sink's absolute path (the one
//! a relative path became) and rotation, the console's stream and whether it writes colours as
//! it decided when it started (`ansi(…)`, `NO_COLOR`, a terminal or not). README,
//! Self-observability: "`handle.config()` shows every setting and where it came from".
//!
//! Adversary pass 65 found the fault: `sink_settings` was `null` for both sinks, so an
//! operator could not learn from the pipeline where its log file is, how it rotates, or
//! whether the console writes colours.

use std::io::IsTerminal as _;

use tracing_offload::sink::{Console, JsonFile, Rotation};
use tracing_offload::OffloadLayer;

#[test]
fn the_config_says_where_the_json_file_is_and_how_it_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("where-is-my-log.jsonl");
    let (_layer, guard) = OffloadLayer::builder()
        .sink(JsonFile::new(&path).rotation(Rotation::Size {
            max_bytes: 1 << 20,
            keep: 3,
        }))
        .sink(Console::stderr().ansi(false))
        .build()
        .unwrap();
    let config = guard.handle().config();
    let json = serde_json::to_string(&config.sink_settings["json"]).unwrap();
    assert!(
        json.contains("where-is-my-log.jsonl") && json.to_lowercase().contains("size"),
        "the JSON sink's settings in the config: {json}"
    );
    assert_eq!(
        config.sink_settings["json"],
        serde_json::json!({
            "path": path.to_str().unwrap(),
            "rotation": {"size": {"max_bytes": 1 << 20, "keep": 3}},
        })
    );
    let console = serde_json::to_string(&config.sink_settings["console"]).unwrap();
    assert_ne!(
        console, "null",
        "the console sink's settings in the config (colours off)"
    );
    assert_eq!(
        config.sink_settings["console"],
        serde_json::json!({
            "stream": "stderr",
            "terminal": std::io::stderr().is_terminal(),
            "ansi": {"value": false, "source": {"kind": "code"}},
        })
    );
}

/// A relative path shows as the absolute one it became; time rotation by its name.
#[test]
fn a_relative_path_shows_as_the_absolute_one_it_became() {
    let dir = tempfile::tempdir().unwrap();
    let relative = dir
        .path()
        .strip_prefix(std::env::current_dir().unwrap())
        .map(|p| p.join("app.jsonl"));
    // A temporary directory under the current one gives a relative path to it; elsewhere,
    // `..` enough to reach the root does.
    let relative = relative.unwrap_or_else(|_| {
        let up = std::env::current_dir().unwrap().components().count() - 1;
        let mut p: std::path::PathBuf = std::iter::repeat_n("..", up).collect();
        p.push(dir.path().strip_prefix("/").unwrap());
        p.push("app.jsonl");
        p
    });
    assert!(relative.is_relative());
    let (_layer, guard) = OffloadLayer::builder()
        .sink(JsonFile::new(&relative).rotation(Rotation::Daily))
        .build()
        .unwrap();
    let settings = &guard.handle().config().sink_settings["json"];
    let shown = std::path::PathBuf::from(settings["path"].as_str().unwrap());
    assert!(shown.is_absolute(), "{settings}");
    assert_eq!(
        std::fs::canonicalize(shown.parent().unwrap()).unwrap(),
        std::fs::canonicalize(dir.path()).unwrap(),
        "{settings}"
    );
    assert_eq!(settings["rotation"], "daily");
}

/// The console's colours as decided: with `NO_COLOR` set and no `ansi(…)`, off, and the
/// setting says `NO_COLOR` decided it (a child process, so that the variable is its own);
/// without it, the terminal check (stdout, here, whatever it is under the test runner).
#[test]
fn the_config_says_whether_the_console_writes_colours_and_why() {
    let (_layer, guard) = OffloadLayer::builder()
        .sink(Console::stdout())
        .build()
        .unwrap();
    let settings = &guard.handle().config().sink_settings["console"];
    let terminal = std::io::stdout().is_terminal();
    assert_eq!(settings["stream"], "stdout");
    assert_eq!(settings["terminal"], terminal);
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        assert_eq!(
            settings["ansi"],
            serde_json::json!({"value": false, "source": {"kind": "env", "name": "NO_COLOR"}})
        );
    } else {
        assert_eq!(
            settings["ansi"],
            serde_json::json!({"value": terminal, "source": {"kind": "default"}})
        );
    }

    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "child_prints_the_console_settings",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("console settings: ").map(|(_, json)| json))
        .unwrap_or_else(|| panic!("no settings in the child's output: {stdout}"));
    let settings: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(
        settings,
        serde_json::json!({
            "stream": "stderr",
            "terminal": false,
            "ansi": {"value": false, "source": {"kind": "env", "name": "NO_COLOR"}},
        })
    );
}

/// The child's side: a console on stderr (a pipe here), its settings printed on stdout.
#[test]
#[ignore = "run by the_config_says_whether_the_console_writes_colours_and_why"]
fn child_prints_the_console_settings() {
    let (_layer, guard) = OffloadLayer::builder()
        .sink(Console::stderr())
        .build()
        .unwrap();
    let settings = &guard.handle().config().sink_settings["console"];
    println!("console settings: {settings}");
}

/// A disabled pipeline never starts its sinks: the console decided nothing, and says so.
#[test]
fn a_console_that_never_started_decided_nothing() {
    let (_layer, guard) = OffloadLayer::builder()
        .enabled(false)
        .sink(Console::stderr())
        .build()
        .unwrap();
    assert_eq!(
        guard.handle().config().sink_settings["console"],
        serde_json::json!({"stream": "stderr", "terminal": null, "ansi": null})
    );
}
