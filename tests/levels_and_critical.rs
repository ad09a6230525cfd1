//! The LogLevel taxonomy on real events: tracing levels map, `critical = true` and critical
//! targets make Critical, and critical records take the blocking path even under DropNewest.
mod support;

use std::time::Duration;

use support::*;
use tracing_offload::{Backpressure, DropReason, LogLevel, OffloadLayer, Record};

fn levels(records: &[Record]) -> Vec<LogLevel> {
    records.iter().map(Record::level).collect()
}

#[test]
fn events_get_taxonomy_levels() {
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder()
        .critical_target("payments::")
        .sink(sink.clone())
        .build()
        .unwrap();
    with_layer(layer, || {
        tracing::trace!("t");
        tracing::debug!("d");
        tracing::info!("i");
        tracing::warn!("w");
        tracing::error!("e");
        tracing::error!(critical = true, "c by field");
        tracing::error!(critical = false, "not critical");
        tracing::error!(target: "payments::ledger", "c by target");
        tracing::warn!(target: "payments::ledger", "a warning stays a warning");
    });
    guard.shutdown(DEADLINE).unwrap();
    use LogLevel::*;
    assert_eq!(
        levels(&sink.data()),
        [Trace, Debug, Info, Warning, Error, Critical, Error, Critical, Warning]
    );
}

#[test]
fn critical_records_wait_for_room_under_drop_newest() {
    let sink = Collect::new("collect").slow(Duration::from_millis(1));
    let (layer, guard) = OffloadLayer::builder()
        .capacity(2)
        .batch_size(1)
        .sink_buffer_capacity(1 << 16)
        .backpressure(Backpressure::DropNewest)
        .critical_block_timeout(Duration::from_secs(10))
        .sink(sink.clone())
        .build()
        .unwrap();
    with_layer(layer, || {
        for seq in 0..200u64 {
            tracing::info!(producer = 0u64, seq, "filler");
            tracing::error!(producer = 1u64, seq, critical = true, "must arrive");
        }
    });
    guard.shutdown(DEADLINE).unwrap();
    let stats = guard.handle().stats();
    assert_accounting(&stats, 400);
    let critical = sink
        .data()
        .iter()
        .filter(|r| r.level() == LogLevel::Critical)
        .count();
    assert_eq!(critical, 200, "{stats:#?}");
    assert_eq!(stats.dropped_for(DropReason::BlockTimeout), 0);
}
