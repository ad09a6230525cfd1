//! The hot side: `impl Layer for OffloadLayer`.
//!
//! What runs on the calling thread, in order: a cached per-callsite classification (level,
//! criticality), the back-pressure check, field capture into an owned record, one push. Nothing
//! here formats for output or does I/O. The locks it takes are short and sharded: the
//! registry's span extensions (on span open, record, close and for events inside spans) and a
//! shard of the open-span index (on span open and close); a `Block` producer also waits on a
//! condition variable for room.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record as SpanValues};
use tracing_core::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::ids::{new_span_id, new_trace_id, thread_info, SpanId, ThreadInfo, TraceId};
use crate::level::LogLevel;
use crate::pipeline::queue::{Backpressure, Intake};
use crate::record::DropReason;
use crate::record::{EventRecord, FieldValue, Fields, Record, SpanRecord, Text};
use crate::sampling::Parent;
use crate::traceparent::{parse_traceparent, RemoteParent, TRACEPARENT_FIELD};

/// The `tracing` layer. Build it with [`OffloadLayer::builder`]; install it on a
/// `tracing_subscriber::Registry`.
///
/// The layer only captures and enqueues; the [`Guard`](crate::Guard) returned with it owns the
/// threads that write. Dropping the layer (e.g. with its subscriber) does not stop them.
#[must_use = "a layer does nothing until it is added to a subscriber, e.g. `registry().with(layer)`"]
pub struct OffloadLayer {
    intake: Arc<Intake>,
    settings: LayerSettings,
    /// Distinguishes this layer's entries in the thread-local callsite cache.
    id: u64,
}

/// The layer's fixed settings.
#[derive(Debug, Clone)]
pub(crate) struct LayerSettings {
    pub(crate) enabled: bool,
    pub(crate) backpressure: Backpressure,
    pub(crate) critical_block_timeout: Duration,
    pub(crate) max_field_len: usize,
    /// 0 when no sink wants span events: then events are not attached to spans.
    pub(crate) span_event_limit: usize,
    pub(crate) critical_targets: Arc<[String]>,
}

impl fmt::Debug for OffloadLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OffloadLayer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What is decided once per callsite (per thread) and then looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CallsiteClass {
    level: LogLevel,
    /// An `ERROR` callsite with a `critical` field: the value decides per event.
    may_be_critical: bool,
    /// The target or name matches a sampling whitelist prefix: never sampled out.
    whitelisted: bool,
    /// A span callsite with a `traceparent` field: a root may join a remote trace.
    may_have_remote_parent: bool,
}

// === impl OffloadLayer ===

impl OffloadLayer {
    pub(crate) fn new(intake: Arc<Intake>, settings: LayerSettings) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        OffloadLayer {
            intake,
            settings,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    fn classify_uncached(&self, meta: &'static Metadata<'static>) -> CallsiteClass {
        let mut level = LogLevel::from_tracing(meta.level());
        if level == LogLevel::Error
            && self
                .settings
                .critical_targets
                .iter()
                .any(|p| meta.target().starts_with(p.as_str()))
        {
            level = LogLevel::Critical;
        }
        CallsiteClass {
            level,
            may_be_critical: level == LogLevel::Error && meta.fields().field("critical").is_some(),
            whitelisted: self.intake.sampler.whitelisted(meta.target(), meta.name()),
            may_have_remote_parent: meta.is_span()
                && meta.fields().field(TRACEPARENT_FIELD).is_some(),
        }
    }

    /// The callsite's class from the thread-local cache; recomputed when the whitelist changed
    /// (its generation moved).
    #[inline]
    fn classify(&self, meta: &'static Metadata<'static>) -> CallsiteClass {
        let key = (self.id, meta as *const Metadata<'static> as usize);
        let generation = self.intake.sampler.generation();
        CALLSITES.with(|cache| {
            if let Some((g, class)) = cache.borrow().get(&key) {
                if *g == generation {
                    return *class;
                }
            }
            let class = self.classify_uncached(meta);
            let mut cache = cache.borrow_mut();
            if cache.len() >= CALLSITE_CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(key, (generation, class));
            class
        })
    }

    /// The sampling decision for an event, made before anything is captured. Whitelisted,
    /// critical and (by default) error events are always kept.
    #[inline]
    fn keep_event<S>(
        &self,
        class: &CallsiteClass,
        level: LogLevel,
        event: &Event<'_>,
        ctx: &Context<'_, S>,
    ) -> bool
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let sampler = &self.intake.sampler;
        if class.whitelisted
            || level == LogLevel::Critical
            || (level == LogLevel::Error && sampler.keep_errors)
        {
            return true;
        }
        if sampler.events_follow_traces {
            let in_unsampled_trace = ctx
                .event_span(event)
                .is_some_and(|s| s.extensions().get::<Unsampled>().is_some());
            if in_unsampled_trace {
                return false;
            }
        }
        sampler.keep_event(self.id)
    }

    #[inline]
    fn policy_for(&self, level: LogLevel) -> Backpressure {
        match (level, self.settings.backpressure) {
            (LogLevel::Critical, Backpressure::Block { timeout }) => {
                Backpressure::Block { timeout }
            }
            (LogLevel::Critical, _) => Backpressure::Block {
                timeout: self.settings.critical_block_timeout,
            },
            (_, policy) => policy,
        }
    }

    /// Offers one record; records offered after shutdown are counted and not built.
    #[inline]
    fn offer(&self, level: LogLevel, build: impl FnOnce() -> Record) {
        let p = &self.intake;
        if p.closed.is_set() {
            p.counters.dropped.add(DropReason::Shutdown, 1);
            p.offered_after_close();
            return;
        }
        p.queue.offer(self.policy_for(level), &p.counters, build);
    }

    fn capture<'a>(
        &'a self,
        fields: &'a mut Fields,
        message: Option<&'a mut Option<Text>>,
    ) -> Capture<'a> {
        Capture {
            fields,
            message,
            cap: self.settings.max_field_len,
            truncated: &self.intake.counters.truncated_values,
            replace: false,
        }
    }
}

