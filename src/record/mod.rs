//! Records: the only types that both the hot side and the threads use.
//!
//! The calling thread fills one record per event, and one per span when the span closes, in a
//! box taken from a pool ([`shared`]), with every text value in one buffer ([`fields`]). The
//! drain thread shares it with the sinks by reference count, so fan-out copies nothing, and
//! takes the box back for the pool once the sinks are done with it.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::thread::LocalKey;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tracing_core::Metadata;

pub(crate) mod fields;
pub(crate) mod shared;

pub use self::fields::{ErrorValue, FieldValue, Fields, Text};
pub(crate) use self::fields::{FieldScalar, TextRange};
pub use self::shared::Shared;
pub(crate) use self::shared::{Pool, Recycle, Sharer, Stage};
use crate::clock::{RawSpan, Tick, WallTime};
use crate::ids::{SpanContext, SpanId, ThreadInfo, TraceId};
use crate::level::LogLevel;

/// Where an event came from when the `log` crate made it (through `tracing-log`): its real
/// target, module, file and line, instead of the bridge's own callsite. Stored in the event's
/// text buffer.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LogSource {
    pub(crate) target: TextRange,
    pub(crate) module_path: Option<TextRange>,
    pub(crate) file: Option<TextRange>,
    pub(crate) line: Option<u32>,
}

/// One `tracing` event.
///
/// Read it through its methods; the storage is recycled once every sink is done with it (see
/// [`Shared`]).
#[derive(Clone)]
pub struct EventRecord {
    pub(crate) tick: Tick,
    /// Wall-clock time (set by the drain thread).
    pub(crate) timestamp: WallTime,
    pub(crate) level: LogLevel,
    pub(crate) metadata: &'static Metadata<'static>,
    pub(crate) log_source: Option<LogSource>,
    pub(crate) context: Option<SpanContext>,
    /// The local root of the enclosing span's trace (`INVALID` outside any span).
    pub(crate) local_root: SpanId,
    /// When that local root started (tail sampling tells a trace under way at a switch by it).
    pub(crate) root_start: Tick,
    /// The event sampler never samples it out (whitelisted, critical, or an `ERROR` kept by
    /// `keep_errors`): tail sampling does not either.
    pub(crate) always_kept: bool,
    pub(crate) thread: ThreadInfo,
    pub(crate) message: Option<TextRange>,
    pub(crate) fields: Fields,
}

/// A span, recorded once when it closes: ids, times, fields and the events that happened in it.
///
/// Read it through its methods; the storage is recycled once every sink is done with it (see
/// [`Shared`]).
#[derive(Clone)]
pub struct SpanRecord {
    pub(crate) level: LogLevel,
    pub(crate) metadata: &'static Metadata<'static>,
    pub(crate) context: SpanContext,
    pub(crate) parent_span_id: Option<SpanId>,
    pub(crate) parent_is_remote: bool,
    /// The local root of the span's trace in this process (itself for a local root).
    pub(crate) local_root: SpanId,
    /// When that local root started (its own start for a local root).
    pub(crate) root_start: Tick,
    pub(crate) start_tick: Tick,
    pub(crate) end_tick: Tick,
    /// Wall-clock start (set by the drain thread).
    pub(crate) start: WallTime,
    pub(crate) duration: Duration,
    /// Time entered, as raw ticks (added up on the calling threads).
    pub(crate) busy_raw: RawSpan,
    /// Time entered and not entered (converted by the drain thread, with `duration`).
    pub(crate) busy_idle: (Duration, Duration),
    pub(crate) timings: bool,
    pub(crate) fields: Fields,
    pub(crate) events: Vec<Shared<EventRecord>>,
    pub(crate) dropped_events: u32,
    pub(crate) links: Vec<SpanContext>,
    /// `follows_from` calls past the link limit, counted and not kept.
    pub(crate) dropped_links: u32,
    pub(crate) thread: ThreadInfo,
}

static EMPTY_CALLSITE: tracing_core::callsite::DefaultCallsite =
    tracing_core::callsite::DefaultCallsite::new(&EMPTY_METADATA);
static EMPTY_METADATA: Metadata<'static> = tracing_core::metadata!(
    name: "",
    target: "",
    level: tracing_core::Level::INFO,
    fields: &[],
    callsite: &EMPTY_CALLSITE,
    kind: tracing_core::metadata::Kind::EVENT,
);

