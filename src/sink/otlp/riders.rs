//! Events that reach the collector only on their span's record (`EventsAsLogs::None`, and
//! `OutsideSpans` for events in a sampled span): "riders". The sink counts each event record
//! `exported` with its batch, as it counts every record its configuration sends nowhere; a
//! rider's delivery is its span's. When the span's record never comes (still open at shutdown,
//! dropped at a full queue) or is not delivered (its request failed), the riders were counted
//! exported and reached nobody: they are counted lost after export, exactly (adversary pass
//! 60: they were counted exported, and nothing said otherwise), through the sink's
//! [`AwaitingDelivery`], which the pipeline also reads when it gives up on the sink (its
//! shutdown deadline passed while it exported, or it panicked). Riders past what their span's
//! record carries were left out by its `span_event_limit`: counted by the pipeline
//! (`span_events_dropped`), not here.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::ids::SpanId;
use crate::sink::AwaitingDelivery;

/// The most spans with riders waiting; past it the oldest span's riders are counted lost (a
/// span that never closes, or whose record was dropped, cannot grow the map).
const MAX_WAITING_SPANS: usize = 65_536;

/// Riders waiting for their span's record, and those on their way with it.
#[derive(Debug, Default)]
pub(super) struct Riders {
    waiting: HashMap<SpanId, u64>,
    /// Spans in the order they got their first rider (may name spans that came since:
    /// compacted when mostly stale).
    order: VecDeque<SpanId>,
    /// Riders taken by their spans' records in the batch under way, not yet settled (counted
    /// down by the requests that fail, which hold the sink only shared).
    in_flight: AtomicU64,
    /// Every rider from its event's export until its delivery or loss (shared with the
    /// pipeline: [`Sink::awaiting_delivery`](crate::sink::Sink::awaiting_delivery)).
    awaiting: Arc<AwaitingDelivery>,
}

impl Riders {
    /// The count of riders still to be delivered, for the pipeline.
    pub(super) fn awaiting(&self) -> Arc<AwaitingDelivery> {
        Arc::clone(&self.awaiting)
    }

    /// An event that rides on `span`'s record.
    pub(super) fn add(&mut self, span: SpanId) {
        self.awaiting.add(1);
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
    /// (lost with it if its request fails: [`lost`](Self::lost); delivered with it otherwise:
    /// [`settle`](Self::settle)). Those it does not carry were left out by the span event
    /// limit, and counted then (`span_events_dropped`): not awaited any more.
    pub(super) fn arrived(&mut self, span: SpanId, carried: usize) -> u64 {
        let riders = self.waiting.remove(&span).unwrap_or(0);
        let taken = riders.min(carried as u64);
        self.awaiting.delivered(riders - taken);
        *self.in_flight.get_mut() += taken;
        taken
    }

    /// `n` riders of the batch under way reached nobody.
    pub(super) fn lost(&self, n: u64) {
        let was = self
            .in_flight
            .fetch_update(Relaxed, Relaxed, |f| Some(f - n.min(f)))
            .unwrap_or(0);
        self.awaiting.lost(n.min(was));
    }

    /// The batch's requests are done: the riders not counted [`lost`](Self::lost) were
    /// delivered with their spans (or spooled with them).
    pub(super) fn settle(&mut self) {
        self.awaiting
            .delivered(std::mem::take(self.in_flight.get_mut()));
    }

    /// The sink stops: the spans still awaited will not come.
    pub(super) fn abandon(&mut self) {
        self.settle();
        let n = self.waiting.drain().map(|(_, n)| n).sum();
        self.order.clear();
        self.awaiting.lost(n);
    }

    fn evict_oldest(&mut self) {
        while let Some(span) = self.order.pop_front() {
            if let Some(n) = self.waiting.remove(&span) {
                self.awaiting.lost(n);
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
        let a = r.awaiting();
        for _ in 0..5 {
            r.add(span(1));
        }
        r.add(span(2));
        assert_eq!(a.awaiting(), 6);
        assert_eq!(r.arrived(span(1), 3), 3, "two past its span event limit");
        assert_eq!(
            (a.awaiting(), a.take_lost()),
            (4, 0),
            "the limit's drops are counted by the pipeline"
        );
        assert_eq!(r.arrived(span(3), 4), 0, "no riders on it");
        r.lost(2);
        r.settle();
        assert_eq!(
            (a.awaiting(), a.take_lost()),
            (1, 2),
            "a failed request's riders lost, the other delivered"
        );
        r.abandon();
        assert_eq!((a.awaiting(), a.take_lost()), (0, 1), "span 2 never came");
        assert_eq!(r.arrived(span(2), 1), 0);
    }

    #[test]
    fn riders_under_way_when_the_pipeline_gives_up_are_lost() {
        let mut r = Riders::default();
        let a = r.awaiting();
        r.add(span(1));
        r.add(span(2));
        assert_eq!(r.arrived(span(1), 1), 1);
        // the request carrying span 1 hangs; shutdown's deadline passes
        assert_eq!(a.close(), 2, "the one under way and the one waiting");
        r.settle();
        r.abandon();
        assert_eq!((a.take_lost(), a.close()), (0, 0), "counted once");
    }

    #[test]
    fn spans_that_never_come_cannot_grow_it() {
        let mut r = Riders::default();
        let spans = MAX_WAITING_SPANS as u64 + 10;
        for n in 0..spans {
            r.add(span(n));
        }
        assert_eq!(r.waiting.len(), MAX_WAITING_SPANS);
        assert_eq!(r.awaiting.take_lost(), 10, "the oldest ten counted lost");
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