/// Thread-local cache of callsite classes, keyed by (layer id, callsite address).
type CallsiteCache = HashMap<(u64, usize), (u64, CallsiteClass), BuildHasherDefault<AddrHasher>>;

/// Bounds the cache; callsites are static, so this is only reached by pathological programs.
const CALLSITE_CACHE_LIMIT: usize = 16_384;

thread_local! {
    static CALLSITES: RefCell<CallsiteCache> = RefCell::new(HashMap::default());
}

/// A fast hasher for (id, address) keys: addresses are already well spread.
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64)
    }
}

/// The marker an unsampled span carries in the registry's extensions (zero-sized: no
/// allocation). Its children inherit the decision under the parent-based samplers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unsampled;

/// A span's state, kept in the registry's extensions and freed when the span closes.
#[derive(Debug)]
pub(crate) struct SpanState {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) parent_span_id: Option<SpanId>,
    pub(crate) parent_is_remote: bool,
    level: LogLevel,
    start: SystemTime,
    started: Instant,
    fields: Fields,
    events: Vec<Arc<EventRecord>>,
    dropped_events: u32,
    thread: ThreadInfo,
    /// This span's slot in the open-span index (stuck-span detection).
    open_ticket: Option<crate::open_spans::SpanTicket>,
}

impl SpanState {
    fn into_record(self, metadata: &'static Metadata<'static>) -> SpanRecord {
        let duration = self.started.elapsed();
        SpanRecord {
            level: self.level,
            metadata,
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent_span_id: self.parent_span_id,
            parent_is_remote: self.parent_is_remote,
            start: self.start,
            end: self.start + duration,
            duration,
            fields: self.fields,
            events: self.events,
            dropped_events: self.dropped_events,
            thread: self.thread,
        }
    }
}

