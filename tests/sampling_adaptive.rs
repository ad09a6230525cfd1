//! Adaptive sampling: a slow sink drives the queue up, the event rate steps down, and recovers
//! once the load stops; whitelisted records are all delivered throughout.
mod support;

use std::time::Duration;

use support::*;
use tracing_offload::{Backpressure, OffloadLayer, Record};

#[test]
fn the_rate_steps_down_under_load_and_recovers_while_whitelisted_events_all_arrive() {
    let sink = Collect::new("slow").slow(Duration::from_millis(2));
    let (layer, guard) = OffloadLayer::builder()
        .capacity(1_000)
        .batch_size(10)
        .sink_buffer_capacity(10)
        .backpressure(Backpressure::Block {
            timeout: Duration::from_secs(30),
        })
        .sample_adaptive(true)
        .sample_always("audit")
        .sink(sink.clone())
        .build()
        .unwrap();
    let handle = guard.handle();
    let dispatch = dispatch(layer);
    let mut audited = 0u64;
    tracing::dispatcher::with_default(&dispatch, || {
        // Load until the sampler has stepped down at least once.
        let mut i = 0u64;
        while handle.stats().sampling.unwrap().adaptive_step == 0 {
            tracing::info!(i, "bulk");
            if i % 10 == 0 {
                tracing::info!(target: "audit", i, "audited");
                audited += 1;
            }
            i += 1;
            assert!(
                i < 10_000_000,
                "the rate never stepped down: {:#?}",
                handle.stats()
            );
        }
        let s = handle.stats().sampling.unwrap();
        assert!(s.effective_rate < s.configured_rate, "{s:?}");
        for i in 0..2_000u64 {
            tracing::info!(i, "bulk under load");
            tracing::info!(target: "audit", i, "audited under load");
            audited += 1;
        }
    });
    // The load stops: the queue drains and the rate is restored.
    wait_until("the adaptive rate to recover", DEADLINE, || {
        handle.stats().sampling.unwrap().adaptive_step == 0
    });
    let s = handle.stats().sampling.unwrap();
    assert_eq!(s.effective_rate, 1.0);
    assert!(s.adaptive_changes >= 2, "{s:?}");
    guard.shutdown(DEADLINE).unwrap();
    let stats = guard.handle().stats();
    assert!(stats.sampled_out > 0, "some bulk events were sampled out");
    let delivered_audit = sink
        .data()
        .iter()
        .filter(|r| matches!(r, Record::Event(e) if e.metadata().target() == "audit"))
        .count() as u64;
    assert_eq!(delivered_audit, audited, "{stats:#?}");
}
