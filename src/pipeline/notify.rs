//! [`Notify`]: threads waiting, with a deadline, for a condition that other threads make true.
//!
//! Used by producers blocked on a full queue (the drain thread makes room), by flush and
//! shutdown (the drain and sink threads make progress) and by the drain thread waiting for room
//! in a sink's buffer. The protocol is checked with loom (`RUSTFLAGS="--cfg loom"`, see
//! `scripts/test`): a notification is never lost.

#[cfg(loom)]
use loom::sync::{Condvar, Mutex};
#[cfg(not(loom))]
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Waiters for a condition; notifiers that made it true wake them.
///
/// The classic condition-variable protocol, which loses no wake-up: a waiter checks the
/// condition **under the lock** and sleeps on the condvar, which releases the lock atomically;
/// a notifier makes the condition true, then takes the lock and notifies. Either the waiter's
/// check came after the notifier's lock (and sees the condition, which was written before it),
/// or the waiter was already asleep when the notification came. An unlocked check first keeps
/// the common case (already true) lock-free; notifiers take the lock once per batch, never per
/// record. Waits are still capped at [`Notify::RECHECK`] as a second line of defence for
/// conditions that change without a `notify` (e.g. a thread that died).
#[derive(Debug, Default)]
pub(crate) struct Notify {
    lock: Mutex<()>,
    cond: Condvar,
}

impl Notify {
    /// The longest a waiter sleeps before checking its condition again.
    pub(crate) const RECHECK: Duration = Duration::from_millis(2);

    /// Waits until `ready()` is true or `deadline` passes; returns whether it became true.
    pub(crate) fn wait_until(&self, deadline: Instant, mut ready: impl FnMut() -> bool) -> bool {
        loop {
            if ready() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            if self.sleep_unless(&mut ready, (deadline - now).min(Self::RECHECK)) {
                return true;
            }
        }
    }

    /// Under the lock: returns true at once if `ready()`, else sleeps (at most `wait`).
    fn sleep_unless(&self, ready: &mut impl FnMut() -> bool, wait: Duration) -> bool {
        let guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if ready() {
            return true;
        }
        #[cfg(not(loom))]
        drop(self.cond.wait_timeout(guard, wait));
        #[cfg(loom)]
        {
            // loom has no time: wait for a notification (a lost one is a deadlock loom reports).
            let _ = wait;
            drop(self.cond.wait(guard));
        }
        false
    }

    /// Wakes every waiter. Call it after making a condition true.
    pub(crate) fn notify(&self) {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.cond.notify_all();
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::{AtomicBool, Ordering};
    use loom::sync::Arc;

    /// A waiter and a notifier racing: the waiter always sees the condition, never sleeps
    /// through the notification (loom reports a deadlock if it could).
    #[test]
    fn loom_no_lost_wakeup() {
        loom::model(|| {
            let notify = Arc::new(Notify::default());
            let flag = Arc::new(AtomicBool::new(false));
            let (n, f) = (notify.clone(), flag.clone());
            let notifier = loom::thread::spawn(move || {
                f.store(true, Ordering::Release);
                n.notify();
            });
            let far = Instant::now() + Duration::from_secs(3600);
            assert!(notify.wait_until(far, || flag.load(Ordering::Acquire)));
            notifier.join().unwrap();
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn a_waiter_wakes_when_notified_and_gives_up_at_the_deadline() {
        let notify = Arc::new(Notify::default());
        let flag = Arc::new(AtomicBool::new(false));
        assert!(
            !notify.wait_until(Instant::now() + Duration::from_millis(5), || flag
                .load(Ordering::SeqCst))
        );
        let (n, f) = (notify.clone(), flag.clone());
        let t = std::thread::spawn(move || {
            f.store(true, Ordering::SeqCst);
            n.notify();
        });
        assert!(
            notify.wait_until(Instant::now() + Duration::from_secs(30), || flag
                .load(Ordering::SeqCst))
        );
        t.join().unwrap();
    }
}
