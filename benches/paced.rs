//! The kept path at a paced rate: what a healthy service pays per record.
//!
//! One thread offers records at a fixed rate that every pipeline keeps up with (default
//! 100,000 per second, `OFFLOAD_BENCH_RATE`), every call is timed, and the figures are the mean
//! and the 50th, 99th and 99.9th percentiles per call, the median of 3 rounds. The figures
//! include the timer's own cost, which the `timer` row shows (an empty timed call, measured in
//! the same run); it is not subtracted. Side by side in one run:
//!
//! * `floor`: a `Registry` with no layer; `floor_noop_layer`: with a layer that does nothing
//!   (the floor as issue 9 defines it);
//! * `offload`: this crate with a JSON file sink;
//! * `offload_tail_sampling` (span rows): the same with tail sampling on (errors, and 1 % of
//!   the rest), which holds each trace on the drain thread until its root closes;
//!   `offload_tail_sampling_half`: 50 % of the rest, so that records come back for reuse out of
//!   the order they were taken (dropped ones at once, kept ones after the sink);
//! * `fmt_json_nonblocking` / `_lossless`: `fmt().json()` + `tracing_appender::non_blocking`
//!   to a file, lossy (the default) and `lossy(false)`;
//! * `otel_appender_batch`: `opentelemetry-appender-tracing` + the SDK's batch log processor
//!   (events only), with an exporter that only counts;
//! * `otel_sdk_batch`: `tracing-opentelemetry` + the SDK's batch span processor (spans), with an
//!   exporter that only counts.
//!
//! Workloads: an event with three fields; a span lifecycle (create, enter, one event, exit,
//! close). Then the lossless throughput: one producer in a tight loop, 1,000,000 events that
//! must all reach the JSON file (this crate under `Block`, `non_blocking` with `lossy(false)`),
//! timed until the file has them all.
//!
//! Run: `cargo bench --bench paced` (`OFFLOAD_BENCH_CALLS` sets the calls per round, default
//! 200,000; `OFFLOAD_BENCH_WORKLOADS` a comma-separated choice of `event`, `span` and
//! `lossless`, default all three). The files are written in RAM (`/dev/shm`) and deleted
//! after each workload, so the lossless figures need free memory: the README's runs start
//! with the page cache dropped (`sync; echo 3 > /proc/sys/vm/drop_caches`).

use std::hint::black_box;
use std::time::{Duration, Instant};

#[allow(dead_code)]
mod support;
use support::*;
use tracing::Dispatch;
use tracing_offload::{sink, Backpressure, OffloadLayer};
use tracing_subscriber::prelude::*;

const ROUNDS: usize = 3;

fn env_number(var: &str, default: f64) -> f64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v: &f64| *v > 0.0)
        .unwrap_or(default)
}

/// Per-call figures in nanoseconds.
#[derive(Clone, Copy, Debug, Default)]
struct Figures {
    mean: f64,
    p50: f64,
    p99: f64,
    p999: f64,
}

/// Calls `op` `calls` times at `rate` per second on this thread, timing each call.
fn paced(dispatch: &Dispatch, op: fn(), rate: f64, calls: usize) -> Vec<u64> {
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut samples = vec![0u64; calls];
    tracing::dispatcher::with_default(dispatch, || {
        let start = Instant::now();
        let mut due = start;
        for sample in samples.iter_mut() {
            due += period;
            while Instant::now() < due {
                std::hint::spin_loop();
            }
            let t = Instant::now();
            op();
            *sample = t.elapsed().as_nanos() as u64;
        }
    });
    samples
}

fn figures(mut samples: Vec<u64>) -> Figures {
    samples.sort_unstable();
    let n = samples.len();
    let q = |p: f64| samples[((n as f64 * p) as usize).min(n - 1)] as f64;
    Figures {
        mean: samples.iter().sum::<u64>() as f64 / n as f64,
        p50: q(0.5),
        p99: q(0.99),
        p999: q(0.999),
    }
}

/// The median of each figure over the rounds.
fn median(rounds: &[Figures]) -> Figures {
    let pick = |f: fn(&Figures) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Figures {
        mean: pick(|f| f.mean),
        p50: pick(|f| f.p50),
        p99: pick(|f| f.p99),
        p999: pick(|f| f.p999),
    }
}

fn empty() {
    black_box(());
}

/// An empty timed call: what the timer itself costs, for reading the other rows.
fn timer() -> Candidate {
    Candidate {
        name: "timer",
        dispatch: Dispatch::new(tracing_subscriber::registry()),
        _keep: Box::new(()),
        report: Box::new(String::new),
    }
}

fn workload(title: &str, op: fn(), candidates: &[Candidate], rate: f64, calls: usize) {
    eprintln!("\n## {title}: {rate:.0}/s, {calls} calls per round, median of {ROUNDS} rounds");
    eprintln!("| pipeline | mean | p50 | p99 | p99.9 |");
    eprintln!("|---|---|---|---|---|");
    // Warm every pipeline up (thread-local caches, pools, the sink's file) before timing.
    for c in candidates {
        paced(&c.dispatch, op, rate, calls / 10);
    }
    let mut rounds: Vec<Vec<Figures>> = vec![Vec::new(); candidates.len()];
    for _ in 0..ROUNDS {
        // Candidates take turns within a round, so that a slow minute of the machine is
        // shared out rather than landing on one of them.
        for (i, c) in candidates.iter().enumerate() {
            let op = if c.name == "timer" { empty } else { op };
            rounds[i].push(figures(paced(&c.dispatch, op, rate, calls)));
        }
    }
    for (c, r) in candidates.iter().zip(&rounds) {
        let f = median(r);
        eprintln!(
            "| {} | {:.0} ns | {:.0} | {:.0} | {:.0} |",
            c.name, f.mean, f.p50, f.p99, f.p999
        );
    }
    for c in candidates {
        let r = (c.report)();
        if !r.is_empty() {
            eprintln!("{title}/{}: {r}", c.name);
        }
    }
}

