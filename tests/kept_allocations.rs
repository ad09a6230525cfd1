//! A record that is kept allocates nothing on the calling thread in steady state: an event with
//! text and `Debug` fields, a span lifecycle, an event attached to its span, a span's recorded
//! fields and its links. Counted by a global allocator that tallies this thread's allocations.
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use support::*;
use tracing_offload::sink::{Sink, SinkError};
use tracing_offload::{OffloadLayer, Record};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: defers to the system allocator; only counts on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// A sink that reads every record (so the work is real) and keeps none: records go back to the
/// pool as soon as it is done. It wants span events, so events are attached to their spans.
/// While `held`, it waits before reading: the records of a whole round are then in flight at
/// once, which is the most a round can have.
#[derive(Clone, Default)]
struct Reader {
    events_on_spans: Arc<AtomicU64>,
    records: Arc<AtomicU64>,
    held: Arc<std::sync::atomic::AtomicBool>,
}

impl Sink for Reader {
    fn name(&self) -> &str {
        "reader"
    }
    fn export(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        while self.held.load(Ordering::SeqCst) {
            std::thread::park_timeout(std::time::Duration::from_millis(1));
        }
        for r in batch {
            if let Record::Span(s) = r {
                self.events_on_spans
                    .fetch_add(s.events().len() as u64, Ordering::Relaxed);
            }
        }
        self.records
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }
    fn wants_span_events(&self) -> bool {
        true
    }
}

#[derive(Debug)]
#[allow(dead_code)] // read through `Debug`
struct Order {
    id: u64,
    customer: &'static str,
}

fn work(rounds: u64) {
    for i in 0..rounds {
        // A kept event: integers, a long text, a `Debug` value, a message.
        tracing::info!(
            user_id = 42u64,
            path = "/api/orders/and/a/path/longer/than/inline/text",
            order = ?Order { id: i, customer: "someone with a long name" },
            "request served"
        );
        // A kept span lifecycle with an event inside, a field recorded later, and a link.
        let first = tracing::info_span!("first", route = "/api/orders");
        let span = tracing::info_span!(
            "handle",
            route = "/api/orders",
            status = tracing::field::Empty
        );
        span.follows_from(&first);
        let entered = span.enter();
        tracing::info!(
            status = 200u64,
            detail = "a detail that is longer than inline",
            "done"
        );
        span.record("status", 200u64);
        drop(entered);
        drop(span);
        drop(first);
    }
}

/// Grows every pooled record's buffers to the widest shape `work` makes: events with all the
/// fields of both of its events, spans with fields, a link and an event. The pools start with
/// an eighth of the queue's capacity each and hand records out oldest first, so twice that many
/// of each kind visits every record. (`work` alone would not: it alternates two events and two
/// spans, and a record whose turn always falls on the smaller kind would grow the first time the
/// order shifts, e.g. when tail sampling gives dropped traces back sooner.) Returns the number
/// of spans made; each has one event.
fn fill_pools(handle: &tracing_offload::Handle) -> u64 {
    let spans = handle.config().capacity.value / 8 * 2;
    let mut previous = tracing::Span::none();
    for i in 0..spans {
        let span = tracing::info_span!(
            "handle",
            route = "/api/orders",
            status = tracing::field::Empty
        );
        span.follows_from(&previous);
        span.in_scope(|| {
            tracing::info!(
                user_id = 42u64,
                path = "/api/orders/and/a/path/longer/than/inline/text",
                order = ?Order { id: i as u64, customer: "someone with a long name" },
                status = 200u64,
                detail = "a detail that is longer than inline",
                "request served, done"
            )
        });
        span.record("status", 200u64);
        // Each span ends after the next one follows from it.
        previous = span;
        if i % 1_000 == 999 {
            // Lets records go back to the pools, so that it is the pooled ones that grow.
            handle.flush(DEADLINE).unwrap();
        }
    }
    drop(previous);
    handle.flush(DEADLINE).unwrap();
    spans as u64
}

const WARM_UP_ROUNDS: u64 = 40;
const COUNTED_ROUNDS: u64 = 5;
const PER_ROUND: u64 = 500;

