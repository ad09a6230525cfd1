//! Shared by the benches: the pipelines under test, built the same way in every bench, and the
//! workloads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter, SdkLoggerProvider};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing::Dispatch;
use tracing_offload::{sink, Backpressure, OffloadLayer, TailSampling, TracesSampler};
use tracing_subscriber::prelude::*;

#[derive(Debug, Clone, Default)]
pub struct CountingExporter(Arc<AtomicU64>);

impl SpanExporter for CountingExporter {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
        std::future::ready(Ok(()))
    }
}

impl LogExporter for CountingExporter {
    fn export(
        &self,
        batch: LogBatch<'_>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        self.0
            .fetch_add(batch.iter().count() as u64, Ordering::Relaxed);
        std::future::ready(Ok(()))
    }
}

/// One subscriber under test, with whatever must stay alive and a way to read its losses.
pub struct Candidate {
    pub name: &'static str,
    pub dispatch: Dispatch,
    pub _keep: Box<dyn std::any::Any>,
    /// (offered, delivered, counted drops) after a flush, where the pipeline can tell.
    pub report: Box<dyn Fn() -> String>,
}

pub fn floor() -> Candidate {
    Candidate {
        name: "floor",
        dispatch: Dispatch::new(tracing_subscriber::registry()),
        _keep: Box::new(()),
        report: Box::new(String::new),
    }
}

/// A layer that does nothing.
pub struct NoopLayer;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for NoopLayer {}

/// The floor as issue 9 defines it: a `Registry` with a layer that does nothing.
pub fn floor_noop_layer() -> Candidate {
    Candidate {
        name: "floor_noop_layer",
        dispatch: Dispatch::new(tracing_subscriber::registry().with(NoopLayer)),
        _keep: Box::new(()),
        report: Box::new(String::new),
    }
}

pub fn offload(dir: &std::path::Path) -> Candidate {
    let (layer, guard) = OffloadLayer::builder()
        .backpressure(Backpressure::DropNewest)
        .sink(sink::JsonFile::new(dir.join("offload.jsonl")))
        .build()
        .unwrap();
    let handle = guard.handle();
    Candidate {
        name: "offload",
        dispatch: Dispatch::new(tracing_subscriber::registry().with(layer)),
        _keep: Box::new(guard),
        report: Box::new(move || {
            let _ = handle.flush(Duration::from_secs(30));
            let s = handle.stats();
            format!(
                "offered {} written {} dropped {} (counted, by reason {:?})",
                s.offered,
                s.sinks[0].exported,
                s.dropped + s.sinks[0].dropped,
                s.dropped_by_reason
            )
        }),
    }
}

/// This crate with tail sampling on: errors, and `ratio` of the rest by trace id. The
/// buffering and the decision happen on the drain thread; the calling thread's work is the
/// same. (At 50 %, records come back for reuse out of the order they were taken: dropped ones
/// at once, kept ones after the sink.)
pub fn offload_tail(dir: &std::path::Path, name: &'static str, ratio: f64) -> Candidate {
    let (layer, guard) = OffloadLayer::builder()
        .backpressure(Backpressure::DropNewest)
        .tail_sampling(TailSampling::new().keep_errors().keep_ratio(ratio))
        .sink(sink::JsonFile::new(dir.join(format!("{name}.jsonl"))))
        .build()
        .unwrap();
    let handle = guard.handle();
    Candidate {
        name,
        dispatch: Dispatch::new(tracing_subscriber::registry().with(layer)),
        _keep: Box::new(guard),
        report: Box::new(move || {
            let _ = handle.flush(Duration::from_secs(30));
            let s = handle.stats();
            let t = &s.tail_sampling;
            format!(
                "offered {} written {} dropped {} (counted); tail sampling: {} traces decided, \
                 {} kept, {} records sampled out, {} decisions forced",
                s.offered,
                s.sinks[0].exported,
                s.dropped + s.sinks[0].dropped,
                t.traces_decided(),
                t.traces_kept_error + t.traces_kept_slow + t.traces_kept_ratio,
                t.sampled_out,
                t.forced_decisions()
            )
        }),
    }
}

/// This crate with everything sampled out: rate 0 for events, `always_off` for spans.
pub fn offload_sampled_out(dir: &std::path::Path) -> Candidate {
    let (layer, guard) = OffloadLayer::builder()
        .sample_rate(0.0)
        .traces_sampler(TracesSampler::AlwaysOff)
        .sink(sink::JsonFile::new(dir.join("sampled-out.jsonl")))
        .build()
        .unwrap();
    let handle = guard.handle();
    Candidate {
        name: "offload_sampled_out",
        dispatch: Dispatch::new(tracing_subscriber::registry().with(layer)),
        _keep: Box::new(guard),
        report: Box::new(move || {
            let s = handle.stats();
            format!("offered {} sampled out {}", s.offered, s.sampled_out)
        }),
    }
}

