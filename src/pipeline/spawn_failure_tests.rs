//! A build that fails because one of its threads cannot start (the system is out of threads or
//! memory) leaves nothing behind: every sink undoes what it made ([`Sink::abandon`]), whether
//! its thread had started or not, no thread of the pipeline keeps running, the admin port is
//! free again, and the error names the thread. `spawn_seam` makes the chosen spawn fail.

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::spawn_seam::fail_spawn;
use crate::record::Record;
use crate::sink::{JsonFile, Sink, SinkError};
use crate::{BuildError, Builder, OffloadLayer};

/// What happened to the [`Probe`] sinks, in order: the sink's name, the call, and the thread
/// it was made on.
type Calls = Arc<Mutex<Vec<(&'static str, &'static str, Option<String>)>>>;

/// A sink that notes each call made to it (and its drop).
struct Probe {
    name: &'static str,
    calls: Calls,
}

impl Probe {
    fn new(name: &'static str, calls: &Calls) -> Self {
        Probe {
            name,
            calls: Arc::clone(calls),
        }
    }

    fn note(&self, call: &'static str) {
        let thread = std::thread::current().name().map(str::to_owned);
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.push((self.name, call, thread));
    }
}

impl Sink for Probe {
    fn name(&self) -> &str {
        self.name
    }
    fn start(&mut self) -> Result<(), SinkError> {
        self.note("start");
        Ok(())
    }
    fn abandon(&mut self) {
        self.note("abandon");
    }
    fn export(&mut self, _: &[Record]) -> Result<(), SinkError> {
        self.note("export");
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        self.note("flush");
        Ok(())
    }
    fn shutdown(&mut self, _: std::time::Instant) -> Result<(), SinkError> {
        self.note("shutdown");
        Ok(())
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.note("drop");
    }
}

/// Builds with the `n`th thread (from 0) failing to start; returns the error, which must be
/// [`BuildError::Spawn`] naming `thread`.
#[track_caller]
fn fails_at_spawn(builder: Builder, n: usize, thread: &str) -> BuildError {
    fail_spawn(n);
    let Err(e) = builder.build() else {
        panic!("the build succeeded although the start of {thread} failed");
    };
    assert!(matches!(e, BuildError::Spawn { .. }), "{e:?}");
    assert!(
        e.to_string().contains(&format!("`{thread}`")),
        "the error does not name the thread {thread}: {e}"
    );
    e
}

/// Three probes `a`, `b`, `c`: threads 0, 1, 2 are theirs, 3 the drain's.
fn three_probes(calls: &Calls) -> Builder {
    OffloadLayer::builder()
        .sink(Probe::new("a", calls))
        .sink(Probe::new("b", calls))
        .sink(Probe::new("c", calls))
}

/// Every probe was started, then abandoned and dropped on the building thread (not shut down,
/// nothing exported or flushed), before `build()` returned: later sinks first, as when a sink
/// fails to start.
#[track_caller]
fn assert_all_abandoned(calls: &Calls) {
    let here = std::thread::current().name().map(str::to_owned);
    let calls = calls.lock().unwrap().clone();
    let starts: Vec<_> = calls
        .iter()
        .filter(|c| c.1 == "start")
        .map(|c| c.0)
        .collect();
    assert_eq!(starts, ["a", "b", "c"], "{calls:?}");
    let abandons: Vec<_> = calls
        .iter()
        .filter(|c| c.1 == "abandon")
        .map(|c| c.0)
        .collect();
    assert_eq!(abandons, ["c", "b", "a"], "{calls:?}");
    for name in ["a", "b", "c"] {
        let own: Vec<_> = calls.iter().filter(|c| c.0 == name).collect();
        let kinds: Vec<_> = own.iter().map(|c| c.1).collect();
        assert_eq!(
            kinds,
            ["start", "abandon", "drop"],
            "sink {name}: {calls:?}"
        );
        assert!(
            own.iter().all(|c| c.2 == here),
            "sink {name} was handled on another thread: {calls:?}"
        );
    }
}

#[test]
fn the_first_sink_thread_failing_abandons_every_sink() {
    let calls = Calls::default();
    fails_at_spawn(three_probes(&calls), 0, "offload-sink-a");
    assert_all_abandoned(&calls);
}

#[test]
fn a_later_sink_thread_failing_abandons_the_sinks_already_running_too() {
    let calls = Calls::default();
    fails_at_spawn(three_probes(&calls), 2, "offload-sink-c");
    assert_all_abandoned(&calls);
}

