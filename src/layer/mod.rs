//! The hot side: `impl Layer for OffloadLayer`.
//!
//! What runs on the calling thread, in order: a cached per-callsite classification
//! (`callsite.rs`), the sampling decision, the back-pressure check, field capture into a record
//! box taken from the pipeline's pool (`capture.rs`), one push. Nothing here formats for output,
//! does I/O or allocates in steady state. Span state lives in the layer's own sharded store
//! (`spans.rs`); the locks taken are that store's shard locks, each held for a lookup, insert
//! or removal (never while a field's `Debug` runs), and, under `Block`, the wait for room.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tracing_core::span::{Attributes, Id, Record as SpanValues};
use tracing_core::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

mod callsite;
mod capture;
mod entered;
mod id_index;
mod spans;

use self::callsite::CallsiteClass;
use self::capture::{is_marked_critical, remote_parent, Capture};
use self::spans::{LocalRoot, NewSpan, SpanEntry, SpanStore};
use crate::clock::Tick;
use crate::ids::{new_root_ids, new_span_id, thread_info, SpanContext, SpanId, TraceId};
use crate::level::LogLevel;
use crate::pipeline::queue::{Admission, Backpressure, Intake};
use crate::record::{Captured, EventRecord, Fields, LogSource, SpanRecord};
use crate::sampling::Parent;
use crate::silent;
use crate::traceparent::RemoteParent;

use crate::record::MAX_LINKS;

/// Why [`OffloadSpanExt::set_parent_traceparent`](crate::OffloadSpanExt::set_parent_traceparent) did not set the parent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SetParentError {
    /// The value is not a valid W3C `traceparent`.
    #[error("not a valid W3C traceparent: {0:?}")]
    InvalidTraceparent(String),
    /// The span is not recorded by an [`OffloadLayer`] (disabled, closed, or another
    /// subscriber).
    #[error("the span is not recorded by an OffloadLayer")]
    NotRecorded,
    /// The span already has child spans: changing its trace now would split the trace. The
    /// refusal is counted in [`Stats::reparent_refused`](crate::Stats::reparent_refused).
    #[error("the span already has child spans; set the parent before creating them")]
    HasChildren,
    /// An event was already kept in the span, with the span's trace id: changing its trace now
    /// would leave that event behind (events sampled out do not count). Counted as
    /// [`HasChildren`](Self::HasChildren) is.
    #[error("an event already happened in the span; set the parent before logging in it")]
    HasEvents,
    /// The span's `traceparent` was already handed out
    /// ([`OffloadSpanExt::traceparent`](crate::OffloadSpanExt::traceparent), for an outgoing
    /// call whose callee joined its trace): changing its trace now would leave the callee's
    /// part behind. Counted as [`HasChildren`](Self::HasChildren) is.
    #[error(
        "the span's traceparent was already sent on; set the parent before making calls in it"
    )]
    Propagated,
    /// The span has a parent span in this process, whose trace it belongs to: only a local
    /// root can join a remote trace. Counted as [`HasChildren`](Self::HasChildren) is.
    #[error("the span has a parent span in this process; set the parent on its local root")]
    HasLocalParent,
}

/// The `tracing` layer. Build it with [`OffloadLayer::builder`]; install it on a
/// `tracing_subscriber::Registry`.
///
/// The layer only captures and enqueues; the [`Guard`](crate::Guard) returned with it owns the
/// threads that write. Dropping the layer (e.g. with its subscriber) does not stop them. Two
/// layers may share one registry (say, one per destination, each with its own filter): each
/// keeps its own span state and makes its own sampling decisions, and a span both record has
/// the same trace id and span id in both (a span whose parent one layer's filter hides stays,
/// for that layer, in the trace the others see). Layers inside a `Vec` or an `Option` are not
/// told of each other (`tracing-subscriber` does not hand them the `Dispatch`): they give a
/// span ids of their own, and an event whose explicit parent (`parent: &span`) their filter
/// hides is placed outside any span for them (a plain layer finds the parent's nearest
/// ancestor it records, through the registry).
#[must_use = "a layer does nothing until it is added to a subscriber, e.g. `registry().with(layer)`"]
pub struct OffloadLayer {
    intake: Arc<Intake>,
    settings: LayerSettings,
    spans: Arc<SpanStore>,
    /// Distinguishes this layer's entries in the thread-local callsite cache.
    id: u64,
    /// The other `OffloadLayer`s of this layer's subscriber, when this one is the outermost
    /// (the one `Dispatch::downcast_ref` finds): a remote parent set through it reaches them
    /// too. They register themselves when the subscriber becomes a `Dispatch`.
    siblings: Arc<Mutex<Vec<Sibling>>>,
    /// For a layer that is not the outermost: the outermost, and its `siblings` (this one among
    /// them).
    family: OnceLock<(Sibling, Arc<Mutex<Vec<Sibling>>>)>,
    /// The span stores of the subscriber's other `OffloadLayer`s, read once the subscriber is
    /// in use: a span one of them placed first gets the same ids here.
    kin: OnceLock<Box<[Kin]>>,
    /// Whether the subscriber has other `OffloadLayer`s (set as they register): a layer alone
    /// looks for none.
    has_kin: AtomicBool,
    /// The subscriber this layer is part of (weak: it holds the layer), for the spans this
    /// layer's filter hides: their recorded ancestors are found through its registry.
    dispatch: OnceLock<tracing_core::dispatcher::WeakDispatch>,
    /// Whether a per-layer filter may hide spans from this layer (the subscriber's registry has
    /// per-layer filters, or it cannot tell): only then does an event ask the registry for its
    /// current span (about 40 instructions outside spans, 160 inside).
    filters_possible: AtomicBool,
}

