//! DropNewest under many producers, a tiny queue and a slow sink: every record is accounted for.
mod support;

use std::time::Duration;

use support::*;
use tracing_offload::{Backpressure, DropReason};

#[test]
fn accounting_is_exact_with_many_producers() {
    for threads in [2u64, 8] {
        let (stats, kept) = flood_from_producers(
            Backpressure::DropNewest,
            Duration::from_micros(200),
            threads,
            5_000,
        );
        assert!(
            stats.dropped_for(DropReason::QueueFullNewest) > 0,
            "{stats:#?}"
        );
        assert_eq!(
            stats.dropped,
            stats.dropped_for(DropReason::QueueFullNewest)
        );
        assert_each_producer_in_order(&kept, threads);
    }
}
