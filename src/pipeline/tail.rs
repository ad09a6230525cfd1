//! Tail sampling on the drain thread: the records of sampled local traces wait here, keyed by
//! their local root, until the local root's own record arrives; then the whole local trace is
//! released to the sinks or dropped. Nothing here runs on the calling thread.
//!
//! Why waiting for the local root is enough: a span's record is pushed when it closes, a parent
//! closes after its children (the registry keeps it open while they are), and an event is
//! pushed while its span is open; the queue is FIFO. So every record of a local trace reaches
//! the drain thread before the local root's. Records can still go missing (dropped at a full
//! queue, a span leaked and never closed): a trace whose root never comes is decided "as is"
//! after [`TailSampling::decision_wait`], or earlier when the budget is full.
//!
//! Records pass through untouched when tail sampling is off, when they are not in a sampled
//! trace (events outside spans, events of unsampled traces), and for the events the event
//! sampler never samples out (whitelisted, critical, and `ERROR` unless `keep_errors(false)`):
//! those are written at once, and an error among them still marks its trace.
//!
//! Bounded: at most `max_buffered_spans` records held, as many undecided traces, and as many
//! remembered early decisions (so that the rest of a trace decided early follows its decision).

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

use crate::clock::{between, deadline_from, Tick};
use crate::ids::{SpanId, TraceId};
use crate::level::LogLevel;
use crate::record::{EventRecord, Record, SpanRecord};
use crate::stats::Counters;
use crate::tail_sampling::{ForcedDecision, Switch, TailControl, TailSampling, TraceFacts};

/// What the drain thread has finished with, in order: records ready for the sinks, and the
/// points where records that are not handed over (held, or dropped by tail sampling) count as
/// settled (see `Counters::settled`).
///
/// A record counts as settled only once every record released before it has been handed to
/// the sinks, so that a flush that sees its target reached sees those records in the sinks'
/// counts: the count is published in order, as the backlog is taken.
///
/// Records passing straight through (each settled by its hand-over) while nothing else waits
/// go to a plain list, `through`, which the next batch takes whole: most records take this
/// way, and pushing each into `items` and taking it out again cost the drain thread a tenth of
/// its instructions per record (callgrind, lossless workload).
#[derive(Default)]
pub(super) struct Backlog {
    /// Records that settle when handed over, pushed while `items` was empty: they come before
    /// everything in `items`.
    through: Vec<Record>,
    items: VecDeque<Outgoing>,
    /// Records (not markers) in `through` and `items`.
    records: usize,
    /// Settled, and not yet published to `Counters::settled`.
    ready: u64,
    /// Records ever pushed, and ever taken (see `Counters::backlog_pushed`).
    pushed: u64,
    taken: u64,
}

/// One entry of the [`Backlog`].
enum Outgoing {
    /// A record for the sinks, and whether handing it over settles it (a record released
    /// after being held was settled when it was taken in).
    Record(Record, bool),
    /// This many records settle here (never first in the backlog: then they are `ready`).
    Settled(u64),
}

impl Backlog {
    pub(super) fn new() -> Self {
        Backlog::default()
    }

    /// A record for the sinks; `settles`: handing it over settles it.
    #[inline]
    pub(super) fn push(&mut self, record: Record, settles: bool) {
        if settles && self.items.is_empty() {
            self.through.push(record);
        } else {
            self.items.push_back(Outgoing::Record(record, settles));
        }
        self.records += 1;
        self.pushed += 1;
    }

    /// `n` records settle once what is before them has been handed over.
    pub(super) fn settle(&mut self, n: u64) {
        match self.items.back_mut() {
            None if self.through.is_empty() => self.ready += n,
            None => self.items.push_back(Outgoing::Settled(n)),
            Some(Outgoing::Settled(m)) => *m += n,
            Some(Outgoing::Record(..)) => self.items.push_back(Outgoing::Settled(n)),
        }
    }

    /// Records waiting for the sinks.
    pub(super) fn len(&self) -> usize {
        self.records
    }

    pub(super) fn is_empty(&self) -> bool {
        self.through.is_empty() && self.items.is_empty()
    }

