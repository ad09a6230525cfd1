//! The `Channel` sink when its receiver goes away part way through a batch: the records the
//! receiver was sent are exported, the rest failed. The whole batch was counted failed,
//! records the consumer had received among them (adversary pass 57). And when it goes away
//! with records unread: they count as `lost_after_export`, as soon as the sink thread's next
//! tick.
mod support;

use std::time::Duration;

use support::*;
use tracing_offload::health::HealthStatus;
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

/// A pipeline with a channel sink whose consumer reads 5 of 40 records, then drops its
/// receiver with the other 35 unread, the pipeline idle.
fn a_consumer_leaves_35_unread() -> tracing_offload::Guard {
    let (channel, rx) = Channel::new(64);
    let (layer, guard) = OffloadLayer::builder()
        .backpressure(Backpressure::Block {
            timeout: Duration::from_secs(5),
        })
        .sink(channel)
        .build()
        .unwrap();
    with_layer(layer, || {
        for i in 0..40u64 {
            tracing::info!(i, "for a consumer that reads five");
        }
    });
    guard.handle().flush(DEADLINE).unwrap();
    let received = rx.wait_for(5, DEADLINE);
    assert_eq!(received.len(), 5, "{received:?}");
    drop(rx);
    guard
}

/// Records the channel held, unread, when its receiver was dropped never reached anyone: they
/// were counted exported, and nothing said they were lost (known gap of pass 57). They count
/// as `lost_after_export`, exactly.
#[test]
fn records_left_unread_in_the_channel_count_as_lost_after_export() {
    let guard = a_consumer_leaves_35_unread();
    let handle = guard.handle();
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

/// The loss shows while the pipeline runs, idle, not only once it shuts down: the sink thread
/// asked the sink for it only after an export, a flush after one, or shutdown, so a receiver
/// dropped while idle (a consumer task that ends) left the stats, the metrics and `/health`
/// saying nothing of it for as long as no new record came (adversary pass 61).
#[test]
fn a_receiver_dropped_while_idle_shows_its_loss_before_shutdown() {
    let guard = a_consumer_leaves_35_unread();
    let handle = guard.handle();
    handle.flush(DEADLINE).unwrap();
    // The sink thread wakes at least every flush interval (10 ms).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut lost = 0;
    while std::time::Instant::now() < deadline {
        lost = handle.stats().sink("channel").unwrap().lost_after_export;
        if lost == 35 {
            break;
        }
        std::thread::park_timeout(Duration::from_millis(20));
    }
    let health = handle.health();
    let sink = health.component("sink:channel").unwrap().clone();
    let stats = handle.stats();
    guard.shutdown(DEADLINE).unwrap();
    let after = handle.stats().sink("channel").unwrap().lost_after_export;
    assert_eq!(
        (lost, sink.status == HealthStatus::Healthy),
        (35, false),
        "5 s after the receiver was dropped and a flush: lost_after_export {lost}, health \
         {sink:?} (at shutdown it becomes {after}): {stats:#?}"
    );
}