// === impl EventRecord ===

impl Default for EventRecord {
    /// An empty `INFO` event with no callsite, at the Unix epoch.
    fn default() -> Self {
        EventRecord {
            tick: Tick::default(),
            timestamp: WallTime::EPOCH,
            level: LogLevel::Info,
            metadata: &EMPTY_METADATA,
            log_source: None,
            context: None,
            local_root: SpanId::INVALID,
            root_start: Tick::ZERO,
            always_kept: false,
            thread: ThreadInfo::default(),
            message: None,
            fields: Fields::default(),
        }
    }
}

impl EventRecord {
    /// When the event was recorded.
    pub fn timestamp(&self) -> SystemTime {
        self.timestamp.to_system()
    }

    /// [`timestamp`](Self::timestamp), as a sink formats it.
    #[inline]
    pub(crate) fn wall_time(&self) -> WallTime {
        self.timestamp
    }

    /// The taxonomy level (`Critical` when the event was marked so).
    pub fn level(&self) -> LogLevel {
        self.level
    }

    /// The callsite's static metadata. For an event from the `log` crate this is the bridge's
    /// callsite: read [`target`](Self::target), [`file`](Self::file), [`line`](Self::line) and
    /// [`module_path`](Self::module_path) instead, which give the real ones.
    pub fn metadata(&self) -> &'static Metadata<'static> {
        self.metadata
    }

    /// The event's target (for an event from the `log` crate, the `log` record's target).
    pub fn target(&self) -> &str {
        match &self.log_source {
            Some(s) => self.fields.text_of(s.target).text,
            None => self.metadata.target(),
        }
    }

    /// The callsite's name (`event src/main.rs:12` for `tracing`'s events).
    pub fn name(&self) -> &'static str {
        self.metadata.name()
    }

    /// The module the event was recorded in.
    pub fn module_path(&self) -> Option<&str> {
        match &self.log_source {
            Some(s) => s.module_path.map(|r| self.fields.text_of(r).text),
            None => self.metadata.module_path(),
        }
    }

    /// The source file of the event.
    pub fn file(&self) -> Option<&str> {
        match &self.log_source {
            Some(s) => s.file.map(|r| self.fields.text_of(r).text),
            None => self.metadata.file(),
        }
    }

    /// The line of the event.
    pub fn line(&self) -> Option<u32> {
        match &self.log_source {
            Some(s) => s.line,
            None => self.metadata.line(),
        }
    }

    /// Whether the event came from the `log` crate (through `tracing-log`).
    pub fn is_from_log(&self) -> bool {
        self.log_source.is_some()
    }

    /// The `message` field, when the event has one.
    pub fn message(&self) -> Option<Text<'_>> {
        self.message.map(|r| self.fields.text_of(r))
    }

    /// Every other field, in recording order.
    pub fn fields(&self) -> &Fields {
        &self.fields
    }

    /// The ids of the span the event happened in, and whether its trace is sampled; `None`
    /// outside any span. Events inside unsampled traces carry their span's ids too, with
    /// `sampled` false, so that logs stay correlated with the trace.
    pub fn span_context(&self) -> Option<SpanContext> {
        self.context
    }

    /// The trace of the enclosing span, when there is one.
    pub fn trace_id(&self) -> Option<TraceId> {
        self.context.map(|c| c.trace_id)
    }

    /// The enclosing span, when there is one.
    pub fn span_id(&self) -> Option<SpanId> {
        self.context.map(|c| c.span_id)
    }

    /// The local root of the enclosing span's trace in this process (see
    /// [`SpanRecord::local_root_id`]), when the event is inside a span.
    pub fn local_root_id(&self) -> Option<SpanId> {
        self.context.map(|_| self.local_root)
    }

    /// The thread the event was recorded on.
    pub fn thread(&self) -> ThreadInfo {
        self.thread
    }
}

impl Recycle for EventRecord {
    fn release(&mut self) {
        self.fields.bound();
    }

    fn reset(&mut self) {
        self.log_source = None;
        self.context = None;
        self.local_root = SpanId::INVALID;
        self.always_kept = false;
        self.message = None;
        self.fields.clear();
    }

