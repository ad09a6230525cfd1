//! Time helpers shared by every part of the crate. A leaf module.
//!
//! The calling thread reads only a raw monotonic [`Tick`]: a few nanoseconds, no system call, no
//! conversion. Ticks come from the CPU's time-stamp counter (through `quanta`) where the kernel
//! keeps time with it too, and from the OS's monotonic clock otherwise (on Linux, a kernel that
//! chose another clock source, `kvm-clock` say, found the counter unreliable on that machine).
//! The counter's rate is calibrated against the OS's monotonic clock, and the drain thread keeps
//! refining it over the whole life of the process ([`refine`]), so durations agree with
//! [`Instant`]'s. The drain thread turns ticks into wall-clock time with a [`WallClock`] anchor it
//! refreshes every batch, so wall-clock adjustments (NTP) are followed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

/// Where ticks come from, chosen once per process.
enum Source {
    /// The CPU's counter, with its rate in nanoseconds per tick.
    Counter { clock: quanta::Clock, rate: Rate },
    /// The OS's monotonic clock: nanoseconds since `base`.
    Os { base: Instant },
}

#[inline]
fn source() -> &'static Source {
    static SOURCE: OnceLock<Source> = OnceLock::new();
    SOURCE.get_or_init(Source::choose)
}

impl Source {
    fn choose() -> Source {
        if !kernel_keeps_time_with_the_counter() {
            return Source::Os {
                base: Instant::now(),
            };
        }
        let clock = quanta::Clock::new();
        // `quanta`'s calibration (at most 200 ms, often well under one) is the first estimate;
        // the drain thread refines it against a baseline that grows with the process's age.
        let first = clock.delta_as_nanos(0, 1 << Rate::SHIFT);
        let rate = Rate::new(&clock, first);
        Source::Counter { clock, rate }
    }

    #[inline]
    fn raw(&self) -> u64 {
        match self {
            Source::Counter { clock, .. } => clock.raw(),
            Source::Os { base } => duration_nanos(base.elapsed()),
        }
    }

    /// Nanoseconds in `ticks` raw units.
    #[inline]
    fn nanos(&self, ticks: u64) -> u64 {
        scale(ticks, self.fixed())
    }

    /// The rate now: nanoseconds per tick, times 2^[`Rate::SHIFT`].
    #[inline]
    fn fixed(&self) -> u64 {
        match self {
            Source::Counter { rate, .. } => rate.fixed.load(Ordering::Relaxed),
            Source::Os { .. } => 1 << Rate::SHIFT,
        }
    }
}

/// Nanoseconds in `ticks` at the rate `fixed` (nanoseconds per tick, times 2^[`Rate::SHIFT`]).
#[inline]
fn scale(ticks: u64, fixed: u64) -> u64 {
    u64::try_from((ticks as u128 * fixed as u128) >> Rate::SHIFT).unwrap_or(u64::MAX)
}

/// Whether the kernel keeps its own time with the CPU's time-stamp counter. Linux checks the
/// counter at boot (synchronised across CPUs, steady rate) and picks another clock source when
/// it is not reliable; a process reading it then gets times that disagree across CPUs or run at
/// another rate than the OS's clock.
#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "x86")))]
fn kernel_keeps_time_with_the_counter() -> bool {
    std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
        .is_ok_and(|s| s.trim() == "tsc")
}

/// Elsewhere the counter is the one the OS uses (Arm's generic timer) or `quanta` decides.
#[cfg(not(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "x86"))))]
fn kernel_keeps_time_with_the_counter() -> bool {
    true
}

/// `d` in nanoseconds, at most `u64::MAX` (584 years).
pub(crate) fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The counter's rate: nanoseconds per tick as a fixed-point number (`SHIFT` fraction bits),
/// measured from a (tick, [`Instant`]) pair taken at start-up to one taken later. The error of a
/// pair is the time between its two readings (tens of nanoseconds), so the rate's error shrinks
/// as the baseline grows: about 1e-6 after 100 ms, where one short calibration can be off by 5e-4
/// on a busy virtual machine (a 50 ms span measured 27 µs short).
struct Rate {
    /// Nanoseconds per tick, times 2^SHIFT.
    fixed: AtomicU64,
    /// The start-up pair.
    base: (u64, Instant),
    /// The tick of the last refinement.
    refined_at: AtomicU64,
    /// A pair whose readings are more ticks apart than this (the thread was interrupted between
    /// them) is not used: [`Rate::PAIR_LIMIT`], or four times the tightest start-up pair on a
    /// machine whose OS clock is slower to read.
    pair_limit: u64,
}

