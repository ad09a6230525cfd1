//! Sampling settings changed at run time while many threads produce: the accounting stays
//! exact, every whitelisted event arrives, and every trace is whole whatever the sampler was
//! when its spans were created.
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::*;
use tracing_offload::{Backpressure, Handle, OffloadLayer, Record, TraceId, TracesSampler};

const PRODUCERS: u64 = 4;
const PER_PRODUCER: u64 = 3_000;

/// Cycles through every kind of run-time change until `stop` is set.
fn keep_changing(handle: &Handle, stop: &AtomicBool) -> u64 {
    let samplers = [
        TracesSampler::AlwaysOn,
        TracesSampler::AlwaysOff,
        TracesSampler::TraceIdRatio(0.5),
        TracesSampler::ParentBasedTraceIdRatio(0.3),
        TracesSampler::ParentBasedAlwaysOff,
    ];
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let i = round as usize;
        handle.set_sample_rate([0.0, 0.5, 1.0][i % 3]).unwrap();
        handle
            .set_traces_sampler(samplers[i % samplers.len()])
            .unwrap();
        handle.set_sample_adaptive(round % 2 == 0);
        let mut always = vec!["audit".to_owned()];
        if round % 3 == 0 {
            always.push("other".to_owned());
        }
        handle.set_sample_always(always);
        let rate = ["0.2", "0.9"][i % 2];
        let env = move |var: &str| (var == "OFFLOAD_SAMPLE_RATE").then(|| rate.to_owned());
        assert!(handle.reload_from_env_with(&env).is_empty());
        round += 1;
        std::thread::yield_now();
    }
    round
}

#[test]
fn changes_under_load_keep_accounting_exact_and_traces_whole() {
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder()
        .capacity(1 << 16)
        .backpressure(Backpressure::Block {
            timeout: Duration::from_secs(30),
        })
        .sample_always("audit")
        .sink(sink.clone())
        .build()
        .unwrap();
    let handle = guard.handle();
    let dispatch = dispatch(layer);
    let stop = AtomicBool::new(false);
    let rounds = std::thread::scope(|s| {
        let controller = s.spawn(|| keep_changing(&handle, &stop));
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|producer| {
                let dispatch = dispatch.clone();
                s.spawn(move || {
                    tracing::dispatcher::with_default(&dispatch, || {
                        for seq in 0..PER_PRODUCER {
                            let _root = tracing::info_span!("root", producer, seq).entered();
                            let _child = tracing::info_span!("child").entered();
                            tracing::info!(producer, seq, "bulk");
                            tracing::info!(target: "audit", producer, seq, "audited");
                        }
                    })
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        controller.join().unwrap()
    });
    assert!(rounds > 0, "the controller never ran a round");
    guard.shutdown(DEADLINE).unwrap();
    let stats = guard.handle().stats();
    let offered = PRODUCERS * PER_PRODUCER * 4; // two spans and two events each
    assert_accounting(&stats, offered);
    let data = sink.data();
    let audited = data
        .iter()
        .filter(|r| matches!(r, Record::Event(e) if e.metadata().target() == "audit"))
        .count() as u64;
    assert_eq!(audited, PRODUCERS * PER_PRODUCER, "{stats:#?}");
    assert_traces_whole(&data);
}

/// Every kept trace is exactly a root and its child, linked.
#[track_caller]
fn assert_traces_whole(data: &[Record]) {
    let mut traces: HashMap<TraceId, Vec<_>> = HashMap::new();
    for r in data {
        if let Record::Span(s) = r {
            traces.entry(s.trace_id()).or_default().push(s.clone());
        }
    }
    for (id, spans) in traces {
        let root = spans.iter().find(|s| s.metadata().name() == "root");
        let child = spans.iter().find(|s| s.metadata().name() == "child");
        match (root, child, spans.len()) {
            (Some(root), Some(child), 2) => {
                assert_eq!(root.parent_span_id(), None, "trace {id}");
                assert_eq!(child.parent_span_id(), Some(root.span_id()), "trace {id}");
            }
            _ => panic!("trace {id} is not whole: {spans:#?}"),
        }
    }
}
