//! A record's times follow the system clock wherever it is set: before 1970 and after 2554
//! too. Records keep their times as seconds and nanoseconds since the Unix epoch; a first
//! version kept them as a `u64` of nanoseconds, which holds 1970 to 2554 only, and clamped:
//! `EventRecord::timestamp()`, `SpanRecord::start()` / `end()` and the JSON `ts` said
//! 2554-07-21 with the clock in 2600, and the epoch with the clock in 1969 (adversary pass 24).
//!
//! The system clock is set with libfaketime (Debian package `faketime`; `scripts/test`
//! installs it), in a child process running one `#[ignore]`d test of this binary; the monotonic
//! clock is left real (`FAKETIME_DONT_FAKE_MONOTONIC=1`). Without libfaketime the tests skip,
//! unless `OFFLOAD_REQUIRE_TOOLS=1`.
mod support;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use support::*;
use tracing_offload::{sink, OffloadLayer, Record};

/// Where the packages (Debian's by architecture, others') and libfaketime's own `make install`
/// put the library.
fn libfaketime() -> Option<PathBuf> {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|dir| dir.path().join("faketime/libfaketime.so.1"))
        .chain(
            ["/usr/lib", "/usr/lib64", "/usr/local/lib"]
                .map(|dir| PathBuf::from(dir).join("faketime/libfaketime.so.1")),
        )
        .find(|p| p.is_file());
    if found.is_none() {
        skip_unless_required(
            "OFFLOAD_REQUIRE_TOOLS",
            "libfaketime is missing (Debian: `apt-get install faketime`, or run scripts/test)",
        );
    }
    found
}

fn off_by(a: SystemTime, b: SystemTime) -> Duration {
    a.duration_since(b).unwrap_or_else(|e| e.duration())
}

/// Runs `child` (an ignored test of this binary) with the system clock at `faketime`.
fn run_child_at(child: &str, faketime: &str) {
    run_child(child, &[("FAKETIME", faketime.as_ref())]);
}

/// Runs `child` (an ignored test of this binary) under libfaketime with `env` (the fake
/// clock's settings), the monotonic clock left real.
fn run_child(child: &str, env: &[(&str, &std::ffi::OsStr)]) {
    let Some(libfaketime) = libfaketime() else {
        return;
    };
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            child,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("LD_PRELOAD", &libfaketime)
        .envs(env.iter().copied())
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env("TZ", "UTC")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child {child} with {env:?} failed:\n{stdout}\n{stderr}"
    );
}

/// The child: one event and one span through a collecting sink and a JSON file; the times the
/// public API gives and the JSON `ts` must be the (faked) wall-clock time of now.
#[test]
#[ignore = "run by the tests below, under libfaketime"]
fn child_times_follow_the_system_clock() {
    let now = SystemTime::now();
    let year = time::OffsetDateTime::from(now).year();
    eprintln!("child: clock at {}", rfc3339_micros(now));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    let collect = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder()
        .sink(collect.clone())
        .sink(sink::JsonFile::new(&path))
        .build()
        .unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        let _s = tracing::info_span!("span").entered();
        tracing::info!("event");
    });
    handle.flush(DEADLINE).unwrap();
    guard.shutdown(DEADLINE).unwrap();
    let records = collect.data();
    let Some(Record::Event(e)) = records.iter().find(|r| matches!(r, Record::Event(_))) else {
        panic!("no event: {records:?}")
    };
    let spans = span_records(&records);
    let s = &spans[0];
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ev = lines.iter().find(|v| v["kind"] == "event").unwrap();
    let sp = lines.iter().find(|v| v["kind"] == "span").unwrap();
    eprintln!(
        "child: event.timestamp() = {}, span.start() = {}, span.end() = {}, duration {:?}\n\
         child: JSON event ts {}, span start {}, end {}, duration_ns {}",
        rfc3339_micros(e.timestamp()),
        rfc3339_micros(s.start()),
        rfc3339_micros(s.end()),
        s.duration(),
        ev["ts"],
        sp["start"],
        sp["end"],
        sp["duration_ns"]
    );
    // The public API: `timestamp()` is when the event was recorded.
    assert!(
        off_by(e.timestamp(), now) < Duration::from_secs(60),
        "EventRecord::timestamp() = {} but the system clock said {}",
        rfc3339_micros(e.timestamp()),
        rfc3339_micros(now)
    );
    assert!(
        off_by(s.start(), now) < Duration::from_secs(60),
        "SpanRecord::start() = {} but the system clock said {}",
        rfc3339_micros(s.start()),
        rfc3339_micros(now)
    );
    assert_eq!(
        s.end(),
        s.start() + s.duration(),
        "end() is start() plus duration()"
    );
    // The JSON file: `ts` in the clock's year, and what the API says.
    let ts = ev["ts"].as_str().unwrap();
    assert!(
        ts.starts_with(&format!("{year:04}-")),
        "JSON ts {ts} in year {year}"
    );
    assert_eq!(ts, rfc3339_micros(e.timestamp()));
}

