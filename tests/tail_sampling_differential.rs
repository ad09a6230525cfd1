//! A differential check: one pipeline writes the same workload to a JSON-lines file twice,
//! first with tail sampling off, then on. Every trace written the second time is identical,
//! line for line, to the first time's (ids of spans, which are random, mapped to span names;
//! times left out), and the traces written are exactly those that failed or whose trace id is
//! in the ratio. The traces join remote parents with fixed trace ids, so that both runs share
//! them.
mod support;

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;
use support::*;
use tracing_offload::{sink::JsonFile, Backpressure, OffloadLayer, TailSampling, TraceId};

const TRACES: u64 = 300;
const RATIO: f64 = 0.2;

fn is_error(i: u64) -> bool {
    i % 10 == 3
}

/// A spread-out trace id for request `i` (SplitMix64's finaliser), the same in both runs.
fn trace_id(i: u64) -> TraceId {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    TraceId::from_u128(u128::from(i + 1) << 64 | u128::from(z ^ (z >> 31)))
}

fn workload() {
    for i in 0..TRACES {
        let parent = format!("00-{}-00f067aa0ba902b7-01", trace_id(i));
        tracing::info_span!("request", n = i, traceparent = parent.as_str()).in_scope(|| {
            tracing::info!(path = "/orders", "received");
            tracing::info_span!("load", table = "orders").in_scope(|| {
                tracing::debug!(rows = i, "loaded");
                if is_error(i) && i % 20 == 3 {
                    tracing::error!(code = 500u64, "storage failed");
                }
            });
            let save = tracing::info_span!("save", otel.status_code = tracing::field::Empty);
            save.in_scope(|| {
                tracing::warn!(retry = true, "slow disk");
                if is_error(i) && i % 20 == 13 {
                    save.record("otel.status_code", "error");
                }
            });
        });
    }
}

/// The lines of each trace, normalised: times left out, span ids replaced by span names.
fn traces(lines: &[Value]) -> BTreeMap<String, Vec<String>> {
    let mut names: HashMap<String, String> = HashMap::new();
    for l in lines.iter().filter(|l| l["kind"] == "span") {
        names.insert(
            l["span_id"].as_str().unwrap().to_owned(),
            l["name"].as_str().unwrap().to_owned(),
        );
    }
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in lines {
        let mut l = l.clone();
        let o = l.as_object_mut().unwrap();
        for key in ["ts", "start", "end", "duration_ns", "busy_ns", "idle_ns"] {
            o.remove(key);
        }
        for key in ["span_id", "parent_span_id"] {
            if let Some(Value::String(id)) = o.get(key) {
                let name = names
                    .get(id)
                    .cloned()
                    .unwrap_or_else(|| format!("remote {id}"));
                o.insert(key.to_owned(), Value::String(name));
            }
        }
        let trace = o["trace_id"]
            .as_str()
            .expect("every line is in a trace")
            .to_owned();
        out.entry(trace).or_default().push(l.to_string());
    }
    for lines in out.values_mut() {
        lines.sort();
    }
    out
}

/// The OpenTelemetry SDK's `TraceIdRatioBased` decision: the reference for the ratio.
fn sdk_keeps(id: TraceId, ratio: f64) -> bool {
    use opentelemetry::trace::{SpanKind, TraceId as OtelTraceId};
    use opentelemetry_sdk::trace::{Sampler, SamplingDecision, ShouldSample};
    let r = Sampler::TraceIdRatioBased(ratio).should_sample(
        None,
        OtelTraceId::from_bytes(id.0),
        "request",
        &SpanKind::Internal,
        &[],
        &[],
    );
    r.decision == SamplingDecision::RecordAndSample
}

#[test]
fn each_kept_trace_is_what_the_pipeline_writes_without_tail_sampling() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    let tail = TailSampling::new().keep_errors().keep_ratio(RATIO);
    let (layer, guard) = OffloadLayer::builder()
        .backpressure(Backpressure::Block {
            timeout: std::time::Duration::from_secs(60),
        })
        .tail_sampling(tail)
        .sink(JsonFile::new(&path))
        .build()
        .unwrap();
    let handle = guard.handle();
    let read = || -> Vec<Value> {
        std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let off_lines = with_layer(layer, || {
        handle.set_tail_sampling(None).unwrap();
        workload();
        handle.flush(DEADLINE).unwrap();
        let off_lines = read().len();
        handle.set_tail_sampling(Some(tail)).unwrap();
        workload();
        off_lines
    });
    guard.shutdown(DEADLINE).unwrap();
    let all = read();
    let (off, on) = all.split_at(off_lines);
    let (off, on) = (traces(off), traces(on));
    assert_eq!(off.len() as u64, TRACES);
    for lines in off.values() {
        assert_eq!(
            lines.len(),
            6 + usize::from(lines.iter().any(|l| l.contains("storage failed")))
        );
    }

    let expected: Vec<String> = (0..TRACES)
        .filter(|i| is_error(*i) || sdk_keeps(trace_id(*i), RATIO))
        .map(|i| trace_id(i).to_string())
        .collect();
    assert_eq!(on.keys().cloned().collect::<Vec<_>>(), {
        let mut e = expected.clone();
        e.sort();
        e
    });
    for (trace, lines) in &on {
        assert_eq!(lines, &off[trace], "trace {trace} differs");
    }
    let stats = handle.stats();
    let tail_stats = &stats.tail_sampling;
    assert_eq!(tail_stats.traces_kept_error, TRACES / 10);
    assert_eq!(
        tail_stats.traces_kept_error + tail_stats.traces_kept_ratio,
        expected.len() as u64
    );
    let written_on = on.values().map(Vec::len).sum::<usize>() as u64;
    let offered_on: u64 = off.values().map(|l| l.len() as u64).sum();
    assert_eq!(tail_stats.sampled_out, offered_on - written_on);
    assert_accounting(&stats, 2 * offered_on);
}
