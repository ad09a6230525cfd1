//! Relative paths are taken from the directory current when they are given (adversary pass
//! 60). The README's own example path is relative (`JsonFile::new("logs/app.jsonl")`).
//! A program that changes its working directory after building the pipeline (a daemon's
//! `chdir("/")`, a tool that `cd`s into a work tree) has not moved or deleted its log file; yet
//! the sink's check "does the path still name my open file" resolves the relative path against
//! the new directory, decides the file was moved away, and starts a new file (and directory)
//! there: the log is split across two places, the second one wherever the program went.
//! The OTLP sink's spool directory, resolved when the sink starts, stays where it was too.
//! (One test in this binary: the working directory is the process's.)
use std::time::Duration;

use tracing_offload::{sink, Backpressure, OffloadLayer};
use tracing_subscriber::prelude::*;

#[test]
fn a_relative_path_keeps_naming_the_file_it_named_at_build_after_a_chdir() {
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    std::env::set_current_dir(first.path()).unwrap();
    let builder = OffloadLayer::builder()
        .backpressure(Backpressure::Block {
            timeout: Duration::from_secs(5),
        })
        .sink(sink::JsonFile::new("logs/app.jsonl"));
    // A collector that is not there: what the OTLP sink exports goes to its spool.
    #[cfg(feature = "otlp")]
    let builder = {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        builder.sink(
            sink::Otlp::new()
                .endpoint(endpoint)
                .spool("spool")
                .spool_after(Duration::from_millis(1)),
        )
    };
    let (layer, guard) = builder.build().unwrap();
    let handle = guard.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for i in 0..10 {
            tracing::info!(i, "before the chdir");
        }
        handle.flush(Duration::from_secs(10)).unwrap();
        std::env::set_current_dir(second.path()).unwrap();
        for i in 10..20 {
            tracing::info!(i, "after the chdir");
        }
    });
    guard.shutdown(Duration::from_secs(10)).unwrap();
    let stats = handle.stats();
    let lines = |dir: &std::path::Path| {
        std::fs::read_to_string(dir.join("logs/app.jsonl"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let (a, b) = (lines(first.path()), lines(second.path()));
    assert_eq!(
        (a, b),
        (20, 0),
        "lines in the file named at build time, and in a file at the new directory: {:?}",
        stats
            .sink("json")
            .map(|s| (s.exported, s.failed, s.last_error.clone()))
    );
    #[cfg(feature = "otlp")]
    {
        let otlp = stats.sink("otlp").unwrap();
        assert!(otlp.spooled > 0, "{otlp:#?}");
        assert!(
            !second.path().join("spool").exists(),
            "the spool followed the chdir: {otlp:#?}"
        );
        let spooled_files = std::fs::read_dir(first.path().join("spool"))
            .unwrap()
            .count();
        assert!(spooled_files > 0, "{otlp:#?}");
    }
}
