//! [`AwaitingDelivery`]: records a sink counted exported whose delivery is still to come.

use std::sync::{Mutex, MutexGuard};

/// Records a sink counted exported whose delivery still depends on records it has not sent:
/// the OTLP sink's events that reach the collector only on their span's record
/// (`EventsAsLogs::None`, `OutsideSpans`), counted exported with their batch while the span
/// is still open. A sink that has such records keeps their count here and gives the pipeline
/// this count through [`Sink::awaiting_delivery`](super::Sink::awaiting_delivery).
///
/// Each record [added](Self::add) ends as [delivered](Self::delivered) or [lost](Self::lost);
/// the sink thread counts the lost ones in the sink's `lost_after_export`. When the pipeline
/// gives up on the sink (shutdown's deadline passed while it was still exporting, or it
/// panicked and was disabled), the records still awaiting delivery then are counted lost too:
/// they will reach nobody. After that, nothing more is counted.
///
/// ```
/// use tracing_offload::sink::AwaitingDelivery;
///
/// let awaiting = AwaitingDelivery::default();
/// awaiting.add(3); // three events, sent only with their span, counted exported
/// awaiting.delivered(2); // the span's request went through, carrying two of them
/// awaiting.lost(1); // the third's span was refused
/// assert_eq!(awaiting.awaiting(), 0);
/// ```
#[derive(Debug, Default)]
pub struct AwaitingDelivery {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Records whose delivery is still to come.
    awaiting: u64,
    /// Records lost, not yet counted by the sink thread.
    lost: u64,
    /// The pipeline gave up on the sink: its counts are final.
    closed: bool,
}

impl AwaitingDelivery {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `n` records were counted exported whose delivery is still to come.
    pub fn add(&self, n: u64) {
        let mut s = self.state();
        s.awaiting = s.awaiting.saturating_add(n);
    }

    /// `n` of the records awaiting delivery reached their destination.
    pub fn delivered(&self, n: u64) {
        let mut s = self.state();
        s.awaiting = s.awaiting.saturating_sub(n);
    }

    /// `n` of the records awaiting delivery reached nobody: counted lost after export.
    pub fn lost(&self, n: u64) {
        let mut s = self.state();
        let n = n.min(s.awaiting);
        s.awaiting -= n;
        s.lost += n;
    }

    /// The records awaiting delivery now.
    pub fn awaiting(&self) -> u64 {
        self.state().awaiting
    }

    /// The records lost since the last call, for the sink thread to count in
    /// `lost_after_export`: each lost record is returned once, by this or by
    /// [`close`](Self::close), whichever thread calls them.
    pub(crate) fn take_lost(&self) -> u64 {
        let mut s = self.state();
        if s.closed {
            return 0;
        }
        std::mem::take(&mut s.lost)
    }

    /// The pipeline gave up on the sink: returns the records lost and not yet taken, and those
    /// still awaiting delivery, to count lost; nothing is returned after.
    pub(crate) fn close(&self) -> u64 {
        let mut s = self.state();
        if s.closed {
            return 0;
        }
        s.closed = true;
        std::mem::take(&mut s.lost) + std::mem::take(&mut s.awaiting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_counts_what_awaits_and_what_was_not_taken_once() {
        let a = AwaitingDelivery::default();
        a.add(10);
        a.delivered(3);
        a.lost(2);
        assert_eq!(a.take_lost(), 2);
        assert_eq!(a.take_lost(), 0, "taken once");
        a.lost(1);
        assert_eq!(
            a.close(),
            1 + 4,
            "the untaken loss and the four still awaiting"
        );
        a.add(5);
        a.lost(5);
        assert_eq!((a.take_lost(), a.close()), (0, 0), "nothing after closing");
    }

    #[test]
    fn more_lost_or_delivered_than_awaited_is_bounded() {
        let a = AwaitingDelivery::default();
        a.add(2);
        a.lost(5);
        a.delivered(9);
        assert_eq!(a.awaiting(), 0);
        assert_eq!(a.take_lost(), 2);
    }
}
