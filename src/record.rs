//! Owned records: the only types that both the hot side and the worker side use.
//!
//! The calling thread builds one [`Record`] per event, and one per span when the span closes.
//! Records are immutable once built and are shared between sinks by reference count, so fan-out
//! to several sinks copies nothing.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tracing_core::Metadata;

use crate::ids::{SpanId, ThreadInfo, TraceId};
use crate::level::LogLevel;

/// A captured field value. Integers, floats and bools are stored inline; text is owned and capped
/// at [`Builder::max_field_len`](crate::Builder::max_field_len) bytes.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue {
    /// A signed integer.
    I64(i64),
    /// An unsigned integer.
    U64(u64),
    /// A 128-bit signed integer.
    I128(i128),
    /// A 128-bit unsigned integer.
    U128(u128),
    /// A float.
    F64(f64),
    /// A bool.
    Bool(bool),
    /// A string, or a `Debug` / `Display` / error value rendered as text.
    Str(Text),
}

/// Owned text captured from a field, with a record of whether it was cut.
///
/// Text up to 24 bytes is stored inline (no allocation); longer text is on the heap.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Text {
    /// The captured text, at most the configured cap (cut on a char boundary).
    pub text: compact_str::CompactString,
    /// The length in bytes of the original text when it was longer than the cap; `None` when
    /// the text is whole.
    pub truncated_from: Option<usize>,
}

impl Text {
    /// Whether the text was cut.
    pub fn is_truncated(&self) -> bool {
        self.truncated_from.is_some()
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)?;
        if let Some(len) = self.truncated_from {
            write!(f, "…[truncated from {len} bytes]")?;
        }
        Ok(())
    }
}

impl fmt::Display for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldValue::I64(v) => write!(f, "{v}"),
            FieldValue::U64(v) => write!(f, "{v}"),
            FieldValue::I128(v) => write!(f, "{v}"),
            FieldValue::U128(v) => write!(f, "{v}"),
            FieldValue::F64(v) => write!(f, "{v}"),
            FieldValue::Bool(v) => write!(f, "{v}"),
            FieldValue::Str(t) => write!(f, "{t}"),
        }
    }
}

/// Captured fields: `&'static str` names (never copied) and owned values, in recording order.
/// Up to four fields are stored inline in the record (no allocation).
pub type Fields = smallvec::SmallVec<[(&'static str, FieldValue); 4]>;

/// One `tracing` event.
#[derive(Clone, Debug)]
pub struct EventRecord {
    /// When the event was recorded.
    pub timestamp: SystemTime,
    /// The taxonomy level (`Critical` when the event was marked so).
    pub level: LogLevel,
    /// The callsite's static metadata: target, name, file, line, module path.
    pub metadata: &'static Metadata<'static>,
    /// The `message` field, when the event has one.
    pub message: Option<Text>,
    /// Every other field.
    pub fields: Fields,
    /// The trace of the enclosing span, when there is one.
    pub trace_id: Option<TraceId>,
    /// The enclosing span, when there is one.
    pub span_id: Option<SpanId>,
    /// The thread the event was recorded on.
    pub thread: ThreadInfo,
}

/// A span, recorded once when it closes: ids, times, fields and the events that happened in it.
#[derive(Clone, Debug)]
pub struct SpanRecord {
    /// The taxonomy level of the span's callsite.
    pub level: LogLevel,
    /// The callsite's static metadata; `metadata.name()` is the span name.
    pub metadata: &'static Metadata<'static>,
    /// The trace the span belongs to.
    pub trace_id: TraceId,
    /// The span's own id.
    pub span_id: SpanId,
    /// The parent span's id; `None` for a root span.
    pub parent_span_id: Option<SpanId>,
    /// Whether the parent came from another process (set through context propagation).
    pub parent_is_remote: bool,
    /// Wall-clock time the span was created.
    pub start: SystemTime,
    /// Wall-clock time the span closed (`start` plus the monotonic duration).
    pub end: SystemTime,
    /// The monotonic time between creation and close.
    pub duration: Duration,
    /// Fields given at creation and recorded later, in that order.
    pub fields: Fields,
    /// Events recorded inside the span, up to the configured span-event limit.
    pub events: Vec<Arc<EventRecord>>,
    /// Events past the span-event limit, counted and not kept.
    pub dropped_events: u32,
    /// The thread the span was created on.
    pub thread: ThreadInfo,
}

/// Why a record was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// `Backpressure::DropOldest` evicted it from the full queue.
    QueueFullOldest,
    /// `Backpressure::DropNewest` refused it at the full queue.
    QueueFullNewest,
    /// `Backpressure::Block` (or a critical record) waited past its deadline.
    BlockTimeout,
    /// It was offered after shutdown began.
    Shutdown,
    /// A sink's own buffer was full.
    SinkBufferFull,
    /// The sink had failed (panicked) and was disabled.
    SinkDisabled,
    /// Still waiting for a sink when the shutdown deadline passed.
    ShutdownDeadline,
}

impl DropReason {
    /// Every reason, in a fixed order (used for counters).
    pub const ALL: [DropReason; 7] = [
        DropReason::QueueFullOldest,
        DropReason::QueueFullNewest,
        DropReason::BlockTimeout,
        DropReason::Shutdown,
        DropReason::SinkBufferFull,
        DropReason::SinkDisabled,
        DropReason::ShutdownDeadline,
    ];

    /// The snake-case name used in JSON, metrics labels and markers.
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFullOldest => "queue_full_oldest",
            DropReason::QueueFullNewest => "queue_full_newest",
            DropReason::BlockTimeout => "block_timeout",
            DropReason::Shutdown => "shutdown",
            DropReason::SinkBufferFull => "sink_buffer_full",
            DropReason::SinkDisabled => "sink_disabled",
            DropReason::ShutdownDeadline => "shutdown_deadline",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The in-band marker that sinks write where data was lost: "N records dropped since …".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropNotice {
    /// When the previous marker (or the pipeline start) was.
    pub since: SystemTime,
    /// When this marker was made.
    pub at: SystemTime,
    /// Counts by reason, only the non-zero ones.
    pub by_reason: Vec<(DropReason, u64)>,
}

impl DropNotice {
    /// The total number of records the marker reports.
    pub fn total(&self) -> u64 {
        self.by_reason.iter().map(|(_, n)| n).sum()
    }
}

impl fmt::Display for DropNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} records dropped since {} (",
            self.total(),
            crate::record::rfc3339(self.since)
        )?;
        for (i, (reason, n)) in self.by_reason.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{reason}: {n}")?;
        }
        f.write_str(")")
    }
}

