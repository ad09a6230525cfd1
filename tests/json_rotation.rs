//! `JsonFile` rotation by size keeps `keep` old files and never splits a line.
mod support;

use support::*;
use tracing_offload::sink::{JsonFile, Rotation};
use tracing_offload::OffloadLayer;
use tracing_subscriber::layer::SubscriberExt as _;

#[test]
fn size_rotation_shifts_old_files_and_keeps_every_line_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.jsonl");
    let (layer, guard) = OffloadLayer::builder()
        .batch_size(16)
        .sink(JsonFile::new(&path).rotation(Rotation::Size {
            max_bytes: 4 * 1024,
            keep: 2,
        }))
        .build()
        .unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        for i in 0..400u64 {
            tracing::info!(i, "rotate me");
            if i % 16 == 15 {
                handle.flush(DEADLINE).unwrap(); // many small batches
            }
        }
    });
    guard.shutdown(DEADLINE).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["app.jsonl", "app.jsonl.1", "app.jsonl.2"]);
    let mut last_seen = Vec::new();
    for name in ["app.jsonl.2", "app.jsonl.1", "app.jsonl"] {
        let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert!(
            text.len() <= 4 * 1024 + 4 * 1024,
            "{name} is {} bytes",
            text.len()
        );
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("whole JSON lines only");
            last_seen.push(v["fields"]["i"].as_u64().unwrap());
        }
    }
    // The newest files hold the newest records, in order, ending with the last one.
    assert!(
        last_seen.windows(2).all(|w| w[0] + 1 == w[1]),
        "{last_seen:?}"
    );
    assert_eq!(*last_seen.last().unwrap(), 399);
}

/// A rotation that cannot rename (here a directory sits where the old file would go; in
/// production, a log directory the process may not write to) must not lose the records: the
/// file is still writable, so the batch is written past `max_bytes`, and the failure shows in
/// the sink's health and last error, tried again at each batch.
#[test]
fn a_rotation_that_cannot_rename_keeps_writing_to_the_file_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.jsonl");
    let blocker = dir.path().join("app.jsonl.1");
    std::fs::create_dir(&blocker).unwrap();
    std::fs::write(blocker.join("not ours"), "x").unwrap();
    let (layer, guard) = OffloadLayer::builder()
        .batch_size(8)
        .sink(JsonFile::new(&path).rotation(Rotation::Size {
            max_bytes: 1024,
            keep: 1,
        }))
        .build()
        .unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        for i in 0..100u64 {
            tracing::info!(i, "cannot rotate");
            if i % 8 == 7 {
                handle.flush(DEADLINE).unwrap();
            }
        }
    });
    handle.flush(DEADLINE).unwrap();
    let health = handle.health();
    let sink = health.component("sink:json").unwrap();
    assert_ne!(
        sink.status,
        tracing_offload::health::HealthStatus::Healthy,
        "{sink:?}"
    );
    let error = sink.last_error.as_deref().unwrap_or_default();
    assert!(error.contains("rotating"), "{error}");
    assert!(error.contains("went whole into"), "{error}");
    assert!(!error.contains("failed after"), "{error}");
    guard.shutdown(DEADLINE).unwrap();
    let stats = handle.stats();
    let json = stats.sink("json").unwrap();
    assert_eq!((json.exported, json.failed), (100, 0), "{json:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    let seen: Vec<u64> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["fields"]["i"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(seen, (0..100).collect::<Vec<_>>());
    // What was in the way is untouched.
    assert_eq!(
        std::fs::read_to_string(blocker.join("not ours")).unwrap(),
        "x"
    );
}

/// File names need not be UTF-8 on Unix: size rotation keeps `keep` old files whatever the
/// name's bytes (it used to find none of them, and overwrote `.1` at every rotation).
#[cfg(unix)]
#[test]
fn size_rotation_keeps_old_files_of_a_name_that_is_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let name = std::ffi::OsStr::from_bytes(b"app\xff.jsonl");
    let path = dir.path().join(name);
    let (layer, guard) = OffloadLayer::builder()
        .batch_size(16)
        .sink(JsonFile::new(&path).rotation(Rotation::Size {
            max_bytes: 1024,
            keep: 3,
        }))
        .build()
        .unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        for i in 0..200u64 {
            tracing::info!(i, "rotate me");
            if i % 16 == 15 {
                handle.flush(DEADLINE).unwrap();
            }
        }
    });
    guard.shutdown(DEADLINE).unwrap();
    let mut files: Vec<Vec<u8>> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    files.sort();
    let expected: Vec<Vec<u8>> = ["", ".1", ".2", ".3"]
        .iter()
        .map(|suffix| [&b"app\xff.jsonl"[..], suffix.as_bytes()].concat())
        .collect();
    assert_eq!(files, expected);
    // The oldest kept file holds older records than the newest one.
    let first_i = |suffix: &str| {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let text = std::fs::read_to_string(p).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        v["fields"]["i"].as_u64().unwrap()
    };
    assert!(first_i(".3") < first_i(".2") && first_i(".2") < first_i(".1"));
    assert!(first_i(".1") < first_i(""));
}

/// Size rotation goes by what the file holds: after logrotate's `copytruncate` emptied it, the
/// sink still counted the bytes it had written, and rotated a file that held nothing, pushing
/// an old file out of `keep` one rotation early (adversary pass 51).
#[test]
fn a_file_emptied_under_the_sink_is_not_rotated_for_what_it_held() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.jsonl");
    let (layer, guard) = OffloadLayer::builder()
        .sink(JsonFile::new(&path).rotation(Rotation::Size {
            max_bytes: 10_000,
            keep: 3,
        }))
        .build()
        .unwrap();
    let handle = guard.handle();
    let pad = "p".repeat(100);
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let log = |n: u64| {
        tracing::dispatcher::with_default(&dispatch, || {
            for i in 0..n {
                tracing::info!(i, pad = pad.as_str(), "tick");
            }
        });
        handle.flush(DEADLINE).unwrap();
    };
    // Nearly full: one line to learn a line's length, then as many as make 8 000 to 10 000.
    log(1);
    let line = std::fs::metadata(&path).unwrap().len();
    log(8_000 / line);
    let before = std::fs::metadata(&path).unwrap().len();
    assert!((8_000..10_000).contains(&before), "{before} bytes");
    // copytruncate: copied away, then emptied in place.
    std::fs::copy(&path, dir.path().join("copied")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    log(10);
    drop(dispatch);
    guard.shutdown(DEADLINE).unwrap();
    assert!(
        !dir.path().join("app.jsonl.1").exists(),
        "an emptied file was rotated"
    );
    let lines = std::fs::read_to_string(&path).unwrap().lines().count();
    assert_eq!(lines, 10);
}