    /// Moves up to `n` records into `batch`, in order, and the settled marks reached.
    pub(super) fn take_into(&mut self, n: usize, batch: &mut Vec<Record>) {
        if !self.through.is_empty() {
            let k = self.through.len().min(n.saturating_sub(batch.len()));
            if batch.is_empty() && k == self.through.len() {
                // The whole list, as it is: no record moves.
                std::mem::swap(batch, &mut self.through);
            } else {
                batch.extend(self.through.drain(..k));
            }
            self.records -= k;
            self.taken += k as u64;
            self.ready += k as u64;
            if !self.through.is_empty() {
                return;
            }
        }
        while batch.len() < n {
            match self.items.pop_front() {
                Some(Outgoing::Record(r, settles)) => {
                    self.records -= 1;
                    self.taken += 1;
                    self.ready += u64::from(settles);
                    batch.push(r);
                }
                Some(Outgoing::Settled(m)) => self.ready += m,
                None => break,
            }
        }
        while let Some(Outgoing::Settled(m)) = self.items.front() {
            self.ready += *m;
            self.items.pop_front();
        }
    }

    /// Records ever pushed, and ever taken (or abandoned).
    pub(super) fn totals(&self) -> (u64, u64) {
        (self.pushed, self.taken)
    }

    /// The records settled since the last call (publish them after handing over the batch).
    pub(super) fn take_settled(&mut self) -> u64 {
        std::mem::take(&mut self.ready)
    }

    /// Empties the backlog without handing anything over; returns the records dropped and
    /// how many records that settles.
    pub(super) fn abandon(&mut self) -> (u64, u64) {
        let records = self.records as u64;
        let mut settled = std::mem::take(&mut self.ready);
        settled += self.through.len() as u64;
        self.through.clear();
        for item in self.items.drain(..) {
            settled += match item {
                Outgoing::Record(_, settles) => u64::from(settles),
                Outgoing::Settled(m) => m,
            };
        }
        self.records = 0;
        self.taken = self.pushed;
        (records, settled)
    }
}

/// The records of one undecided local trace, and what is known of it so far.
struct HeldTrace {
    /// Tells this trace's entry in `order` from an older trace with the same local root.
    seq: u64,
    /// When its first record reached the drain thread (for `decision_wait`).
    first_seen: Instant,
    /// The latest time a record offered was made, when its first record reached the drain
    /// thread (for `decision_wait` while the drain thread is behind).
    first_made: Tick,
    /// When its local root started (every record carries it): before tail sampling was
    /// turned on, the trace was under way then. Judging by the records held instead took a
    /// trace under way for a new one when all it held came after the switch (its earlier
    /// records written while off), and a forced decision then dropped the rest of it.
    root_start: Tick,
    trace_id: TraceId,
    error: bool,
    records: Vec<Record>,
}

/// How a record takes part in tail sampling.
enum Role {
    /// Not tail-sampled: forwarded at once.
    PassThrough,
    /// Forwarded at once, but an error that marks its local trace (with when its local root
    /// started).
    ErrorMark(SpanId, TraceId, Tick),
    /// Held with its local trace, until the local root.
    Member(SpanId),
    /// The local root: its trace is decided now.
    Root(SpanId),
}

/// The fewest early decisions remembered, whatever the budget (about 32 bytes each).
const MIN_REMEMBERED: usize = 16_384;

