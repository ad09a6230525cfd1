//! Counting primitives: counters striped per thread over cache-padded atomics, drop counts by
//! reason, and a fixed-bucket latency histogram. A leaf module (it knows only [`DropReason`]).
//!
//! Every update is a `Relaxed` atomic add: a counter carries no data between threads, it only
//! counts. A read sums the stripes one by one, so it may miss increments made while it reads;
//! what keeps a snapshot's sums consistent is the order in which the snapshot reads whole
//! counters (see `stats.rs`), not the memory ordering.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use serde::Serialize;

use crate::record::DropReason;

/// Upper bounds (seconds) of the export-latency histogram buckets; a last bucket is unbounded.
pub const LATENCY_BUCKETS_SECONDS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 10.0,
];

/// Stripes per counter: a power of two, at least the number of cores we expect to share one.
const STRIPES: usize = 8;

thread_local! {
    /// This thread's stripe, assigned round-robin on first use.
    static STRIPE: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

#[inline]
fn my_stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    STRIPE.with(|s| {
        let mut i = s.get();
        if i == usize::MAX {
            i = NEXT.fetch_add(1, Relaxed) % STRIPES;
            s.set(i);
        }
        i
    })
}

/// A counter striped over cache-padded atomics: each thread adds to its own stripe, so threads
/// counting at once do not fight over one cache line; reading sums the stripes.
#[derive(Debug, Default)]
pub(crate) struct Counter([CachePadded<AtomicU64>; STRIPES]);

impl Counter {
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0[my_stripe()].fetch_add(n, Relaxed);
    }

    /// Adds one; returns this thread's stripe's previous value (for "every N" decisions).
    #[inline]
    pub(crate) fn incr(&self) -> u64 {
        self.0[my_stripe()].fetch_add(1, Relaxed)
    }

    #[inline]
    pub(crate) fn get(&self) -> u64 {
        self.0.iter().map(|s| s.load(Relaxed)).sum()
    }
}

/// Drop counts by reason.
#[derive(Debug, Default)]
pub(crate) struct DropCounters([Counter; DropReason::ALL.len()]);

impl DropCounters {
    #[inline]
    pub(crate) fn add(&self, reason: DropReason, n: u64) {
        self.0[reason.index()].add(n);
    }

    pub(crate) fn get(&self, reason: DropReason) -> u64 {
        self.0[reason.index()].get()
    }

    pub(crate) fn total(&self) -> u64 {
        self.0.iter().map(Counter::get).sum()
    }

    pub(crate) fn snapshot(&self) -> Vec<(DropReason, u64)> {
        DropReason::ALL.iter().map(|r| (*r, self.get(*r))).collect()
    }
}

/// A fixed-bucket latency histogram in atomics.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_SECONDS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub(crate) fn record(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS_SECONDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS_SECONDS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_nanos
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> LatencyHistogram {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        LatencyHistogram {
            bounds_seconds: LATENCY_BUCKETS_SECONDS.to_vec(),
            count: counts.iter().sum(),
            counts,
            sum_seconds: self.sum_nanos.load(Relaxed) as f64 / 1e9,
        }
    }
}

/// A latency histogram: counts per bucket (not cumulative), the last bucket unbounded.
#[derive(Clone, Debug, Serialize)]
pub struct LatencyHistogram {
    /// Upper bounds of the buckets in seconds ([`LATENCY_BUCKETS_SECONDS`]).
    pub bounds_seconds: Vec<f64>,
    /// Observations per bucket; one more entry than `bounds_seconds` (the `+Inf` bucket).
    pub counts: Vec<u64>,
    /// Number of observations.
    pub count: u64,
    /// Sum of all observations in seconds.
    pub sum_seconds: f64,
}

impl LatencyHistogram {
    /// The upper bound of the bucket holding quantile `q` (0.0..=1.0); `None` when empty or in
    /// the unbounded bucket.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return self.bounds_seconds.get(i).copied();
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_and_quantiles() {
        let h = Histogram::default();
        for _ in 0..90 {
            h.record(Duration::from_micros(80));
        }
        for _ in 0..10 {
            h.record(Duration::from_millis(40));
        }
        let s = h.snapshot();
        assert_eq!(s.count, 100);
        assert_eq!(s.quantile(0.5), Some(0.000_1));
        assert_eq!(s.quantile(0.99), Some(0.05));
        assert!((s.sum_seconds - (90.0 * 80e-6 + 0.4)).abs() < 1e-9);
        h.record(Duration::from_secs(60));
        assert_eq!(h.snapshot().quantile(1.0), None);
    }
}
