//! Trace sampling: decided once at the root, inherited, so every trace is whole or absent; the
//! same ids are kept as by the OpenTelemetry SDK's `TraceIdRatioBased`.
mod support;

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::trace::{SpanKind, TraceId as OtelTraceId};
use opentelemetry_sdk::trace::{Sampler, SamplingDecision, ShouldSample};
use support::*;
use tracing_offload::{Backpressure, OffloadLayer, Record, TracesSampler};

fn run_traces(sampler: TracesSampler, traces: u64) -> (Collect, tracing_offload::Stats) {
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder()
        .capacity(1 << 16)
        .backpressure(Backpressure::Block {
            timeout: Duration::from_secs(30),
        })
        .traces_sampler(sampler)
        .sink(sink.clone())
        .build()
        .unwrap();
    with_layer(layer, || {
        for t in 0..traces {
            let root = tracing::info_span!("root", t).entered();
            let a = tracing::info_span!("a").entered();
            let b = tracing::info_span!("b").entered();
            drop(b);
            drop(a);
            let c = tracing::info_span!("c").entered();
            let d = tracing::info_span!("d").entered();
            drop(d);
            drop(c);
            drop(root);
        }
    });
    guard.shutdown(DEADLINE).unwrap();
    let stats = guard.handle().stats();
    (sink, stats)
}

#[test]
fn a_quarter_of_the_traces_are_kept_whole_with_the_sdks_decisions() {
    for sampler in [
        TracesSampler::TraceIdRatio(0.25),
        TracesSampler::ParentBasedTraceIdRatio(0.25),
    ] {
        check_quarter_kept_whole(sampler);
    }
}

#[track_caller]
fn check_quarter_kept_whole(sampler: TracesSampler) {
    let traces = 10_000u64;
    let (sink, stats) = run_traces(sampler, traces);
    assert_accounting(&stats, traces * 5);
    let mut by_trace: HashMap<tracing_offload::TraceId, Vec<&'static str>> = HashMap::new();
    for r in sink.data() {
        let Record::Span(s) = r else {
            panic!("only spans")
        };
        by_trace
            .entry(s.trace_id())
            .or_default()
            .push(s.metadata().name());
    }
    for (id, mut names) in by_trace.clone() {
        names.sort_unstable();
        assert_eq!(
            names,
            ["a", "b", "c", "d", "root"],
            "{sampler}: trace {id} is not whole"
        );
        let sdk = Sampler::TraceIdRatioBased(0.25).should_sample(
            None,
            OtelTraceId::from_bytes(id.0),
            "root",
            &SpanKind::Internal,
            &[],
            &[],
        );
        assert_eq!(
            sdk.decision,
            SamplingDecision::RecordAndSample,
            "{sampler}: the SDK would drop {id}"
        );
    }
    let kept = by_trace.len() as f64;
    let sd = (traces as f64 * 0.25 * 0.75).sqrt();
    assert!(
        (kept - traces as f64 * 0.25).abs() < 5.0 * sd,
        "{sampler}: kept {kept} of {traces}"
    );
    assert_eq!(stats.sampled_out, (traces - by_trace.len() as u64) * 5);
    assert_eq!(stats.sampling.unwrap().spans_sampled_out, stats.sampled_out);
}

#[test]
fn always_off_records_no_span_and_always_on_every_span() {
    let (sink, stats) = run_traces(TracesSampler::AlwaysOff, 100);
    assert_eq!(sink.count(), 0);
    assert_eq!(stats.sampled_out, 500);
    assert_eq!(stats.open_spans, 0);
    let (sink, _) = run_traces(TracesSampler::AlwaysOn, 100);
    assert_eq!(sink.count(), 500);
}

#[test]
fn the_event_whitelist_does_not_override_the_traces_sampler() {
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder()
        .traces_sampler(TracesSampler::ParentBasedAlwaysOff)
        .sample_always("shop")
        .sink(sink.clone())
        .build()
        .unwrap();
    with_layer(layer, || {
        // The target matches the event whitelist: its events are kept, its spans are not.
        let _r = tracing::info_span!(target: "shop", "checkout").entered();
        tracing::info!(target: "shop", "kept: whitelisted event");
    });
    guard.shutdown(DEADLINE).unwrap();
    let data = sink.data();
    assert!(
        data.iter().all(|r| matches!(r, Record::Event(_))),
        "{data:?}"
    );
    assert_eq!(data.len(), 1);
    assert_eq!(
        guard.handle().stats().sampling.unwrap().spans_sampled_out,
        1
    );
}

#[test]
fn events_in_unsampled_traces_are_kept_unless_told_to_follow() {
    for follow in [false, true] {
        let sink = Collect::new("collect");
        let (layer, guard) = OffloadLayer::builder()
            .traces_sampler(TracesSampler::AlwaysOff)
            .events_follow_trace_sampling(follow)
            .sink(sink.clone())
            .build()
            .unwrap();
        with_layer(layer, || {
            let _s = tracing::info_span!("unsampled").entered();
            tracing::info!("inside");
            tracing::error!("errors stay");
        });
        guard.shutdown(DEADLINE).unwrap();
        let expected = if follow { 1 } else { 2 };
        assert_eq!(sink.count(), expected, "follow = {follow}");
    }
}

#[test]
fn set_traces_sampler_applies_to_spans_created_after_it() {
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder().sink(sink.clone()).build().unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        drop(tracing::info_span!("kept").entered());
        handle.set_traces_sampler(TracesSampler::AlwaysOff).unwrap();
        drop(tracing::info_span!("not kept").entered());
        assert!(handle
            .set_traces_sampler(TracesSampler::TraceIdRatio(2.0))
            .is_err());
    });
    guard.shutdown(DEADLINE).unwrap();
    assert_eq!(sink.count(), 1);
}

#[test]
fn a_trace_open_while_the_sampler_changes_stays_whole() {
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder().sink(sink.clone()).build().unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        let kept = tracing::info_span!("kept root").entered();
        handle.set_traces_sampler(TracesSampler::AlwaysOff).unwrap();
        drop(tracing::info_span!("kept child").entered());
        drop(kept);
        let dropped = tracing::info_span!("dropped root").entered();
        handle.set_traces_sampler(TracesSampler::AlwaysOn).unwrap();
        drop(tracing::info_span!("dropped child").entered());
        drop(dropped);
    });
    guard.shutdown(DEADLINE).unwrap();
    let names = names_sorted(&sink.data());
    assert_eq!(names, ["kept child", "kept root"]);
}
