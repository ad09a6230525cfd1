//! A [`tracing`](https://docs.rs/tracing/0.1) layer that takes observability off the hot path.
//!
//! The thread that calls `info!` or closes a span only classifies, captures fields into an
//! owned record and pushes it into a lock-free bounded queue. Everything slow — formatting,
//! JSON, file I/O, OTLP export — happens on threads this crate owns. When the queue is full, a
//! [`Backpressure`] policy decides, and **every record that is not written is counted with its
//! reason**: `offered == enqueued + dropped + sampled_out` holds in every [`Stats`] snapshot,
//! and sinks write an in-band "N records dropped" marker ([`DropNotice`]) where data was lost,
//! whether dropped or not delivered by the sink.
//!
//! # Quick start
//!
//! ```
//! use std::time::Duration;
//! use tracing_offload::{sink, Backpressure, OffloadLayer, Record};
//! use tracing_subscriber::prelude::*;
//!
//! // In a program you would add `.sink(sink::JsonFile::new("logs/app.jsonl"))`; this example
//! // stays off the disk and reads the records back through a channel instead.
//! let (channel, records) = sink::Channel::new(1024);
//! let (layer, guard) = OffloadLayer::builder()
//!     .capacity(65_536)
//!     .backpressure(Backpressure::DropOldest)
//!     .sink(sink::Console::stderr())
//!     .sink(channel)
//!     .build()?;
//! // In a program: `tracing_subscriber::registry().with(layer).init();`
//! let subscriber = tracing_subscriber::registry().with(layer);
//! tracing::subscriber::with_default(subscriber, || {
//!     let span = tracing::info_span!("request", method = "GET").entered();
//!     tracing::info!(status = 200, "done");
//!     drop(span);
//! });
//! guard.shutdown(Duration::from_secs(5))?;
//! let stats = guard.handle().stats();
//! assert_eq!(stats.enqueued, 2); // one event, one span
//! assert_eq!(stats.sink("channel").unwrap().exported, 2);
//! let span = records.drain().into_iter().find_map(|r| match r {
//!     Record::Span(s) => Some(s),
//!     _ => None,
//! });
//! assert_eq!(span.unwrap().events().len(), 1); // the event, attached to its span
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Or, for a program that only needs the console and the environment's settings:
//! `let _guard = tracing_offload::init()?;`. Like `tracing_subscriber::fmt::init()`, it
//! filters by `RUST_LOG` (default `info`, where `fmt::init()` has `error`) and brings in the records of `log`-based crates;
//! [`init_with`] does the same and adds layers of your own, [`init_from`] takes a builder of
//! your own (your sinks) instead of the console:
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let my_layer = tracing_subscriber::layer::Identity::new();
//! let _guard = tracing_offload::init_with(|subscriber| subscriber.with(my_layer))?;
//! # Ok(()) }
//! ```
//!
//! # Architecture
//!
//! ```text
//! application threads                 │  crate-owned threads
//!  info!(..) / span close             │
//!    ▼                                │
//!  OffloadLayer (layer/)              │
//!    classify per callsite (cached)   │
//!    sample (sampling.rs)             │
//!    span state: the layer's own      │
//!      sharded store, by span id      │
//!    capture fields into a record     │
//!      box taken from a pool          │
//!    push per Backpressure ───────────┼──▶ ArrayQueue (pipeline/queue.rs)
//!                                     │        ▼
//!                                     │   "offload-drain" (pipeline/drain.rs): pops what the
//!                                     │    sinks have room for, turns ticks into wall-clock
//!                                     │    time, attaches events to their spans, shares each
//!                                     │    record (a reference count); tail sampling
//!                                     │    (pipeline/tail.rs) holds a sampled local trace
//!                                     │    until its local root, then keeps or drops it
//!                                     │    whole; what is kept goes to every sink's buffer
//!                                     │        ▼            ▼            ▼
//!                                     │   "offload-sink-<name>" threads (pipeline/sink_thread.rs)
//!                                     │    → sink::Console, sink::JsonFile, sink::Otlp, …
//!                                     │      (an OTLP spool: segment files on disk, replayed
//!                                     │       by its "offload-spool-<name>" thread)
//!                                     │   once every sink is done with a record, the drain
//!                                     │    returns its box to the pool ◀── (no allocation
//!                                     │    on the caller, which takes records two ahead)
//! ```
//!
//! Modules depend one way, from the leaves up; nothing imports a module above it:
//!
//! | tier | module | owns |
//! |---|---|---|
//! | leaves | `level` | the [`LogLevel`] taxonomy and its mappings |
//! | | `ids` | [`TraceId`], [`SpanId`], [`ThreadInfo`], the per-thread random step that makes ids |
//! | | `traceparent` | W3C `traceparent`: parse and format |
//! | | `record` | [`Record`]s, their [`Fields`] (text in one buffer per record), the pool that recycles them and [`Shared`], [`DropReason`] — the only types both sides share |
//! | | `counters`, `clock`, `env`, `open_spans` | striped counters and the histogram; the caller's cheap monotonic ticks, wall-clock conversion, saturating deadlines; env reading rules; open-span ages in fixed rings |
//! | | `silent` | marks the crate's own threads, on which the layer records nothing |
//! | | `notice` | the crate's own lines on stderr: never a panic, and a thread of their own for those written where nothing may wait |
//! | | `fork` | counts `fork()`s, so that a pipeline knows it is in a child, where its threads are not |
//! | decisions | `sampling` | event rate, [`TracesSampler`]s, whitelist, adaptive mode; pure decisions over atomics |
//! | | `tail_sampling` | [`TailSampling`] (its criteria, text form and decision), its live settings, counters and [`TailSamplingStats`] |
//! | | `stats` | every counter of a pipeline and the [`Stats`] snapshot |
//! | | `pipeline::queue`, `pipeline::notify` | the `Intake` the layer pushes into (`ArrayQueue`, [`Backpressure`], counters, sampler, closed flag); waiting with a deadline (loom-checked) |
//! | hot side | `layer` | `impl Layer` (`mod.rs`), the callsite cache (`callsite.rs`), field capture (`capture.rs`), the sharded span store (`spans.rs`) and its id-to-slot map (`id_index.rs`), the per-thread stack of entered spans (`entered.rs`) |
//! | threads | `pipeline` | the drain thread, tail sampling's buffer (`pipeline/tail.rs`), one thread per sink, flush and shutdown |
//! | | `sink` | the [`Sink`](sink::Sink) trait and the sinks; a sink knows records and its own settings, nothing of the layer; the OTLP sink's spool (`sink/otlp/spool/`: segment files, and its `offload-spool-<name>` thread that replays them) |
//! | surface | `config`, `error`, `guard`, `builder` | the effective [`Config`]; [`BuildError`]; [`Guard`] and [`Handle`]; [`Builder`] and the `DEFAULT_*` constants |
//! | | `init` | [`init`], [`init_with`] and [`init_from`]: the environment's pipeline (or yours), the `RUST_LOG` filter, the `log` bridge, the global subscriber |
//! | | [`health`], [`metrics`], `admin`, [`propagation`] | health rules over a snapshot; the Prometheus formats; `/metrics` `/health` `/config`; W3C context in and out |
//!
//! A span's state (its ids and sampled flag, and for a recorded span the record being built)
//! lives in the layer's own sharded store, keyed by span id, and goes when the span closes;
//! unsampled spans keep their 24 bytes of ids there so that "not sampled" propagates. Nothing
//! else holds a span. One record is made per event and one per span, when it closes — never a
//! start/end pair. Records are boxes taken from a pool and returned to it, with their buffers,
//! once every sink is done with them (by the drain thread, in the order they were shared), so
//! the calling thread allocates nothing in steady state.
//!
//! # Sinks
//!
//! * [`sink::Console`]: one human-readable line per record, coloured on a terminal.
//! * [`sink::JsonFile`]: one JSON object per line, one write per batch, optional rotation by
//!   size or time. A line is whole or absent, even when the disk fills; a file deleted or
//!   moved away is followed by a new one. The schema is in its docs and in the README.
//! * [`sink::Channel`]: records to a receiver in the same process.
//! * `sink::Otlp` (feature `otlp`, on by default): spans and events to an OpenTelemetry
//!   collector over gRPC or HTTP, configured in code or from OTel's environment variables;
//!   with `Otlp::spool(dir)`, what the collector cannot take waits on disk (a budget, checksums,
//!   replayed oldest first, also by the next process) and is delivered when it is back.
//! * `sink::Async`: any `sink::AsyncSink` of yours, on a private runtime.
//!
//! Each sink has its own thread and bounded buffer: a stalled sink fills and counts its own
//! buffer, and the others keep flowing. A sink that panics is counted and disabled.
//!
//! # Back-pressure
//!
//! [`Backpressure::DropNewest`] (default) refuses a record at a full queue before building it;
//! [`Backpressure::DropOldest`] evicts the oldest; [`Backpressure::Block`] waits for room up to
//! a deadline, then drops. Critical records ([`LogLevel::Critical`]) always take the blocking
//! path. The queue is the buffer: the drain thread takes only what the sinks that are moving
//! have room for, so nothing is dropped at a sink while the queue has room; a sink full and
//! without progress for [`Builder::sink_stall_after`] stops holding the others back.
//!
//! # Sampling
//!
//! Decided before anything is captured, so a sampled-out event or an unsampled span allocates
//! nothing. Events are kept at [`Builder::sample_rate`]; prefixes given to
//! [`Builder::sample_always`] (matched against target and name, once per callsite; per record
//! for `log` records), critical events and, by default, errors are never sampled out. Spans
//! follow OpenTelemetry's [`TracesSampler`]s alone, with the SDK's trace-id-ratio algorithm,
//! so services agree. The decision is made once at the root and every local child inherits it,
//! so a trace is kept whole or not at all; an unsampled span keeps its ids, so
//! [`OffloadSpanExt::traceparent`] propagates "not sampled" (`-00`). A root span created with a
//! W3C `traceparent` field ([`TRACEPARENT_FIELD`]) joins the remote trace, and so does a span
//! given one later, by [`OffloadSpanExt::set_parent_traceparent`] or by recording the field, while it is
//! a local root with no child span and no event yet; the parent-based samplers follow the
//! remote sampled flag. Events inside an
//! unsampled trace carry its ids (sampled flag clear) and are kept by the event rate alone
//! unless [`Builder::events_follow_trace_sampling`] is set. An adaptive mode lowers the event
//! rate while the queue is nearly full. All of it
//! can be changed at run time through the [`Handle`] ([`Handle::set_sample_rate`],
//! [`Handle::set_traces_sampler`], [`Handle::reload_from_env`]):
//!
//! ```
//! use tracing_offload::{OffloadLayer, TracesSampler};
//!
//! let (_layer, guard) = OffloadLayer::builder()
//!     .sample_rate(0.5)
//!     .sample_always("security.")
//!     .traces_sampler(TracesSampler::ParentBasedTraceIdRatio(0.1))
//!     .build()?;
//! let handle = guard.handle();
//! handle.set_sample_rate(0.01)?; // e.g. during an incident's log storm
//! assert_eq!(handle.stats().sampling.unwrap().configured_rate, 0.01);
//! assert!(handle.set_sample_rate(7.0).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Tail sampling
//!
//! Head sampling decides at the root, before anything has happened, so at 1 % it keeps 1 % of
//! the failing requests too. [`Builder::tail_sampling`] decides later, on the drain thread,
//! once a **local trace** (a local root — a root span, or a span whose parent is in another
//! process — with its descendants in this process and the events inside them) is complete:
//!
//! ```
//! use std::time::Duration;
//! use tracing_offload::{OffloadLayer, TailSampling};
//!
//! let (_layer, guard) = OffloadLayer::builder()
//!     .tail_sampling(
//!         TailSampling::new()
//!             .keep_errors() // a span with otel.status_code = "error", or an ERROR event
//!             .keep_slower_than(Duration::from_millis(500)) // the local root's duration
//!             .keep_ratio(0.05) // of the rest, by trace id (the SDK's ratio algorithm)
//!             .decision_wait(Duration::from_secs(30)) // a root still open then: decided as is
//!             .max_buffered_spans(100_000), // the memory bound, in records
//!     )
//!     .build()?;
//! // The same from the environment: OFFLOAD_TAIL_SAMPLING=errors,slow:500ms,ratio:0.05
//! let stats = guard.handle().stats();
//! assert_eq!(stats.tail_sampling.sampled_out, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! * The records of a sampled local trace wait on the drain thread, keyed by their local root,
//!   until the local root's record arrives (a span closes after its children, and a span's
//!   events come before it, so it is the last); then the whole local trace goes to every sink,
//!   or none of it. The calling thread does nothing more than without tail sampling.
//! * Head sampling runs first: a trace the traces sampler dropped is never held. Events
//!   outside spans and in unsampled traces follow the event rules alone. The events the event
//!   sampler never samples out — whitelisted, critical, and `ERROR` unless
//!   [`Builder::keep_errors`] is off — are never tail-sampled out either: they are written at
//!   once (an error among them still marks its trace).
//! * A trace whose local root has not come after [`TailSampling::decision_wait`], or the
//!   oldest one when [`TailSampling::max_buffered_spans`] records are held, is decided as is:
//!   kept if it qualifies already (an error seen, its trace id in the ratio, open longer than
//!   the slow threshold), dropped otherwise; its later records follow the decision. Shutdown
//!   decides every held trace as is. Each such decision is counted with its
//!   [`ForcedDecision`] reason.
//! * Every record dropped is counted in [`TailSamplingStats::sampled_out`], part of
//!   [`Stats::sampled_out`], so `offered == enqueued + dropped + sampled_out` still holds. A
//!   [`Handle::flush`] waits for what is decided, not for traces whose local root is still
//!   open ([`Pending::held`] counts what the drain thread holds).
//! * [`Handle::set_tail_sampling`] and [`Handle::reload_from_env`] change it at run time;
//!   [`Handle::health`] shows a `tail_sampling` component, and the [`metrics`] its counts.
//! * A process sees only its part of a distributed trace. The ratio is by trace id with the
//!   OpenTelemetry SDK's algorithm, so services with the same ratio keep the same traces; an
//!   error or a slow call is seen only by the services it happened in (the README compares
//!   this with the Collector's `tail_sampling` processor).
//!
//! # Shutdown
//!
//! [`Guard::shutdown`] stops accepting records, flushes (tail sampling decides every trace it
//! holds, as is) and joins within a deadline, and says what it abandoned. Dropping the guard does the same with
//! [`DEFAULT_DROP_TIMEOUT`]. [`Handle::flush`] waits for everything offered so far.
//! [`std::process::exit`] drops nothing: flush before it, and install
//! [`Handle::install_panic_hook`] so that a panic that ends the process flushes first (see
//! [`Guard`]).
//!
//! # Self-observability
//!
//! [`Handle::render_prometheus`] renders the pipeline's own [`metrics`] (records by
//! outcome and drop reason, queue depth, per-sink outcomes and export latency, drain
//! heartbeat) in the Prometheus text format; [`Handle::metrics_collector`] joins them to an
//! application's `prometheus-client` registry. [`Handle::health`] says whether telemetry is
//! flowing (rules in [`health`]), and [`Handle::config`] shows every setting and where it came
//! from. With the `admin` feature, `Builder::admin_addr` (or `OFFLOAD_ADMIN_ADDR`) serves
//! all three over HTTP on a crate-owned thread: `GET /metrics`, `GET /health` (503 when
//! unhealthy) and `GET /config`.
//!
//! # Feature flags
//!
//! | feature | default | adds |
//! |---|---|---|
//! | `otlp` | yes | `sink::Otlp` (its spool included), `sink::Async`/`AsyncSink`, the `http::HeaderMap` propagation helpers (`opentelemetry`, `opentelemetry-otlp`, `opentelemetry-proto`, `prost`, `opentelemetry-resource-detectors`, `reqwest`, `tonic`, `tokio`; the spool: `crc32fast`, `flate2`, `fs4`) |
//! | `tls` | yes | `https://` OTLP endpoints: rustls (`ring`) with the platform's roots, CA files and client certificates, for gRPC and HTTP (implies `otlp`; `rustls`, `rustls-native-certs`) |
//! | `admin` | no | the HTTP endpoint: `Builder::admin_addr`, `OFFLOAD_ADMIN_ADDR` (on `std::net`, no dependency) |
//! | `axum` | no | `admin::router`, the same routes as an `axum::Router` (implies `admin`) |
//!
//! # Environment variables
//!
//! Read by [`init`], [`Builder::from_env`] and [`Builder::try_from_env`] (`RUST_LOG` by
//! [`init`], [`init_with`] and [`init_from`] only). Empty means unset; an invalid value — unparsable, outside
//! its range, or not UTF-8 — is ignored with a warning naming the default used (stderr and
//! [`Config::warnings`]); `try_from_env` returns an error instead. A value set in code wins
//! over the environment.
//!
//! | variable | values | default | meaning |
//! |---|---|---|---|
//! | `OFFLOAD_CAPACITY` | 1 – 16777216 ([`MAX_CAPACITY`]) | 65536 | records the queue holds |
//! | `OFFLOAD_BACKPRESSURE` | `drop_oldest`, `drop_newest`, `block` | `drop_newest` | policy when full |
//! | `OFFLOAD_BLOCK_TIMEOUT_MS` | 0 – 60000 ([`MAX_ENV_BLOCK_TIMEOUT`]) | 100 | how long `block` waits (with `OFFLOAD_BACKPRESSURE=block`; alone, a warning) |
//! | `OTEL_SPAN_EVENT_COUNT_LIMIT` | 0 – 65536 ([`MAX_SPAN_EVENT_LIMIT`]) | 128 | events kept per span |
//! | `OTEL_SDK_DISABLED` | `true`, `false` | `false` | `true` records nothing and starts no sink (no file is created) |
//! | `OTEL_TRACES_SAMPLER` | OTel sampler names | `parentbased_always_on` | which spans are recorded |
//! | `OTEL_TRACES_SAMPLER_ARG` | 0.0 – 1.0 | 1.0 | ratio of the ratio samplers |
//! | `OFFLOAD_SAMPLE_RATE` | 0.0 – 1.0 | 1.0 | fraction of events kept |
//! | `OFFLOAD_SAMPLE_ALWAYS` | comma-separated prefixes | none | events never sampled out |
//! | `OFFLOAD_SAMPLE_ADAPTIVE` | `true`, `false` | `false` | adaptive event rate |
//! | `OFFLOAD_TAIL_SAMPLING` | `off`, or comma-separated `errors`, `slow:<duration>`, `ratio:<0.0–1.0>`, `wait:<duration>`, `max_buffered_spans:<1–16777216>` (durations such as `500ms`, `2s`) | `off` | [tail sampling](#tail-sampling) |
//! | `OFFLOAD_ADMIN_ADDR` | `host:port` (an IP address or a host name; port 0 for any free port) | off | serve `/metrics`, `/health`, `/config` there (feature `admin`) |
//! | `RUST_LOG` | `EnvFilter` directives, e.g. `warn,my_app=debug` | `info` | what [`init`] records (the whole subscriber, `log` records included) |
//!
//! # Supported Rust versions
//!
//! The minimum supported Rust version is 1.86 (what the OpenTelemetry and criterion
//! dependencies need); it is raised only in a minor release, with a CHANGELOG entry.