/// The drain thread's tail-sampling state.
pub(super) struct TailBuffer<'a> {
    control: &'a TailControl,
    counters: &'a Counters,
    /// The settings in force (`None`: off), and the control's generation whose changes were
    /// taken.
    settings: Option<TailSampling>,
    generation: u64,
    /// Changes taken from the control and not applied yet: each applies from the first record
    /// offered after it (or once the queue is empty), in order.
    switches: VecDeque<Switch>,
    /// `generation` while no change waits in `switches`, else `u64::MAX`: one comparison per
    /// record tells whether anything is to be done.
    check: u64,
    traces: ById<HeldTrace>,
    /// Undecided traces by arrival of their first record, oldest first (may name traces
    /// decided since: compacted when mostly stale).
    order: VecDeque<(SpanId, u64)>,
    next_seq: u64,
    /// Records held in `traces`, and the most held at once.
    held: usize,
    high_water: usize,
    /// Decisions made before the local root closed: the trace's later records follow them.
    verdicts: Remembered,
    /// Emptied record lists of decided traces, for reuse (bounded by [`SPARE_LISTS`]).
    spare: Vec<Vec<Record>>,
    /// The last [`RECENT_DECISIONS`] decisions made at the local root, for a record that comes
    /// after it: an event given its span by id on another thread, while the span closed.
    decided: Remembered,
    /// When tail sampling was last turned on while the pipeline ran (`None`: on from the
    /// start, or never on). A local trace whose local root started before then was under way
    /// while it was off, and some of its records may have been written already: it is written
    /// whole, not tail-sampled.
    on_since: Option<Tick>,
    /// The latest time a record offered was made (an event's time, a span's close): how far
    /// the drain thread has come through the records, which may be well behind the clock when
    /// the sinks hold it back.
    latest: Tick,
}

impl<'a> TailBuffer<'a> {
    pub(super) fn new(control: &'a TailControl, counters: &'a Counters) -> Self {
        // The generation first: a change after it is logged, and taken on the next look.
        let generation = control.generation();
        TailBuffer {
            control,
            counters,
            generation,
            settings: control.start(),
            switches: VecDeque::new(),
            check: generation,
            traces: ById::default(),
            order: VecDeque::new(),
            next_seq: 0,
            held: 0,
            high_water: 0,
            verdicts: Remembered::default(),
            spare: Vec::new(),
            decided: Remembered::default(),
            on_since: None,
            latest: Tick::ZERO,
        }
    }

    /// Whether a local trace whose local root started at `start` was under way before tail
    /// sampling was turned on.
    fn started_while_off(&self, start: Tick) -> bool {
        self.on_since.is_some_and(|on| start < on)
    }

    /// Records held (of undecided traces).
    pub(super) fn held(&self) -> usize {
        self.held
    }

    /// Whether records are held (undecided traces).
    pub(super) fn is_holding(&self) -> bool {
        !self.traces.is_empty()
    }

    /// Applies the handles' changes, when `queue_empty` (no record offered before them is left
    /// to take), and decides the traces that waited `decision_wait` for their local root.
    /// Called once per drain loop.
    pub(super) fn refresh(&mut self, now: Instant, queue_empty: bool, out: &mut Backlog) {
        let generation = self.control.generation();
        if generation != self.check {
            // With records queued, they apply the changes, as they come after them.
            let until = if queue_empty { None } else { Some(Tick::ZERO) };
            self.change(generation, until, out);
        }
        let Some(settings) = self.settings else {
            return;
        };
        let wait = settings.max_wait();
        while let Some(&(key, seq)) = self.order.front() {
            let (first_seen, first_made) = match self.traces.get(&key) {
                Some(t) if t.seq == seq => (t.first_seen, t.first_made),
                _ => {
                    self.order.pop_front(); // decided since
                    continue;
                }
            };
            if now < deadline_from(first_seen, wait) {
                break;
            }
            // With records still queued, the drain thread is behind (the sinks hold it back):
            // the local root may be among them, closed in time. The wait then counts in the
            // time the records were made, up to the latest one taken (adversary pass 62: a
            // failed trace whose root closed at once was decided without it, and dropped,
            // while a sink paused).
            if !queue_empty && between(first_made, self.latest) < wait {
                break;
            }
            self.order.pop_front();
            self.force(key, ForcedDecision::DecisionWait, out);
        }
    }

    /// Takes the changes logged since the last look, and applies, in order, those made no
    /// later than `until` (all of them for `None`; none for `Some(Tick::ZERO)`).
    fn change(&mut self, generation: u64, until: Option<Tick>, out: &mut Backlog) {
        if generation != self.generation {
            self.generation = generation;
            self.control.take_switches(&mut self.switches);
        }
        while let Some(&Switch { settings, at }) = self.switches.front() {
            if until.is_some_and(|until| until < at) {
                break;
            }
            self.switches.pop_front();
            if self.settings.is_none() && settings.is_some() {
                self.on_since = Some(at);
            }
            self.reconfigure(settings, out);
        }
        self.check = if self.switches.is_empty() {
            generation
        } else {
            u64::MAX
        };
    }

