//! Tail sampling keeps every local trace that failed or was slow, whole, and a ratio of the
//! rest chosen by trace id, with exact accounting: 10,000 local traces, 50 with an error deep
//! in the tree (half an `ERROR` event, half an `otel.status_code = "error"` span), 20 slower
//! than the threshold, the rest fast and fine, at a 1 % ratio.
mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use support::*;
use tracing_offload::{
    Backpressure, EventRecord, FieldValue, OffloadLayer, OffloadSpanExt, Record, SpanRecord,
    TailSampling, TraceId,
};

const TRACES: u64 = 10_000;
const RATIO: f64 = 0.01;
/// Small, so that a slow trace needs no sleep: its root stays open while thousands of other
/// traces run (see `run_workload`).
const SLOW: Duration = Duration::from_millis(50);

fn is_error(i: u64) -> bool {
    i % 200 == 7 // 50 traces
}

fn is_slow(i: u64) -> bool {
    i % 500 == 250 // 20 traces, none of them an error trace
}

/// The error of trace `i` is an `ERROR` event (else the deepest span's status).
fn error_by_event(i: u64) -> bool {
    (i / 200) % 2 == 0
}

/// Records trace `i` makes: 5 spans, 3 events, and the error event of an error trace.
fn records_of(i: u64) -> u64 {
    8 + u64::from(is_error(i) && error_by_event(i))
}

/// One local trace: request → {auth, work → db → query}, with events at three depths and, in
/// an error trace, the error at the bottom. Returns the root, still open.
fn trace(i: u64) -> tracing::Span {
    let root = tracing::info_span!("request", n = i);
    root.in_scope(|| {
        tracing::info!("start");
        tracing::info_span!("auth").in_scope(|| tracing::debug!("checked"));
        tracing::info_span!("work").in_scope(|| {
            tracing::info_span!("db").in_scope(|| {
                let query = tracing::info_span!("query", otel.status_code = tracing::field::Empty);
                query.in_scope(|| {
                    tracing::info!(rows = 3u64, "rows");
                    if is_error(i) {
                        if error_by_event(i) {
                            tracing::error!("query failed");
                        } else {
                            query.record("otel.status_code", "Error");
                        }
                    }
                });
            })
        });
    });
    root
}

/// Runs the 10,000 traces; returns each one's trace id. The slow ones are made first and their
/// roots kept open while the others run; each is closed once it has been open for twice the
/// threshold (a margin over the clock's calibration). By then that is true already: the
/// thousands of other traces take longer. The wait is on that condition, not a sleep; a real
/// passage of time is what "slow" means, so it cannot be avoided altogether.
fn run_workload() -> HashMap<TraceId, u64> {
    let mut ids = HashMap::new();
    let mut slow_roots = Vec::new();
    for i in (0..TRACES).filter(|i| is_slow(*i)) {
        let opened = Instant::now();
        let root = trace(i);
        ids.insert(root.offload_context().unwrap().trace_id, i);
        slow_roots.push((opened, root));
    }
    for i in (0..TRACES).filter(|i| !is_slow(*i)) {
        let root = trace(i);
        ids.insert(root.offload_context().unwrap().trace_id, i);
    }
    for (opened, root) in slow_roots {
        wait_until("the slow root to be slow", DEADLINE, || {
            opened.elapsed() > 2 * SLOW
        });
        drop(root);
    }
    ids
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

/// What the sink received of one trace.
#[derive(Default)]
struct Received {
    spans: Vec<SpanRecord>,
    events: Vec<EventRecord>,
}

fn by_trace(records: &[Record]) -> HashMap<TraceId, Received> {
    let mut traces: HashMap<TraceId, Received> = HashMap::new();
    for r in records {
        match r {
            Record::Span(s) => traces
                .entry(s.trace_id())
                .or_default()
                .spans
                .push((**s).clone()),
            Record::Event(e) => {
                let id = e
                    .trace_id()
                    .expect("every event of the workload is in a span");
                traces.entry(id).or_default().events.push((**e).clone());
            }
            Record::Dropped(m) => panic!("nothing may be dropped: {m}"),
        }
    }
    traces
}

fn messages<'a>(events: impl IntoIterator<Item = &'a EventRecord>) -> Vec<String> {
    let mut m: Vec<String> = events
        .into_iter()
        .map(|e| e.message().unwrap().text.to_owned())
        .collect();
    m.sort();
    m
}

