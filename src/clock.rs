//! Time helpers shared by every part of the crate. A leaf module.

use std::time::{Duration, Instant};

/// The instant `timeout` from now, saturating: a timeout too large to add to the clock
/// (`Duration::MAX`, say) means a deadline so far away that it never passes, not a panic.
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    deadline_from(Instant::now(), timeout)
}

/// `start + timeout`, saturating as [`deadline_after`] does.
pub(crate) fn deadline_from(start: Instant, timeout: Duration) -> Instant {
    start
        .checked_add(timeout)
        .unwrap_or_else(|| far_future(start))
}

/// About a century after `start`: later than any deadline this crate waits for.
fn far_future(start: Instant) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    start
        .checked_add(CENTURY)
        .or_else(|| start.checked_add(Duration::from_secs(u32::MAX as u64)))
        .unwrap_or(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_timeout_saturates_instead_of_panicking() {
        let now = Instant::now();
        let far = deadline_from(now, Duration::MAX);
        assert!(far > now + Duration::from_secs(365 * 24 * 3600));
        assert_eq!(
            deadline_from(now, Duration::from_millis(5)),
            now + Duration::from_millis(5)
        );
        assert!(deadline_after(Duration::MAX) > Instant::now());
    }
}