    /// Takes one finished record: forwards it, holds it, or decides its trace.
    #[inline]
    pub(super) fn offer(&mut self, record: Record, now: Instant, out: &mut Backlog) {
        if self.control.generation() != self.check {
            self.offer_after_changes(record, now, out);
            return;
        }
        if self.settings.is_none() && self.verdicts.is_empty() {
            // Tail sampling off, and no trace decided before it was turned off: through, as
            // most records go (the drain thread offers every record).
            out.push(record, true);
            return;
        }
        self.offer_slow(record, now, out);
    }

    /// [`offer`](Self::offer) once the changes made before `record` was offered are applied.
    #[cold]
    #[inline(never)]
    fn offer_after_changes(&mut self, record: Record, now: Instant, out: &mut Backlog) {
        let generation = self.control.generation();
        self.change(generation, Some(offered_at(&record)), out);
        if self.settings.is_none() && self.verdicts.is_empty() {
            out.push(record, true);
        } else {
            self.offer_slow(record, now, out);
        }
    }

    /// [`offer`](Self::offer) with tail sampling on, or traces decided before it was turned off.
    #[inline(never)]
    fn offer_slow(&mut self, record: Record, now: Instant, out: &mut Backlog) {
        let Some(settings) = self.settings else {
            self.offer_while_off(record, out);
            return;
        };
        self.latest = self.latest.max(made_at(&record));
        match role(&record) {
            Role::PassThrough => out.push(record, true),
            Role::ErrorMark(key, trace_id, root_start) => {
                self.mark_error(key, trace_id, root_start, now, &settings, out);
                out.push(record, true);
            }
            Role::Member(key) => self.hold(key, record, now, &settings, out),
            Role::Root(key) => self.decide_at_root(key, record, &settings, out),
        }
    }

    /// With tail sampling off, records pass through; those of traces decided early before it
    /// was turned off still follow that decision, so that no trace is written in part.
    fn offer_while_off(&mut self, record: Record, out: &mut Backlog) {
        if self.verdicts.is_empty() {
            out.push(record, true);
            return;
        }
        let (key, is_root) = match role(&record) {
            Role::Member(key) => (key, false),
            Role::Root(key) => (key, true),
            Role::PassThrough | Role::ErrorMark(..) => {
                out.push(record, true);
                return;
            }
        };
        let verdict = if is_root {
            self.verdicts.remove(key)
        } else {
            self.verdicts.get(key)
        };
        match verdict {
            Some(keep) => self.follow(keep, record, out),
            None => out.push(record, true),
        }
    }

    /// Decides every held trace as is, for `reason` (shutdown).
    pub(super) fn decide_all(&mut self, reason: ForcedDecision, out: &mut Backlog) {
        while let Some((key, seq)) = self.order.pop_front() {
            if self.traces.get(&key).is_some_and(|t| t.seq == seq) {
                self.force(key, reason, out);
            }
        }
        self.publish();
    }

    /// Drops every held record without a decision (the shutdown deadline passed); returns how
    /// many there were.
    pub(super) fn abandon(&mut self) -> u64 {
        let n = self.held as u64;
        self.traces.clear();
        self.order.clear();
        self.held = 0;
        self.publish();
        n
    }

    /// Publishes the gauges for stats (the drain thread does, once per batch or loop).
    pub(super) fn publish(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let g = &self.counters.tail.gauges;
        g.buffered_records.store(self.held, Relaxed);
        g.buffered_traces.store(self.traces.len(), Relaxed);
        g.high_water_mark.store(self.high_water, Relaxed);
    }

    // --- the decisions ---

    fn decide_at_root(
        &mut self,
        key: SpanId,
        root: Record,
        settings: &TailSampling,
        out: &mut Backlog,
    ) {
        if let Some(keep) = self.verdicts.remove(key) {
            self.note_decided(key, keep);
            self.follow(keep, root, out);
            return;
        }
        let Record::Span(span) = &root else {
            unreachable!("a local root is a span")
        };
        let held = self.traces.remove(&key);
        if self.started_while_off(span.start_tick) {
            // Under way before tail sampling was on: not tail-sampled, written whole.
            if let Some(trace) = held {
                self.release(trace, true, out);
            }
            self.note_decided(key, true);
            out.push(root, true);
            return;
        }
        let facts = TraceFacts {
            trace_id: span.trace_id(),
            error: span_has_error(span) || held.as_ref().is_some_and(|t| t.error),
            duration: span.duration(),
        };
        let keep = self.count_decision(settings, &facts);
        if let Some(trace) = held {
            self.release(trace, keep, out);
        }
        self.note_decided(key, keep);
        self.follow(keep, root, out);
    }

