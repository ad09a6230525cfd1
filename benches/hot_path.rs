//! The calling thread's cost, side by side in one run:
//!
//! * `floor`: a `Registry` with no layer;
//! * `offload`: this crate with a JSON file sink;
//! * `offload_sampled_out`: the same with everything sampled out (event rate 0, spans
//!   `always_off`): the cost of a record the sampler drops;
//! * `fmt_json_nonblocking`: `tracing_subscriber::fmt().json()` + `tracing_appender::non_blocking`
//!   to a file;
//! * `otel_sdk_batch`: `tracing-opentelemetry` + the SDK's batch span processor (spans), with an
//!   exporter that only counts;
//! * `otel_appender_batch`: `opentelemetry-appender-tracing` + the SDK's batch log processor
//!   (events), with an exporter that only counts.
//!
//! Workloads: an event with three fields, and a span lifecycle with one event inside, each with
//! 1 and 2 threads. Then, outside criterion, per-call latency percentiles of the event while the
//! sink is stalled, and how many records each pipeline lost and whether it said so.
//!
//! Run: `cargo bench --bench hot_path` (add `-- --quick` for a fast pass).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

#[allow(dead_code)]
#[path = "../tests/support/collector.rs"]
mod collector;
#[allow(dead_code)]
mod support;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use support::*;
use tracing::Dispatch;
use tracing_offload::{sink, Backpressure, Guard, OffloadLayer};
use tracing_subscriber::prelude::*;

/// Runs `op` `iters` times on each of `threads` threads; returns the wall time.
fn run(dispatch: &Dispatch, threads: usize, iters: u64, op: fn()) -> Duration {
    if threads == 1 {
        return tracing::dispatcher::with_default(dispatch, || {
            let start = Instant::now();
            for _ in 0..iters {
                op();
            }
            start.elapsed()
        });
    }
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (d, b) = (dispatch.clone(), barrier.clone());
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&d, || {
                    b.wait();
                    for _ in 0..iters {
                        op();
                    }
                });
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().unwrap();
    }
    start.elapsed()
}

fn bench_workload(c: &mut Criterion, group: &str, op: fn(), candidates: &[Candidate]) {
    let mut g = c.benchmark_group(group);
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for threads in [1usize, 2] {
        for cand in candidates {
            g.bench_with_input(BenchmarkId::new(cand.name, threads), &threads, |b, &t| {
                b.iter_custom(|iters| run(&cand.dispatch, t, iters, op))
            });
        }
    }
    g.finish();
    for cand in candidates {
        let r = (cand.report)();
        if !r.is_empty() {
            eprintln!("{group}/{}: {r}", cand.name);
        }
    }
}

fn benches(c: &mut Criterion) {
    let dir = bench_dir();
    // The tight loops write faster than any disk: keep the files under 512 MB together (the
    // throughput row's file is read at the end, and holds 1 000 000 lines, about 240 MB).
    let trimmer = trim_files(dir.path(), &["throughput.jsonl"], 512 << 20);
    let events = [
        floor(),
        offload(dir.path()),
        offload_sampled_out(dir.path()),
        fmt_json(dir.path()),
        otel_logs(),
    ];
    bench_workload(c, "event_3_fields", event, &events);
    drop(events);
    let spans = [
        floor(),
        offload(dir.path()),
        offload_sampled_out(dir.path()),
        fmt_json(dir.path()),
        otel_spans(),
    ];
    bench_workload(c, "span_lifecycle", span_lifecycle, &spans);
    drop(spans);
    accepted_path(c, dir.path());
    otlp_spans(c);
    stalled_latency();
    json_throughput(dir.path());
    drop(trimmer);
}

/// The cost of a record that is kept: in the tight loops above the sinks cannot keep up, so
/// most offers meet a full queue and are refused (cheaply, and counted). Here the pipeline is
/// flushed between timed chunks of 1 000 operations (the flush is not timed), so every record
/// is captured, allocated and enqueued.
fn accepted_path(c: &mut Criterion, dir: &std::path::Path) {
    let (layer, guard) = OffloadLayer::builder()
        .sink(sink::JsonFile::new(dir.join("accepted.jsonl")))
        .build()
        .unwrap();
    let handle = guard.handle();
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
    let mut g = c.benchmark_group("accepted_path");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for (name, op) in [
        ("event_3_fields", event as fn()),
        ("span_lifecycle", span_lifecycle),
    ] {
        g.bench_function(BenchmarkId::new("offload", name), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let chunk = left.min(1_000);
                    timed += run(&dispatch, 1, chunk, op);
                    let _ = handle.flush(Duration::from_secs(30));
                    left -= chunk;
                }
                timed
            })
        });
    }
    g.finish();
    let s = handle.stats();
    eprintln!(
        "accepted_path/offload: offered {} enqueued {} dropped {}",
        s.offered, s.enqueued, s.dropped
    );
    drop(guard);
}