impl Rate {
    const SHIFT: u32 = 32;
    /// The longest a pair's readings may be apart (reading the OS's clock takes tens of
    /// nanoseconds where the kernel keeps time with the counter).
    const PAIR_LIMIT: Duration = Duration::from_nanos(250);
    /// The shortest baseline that replaces the first estimate. The error of a refined rate is
    /// at most [`Rate::PAIR_LIMIT`] over the baseline, so a time span that ended before a
    /// refinement (its length is at most the baseline) is off by at most about that limit.
    const MIN_BASELINE: Duration = Duration::from_millis(1);
    /// Refinements are at least this many ticks apart (a fraction of a millisecond to a few).
    const EVERY: u64 = 1 << 22;

    fn new(clock: &quanta::Clock, first: u64) -> Rate {
        let limit = ((duration_nanos(Self::PAIR_LIMIT) as u128) << Self::SHIFT)
            .checked_div(first as u128)
            .map_or(u64::MAX, |t| u64::try_from(t).unwrap_or(u64::MAX));
        // The tightest of a few pairs.
        let (gap, tick, at) = (0..16)
            .map(|_| pair(clock))
            .min_by_key(|&(gap, _, _)| gap)
            .unwrap_or_else(|| pair(clock));
        let pair_limit = limit.max(gap.saturating_mul(4));
        let base = (tick, at);
        Rate {
            fixed: AtomicU64::new(first.max(1)),
            refined_at: AtomicU64::new(base.0),
            base,
            pair_limit,
        }
    }

    #[cfg(test)]
    fn nanos(&self, ticks: u64) -> u64 {
        scale(ticks, self.fixed.load(Ordering::Relaxed))
    }

    /// Measures the rate again over the baseline from start-up to now, when a refinement is due.
    fn refine(&self, clock: &quanta::Clock) {
        let now = clock.raw();
        let last = self.refined_at.load(Ordering::Relaxed);
        if now.wrapping_sub(last) < Self::EVERY || now < last {
            return;
        }
        self.refined_at.store(now, Ordering::Relaxed);
        let (gap, tick, at) = pair(clock);
        if gap > self.pair_limit {
            return;
        }
        let (base_tick, base_at) = self.base;
        let Some(elapsed) = at.checked_duration_since(base_at) else {
            return;
        };
        let ticks = tick.saturating_sub(base_tick);
        if elapsed < Self::MIN_BASELINE || ticks == 0 {
            return;
        }
        let fixed = (elapsed.as_nanos() << Self::SHIFT) / ticks as u128;
        if let Ok(fixed @ 1..) = u64::try_from(fixed) {
            self.fixed.store(fixed, Ordering::Relaxed);
        }
    }
}

/// A tick and an [`Instant`] read together: (ticks between the two counter readings around the
/// `Instant`, their midpoint, the `Instant`).
fn pair(clock: &quanta::Clock) -> (u64, u64, Instant) {
    let before = clock.raw();
    let at = Instant::now();
    let after = clock.raw();
    let gap = after.saturating_sub(before);
    (gap, before + gap / 2, at)
}

/// The tightest of up to [`ANCHOR_TRIES`] readings `(counter, system time, counter)`, stopping
/// at one whose counter readings are within [`ANCHOR_GAP`] (at the rate `fixed`): its system
/// time and the midpoint of its counter readings.
fn tightest_anchor(
    fixed: u64,
    mut read: impl FnMut() -> (Tick, SystemTime, Tick),
) -> (Tick, SystemTime) {
    let limit = duration_nanos(ANCHOR_GAP);
    let mut best: Option<(u64, Tick, SystemTime)> = None;
    for _ in 0..ANCHOR_TRIES {
        let (before, system, after) = read();
        let gap = after.0.saturating_sub(before.0);
        let midpoint = Tick(before.0.saturating_add(gap / 2));
        if best.is_none_or(|(tightest, ..)| gap < tightest) {
            best = Some((gap, midpoint, system));
        }
        if scale(gap, fixed) <= limit {
            break;
        }
    }
    best.map_or_else(|| (Tick::now(), SystemTime::now()), |(_, t, s)| (t, s))
}

/// Calibrates the clock now (it can take up to a few hundred milliseconds the first time), so
/// that no application thread pays for it. Called when a pipeline is built.
pub(crate) fn warm_up() {
    let _ = source();
}