    fn buffer(&self) -> &[u8] {
        self.fields.text_buffer()
    }

    fn stage() -> &'static LocalKey<RefCell<Stage<Self>>> {
        thread_local! {
            static STAGE: RefCell<Stage<EventRecord>> = const { RefCell::new(Stage::new()) };
        }
        &STAGE
    }
}

impl fmt::Debug for EventRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventRecord")
            .field("timestamp", &self.timestamp())
            .field("level", &self.level)
            .field("target", &self.target())
            .field("message", &self.message())
            .field("fields", &self.fields)
            .field("context", &self.context)
            .field("thread", &self.thread)
            .finish()
    }
}

// === impl SpanRecord ===

impl Default for SpanRecord {
    /// An empty `INFO` span with no callsite and invalid ids, at the Unix epoch.
    fn default() -> Self {
        SpanRecord {
            level: LogLevel::Info,
            metadata: &EMPTY_METADATA,
            context: SpanContext::default(),
            parent_span_id: None,
            parent_is_remote: false,
            local_root: SpanId::INVALID,
            root_start: Tick::ZERO,
            start_tick: Tick::default(),
            end_tick: Tick::default(),
            start: WallTime::EPOCH,
            duration: Duration::ZERO,
            busy_raw: RawSpan::default(),
            busy_idle: (Duration::ZERO, Duration::ZERO),
            timings: false,
            fields: Fields::default(),
            events: Vec::new(),
            dropped_events: 0,
            links: Vec::new(),
            dropped_links: 0,
            thread: ThreadInfo::default(),
        }
    }
}

impl SpanRecord {
    /// The taxonomy level of the span's callsite.
    pub fn level(&self) -> LogLevel {
        self.level
    }

    /// The callsite's static metadata.
    pub fn metadata(&self) -> &'static Metadata<'static> {
        self.metadata
    }

    /// The span's name.
    pub fn name(&self) -> &'static str {
        self.metadata.name()
    }

    /// The span's target.
    pub fn target(&self) -> &'static str {
        self.metadata.target()
    }

    /// The span's trace and span ids (always sampled: unsampled spans make no record).
    pub fn span_context(&self) -> SpanContext {
        self.context
    }

    /// The trace the span belongs to.
    pub fn trace_id(&self) -> TraceId {
        self.context.trace_id
    }

    /// The span's own id.
    pub fn span_id(&self) -> SpanId {
        self.context.span_id
    }

    /// The parent span's id; `None` for a root span.
    pub fn parent_span_id(&self) -> Option<SpanId> {
        self.parent_span_id
    }

    /// Whether the parent came from another process (set through context propagation).
    pub fn parent_is_remote(&self) -> bool {
        self.parent_is_remote
    }

    /// The span that roots this span's trace in this process: a root, or a span whose parent
    /// is remote. The span itself when it is one.
    pub fn local_root_id(&self) -> SpanId {
        self.local_root
    }

    /// Wall-clock time the span was created.
    pub fn start(&self) -> SystemTime {
        self.start.to_system()
    }

    /// Wall-clock time the span closed (`start` plus the monotonic duration).
    pub fn end(&self) -> SystemTime {
        self.end_wall_time().to_system()
    }

    /// [`start`](Self::start), as a sink formats it.
    #[inline]
    pub(crate) fn start_wall_time(&self) -> WallTime {
        self.start
    }

    /// [`end`](Self::end), as a sink formats it.
    #[inline]
    pub(crate) fn end_wall_time(&self) -> WallTime {
        self.start.plus(self.duration)
    }

    /// The monotonic time between creation and close.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The time the span was entered (busy) and the rest of its life (idle), as
    /// `tracing-subscriber`'s `fmt` span timings and `tracing-opentelemetry`'s `busy_ns` /
    /// `idle_ns` report them; `None` when span timings are off
    /// ([`Builder::span_timings`](crate::Builder::span_timings)).
    ///
    /// Busy counts each stretch from an enter to its exit on the thread it happened on; a span
    /// entered again while it is already entered on that thread is not counted twice. A span
    /// entered on two threads at the same time counts both stretches, up to its duration (busy
    /// then exceeds the time it was entered at all, and idle is 0 when the stretches add up to
    /// more than its life). Busy and idle add up to the duration.
    pub fn busy_idle(&self) -> Option<(Duration, Duration)> {
        self.timings.then_some(self.busy_idle)
    }

    /// Fields given at creation and recorded later (a later value replaces an earlier one).
    pub fn fields(&self) -> &Fields {
        &self.fields
    }

    /// Events recorded inside the span, up to the configured span-event limit, when a sink
    /// wants them ([`Sink::wants_span_events`](crate::sink::Sink::wants_span_events)).
    pub fn events(&self) -> &[Shared<EventRecord>] {
        &self.events
    }

    /// Events past the span-event limit, counted and not kept.
    pub fn dropped_events(&self) -> u32 {
        self.dropped_events
    }

    /// Spans this one follows from (`Span::follows_from`), as links: at most 128
    /// (OpenTelemetry's default link count limit).
    pub fn links(&self) -> &[SpanContext] {
        &self.links
    }

    /// Links past the limit of [`links`](Self::links), counted and not kept.
    pub fn dropped_links(&self) -> u32 {
        self.dropped_links
    }

    /// The thread the span was created on.
    pub fn thread(&self) -> ThreadInfo {
        self.thread
    }
}

