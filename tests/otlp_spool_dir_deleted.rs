//! A spool directory deleted while the collector is down (by an operator cleaning up, a tmp
//! reaper): what was in it is gone, and counted, but what comes after is spooled again, in the
//! directory made anew, and delivered when the collector is back. The sink used to go on
//! appending to the deleted segment file, still open, and everything spooled after the
//! deletion was lost as well; the directory was never made again, nor locked.
#![cfg(feature = "otlp")]
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::collector::{span_numbers, Collector};
use support::*;
use tracing_offload::sink::otlp::EventsAsLogs;
use tracing_offload::sink::Otlp;
use tracing_offload::OffloadLayer;
use tracing_subscriber::prelude::*;

/// The numbers of the spans the collector printed whole so far (one it is printing has no
/// attributes yet).
fn numbered(c: &Collector) -> BTreeSet<u64> {
    let whole: Vec<_> = c
        .spans()
        .into_iter()
        .filter(|s| s.attr("i").is_some())
        .collect();
    span_numbers(&whole)
}

#[test]
fn requests_spooled_after_the_directory_was_deleted_are_delivered() {
    let Some((grpc, http)) = Collector::ports_for_later() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("spool");
    let sink = Otlp::new()
        .endpoint(format!("http://127.0.0.1:{grpc}"))
        .timeout(Duration::from_millis(500))
        .max_retries(0)
        .events_as_logs(EventsAsLogs::None)
        .spool(&dir);
    let (layer, guard) = OffloadLayer::builder().sink(sink).build().unwrap();
    let handle = guard.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let send = |from: u64, to: u64| {
        tracing::dispatcher::with_default(&dispatch, || {
            for i in from..to {
                drop(tracing::info_span!("work", i).entered());
            }
        });
        handle.flush(DEADLINE).unwrap();
    };
    send(0, 50);
    wait_until("the first spans spooled", DEADLINE, || {
        otlp_spool(&handle).spooled == 50
    });
    std::fs::remove_dir_all(&dir).unwrap();
    send(50, 100);
    wait_until("the later spans spooled", DEADLINE, || {
        otlp_spool(&handle).spooled == 100
    });
    assert!(dir.is_dir(), "the spool directory was not made again");
    let Some(collector) = Collector::start_on(grpc, http) else {
        return;
    };
    // Replayed, or counted lost: nothing left to replay.
    wait_spool_replayed("the spool replayed", &handle);
    collector.wait_for("the spans spooled after the deletion", DEADLINE, |c| {
        let delivered = numbered(c);
        (50..100).all(|i| delivered.contains(&i))
    });
    guard.shutdown(DEADLINE).unwrap();
    let delivered = numbered(&collector);
    // What the deletion took is counted, not delivered.
    let spool = otlp_spool(&handle);
    assert_eq!(
        spool.replayed + spool.corrupt_records,
        100,
        "{spool:?} (delivered {delivered:?})"
    );
    assert!(spool.corrupt_records <= 50, "{spool:?}");
    assert_eq!(spool.records, 0, "{spool:?}");
}
