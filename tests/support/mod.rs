//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing_offload::sink::{Sink, SinkError};
use tracing_offload::{Backpressure, OffloadLayer, Record, SpanRecord, Stats};
use tracing_subscriber::prelude::*;

pub mod admin;
pub mod collector;
pub mod freezing;
#[cfg(all(feature = "otlp", not(loom)))]
pub mod grpc_receiver;
pub mod live_bytes;
pub mod receiver;
pub mod tls;

pub use collector::skip::skip_unless_required;

/// Generous deadline for conditions that should become true quickly.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Waits until `cond` is true, polling, and panics with `what` at the deadline.
#[track_caller]
/// The spool of the sink named `otlp`, as the stats show it now.
pub fn otlp_spool(handle: &tracing_offload::Handle) -> tracing_offload::SpoolStats {
    let stats = handle.stats();
    let sink = stats.sink("otlp").expect("a sink named otlp");
    sink.spool.clone().expect("a sink with a spool")
}

/// Waits until the `otlp` sink's spool holds nothing more to replay.
pub fn wait_spool_replayed(what: &str, handle: &tracing_offload::Handle) {
    wait_until(what, DEADLINE, || otlp_spool(handle).records == 0);
}

/// `t` in RFC 3339 with microseconds, truncated (not rounded), as the JSON sink writes times
/// (computed with the `time` crate, not the crate's own formatting).
pub fn rfc3339_micros(t: std::time::SystemTime) -> String {
    let d = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        d.year(),
        u8::from(d.month()),
        d.day(),
        d.hour(),
        d.minute(),
        d.second(),
        d.nanosecond() / 1_000
    )
}

pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::yield_now();
        std::thread::park_timeout(Duration::from_millis(1));
    }
}

/// Runs the test `name` of the current test binary in a child process and returns what it
/// wrote to stderr, for asserting what a user sees there (libtest captures `eprintln!` inside
/// a test, not in a child process run with `--nocapture`). The child test is `#[ignore]`d, so
/// that only this call runs it; it fails the caller when the child test fails.
#[track_caller]
pub fn stderr_of_child_test(name: &str) -> String {
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = std::process::Command::new(exe)
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child test {name} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stderr
}

/// An error and its sources as `anyhow` prints them with `{:#}`: each one's message, joined by
/// `": "`.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Runs `f` with `layer` installed as this thread's default subscriber.
pub fn with_layer<R>(layer: OffloadLayer, f: impl FnOnce() -> R) -> R {
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, f)
}

/// Releases a stalled sink when dropped, also when an assertion fails: every shutdown can then
/// finish.
pub struct ReleaseOnDrop(pub Collect);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// A pipeline built by `builder` whose only sink (`stalled`) is stalled inside an export of
/// the `events` records logged through it (more than one batch's worth stay queued): what a
/// shutdown then waits for, or gives up on. Returns the guard, the dispatch to log more
/// through, and what releases the sink when dropped (before the guard, as a later binding).
pub fn stuck_in_an_export(
    builder: tracing_offload::Builder,
    events: u64,
) -> (tracing_offload::Guard, tracing::Dispatch, ReleaseOnDrop) {
    let sink = Collect::new("stalled");
    sink.stall();
    let (layer, guard) = builder.sink(sink.clone()).build().unwrap();
    let handle = guard.handle();
    let dispatch = dispatch(layer);
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..events {
            tracing::info!(i, "stuck in the export");
        }
    });
    wait_until("the export to start", DEADLINE, || {
        handle.stats().sinks[0].export_in_progress_for.is_some()
    });
    (guard, dispatch, ReleaseOnDrop(sink))
}