#[test]
fn the_drain_thread_failing_abandons_every_sink() {
    let calls = Calls::default();
    fails_at_spawn(three_probes(&calls), 3, "offload-drain");
    assert_all_abandoned(&calls);
}

#[track_caller]
fn assert_absent(path: &Path) {
    assert!(!path.exists(), "the failed build left {}", path.display());
}

/// Two JSON-lines sinks in a directory the build creates, with the `n`th thread failing.
#[track_caller]
fn json_sinks_fail_at_spawn(n: usize, thread: &str) {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let (a, b) = (logs.join("a.jsonl"), logs.join("b").join("b.jsonl"));
    let builder = OffloadLayer::builder()
        .sink(JsonFile::new(&a).name("a"))
        .sink(JsonFile::new(&b).name("b"));
    fails_at_spawn(builder, n, thread);
    assert_absent(&a);
    assert_absent(&b);
    assert_absent(&logs);
    assert!(dir.path().exists());
}

#[test]
fn json_sinks_leave_no_file_nor_directory_when_the_first_sink_thread_fails() {
    json_sinks_fail_at_spawn(0, "offload-sink-a");
}

#[test]
fn json_sinks_leave_no_file_nor_directory_when_a_later_sink_thread_fails() {
    json_sinks_fail_at_spawn(1, "offload-sink-b");
}

#[test]
fn json_sinks_leave_no_file_nor_directory_when_the_drain_thread_fails() {
    json_sinks_fail_at_spawn(2, "offload-drain");
}

#[test]
fn files_that_were_there_before_stay_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("kept.jsonl");
    std::fs::write(&kept, "{\"earlier\":1}\n").unwrap();
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let new = dir.path().join("new.jsonl");
    let builder = OffloadLayer::builder()
        .sink(JsonFile::new(&kept).name("kept"))
        .sink(JsonFile::new(&empty).name("empty"))
        .sink(JsonFile::new(&new).name("new"));
    fails_at_spawn(builder, 3, "offload-drain");
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "{\"earlier\":1}\n");
    assert_eq!(std::fs::read_to_string(&empty).unwrap(), "");
    assert_absent(&new);
}

/// A free port on the loopback, for the admin endpoint.
#[cfg(feature = "admin")]
fn a_free_address() -> std::net::SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap()
}

/// With the admin endpoint on (thread 0), a pipeline thread failing stops it: its port can be
/// bound again once `build()` has returned.
#[cfg(feature = "admin")]
#[track_caller]
fn admin_port_is_free_after_failing_at(n: usize, thread: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs").join("app.jsonl");
    let addr = a_free_address();
    let builder = OffloadLayer::builder()
        .admin_addr(addr.to_string())
        .sink(JsonFile::new(&path).name("a"));
    fails_at_spawn(builder, n, thread);
    assert_absent(&path);
    if let Err(e) = std::net::TcpListener::bind(addr) {
        panic!("the admin port {addr} is still taken after the failed build: {e}");
    }
}

#[cfg(feature = "admin")]
#[test]
fn the_admin_port_is_free_again_when_a_sink_thread_fails() {
    admin_port_is_free_after_failing_at(1, "offload-sink-a");
}

#[cfg(feature = "admin")]
#[test]
fn the_admin_port_is_free_again_when_the_drain_thread_fails() {
    admin_port_is_free_after_failing_at(2, "offload-drain");
}

#[cfg(feature = "admin")]
#[test]
fn the_admin_thread_failing_abandons_the_sinks() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let path = logs.join("app.jsonl");
    let addr = a_free_address();
    fail_spawn(0);
    let built = OffloadLayer::builder()
        .admin_addr(addr.to_string())
        .sink(JsonFile::new(&path))
        .build();
    let Err(e) = built else {
        panic!("the build succeeded although the admin thread could not start");
    };
    assert!(
        matches!(e, BuildError::Admin(crate::admin::AdminError::Spawn(_))),
        "{e:?}"
    );
    assert_absent(&path);
    assert_absent(&logs);
    if let Err(e) = std::net::TcpListener::bind(addr) {
        panic!("the admin port {addr} is still taken after the failed build: {e}");
    }
}

#[test]
fn a_build_after_a_failed_one_works() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.jsonl");
    fails_at_spawn(
        OffloadLayer::builder().sink(JsonFile::new(&path)),
        1,
        "offload-drain",
    );
    let (_layer, guard) = OffloadLayer::builder()
        .sink(JsonFile::new(&path))
        .build()
        .unwrap();
    guard.shutdown(std::time::Duration::from_secs(5)).unwrap();
    assert!(path.exists());
}