/// Span lifecycles exported to a real collector on loopback (Rotel), this crate against
/// `tracing-opentelemetry` + the SDK's batch processor + the same OTLP exporter.
fn otlp_spans(c: &mut Criterion) {
    let Some(collector) = collector::Collector::start() else {
        eprintln!("otlp rows skipped: no rotel-agent (pip install rotel)");
        return;
    };
    let (layer, guard) = OffloadLayer::builder()
        .sink(tracing_offload::sink::Otlp::new().endpoint(collector.grpc_endpoint()))
        .build()
        .unwrap();
    let handle = guard.handle();
    let ours = Candidate {
        name: "offload_otlp",
        dispatch: Dispatch::new(tracing_subscriber::registry().with(layer)),
        _keep: Box::new(guard),
        report: Box::new(move || {
            let _ = handle.flush(Duration::from_secs(30));
            let s = handle.stats();
            let o = s.sink("otlp").unwrap();
            format!(
                "offered {} exported {} failed {} dropped {} (all counted)",
                s.offered,
                o.exported,
                o.failed,
                s.dropped + o.dropped
            )
        }),
    };
    let (rt, exporter) = collector.reference_exporter();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .build();
    let tracer = provider.tracer("bench");
    let p = provider.clone();
    let theirs = Candidate {
        name: "otel_sdk_batch_otlp",
        dispatch: Dispatch::new(
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer)),
        ),
        _keep: Box::new(provider),
        report: Box::new(move || {
            let _ = p.force_flush();
            "drops not counted per reason".to_owned()
        }),
    };
    bench_workload(
        c,
        "span_lifecycle_otlp",
        span_lifecycle,
        &[floor(), ours, theirs],
    );
    drop(rt);
    drop(collector);
}

/// How many events per second the pipeline writes to a JSON file when nothing may be lost
/// (`Block`): one producer offers 1,000,000 events, the clock stops when the file has them all.
fn json_throughput(dir: &std::path::Path) {
    let path = dir.join("throughput.jsonl");
    let (layer, guard) = OffloadLayer::builder()
        .backpressure(Backpressure::Block {
            timeout: Duration::from_secs(60),
        })
        .sink(sink::JsonFile::new(&path))
        .build()
        .unwrap();
    let dispatch = Dispatch::new(tracing_subscriber::registry().with(layer));
    const N: u64 = 1_000_000;
    let start = Instant::now();
    tracing::dispatcher::with_default(&dispatch, || {
        for _ in 0..N {
            event();
        }
    });
    guard.handle().flush(Duration::from_secs(120)).unwrap();
    let elapsed = start.elapsed();
    let s = guard.handle().stats();
    assert_eq!(s.sinks[0].exported, N, "nothing may be lost under Block");
    eprintln!(
        "json_throughput/offload: {N} events written in {elapsed:.2?} = {:.0} events/s, {} bytes",
        N as f64 / elapsed.as_secs_f64(),
        std::fs::metadata(&path).map_or(0, |m| m.len())
    );
}

/// A sink that never returns until the bench ends: the queue fills and stays full.
struct Stalled(Arc<std::sync::atomic::AtomicBool>);

impl sink::Sink for Stalled {
    fn name(&self) -> &str {
        "stalled"
    }
    fn export(&mut self, _: &[tracing_offload::Record]) -> Result<(), sink::SinkError> {
        while !self.0.load(Ordering::Relaxed) {
            std::thread::park_timeout(Duration::from_millis(1));
        }
        Ok(())
    }
}

/// A writer that blocks until the bench ends, for `non_blocking`.
struct StalledWriter(Arc<std::sync::atomic::AtomicBool>);

impl std::io::Write for StalledWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        while !self.0.load(Ordering::Relaxed) {
            std::thread::park_timeout(Duration::from_millis(1));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn percentiles(name: &str, dispatch: &Dispatch) {
    const N: usize = 200_000;
    let mut samples = Vec::with_capacity(N);
    tracing::dispatcher::with_default(dispatch, || {
        for _ in 0..N {
            let t = Instant::now();
            event();
            samples.push(t.elapsed().as_nanos() as u64);
        }
    });
    samples.sort_unstable();
    let q = |p: f64| samples[((N as f64 * p) as usize).min(N - 1)];
    eprintln!(
        "stalled_sink_latency/{name}: p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns",
        q(0.5),
        q(0.99),
        q(0.999),
        samples[N - 1]
    );
}

fn stalled_latency() {
    let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (layer, guard): (_, Guard) = OffloadLayer::builder()
        .capacity(65_536)
        .sink(Stalled(release.clone()))
        .build()
        .unwrap();
    percentiles(
        "offload",
        &Dispatch::new(tracing_subscriber::registry().with(layer)),
    );
    let (writer, wguard) = tracing_appender::non_blocking(StalledWriter(release.clone()));
    let fmt = tracing_subscriber::fmt()
        .json()
        .with_writer(writer)
        .finish();
    percentiles("fmt_json_nonblocking", &Dispatch::new(fmt));
    let s = guard.handle().stats();
    eprintln!(
        "stalled_sink_latency/offload: offered {} dropped {} (all counted: {:?})",
        s.offered, s.dropped, s.dropped_by_reason
    );
    release.store(true, Ordering::Relaxed);
    drop(wguard);
    drop(guard);
}

criterion_group!(hot_path, benches);
criterion_main!(hot_path);
