//! A scenario run in a child process (this test binary, its ignored `child_process` test) with
//! a deadline, and what it reports: the tests of tokio shutdowns and of panics (adversary pass
//! 60) share it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The scenario the child runs.
pub const SCENARIO: &str = "P60_SCENARIO";
/// The JSON-lines file the child writes.
pub const FILE: &str = "P60_FILE";
/// How long a child may take.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Runs `scenario` in a child process writing to `file`; its exit status and stderr. Fails if
/// it has not ended by [`DEADLINE`].
pub fn run_child(scenario: &str, file: &Path) -> (std::process::ExitStatus, String) {
    let stderr_path = file.with_extension("stderr");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_process", "--exact", "--ignored", "--nocapture"])
        .env(SCENARIO, scenario)
        .env(FILE, file)
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    let mut status = None;
    while status.is_none() && Instant::now() < deadline {
        status = child.try_wait().unwrap();
        std::thread::park_timeout(Duration::from_millis(5));
    }
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("child `{scenario}` hung past {DEADLINE:?}; stderr:\n{stderr}");
    };
    (status, stderr)
}

/// The JSON lines of `file`.
pub fn lines(file: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("whole JSON lines"))
        .collect()
}

/// Writes the child's verdict line on stderr: `offered` (what the scenario offered, by its own
/// count) beside the pipeline's stats, for [`verdict`] in the parent.
pub fn report(handle: &tracing_offload::Handle, offered: u64) {
    let s = handle.stats();
    let sk = s.sink("json").or_else(|| s.sinks.first()).unwrap();
    eprintln!(
        "P60 offered={} stats_offered={} enqueued={} dropped={} sampled_out={} exported={} sink_dropped={} sink_failed={} open_spans={} reasons={:?}",
        offered,
        s.offered,
        s.enqueued,
        s.dropped,
        s.sampled_out,
        sk.exported,
        sk.dropped,
        sk.failed,
        s.open_spans,
        s.dropped_by_reason
    );
}

/// The child's verdict line (see [`report`]), as numbers by name.
pub fn verdict(stderr: &str) -> std::collections::HashMap<String, u64> {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("P60 "))
        .unwrap_or_else(|| panic!("no verdict line in the child's stderr:\n{stderr}"));
    line[4..]
        .split_whitespace()
        .take_while(|kv| !kv.starts_with("reasons"))
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect()
}

/// What a scenario left.
pub struct Outcome {
    /// The child's verdict line, as numbers by name.
    pub verdict: HashMap<String, u64>,
    /// The records of its file.
    pub records: Vec<serde_json::Value>,
    /// The events and spans among them.
    pub written: u64,
    /// The child's stderr.
    pub stderr: String,
}

/// Runs `scenario` in a child process, and checks what every scenario holds: the child ends
/// well, `stats().offered` is what it offered, each offered record is enqueued, dropped or
/// sampled out, and the file holds what the sink counted exported.
pub fn run_checked(scenario: &str) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.jsonl");
    let (status, stderr) = run_child(scenario, &file);
    assert!(
        status.success(),
        "child `{scenario}` failed ({status}):\n{stderr}"
    );
    let v = verdict(&stderr);
    let records = lines(&file);
    let written = records
        .iter()
        .filter(|r| r["kind"] == "event" || r["kind"] == "span")
        .count() as u64;
    assert_eq!(
        v["stats_offered"], v["offered"],
        "stats.offered vs what was offered: {v:?}\n{stderr}"
    );
    assert_eq!(
        v["enqueued"] + v["dropped"] + v["sampled_out"],
        v["stats_offered"],
        "{v:?}"
    );
    assert_eq!(
        written, v["exported"],
        "lines in the file vs exported: {v:?}"
    );
    Outcome {
        verdict: v,
        records,
        written,
        stderr,
    }
}