/// One producer, a tight loop, `n` events that must all reach the file; returns ns per event.
fn lossless(name: &str, dispatch: Dispatch, finish: impl FnOnce(), n: u64) {
    let start = Instant::now();
    tracing::dispatcher::with_default(&dispatch, || {
        for _ in 0..n {
            event();
        }
    });
    drop(dispatch);
    finish();
    let elapsed = start.elapsed();
    eprintln!(
        "| {name} | {:.0} ns | {:.2} M events/s |",
        elapsed.as_nanos() as f64 / n as f64,
        n as f64 / elapsed.as_secs_f64() / 1e6
    );
}

fn throughput(dir: &std::path::Path) {
    const N: u64 = 1_000_000;
    eprintln!("\n## lossless throughput: one producer, tight loop, {N} events, all written to a JSON file");
    eprintln!("| pipeline | per event, end to end | rate |");
    eprintln!("|---|---|---|");
    let path = dir.join("throughput.jsonl");
    let (layer, guard) = OffloadLayer::builder()
        .backpressure(Backpressure::Block {
            timeout: Duration::from_secs(60),
        })
        .sink(sink::JsonFile::new(&path))
        .build()
        .unwrap();
    let handle = guard.handle();
    lossless(
        "offload (Block)",
        Dispatch::new(tracing_subscriber::registry().with(layer)),
        || {
            handle.flush(Duration::from_secs(300)).unwrap();
            let s = handle.stats();
            assert_eq!(s.sinks[0].exported, N, "nothing may be lost under Block");
        },
        N,
    );
    drop(guard);
    let lines = std::fs::read_to_string(&path).unwrap().lines().count();
    assert_eq!(lines as u64, N, "this crate wrote every line");
    remove_files(dir);
    let fmt_path = dir.join("throughput-fmt.jsonl");
    let file = std::fs::File::create(&fmt_path).unwrap();
    let (writer, wguard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(file);
    let fmt = tracing_subscriber::fmt()
        .json()
        .with_writer(writer)
        .finish();
    lossless(
        "fmt_json_nonblocking_lossless",
        Dispatch::new(fmt),
        move || drop(wguard),
        N,
    );
    let lines = std::fs::read_to_string(&fmt_path).unwrap().lines().count();
    assert_eq!(lines as u64, N, "non_blocking lossless wrote every line");
    remove_files(dir);
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this with no such flag: then a
    // short smoke run only.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let rate = env_number("OFFLOAD_BENCH_RATE", 100_000.0);
    let calls = if smoke {
        2_000
    } else {
        env_number("OFFLOAD_BENCH_CALLS", 200_000.0) as usize
    };
    let dir = bench_dir();
    let chosen = std::env::var("OFFLOAD_BENCH_WORKLOADS").unwrap_or_default();
    let names: Vec<&str> = chosen
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .collect();
    if let Some(unknown) = names
        .iter()
        .find(|w| !["event", "span", "lossless"].contains(w))
    {
        eprintln!("OFFLOAD_BENCH_WORKLOADS: unknown workload {unknown:?} (event, span, lossless)");
        std::process::exit(2);
    }
    let runs = |workload: &str| names.is_empty() || names.contains(&workload);
    if runs("event") {
        kept_events(&dir, rate, calls);
    }
    if runs("span") {
        kept_spans(&dir, rate, calls);
    }
    if !smoke && runs("lossless") {
        throughput(dir.path());
    }
}

fn kept_events(dir: &tempfile::TempDir, rate: f64, calls: usize) {
    let events = [
        timer(),
        floor(),
        floor_noop_layer(),
        offload(dir.path()),
        fmt_json(dir.path()),
        fmt_json_lossless(dir.path()),
        otel_logs(),
    ];
    workload("kept event, 3 fields", event, &events, rate, calls);
    drop(events);
    remove_files(dir.path());
}

fn kept_spans(dir: &tempfile::TempDir, rate: f64, calls: usize) {
    let spans = [
        timer(),
        floor(),
        floor_noop_layer(),
        offload(dir.path()),
        offload_tail(dir.path(), "offload_tail_sampling", 0.01),
        offload_tail(dir.path(), "offload_tail_sampling_half", 0.5),
        fmt_json(dir.path()),
        fmt_json_lossless(dir.path()),
        otel_spans(),
    ];
    workload(
        "kept span lifecycle with one event",
        span_lifecycle,
        &spans,
        rate,
        calls,
    );
    drop(spans);
    remove_files(dir.path());
}

/// Deletes the files a workload's pipelines wrote, once they are dropped. They are in RAM
/// (`/dev/shm`), and the gigabytes they hold there slowed the next workload's writes: with
/// 3 GB in `/dev/shm`, the lossless workload wrote 1.5 – 3.1 M events/s, without, 5.8 – 6.5
/// (and `non_blocking`'s rate moved too). The figures are to measure the pipelines, not the
/// kernel's handling of a full `tmpfs`.
fn remove_files(dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let _ = std::fs::remove_file(entry.path());
    }
}
