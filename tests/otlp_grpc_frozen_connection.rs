//! A collector that hangs with its connections open (TCP and HTTP/2 up, no request ever
//! answered): over gRPC every request rides the one HTTP/2 connection the channel keeps, so
//! each timed out and the next went the same way, for as long as the process stayed hung, even
//! with healthy replicas behind the same address. After a request times out, the sink now
//! leaves that connection for a new one: the next batch is delivered. So does a sink with a
//! spool, whose replay has connections of its own: they were made once, at start, and a hung
//! collector kept every spooled request waiting for good. (HTTP/1.1 needs nothing: a request
//! that timed out closes its connection.)
#![cfg(feature = "otlp")]

mod support;

use std::time::Duration;

use support::collector::Collector;
use support::freezing::FreezingFront;
use support::*;
use tracing_offload::sink::otlp::{EventsAsLogs, Protocol};
use tracing_offload::sink::Otlp;
use tracing_offload::OffloadLayer;
use tracing_subscriber::prelude::*;

#[test]
fn after_a_request_times_out_on_a_hung_connection_the_next_batch_goes_on_a_new_one() {
    let Some(collector) = Collector::start() else {
        return;
    };
    let front = FreezingFront::start(collector.grpc_port);
    let sink = Otlp::new()
        .endpoint(front.endpoint())
        .protocol(Protocol::Grpc)
        .events_as_logs(EventsAsLogs::None)
        .timeout(Duration::from_millis(800))
        .max_retries(0);
    let (layer, guard) = OffloadLayer::builder().sink(sink).build().unwrap();
    let handle = guard.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let round = |name: &'static str| {
        tracing::dispatcher::with_default(&dispatch, || {
            let _s = tracing::info_span!("round", name).entered();
        });
        handle.flush(DEADLINE).unwrap();
        handle.stats().sink("otlp").unwrap().clone()
    };
    let first = round("first");
    assert_eq!((first.exported, first.failed), (0, 1), "{first:#?}");
    let second = round("second");
    assert_eq!(
        (second.exported, second.failed),
        (1, 1),
        "the second span went on the hung connection too: {second:#?}"
    );
    guard.shutdown(DEADLINE).unwrap();
    let spans = collector.wait_spans(1);
    assert!(spans.iter().any(|s| s.name == "round"), "{spans:#?}");
}

#[test]
fn with_a_spool_the_replay_leaves_a_hung_connection_too() {
    let Some(collector) = Collector::start() else {
        return;
    };
    // The live export's connection and the replay's: both hang.
    let front = FreezingFront::freezing(collector.grpc_port, 2);
    let dir = tempfile::tempdir().unwrap();
    let sink = Otlp::new()
        .endpoint(front.endpoint())
        .protocol(Protocol::Grpc)
        .events_as_logs(EventsAsLogs::None)
        .timeout(Duration::from_millis(800))
        .max_retries(0)
        .spool(dir.path())
        .spool_after(Duration::from_millis(200));
    let (layer, guard) = OffloadLayer::builder().sink(sink).build().unwrap();
    let handle = guard.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    for name in ["first", "second", "third"] {
        tracing::dispatcher::with_default(&dispatch, || {
            let _s = tracing::info_span!("spooled", name).entered();
        });
        handle.flush(DEADLINE).unwrap();
    }
    // Each went live and then to the spool; the replay delivers them all once it left the
    // hung connection (it used to wait on it for good).
    let spans = collector.wait_spans(3);
    assert_eq!(
        spans.iter().filter(|s| s.name == "spooled").count(),
        3,
        "{spans:#?}"
    );
    guard.shutdown(DEADLINE).unwrap();
}