    /// Decides an undecided trace before its local root closed.
    fn force(&mut self, key: SpanId, reason: ForcedDecision, out: &mut Backlog) {
        let Some(trace) = self.traces.remove(&key) else {
            return;
        };
        let Some(settings) = self.settings else {
            self.release(trace, true, out);
            return;
        };
        if self.started_while_off(trace.root_start) {
            // Under way before tail sampling was on: kept, and so are its later records.
            self.remember(key, true, settings.budget());
            self.release(trace, true, out);
            return;
        }
        let facts = TraceFacts {
            trace_id: trace.trace_id,
            error: trace.error,
            duration: between(trace.root_start, Tick::now()),
        };
        let keep = self.count_decision(&settings, &facts);
        self.remember(key, keep, settings.budget());
        self.release(trace, keep, out);
        self.counters.tail.forced(reason);
    }

    fn count_decision(&self, settings: &TailSampling, facts: &TraceFacts) -> bool {
        match settings.keep_reason(facts) {
            Some(reason) => {
                self.counters.tail.kept(reason);
                true
            }
            None => {
                self.counters.tail.traces_dropped.incr();
                false
            }
        }
    }

    /// Hands a decided trace's held records to the sinks, or drops them (counted).
    fn release(&mut self, mut trace: HeldTrace, keep: bool, out: &mut Backlog) {
        self.held -= trace.records.len();
        if keep {
            for r in trace.records.drain(..) {
                out.push(r, false);
            }
        } else {
            self.counters
                .tail
                .sampled_out
                .add(trace.records.len() as u64);
            trace.records.clear();
        }
        if self.spare.len() < SPARE_LISTS && trace.records.capacity() <= SPARE_LIST_CAPACITY {
            self.spare.push(trace.records);
        }
    }

    /// A record not held, of a decided trace: forwarded or dropped (counted).
    fn follow(&self, keep: bool, record: Record, out: &mut Backlog) {
        if keep {
            out.push(record, true);
        } else {
            self.counters.tail.sampled_out.incr();
            out.settle(1);
        }
    }

    /// Remembers an early decision, for the trace's later records, until its local root
    /// closes; bounded by the budget, but never below [`MIN_REMEMBERED`] (a decision is a few
    /// bytes, and a small budget forces more of them).
    fn remember(&mut self, key: SpanId, keep: bool, budget: usize) {
        self.verdicts.note(key, keep);
        self.verdicts.trim(budget.max(MIN_REMEMBERED));
    }

    /// Remembers a decision made at the local root (see `decided`).
    fn note_decided(&mut self, key: SpanId, keep: bool) {
        self.decided.note(key, keep);
        self.decided.trim(RECENT_DECISIONS);
    }

    // --- holding ---

    fn hold(
        &mut self,
        key: SpanId,
        record: Record,
        now: Instant,
        settings: &TailSampling,
        out: &mut Backlog,
    ) {
        let budget = settings.budget();
        let new_trace = match self.traces.get_mut(&key) {
            // The common case: a trace held already, and room for one more record.
            Some(trace) if self.held < budget => {
                add_to(trace, record);
                self.held += 1;
                self.high_water = self.high_water.max(self.held);
                out.settle(1);
                return;
            }
            Some(_) => false,
            None => true,
        };
        if new_trace {
            if let Some(keep) = self.verdicts.get(key).or(self.decided.get(key)) {
                self.follow(keep, record, out);
                return;
            }
        }
        self.make_room(true, new_trace, budget, out);
        if let Some(keep) = self.verdicts.get(key) {
            // Its own trace was the oldest, and was decided to make room.
            self.follow(keep, record, out);
            return;
        }
        let (trace_id, root_start) = match &record {
            Record::Span(s) => (s.trace_id(), s.root_start),
            Record::Event(e) => (e.trace_id().unwrap_or_default(), e.root_start),
            Record::Dropped(_) => unreachable!("markers are made by the sinks"),
        };
        let trace = self.trace(key, trace_id, root_start, now);
        add_to(trace, record);
        self.held += 1;
        self.high_water = self.high_water.max(self.held);
        out.settle(1);
    }

