//! The `Channel` sink when its receiver goes away part way through a batch: the records the
//! receiver was sent are exported, the rest failed. The whole batch was counted failed,
//! records the consumer had received among them (adversary pass 57).
mod support;

use std::time::Duration;

use support::*;
use tracing_offload::sink::Channel;
use tracing_offload::{Backpressure, OffloadLayer};

#[test]
fn records_sent_before_the_receiver_went_away_count_as_exported() {
    let (channel, rx) = Channel::new(1);
    let (layer, guard) = OffloadLayer::builder()
        .batch_size(1024)
        .backpressure(Backpressure::Block {
            timeout: Duration::from_secs(5),
        })
        .sink(channel)
        .build()
        .unwrap();
    let handle = guard.handle();
    // The consumer takes 5 records (one batch is then part way through), then goes away.
    let consumer = std::thread::spawn(move || {
        (0..5)
            .filter(|_| rx.recv_timeout(DEADLINE).is_some())
            .count() as u64
    });
    with_layer(layer, || {
        for i in 0..200u64 {
            tracing::info!(i, "for a consumer that leaves");
        }
    });
    let received = consumer.join().unwrap();
    assert_eq!(received, 5);
    guard.shutdown(DEADLINE).unwrap();
    let stats = handle.stats();
    assert_accounting(&stats, 200);
    let c = stats.sink("channel").unwrap();
    assert_eq!(c.forwarded, c.exported + c.failed + c.dropped, "{c:#?}");
    assert!(
        c.exported >= received,
        "{received} records reached the consumer, {} counted exported: {c:#?}",
        c.exported
    );
    assert!(c.failed > 0, "{c:#?}");
}

/// Records the channel held, unread, when its receiver was dropped never reached anyone: they
/// were counted exported, and nothing said they were lost (known gap of pass 57). They count
/// as `lost_after_export`, exactly.
#[test]
fn records_left_unread_in_the_channel_count_as_lost_after_export() {
    let (channel, rx) = Channel::new(64);
    let (layer, guard) = OffloadLayer::builder()
        .backpressure(Backpressure::Block {
            timeout: Duration::from_secs(5),
        })
        .sink(channel)
        .build()
        .unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        for i in 0..40u64 {
            tracing::info!(i, "for a consumer that reads five");
        }
    });
    handle.flush(DEADLINE).unwrap();
    let received = rx.wait_for(5, DEADLINE);
    assert_eq!(received.len(), 5, "{received:?}");
    drop(rx);
    guard.shutdown(DEADLINE).unwrap();
    let stats = handle.stats();
    assert_accounting(&stats, 40);
    let c = stats.sink("channel").unwrap();
    assert_eq!(c.exported, 40, "the channel held them all: {c:#?}");
    assert_eq!(
        c.lost_after_export, 35,
        "35 records were never read: {c:#?}"
    );
}