/// Warm-up rounds of `round`, every other one with the sink held until the round is done (a
/// whole round in flight, the most a round can have).
fn warm_up(reader: &Reader, handle: &tracing_offload::Handle, mut round: impl FnMut()) {
    for i in 0..WARM_UP_ROUNDS {
        reader.held.store(i % 2 == 0, Ordering::SeqCst);
        round();
        reader.held.store(false, Ordering::SeqCst);
        handle.flush(DEADLINE).unwrap();
    }
}

/// The calling thread's allocations over the counted rounds of `round` (the flushes between
/// them not counted: flushing is not the hot path).
fn counted(handle: &tracing_offload::Handle, mut round: impl FnMut()) -> u64 {
    let mut counted = 0;
    for _ in 0..COUNTED_ROUNDS {
        let before = allocations();
        round();
        counted += allocations() - before;
        handle.flush(DEADLINE).unwrap();
    }
    counted
}

#[test]
fn kept_events_and_spans_allocate_nothing_in_steady_state() {
    let reader = Reader::default();
    let (layer, guard) = OffloadLayer::builder()
        .sink(reader.clone())
        .build()
        .unwrap();
    let handle = guard.handle();
    let mut filled = 0;
    with_layer(layer, || {
        // Warm up: callsite caches, the registry's slab pages, the span store's maps, and the
        // record pools. Steady state means the pools hold as many records as are ever in
        // flight at once, each with buffers grown to fit: so some warm-up rounds hold the sink
        // until the round is done (a whole round in flight, the most a round can have), and
        // the rest let it run. Records are reused in turn, so each must have held each kind.
        filled = fill_pools(&handle);
        warm_up(&reader, &handle, || work(PER_ROUND));
        assert_eq!(
            counted(&handle, || work(PER_ROUND)),
            0,
            "allocations on the calling thread for {} kept records",
            COUNTED_ROUNDS * PER_ROUND * 4
        );
    });
    guard.shutdown(DEADLINE).unwrap();
    let stats = handle.stats();
    assert_eq!(stats.dropped, 0, "{stats:#?}");
    let rounds = WARM_UP_ROUNDS + COUNTED_ROUNDS;
    assert_eq!(
        stats.sinks[0].exported,
        rounds * PER_ROUND * 4 + filled * 2,
        "{stats:#?}"
    );
    // Every `done` event reached its span.
    assert_eq!(
        reader.events_on_spans.load(Ordering::Relaxed),
        rounds * PER_ROUND + filled
    );
}

#[test]
fn tail_sampling_costs_the_calling_thread_no_allocation() {
    // Half the traces kept by the ratio, half dropped on the drain thread: both paths return
    // the records to the pool from there.
    let reader = Reader::default();
    let (layer, guard) = OffloadLayer::builder()
        .tail_sampling(tracing_offload::TailSampling::new().keep_ratio(0.5))
        .sink(reader.clone())
        .build()
        .unwrap();
    let handle = guard.handle();
    let tail = handle.stats().tail_sampling.settings;
    let mut filled = 0;
    with_layer(layer, || {
        // Warm up to steady state as above: some rounds wholly in flight. In those, tail
        // sampling is off, so that every record of the round waits at the held sink (with it
        // on, the dropped half would go back to the pool at once, and a round whose records
        // all pile up in the queue, the drain thread being slow to run, would hold more).
        filled = fill_pools(&handle);
        for round in 0..WARM_UP_ROUNDS {
            let hold = round % 2 == 0;
            handle
                .set_tail_sampling(if hold { None } else { tail })
                .unwrap();
            reader.held.store(hold, Ordering::SeqCst);
            work(PER_ROUND);
            reader.held.store(false, Ordering::SeqCst);
            handle.flush(DEADLINE).unwrap();
        }
        handle.set_tail_sampling(tail).unwrap();
        let mut counted = 0;
        for _ in 0..COUNTED_ROUNDS {
            let before = allocations();
            work(PER_ROUND);
            counted += allocations() - before;
            handle.flush(DEADLINE).unwrap();
        }
        assert_eq!(
            counted, 0,
            "allocations on the calling thread with tail sampling on"
        );
    });
    guard.shutdown(DEADLINE).unwrap();
    let stats = handle.stats();
    let total = (WARM_UP_ROUNDS + COUNTED_ROUNDS) * PER_ROUND * 4 + filled * 2;
    assert_eq!(stats.dropped, 0, "{stats:#?}");
    let tail = &stats.tail_sampling;
    assert!(
        tail.sampled_out > 0 && tail.traces_kept_ratio > 0,
        "{tail:#?}"
    );
    assert_eq!(stats.sinks[0].exported + tail.sampled_out, total);
    assert_eq!(
        reader.records.load(Ordering::Relaxed),
        stats.sinks[0].exported
    );
}

