//! A build that fails because of a sink leaves nothing behind. The sinks used to start one by
//! one, so a sink that failed to start (or a name found twice) after a JSON-lines sink left the
//! file sink's new, empty file and its directories where the application's logs would go. And
//! what others wrote stays.

mod support;

use std::path::Path;

use tracing_offload::sink::{JsonFile, Sink, SinkError};
use tracing_offload::{BuildError, Builder, OffloadLayer, Record};

/// The error of a build that fails because the sink named `sink` did not start.
#[track_caller]
fn failed_in(builder: Builder, sink: &str) -> BuildError {
    let Err(e) = builder.build() else {
        panic!("the build succeeded; the sink {sink} should have failed to start");
    };
    assert!(
        matches!(&e, BuildError::Sink { sink: failed, .. } if failed == sink),
        "{e:?}"
    );
    e
}

/// A sink whose start fails, as one with a bad setting does: `start` returns the error (or
/// panics), after doing what it does.
struct FailsToStart {
    name: &'static str,
    start: Box<dyn FnMut() -> Result<(), SinkError> + Send>,
}

impl FailsToStart {
    /// Named `fails`, failing with "no such device" after `before`.
    fn after(mut before: impl FnMut() + Send + 'static) -> Self {
        FailsToStart {
            name: "fails",
            start: Box::new(move || {
                before();
                Err(SinkError::Fatal("no such device".to_owned()))
            }),
        }
    }

    /// Failing at once.
    fn new() -> Self {
        Self::after(|| {})
    }
}

impl Sink for FailsToStart {
    fn name(&self) -> &str {
        self.name
    }
    fn start(&mut self) -> Result<(), SinkError> {
        (self.start)()
    }
    fn export(&mut self, _: &[Record]) -> Result<(), SinkError> {
        Ok(())
    }
}

#[track_caller]
fn assert_absent(path: &Path) {
    assert!(!path.exists(), "the failed build left {}", path.display());
}

#[test]
fn a_sink_failing_to_start_after_a_file_sink_leaves_no_file_nor_directory() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let path = logs.join("app").join("app.jsonl");
    failed_in(
        OffloadLayer::builder()
            .sink(JsonFile::new(&path))
            .sink(FailsToStart::new()),
        "fails",
    );
    assert_absent(&path);
    assert_absent(&logs);
    assert!(dir.path().exists());
}

#[test]
fn a_file_or_directory_that_was_there_before_stays() {
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("kept.jsonl");
    std::fs::write(&kept, "{\"earlier\":1}\n").unwrap();
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let built = OffloadLayer::builder()
        .sink(JsonFile::new(&kept).name("kept"))
        .sink(JsonFile::new(&empty).name("empty"))
        .sink(FailsToStart::new())
        .build();
    assert!(built.is_err());
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "{\"earlier\":1}\n");
    assert!(
        empty.exists(),
        "an empty file that was there before was removed"
    );
}

#[test]
fn a_name_found_twice_is_refused_before_any_sink_starts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs").join("app.jsonl");
    let other = dir.path().join("other.jsonl");
    let Err(e) = OffloadLayer::builder()
        .sink(JsonFile::new(&path))
        .sink(JsonFile::new(&other))
        .build()
    else {
        panic!("two sinks named json were accepted");
    };
    assert!(
        matches!(&e, BuildError::DuplicateSinkName(n) if n == "json"),
        "{e:?}"
    );
    assert_absent(&path);
    assert_absent(&dir.path().join("logs"));
    assert_absent(&other);
}

#[cfg(feature = "tls")]
#[test]
fn an_otlp_sink_with_a_missing_certificate_leaves_no_file() {
    use tracing_offload::sink::otlp::Tls;
    use tracing_offload::sink::Otlp;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs").join("app.jsonl");
    failed_in(
        OffloadLayer::builder().sink(JsonFile::new(&path)).sink(
            Otlp::new()
                .endpoint("https://collector.example:4317")
                .tls(Tls::new().certificate(dir.path().join("missing-ca.pem"))),
        ),
        "otlp",
    );
    assert_absent(&path);
    assert_absent(&dir.path().join("logs"));
}

/// The cleanup judged the file empty by what this sink wrote, and deleted another writer's
/// lines with it.
#[test]
fn a_file_another_writer_wrote_to_meanwhile_stays() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs").join("app.jsonl");
    let built = OffloadLayer::builder()
        .sink(JsonFile::new(&path))
        .sink(FailsToStart::after({
            // Another process writing to the file between the two starts.
            let path = path.clone();
            move || {
                use std::io::Write as _;
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .unwrap();
                writeln!(f, "{{\"written\":\"by another process\"}}").unwrap();
            }
        }))
        .build();
    assert!(built.is_err());
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\"written\":\"by another process\"}\n"
    );
}

