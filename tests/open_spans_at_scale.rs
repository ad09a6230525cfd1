//! Many open spans: stats and health read their count and the oldest one's age from a fixed
//! number of counters (no lock the hot path takes, no scan of the spans' history), and once the
//! spans close, nothing of them is left.
mod support;

use std::time::Duration;

use support::*;
use tracing_offload::OffloadLayer;

#[test]
fn a_million_open_spans_are_counted_and_forgotten() {
    let (layer, guard) = OffloadLayer::builder().capacity(1 << 20).build().unwrap();
    let handle = guard.handle();
    let dispatch = dispatch(layer);
    // A poller reads stats the whole time: it never waits for span creation, nor the reverse.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (handle, stop) = (handle.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut polls = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let s = handle.stats();
                assert!(s.open_spans <= 1_000_000);
                polls += 1;
            }
            polls
        })
    };
    tracing::dispatcher::with_default(&dispatch, || {
        let spans: Vec<_> = (0..1_000_000u64)
            .map(|i| tracing::info_span!("open", i))
            .collect();
        let s = handle.stats();
        assert_eq!(s.open_spans, 1_000_000);
        assert!(s.oldest_open_span_age.is_some());
        drop(spans);
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(poller.join().unwrap() > 0);
    let s = handle.stats();
    assert_eq!(s.open_spans, 0);
    assert_eq!(s.oldest_open_span_age, None);
    guard.shutdown(Duration::from_secs(60)).unwrap();
}