/// Refines the counter's rate against the OS's monotonic clock (see the module's docs): cheap
/// when not due, a few tens of nanoseconds when due. The drain thread calls it every batch,
/// before it converts the batch's ticks.
pub(crate) fn refine() {
    if let Source::Counter { clock, rate } = source() {
        rate.refine(clock);
    }
}

/// A raw monotonic reading, cheap to take on the calling thread; only differences and
/// [`WallClock::system_time`] give it meaning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Tick(u64);

impl Tick {
    /// The earliest reading (an empty record's).
    pub(crate) const ZERO: Tick = Tick(0);
    /// The latest reading: after every other.
    pub(crate) const MAX: Tick = Tick(u64::MAX);

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

    pub(crate) fn duration(self) -> Duration {
        Duration::from_nanos(source().nanos(self.0))
    }
}

/// Converts ticks to wall-clock time from one (tick, `SystemTime`) pair taken together, and
/// tick distances to durations, at the counter's rate when the anchor was taken: every time of
/// one record is converted at one rate (a refinement on another pipeline's drain thread in
/// between would let a span's busy time exceed its duration).
#[derive(Clone, Copy, Debug)]
pub(crate) struct WallClock {
    tick: Tick,
    /// The anchor's wall-clock time.
    wall: WallTime,
    /// The rate (see [`scale`]).
    fixed: u64,
}

/// The longest an anchor's two counter readings, around its `SystemTime`, may be apart before
/// it is taken again: a thread interrupted between its readings (a time slice elsewhere, 4 ms
/// on a busy machine) dated every record of the batch that much late, and one thread's events
/// out of order (adversary pass 44).
const ANCHOR_GAP: Duration = Duration::from_micros(2);

/// How many times an anchor is taken at most; the tightest is kept.
const ANCHOR_TRIES: usize = 8;

impl WallClock {
    /// An anchor taken now: a `SystemTime` between two counter readings, dated at their
    /// midpoint, taken again when they are far apart (see [`ANCHOR_GAP`]).
    pub(crate) fn now() -> Self {
        let fixed = source().fixed();
        let (tick, system) = tightest_anchor(fixed, || {
            let before = Tick::now();
            let system = SystemTime::now();
            (before, system, Tick::now())
        });
        WallClock {
            tick,
            wall: WallTime::from_system(system),
            fixed,
        }
    }

    /// An anchor: `tick` was read at `system` (for tests).
    #[cfg(test)]
    pub(crate) fn at(tick: Tick, system: SystemTime) -> Self {
        WallClock {
            tick,
            wall: WallTime::from_system(system),
            fixed: source().fixed(),
        }
    }

    /// The monotonic time from `start` to `end` (zero if `end` is earlier).
    #[inline]
    pub(crate) fn between(&self, start: Tick, end: Tick) -> Duration {
        self.duration(end.since(start))
    }

    /// `span` as a duration.
    #[inline]
    pub(crate) fn duration(&self, span: RawSpan) -> Duration {
        Duration::from_nanos(scale(span.0, self.fixed))
    }

    /// The wall-clock time of `tick` (earlier or later than the anchor): an addition with a
    /// carry, where `SystemTime`'s arithmetic checks and normalises more (the drain thread
    /// converts every record).
    #[inline]
    pub(crate) fn wall_time(&self, tick: Tick) -> WallTime {
        if tick <= self.tick {
            self.wall
                .minus_nanos(scale(self.tick.0 - tick.0, self.fixed))
        } else {
            self.wall
                .plus_nanos(scale(tick.0 - self.tick.0, self.fixed))
        }
    }

    /// [`wall_time`](Self::wall_time) as a `SystemTime`.
    #[cfg(test)]
    pub(crate) fn system_time(&self, tick: Tick) -> SystemTime {
        self.wall_time(tick).to_system()
    }
}

/// The drain thread's anchors over time: the one taken for its current batch, and the last one
/// before each step of the system clock (`date -s`, an NTP step at boot, a resume from
/// suspend, which the monotonic counter does not count), so that every record of a local trace
/// is converted with the anchor in force when its local root started: a span then contains its
/// events and its children whatever the clock did meanwhile, as OpenTelemetry's SDKs anchor a
/// trace. (Converted with the anchor of the batch it closed in, a span open across a step of
/// one hour started an hour after its own events: adversary pass 48.)
#[derive(Debug)]
pub(crate) struct Anchors {
    current: WallClock,
    /// The tick since which the current anchor's offset from the system clock holds.
    since: Tick,
    /// Earlier offsets, oldest first: since when each held, and its last anchor.
    earlier: std::collections::VecDeque<(Tick, WallClock)>,
}