/// The sink that failed to start made directories before it failed: they go too.
#[cfg(unix)]
#[test]
fn the_directories_of_a_file_sink_that_failed_to_start_go() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("d1");
    // A file name longer than any file system takes: the directories are made, the file not.
    let path = logs.join("d2").join("x".repeat(300) + ".jsonl");
    failed_in(OffloadLayer::builder().sink(JsonFile::new(&path)), "json");
    assert_absent(&logs);
}

/// A sink that panics while starting made `build()` panic, past the cleanup.
#[test]
fn a_sink_that_panics_while_starting_fails_the_build_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs").join("app.jsonl");
    let e = failed_in(
        OffloadLayer::builder()
            .sink(JsonFile::new(&path))
            .sink(FailsToStart {
                name: "panics",
                start: Box::new(|| panic!("the device exploded")),
            }),
        "panics",
    );
    let text = support::error_chain(&e);
    assert!(
        text.contains("it panicked while starting: the device exploded"),
        "{text}"
    );
    assert_absent(&path);
    assert_absent(&dir.path().join("logs"));
}

/// A spooling OTLP sink started before a sink that failed left its spool directory and lock
/// file; and one that failed itself (a missing TLS file) had made them before it read the file.
#[cfg(feature = "tls")]
#[test]
fn a_spooling_otlp_sink_leaves_no_spool_directory() {
    use tracing_offload::sink::otlp::Tls;
    use tracing_offload::sink::Otlp;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("state").join("spool");
    spooling_sink_then_a_failure(&spool);
    assert_absent(&dir.path().join("state"));

    failed_in(
        OffloadLayer::builder().sink(
            Otlp::new()
                .endpoint("https://collector.example:4317")
                .tls(Tls::new().certificate(dir.path().join("missing-ca.pem")))
                .spool(&spool),
        ),
        "otlp",
    );
    assert_absent(&dir.path().join("state"));
}

/// A spool path ending in `..` names a directory made before the last one: its lock file was
/// looked for in the last one, and the lock and the directory stayed (adversary pass 26).
#[cfg(feature = "otlp")]
#[test]
fn a_spool_path_ending_in_dot_dot_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    spooling_sink_then_a_failure(&dir.path().join("state").join("sub").join(".."));
    assert_absent(&dir.path().join("state"));
}

/// A build with an OTLP sink spooling to `spool`, then a sink that fails to start.
#[cfg(feature = "otlp")]
fn spooling_sink_then_a_failure(spool: &std::path::Path) {
    use tracing_offload::sink::Otlp;
    let built = OffloadLayer::builder()
        .sink(Otlp::new().endpoint("http://127.0.0.1:1").spool(spool))
        .sink(FailsToStart::new())
        .build();
    assert!(built.is_err());
}

/// A `..` in the path hid the directories made before it from the cleanup.
#[test]
fn directories_made_on_the_way_through_a_dot_dot_go_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir
        .path()
        .join("n1")
        .join("n2")
        .join("..")
        .join("..")
        .join("app.jsonl");
    let built = OffloadLayer::builder()
        .sink(JsonFile::new(&path))
        .sink(FailsToStart::new())
        .build();
    assert!(built.is_err());
    assert_absent(&dir.path().join("n1"));
    assert_absent(&dir.path().join("app.jsonl"));
}

/// A JSON path that is a symbolic link to a file not there yet (a deployment's fixed name
/// pointing into a log directory): opening it creates the link's target, which goes again;
/// the link, there before, stays. The target's new, empty file used to stay behind.
#[cfg(unix)]
#[test]
fn a_file_created_through_a_dangling_link_goes_and_the_link_stays() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("current.jsonl");
    let link = dir.path().join("app.jsonl");
    std::os::unix::fs::symlink("current.jsonl", &link).unwrap();
    // And through a chain of two links.
    let target2 = dir.path().join("second.jsonl");
    let link2 = dir.path().join("outer.jsonl");
    std::os::unix::fs::symlink("inner.jsonl", &link2).unwrap();
    std::os::unix::fs::symlink(&target2, dir.path().join("inner.jsonl")).unwrap();
    failed_in(
        OffloadLayer::builder()
            .sink(JsonFile::new(&link).name("one"))
            .sink(JsonFile::new(&link2).name("two"))
            .sink(FailsToStart::new()),
        "fails",
    );
    assert_absent(&target);
    assert_absent(&target2);
    for l in [&link, &link2, &dir.path().join("inner.jsonl")] {
        assert!(
            std::fs::symlink_metadata(l).is_ok_and(|m| m.file_type().is_symlink()),
            "the link {} was there before and stays",
            l.display()
        );
    }
}
