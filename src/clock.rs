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
    /// The anchor's wall-clock time.
    wall: WallTime,
}

impl WallClock {
    /// An anchor taken now.
    pub(crate) fn now() -> Self {
        WallClock::at(Tick::now(), SystemTime::now())
    }

    /// An anchor: `tick` was read at `system`.
    pub(crate) fn at(tick: Tick, system: SystemTime) -> Self {
        WallClock {
            tick,
            wall: WallTime::from_system(system),
        }
    }

    /// The wall-clock time of `tick` (earlier or later than the anchor): an addition with a
    /// carry, where `SystemTime`'s arithmetic checks and normalises more (the drain thread
    /// converts every record).
    #[inline]
    pub(crate) fn wall_time(&self, tick: Tick) -> WallTime {
        if tick <= self.tick {
            self.wall
                .minus_nanos(source().delta_as_nanos(tick.0, self.tick.0))
        } else {
            self.wall
                .plus_nanos(source().delta_as_nanos(self.tick.0, tick.0))
        }
    }

    /// [`wall_time`](Self::wall_time) as a `SystemTime`.
    #[cfg(test)]
    pub(crate) fn system_time(&self, tick: Tick) -> SystemTime {
        self.wall_time(tick).to_system()
    }
}

/// A wall-clock time as seconds since the Unix epoch (negative before it) and nanoseconds
/// into the second: what `SystemTime` holds on Unix, in a form a record stores and a sink
/// formats without `SystemTime`'s checked arithmetic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct WallTime {
    secs: i64,
    /// Always below one second.
    nanos: u32,
}

const NANOS_PER_SEC: u64 = 1_000_000_000;

impl WallTime {
    /// The Unix epoch.
    pub(crate) const EPOCH: WallTime = WallTime { secs: 0, nanos: 0 };

    /// The latest time held.
    pub(crate) const MAX: WallTime = WallTime {
        secs: i64::MAX,
        nanos: 999_999_999,
    };

    /// The earliest time held.
    pub(crate) const MIN: WallTime = WallTime {
        secs: i64::MIN,
        nanos: 0,
    };

