//! Adversary pass 65: a span entered on two threads at once (a span handed to parallel work:
//! `span.in_scope` in a rayon or thread pool, or `.instrument(span.clone())` on tasks of a
//! multi-thread runtime) gets `busy_ns` larger than its own `duration_ns`, and `idle_ns` 0: the
//! two do not add up to the duration. README, JSON-lines schema: "`busy_ns`, `idle_ns` | time
//! entered, and open but not entered; they add up to `duration_ns`" (also sent as OTLP
//! attributes). The busy time is summed per enter/exit pair across threads, so overlapping
//! enters count twice.
mod support;

use std::sync::mpsc;
use std::time::Duration;

use support::*;
use tracing_offload::sink::JsonFile;
use tracing_offload::OffloadLayer;

#[test]
fn busy_and_idle_add_up_to_the_duration_of_a_span_entered_on_two_threads_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spans.jsonl");
    let (layer, guard) = OffloadLayer::builder()
        .sink(JsonFile::new(&path))
        .build()
        .unwrap();
    let dispatch = dispatch(layer);
    tracing::dispatcher::with_default(&dispatch, || {
        let span = tracing::info_span!("parallel_work");
        let (entered_tx, entered_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let worker = {
            let (span, dispatch) = (span.clone(), dispatch.clone());
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    let _entered = span.enter();
                    entered_tx.send(()).unwrap();
                    done_rx.recv().unwrap(); // entered until the main thread is done
                })
            })
        };
        entered_rx.recv().unwrap();
        span.in_scope(|| std::thread::sleep(Duration::from_millis(20))); // the work itself
        std::thread::sleep(Duration::from_millis(20)); // the worker still works meanwhile
        done_tx.send(()).unwrap();
        worker.join().unwrap();
    });
    guard.shutdown(DEADLINE).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let span: serde_json::Value = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["kind"] == "span")
        .expect("the span's line");
    let duration = span["duration_ns"].as_u64().unwrap();
    let busy = span["busy_ns"].as_u64().unwrap();
    let idle = span["idle_ns"].as_u64().unwrap();
    assert!(
        busy <= duration && busy + idle == duration,
        "busy_ns {busy} + idle_ns {idle} = {} against duration_ns {duration}: {span}",
        busy + idle
    );
}