pub fn fmt_json(dir: &std::path::Path) -> Candidate {
    let file = std::fs::File::create(dir.join("fmt.jsonl")).unwrap();
    let (writer, guard) = tracing_appender::non_blocking(file);
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(writer)
        .finish();
    Candidate {
        name: "fmt_json_nonblocking",
        dispatch: Dispatch::new(subscriber),
        _keep: Box::new(guard),
        report: Box::new(|| "drops not observable (lossy channel, no counter)".to_owned()),
    }
}

pub fn otel_spans() -> Candidate {
    let count = CountingExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(count.clone())
        .build();
    let tracer = provider.tracer("bench");
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer));
    let p = provider.clone();
    Candidate {
        name: "otel_sdk_batch",
        dispatch: Dispatch::new(subscriber),
        _keep: Box::new(provider),
        report: Box::new(move || {
            let _ = p.force_flush();
            format!(
                "spans exported {} (drops not counted per reason)",
                count.0.load(Ordering::Relaxed)
            )
        }),
    }
}

pub fn otel_logs() -> Candidate {
    let count = CountingExporter::default();
    let provider = SdkLoggerProvider::builder()
        .with_batch_exporter(count.clone())
        .build();
    let layer = opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge::new(&provider);
    let p = provider.clone();
    Candidate {
        name: "otel_appender_batch",
        dispatch: Dispatch::new(tracing_subscriber::registry().with(layer)),
        _keep: Box::new(provider),
        report: Box::new(move || {
            let _ = p.force_flush();
            format!(
                "logs exported {} (drops not counted per reason)",
                count.0.load(Ordering::Relaxed)
            )
        }),
    }
}

pub fn event() {
    tracing::info!(
        user_id = 42u64,
        path = "/api/orders",
        latency_ms = 3.5,
        "request served"
    );
}

pub fn span_lifecycle() {
    let span = tracing::info_span!("handle", route = "/api/orders");
    let _e = span.enter();
    tracing::info!(status = 200u64, "done");
}

/// `fmt().json()` + `non_blocking` with `lossy(false)`: the caller waits when the channel is
/// full, so nothing is lost.
pub fn fmt_json_lossless(dir: &std::path::Path) -> Candidate {
    let file = std::fs::File::create(dir.join("fmt-lossless.jsonl")).unwrap();
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(file);
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(writer)
        .finish();
    Candidate {
        name: "fmt_json_nonblocking_lossless",
        dispatch: Dispatch::new(subscriber),
        _keep: Box::new(guard),
        report: Box::new(|| "lossless: the caller waits".to_owned()),
    }
}

/// Where the benchmarks write their files: a directory in RAM (`/dev/shm`) where there is one,
/// so that the figures measure the pipelines rather than the disk (whose write-back throttling
/// depends on what was written before), else the system's temporary directory.
pub fn bench_dir() -> tempfile::TempDir {
    let ram = std::path::Path::new("/dev/shm");
    let dir = if ram.is_dir() {
        tempfile::tempdir_in(ram)
    } else {
        tempfile::tempdir()
    }
    .unwrap();
    eprintln!("files in {}", dir.path().display());
    dir
}

/// Keeps the files of a bench directory from filling memory while the bench writes them: a
/// thread checks every 100 ms what the files (but those named in `keep`) hold together, and
/// past `limit` bytes empties them all. The tight loops write gigabytes (about 11 GB in all for
/// `hot_path`), in RAM where [`bench_dir`] found `/dev/shm`; what the files hold then stays
/// under `limit` plus what the pipelines write in 100 ms. A pipeline appending to a file (this
/// crate's JSON sink) goes on at its new end; one writing at its own offset (`fmt`'s file)
/// leaves a hole, which holds no memory. Dropping it stops the thread.
pub struct Trimmer {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub fn trim_files(dir: &std::path::Path, keep: &'static [&'static str], limit: u64) -> Trimmer {
    use std::os::unix::fs::MetadataExt;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (dir, done) = (dir.to_path_buf(), Arc::clone(&stop));
    let thread = std::thread::spawn(move || {
        while !done.load(Ordering::Relaxed) {
            let files: Vec<(std::path::PathBuf, u64)> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| {
                    !keep
                        .iter()
                        .any(|k| e.file_name() == std::ffi::OsStr::new(k))
                })
                // The bytes a file holds (a hole holds none), not its length.
                .filter_map(|e| Some((e.path(), e.metadata().ok()?.blocks() * 512)))
                .collect();
            if files.iter().map(|(_, held)| held).sum::<u64>() > limit {
                for (path, _) in files {
                    if let Ok(f) = std::fs::OpenOptions::new().write(true).open(path) {
                        let _ = f.set_len(0);
                    }
                }
            }
            std::thread::park_timeout(Duration::from_millis(100));
        }
    });
    Trimmer {
        stop,
        thread: Some(thread),
    }
}

impl Drop for Trimmer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}
