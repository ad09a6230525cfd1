//! Events in spans a per-layer filter hides from the `OffloadLayer`: a task's `debug_span!`
//! entered inside a worker's recorded span, across tokio tasks and two layers. The event goes
//! where a child span made at the same place goes: the hidden span's nearest recorded ancestor
//! (adversary pass 64: it went to the worker's span, the one entered below).
mod support;

use std::time::Duration;

use support::*;
use tracing::instrument::WithSubscriber;
use tracing_offload::{Backpressure, OffloadLayer, OffloadSpanExt, SpanRecord, TailSampling};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;

fn spans_of(c: &Collect) -> Vec<SpanRecord> {
    span_records(&c.data())
}

fn builder(sink: &Collect) -> tracing_offload::Builder {
    OffloadLayer::builder()
        .backpressure(Backpressure::Block {
            timeout: Duration::from_secs(60),
        })
        .sink(sink.clone())
}

/// A layer that sees every span (stands for `fmt::layer()` at debug).
struct SeesAll;
impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SeesAll {}

/// A task's `debug_span!` (child of `owner`, recorded) polled while a worker's recorded span
/// `worker` is entered on the thread. The registry's current span is the task's; its nearest
/// recorded ancestor is `owner`. CHANGELOG: a child span made there "gives its children its own
/// nearest recorded ancestor, as the registry says (... they went into the worker's trace)";
/// Fixed: an event inside such a span "is placed in that ancestor now". The child span goes to
/// `owner`; the event made at the same place goes to `worker`.
#[test]
fn event_in_hidden_task_span_inside_a_recorded_worker_span_lands_with_its_ancestor() {
    let sink = Collect::new("c");
    let (layer, guard) = builder(&sink).build().unwrap();
    let subscriber = tracing_subscriber::registry()
        .with(SeesAll)
        .with(layer.with_filter(LevelFilter::INFO));
    let (owner_id, worker_id) = tracing::subscriber::with_default(subscriber, || {
        let owner = tracing::info_span!("owner");
        let task = tracing::debug_span!(parent: &owner, "task");
        let worker = tracing::info_span!(parent: None, "worker");
        let ids = (
            owner.offload_context().unwrap().span_id,
            worker.offload_context().unwrap().span_id,
        );
        worker.in_scope(|| {
            task.in_scope(|| {
                tracing::info!("in task");
                tracing::info_span!("task_child").in_scope(|| {});
            })
        });
        ids
    });
    guard.shutdown(DEADLINE).unwrap();
    let spans = spans_of(&sink);
    let child = span_named(&spans, "task_child");
    let ev = sink.events();
    assert_eq!(ev.len(), 1);
    assert_eq!(
        child.parent_span_id(),
        Some(owner_id),
        "the child span: owner's"
    );
    assert_eq!(
        ev[0].span_id(),
        Some(owner_id),
        "event made next to task_child (parent owner {owner_id}) was placed in worker \
         {worker_id}"
    );
}

/// Two layers: one filtered at INFO, one that records everything. The unfiltered one puts
/// the event in `task` (owner's trace); README: "a span has the same trace id and span id in
/// each (a span whose parent one layer's filter hides stays in the trace the others see)".
#[test]
fn two_layers_put_one_event_in_one_trace() {
    let a = Collect::new("a");
    let b = Collect::new("b");
    let (la, ga) = builder(&a).build().unwrap();
    let (lb, gb) = builder(&b).build().unwrap();
    let subscriber = tracing_subscriber::registry()
        .with(la.with_filter(LevelFilter::INFO))
        .with(lb);
    tracing::subscriber::with_default(subscriber, || {
        let owner = tracing::info_span!("owner");
        let task = tracing::debug_span!(parent: &owner, "task");
        let worker = tracing::info_span!(parent: None, "worker");
        worker.in_scope(|| task.in_scope(|| tracing::info!("in task")));
    });
    ga.shutdown(DEADLINE).unwrap();
    gb.shutdown(DEADLINE).unwrap();
    let (ea, eb) = (a.events(), b.events());
    assert_eq!((ea.len(), eb.len()), (1, 1));
    assert_eq!(
        ea[0].trace_id(),
        eb[0].trace_id(),
        "one event, two traces: filtered layer {:?}, unfiltered {:?}",
        ea[0].trace_id(),
        eb[0].trace_id()
    );
}