/// One span with two events inside, sent through a sink `make` makes as one batch (the drain
/// takes them only when flushed); returns how long the flush took and the sink's stats after
/// it.
///
/// The drain thread may still be looking at the queue after the flush before the records
/// (it has not parked yet), and then takes the first record alone: two batches, seen twice
/// in CI on a loaded machine. That is the set-up failing, not what the callers test: the
/// scenario runs again with a new sink, up to five times.
pub fn one_span_two_events<S: Sink + 'static>(
    make: impl Fn() -> S,
) -> (Duration, tracing_offload::SinkStats) {
    let mut batches = Vec::new();
    for _ in 0..5 {
        let (layer, guard) = OffloadLayer::builder()
            .flush_interval(Duration::from_secs(3600))
            .sink(make())
            .build()
            .unwrap();
        let handle = guard.handle();
        handle.flush(DEADLINE).unwrap();
        with_layer(layer, || {
            let _s = tracing::info_span!("request").entered();
            tracing::info!("first");
            tracing::info!("second");
        });
        let started = Instant::now();
        handle.flush(DEADLINE).unwrap();
        let took = started.elapsed();
        let stats = handle.stats().sinks[0].clone();
        guard.shutdown(DEADLINE).unwrap();
        if stats.batches == 1 {
            return (took, stats);
        }
        batches.push(stats.batches);
    }
    panic!("the records never went as one batch: {batches:?} batches in five tries");
}

/// An OTLP sink to `endpoint` (service `service`) that spools to `dir` as soon as an export
/// fails: no retries, so that a collector that is down (its port refuses connections) sends
/// every batch to the spool at once. The timeout is generous: a request answered late is sent
/// again (at least once), and the tests count what the collector received; on a loaded
/// machine a 200 ms timeout made a replay arrive twice. Tests chain their own settings onto it.
#[cfg(feature = "otlp")]
pub fn spooling_sink(
    endpoint: String,
    service: &str,
    dir: &std::path::Path,
) -> tracing_offload::sink::Otlp {
    tracing_offload::sink::Otlp::new()
        .endpoint(endpoint)
        .service_name(service)
        .timeout(Duration::from_secs(10))
        .max_retries(0)
        .spool(dir)
}

/// A `Debug` value that holds its caller, mid-capture, until the test lets it go: the caller
/// waits at `inside` (so the test knows it is there), then at `release`.
pub struct Slow {
    pub inside: Arc<std::sync::Barrier>,
    pub release: Arc<std::sync::Barrier>,
}

impl std::fmt::Debug for Slow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inside.wait();
        self.release.wait();
        f.write_str("slow")
    }
}

/// Makes `n` spans named `work` (each with its index as field `i`) through `layer`.
pub fn work_spans(layer: OffloadLayer, n: u64) {
    with_layer(layer, || {
        for i in 0..n {
            tracing::info_span!("work", i).in_scope(|| {});
        }
    });
}

/// Makes a dispatcher from `layer` that several threads can share.
pub fn dispatch(layer: OffloadLayer) -> tracing::Dispatch {
    tracing::Dispatch::new(tracing_subscriber::registry().with(layer))
}

/// Runs `threads` producers on `layer`'s pipeline, each emitting `per_thread` events
/// `info!(producer, seq, "tick")` with `seq` counting up, and returns when all are done.
pub fn produce(layer: OffloadLayer, threads: u64, per_thread: u64) {
    let dispatch = dispatch(layer);
    std::thread::scope(|s| {
        for producer in 0..threads {
            let dispatch = dispatch.clone();
            s.spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    for seq in 0..per_thread {
                        tracing::info!(producer, seq, "tick");
                    }
                })
            });
        }
    });
}