/// The most links a span keeps (OpenTelemetry's default link count limit).
pub(crate) const MAX_LINKS: usize = 128;

impl Recycle for SpanRecord {
    fn release(&mut self) {
        // The events are other records: they go back to their pool now, not when this one is
        // reused (that would be on the calling thread).
        self.events.clear();
        if self.events.capacity() > 1024 {
            self.events.shrink_to(1024);
        }
        // Up to the most a span keeps: a span following from many others grows its record's
        // list once, not at each reuse.
        if self.links.capacity() > MAX_LINKS {
            self.links.clear();
            self.links.shrink_to(MAX_LINKS);
        }
        self.fields.bound();
    }

    fn reset(&mut self) {
        self.parent_span_id = None;
        self.parent_is_remote = false;
        self.busy_raw = RawSpan::default();
        self.busy_idle = (Duration::ZERO, Duration::ZERO);
        self.fields.clear();
        self.dropped_events = 0;
        self.links.clear();
        self.dropped_links = 0;
    }

    fn buffer(&self) -> &[u8] {
        self.fields.text_buffer()
    }

    fn stage() -> &'static LocalKey<RefCell<Stage<Self>>> {
        thread_local! {
            static STAGE: RefCell<Stage<SpanRecord>> = const { RefCell::new(Stage::new()) };
        }
        &STAGE
    }
}

impl fmt::Debug for SpanRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpanRecord")
            .field("name", &self.name())
            .field("level", &self.level)
            .field("context", &self.context)
            .field("parent_span_id", &self.parent_span_id)
            .field("parent_is_remote", &self.parent_is_remote)
            .field("start", &self.start())
            .field("duration", &self.duration)
            .field("fields", &self.fields)
            .field("events", &self.events)
            .field("dropped_events", &self.dropped_events)
            .field("links", &self.links)
            .field("dropped_links", &self.dropped_links)
            .finish()
    }
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

/// Why a record that reached a sink did not reach its destination, for the in-band markers.
/// Unlike a [`DropReason`] these are counted by the sink's own outcomes
/// ([`SinkStats::failed`](crate::SinkStats::failed) and its spool's ledger,
/// [`SpoolStats`](crate::SpoolStats)), not as drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum UndeliveredReason {
    /// The sink failed to write or export it (`SinkStats::failed`): a full disk, a collector
    /// that refused it or stayed unreachable past the retries.
    Failed,
    /// Evicted from the sink's spool to stay within its budget (`SpoolStats::evicted`).
    SpoolEvicted,
    /// Found damaged in the sink's spool (`SpoolStats::corrupt_records`).
    SpoolCorrupt,
    /// Refused for good by the collector when replayed from the spool (`SpoolStats::rejected`).
    SpoolRejected,
}

impl UndeliveredReason {
    /// The snake-case name used in JSON and in the marker text.
    pub const fn as_str(self) -> &'static str {
        match self {
            UndeliveredReason::Failed => "failed",
            UndeliveredReason::SpoolEvicted => "spool_evicted",
            UndeliveredReason::SpoolCorrupt => "spool_corrupt",
            UndeliveredReason::SpoolRejected => "spool_rejected",
        }
    }
}