/// A change of the system clock's offset from the counter larger than this between two
/// anchors is a step (an anchor's own error is below [`ANCHOR_GAP`]; a slewing clock drifts
/// far less than this between two batches).
const STEP_NANOS: u128 = 1_000_000;

/// How many steps are remembered (only real steps of the clock make one: a slewing clock
/// drifts microseconds between two batches); records of a trace that started before the oldest
/// use the oldest offset.
const STEPS_KEPT: usize = 1024;

impl Anchors {
    pub(crate) fn new(first: WallClock) -> Self {
        Anchors {
            current: first,
            since: Tick::ZERO,
            earlier: std::collections::VecDeque::new(),
        }
    }

    /// Moves to the anchor of a new batch, remembering the one before when the system clock
    /// stepped in between.
    pub(crate) fn update(&mut self, next: WallClock) {
        let predicted = self.current.wall_time(next.tick);
        if predicted.nanos_apart(next.wall) > STEP_NANOS {
            if self.earlier.len() == STEPS_KEPT {
                self.earlier.pop_front();
            }
            self.earlier.push_back((self.since, self.current));
            // The records after the last anchor of the old offset take the new one: when the
            // step came between the two is not known.
            self.since = self.current.tick;
        }
        self.current = next;
    }

    /// The anchor in force at `tick`.
    #[inline]
    pub(crate) fn at(&self, tick: Tick) -> &WallClock {
        if tick >= self.since {
            return &self.current;
        }
        self.earlier_at(tick)
    }

    #[cold]
    fn earlier_at(&self, tick: Tick) -> &WallClock {
        self.earlier
            .iter()
            .rev()
            .find(|(since, _)| *since <= tick)
            .or(self.earlier.front())
            .map_or(&self.current, |(_, anchor)| anchor)
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
    /// How far apart two times are, in nanoseconds.
    fn nanos_apart(self, other: WallTime) -> u128 {
        let nanos = |t: WallTime| i128::from(t.secs) * 1_000_000_000 + i128::from(t.nanos);
        (nanos(self) - nanos(other)).unsigned_abs()
    }

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
        self.plus_nanos(duration_nanos(d))
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
    end.since(start).duration()
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

    /// Across a step of the system clock, a tick is converted with the anchor in force at it:
    /// before the step with the offset before it, after with the new one; an anchor that
    /// only moves on with the counter starts no new offset.
    #[test]
    fn anchors_remember_the_offset_before_each_step() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let tick = |n: u64| Tick::from_raw((1 << 40) + n * 1_000_000);
        // Equal but for the rounding of the counter's rate (below a microsecond).
        let close = |a: SystemTime, b: SystemTime| {
            let apart = a.duration_since(b).unwrap_or_else(|e| e.duration());
            assert!(apart < Duration::from_micros(1), "{a:?} and {b:?}");
        };
        let at = |ms: u64, wall: SystemTime| WallClock::at(tick(ms), wall);
        let mut anchors = Anchors::new(at(0, t0));
        // The counter and the clock move on together: the same offset.
        let second = t0 + between(tick(0), tick(10));
        anchors.update(at(10, second));
        assert_eq!(anchors.since, Tick::ZERO);
        // The clock jumps forward an hour.
        let hour = Duration::from_secs(3600);
        let stepped = t0 + between(tick(0), tick(20)) + hour;
        anchors.update(at(20, stepped));
        let before = tick(5);
        close(
            anchors.at(before).system_time(before),
            t0 + between(tick(0), before),
        );
        let after = tick(30);
        close(
            anchors.at(after).system_time(after),
            t0 + between(tick(0), after) + hour,
        );
        // And back two hours: three offsets, each at its ticks.
        let back = t0 + between(tick(0), tick(40)) - hour;
        anchors.update(at(40, back));
        close(
            anchors.at(before).system_time(before),
            t0 + between(tick(0), before),
        );
        // (The ticks between the last anchor before a step and the first after it take the
        // new offset: when the step came between the two is not known.)
        let between_steps = tick(15);
        close(
            anchors.at(between_steps).system_time(between_steps),
            t0 + between(tick(0), between_steps) + hour,
        );
        let last = tick(50);
        close(
            anchors.at(last).system_time(last),
            t0 + between(tick(0), last) - hour,
        );
        // At most STEPS_KEPT remembered: the oldest offset is the one for older ticks.
        for i in 0..2 * STEPS_KEPT as u64 {
            let wall = t0 + between(tick(0), tick(100 + i)) + hour * (i as u32 % 2);
            anchors.update(at(100 + i, wall));
        }
        assert_eq!(anchors.earlier.len(), STEPS_KEPT);
    }