#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_code)]

#[cfg(feature = "admin")]
#[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
pub mod admin;
mod builder;
mod clock;
mod config;
mod counters;
mod env;
mod error;
mod fork;
mod guard;
pub mod health;
mod ids;
mod init;
mod layer;
mod level;
pub mod metrics;
mod notice;
mod open_spans;
mod pipeline;
pub mod propagation;
mod record;
mod sampling;
mod silent;
pub mod sink;
mod stats;
mod tail_sampling;
mod traceparent;

pub use builder::{
    Builder, DEFAULT_BACKPRESSURE, DEFAULT_BATCH_SIZE, DEFAULT_BLOCK_TIMEOUT, DEFAULT_CAPACITY,
    DEFAULT_CRITICAL_BLOCK_TIMEOUT, DEFAULT_DROP_TIMEOUT, DEFAULT_FLUSH_INTERVAL,
    DEFAULT_MAX_FIELD_LEN, DEFAULT_SINK_BUFFER_CAPACITY, DEFAULT_SINK_STALL_AFTER,
    DEFAULT_SPAN_EVENT_LIMIT, DEFAULT_SPAN_TIMINGS, MAX_BATCH_SIZE, MAX_CAPACITY,
    MAX_ENV_BLOCK_TIMEOUT, MAX_SINK_BUFFER_CAPACITY, MAX_SPAN_EVENT_LIMIT,
};
pub use config::{Config, Setting, Source};
pub use env::{EnvWarning, InvalidEnv};
pub use error::BuildError;
pub use guard::{Guard, Handle};
pub use ids::{SpanContext, SpanId, ThreadInfo, TraceId};
pub use init::{init, init_from, init_with, InitSubscriber};
pub use layer::OffloadLayer;
pub use level::{LogLevel, ParseLevelError};
pub use pipeline::queue::{Backpressure, ParseBackpressureError};
pub use pipeline::{FlushError, Pending, ShutdownReport};
pub use propagation::{OffloadSpanExt, SetParentError};
pub use record::{
    rfc3339, DropNotice, DropReason, ErrorValue, EventRecord, FieldValue, Fields, Record, Shared,
    SpanRecord, Text, UndeliveredReason,
};
pub use sampling::{
    ParseSamplerError, SamplingError, SamplingStats, TracesSampler, ADAPTIVE_FACTORS,
    ADAPTIVE_RESTORE_BELOW, ADAPTIVE_STEP_DOWN_AT, DEFAULT_SAMPLE_RATE, DEFAULT_TRACES_SAMPLER,
};
pub use stats::{LatencyHistogram, SinkStats, SpoolStats, Stats, LATENCY_BUCKETS_SECONDS};
pub use tail_sampling::{
    ForcedDecision, ParseTailSamplingError, TailSampling, TailSamplingStats,
    DEFAULT_TAIL_DECISION_WAIT, DEFAULT_TAIL_MAX_BUFFERED_SPANS, MAX_TAIL_BUFFERED_SPANS,
};
pub use traceparent::TRACEPARENT_FIELD;

/// The README's code blocks, compiled (and the runnable ones run) as doctests so that they
/// cannot drift from the API. Its examples use the `otlp` and `admin` features.
#[cfg(all(doctest, feature = "otlp", feature = "admin"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
