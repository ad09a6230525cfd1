//! Events that travel to the collector only on their span's record (`EventsAsLogs::None`):
//! when the span's request goes to the spool, the events go with it; when the spool then loses
//! that request (evicted past its budget), the events reached nobody, and the sink counts them
//! `lost_after_export`, as it does when the span's request fails outright. They were counted
//! delivered with the spooled span, and the spool counted only the span evicted. README: "every
//! record enqueued ends, at each sink, as exported, spooled, failed or dropped with a reason".
#![cfg(feature = "otlp")]
mod support;

use support::collector::free_port;
use support::*;
use tracing_offload::sink::otlp::{EventsAsLogs, MIN_SPOOL_MAX_BYTES};
use tracing_offload::OffloadLayer;

const SPANS: u64 = 3_000;

#[test]
fn events_on_spans_the_spool_evicts_are_counted_lost_after_export() {
    let dir = tempfile::tempdir().unwrap();
    // A port where nothing listens: every request goes to a spool far too small for them.
    let sink = spooling_sink(
        format!("http://127.0.0.1:{}", free_port()),
        "offload-spool-riders",
        dir.path(),
    )
    .max_export_batch_size(20)
    .spool_max_bytes(MIN_SPOOL_MAX_BYTES)
    .events_as_logs(EventsAsLogs::None);
    let (layer, guard) = OffloadLayer::builder().sink(sink).build().unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        for i in 0..SPANS {
            // One event in each span: it travels on the span's record.
            tracing::info_span!("work", i).in_scope(|| tracing::info!("step"));
        }
    });
    handle.flush(DEADLINE).unwrap();
    let stats = handle.stats();
    let s = stats.sink("otlp").unwrap();
    let spool = s.spool.clone().unwrap();
    assert_eq!(
        (s.spooled, s.exported, s.failed, s.dropped),
        (SPANS, SPANS, 0, 0),
        "the spans spooled, their events counted exported with them: {s:#?}"
    );
    assert!(spool.evicted > 0, "{spool:#?}");
    assert_eq!(
        s.lost_after_export, spool.evicted,
        "each evicted span carried one event, which reached nobody: {s:#?}"
    );
    guard.shutdown(DEADLINE).unwrap();
    let s = handle.stats();
    let s = s.sink("otlp").unwrap();
    let spool = s.spool.clone().unwrap();
    assert_eq!(
        s.lost_after_export, spool.evicted,
        "shutdown leaves the rest in the spool, its events with them: {s:#?}"
    );
}