/// Floods a pipeline whose queue holds 16 records (batches of 8) under `policy` from `threads`
/// producers of `per_thread` events each (see [`produce`]) into a sink that takes
/// `per_batch_delay` per batch, and shuts it down. Asserts the accounting and that the sink got
/// exactly what was counted exported; returns the stats and the records the sink kept.
#[track_caller]
pub fn flood_from_producers(
    policy: Backpressure,
    per_batch_delay: Duration,
    threads: u64,
    per_thread: u64,
) -> (Stats, Vec<Record>) {
    let sink = Collect::new("slow").slow(per_batch_delay);
    let (layer, guard) = OffloadLayer::builder()
        .capacity(16)
        .batch_size(8)
        .backpressure(policy)
        .sink(sink.clone())
        .build()
        .unwrap();
    produce(layer, threads, per_thread);
    guard.shutdown(DEADLINE).unwrap();
    let stats = guard.handle().stats();
    assert_accounting(&stats, per_thread * threads);
    let kept = sink.data();
    assert_eq!(
        kept.len() as u64,
        stats.sinks[0].exported,
        "the sink got what was counted exported"
    );
    (stats, kept)
}

/// The `seq` of each kept event of each producer (see [`produce`]), in arrival order.
pub fn seqs_by_producer(kept: &[Record], threads: u64) -> Vec<Vec<u64>> {
    let mut seqs = vec![Vec::new(); threads as usize];
    for (producer, seq) in kept.iter().filter_map(seq_of) {
        seqs[producer as usize].push(seq);
    }
    seqs
}

/// Asserts that what survives of each producer arrived in the order it was emitted.
#[track_caller]
pub fn assert_each_producer_in_order(kept: &[Record], threads: u64) {
    for (producer, seqs) in seqs_by_producer(kept, threads).iter().enumerate() {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "producer {producer} out of order: {seqs:?}"
        );
    }
}

/// Floods a pipeline whose queue holds one record (`DropNewest`) with 10 000 events into
/// `sink`, and shuts it down: the sink then has data and drop markers. Returns the stats (some
/// records were dropped).
#[track_caller]
pub fn flood_a_one_record_queue(sink: impl Sink) -> Stats {
    let (layer, guard) = OffloadLayer::builder()
        .capacity(1)
        .backpressure(Backpressure::DropNewest)
        .sink(sink)
        .build()
        .unwrap();
    with_layer(layer, || {
        for i in 0..10_000u64 {
            tracing::info!(i, "flood");
        }
    });
    guard.shutdown(DEADLINE).unwrap();
    let stats = guard.handle().stats();
    assert!(stats.dropped > 0, "{stats:#?}");
    stats
}

/// The span records among `records`.
pub fn span_records(records: &[Record]) -> Vec<SpanRecord> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Span(s) => Some((**s).clone()),
            _ => None,
        })
        .collect()
}

/// The span named `name`; panics when there is none.
#[track_caller]
pub fn span_named<'a>(spans: &'a [SpanRecord], name: &str) -> &'a SpanRecord {
    spans
        .iter()
        .find(|s| s.metadata().name() == name)
        .unwrap_or_else(|| panic!("no span named {name:?}"))
}

/// The names of `records`, sorted: a span's name, `event` for an event (markers left out).
pub fn names_sorted(records: &[Record]) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = records
        .iter()
        .filter_map(|r| match r {
            Record::Span(s) => Some(s.metadata().name()),
            Record::Event(_) => Some("event"),
            _ => None,
        })
        .collect();
    names.sort_unstable();
    names
}

/// A sink that keeps every record in memory; optionally slow (a fixed delay per batch, standing
/// in for slow I/O), stalled (blocks until released), or failing.
#[derive(Clone, Default)]
pub struct Collect {
    pub name: &'static str,
    pub records: Arc<Mutex<Vec<Record>>>,
    pub per_batch_delay: Option<Duration>,
    pub stalled: Arc<AtomicBool>,
    pub fail: Arc<AtomicBool>,
    pub panic_on_export: Arc<AtomicBool>,
    pub batches: Arc<AtomicU64>,
}

impl Collect {
    pub fn new(name: &'static str) -> Self {
        Collect {
            name,
            ..Default::default()
        }
    }

    pub fn slow(mut self, per_batch: Duration) -> Self {
        self.per_batch_delay = Some(per_batch);
        self
    }

