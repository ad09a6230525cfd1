//! Ids: W3C/OpenTelemetry trace and span ids, the per-thread random step that makes them, and
//! the calling thread's small index and name. A leaf module: it imports nothing of the crate.

use std::cell::Cell;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// A 16-byte trace id, OpenTelemetry- and W3C-compatible. All zeroes is invalid.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id, OpenTelemetry- and W3C-compatible. All zeroes is invalid.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SpanId(pub [u8; 8]);

// === impl TraceId ===

impl TraceId {
    /// The invalid, all-zero trace id.
    pub const INVALID: TraceId = TraceId([0; 16]);

    /// Builds a trace id from a big-endian `u128`.
    pub const fn from_u128(v: u128) -> Self {
        TraceId(v.to_be_bytes())
    }

    /// The id as a big-endian `u128`.
    pub const fn to_u128(self) -> u128 {
        u128::from_be_bytes(self.0)
    }

    /// Whether the id is valid (not all zeroes).
    pub const fn is_valid(self) -> bool {
        self.to_u128() != 0
    }

    /// Parses 32 lower- or upper-case hex digits.
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 32 {
            return None;
        }
        u128::from_str_radix(hex, 16).ok().map(Self::from_u128)
    }
}

impl TraceId {
    /// The 32 lower-case hex digits, without allocating.
    pub fn to_hex(self) -> [u8; 32] {
        let mut out = [0; 32];
        write_hex(&mut out, &self.0);
        out
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.to_hex()).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

// === impl SpanId ===

impl SpanId {
    /// The invalid, all-zero span id.
    pub const INVALID: SpanId = SpanId([0; 8]);

    /// Builds a span id from a big-endian `u64`.
    pub const fn from_u64(v: u64) -> Self {
        SpanId(v.to_be_bytes())
    }

    /// The id as a big-endian `u64`.
    pub const fn to_u64(self) -> u64 {
        u64::from_be_bytes(self.0)
    }

    /// Whether the id is valid (not all zeroes).
    pub const fn is_valid(self) -> bool {
        self.to_u64() != 0
    }

    /// Parses 16 lower- or upper-case hex digits.
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 16 {
            return None;
        }
        u64::from_str_radix(hex, 16).ok().map(Self::from_u64)
    }
}

impl SpanId {
    /// The 16 lower-case hex digits, without allocating.
    pub fn to_hex(self) -> [u8; 16] {
        let mut out = [0; 16];
        write_hex(&mut out, &self.0);
        out
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.to_hex()).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

/// A span's place in a trace: its trace id, its span id, and whether the trace is sampled
/// (recorded and exported) or only propagated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SpanContext {
    /// The trace.
    pub trace_id: TraceId,
    /// The span.
    pub span_id: SpanId,
    /// Whether the trace is sampled (the W3C `sampled` flag).
    pub sampled: bool,
}

/// The thread a record was made on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadInfo {
    /// A small number unique to the thread within this process (stable for its life).
    pub id: u64,
    /// The thread's name, when it has one. Names are interned once per distinct name (up to
    /// 4 096 of them; threads named after that are known by `id` only), so a record carries a
    /// plain reference and copying it costs nothing.
    pub name: Option<&'static str>,
}

thread_local! {
    static THREAD: ThreadInfo = current_thread_info();
    static RNG: Cell<u64> = Cell::new(seed());
}

fn current_thread_info() -> ThreadInfo {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    ThreadInfo {
        id: NEXT.fetch_add(1, Ordering::Relaxed),
        name: std::thread::current().name().and_then(intern_thread_name),
    }
}

/// Distinct thread names interned so far; bounded so that a program naming every thread
/// uniquely cannot grow it without limit.
const THREAD_NAMES_LIMIT: usize = 4_096;

/// The `'static` copy of a thread name, made once per distinct name (under a lock, once per
/// thread, never per record).
fn intern_thread_name(name: &str) -> Option<&'static str> {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let names = names.get_or_insert_with(HashSet::new);
    if let Some(known) = names.get(name) {
        return Some(known);
    }
    if names.len() >= THREAD_NAMES_LIMIT {
        return None;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    Some(leaked)
}

/// This thread's info: a copy of two words, no reference count.
#[inline]
pub(crate) fn thread_info() -> ThreadInfo {
    THREAD.with(|t| *t)
}

/// This thread's small index (the `id` of its [`ThreadInfo`]).
pub(crate) fn thread_index() -> u64 {
    THREAD.with(|t| t.id)
}

fn seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(THREAD.with(|t| t.id));
    h.finish() | 1
}

/// A random `u64` from this thread's stream: cheap, uncontended, good enough for ids and
/// jitter (not for secrets).
#[inline]
pub(crate) fn random_u64() -> u64 {
    RNG.with(|s| {
        let mut state = s.get();
        let v = wyrand(&mut state);
        s.set(state);
        v
    })
}

/// One step of wyrand: advances `state` and returns the next number of its stream.
#[inline]
pub(crate) fn wyrand(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0xa076_1d64_78bd_642f);
    let t = u128::from(*state) * u128::from(*state ^ 0xe703_7ed1_a0b4_28db);
    ((t >> 64) as u64) ^ (t as u64)
}

#[inline]
pub(crate) fn new_span_id() -> SpanId {
    loop {
        let v = random_u64();
        if v != 0 {
            return SpanId::from_u64(v);
        }
    }
}

/// A new root's trace id and span id, from one access to this thread's stream (where
/// a trace id and [`new_span_id`] would take three).
#[inline]
pub(crate) fn new_root_ids() -> (TraceId, SpanId) {
    RNG.with(|s| {
        let mut state = s.get();
        let ids = loop {
            let trace = (u128::from(wyrand(&mut state)) << 64) | u128::from(wyrand(&mut state));
            let span = wyrand(&mut state);
            if trace != 0 && span != 0 {
                break (TraceId::from_u128(trace), SpanId::from_u64(span));
            }
        };
        s.set(state);
        ids
    })
}

/// Writes `bytes` as lower-case hex into `out` (twice as long).
pub(crate) fn write_hex(out: &mut [u8], bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_hex() {
        let t = TraceId::from_u128(0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(t.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(TraceId::from_hex(&t.to_string()), Some(t));
        let s = SpanId::from_u64(0x00f067aa0ba902b7);
        assert_eq!(s.to_string(), "00f067aa0ba902b7");
        assert_eq!(SpanId::from_hex("00f067aa0ba902b7"), Some(s));
        assert!(!TraceId::INVALID.is_valid() && !SpanId::INVALID.is_valid());
        assert_eq!(SpanId::from_hex("xyz"), None);
    }

    #[test]
    fn root_ids_are_valid_and_distinct() {
        let (t1, s1) = new_root_ids();
        let (t2, s2) = new_root_ids();
        assert!(t1.is_valid() && t2.is_valid() && t1 != t2);
        assert!(s1.is_valid() && s2.is_valid() && s1 != s2);
    }

    #[test]
    fn span_ids_are_valid_and_distinct() {
        let (a, b) = (new_span_id(), new_span_id());
        assert!(a.is_valid() && b.is_valid() && a != b);
    }
}