impl fmt::Display for UndeliveredReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The in-band marker that sinks write where data was lost: "N records dropped since …".
///
/// A marker reports the records dropped before the sinks (at the queue, by reason) and this
/// sink's own losses since the previous marker that reached it: records dropped at the sink,
/// and records it failed to deliver. A marker in a batch that fails is not lost: its counts go
/// into the next one. So the markers a sink writes add up to every record it did not get, once
/// it writes again (the losses of its spool are reported once the collector is reachable; what
/// a sink that fails to the end, or was disabled by a panic, lost is in the stats only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropNotice {
    /// When the previous marker (or the pipeline start) was.
    pub since: SystemTime,
    /// When this marker was made.
    pub at: SystemTime,
    /// Records dropped, by reason, only the non-zero ones.
    pub by_reason: Vec<(DropReason, u64)>,
    /// Records this sink did not deliver, by reason, only the non-zero ones.
    pub undelivered: Vec<(UndeliveredReason, u64)>,
}

impl DropNotice {
    /// The total number of records the marker reports.
    pub fn total(&self) -> u64 {
        let dropped: u64 = self.by_reason.iter().map(|(_, n)| n).sum();
        dropped + self.undelivered.iter().map(|(_, n)| n).sum::<u64>()
    }

    /// Every count of the marker by name: the drop reasons, then the undelivered ones.
    pub fn counts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        let dropped = self.by_reason.iter().map(|(r, n)| (r.as_str(), *n));
        dropped.chain(self.undelivered.iter().map(|(r, n)| (r.as_str(), *n)))
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
        for (i, (reason, n)) in self.counts().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{reason}: {n}")?;
        }
        f.write_str(")")
    }
}

/// One unit in every sink's buffer. Cloning is a reference-count bump.
#[derive(Clone, Debug)]
pub enum Record {
    /// An event.
    Event(Shared<EventRecord>),
    /// A closed span.
    Span(Shared<SpanRecord>),
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

/// What the calling thread pushes into the queue: a record it filled in a box from the pool.
/// The drain thread finishes it (wall-clock times) and shares it as a [`Record`].
#[derive(Debug)]
pub(crate) enum Captured {
    Event(Box<EventRecord>),
    Span(Box<SpanRecord>),
}

impl Captured {
    /// Asks the CPU to fetch the record's memory (written on the calling thread, often on
    /// another core), without waiting for it: the drain thread does this a few records ahead
    /// of the one it works on.
    #[inline]
    pub(crate) fn prefetch(&self) {
        match self {
            Captured::Event(e) => prefetch_value(&**e),
            Captured::Span(s) => prefetch_value(&**s),
        }
    }
}

/// Asks the CPU to fetch what a sink reads of the records ahead of `batch[i]`, without waiting:
/// the record `PREFETCH_RECORD` ahead, and the text of the one `PREFETCH_TEXT` ahead (whose
/// record was fetched earlier, so where its text is costs no wait). The calling thread wrote
/// them, often on another core; the crate's sinks call this before each record of a batch.
#[inline]
pub(crate) fn prefetch_ahead(batch: &[Record], i: usize) {
    const PREFETCH_RECORD: usize = 8;
    const PREFETCH_TEXT: usize = 4;
    match batch.get(i + PREFETCH_RECORD) {
        Some(Record::Event(e)) => prefetch_value::<EventRecord>(e),
        Some(Record::Span(s)) => prefetch_value::<SpanRecord>(s),
        _ => {}
    }
    let text = match batch.get(i + PREFETCH_TEXT) {
        Some(Record::Event(e)) => e.buffer(),
        Some(Record::Span(s)) => s.buffer(),
        _ => return,
    };
    shared::prefetch(text.as_ptr(), text.len().min(512));
}

#[inline]
fn prefetch_value<T>(value: &T) {
    shared::prefetch(std::ptr::from_ref(value).cast(), std::mem::size_of::<T>());
}

/// Formats a time as RFC 3339 in UTC with microseconds, e.g. `2026-11-22T11:24:22.123456Z`. A
/// time outside the years 0000 – 9999, which RFC 3339 cannot write, is written as the nearest
/// one it can.
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
    rfc3339_wall(WallTime::from_system(t))
}