    /// `t`, whatever side of the epoch it is on (a time beyond ±2⁶³ seconds, which no system
    /// clock reads, is held at that bound).
    pub(crate) fn from_system(t: SystemTime) -> Self {
        match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => match i64::try_from(d.as_secs()) {
                Ok(secs) => WallTime {
                    secs,
                    nanos: d.subsec_nanos(),
                },
                Err(_) => WallTime::MAX,
            },
            Err(before) => {
                let d = before.duration();
                // -2⁶³ seconds itself is in range: negate in 128 bits.
                let secs = i64::try_from(-i128::from(d.as_secs())).unwrap_or(i64::MIN);
                match (d.subsec_nanos(), secs.checked_sub(1)) {
                    (0, _) => WallTime { secs, nanos: 0 },
                    (n, Some(secs)) => WallTime {
                        secs,
                        nanos: 1_000_000_000 - n,
                    },
                    (_, None) => WallTime::MIN,
                }
            }
        }
    }

    /// As a `SystemTime` (the epoch for a time the platform's `SystemTime` cannot hold).
    pub(crate) fn to_system(self) -> SystemTime {
        let epoch = SystemTime::UNIX_EPOCH;
        let t = if self.secs >= 0 {
            epoch.checked_add(Duration::new(self.secs.unsigned_abs(), self.nanos))
        } else {
            epoch
                .checked_sub(Duration::from_secs(self.secs.unsigned_abs()))
                .and_then(|t| t.checked_add(Duration::from_nanos(u64::from(self.nanos))))
        };
        t.unwrap_or(epoch)
    }

    /// `n` nanoseconds later (at most [`MAX`](Self::MAX)).
    #[inline]
    pub(crate) fn plus_nanos(self, n: u64) -> WallTime {
        let nanos = u64::from(self.nanos) + n % NANOS_PER_SEC;
        let carry = u64::from(nanos >= NANOS_PER_SEC);
        match self.secs.checked_add((n / NANOS_PER_SEC + carry) as i64) {
            Some(secs) => WallTime {
                secs,
                nanos: (nanos - carry * NANOS_PER_SEC) as u32,
            },
            None => WallTime::MAX,
        }
    }

    /// `n` nanoseconds earlier (at least [`MIN`](Self::MIN)).
    #[inline]
    pub(crate) fn minus_nanos(self, n: u64) -> WallTime {
        let sub = (n % NANOS_PER_SEC) as u32;
        let borrow = self.nanos < sub;
        match self
            .secs
            .checked_sub((n / NANOS_PER_SEC) as i64 + i64::from(borrow))
        {
            Some(secs) => WallTime {
                secs,
                nanos: if borrow {
                    self.nanos + 1_000_000_000 - sub
                } else {
                    self.nanos - sub
                },
            },
            None => WallTime::MIN,
        }
    }

    /// `d` later (at most [`MAX`](Self::MAX)).
    #[inline]
    pub(crate) fn plus(self, d: Duration) -> WallTime {
        self.plus_nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    /// The time `secs` seconds after the epoch (before it when negative).
    pub(crate) fn from_secs(secs: i64) -> WallTime {
        WallTime { secs, nanos: 0 }
    }

    /// Whole seconds since the epoch (negative before it).
    #[inline]
    pub(crate) fn secs(self) -> i64 {
        self.secs
    }

    /// Microseconds into the second.
    #[inline]
    pub(crate) fn subsec_micros(self) -> u32 {
        self.nanos / 1_000
    }
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

    /// Times on both sides of the epoch, far ones included (a `u64` of nanoseconds holds 1970
    /// to 2554 only).
    fn times() -> Vec<SystemTime> {
        let epoch = SystemTime::UNIX_EPOCH;
        let mut v = vec![epoch];
        for secs in [0, 1, 86_399, 1_700_000_000, 18_446_744_073, 20_000_000_000] {
            for nanos in [0, 1, 999_999_999, 500_000_000] {
                let d = Duration::new(secs, nanos);
                v.push(epoch + d);
                v.push(epoch - d);
            }
        }
        v
    }

    #[test]
    fn wall_times_hold_any_system_time_and_add_like_it() {
        let steps = [
            0,
            1,
            999_999_999,
            1_000_000_000,
            1_500_000_001,
            86_400_000_000_123,
        ];
        for t in times() {
            let w = WallTime::from_system(t);
            assert_eq!(w.to_system(), t, "{t:?}");
            assert!(w.nanos < 1_000_000_000);
            for n in steps {
                let d = Duration::from_nanos(n);
                assert_eq!(w.plus_nanos(n).to_system(), t + d, "{t:?} + {n}");
                assert_eq!(w.plus(d), w.plus_nanos(n));
                assert_eq!(w.minus_nanos(n).to_system(), t - d, "{t:?} - {n}");
            }
        }
    }

    /// At the ends of the range, moving a time never takes it the other way (a span's end
    /// before its start), and the earliest whole second is held as it is (adversary pass 25).
    #[test]
    fn wall_times_saturate_at_the_ends_of_their_range() {
        let last = WallTime {
            secs: i64::MAX,
            nanos: 999_999_000,
        };
        assert_eq!(last.plus_nanos(2_000), WallTime::MAX);
        assert_eq!(WallTime::MAX.plus_nanos(u64::MAX), WallTime::MAX);
        let first = WallTime {
            secs: i64::MIN,
            nanos: 1_000,
        };
        assert_eq!(first.minus_nanos(2_000), WallTime::MIN);
        assert_eq!(WallTime::MIN.minus_nanos(u64::MAX), WallTime::MIN);
        assert_eq!(first.minus_nanos(1_000), WallTime::MIN);
        let earliest = SystemTime::UNIX_EPOCH - Duration::from_secs(1 << 63);
        assert_eq!(WallTime::from_system(earliest), WallTime::MIN);
        assert_eq!(WallTime::from_system(earliest).to_system(), earliest);
    }

    #[test]
    fn an_anchor_far_from_1970_converts_ticks_without_clamping() {
        let anchor = Tick::from_raw(1 << 40);
        let (earlier, later) = (
            Tick::from_raw((1 << 40) - 3_000_000),
            Tick::from_raw((1 << 40) + 5_000_000),
        );
        for t in times() {
            let clock = WallClock::at(anchor, t);
            assert_eq!(clock.system_time(anchor), t, "{t:?}");
            assert_eq!(
                clock.system_time(later),
                t + between(anchor, later),
                "{t:?}"
            );
            assert_eq!(
                clock.system_time(earlier),
                t - between(earlier, anchor),
                "{t:?}"
            );
        }
    }

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