/// Another `OffloadLayer` of the same subscriber: its id (for its stack of entered spans) and
/// its span store.
struct Kin {
    id: u64,
    spans: Arc<SpanStore>,
}

/// What a remote parent set later needs of another layer on the same subscriber.
struct Sibling {
    id: u64,
    spans: Weak<SpanStore>,
    intake: Weak<Intake>,
}

/// The layer's fixed settings.
#[derive(Debug, Clone)]
pub(crate) struct LayerSettings {
    pub(crate) enabled: bool,
    pub(crate) backpressure: Backpressure,
    pub(crate) critical_block_timeout: Duration,
    pub(crate) max_field_len: usize,
    pub(crate) critical_targets: Arc<[String]>,
    /// Whether spans count their busy and idle time (`on_enter` / `on_exit`).
    pub(crate) span_timings: bool,
}

impl std::fmt::Debug for OffloadLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffloadLayer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// Where `Span::record` captures values before taking the span store's lock, so that no
    /// `Debug` runs under it. Kept per thread to reuse its buffer.
    static SCRATCH: RefCell<Fields> = RefCell::new(Fields::default());
}

/// A refused re-parenting is reported once per process on stderr (and always counted).
static REPARENT_WARNED: std::sync::Once = std::sync::Once::new();

// === impl OffloadLayer ===

impl OffloadLayer {
    pub(crate) fn new(intake: Arc<Intake>, settings: LayerSettings) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        OffloadLayer {
            intake,
            settings,
            spans: Arc::default(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            siblings: Arc::default(),
            family: OnceLock::new(),
            kin: OnceLock::new(),
            has_kin: AtomicBool::new(false),
            dispatch: OnceLock::new(),
            filters_possible: AtomicBool::new(true),
        }
    }

    /// The ids another `OffloadLayer` of the subscriber gave the span `id`, if one placed it
    /// already (the inner layers see a new span first): one span has one trace id and span id
    /// at every destination, so that the lines of a JSON file and the spans at the collector
    /// name the same trace. Each layer still makes its own sampling decision.
    #[cold]
    #[inline(never)]
    fn kin_context(&self, id: &Id) -> Option<SpanContext> {
        self.kin()
            .iter()
            .find_map(|k| k.spans.context(id).map(|(c, _)| c))
    }

    /// A root's ids here, when the subscriber has other `OffloadLayer`s: those another layer
    /// gave the span (`kin`), else a new span id in the trace of its parent that another layer
    /// records (this layer's filter hides it), else new ones.
    #[cold]
    #[inline(never)]
    fn root_ids_with_kin(
        &self,
        id: &Id,
        kin: Option<SpanContext>,
        attrs: &Attributes<'_>,
    ) -> (TraceId, SpanId) {
        match kin {
            Some(k) => (k.trace_id, k.span_id),
            None => match self.kin_parent_trace(id, attrs) {
                Some(trace_id) => (trace_id, new_span_id()),
                None => new_root_ids(),
            },
        }
    }

    fn kin(&self) -> &[Kin] {
        self.kin.get_or_init(|| self.read_kin())
    }

    /// The other layers of the subscriber, from its family of `OffloadLayer`s.
    #[cold]
    fn read_kin(&self) -> Box<[Kin]> {
        let (outer, siblings) = match self.family.get() {
            Some((outer, siblings)) => (Some(outer), siblings),
            None => (None, &self.siblings),
        };
        let siblings = siblings.lock().unwrap_or_else(|e| e.into_inner());
        outer
            .into_iter()
            .chain(siblings.iter())
            .filter(|s| s.id != self.id)
            .filter_map(|s| {
                Some(Kin {
                    id: s.id,
                    spans: s.spans.upgrade()?,
                })
            })
            .collect()
    }

    /// A span with a remote parent in its `traceparent` field, which is a root here: when it has
    /// a local parent that this layer's filter hides and another layer records, that layer
    /// keeps it in its local trace (and refuses the remote parent), and so does this one, so
    /// that the span has one trace and one span id at every destination (adversary pass 63).
    #[cold]
    #[inline(never)]
    fn remote_with_kin(
        &self,
        id: &Id,
        remote: RemoteParent,
        kin: Option<SpanContext>,
        attrs: &Attributes<'_>,
    ) -> Lineage {
        let local = match kin {
            Some(k) => k.trace_id != remote.trace_id,
            None => self.kin_parent_trace(id, attrs).is_some(),
        };
        if !local {
            return Lineage::Remote(remote);
        }
        refused(&self.intake, &SetParentError::HasLocalParent);
        Lineage::Root
    }