impl<S> Layer<S> for OffloadLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    // The layer never filters: returning `never` or `false` here would disable callsites for
    // every other layer of the subscriber too. A disabled layer (`OTEL_SDK_DISABLED=true`)
    // returns early from each callback instead. Use `tracing_subscriber`'s per-layer filters
    // (`layer.with_filter(..)`) to choose what reaches this layer.

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !self.settings.enabled {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let meta = span.metadata();
        let sampler = &self.intake.sampler;
        let class = self.classify(meta);
        let (parent, mut trace_id, parent_span_id) = match span.parent() {
            Some(p) => {
                let ext = p.extensions();
                match ext.get::<SpanState>() {
                    Some(s) => (Parent::Local(true), Some(s.trace_id), Some(s.span_id)),
                    // An unsampled parent carries no trace id (nothing is allocated for it);
                    // its children inherit its decision, so none is needed.
                    None if ext.get::<Unsampled>().is_some() => (Parent::Local(false), None, None),
                    // A parent this layer never saw (it was enabled later): a root here.
                    None => (Parent::None, None, None),
                }
            }
            None => match class.may_have_remote_parent.then(|| remote_parent(attrs)) {
                Some(Some(r)) => (Parent::Remote(r.sampled), Some(r.trace_id), Some(r.span_id)),
                _ => (Parent::None, None, None),
            },
        };
        let parent_is_remote = matches!(parent, Parent::Remote(_));
        let sampled = match (parent, trace_id) {
            // Inherited: no trace id to make, nothing to decide.
            (Parent::Local(sampled), _) => sampled,
            // The whitelist applies to local roots (with or without a remote parent).
            _ if class.whitelisted => true,
            (_, Some(remote)) => sampler.sample_span(remote, parent),
            (_, None) => {
                let new = new_trace_id();
                let sampled = sampler.sample_span(new, parent);
                trace_id = Some(new);
                sampled
            }
        };
        if !sampled {
            // A zero-sized marker: the span costs no allocation and captures nothing, and its
            // children see the decision.
            span.extensions_mut().insert(Unsampled);
            return;
        }
        // A whitelisted root has not made its trace id yet.
        let trace_id = trace_id.unwrap_or_else(new_trace_id);
        let mut fields = Fields::with_capacity(meta.fields().len());
        attrs.record(&mut self.capture(&mut fields, None));
        let started = Instant::now();
        let open_ticket = self.intake.counters.open_span_index.open(started);
        let state = SpanState {
            trace_id,
            span_id: new_span_id(),
            parent_span_id,
            parent_is_remote,
            level: class.level,
            start: SystemTime::now(),
            started,
            fields,
            events: Vec::new(),
            dropped_events: 0,
            thread: thread_info(),
            open_ticket,
        };
        span.extensions_mut().insert(state);
        self.intake.counters.spans_opened.incr();
    }

    fn on_record(&self, id: &Id, values: &SpanValues<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        if let Some(state) = ext.get_mut::<SpanState>() {
            let mut capture = self.capture(&mut state.fields, None);
            capture.replace = true;
            values.record(&mut capture);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if !self.settings.enabled {
            return;
        }
        let meta = event.metadata();
        let class = self.classify(meta);
        let mut level = class.level;
        if class.may_be_critical && is_marked_critical(event) {
            level = LogLevel::Critical;
        }
        if !self.keep_event(&class, level, event, &ctx) {
            self.intake.counters.sampled_out.incr();
            return;
        }
        self.offer(level, || {
            let mut fields = Fields::with_capacity(meta.fields().len());
            let mut message = None;
            event.record(&mut self.capture(&mut fields, Some(&mut message)));
            let span = ctx.event_span(event);
            let mut record = EventRecord {
                timestamp: SystemTime::now(),
                level,
                metadata: meta,
                message,
                fields,
                trace_id: None,
                span_id: None,
                thread: thread_info(),
            };
            let Some(span) = span else {
                return Record::Event(Arc::new(record));
            };
            let mut ext = span.extensions_mut();
            let Some(state) = ext.get_mut::<SpanState>() else {
                return Record::Event(Arc::new(record));
            };
            record.trace_id = Some(state.trace_id);
            record.span_id = Some(state.span_id);
            let record = Arc::new(record);
            if self.settings.span_event_limit > 0 {
                if state.events.len() < self.settings.span_event_limit {
                    state.events.push(Arc::clone(&record));
                } else {
                    state.dropped_events = state.dropped_events.saturating_add(1);
                    self.intake.counters.span_events_dropped.incr();
                }
            }
            Record::Event(record)
        });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(state) = span.extensions_mut().remove::<SpanState>() else {
            if span.extensions().get::<Unsampled>().is_some() {
                self.intake.counters.spans_sampled_out.incr();
            }
            return;
        };
        self.intake.counters.spans_closed.incr();
        if let Some(ticket) = state.open_ticket {
            self.intake.counters.open_span_index.close(ticket);
        }
        let meta = span.metadata();
        self.offer(state.level, move || {
            Record::Span(Arc::new(state.into_record(meta)))
        });
    }
}

/// The remote parent given in a root span's `traceparent` field, when it is valid. Reads the
/// value without allocating: a `&str` as it is, anything else formatted into a stack buffer.
fn remote_parent(attrs: &Attributes<'_>) -> Option<RemoteParent> {
    struct Probe(Option<RemoteParent>);
    impl Visit for Probe {
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == TRACEPARENT_FIELD {
                self.0 = parse_traceparent(value);
            }
        }
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            if field.name() == TRACEPARENT_FIELD {
                let mut buf = StackText::default();
                // Too long for a valid `traceparent` (or a failing `Debug`): ignored.
                if write!(buf, "{value:?}").is_ok() {
                    // `?value` of a string quotes it.
                    self.0 = buf
                        .as_str()
                        .and_then(|t| parse_traceparent(t.trim_matches('"')));
                }
            }
        }
    }
    let mut probe = Probe(None);
    attrs.record(&mut probe);
    probe.0
}

