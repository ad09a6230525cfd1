//! Events that reach the collector only on their span's record (`EventsAsLogs::None`, and
//! `OutsideSpans` for events in a sampled span): "riders". The sink counts each event record
//! `exported` with its batch, as it counts every record its configuration sends nowhere; a
//! rider's delivery is its span's. When the span's record never comes (still open at shutdown,
//! dropped at a full queue) or is not delivered (its request failed), the riders were counted
//! exported and reached nobody: they are counted lost after export
//! ([`Sink::lost_after_export`]), exactly (adversary pass 60: they were counted exported, and
//! nothing said otherwise). Riders past what their span's record carries were left out by its
//! `span_event_limit`: counted by the pipeline (`span_events_dropped`), not here.
//!
//! [`Sink::lost_after_export`]: crate::sink::Sink::lost_after_export

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::ids::SpanId;

/// The most spans with riders waiting; past it the oldest span's riders are counted lost (a
/// span that never closes, or whose record was dropped, cannot grow the map).
const MAX_WAITING_SPANS: usize = 65_536;

/// Riders waiting for their span's record, and those counted lost.
#[derive(Debug, Default)]
pub(super) struct Riders {
    waiting: HashMap<SpanId, u64>,
    /// Spans in the order they got their first rider (may name spans that came since:
    /// compacted when mostly stale).
    order: VecDeque<SpanId>,
    /// Riders lost so far (read by [`Sink::lost_after_export`](crate::sink::Sink::lost_after_export)).
    lost: AtomicU64,
}

impl Riders {
    /// An event that rides on `span`'s record.
    pub(super) fn add(&mut self, span: SpanId) {
        let count = self.waiting.entry(span).or_insert_with(|| {
            self.order.push_back(span);
            0
        });
        *count += 1;
        if self.waiting.len() > MAX_WAITING_SPANS {
            self.evict_oldest();
        }
        if self.order.len() > 2 * self.waiting.len() + 1024 {
            let waiting = &self.waiting;
            self.order.retain(|s| waiting.contains_key(s));
        }
    }

    /// `span`'s record arrived carrying `carried` events: returns how many riders it takes
    /// (lost with it if its request fails: [`lost`](Self::lost)). Those it does not carry were
    /// left out by the span event limit, and counted then (`span_events_dropped`).
    pub(super) fn arrived(&mut self, span: SpanId, carried: usize) -> u64 {
        let riders = self.waiting.remove(&span).unwrap_or(0);
        riders.min(carried as u64)
    }

    /// `n` riders reached nobody.
    pub(super) fn lost(&self, n: u64) {
        self.lost.fetch_add(n, Relaxed);
    }

    /// The sink stops: the spans still awaited will not come.
    pub(super) fn abandon(&mut self) {
        let n = self.waiting.drain().map(|(_, n)| n).sum();
        self.order.clear();
        self.lost(n);
    }

    /// Riders lost so far.
    pub(super) fn total_lost(&self) -> u64 {
        self.lost.load(Relaxed)
    }

    fn evict_oldest(&mut self) {
        while let Some(span) = self.order.pop_front() {
            if let Some(n) = self.waiting.remove(&span) {
                self.lost(n);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(n: u64) -> SpanId {
        SpanId(n.to_be_bytes())
    }

    #[test]
    fn a_span_takes_the_riders_it_carries_and_those_never_carried_are_lost() {
        let mut r = Riders::default();
        for _ in 0..5 {
            r.add(span(1));
        }
        r.add(span(2));
        assert_eq!(r.arrived(span(1), 3), 3, "two past its span event limit");
        assert_eq!(
            r.total_lost(),
            0,
            "the limit's drops are counted by the pipeline"
        );
        assert_eq!(r.arrived(span(3), 4), 0, "no riders on it");
        r.lost(3);
        assert_eq!(r.total_lost(), 3, "a failed request's riders");
        r.abandon();
        assert_eq!(r.total_lost(), 4, "span 2 never came");
        assert_eq!(r.arrived(span(2), 1), 0);
    }

    #[test]
    fn spans_that_never_come_cannot_grow_it() {
        let mut r = Riders::default();
        let spans = MAX_WAITING_SPANS as u64 + 10;
        for n in 0..spans {
            r.add(span(n));
        }
        assert_eq!(r.waiting.len(), MAX_WAITING_SPANS);
        assert_eq!(r.total_lost(), 10, "the oldest ten counted lost");
        assert_eq!(r.arrived(span(0), 1), 0, "evicted: lost already");
        assert_eq!(r.arrived(span(spans - 1), 1), 1);
        // Spans that come as fast as they go leave `order` bounded.
        for n in spans..spans + 100_000 {
            r.add(span(n));
            r.arrived(span(n), 1);
        }
        assert!(
            r.order.len() <= 2 * r.waiting.len() + 1024,
            "{}",
            r.order.len()
        );
    }
}