    /// Blocks every export until [`Collect::release`].
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }

    pub fn release(&self) {
        self.stalled.store(false, Ordering::SeqCst);
    }

    pub fn data(&self) -> Vec<Record> {
        self.records
            .lock()
            .unwrap()
            .iter()
            .filter(|r| !matches!(r, Record::Dropped(_)))
            .cloned()
            .collect()
    }

    /// The span named `name` this sink received; panics when there is none.
    #[track_caller]
    pub fn span(&self, name: &str) -> SpanRecord {
        span_named(&span_records(&self.data()), name).clone()
    }

    /// The events received, in order.
    pub fn events(&self) -> Vec<tracing_offload::Shared<tracing_offload::EventRecord>> {
        self.data()
            .into_iter()
            .filter_map(|r| match r {
                Record::Event(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    pub fn markers(&self) -> Vec<Record> {
        self.records
            .lock()
            .unwrap()
            .iter()
            .filter(|r| matches!(r, Record::Dropped(_)))
            .cloned()
            .collect()
    }

    pub fn count(&self) -> usize {
        self.data().len()
    }
}

impl Sink for Collect {
    fn name(&self) -> &str {
        self.name
    }

    fn export(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        while self.stalled.load(Ordering::SeqCst) {
            std::thread::park_timeout(Duration::from_millis(1));
        }
        if self.panic_on_export.load(Ordering::SeqCst) {
            panic!("collect sink told to panic");
        }
        if let Some(d) = self.per_batch_delay {
            std::thread::sleep(d); // simulated slow I/O, not synchronisation
        }
        self.batches.fetch_add(1, Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) {
            return Err(SinkError::Retryable("told to fail".into()));
        }
        self.records.lock().unwrap().extend(batch.iter().cloned());
        Ok(())
    }

    fn wants_span_events(&self) -> bool {
        true
    }
}

/// The `seq` and `thread` fields of an event, for order checks.
pub fn seq_of(record: &Record) -> Option<(u64, u64)> {
    let Record::Event(e) = record else {
        return None;
    };
    let get = |name: &str| match e.fields().get(name)? {
        tracing_offload::FieldValue::U64(v) => Some(v),
        tracing_offload::FieldValue::I64(v) => Some(v as u64),
        _ => None,
    };
    Some((get("producer")?, get("seq")?))
}

/// Asserts the accounting invariants of a pipeline after shutdown.
#[track_caller]
pub fn assert_accounting(stats: &tracing_offload::Stats, offered: u64) {
    assert_eq!(stats.offered, offered, "offered: {stats:#?}");
    assert_eq!(
        stats.enqueued + stats.dropped + stats.sampled_out,
        stats.offered,
        "{stats:#?}"
    );
    for sink in &stats.sinks {
        assert_eq!(
            sink.exported + sink.spooled + sink.failed + sink.dropped,
            stats.enqueued,
            "sink {}: {stats:#?}",
            sink.name
        );
    }
}

/// Accepts connections on a loopback port and never answers, until stopped.
pub struct Unanswering {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Unanswering {
    pub fn start() -> Unanswering {
        Self::start_on(0)
    }

    /// On a given loopback port (0: a free one).
    pub fn start_on(port: u16) -> Unanswering {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut held = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => held.push(stream),
                        // Polling for connections and for the stop flag, not synchronisation.
                        Err(_) => std::thread::park_timeout(Duration::from_millis(5)),
                    }
                }
            })
        };
        Unanswering {
            port,
            stop,
            thread: Some(thread),
        }
    }

    /// Closes the port and every connection it took.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
    }
}

/// For the test fronts (a TLS front, a freezing one): a runtime of their own, and a loopback
/// listener on a free port.
pub fn front_runtime() -> (tokio::runtime::Runtime, tokio::net::TcpListener, u16) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    (rt, listener, port)
}