    fn mark_error(
        &mut self,
        key: SpanId,
        trace_id: TraceId,
        root_start: Tick,
        now: Instant,
        settings: &TailSampling,
        out: &mut Backlog,
    ) {
        if !self.traces.contains_key(&key) {
            if self.verdicts.get(key).is_some() || self.decided.get(key).is_some() {
                return; // decided already
            }
            // An error holds no record: room for one more trace only (a full budget of records
            // forced the oldest trace out, though the error added none to it: adversary pass 30).
            self.make_room(false, true, settings.budget(), out);
        }
        self.trace(key, trace_id, root_start, now).error = true;
    }

    /// Decides the oldest undecided traces until one more record (for `record`) and one more
    /// trace (for `new_trace`) fit in the budget.
    fn make_room(&mut self, record: bool, new_trace: bool, budget: usize, out: &mut Backlog) {
        while (record && self.held >= budget) || (new_trace && self.traces.len() >= budget) {
            let Some((oldest, seq)) = self.order.pop_front() else {
                break;
            };
            if self.traces.get(&oldest).is_some_and(|t| t.seq == seq) {
                self.force(oldest, ForcedDecision::BufferFull, out);
            }
        }
    }

    /// The held trace of `key` (whose local root started at `root_start`), made if new.
    fn trace(
        &mut self,
        key: SpanId,
        trace_id: TraceId,
        root_start: Tick,
        now: Instant,
    ) -> &mut HeldTrace {
        use std::collections::hash_map::Entry;
        if self.order.len() > 2 * self.traces.len() + 1024 {
            let live = &self.traces;
            self.order
                .retain(|(k, seq)| live.get(k).is_some_and(|t| t.seq == *seq));
        }
        match self.traces.entry(key) {
            Entry::Occupied(e) => {
                let trace = e.into_mut();
                trace.root_start = trace.root_start.min(root_start);
                trace
            }
            Entry::Vacant(e) => {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.order.push_back((key, seq));
                e.insert(HeldTrace {
                    seq,
                    first_seen: now,
                    first_made: self.latest,
                    root_start,
                    trace_id,
                    error: false,
                    records: self.spare.pop().unwrap_or_default(),
                })
            }
        }
    }

    // --- settings ---

    fn reconfigure(&mut self, settings: Option<TailSampling>, out: &mut Backlog) {
        self.settings = settings;
        match settings {
            None => {
                self.decided.clear();
                // Off: everything is kept, held traces included (in the order they came).
                while let Some((key, seq)) = self.order.pop_front() {
                    if self.traces.get(&key).is_some_and(|t| t.seq == seq) {
                        if let Some(t) = self.traces.remove(&key) {
                            self.release(t, true, out);
                        }
                    }
                }
            }
            Some(s) => {
                while self.held > s.budget() || self.traces.len() > s.budget() {
                    let Some((oldest, seq)) = self.order.pop_front() else {
                        break;
                    };
                    if self.traces.get(&oldest).is_some_and(|t| t.seq == seq) {
                        self.force(oldest, ForcedDecision::BufferFull, out);
                    }
                }
                self.verdicts.trim(s.budget().max(MIN_REMEMBERED));
            }
        }
        self.publish();
    }
}

/// The most decisions made at a local root remembered for records that come after it.
const RECENT_DECISIONS: usize = 4096;

/// Decisions by local root (or any fact about a span), the oldest forgotten first past a bound.
#[derive(Default)]
pub(super) struct Remembered {
    keep: ById<bool>,
    /// The keys in the order they were noted (may name keys removed since: compacted when
    /// mostly stale).
    order: VecDeque<SpanId>,
}