    /// The span an event happens in according to the registry: its current span on this
    /// thread, or that span's nearest ancestor this layer records when this layer's filter hides
    /// it (the registry's own answer looks only at the spans entered on this thread: a task's
    /// hidden span entered inside a worker's span would put the event in the worker's).
    ///
    /// It answers with an id, which the caller looks up again (a second look-up, on this
    /// filtered-subscriber path only): handing it the caller's look-up instead put 23
    /// instructions on every kept span lifecycle (callgrind), through how `on_event` compiles.
    #[cold]
    #[inline(never)]
    fn registry_event_span<S>(&self, event: &Event<'_>, ctx: &Context<'_, S>) -> Option<Id>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let current = ctx.current_span();
        if let Some(id) = current.id() {
            if self.spans.context(id).is_some() {
                return Some(id.clone());
            }
            if let Some(ancestor) = self.recorded_ancestor(id) {
                return Some(ancestor);
            }
        }
        ctx.event_span(event).map(|span| span.id())
    }

    /// The nearest ancestor of the span `id` (which this layer does not record: its filter
    /// hides it) that this layer records, found through the subscriber's registry.
    #[cold]
    #[inline(never)]
    fn recorded_ancestor(&self, id: &Id) -> Option<Id> {
        self.with_registry(|r| recorded_ancestor(r, id, |a| self.spans.context(a).is_some()))?
    }

    /// The subscriber's registry, when the layer was handed its `Dispatch` and the subscriber
    /// is a `Registry` (layers inside an `Option` or a `Vec` are not handed one).
    fn with_registry<R>(&self, f: impl FnOnce(&tracing_subscriber::Registry) -> R) -> Option<R> {
        let dispatch = self.dispatch.get()?.upgrade()?;
        dispatch
            .downcast_ref::<tracing_subscriber::Registry>()
            .map(f)
    }

    /// For a span that has no parent this layer records, though it has one (this layer's filter
    /// hides it): the trace another layer of the subscriber has that parent in (its nearest
    /// ancestor another layer records, through the registry; without the registry, the parent
    /// given or the other layers' spans entered on this thread).
    #[cold]
    fn kin_parent_trace(&self, id: &Id, attrs: &Attributes<'_>) -> Option<TraceId> {
        if attrs.is_root() {
            return None;
        }
        let in_kin = |a: &Id| self.kin().iter().find_map(|k| k.spans.context(a));
        if let Some(through_registry) = self.with_registry(|registry| {
            let ancestor = recorded_ancestor(registry, id, |a| in_kin(a).is_some())?;
            in_kin(&ancestor).map(|(c, _)| c.trace_id)
        }) {
            return through_registry;
        }
        self.kin().iter().find_map(|k| {
            let parent = match attrs.parent() {
                Some(parent) => parent.clone(),
                None => match entered::current(k.id) {
                    entered::Current::Span(id) => id,
                    _ => return None,
                },
            };
            k.spans.context(&parent).map(|(c, _)| c.trace_id)
        })
    }

    #[inline]
    fn classify(&self, meta: &'static tracing_core::Metadata<'static>) -> CallsiteClass {
        let sampler = &self.intake.sampler;
        callsite::cached(self.id, meta, sampler.generation(), || {
            CallsiteClass::new(
                meta,
                &self.settings.critical_targets,
                sampler.whitelisted(meta.target(), meta.name()),
            )
        })
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

    /// Whether an event is exempt from sampling: whitelisted, critical and (by default) error
    /// events are always kept, by the event sampler and by tail sampling.
    #[inline]
    fn always_kept(&self, class: &CallsiteClass, level: LogLevel) -> bool {
        class.whitelisted
            || level == LogLevel::Critical
            || (level == LogLevel::Error && self.intake.sampler.keep_errors)
    }

    /// The sampling decision for an event that is not [always kept](Self::always_kept), made
    /// before anything is captured.
    #[inline]
    fn keep_event(&self, context: Option<SpanContext>) -> bool {
        let sampler = &self.intake.sampler;
        if sampler.events_follow_traces && context.is_some_and(|c| !c.sampled) {
            return false;
        }
        sampler.keep_event(self.id)
    }

    /// The trace context a new span gets from its parent: a local parent span, else a remote
    /// parent in its `traceparent` field, else none (a new trace).
    #[inline(always)]
    fn parent_of<S>(
        &self,
        attrs: &Attributes<'_>,
        id: &Id,
        ctx: &Context<'_, S>,
        class: &CallsiteClass,
    ) -> Lineage
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let adopt = |parent: &Id| {
            self.spans.with(parent, |e| {
                e.has_children = true;
                (e.context, (e.local_root, e.root_start))
            })
        };
        // The parent this layer knows without walking the registry's spans: the explicit one,
        // or the span entered on this thread when it is also the registry's current span. When
        // it is not, the registry's current span is one this layer does not record (hidden by
        // a per-layer filter), whose own nearest recorded ancestor is the parent: the registry
        // walks to it.
        let known = if attrs.is_root() {
            Some(None)
        } else if let Some(parent) = attrs.parent() {
            adopt(parent).map(Some)
        } else {
            let registry = ctx.current_span();
            match (entered::current(self.id), registry.id()) {
                (entered::Current::Span(ours), Some(theirs)) if ours == *theirs => {
                    adopt(&ours).map(Some)
                }
                (entered::Current::None, None) => Some(None),
                _ => None,
            }
        };
        let local = known.unwrap_or_else(|| {
            ctx.span(id)
                .and_then(|span| span.parent())
                .and_then(|parent| adopt(&parent.id()))
        });
        match local {
            Some((context, local_root)) => Lineage::Local {
                context,
                local_root,
            },
            None => Lineage::Root,
        }
        .or_remote(attrs, class.may_have_remote_parent, &self.intake)
    }

    /// The span an event happens in, as this layer records it (its context and local root),
    /// and whether the event is kept: `keep` decides from the span's context (or from none,
    /// outside any span). A kept event marks its span as having had one. The layer's own stack
    /// of entered spans answers without the registry's lookups; the registry decides when the
    /// stack's answer is not a span of this layer's store.
    #[inline]
    fn event_place<S>(
        &self,
        event: &Event<'_>,
        ctx: &Context<'_, S>,
        keep: impl Fn(Option<SpanContext>) -> bool,
    ) -> (Option<(SpanContext, LocalRoot)>, bool)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let in_span = |id: &Id| self.spans.event_in(id, |c| keep(Some(c)));
        let found = if event.is_root() {
            None
        } else if let Some(parent) = event.parent() {
            // A parent this layer's filter hides: its nearest recorded ancestor, as for an
            // event made inside it (adversary pass 62: the event was taken for one outside
            // any span, and written though tail sampling dropped its trace).
            // One call site for the look-up (two made the hot path slower).
            let mut at = parent.clone();
            let mut hidden = false;
            loop {
                let found = in_span(&at);
                if found.is_some() || hidden {
                    break found;
                }
                hidden = true;
                match self.recorded_ancestor(&at) {
                    Some(ancestor) => at = ancestor,
                    None => break None,
                }
            }
        } else {
            match entered::current(self.id) {
                // No span this layer records is entered on this thread; one its filter hides
                // may be (a task's span, made elsewhere, adversary pass 63), in a span this
                // layer records: the registry's current span tells.
                entered::Current::None if !self.filters_possible.load(Ordering::Relaxed) => None,
                entered::Current::None => match ctx.current_span().id() {
                    None => None,
                    Some(_) => self
                        .registry_event_span(event, ctx)
                        .and_then(|id| in_span(&id)),
                },
                // The registry's current span is that one, unless one this layer's filter hides
                // was entered after it (a task's span, whose recorded ancestor may be another:
                // adversary pass 64).
                entered::Current::Span(id) if !self.filters_possible.load(Ordering::Relaxed) => {
                    in_span(&id)
                        .or_else(|| ctx.event_span(event).and_then(|span| in_span(&span.id())))
                }
                entered::Current::Span(id) => match ctx.current_span().id() {
                    Some(theirs) if *theirs == id => in_span(&id),
                    _ => self
                        .registry_event_span(event, ctx)
                        .and_then(|id| in_span(&id)),
                },
                entered::Current::Unknown => self
                    .registry_event_span(event, ctx)
                    .and_then(|id| in_span(&id)),
            }
        };
        match found {
            Some((context, root, kept)) => (Some((context, root)), kept),
            None => (None, keep(None)),
        }
    }

    /// Decides a new span's ids and sampling: a local child inherits its parent's trace and
    /// decision; a remote child and a root are decided by the traces sampler.
    fn place<S>(
        &self,
        attrs: &Attributes<'_>,
        id: &Id,
        ctx: &Context<'_, S>,
        class: &CallsiteClass,
        now: Tick,
    ) -> Placement
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let sampler = &self.intake.sampler;
        // Another layer of the subscriber may have placed it already.
        let has_kin = self.has_kin.load(Ordering::Relaxed);
        let kin = if has_kin { self.kin_context(id) } else { None };
        // The span id another layer gave it, when it is in the same trace here.
        let span_id_in = |trace_id| match kin {
            Some(k) if k.trace_id == trace_id => k.span_id,
            _ => new_span_id(),
        };
        let mut lineage = self.parent_of(attrs, id, ctx, class);
        if has_kin {
            if let Lineage::Remote(r) = lineage {
                lineage = self.remote_with_kin(id, r, kin, attrs);
            }
        }
        match lineage {
            Lineage::Local {
                context,
                local_root,
            } => Placement {
                // Inherited (the sampler says so, for every sampler).
                context: SpanContext {
                    span_id: span_id_in(context.trace_id),
                    sampled: sampler.sample_span(context.trace_id, Parent::Local(context.sampled)),
                    ..context
                },
                parent: Some(context.span_id),
                parent_is_remote: false,
                local_root,
                has_local_parent: true,
            },
            Lineage::Remote(r) => {
                let span_id = span_id_in(r.trace_id);
                Placement {
                    context: SpanContext {
                        trace_id: r.trace_id,
                        span_id,
                        sampled: sampler.sample_span(r.trace_id, Parent::Remote(r.sampled)),
                    },
                    parent: Some(r.span_id),
                    parent_is_remote: true,
                    local_root: (span_id, now),
                    has_local_parent: false,
                }
            }
            Lineage::Root => {
                // A root here may have a parent that this layer's filter hides: the trace is
                // the one the other layers see. Otherwise one access to the thread's random
                // stream for both ids.
                let (trace_id, span_id) = if has_kin {
                    self.root_ids_with_kin(id, kin, attrs)
                } else {
                    new_root_ids()
                };
                Placement {
                    context: SpanContext {
                        trace_id,
                        span_id,
                        sampled: sampler.sample_span(trace_id, Parent::None),
                    },
                    parent: None,
                    parent_is_remote: false,
                    local_root: (span_id, now),
                    has_local_parent: false,
                }
            }
        }
    }

    /// Starts a record for a span: metadata, ids, start time, thread, the fields given at
    /// creation (the `traceparent` field is read as a parent, not kept).
    fn start_record(
        &self,
        attrs: &Attributes<'_>,
        place: &Placement,
        class: &CallsiteClass,
        now: Tick,
    ) -> Box<SpanRecord> {
        let mut rec = self.intake.spans.take();
        rec.level = class.level;
        rec.metadata = attrs.metadata();
        rec.context = place.context;
        rec.parent_span_id = place.parent;
        rec.parent_is_remote = place.parent_is_remote;
        (rec.local_root, rec.root_start) = place.local_root;
        rec.start_tick = now;
        rec.timings = self.settings.span_timings;
        rec.thread = thread_info();
        let mut ignored = None;
        let mut capture = Capture::new(
            &mut rec.fields,
            self.settings.max_field_len,
            class.duplicate_names,
        );
        // Only a callsite with a `traceparent` field has one to set aside.
        if class.may_have_remote_parent {
            capture.traceparent = Some(&mut ignored);
        }
        attrs.record(&mut capture);
        let truncated = capture.truncated;
        self.count_truncated(truncated);
        rec
    }

    #[inline]
    fn count_truncated(&self, n: u64) {
        if n > 0 {
            self.intake.counters.truncated_values.add(n);
        }
    }

    /// Fills an event record from `event`.
    #[inline]
    fn fill_event(
        &self,
        rec: &mut EventRecord,
        event: &Event<'_>,
        class: &CallsiteClass,
        level: LogLevel,
        context: Option<SpanContext>,
    ) {
        rec.tick = Tick::now();
        rec.level = level;
        rec.metadata = event.metadata();
        rec.context = context;
        rec.thread = thread_info();
        let mut log = LogSource::default();
        let mut capture = Capture::new(
            &mut rec.fields,
            self.settings.max_field_len,
            class.duplicate_names,
        );
        capture.message = Some(&mut rec.message);
        if class.from_log {
            capture.log = Some(&mut log);
        }
        event.record(&mut capture);
        let truncated = capture.truncated;
        if class.from_log {
            rec.log_source = Some(log);
        }
        self.count_truncated(truncated);
    }

    /// A record from the `log` crate comes through one bridge callsite per level, whose target
    /// is `log`: the critical targets and the whitelist are matched against the record's own
    /// target (its `log.target` field) instead, per record.
    #[cold]
    fn classify_log_record(&self, class: &mut CallsiteClass, event: &Event<'_>) {
        let Some(target) = capture::log_target(event) else {
            return;
        };
        let name = event.metadata().name();
        class.whitelisted = self.intake.sampler.whitelisted(target.as_str(), name);
        if class.level == LogLevel::Error
            && self
                .settings
                .critical_targets
                .iter()
                .any(|p| target.as_str().starts_with(p.as_str()))
        {
            class.level = LogLevel::Critical;
        }
    }

    /// Applies a remote parent learned after the span was created to this layer's span
    /// (`Span::record` of its `traceparent` field, which every layer sees).
    pub(crate) fn set_remote_parent(
        &self,
        id: &Id,
        remote: RemoteParent,
    ) -> Result<(), SetParentError> {
        if self.intake.forked() {
            return Err(SetParentError::NotRecorded);
        }
        let elsewhere = if self.has_kin.load(Ordering::Relaxed) {
            self.kin()
                .iter()
                .find_map(|k| k.spans.with(id, |e| refusal(e)).flatten())
        } else {
            None
        };
        reparent(&self.spans, &self.intake, id, remote, elsewhere)
    }

    /// Applies a remote parent to the span in this layer and in every other `OffloadLayer` of
    /// its subscriber ([`OffloadSpanExt::set_parent_traceparent`](crate::OffloadSpanExt), which
    /// finds only the outermost layer). A refusal by any layer is a refusal by all (as when the
    /// `traceparent` field is recorded: each layer looks at the others' state too), and the
    /// answer; otherwise it is `Ok` if any layer records the span.
    pub(crate) fn set_remote_parent_everywhere(
        &self,
        id: &Id,
        remote: RemoteParent,
    ) -> Result<(), SetParentError> {
        let mut outcome = self.set_remote_parent(id, remote);
        let siblings = self.siblings.lock().unwrap_or_else(|e| e.into_inner());
        // A refusal anywhere is the answer everywhere (this layer's, or another's).
        let elsewhere = outcome
            .clone()
            .err()
            .filter(|e| *e != SetParentError::NotRecorded);
        for sibling in siblings.iter() {
            let (Some(spans), Some(intake)) = (sibling.spans.upgrade(), sibling.intake.upgrade())
            else {
                continue;
            };
            let theirs = reparent(&spans, &intake, id, remote, elsewhere.clone());
            outcome = match (outcome, theirs) {
                (Err(e), _) | (_, Err(e)) if e != SetParentError::NotRecorded => Err(e),
                (Ok(()), _) | (_, Ok(())) => Ok(()),
                _ => Err(SetParentError::NotRecorded),
            };
        }
        outcome
    }

    /// Marks the span `id` as having handed out its `traceparent`, in this layer and the
    /// subscriber's other `OffloadLayer`s (see [`SetParentError::Propagated`]): in each, the
    /// span, or, when that layer's filter hides it, its nearest ancestor that layer records
    /// (the one a remote parent would move), found through `registry` (adversary pass 63: a
    /// layer that hid the span moved its ancestor to another trace).
    pub(crate) fn mark_propagated(&self, id: &Id, registry: Option<&tracing_subscriber::Registry>) {
        if self.intake.forked() {
            return;
        }
        let mark = |spans: &SpanStore| {
            if spans.with(id, |e| e.propagated = true).is_some() {
                return;
            }
            let ancestor =
                registry.and_then(|r| recorded_ancestor(r, id, |a| spans.context(a).is_some()));
            if let Some(a) = ancestor {
                spans.with(&a, |e| e.propagated = true);
            }
        };
        mark(&self.spans);
        let siblings = self.siblings.lock().unwrap_or_else(|e| e.into_inner());
        for spans in siblings.iter().filter_map(|s| s.spans.upgrade()) {
            mark(&spans);
        }
    }

    /// The trace context of an open span this layer records (sampled or not), else the one the
    /// first of the subscriber's other `OffloadLayer`s that records it has (the outermost layer's
    /// per-layer filter may hide a span that another layer records).
    pub(crate) fn span_context_in_any_layer(&self, id: &Id) -> Option<SpanContext> {
        if self.intake.forked() {
            return None;
        }
        if let Some((c, _)) = self.spans.context(id) {
            return Some(c);
        }
        let siblings = self.siblings.lock().unwrap_or_else(|e| e.into_inner());
        siblings
            .iter()
            .filter_map(|s| s.spans.upgrade())
            .find_map(|spans| spans.context(id).map(|(c, _)| c))
    }
}

