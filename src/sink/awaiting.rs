//! [`AwaitingDelivery`]: records a sink counted exported whose delivery is still to come.

use std::sync::{Mutex, MutexGuard};
use std::thread::ThreadId;

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
/// What the sink says on its own thread during an export counts with the batch's outcome: if
/// the pipeline gives up on the sink before that (shutdown's deadline, a panic), the batch is
/// counted dropped, records added during the export included, and they are not counted lost
/// as well. What it says during a flush or its shutdown counts when the call ends (also when
/// it panics), and what it says on other threads at once. Each sink has its own count: one
/// shared by two sinks mixes their records.
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
    /// The sink thread, while a call to the sink is under way: what the sink says there waits
    /// in `pending` until the call's outcome counts.
    in_call: Option<ThreadId>,
    pending: Pending,
}

thread_local! {
    static THREAD: ThreadId = std::thread::current().id();
}

/// The current thread's id (cached: `thread::current` clones a handle).
fn this_thread() -> Option<ThreadId> {
    THREAD.try_with(|t| *t).ok()
}

/// What a sink said during a call to it that has not returned yet.
#[derive(Debug, Default)]
struct Pending {
    added: u64,
    delivered: u64,
    lost: u64,
}

impl State {
    fn add(&mut self, n: u64) {
        self.awaiting = self.awaiting.saturating_add(n);
    }

    fn delivered(&mut self, n: u64) {
        self.awaiting = self.awaiting.saturating_sub(n);
    }

    fn lost(&mut self, n: u64) {
        let n = n.min(self.awaiting);
        self.awaiting -= n;
        self.lost += n;
    }
}

impl AwaitingDelivery {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state, and whether what is said now waits for the call under way on this thread.
    fn said(&self) -> (MutexGuard<'_, State>, bool) {
        let s = self.state();
        let journal = s.in_call.is_some() && s.in_call == this_thread();
        (s, journal)
    }

    /// `n` records were counted exported whose delivery is still to come (records of the
    /// batch being exported: they count once the export returns).
    pub fn add(&self, n: u64) {
        let (mut s, journal) = self.said();
        if journal {
            s.pending.added = s.pending.added.saturating_add(n);
        } else {
            s.add(n);
        }
    }

    /// `n` of the records awaiting delivery reached their destination.
    pub fn delivered(&self, n: u64) {
        let (mut s, journal) = self.said();
        if journal {
            s.pending.delivered = s.pending.delivered.saturating_add(n);
        } else {
            s.delivered(n);
        }
    }

    /// `n` of the records awaiting delivery reached nobody: counted lost after export.
    pub fn lost(&self, n: u64) {
        let (mut s, journal) = self.said();
        if journal {
            s.pending.lost = s.pending.lost.saturating_add(n);
        } else {
            s.lost(n);
        }
    }

    /// The records awaiting delivery now (as of the last call to the sink that returned).
    pub fn awaiting(&self) -> u64 {
        self.state().awaiting
    }

    /// A call to the sink begins: what it says counts when it returns ([`commit`]).
    ///
    /// [`commit`]: Self::commit
    pub(crate) fn begin(&self) {
        let mut s = self.state();
        s.in_call = this_thread();
        s.pending = Pending::default();
    }

    /// The call's outcome counts: what the sink said during it counts too (its additions
    /// first). Nothing once closed.
    pub(crate) fn commit(&self) {
        let mut s = self.state();
        s.in_call = None;
        let p = std::mem::take(&mut s.pending);
        if s.closed {
            return;
        }
        s.add(p.added);
        s.delivered(p.delivered);
        s.lost(p.lost);
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
        // What an export given up on said is not counted: its batch was counted dropped.
        s.in_call = None;
        s.pending = Pending::default();
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
    fn what_a_call_that_never_returns_says_is_not_counted() {
        let a = AwaitingDelivery::default();
        a.add(4);
        a.begin();
        a.add(10); // the batch under way: counted dropped if the pipeline gives up
        a.lost(1); // an earlier one, whose span was in this batch
        assert_eq!(a.awaiting(), 4, "nothing counts before the call returns");
        assert_eq!(a.close(), 4, "the four of earlier batches, once");
        let b = AwaitingDelivery::default();
        b.begin();
        b.add(3);
        b.lost(3); // added and lost in one call
        b.commit();
        assert_eq!((b.awaiting(), b.take_lost()), (0, 3));
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