    /// A trace that started before 65 steps keeps its offset: 64 were remembered, and its
    /// records converted after the 65th took another offset than those before (adversary
    /// pass 52).
    #[test]
    fn a_trace_older_than_65_steps_keeps_its_offset() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let tick = |n: u64| Tick::from_raw((1 << 40) + n * 1_000_000);
        let mut anchors = Anchors::new(WallClock::at(tick(0), t0));
        let root = tick(1);
        // A batch after the root's: the offset at the root is known to hold up to here.
        anchors.update(WallClock::at(tick(5), t0 + between(tick(0), tick(5))));
        let first = anchors.at(root).system_time(root);
        for i in 1..=65u64 {
            let step = Duration::from_secs(3600) * (i as u32 % 2);
            anchors.update(WallClock::at(
                tick(10 * i),
                t0 + between(tick(0), tick(10 * i)) + step,
            ));
        }
        assert_eq!(anchors.at(root).system_time(root), first);
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

    /// Spins until `d` has passed on the OS's clock (real time must pass).
    fn spend(d: Duration) {
        let start = Instant::now();
        while start.elapsed() < d {
            std::hint::spin_loop();
        }
    }

    #[test]
    fn a_wrong_first_rate_is_refined_against_the_os_clock() {
        let clock = quanta::Clock::new();
        let first = clock.delta_as_nanos(0, 1 << Rate::SHIFT);
        // 0.1 % fast, as one short calibration on a busy virtual machine can be.
        let rate = Rate::new(&clock, first + first / 1000);
        let deadline = Instant::now() + Duration::from_secs(10);
        let skewed = rate.fixed.load(Ordering::Relaxed);
        // Refined once the baseline is long enough (a pair read across an interruption is
        // skipped, and the next one tried).
        while rate.fixed.load(Ordering::Relaxed) == skewed {
            assert!(Instant::now() < deadline, "never refined");
            spend(Duration::from_millis(2));
            rate.refine(&clock);
        }
        let (start_tick, start) = (clock.raw(), Instant::now());
        spend(Duration::from_millis(30));
        let (end_tick, end) = (clock.raw(), Instant::now());
        let os = (end - start).as_nanos() as f64;
        let ours = rate.nanos(end_tick - start_tick) as f64;
        let error = (ours - os).abs() / os;
        assert!(error < 1e-4, "off by {error:e} of {os} ns");
    }

    #[test]
    fn os_ticks_are_nanoseconds() {
        let os = Source::Os {
            base: Instant::now(),
        };
        let start = os.raw();
        spend(Duration::from_millis(5));
        let ticks = os.raw() - start;
        assert!(ticks >= 5_000_000, "{ticks}");
        assert_eq!(os.nanos(ticks), ticks);
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

    /// An anchor whose counter readings are far apart (the thread was interrupted between
    /// them) is taken again, and the tightest kept: each record of a batch was dated as late
    /// as the interruption (adversary pass 44).
    #[test]
    fn an_anchor_read_across_an_interruption_is_taken_again() {
        let fixed = 1 << Rate::SHIFT; // a nanosecond per tick
        let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut tries = 0;
        let (tick, system) = tightest_anchor(fixed, || {
            tries += 1;
            let start = 10_000_000 * tries;
            if tries == 1 {
                // Interrupted for 4 ms after the counter's first reading.
                let system = base + Duration::from_nanos(start + 4_000_000);
                (Tick(start), system, Tick(start + 4_000_100))
            } else {
                (
                    Tick(start),
                    base + Duration::from_nanos(start + 50),
                    Tick(start + 100),
                )
            }
        });
        assert_eq!(tries, 2);
        assert_eq!(
            (tick, system),
            (Tick(20_000_050), base + Duration::from_nanos(20_000_050))
        );
        // Interrupted every time: the tightest of all is kept.
        let mut gap = 10_000;
        let (tick, _) = tightest_anchor(fixed, || {
            gap -= 1_000;
            (Tick(0), base, Tick(gap))
        });
        assert_eq!(tick, Tick((10_000 - ANCHOR_TRIES as u64 * 1_000) / 2));
    }
}