/// The widest records `tracing` makes: an event with 24 fields and a span with 25 (a callsite
/// holds at most 32), a span that follows from 20 others, and a span whose text field is
/// recorded 30 times over its life (a progress field). Each allocated in steady state: the
/// field list was cut back to 24 entries when its record was recycled (it grows 8, 16, 32) and
/// the link list to 16, so the next wide record grew them again (3 and 1 allocations per
/// record), and the text of a field recorded many times was compacted into a new buffer, which
/// the next records then grew again (adversary pass 49).
#[test]
fn wide_records_allocate_nothing_in_steady_state() {
    let reader = Reader::default();
    let (layer, guard) = OffloadLayer::builder()
        .sink(reader.clone())
        .build()
        .unwrap();
    let handle = guard.handle();
    let progress = "p".repeat(100);
    #[rustfmt::skip] // 24 fields, 8 a line
    let wide = |others: &[tracing::Span], i: u64| {
        tracing::info!(
            f01 = i, f02 = i, f03 = i, f04 = i, f05 = i, f06 = i, f07 = i, f08 = i,
            f09 = i, f10 = i, f11 = i, f12 = i, f13 = i, f14 = i, f15 = i, f16 = i,
            f17 = i, f18 = i, f19 = i, f20 = i, f21 = i, f22 = i, f23 = i, f24 = i,
            "twenty-four fields"
        );
        let span = tracing::info_span!(
            "wide",
            f01 = i, f02 = i, f03 = i, f04 = i, f05 = i, f06 = i, f07 = i, f08 = i,
            f09 = i, f10 = i, f11 = i, f12 = i, f13 = i, f14 = i, f15 = i, f16 = i,
            f17 = i, f18 = i, f19 = i, f20 = i, f21 = i, f22 = i, f23 = i, f24 = i,
            step = tracing::field::Empty
        );
        for other in others {
            span.follows_from(other);
        }
        for _ in 0..30 {
            span.record("step", progress.as_str());
        }
    };
    let mut made = 0;
    with_layer(layer, || {
        let others: Vec<_> = (0..20).map(|_| tracing::info_span!("other")).collect();
        // Warm up as above: every pooled record used, some rounds wholly in flight.
        let fill = handle.config().capacity.value as u64 / 8 * 2;
        for i in 0..fill {
            wide(&others, i);
            if i % 1_000 == 999 {
                handle.flush(DEADLINE).unwrap();
            }
        }
        made += fill;
        let round = || {
            for i in 0..PER_ROUND {
                wide(&others, i);
            }
        };
        warm_up(&reader, &handle, round);
        made += WARM_UP_ROUNDS * PER_ROUND;
        let counted = counted(&handle, round);
        made += COUNTED_ROUNDS * PER_ROUND;
        assert_eq!(
            counted,
            0,
            "allocations on the calling thread for {} wide records",
            COUNTED_ROUNDS * PER_ROUND * 2
        );
    });
    guard.shutdown(DEADLINE).unwrap();
    let stats = handle.stats();
    assert_eq!(stats.dropped, 0, "{stats:#?}");
    // Each wide event and span, and the 20 others.
    assert_eq!(stats.sinks[0].exported, made * 2 + 20, "{stats:#?}");
}
