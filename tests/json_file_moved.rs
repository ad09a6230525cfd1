//! `JsonFile` follows its path: a file deleted or moved away (logrotate's default, or an
//! operator) is noticed before the next batch and a new one is opened, its directory created
//! again; what cannot be opened is counted failed and shown in health, and recovers. The same
//! under size and time rotation.
mod support;

use std::path::{Path, PathBuf};

use support::*;
use tracing_offload::health::HealthStatus;
use tracing_offload::sink::{JsonFile, Rotation};
use tracing_offload::{Guard, OffloadLayer};

/// A pipeline writing to `sink`, and a way to emit events named `what` and wait until the
/// sink has finished with them.
struct Pipeline {
    dispatch: tracing::Dispatch,
    guard: Guard,
}

impl Pipeline {
    fn new(sink: JsonFile) -> Self {
        let (layer, guard) = OffloadLayer::builder().sink(sink).build().unwrap();
        Pipeline {
            dispatch: dispatch(layer),
            guard,
        }
    }

    /// Emits `n` events with `what`, and waits until the sink has written or failed them.
    fn emit(&self, what: &str, n: u64) {
        tracing::dispatcher::with_default(&self.dispatch, || {
            for i in 0..n {
                tracing::info!(what, i, "record");
            }
        });
        self.guard.handle().flush(DEADLINE).unwrap();
    }

    fn json(&self) -> tracing_offload::SinkStats {
        self.guard.handle().stats().sink("json").unwrap().clone()
    }
}

/// The `what` field of every event line in `file` (each line must be whole JSON).
fn whats(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("whole JSON lines"))
        .filter(|v| v["kind"] == "event")
        .map(|v| v["fields"]["what"].as_str().unwrap().to_owned())
        .collect()
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn a_deleted_file_is_created_again_and_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.jsonl");
    let p = Pipeline::new(JsonFile::new(&path));
    p.emit("before", 3);
    std::fs::remove_file(&path).unwrap();
    p.emit("after", 2);
    // Before: nothing reached the disk, and yet the records were counted exported.
    assert_eq!(whats(&path), ["after", "after"]);
    let s = p.json();
    assert_eq!((s.exported, s.failed), (5, 0), "{s:#?}");
    p.guard.shutdown(DEADLINE).unwrap();
}

#[test]
fn a_file_moved_away_is_followed_by_a_new_one_at_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.jsonl");
    let moved = dir.path().join("app.jsonl.1");
    let p = Pipeline::new(JsonFile::new(&path));
    p.emit("before", 2);
    std::fs::rename(&path, &moved).unwrap(); // logrotate's default `create` mode
    p.emit("after", 3);
    assert_eq!(whats(&moved), ["before"; 2]);
    assert_eq!(whats(&path), ["after"; 3]);
    p.guard.shutdown(DEADLINE).unwrap();
}

#[test]
fn a_deleted_directory_is_created_again() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let path = logs.join("app.jsonl");
    let p = Pipeline::new(JsonFile::new(&path));
    p.emit("before", 1);
    std::fs::remove_dir_all(&logs).unwrap();
    p.emit("after", 1);
    assert_eq!(whats(&path), ["after"]);
    assert_eq!(p.json().failed, 0);
    p.guard.shutdown(DEADLINE).unwrap();
}

#[test]
fn a_directory_that_cannot_be_made_is_counted_failed_shown_in_health_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let path = logs.join("app.jsonl");
    let p = Pipeline::new(JsonFile::new(&path));
    p.emit("before", 1);
    std::fs::remove_dir_all(&logs).unwrap();
    std::fs::write(&logs, b"a file where the directory was").unwrap();
    p.emit("lost", 2);
    let s = p.json();
    assert_eq!((s.exported, s.failed), (1, 2), "{s:#?}");
    let error = s.last_error.clone().unwrap();
    assert!(error.contains("app.jsonl"), "{error}");
    let health = p.guard.handle().health();
    let sink = health.component("sink:json").unwrap();
    assert_eq!(sink.status, HealthStatus::Degraded, "{health:#?}");

    std::fs::remove_file(&logs).unwrap();
    p.emit("after", 1);
    assert_eq!(whats(&path), ["after"]);
    let s = p.json();
    assert_eq!((s.exported, s.failed), (2, 2), "{s:#?}");
    assert_eq!(
        p.guard
            .handle()
            .health()
            .component("sink:json")
            .unwrap()
            .status,
        HealthStatus::Healthy
    );
    p.guard.shutdown(DEADLINE).unwrap();
}

#[test]
fn size_rotation_goes_on_after_the_file_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.jsonl");
    let p = Pipeline::new(JsonFile::new(&path).rotation(Rotation::Size {
        max_bytes: 2 * 1024,
        keep: 2,
    }));
    p.emit("before", 5);
    std::fs::remove_file(&path).unwrap();
    // Before: every later batch failed with "No such file or directory", forever.
    for _ in 0..20 {
        p.emit("after", 5);
    }
    let s = p.json();
    assert_eq!((s.exported, s.failed), (105, 0), "{s:#?}");
    let names: Vec<String> = files_in(dir.path())
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["app.jsonl", "app.jsonl.1", "app.jsonl.2"]);
    for f in files_in(dir.path()) {
        assert!(whats(&f).iter().all(|w| w == "after"), "{f:?}");
    }
    p.guard.shutdown(DEADLINE).unwrap();
}

#[test]
fn time_rotation_follows_a_deleted_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.jsonl");
    let p = Pipeline::new(JsonFile::new(&path).rotation(Rotation::Daily));
    p.emit("before", 2);
    let [dated] = files_in(dir.path()).try_into().unwrap();
    std::fs::remove_file(&dated).unwrap();
    p.emit("after", 2);
    // Whatever the date now (the day may have turned), the records are in a file on disk.
    let after: Vec<String> = files_in(dir.path()).iter().flat_map(|f| whats(f)).collect();
    assert_eq!(after, ["after", "after"]);
    assert_eq!(p.json().failed, 0);
    p.guard.shutdown(DEADLINE).unwrap();
}
