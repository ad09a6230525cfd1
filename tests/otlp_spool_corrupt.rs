//! A spool damaged on disk between two runs — a segment cut short (as a crash mid-write leaves
//! it) and a byte flipped inside another — is replayed all the same: each damaged request is
//! found (a frame too short when the spool is opened, a checksum mismatch when it is read),
//! counted, and skipped, and every other request is delivered.
//!
//! The damage is placed with the spool's documented format (`src/sink/otlp/spool/store.rs`):
//! segments `<n>.seg` start with 8 bytes of magic, then frames of a 32-byte header and the
//! request.
#![cfg(feature = "otlp")]
mod support;

use std::path::{Path, PathBuf};

use support::collector::{span_numbers, Collector};
use support::*;
use tracing_offload::sink::otlp::EventsAsLogs;
use tracing_offload::sink::Otlp;
use tracing_offload::OffloadLayer;

const SPANS: u64 = 1_000;
const SEGMENT_MAGIC: u64 = 8;
const FRAME_HEADER: u64 = 32;

fn sink(endpoint: String, dir: &Path) -> Otlp {
    spooling_sink(endpoint, "offload-spool-corrupt", dir)
        .events_as_logs(EventsAsLogs::None)
        .max_export_batch_size(50)
        // Segments of 64 KiB: several of them.
        .spool_max_bytes(1024 * 1024)
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

/// With the collector down, a pipeline's spans all go to the spool in `dir`, which outlives it.
fn spool_every_span(endpoint: &str, dir: &Path) {
    let (layer, guard) = OffloadLayer::builder()
        .sink(sink(endpoint.to_owned(), dir))
        .build()
        .unwrap();
    let handle = guard.handle();
    work_spans(layer, SPANS);
    guard.shutdown(DEADLINE).unwrap();
    let spooled = otlp_spool(&handle);
    assert_eq!(spooled.records, SPANS, "{spooled:#?}");
}

#[test]
fn damaged_requests_are_counted_and_the_rest_replayed() {
    let Some((grpc, http)) = Collector::ports_for_later() else {
        return;
    };
    let endpoint = format!("http://127.0.0.1:{grpc}");
    let dir = tempfile::tempdir().unwrap();

    // 1. The collector is down: every span goes to the spool, which outlives the pipeline.
    spool_every_span(&endpoint, dir.path());

    // 2. Damage: the last segment loses its last 100 bytes; the first request of the second
    //    segment gets a byte flipped in the middle of its body.
    let files = segments(dir.path());
    assert!(files.len() >= 3, "several segments: {files:?}");
    let last = files.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let mut second = std::fs::read(&files[1]).unwrap();
    let body = (SEGMENT_MAGIC + FRAME_HEADER + 100) as usize;
    second[body] ^= 0xff;
    std::fs::write(&files[1], second).unwrap();

    // 3. The next run, with the collector up.
    let collector = Collector::start_on(grpc, http).unwrap();
    let (_layer, guard) = OffloadLayer::builder()
        .sink(sink(endpoint, dir.path()))
        .build()
        .unwrap();
    let handle = guard.handle();
    wait_spool_replayed("the spool replayed", &handle);
    guard.shutdown(DEADLINE).unwrap();
    let spool = otlp_spool(&handle);
    assert_eq!(spool.restored, SPANS, "{spool:#?}");
    assert_eq!(spool.corrupt_batches, 2, "{spool:#?}");
    assert!(
        spool.corrupt_records > 0 && spool.corrupt_records <= 100,
        "two requests of at most 50 spans: {spool:#?}"
    );
    assert_eq!(spool.replayed + spool.corrupt_records, SPANS, "{spool:#?}");
    assert!(spool.last_error.is_some(), "{spool:#?}");

    // Everything else arrived: the spans missing are the two damaged requests' (two runs of
    // consecutive numbers, the second ending with the last span).
    let received = collector.wait_spans(spool.replayed as usize);
    let numbers = span_numbers(&received);
    assert_eq!(received.len() as u64, spool.replayed);
    let missing: Vec<u64> = (0..SPANS).filter(|i| !numbers.contains(i)).collect();
    assert_eq!(missing.len() as u64, spool.corrupt_records);
    let runs = missing.windows(2).filter(|w| w[1] != w[0] + 1).count() + 1;
    assert_eq!(runs, 2, "{missing:?}");
    assert_eq!(missing.last(), Some(&(SPANS - 1)), "{missing:?}");
}

/// Entries named like segments that the spool did not write — a copy named `7.seg`, `+<n>.seg`
/// beside segment `n`, a directory, a link to a segment — are left alone and said, and the
/// spool replays its own requests once. (`7.seg` and the directory failed `build()`, naming neither; `+<n>.seg` had
/// segment `n` read twice, so the spool never drained: adversary pass 35.)
#[test]
fn entries_named_like_segments_are_left_alone_and_the_spool_replays_once() {
    let Some((grpc, http)) = Collector::ports_for_later() else {
        return;
    };
    let endpoint = format!("http://127.0.0.1:{grpc}");
    let dir = tempfile::tempdir().unwrap();
    spool_every_span(&endpoint, dir.path());

    let first = segments(dir.path())[0].clone();
    let n: u64 = first
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    std::fs::write(dir.path().join(format!("+{n}.seg")), b"junk").unwrap();
    std::fs::write(dir.path().join("7.seg"), b"junk").unwrap();
    std::fs::create_dir(dir.path().join("00000000000000000500.seg")).unwrap();
    // A link named as a segment, to a segment: that segment was read twice (pass 40).
    #[cfg(unix)]
    std::os::unix::fs::symlink(&first, dir.path().join("00000000000000000000.seg")).unwrap();

    let collector = Collector::start_on(grpc, http).unwrap();
    let (_layer, guard) = OffloadLayer::builder()
        .sink(sink(endpoint, dir.path()))
        .build()
        .expect("the spool opens beside entries it did not write");
    let handle = guard.handle();
    wait_spool_replayed("the spool replayed", &handle);
    guard.shutdown(DEADLINE).unwrap();
    let spool = otlp_spool(&handle);
    assert_eq!(
        (spool.restored, spool.replayed),
        (SPANS, SPANS),
        "{spool:#?}"
    );
    assert_eq!(spool.records, 0, "{spool:#?}");
    assert!(
        spool
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("not a segment")),
        "{spool:#?}"
    );
    let received = collector.wait_spans(SPANS as usize);
    assert_eq!(received.len() as u64, SPANS, "each span once");
    assert_eq!(span_numbers(&received), (0..SPANS).collect());
    assert_eq!(std::fs::read(dir.path().join("7.seg")).unwrap(), b"junk");
}