/// Control: the child passes with the clock at a normal date under libfaketime.
#[test]
fn the_control_a_clock_in_2030() {
    run_child_at(
        "child_times_follow_the_system_clock",
        "@2030-06-01 12:00:00",
    );
}

#[test]
fn a_clock_in_2600_dates_records_in_2600() {
    run_child_at(
        "child_times_follow_the_system_clock",
        "@2600-01-01 00:00:00",
    );
}

#[test]
fn a_clock_in_1969_dates_records_in_1969() {
    run_child_at(
        "child_times_follow_the_system_clock",
        "@1969-06-01 12:00:00",
    );
}

/// A span open while the system clock steps (an NTP step at boot, `date -s`, a machine resumed
/// from suspend, which the monotonic counter does not count) contains its events and its
/// children: every record of a local trace is dated with the clock's offset when its root
/// started, as OpenTelemetry's SDKs anchor a trace. The span's start was dated with the offset
/// when it closed, an hour after its own events and child (adversary pass 48).
#[test]
fn a_span_open_across_a_clock_step_contains_its_events_and_children() {
    let dir = tempfile::tempdir().unwrap();
    let offset = dir.path().join("faketime");
    std::fs::write(&offset, "+0\n").unwrap();
    run_child(
        "child_a_span_open_across_a_clock_step",
        &[
            // Read again at each call: the child steps its own clock by writing the file.
            ("FAKETIME_TIMESTAMP_FILE", offset.as_os_str()),
            ("FAKETIME_NO_CACHE", "1".as_ref()),
            ("OFFLOAD_TEST_FAKETIME_FILE", offset.as_os_str()),
        ],
    );
}

#[test]
#[ignore = "run by a_span_open_across_a_clock_step_contains_its_events_and_children"]
fn child_a_span_open_across_a_clock_step() {
    let offset = std::env::var_os("OFFLOAD_TEST_FAKETIME_FILE").expect("run by the parent test");
    let collect = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder()
        .sink(collect.clone())
        .build()
        .unwrap();
    let handle = guard.handle();
    let created = SystemTime::now();
    with_layer(layer, || {
        let span = tracing::info_span!("long");
        let _entered = span.enter();
        tracing::info!("before the step");
        tracing::info_span!("short").in_scope(|| {});
        // Converted before the clock steps.
        handle.flush(DEADLINE).unwrap();
        std::fs::write(&offset, "+3600\n").unwrap();
        wait_until("the clock to step", DEADLINE, || {
            SystemTime::now()
                .duration_since(created)
                .is_ok_and(|d| d > Duration::from_secs(3000))
        });
        tracing::info!("after the step");
    });
    guard.shutdown(DEADLINE).unwrap();
    let records = collect.data();
    let spans = span_records(&records);
    let long = span_named(&spans, "long");
    let short = span_named(&spans, "short");
    assert!(
        off_by(long.start(), created) < Duration::from_secs(1),
        "the span started at {:?}, created at {created:?}",
        long.start()
    );
    let inside = |t: SystemTime| long.start() <= t && t <= long.end();
    assert!(
        inside(short.start()) && inside(short.end()),
        "{short:#?} in {long:#?}"
    );
    let events: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            Record::Event(e) => Some(e.timestamp()),
            _ => None,
        })
        .collect();
    assert_eq!(events.len(), 2);
    for t in events {
        assert!(inside(t), "an event at {t:?} outside its span {long:#?}");
    }
}