/// A small text buffer on the stack; writing past its end is an error.
struct StackText {
    buf: [u8; 128],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        StackText {
            buf: [0; 128],
            len: 0,
        }
    }
}

impl StackText {
    fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.buf[..self.len]).ok()
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Whether an event's `critical` field is `true`.
fn is_marked_critical(event: &Event<'_>) -> bool {
    struct Probe(bool);
    impl Visit for Probe {
        fn record_bool(&mut self, field: &Field, value: bool) {
            if field.name() == "critical" {
                self.0 = value;
            }
        }
        fn record_debug(&mut self, _: &Field, _: &dyn fmt::Debug) {}
    }
    let mut probe = Probe(false);
    event.record(&mut probe);
    probe.0
}

/// Captures field values into owned data, capping text at `cap` bytes.
struct Capture<'a> {
    fields: &'a mut Fields,
    message: Option<&'a mut Option<Text>>,
    cap: usize,
    truncated: &'a crate::stats::Counter,
    replace: bool,
}

impl<'a> Capture<'a> {
    fn put(&mut self, field: &Field, value: FieldValue) {
        let name = field.name();
        if self.replace {
            if let Some(slot) = self.fields.iter_mut().find(|(n, _)| *n == name) {
                slot.1 = value;
                return;
            }
        }
        self.fields.push((name, value));
    }

    /// Captures text written by `value`; `hint` is the expected length, so that the common case
    /// allocates once.
    fn text(&mut self, hint: usize, value: impl FnOnce(&mut Capped<'_>)) -> Text {
        let mut text = compact_str::CompactString::with_capacity(hint.min(self.cap));
        let mut w = Capped {
            buf: &mut text,
            cap: self.cap,
            total: 0,
        };
        value(&mut w);
        let total = w.total;
        let truncated_from = (total > self.cap).then_some(total);
        if truncated_from.is_some() {
            self.truncated.incr();
        }
        Text {
            text,
            truncated_from,
        }
    }

    fn put_text(&mut self, field: &Field, hint: usize, value: impl FnOnce(&mut Capped<'_>)) {
        let text = self.text(hint, value);
        if field.name() == "message" {
            if let Some(message) = self.message.as_deref_mut() {
                *message = Some(text);
                return;
            }
        }
        self.put(field, FieldValue::Str(text));
    }
}

impl Visit for Capture<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, FieldValue::F64(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, FieldValue::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, FieldValue::U64(value));
    }
    fn record_i128(&mut self, field: &Field, value: i128) {
        self.put(field, FieldValue::I128(value));
    }
    fn record_u128(&mut self, field: &Field, value: u128) {
        self.put(field, FieldValue::U128(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, FieldValue::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put_text(field, value.len(), |w| {
            let _ = w.write_str(value);
        });
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put_text(field, DEBUG_TEXT_HINT, |w| {
            let _ = write!(w, "{value}");
        });
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put_text(field, DEBUG_TEXT_HINT, |w| {
            let _ = write!(w, "{value:?}");
        });
    }
}

/// The first allocation for a `Debug` or `Display` value (messages are usually short).
const DEBUG_TEXT_HINT: usize = 24;

/// A writer that keeps the first `cap` bytes (on a char boundary) and counts the rest.
struct Capped<'a> {
    buf: &'a mut compact_str::CompactString,
    cap: usize,
    total: usize,
}

impl fmt::Write for Capped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.total += s.len();
        let room = self.cap.saturating_sub(self.buf.len());
        if s.len() <= room {
            self.buf.push_str(s);
        } else if room > 0 {
            let mut end = room;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            self.buf.push_str(&s[..end]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_writer_cuts_on_char_boundaries_and_counts_everything() {
        let mut buf = compact_str::CompactString::default();
        let mut w = Capped {
            buf: &mut buf,
            cap: 5,
            total: 0,
        };
        w.write_str("ab").unwrap();
        w.write_str("cé€").unwrap(); // 1 + 2 + 3 bytes; only "cé" fits in the 3 left
        w.write_str("zzz").unwrap();
        assert_eq!(w.total, 11);
        assert_eq!(buf, "abcé");
    }
}
