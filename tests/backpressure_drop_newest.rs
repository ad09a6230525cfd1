//! DropNewest under many producers, a tiny queue and a slow sink: every record is accounted for.
mod support;

use std::time::Duration;

use support::*;
use tracing_offload::{Backpressure, DropReason, OffloadLayer};

#[test]
fn accounting_is_exact_with_many_producers() {
    for threads in [2usize, 8] {
        let sink = Collect::new("slow").slow(Duration::from_micros(200));
        let (layer, guard) = OffloadLayer::builder()
            .capacity(16)
            .batch_size(8)
            .backpressure(Backpressure::DropNewest)
            .sink(sink.clone())
            .build()
            .unwrap();
        let per_thread = 5_000u64;
        produce(layer, threads as u64, per_thread);
        guard.shutdown(DEADLINE).unwrap();
        let stats = guard.handle().stats();
        assert_accounting(&stats, per_thread * threads as u64);
        assert!(
            stats.dropped_for(DropReason::QueueFullNewest) > 0,
            "{stats:#?}"
        );
        assert_eq!(
            stats.dropped,
            stats.dropped_for(DropReason::QueueFullNewest)
        );
        assert_eq!(
            sink.count() as u64,
            stats.sinks[0].exported,
            "the sink got what was counted exported"
        );
        // Per producer, what was kept is in order.
        let mut last = vec![None; threads];
        for (producer, seq) in sink.data().iter().filter_map(seq_of) {
            let slot = &mut last[producer as usize];
            assert!(
                slot.is_none_or(|prev| prev < seq),
                "producer {producer}: {seq} after {slot:?}"
            );
            *slot = Some(seq);
        }
    }
}
