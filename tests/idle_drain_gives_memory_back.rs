//! Once the sinks are done with records, their memory goes back (their big text freed, the
//! records returned to the pool) even if no other record comes: the drain thread took them
//! back only when its next batch began, so after a burst of big values a quiet pipeline kept
//! them all (100 MB for 1 000 spans with 100 kB fields, still held after seconds; found by an
//! adversary, pass 41). Measured with a global allocator that tracks the bytes live.
mod support;

use support::live_bytes::{live, LiveBytes};
use support::*;
use tracing_offload::sink::Channel;
use tracing_offload::OffloadLayer;

#[global_allocator]
static GLOBAL: LiveBytes = LiveBytes;

const MB: i64 = 1 << 20;

#[test]
fn records_the_sinks_are_done_with_give_their_memory_back_while_the_pipeline_is_quiet() {
    let (channel, received) = Channel::new(1 << 12);
    let (layer, guard) = OffloadLayer::builder()
        .max_field_len(1 << 20)
        .sink(channel)
        .build()
        .unwrap();
    let handle = guard.handle();
    let big = "x".repeat(100 * 1024);
    let before = live();
    let dispatch = tracing::Dispatch::new({
        use tracing_subscriber::prelude::*;
        tracing_subscriber::registry().with(layer)
    });
    // A span that stays open, with an event waiting for it (the channel takes span events):
    // the oldest record shared, still in use, which the drain thread's taking back stopped at
    // (adversary pass 43).
    let main = tracing::dispatcher::with_default(&dispatch, || {
        let main = tracing::info_span!("main");
        main.in_scope(|| tracing::info!("small, waiting for its span"));
        for i in 0..300 {
            tracing::info!(i, big = big.as_str(), "a big value");
        }
        main
    });
    handle.flush(DEADLINE).unwrap();
    let records = received.wait_for(301, DEADLINE);
    assert_eq!(records.len(), 301);
    drop(records); // the sink is done with them
    assert!(live() - before > 20 * MB, "the values were held");
    wait_until(
        "the big values freed with no record coming",
        DEADLINE,
        || live() - before < 5 * MB,
    );
    drop(main);
    guard.shutdown(DEADLINE).unwrap();
}