/// How many per-layer filters `registry` has (read once, when a subscriber becomes a
/// `Dispatch`, from its `Debug` text: `tracing-subscriber` does not say otherwise); `None` when
/// it cannot tell.
fn per_layer_filters(registry: &tracing_subscriber::Registry) -> Option<u32> {
    let shown = format!("{registry:?}");
    let (_, after) = shown.rsplit_once("next_filter_id: ")?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The nearest ancestor of the span `id` in `registry` for which `recorded` holds, if any.
pub(crate) fn recorded_ancestor(
    registry: &tracing_subscriber::Registry,
    id: &Id,
    recorded: impl Fn(&Id) -> bool,
) -> Option<Id> {
    let mut span = registry.span(id)?;
    loop {
        span = span.parent()?;
        if recorded(&span.id()) {
            return Some(span.id());
        }
    }
}

/// Makes a span of one layer's store a child of a remote parent, if its trace can still change;
/// a refusal is counted in that layer's pipeline.
///
/// `elsewhere`: the refusal of another `OffloadLayer` of the subscriber, whose decision this
/// one follows: the span has one trace at every destination (adversary pass 64: a layer whose
/// filter hid the span's parent joined the remote trace while the other refused).
fn reparent(
    spans: &SpanStore,
    intake: &Intake,
    id: &Id,
    remote: RemoteParent,
    elsewhere: Option<SetParentError>,
) -> Result<(), SetParentError> {
    let sampler = &intake.sampler;
    let outcome = spans.with(id, |e| {
        if let Some(why) = refusal(e).or(elsewhere) {
            return Err(why);
        }
        let sampled = sampler.sample_span(remote.trace_id, Parent::Remote(remote.sampled));
        e.context.trace_id = remote.trace_id;
        e.context.sampled = sampled;
        e.local_root = e.context.span_id;
        e.has_local_parent = false;
        if let Some(rec) = e.record.as_deref_mut() {
            rec.context = e.context;
            rec.parent_span_id = Some(remote.span_id);
            rec.parent_is_remote = true;
            rec.local_root = e.context.span_id;
        }
        Ok(())
    });
    match outcome {
        Some(Ok(())) => Ok(()),
        Some(Err(why)) => {
            refused(intake, &why);
            Err(why)
        }
        None => Err(SetParentError::NotRecorded),
    }
}

/// Why a span's trace can no longer change, if it cannot.
fn refusal(e: &SpanEntry) -> Option<SetParentError> {
    if e.has_local_parent {
        Some(SetParentError::HasLocalParent)
    } else if e.has_children {
        Some(SetParentError::HasChildren)
    } else if e.has_events {
        Some(SetParentError::HasEvents)
    } else if e.propagated {
        Some(SetParentError::Propagated)
    } else {
        None
    }
}

/// Counts a remote parent refused, and says so the first time.
#[cold]
fn refused(intake: &Intake, why: &SetParentError) {
    intake.counters.reparent_refused.incr();
    // Written by the notice thread: this may run inside the application's `tracing` call
    // (`span.record("traceparent", …)`), and stderr may be a full pipe (adversary pass 57).
    REPARENT_WARNED.call_once(|| {
        crate::notice::post(format!(
            "a remote parent was refused ({why}): the trace would split. Set it on a local \
             root before it has children, events or outgoing calls; see \
             OffloadSpanExt::set_parent_traceparent. Further cases are counted in \
             stats().reparent_refused."
        ));
    });
}

/// A new span's place in its trace, and the sampling decision.
struct Placement {
    context: SpanContext,
    parent: Option<SpanId>,
    parent_is_remote: bool,
    /// The local root of its trace, and when that started.
    local_root: LocalRoot,
    has_local_parent: bool,
}

/// Where a new span's trace comes from.
enum Lineage {
    /// A parent span in this process.
    Local {
        context: SpanContext,
        /// The parent's local root, and when that started.
        local_root: LocalRoot,
    },
    /// A parent in another process, from the span's `traceparent` field.
    Remote(RemoteParent),
    /// None: a new trace.
    Root,
}

impl Lineage {
    /// A root whose callsite has a `traceparent` field with a valid value joins that trace. A
    /// span with a local parent stays in its trace, and a valid `traceparent` given to it is
    /// refused as [`reparent`] refuses one recorded later: counted, and said once.
    #[inline]
    fn or_remote(
        self,
        attrs: &Attributes<'_>,
        may_have_remote_parent: bool,
        intake: &Intake,
    ) -> Self {
        if !may_have_remote_parent {
            return self;
        }
        self.remote(attrs, intake)
    }

    /// [`or_remote`](Self::or_remote) for a span whose callsite has a `traceparent` field.
    #[cold]
    fn remote(self, attrs: &Attributes<'_>, intake: &Intake) -> Self {
        match (self, remote_parent(attrs)) {
            (Lineage::Root, Some(r)) => Lineage::Remote(r),
            (local, Some(_)) => {
                refused(intake, &SetParentError::HasLocalParent);
                local
            }
            (lineage, None) => lineage,
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

    fn on_register_dispatch(&self, dispatch: &tracing_core::Dispatch) {
        let _ = self.dispatch.set(dispatch.downgrade());
        if let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>() {
            if per_layer_filters(registry) == Some(0) {
                self.filters_possible.store(false, Ordering::Relaxed);
            }
        }
        // The outermost `OffloadLayer` is the one extensions find: the others register with
        // it, so that a remote parent set through it reaches them too.
        let Some(outer) = dispatch.downcast_ref::<OffloadLayer>() else {
            return;
        };
        if std::ptr::eq(outer, self) {
            return;
        }
        let mut siblings = outer.siblings.lock().unwrap_or_else(|e| e.into_inner());
        siblings.retain(|s| s.spans.strong_count() > 0);
        siblings.push(Sibling {
            id: self.id,
            spans: Arc::downgrade(&self.spans),
            intake: Arc::downgrade(&self.intake),
        });
        drop(siblings);
        outer.has_kin.store(true, Ordering::Relaxed);
        self.has_kin.store(true, Ordering::Relaxed);
        // Its kin: the outermost, and the layers registered with it.
        let outer_itself = Sibling {
            id: outer.id,
            spans: Arc::downgrade(&outer.spans),
            intake: Arc::downgrade(&outer.intake),
        };
        let _ = self.family.set((outer_itself, Arc::clone(&outer.siblings)));
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        // Nothing from the crate's own threads (its sinks' libraries log there): it would come
        // back into the pipeline. Its enter, exit and close then find no state in the store.
        // Nor in a forked child, where the pipeline does not run (see `crate::fork`).
        if !self.settings.enabled || silent::is_internal() || self.intake.forked() {
            return;
        }
        let meta = attrs.metadata();
        let class = self.classify(meta);
        let now = Tick::now();
        let place = self.place(attrs, id, &ctx, &class, now);
        // Recorded spans build their record; so do roots, whose decision a remote parent set
        // later may still change. Unsampled children keep their ids only.
        let record = (place.context.sampled || !place.has_local_parent)
            .then(|| self.start_record(attrs, &place, &class, now));
        let new = NewSpan {
            context: place.context,
            local_root: place.local_root.0,
            root_start: place.local_root.1,
            has_local_parent: place.has_local_parent,
            record,
            opened: now,
        };
        let counters = &self.intake.counters;
        if let Err(stale) = self.spans.insert(id, new, &counters.open_spans) {
            // The registry reused the id of a span this layer never saw close.
            if let Some(rec) = stale {
                self.intake.spans.give(rec);
            }
            counters.spans_closed.incr();
        }
        counters.spans_opened.incr();
    }

    fn on_record(&self, id: &Id, values: &SpanValues<'_>, _ctx: Context<'_, S>) {
        if !self.settings.enabled || self.intake.forked() {
            return;
        }
        // Values are captured before the store's lock is taken: a `Debug` that panics or logs
        // runs under no lock of ours.
        let mut remote = None;
        let apply = |captured: &Fields, truncated: u64| {
            self.count_truncated(truncated);
            if !captured.is_empty() {
                self.spans.with(id, |e| {
                    if let Some(rec) = e.record.as_deref_mut() {
                        rec.fields.merge_from(captured);
                    }
                });
            }
        };
        let mut capture_into = |fields: &mut Fields| {
            fields.clear();
            let mut capture = Capture::new(fields, self.settings.max_field_len, true);
            capture.traceparent = Some(&mut remote);
            values.record(&mut capture);
            capture.truncated
        };
        let done = SCRATCH.try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => {
                let truncated = capture_into(&mut scratch);
                apply(&scratch, truncated);
                true
            }
            Err(_) => false,
        });
        if done != Ok(true) {
            // Re-entered (a `Debug` recording a span) or during thread teardown.
            let mut local = Fields::default();
            let truncated = capture_into(&mut local);
            apply(&local, truncated);
        }
        if let Some(remote) = remote {
            // Refusals are counted and reported by `set_remote_parent`.
            let _ = self.set_remote_parent(id, remote);
        }
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, _ctx: Context<'_, S>) {
        if !self.settings.enabled || self.intake.forked() {
            return;
        }
        let Some((target, _)) = self.spans.context(follows) else {
            return;
        };
        self.spans.with(id, |e| {
            if let Some(rec) = e.record.as_deref_mut() {
                if rec.links.len() < MAX_LINKS {
                    rec.links.push(target);
                } else {
                    rec.dropped_links = rec.dropped_links.saturating_add(1);
                }
            }
        });
    }

    fn on_enter(&self, id: &Id, _ctx: Context<'_, S>) {
        // Only this thread's stack of entered spans, nothing shared: also in a forked child,
        // where `on_exit` pops it as well.
        if !self.settings.enabled {
            return;
        }
        // Busy time is counted at the exit, from the tick kept with the thread's entry.
        let now = if self.settings.span_timings {
            Tick::now()
        } else {
            Tick::default()
        };
        entered::enter(self.id, id, now);
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        if !self.settings.enabled {
            return;
        }
        // Popped in a forked child too, as `on_enter` pushed it (adversary pass 59: the stack
        // grew there for ever).
        let entered_at = entered::exit(self.id, id);
        if let Some(entered_at) = entered_at.filter(|_| self.settings.span_timings) {
            if self.intake.forked() {
                // The store's locks may be held by the parent's threads.
                return;
            }
            let busy = Tick::now().since(entered_at);
            self.spans.with(id, |e| e.add_busy(busy));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if !self.settings.enabled || silent::is_internal() {
            return;
        }
        if self.intake.forked() {
            self.intake.refuse_in_forked_child();
            return;
        }
        let meta = event.metadata();
        let mut class = self.classify(meta);
        if class.from_log {
            // The bridge's own callsites only: a `tracing` event with a field named
            // `log.target` is not a `log` record (that field would choose its target).
            if tracing_log::NormalizeEvent::is_log(event) {
                self.classify_log_record(&mut class, event);
            } else {
                class.from_log = false;
            }
        }
        let mut level = class.level;
        if class.may_be_critical && is_marked_critical(event) {
            level = LogLevel::Critical;
        }
        let always_kept = self.always_kept(&class, level);
        let (placed, kept) = self.event_place(event, &ctx, |c| always_kept || self.keep_event(c));
        if !kept {
            self.intake.counters.sampled_out.incr();
            return;
        }
        let context = placed.map(|(c, _)| c);
        let policy = match self.intake.admit(self.policy_for(level)) {
            Admission::Push(policy) => policy,
            Admission::Refused => return,
        };
        let mut rec = self.intake.events.take();
        self.fill_event(&mut rec, event, &class, level, context);
        (rec.local_root, rec.root_start) =
            placed.map_or((SpanId::INVALID, Tick::ZERO), |(_, root)| root);
        rec.always_kept = always_kept;
        self.intake.push(policy, Captured::Event(rec));
    }

    fn on_close(&self, id: Id, _ctx: Context<'_, S>) {
        if self.intake.forked() {
            // Its state is the parent's, and so may be its store's locks.
            if self.settings.enabled {
                self.intake.refuse_in_forked_child();
            }
            return;
        }
        let counters = &self.intake.counters;
        let Some((record, sampled)) = self.spans.remove(&id, &counters.open_spans) else {
            return;
        };
        counters.spans_closed.incr();
        let now = Tick::now();
        let Some(mut rec) = record else {
            counters.spans_sampled_out.incr();
            return;
        };
        if !sampled {
            // A root kept for a remote parent that never came, or that was not sampled.
            self.intake.spans.give(rec);
            counters.spans_sampled_out.incr();
            return;
        }
        rec.end_tick = now;
        match self.intake.admit(self.policy_for(rec.level)) {
            Admission::Push(policy) => self.intake.push(policy, Captured::Span(rec)),
            Admission::Refused => self.intake.spans.give(rec),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registry's `Debug` text still tells its per-layer filters (read to skip the
    /// registry's current span on every event when there are none).
    #[test]
    fn a_registrys_per_layer_filters_are_read() {
        use tracing_subscriber::filter::LevelFilter;
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::Layer as _;
        struct Nothing;
        impl<S: Subscriber> Layer<S> for Nothing {}
        let count = |d: tracing::Dispatch| {
            per_layer_filters(d.downcast_ref::<tracing_subscriber::Registry>().unwrap())
        };
        let plain = tracing_subscriber::registry().with(Nothing);
        assert_eq!(count(tracing::Dispatch::new(plain)), Some(0));
        let filtered = tracing_subscriber::registry()
            .with(Nothing)
            .with(Nothing.with_filter(LevelFilter::INFO));
        assert_eq!(count(tracing::Dispatch::new(filtered)), Some(1));
    }

    #[test]
    fn ids_are_valid_and_distinct() {
        let (a, _) = new_root_ids();
        let (b, _) = new_root_ids();
        assert!(a.is_valid() && b.is_valid() && a != b);
        assert!(new_span_id().is_valid());
    }
}
