//! Adversary pass 61: `sink::Channel`: records left unread when the receiver is dropped count
//! as `lost_after_export` (commit e7f1fc43) — but the sink thread only asks the sink for that
//! count after an `export`, a `flush` it makes after an export, or `shutdown`. A receiver
//! dropped while the pipeline is idle (the common case: a consumer task ends) leaves the stats,
//! the metrics and `/health` saying nothing of the loss for as long as no new record comes,
//! even after `Handle::flush` returned Ok. README ("Self-observability"): "records counted
//! `exported` that the sink learned since may not have reached their destination … which
//! health shows as a loss for the drop window".
mod support;

use std::time::Duration;

use support::*;
use tracing_offload::health::HealthStatus;
use tracing_offload::sink::Channel;
use tracing_offload::{Backpressure, OffloadLayer};

/// The loss should show while the pipeline runs, not only once it shuts down.
#[test]
fn a_receiver_dropped_while_idle_shows_its_loss_before_shutdown() {
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
    assert_eq!(received.len(), 5);
    drop(rx); // 35 records unread, gone with the channel
    handle.flush(DEADLINE).unwrap();
    // Generous: the sink thread wakes at least every flush interval (10 ms) and each second.
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