/// [`rfc3339_bytes`] of a record's time (no `SystemTime::duration_since` to normalise it).
#[inline]
pub(crate) fn rfc3339_wall(t: WallTime) -> [u8; 27] {
    rfc3339_parts(t.secs(), t.subsec_micros())
}

/// The first second RFC 3339 writes (0000-01-01T00:00:00Z) and the last
/// (9999-12-31T23:59:59Z): its years have four digits.
const RFC3339_SECS: std::ops::RangeInclusive<i64> = -62_167_219_200..=253_402_300_799;

fn rfc3339_parts(secs: i64, micros: u32) -> [u8; 27] {
    // A time outside the years RFC 3339 writes is written as the nearest one it does (a
    // clamped year alone would make dates that do not exist, and put times out of order).
    let (secs, micros) = if secs < *RFC3339_SECS.start() {
        (*RFC3339_SECS.start(), 0)
    } else if secs > *RFC3339_SECS.end() {
        (*RFC3339_SECS.end(), 999_999)
    } else {
        (secs, micros)
    };
    use std::cell::Cell;
    thread_local! {
        static SECOND: Cell<(i64, [u8; 19])> = const { Cell::new((i64::MIN, [0; 19])) };
    }
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
    // Microseconds in pairs of digits: half the divisions of `write_digits`, once per record.
    let mut v = micros.min(999_999) as usize;
    for pair in out[20..26].rchunks_exact_mut(2) {
        let d = (v % 100) * 2;
        pair.copy_from_slice(&DIGIT_PAIRS[d..d + 2]);
        v /= 100;
    }
    out[26] = b'Z';
    out
}

/// `00`, `01`, … `99`.
const DIGIT_PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

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
            for nanos in [
                123_456_789,
                0,
                1_000,
                999_999_999,
                500_000,
                7_080_000,
                10_203_999,
            ] {
                let t = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
                let ours = rfc3339(t);
                let theirs = time::OffsetDateTime::from(t).format(&fmt).unwrap();
                // `time` prints nanoseconds (or none when they are zero); ours always prints
                // microseconds.
                let theirs = format!("{}.{:06}Z", &theirs[..19], nanos / 1_000);
                assert_eq!(ours, theirs, "{secs} {nanos}");
                let wall = rfc3339_wall(WallTime::from_system(t));
                assert_eq!(wall[..], *ours.as_bytes(), "{secs} {nanos}");
            }
        }
        // Outside the years RFC 3339 writes (four digits): the nearest time it writes, never
        // a date that does not exist, in order (adversary pass 25: 10000-02-29 was written
        // 9999-02-29, year -1 as year 0, and the earliest time as NUL bytes).
        let epoch = SystemTime::UNIX_EPOCH;
        for (t, expected) in [
            (
                epoch + Duration::from_secs(400_000_000_000),
                "9999-12-31T23:59:59.999999Z",
            ),
            (
                epoch + Duration::from_secs(253_402_300_800),
                "9999-12-31T23:59:59.999999Z",
            ),
            (
                epoch + Duration::new(253_402_300_799, 5_000),
                "9999-12-31T23:59:59.000005Z",
            ),
            (
                epoch - Duration::from_secs(62_167_219_200),
                "0000-01-01T00:00:00.000000Z",
            ),
            (
                epoch - Duration::new(62_167_219_200, 1),
                "0000-01-01T00:00:00.000000Z",
            ),
            (
                epoch - Duration::from_secs(1 << 63),
                "0000-01-01T00:00:00.000000Z",
            ),
        ] {
            assert_eq!(rfc3339(t), expected, "{t:?}");
        }
        // Before the epoch (a clock set back, or a test's fake one): the date it is.
        for (back, expected) in [
            (Duration::new(0, 1_000), "1969-12-31T23:59:59.999999Z"),
            (Duration::new(18_489_600, 0), "1969-06-01T00:00:00.000000Z"),
            (
                Duration::new(18_489_599, 999_000_000),
                "1969-06-01T00:00:00.001000Z",
            ),
        ] {
            let t = SystemTime::UNIX_EPOCH - back;
            assert_eq!(rfc3339(t), expected, "{back:?} before the epoch");
            let theirs = time::OffsetDateTime::from(t).format(&fmt).unwrap();
            assert_eq!(rfc3339(t)[..19], theirs[..19]);
        }
    }
}