impl Remembered {
    pub(super) fn note(&mut self, key: SpanId, keep: bool) {
        if self.keep.insert(key, keep).is_none() {
            self.order.push_back(key);
        }
    }

    pub(super) fn get(&self, key: SpanId) -> Option<bool> {
        self.keep.get(&key).copied()
    }

    fn remove(&mut self, key: SpanId) -> Option<bool> {
        self.keep.remove(&key)
    }

    fn is_empty(&self) -> bool {
        self.keep.is_empty()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.keep.len()
    }

    /// Forgets the oldest decisions past `max`; compacts the order when it is mostly stale.
    pub(super) fn trim(&mut self, max: usize) {
        while self.keep.len() > max {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.keep.remove(&oldest);
                }
                None => break,
            }
        }
        if self.order.len() > 2 * self.keep.len() + 1024 {
            let live = &self.keep;
            self.order.retain(|k| live.contains_key(k));
        }
    }

    fn clear(&mut self) {
        self.keep.clear();
        self.order.clear();
    }
}

/// Record lists kept for reuse, at most, and the largest capacity kept: the drain thread
/// allocates no list per trace in steady state, and keeps no burst's lists for ever.
const SPARE_LISTS: usize = 1024;
const SPARE_LIST_CAPACITY: usize = 64;

/// Maps keyed by span id. Span ids are random already: the hash only spreads them (the
/// default SipHash would cost the drain thread more than the rest of a record's trip).
pub(super) type ById<V> = HashMap<SpanId, V, BuildHasherDefault<SpanIdHasher>>;

#[derive(Default)]
pub(super) struct SpanIdHasher(u64);