/// Every span, every event (as a log and on its span), every parent link of trace `i`.
#[track_caller]
fn assert_whole(i: u64, t: &Received) {
    let names: BTreeMap<&str, &SpanRecord> = t.spans.iter().map(|s| (s.name(), s)).collect();
    assert_eq!(
        names.keys().copied().collect::<Vec<_>>(),
        ["auth", "db", "query", "request", "work"],
        "trace {i}"
    );
    assert_eq!(t.spans.len(), 5, "trace {i}: no span twice");
    let parent = |name: &str| {
        let id = names[name].parent_span_id();
        id.and_then(|id| t.spans.iter().find(|s| s.span_id() == id))
            .map(|s| s.name())
    };
    assert_eq!(parent("request"), None, "trace {i}");
    assert_eq!(parent("auth"), Some("request"));
    assert_eq!(parent("work"), Some("request"));
    assert_eq!(parent("db"), Some("work"));
    assert_eq!(parent("query"), Some("db"));
    assert_eq!(
        names["request"].fields().get("n"),
        Some(FieldValue::U64(i)),
        "trace {i}"
    );
    let mut logs = vec!["checked", "rows", "start"];
    let mut on_query = vec!["rows"];
    if is_error(i) && error_by_event(i) {
        logs.push("query failed");
        on_query.push("query failed");
    }
    logs.sort();
    on_query.sort();
    assert_eq!(messages(&t.events), logs, "trace {i}: its logs");
    assert_eq!(
        messages(names["request"].events().iter().map(|e| &**e)),
        ["start"]
    );
    assert_eq!(
        messages(names["auth"].events().iter().map(|e| &**e)),
        ["checked"]
    );
    assert_eq!(
        messages(names["query"].events().iter().map(|e| &**e)),
        on_query
    );
    let local_root = names["request"].span_id();
    assert!(t.spans.iter().all(|s| s.local_root_id() == local_root));
    assert!(t
        .events
        .iter()
        .all(|e| e.local_root_id() == Some(local_root)));
}

#[test]
fn errors_and_slow_traces_arrive_whole_and_a_ratio_of_the_rest() {
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder()
        .backpressure(Backpressure::Block {
            timeout: Duration::from_secs(600),
        })
        .tail_sampling(
            TailSampling::new()
                .keep_errors()
                .keep_slower_than(SLOW)
                .keep_ratio(RATIO)
                // Never reached here: every trace is decided at its root.
                .decision_wait(Duration::from_secs(3600)),
        )
        .sink(sink.clone())
        .build()
        .unwrap();
    let ids = with_layer(layer, run_workload);
    assert_eq!(ids.len() as u64, TRACES, "distinct trace ids");
    guard.shutdown(DEADLINE).unwrap();
    let stats = guard.handle().stats();
    let received = by_trace(&sink.data());

    let mut kept_records = 0;
    let mut dropped_records = 0;
    let (mut others, mut others_in_ratio) = (0u64, 0u64);
    let (mut kept_for_ratio, mut kept_slow_others) = (0u64, 0u64);
    for (id, &i) in &ids {
        let got = received.get(id);
        if is_error(i) || is_slow(i) {
            let got = got.unwrap_or_else(|| panic!("trace {i} (error or slow) was not kept"));
            assert_whole(i, got);
            kept_records += records_of(i);
            continue;
        }
        others += 1;
        let in_ratio = sdk_keeps(*id, RATIO);
        others_in_ratio += u64::from(in_ratio);
        match got {
            Some(t) => {
                assert_whole(i, t);
                kept_records += records_of(i);
                // Fast by design, but the machine may have paused one for longer than the
                // threshold: then it really was slow, and is kept for that.
                let root = t.spans.iter().find(|s| s.name() == "request").unwrap();
                if root.duration() > SLOW {
                    kept_slow_others += 1;
                } else {
                    assert!(in_ratio, "trace {i} kept for nothing");
                    kept_for_ratio += 1;
                }
            }
            None => {
                assert!(!in_ratio, "trace {i} is in the ratio and was dropped");
                dropped_records += records_of(i);
            }
        }
    }
    assert_eq!(
        received.len() as u64,
        70 + kept_for_ratio + kept_slow_others
    );
    // The ratio's share of the 9,930 others: within 5 standard deviations of a binomial.
    let n = others as f64;
    let (mean, sd) = (n * RATIO, (n * RATIO * (1.0 - RATIO)).sqrt());
    let kept = others_in_ratio as f64;
    assert!(
        (mean - 5.0 * sd..=mean + 5.0 * sd).contains(&kept),
        "{kept} of {others} in the ratio"
    );

    // Exact accounting.
    let offered: u64 = (0..TRACES).map(records_of).sum();
    assert_accounting(&stats, offered);
    let tail = &stats.tail_sampling;
    assert_eq!(stats.dropped, 0, "{stats:#?}");
    assert_eq!(tail.sampled_out, dropped_records, "{tail:#?}");
    assert_eq!(stats.sampled_out, tail.sampled_out, "no head sampling here");
    assert_eq!(stats.sinks[0].exported, kept_records);
    assert_eq!(stats.enqueued, kept_records);
    assert_eq!(tail.traces_decided(), TRACES, "{tail:#?}");
    assert_eq!(tail.traces_kept_error, 50, "{tail:#?}");
    assert_eq!(tail.traces_kept_slow, 20 + kept_slow_others, "{tail:#?}");
    assert_eq!(tail.traces_kept_ratio, kept_for_ratio, "{tail:#?}");
    assert_eq!(tail.forced_decisions(), 0, "{tail:#?}");
    assert_eq!((tail.buffered_records, tail.buffered_traces), (0, 0));
}
