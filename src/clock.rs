//! Time helpers shared by every part of the crate. A leaf module.
//!
//! The calling thread reads only a raw monotonic [`Tick`] (the CPU's time-stamp counter where it
//! is reliable, through `quanta`; the OS's monotonic clock otherwise): a few nanoseconds, no
//! system call, no conversion. The drain thread turns ticks into wall-clock time with a
//! [`WallClock`] anchor it refreshes every batch, so wall-clock adjustments (NTP) are followed.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

/// The calibrated clock behind every [`Tick`], made once per process.
#[inline]
fn source() -> &'static quanta::Clock {
    static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

/// Calibrates the clock now (it can take up to a few hundred milliseconds the first time), so
/// that no application thread pays for it. Called when a pipeline is built.
pub(crate) fn warm_up() {
    let _ = source();
}

/// A raw monotonic reading, cheap to take on the calling thread; only differences and
/// [`WallClock::system_time`] give it meaning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Tick(u64);

impl Tick {
    /// The current reading.
    #[inline]
    pub(crate) fn now() -> Tick {
        Tick(source().raw())
    }

    /// A reading of `raw` (for tests).
    #[cfg(test)]
    pub(crate) fn from_raw(raw: u64) -> Tick {
        Tick(raw)
    }

    /// The raw reading.
    #[inline]
    pub(crate) fn raw(self) -> u64 {
        self.0
    }

    /// The raw distance from `earlier` to `self` (0 if `earlier` is later), in raw units: add
    /// them up with [`RawSpan`], convert once with [`RawSpan::duration`].
    #[inline]
    pub(crate) fn since(self, earlier: Tick) -> RawSpan {
        RawSpan(self.0.saturating_sub(earlier.0))
    }
}

/// A sum of raw tick distances (busy or idle time), converted to a [`Duration`] off the hot path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RawSpan(u64);

impl RawSpan {
    pub(crate) fn from_raw(raw: u64) -> Self {
        RawSpan(raw)
    }

    #[inline]
    pub(crate) fn add(&mut self, other: RawSpan) {
        self.0 = self.0.saturating_add(other.0);
    }

    /// What is left of `self` after `other` (0 if `other` is longer).
    pub(crate) fn saturating_sub(self, other: RawSpan) -> RawSpan {
        RawSpan(self.0.saturating_sub(other.0))
    }

    pub(crate) fn duration(self) -> Duration {
        Duration::from_nanos(source().delta_as_nanos(0, self.0))
    }
}

/// Converts ticks to wall-clock time from one (tick, `SystemTime`) pair taken together.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WallClock {
    tick: Tick,
    /// The anchor's wall-clock time, in nanoseconds since the Unix epoch (0 before it).
    unix_nanos: u64,
}

impl WallClock {
    /// An anchor taken now.
    pub(crate) fn now() -> Self {
        WallClock {
            tick: Tick::now(),
            unix_nanos: unix_nanos(SystemTime::now()),
        }
    }

    /// The wall-clock time of `tick` (earlier or later than the anchor), in nanoseconds since
    /// the Unix epoch: an addition, where `SystemTime`'s arithmetic checks and normalises
    /// seconds and nanoseconds (the drain thread converts every record).
    #[inline]
    pub(crate) fn unix_nanos(&self, tick: Tick) -> u64 {
        if tick <= self.tick {
            let back = source().delta_as_nanos(tick.0, self.tick.0);
            self.unix_nanos.saturating_sub(back)
        } else {
            let ahead = source().delta_as_nanos(self.tick.0, tick.0);
            self.unix_nanos.saturating_add(ahead)
        }
    }

    /// [`unix_nanos`](Self::unix_nanos) as a `SystemTime`.
    #[cfg(test)]
    pub(crate) fn system_time(&self, tick: Tick) -> SystemTime {
        from_unix_nanos(self.unix_nanos(tick))
    }
}

/// Nanoseconds since the Unix epoch: 0 before it, `u64::MAX` after 2554.
pub(crate) fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The time `nanos` nanoseconds after the Unix epoch.
#[inline]
pub(crate) fn from_unix_nanos(nanos: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos)
}

/// The monotonic time from `start` to `end` (zero if `end` is earlier).
pub(crate) fn between(start: Tick, end: Tick) -> Duration {
    Duration::from_nanos(source().delta_as_nanos(start.0, end.0))
}

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
    fn ticks_convert_to_wall_clock_time_and_durations() {
        let before = SystemTime::now();
        let start = Tick::now();
        std::thread::sleep(Duration::from_millis(20)); // real time must pass: not a wait on a condition
        let end = Tick::now();
        let anchor = WallClock::now();
        let after = SystemTime::now();
        let measured = between(start, end);
        assert!(measured >= Duration::from_millis(15), "{measured:?}");
        assert!(measured < Duration::from_secs(5), "{measured:?}");
        let wall = anchor.system_time(start);
        // Within the calibration's error of the real start.
        let slack = Duration::from_millis(5);
        assert!(
            wall + slack >= before && wall <= after,
            "{wall:?} {before:?} {after:?}"
        );
        assert_eq!(between(end, start), Duration::ZERO);
        let mut busy = RawSpan::default();
        busy.add(end.since(start));
        busy.add(start.since(end)); // earlier: nothing
        assert_eq!(busy.duration(), measured);
    }

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