/// One unit in the queue and in every sink's buffer. Cloning is a reference-count bump.
#[derive(Clone, Debug)]
pub enum Record {
    /// An event.
    Event(Arc<EventRecord>),
    /// A closed span.
    Span(Arc<SpanRecord>),
    /// A marker: records were dropped before this point.
    Dropped(Arc<DropNotice>),
}

impl Record {
    /// The record's level (`Warning` for drop markers).
    pub fn level(&self) -> LogLevel {
        match self {
            Record::Event(e) => e.level,
            Record::Span(s) => s.level,
            Record::Dropped(_) => LogLevel::Warning,
        }
    }
}

/// Formats a time as RFC 3339 in UTC with microseconds, e.g. `2026-11-22T11:24:22.123456Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let buf = rfc3339_bytes(t);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Appends a time as RFC 3339 in UTC with microseconds to `out`.
pub(crate) fn write_rfc3339(out: &mut String, t: SystemTime) {
    out.push_str(std::str::from_utf8(&rfc3339_bytes(t)).unwrap_or("1970-01-01T00:00:00.000000Z"));
}

/// The 27 ASCII bytes of [`rfc3339`], without allocating. The date and time of day are cached
/// per thread for the current second, so a stream of records formats only the microseconds.
pub(crate) fn rfc3339_bytes(t: SystemTime) -> [u8; 27] {
    use std::cell::Cell;
    thread_local! {
        static SECOND: Cell<(i64, [u8; 19])> = const { Cell::new((i64::MIN, [0; 19])) };
    }
    let (secs, micros) = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_micros()),
        Err(_) => (0, 0),
    };
    let prefix = SECOND.with(|cache| {
        let (cached, prefix) = cache.get();
        if cached == secs {
            return prefix;
        }
        let prefix = date_time_prefix(secs);
        cache.set((secs, prefix));
        prefix
    });
    let mut out = [0u8; 27];
    out[..19].copy_from_slice(&prefix);
    out[19] = b'.';
    write_digits(&mut out[20..26], micros);
    out[26] = b'Z';
    out
}

fn date_time_prefix(secs: i64) -> [u8; 19] {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    let (y, m, d) = civil_from_days(days);
    let mut p = *b"0000-00-00T00:00:00";
    write_digits(&mut p[0..4], y.clamp(0, 9999) as u32);
    write_digits(&mut p[5..7], m);
    write_digits(&mut p[8..10], d);
    write_digits(&mut p[11..13], rem / 3600);
    write_digits(&mut p[14..16], (rem / 60) % 60);
    write_digits(&mut p[17..19], rem % 60);
    p
}

/// Writes `v` as zero-padded decimal digits filling `out`.
fn write_digits(out: &mut [u8], mut v: u32) {
    for byte in out.iter_mut().rev() {
        *byte = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_the_time_crate() {
        let fmt = time::format_description::well_known::Rfc3339;
        // Repeats exercise the per-second cache; the leap day and year ends the calendar.
        for secs in [
            0u64,
            951_782_400,
            951_782_400,
            951_868_799,
            1_700_000_000,
            4_102_444_799,
        ] {
            let t = SystemTime::UNIX_EPOCH + Duration::new(secs, 123_456_789);
            let ours = rfc3339(t);
            let theirs = time::OffsetDateTime::from(t).format(&fmt).unwrap();
            // `time` prints nanoseconds; ours stops at microseconds.
            assert_eq!(ours[..26], theirs[..26], "{secs}");
            assert!(ours.ends_with('Z'));
        }
    }
}