impl Hasher for SpanIdHasher {
    fn finish(&self) -> u64 {
        // Fibonacci hashing: every bit of the id reaches the top bits.
        self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
}

/// Adds a record to its held trace, with what it says of the trace.
fn add_to(trace: &mut HeldTrace, record: Record) {
    let (root_start, error) = match &record {
        Record::Span(s) => (s.root_start, span_has_error(s)),
        Record::Event(e) => (e.root_start, event_is_error(e)),
        Record::Dropped(_) => unreachable!("markers are made by the sinks"),
    };
    trace.root_start = trace.root_start.min(root_start);
    trace.error |= error;
    trace.records.push(record);
}

/// When `record` was offered: an event when it happened, a span when it closed.
#[inline]
fn offered_at(record: &Record) -> Tick {
    match record {
        Record::Event(e) => e.tick,
        Record::Span(s) => s.end_tick,
        Record::Dropped(_) => Tick::MAX,
    }
}

/// How `record` takes part in tail sampling.
fn role(record: &Record) -> Role {
    match record {
        // Only spans of sampled traces make records.
        Record::Span(s) if s.span_id() == s.local_root_id() => Role::Root(s.local_root_id()),
        Record::Span(s) => Role::Member(s.local_root_id()),
        Record::Event(e) => match e.context {
            Some(c) if c.sampled && e.local_root.is_valid() => {
                if !e.always_kept {
                    Role::Member(e.local_root)
                } else if event_is_error(e) {
                    Role::ErrorMark(e.local_root, c.trace_id, e.root_start)
                } else {
                    Role::PassThrough
                }
            }
            _ => Role::PassThrough,
        },
        Record::Dropped(_) => Role::PassThrough,
    }
}

/// When a record was made: an event's time, a span's close (markers: never).
fn made_at(record: &Record) -> Tick {
    match record {
        Record::Event(e) => e.tick,
        Record::Span(s) => s.end_tick,
        Record::Dropped(_) => Tick::ZERO,
    }
}

/// An `ERROR` or critical event.
fn event_is_error(e: &EventRecord) -> bool {
    e.level() >= LogLevel::Error
}

/// A span whose `otel.status_code` field is the text `error`, in any case.
fn span_has_error(s: &SpanRecord) -> bool {
    match s.fields().get("otel.status_code") {
        Some(crate::record::FieldValue::Str(t)) => t.text.trim().eq_ignore_ascii_case("error"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{EventRecord, Shared};

    fn record() -> Record {
        Record::Event(Shared::new(EventRecord::default()))
    }

    /// Lowering the budget at run time keeps as many early decisions as a trace's later
    /// records need: never fewer than [`MIN_REMEMBERED`], as when one is remembered. It used to
    /// trim them to the new budget, and later records of traces decided early were then
    /// decided again, differently: the trace was written in part.
    #[test]
    fn a_smaller_budget_keeps_the_early_decisions_it_must() {
        let wide = TailSampling::new().max_buffered_spans(100_000);
        let control = TailControl::new(Some(wide));
        let counters = Counters::new(Vec::new());
        let mut tail = TailBuffer::new(&control, &counters);
        let mut out = Backlog::new();
        tail.reconfigure(Some(wide), &mut out);
        let decided = 2 * MIN_REMEMBERED as u64;
        for i in 1..=decided {
            tail.remember(SpanId::from_u64(i), false, wide.budget());
        }
        assert_eq!(tail.verdicts.len(), 2 * MIN_REMEMBERED);
        tail.reconfigure(Some(wide.max_buffered_spans(10)), &mut out);
        assert_eq!(tail.verdicts.len(), MIN_REMEMBERED);
        // The newest are the ones kept.
        assert!(tail.verdicts.get(SpanId::from_u64(decided)).is_some());
        assert!(tail.verdicts.get(SpanId::from_u64(1)).is_none());
    }

    /// A record settles only once the records released before it are handed over, so that a
    /// flush that sees it settled sees them in the sinks' counts.
    #[test]
    fn settled_marks_wait_for_the_records_before_them() {
        let mut b = Backlog::new();
        b.settle(2); // nothing before: settled at once
        assert_eq!(b.take_settled(), 2);
        b.push(record(), false); // released after being held: settled already
        b.settle(1); // a record held behind it
        b.push(record(), true); // a record passing through
        b.settle(3);
        assert_eq!((b.len(), b.take_settled()), (2, 0));
        let mut batch = Vec::new();
        b.take_into(1, &mut batch);
        assert_eq!((batch.len(), b.take_settled()), (1, 1));
        b.take_into(2, &mut batch);
        assert_eq!((batch.len(), b.take_settled()), (2, 4));
        assert!(b.is_empty());
        assert_eq!(b.totals(), (2, 2));
        b.push(record(), true);
        b.settle(5);
        assert_eq!(b.abandon(), (1, 6));
        assert_eq!(b.totals(), (3, 3));
    }

    /// Records passing through while nothing waits take a plain list; what comes after them
    /// (a settled mark, a record released after being held, more records) still waits behind
    /// them, and a batch takes them in order.
    #[test]
    fn records_passing_through_keep_their_order_with_what_follows() {
        let mut b = Backlog::new();
        let records: Vec<Record> = (0..6).map(|_| record()).collect();
        let same = |a: &Record, b: &Record| match (a, b) {
            (Record::Event(a), Record::Event(b)) => Shared::ptr_eq(a, b),
            _ => false,
        };
        b.push(records[0].clone(), true);
        b.push(records[1].clone(), true);
        b.settle(2); // held records, settled once the two before are handed over
        b.push(records[2].clone(), true);
        b.push(records[3].clone(), false);
        b.push(records[4].clone(), true);
        assert_eq!((b.len(), b.take_settled()), (5, 0));
        let mut batch = Vec::new();
        b.take_into(1, &mut batch);
        assert_eq!((batch.len(), b.take_settled()), (1, 1));
        b.take_into(3, &mut batch);
        assert_eq!((batch.len(), b.take_settled()), (3, 4));
        b.take_into(10, &mut batch);
        assert_eq!((batch.len(), b.take_settled()), (5, 1));
        assert!(b.is_empty());
        for (taken, pushed) in batch.iter().zip(&records) {
            assert!(same(taken, pushed));
        }
        // Empty again: the next ones pass through, a whole batch at once.
        b.push(records[5].clone(), true);
        let mut batch = Vec::new();
        b.take_into(4, &mut batch);
        assert!(same(&batch[0], &records[5]));
        assert_eq!((b.len(), b.take_settled(), b.totals()), (0, 1, (6, 6)));
        b.push(record(), true);
        b.push(record(), true);
        b.settle(3);
        assert_eq!(b.abandon(), (2, 5));
        assert!(b.is_empty());
    }
}
