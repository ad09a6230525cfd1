//! An event given its span by id (`parent: id`) on another thread can reach the drain thread
//! after its local root: the span is looked up while open, the event's fields are captured
//! (a user's `Debug`), and the span closes on its own thread in between. The event then
//! started a trace of its own under the decided root, decided a second time later (forced), and
//! an `ERROR` among such events counted a kept trace that was dropped (adversary pass 29). It
//! now follows the decision made at the root.
mod support;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tracing_offload::{ForcedDecision, OffloadLayer, TailSampling};
use tracing_subscriber::prelude::*;

/// A field whose `Debug` says it started, then waits until told to go on.
#[derive(Clone)]
struct Gate {
    entered: Arc<AtomicBool>,
    go: Arc<AtomicBool>,
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.entered.store(true, Ordering::SeqCst);
        while !self.go.load(Ordering::SeqCst) {
            std::thread::park_timeout(Duration::from_millis(1));
        }
        f.write_str("gate")
    }
}

fn run(error: bool) -> (Vec<&'static str>, tracing_offload::Stats) {
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder()
        .sink(sink.clone())
        .flush_interval(Duration::from_secs(3600))
        .tail_sampling(
            TailSampling::new()
                .keep_errors()
                .decision_wait(Duration::from_millis(20)),
        )
        .build()
        .unwrap();
    let handle = guard.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let root = tracing::dispatcher::with_default(&dispatch, || tracing::info_span!("request"));
    let id = root.id().unwrap();
    let gate = Gate {
        entered: Arc::default(),
        go: Arc::default(),
    };
    let worker = {
        let (dispatch, gate) = (dispatch.clone(), gate.clone());
        std::thread::spawn(move || {
            tracing::dispatcher::with_default(&dispatch, || {
                if error {
                    tracing::error!(parent: id, gate = ?gate, "failed");
                } else {
                    tracing::info!(parent: id, gate = ?gate, "step");
                }
            })
        })
    };
    wait_until("the event's fields being formatted", DEADLINE, || {
        gate.entered.load(Ordering::SeqCst)
    });
    drop(root); // the request ends on its own thread
    handle.flush(DEADLINE).unwrap(); // the root is decided
    gate.go.store(true, Ordering::SeqCst);
    worker.join().unwrap();
    // The event now reaches the drain thread; if it starts a trace of its own, that one is
    // decided after decision_wait.
    handle.flush(DEADLINE).unwrap(); // the drain thread has taken it
    wait_until("nothing held", DEADLINE, || {
        let s = handle.stats();
        s.tail_sampling.buffered_records == 0 && s.tail_sampling.buffered_traces == 0
    });
    handle.flush(DEADLINE).unwrap();
    guard.shutdown(DEADLINE).unwrap();
    let stats = guard.handle().stats();
    (names_sorted(&sink.data()), stats)
}

#[test]
fn an_event_that_comes_after_its_root_follows_the_decision_made_there() {
    let (names, stats) = run(false);
    let tail = &stats.tail_sampling;
    assert_eq!(
        (tail.traces_decided(), tail.traces_dropped),
        (1, 1),
        "one local trace, decided once, at its root: {tail:#?}"
    );
    assert_eq!(
        tail.forced_for(ForcedDecision::DecisionWait),
        0,
        "{tail:#?}"
    );
    assert_eq!(names, Vec::<&str>::new(), "dropped whole");
    assert_eq!(tail.sampled_out, 2, "{tail:#?}");
}

#[test]
fn an_error_that_comes_after_its_root_is_written_and_decides_nothing() {
    let (names, stats) = run(true);
    let tail = &stats.tail_sampling;
    assert_eq!(
        (tail.traces_decided(), tail.traces_dropped),
        (1, 1),
        "the root was decided (no error seen then), once: {tail:#?}"
    );
    assert_eq!(
        tail.forced_for(ForcedDecision::DecisionWait),
        0,
        "{tail:#?}"
    );
    // An ERROR is never tail-sampled out; the root was dropped before it came.
    assert_eq!(names, ["event"]);
}