/// Tail sampling (keep errors): `worker`'s trace has an error and is kept; `owner`'s has none
/// and is dropped. The event made in `task` (owner's) must go with owner's trace, not be
/// written in worker's.
#[test]
fn tail_sampling_does_not_write_a_dropped_traces_event() {
    let sink = Collect::new("c");
    let (layer, guard) = builder(&sink)
        .tail_sampling(
            TailSampling::new()
                .keep_errors()
                .decision_wait(Duration::from_millis(50)),
        )
        .build()
        .unwrap();
    let subscriber = tracing_subscriber::registry()
        .with(SeesAll)
        .with(layer.with_filter(LevelFilter::INFO));
    tracing::subscriber::with_default(subscriber, || {
        let owner = tracing::info_span!("owner");
        let task = tracing::debug_span!(parent: &owner, "task");
        let worker = tracing::info_span!(parent: None, "worker");
        worker.in_scope(|| {
            tracing::error!("worker failed");
            task.in_scope(|| tracing::info!(secret_of_owner = true, "in task"));
        });
        drop(task);
        drop(owner);
        drop(worker);
    });
    guard.shutdown(DEADLINE).unwrap();
    let names: Vec<_> = spans_of(&sink)
        .iter()
        .map(|s| s.name().to_string())
        .collect();
    let ev = sink.events();
    let msgs: Vec<_> = ev.iter().map(|e| format!("{:?}", e)).collect();
    assert!(
        !names.contains(&"owner".to_string()),
        "owner's trace was dropped: {names:?}"
    );
    assert!(
        !msgs.iter().any(|m| m.contains("in task")),
        "owner's trace dropped, its event written (in worker's): {msgs:#?}"
    );
}

/// Tokio multi-thread: tasks instrumented with `debug_span!` (children of a request span that
/// is dropped before they run), nested two hidden levels deep. Every event lands in the
/// request's trace.
#[test]
fn tokio_tasks_in_nested_hidden_spans_of_a_closed_request() {
    let sink = Collect::new("c");
    let (layer, guard) = builder(&sink).build().unwrap();
    let subscriber = tracing_subscriber::registry()
        .with(SeesAll)
        .with(layer.with_filter(LevelFilter::INFO));
    let d = tracing::Dispatch::new(subscriber);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let trace = tracing::dispatcher::with_default(&d, || {
        let request = tracing::info_span!("request");
        let trace = request.offload_context().unwrap().trace_id;
        let mut handles = Vec::new();
        for i in 0..50 {
            use tracing::Instrument;
            let outer = tracing::debug_span!(parent: &request, "outer", i);
            let inner = tracing::trace_span!(parent: &outer, "inner", i);
            let d2 = d.clone();
            handles.push(
                rt.spawn(
                    async move {
                        tokio::task::yield_now().await;
                        tracing::info!(i, "task event");
                    }
                    .instrument(inner)
                    .with_subscriber(d2),
                ),
            );
        }
        drop(request);
        for h in handles {
            rt.block_on(h).unwrap();
        }
        trace
    });
    drop(rt);
    guard.shutdown(DEADLINE).unwrap();
    let ev = sink.events();
    assert_eq!(ev.len(), 50);
    let wrong: Vec<_> = ev.iter().filter(|e| e.trace_id() != Some(trace)).collect();
    assert!(
        wrong.is_empty(),
        "{} of 50 events outside the request's trace",
        wrong.len()
    );
}
