//! The running sink: the exporters it builds at start (endpoint checks, TLS, retry policy,
//! attempt counting), and each export.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::logs::LoggerProvider as _;
use opentelemetry::InstrumentationScope;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_proto::tonic::collector::logs::v1::{
    logs_service_client::LogsServiceClient, ExportLogsServiceRequest,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    trace_service_client::TraceServiceClient, ExportTraceServiceRequest,
};
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::logs::tonic::group_logs_by_resource_and_scope;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter as _, SdkLogRecord, SdkLoggerProvider};
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use prost::Message as _;

use super::endpoint::{self, Scheme};
use super::retry::{self, Attempts, CountingClient, HttpOutcome};
use super::spool::{self, Handoff, IfUndelivered, Kind, LiveExport, Spool};
use super::tls::{LoadedTls, Tls, TlsReads};
use super::{convert, EventsAsLogs, Otlp, Protocol, INITIAL_BACKOFF, MAX_BACKOFF};
use crate::env::{EnvWarning, REDACTED};
use crate::record::{EventRecord, Record};
use crate::sink::runtime::BackgroundRuntime;
use crate::sink::{Sink, SinkError};
use crate::stats::SpoolStats;

/// What a started sink holds: how it runs exports, its exporters and the logger that makes log
/// records.
pub(super) struct Running {
    engine: Engine,
    exporters: Exporters,
    targets: Targets,
    logger: opentelemetry_sdk::logs::SdkLogger,
    _provider: SdkLoggerProvider,
    /// The spans' scope: this crate, the library that made them.
    scope: InstrumentationScope,
}

/// The signals' exporters.
struct Exporters {
    spans: Option<SpanExporter>,
    logs: Option<LogExporter>,
    /// The log records' scope: no name or version of its own, so that the exporter names it
    /// after each record's target (as opentelemetry-appender-tracing does).
    log_scope: Arc<InstrumentationScope>,
    /// Drop markers to send again: they were in a live export that the sink thread handed off
    /// (its request spooled without them) and that then failed. They go at the head of the
    /// next logs request that is sent, never to the spool.
    resend: Arc<Mutex<Vec<SdkLogRecord>>>,
    /// When they were last sent in a request of their own (see `Otlp::send_queued_markers`).
    resend_tried: Option<Instant>,
}

/// How exports run.
enum Engine {
    /// On the sink's own runtime, driven by the sink thread, which waits for each.
    Direct(BackgroundRuntime),
    /// On the spool's runtime, the sink thread waiting for each only so long; with the resource
    /// that spooled requests are encoded with.
    Spool(spool::Engine, ResourceAttributesWithSchema),
}

/// One signal's exporter and the count of its request attempts.
struct Exporter<E> {
    inner: Arc<E>,
    attempts: Arc<Attempts>,
    /// Set when a request of it ran out of time on its connection (gRPC, see
    /// [`Otlp::reconnect`]); the live exports of a sink with a spool set it from the spool's
    /// runtime.
    ran_out: Arc<std::sync::atomic::AtomicBool>,
}

type SpanExporter = Exporter<opentelemetry_otlp::SpanExporter>;
type LogExporter = Exporter<opentelemetry_otlp::LogExporter>;

/// Where one signal goes and how: its checked endpoint and TLS files.
struct Target {
    url: String,
    tls: Option<LoadedTls>,
    /// The gRPC endpoint made from it, TLS connector included (the platform's roots loaded
    /// once): every channel to this target after the first is a clone's connection.
    grpc: std::sync::OnceLock<tonic::transport::Endpoint>,
}

/// Each signal's target as the sink started with it, TLS files read (for a new channel).
#[derive(Default)]
struct Targets {
    traces: Option<Target>,
    logs: Option<Target>,
}

/// Which signal a target is for.
#[derive(Clone, Copy)]
enum Signal {
    Traces,
    Logs,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Logs => "logs",
        }
    }
}

// === impl Otlp ===

impl Otlp {
    /// The signal's endpoint, checked, and its TLS files, read: everything that can be wrong
    /// in the configuration fails here, at build time.
    fn target(&self, signal: Signal) -> Result<Target, String> {
        let (specific, path, tls) = match signal {
            Signal::Traces => (&self.traces_endpoint, "v1/traces", &self.traces_tls),
            Signal::Logs => (&self.logs_endpoint, "v1/logs", &self.logs_tls),
        };
        let url = self.signal_endpoint(specific, path);
        let what = format!("the OTLP {} endpoint", signal.name());
        let shown = endpoint::redact(&url);
        let files = tls.over(&self.tls);
        match endpoint::validate(&url, &what)? {
            Scheme::Http => {
                // Files set for this signal are a mistake on a plain-text endpoint; the general
                // ones are only when no endpoint of the sink uses them (else they are another
                // signal's, as the OTel variables apply to every signal).
                if !tls.is_empty() {
                    return Err(format!(
                        "TLS files are set for {what} (Otlp::{signal}_tls or \
                         OTEL_EXPORTER_OTLP_{upper}_CERTIFICATE, …_CLIENT_CERTIFICATE, \
                         …_CLIENT_KEY), but it is {shown:?}: use https:// to connect over TLS, \
                         or remove them",
                        signal = signal.name(),
                        upper = signal.name().to_uppercase(),
                    ));
                }
                if !self.tls.is_empty() && !self.any_https() {
                    return Err(format!(
                        "TLS files are set (Otlp::tls or OTEL_EXPORTER_OTLP_CERTIFICATE, \
                         …_CLIENT_CERTIFICATE, …_CLIENT_KEY), but {what} is {shown:?} and no \
                         endpoint uses https://: use https:// to connect over TLS, or remove \
                         the TLS files"
                    ));
                }
                Ok(Target {
                    url,
                    tls: None,
                    grpc: std::sync::OnceLock::new(),
                })
            }
            Scheme::Https if cfg!(not(feature = "tls")) => Err(format!(
                "{what} {shown:?} uses TLS, but tracing-offload was built without its `tls` \
                 feature (on by default): enable it, or use an http:// endpoint"
            )),
            Scheme::Https => Ok(Target {
                url,
                tls: Some(files.load(&what, &self.tls_reads)?),
                grpc: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Whether an endpoint of a signal this sink exports is `https://`.
    fn any_https(&self) -> bool {
        let https = |specific: &Option<String>, path: &str| {
            let url = self.signal_endpoint(specific, path);
            url.get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        };
        (self.traces && https(&self.traces_endpoint, "v1/traces"))
            || (self.logs != EventsAsLogs::None && https(&self.logs_endpoint, "v1/logs"))
    }

    fn build_exporters(&self) -> Result<(BuiltExporters, Targets), String> {
        let mut targets = Targets::default();
        let mut spans = None;
        let mut logs = None;
        if self.traces {
            let target = self.target(Signal::Traces)?;
            spans = Some(self.span_exporter(&target)?);
            targets.traces = Some(target);
        }
        if self.logs != EventsAsLogs::None {
            let target = self.target(Signal::Logs)?;
            logs = Some(self.log_exporter(&target)?);
            targets.logs = Some(target);
        }
        Ok(((spans, logs), targets))
    }

    /// The spans' exporter, to `target`, with its own attempt counter (inside the sink's
    /// runtime: the gRPC channel's tasks start there).
    fn span_exporter(
        &self,
        target: &Target,
    ) -> Result<Built<opentelemetry_otlp::SpanExporter>, String> {
        let attempts = Arc::new(Attempts::default());
        let builder = opentelemetry_otlp::SpanExporter::builder();
        let inner = match self.protocol {
            Protocol::Grpc => self.tonic(builder.with_tonic(), target, &attempts)?.build(),
            _ => self.http(builder.with_http(), target, &attempts)?.build(),
        };
        Ok(Built {
            inner: inner.map_err(|e| e.to_string())?,
            attempts,
        })
    }

    /// The log records' exporter (as [`span_exporter`](Self::span_exporter)).
    fn log_exporter(
        &self,
        target: &Target,
    ) -> Result<Built<opentelemetry_otlp::LogExporter>, String> {
        let attempts = Arc::new(Attempts::default());
        let builder = opentelemetry_otlp::LogExporter::builder();
        let inner = match self.protocol {
            Protocol::Grpc => self.tonic(builder.with_tonic(), target, &attempts)?.build(),
            _ => self.http(builder.with_http(), target, &attempts)?.build(),
        };
        Ok(Built {
            inner: inner.map_err(|e| e.to_string())?,
            attempts,
        })
    }

    /// Over gRPC, a signal whose request ran out of time gets a new exporter on a new channel
    /// (see [`retry::grpc_timed_out`]): the channel keeps its one HTTP/2 connection, and on a
    /// connection to a server that hung with it open every later request would time out too.
    /// The old exporter's requests still under way finish on the old channel. The channel is a
    /// clone of the target's endpoint (TLS set up once, at start).
    fn reconnect(&self, run: &mut Running) {
        let take = |flag: Option<&Arc<std::sync::atomic::AtomicBool>>| {
            flag.is_some_and(|f| f.swap(false, Relaxed))
        };
        let spans = take(run.exporters.spans.as_ref().map(|e| &e.ran_out));
        let logs = take(run.exporters.logs.as_ref().map(|e| &e.ran_out));
        if self.protocol != Protocol::Grpc || !(spans || logs) {
            return;
        }
        // The channel's tasks start on the runtime it is made in.
        let rebuild = || {
            let resource = self.resource();
            let spans = match (spans, &run.targets.traces) {
                (true, Some(t)) => self.span_exporter(t).ok(),
                _ => None,
            };
            let logs = match (logs, &run.targets.logs) {
                (true, Some(t)) => self.log_exporter(t).ok(),
                _ => None,
            };
            (
                spans.map(|b| b.with_resource(&resource)),
                logs.map(|b| b.with_resource(&resource)),
            )
        };
        let rebuilt = match &run.engine {
            Engine::Direct(rt) => rt.enter(rebuild).ok(),
            Engine::Spool(engine, _) => {
                let _in_ours = engine.runtime.enter();
                Some(rebuild())
            }
        };
        // A rebuild that fails (it only builds what worked at start) keeps the old exporter.
        if let Some((spans, logs)) = rebuilt {
            if let Some(e) = spans {
                run.exporters.spans = Some(e);
            }
            if let Some(e) = logs {
                run.exporters.logs = Some(e);
            }
        }
    }

    /// A gRPC exporter builder for `target`: timeout, metadata, compression, TLS, the retry
    /// policy and an interceptor that counts attempts (it runs once per attempt).
    fn tonic<B: WithExportConfig + WithTonicConfig>(
        &self,
        builder: B,
        target: &Target,
        attempts: &Arc<Attempts>,
    ) -> Result<B, String> {
        let counter = Arc::clone(attempts);
        let mut b = builder
            .with_channel(self.channel(target)?)
            .with_timeout(self.timeout)
            .with_metadata(metadata(&self.headers)?)
            .with_retry_policy(retry::policy(
                self.max_retries,
                INITIAL_BACKOFF,
                MAX_BACKOFF,
            ))
            .with_interceptor(move |request: tonic::Request<()>| {
                counter.attempt();
                Ok::<_, tonic::Status>(request)
            });
        if self.gzip {
            b = b.with_compression(opentelemetry_otlp::Compression::Gzip);
        }
        Ok(b)
    }

    /// An HTTP exporter builder for `target`, on our own reqwest client (TLS, attempt
    /// counting).
    fn http<B: WithExportConfig + WithHttpConfig>(
        &self,
        builder: B,
        target: &Target,
        attempts: &Arc<Attempts>,
    ) -> Result<B, String> {
        let protocol = if self.protocol == Protocol::HttpJson {
            opentelemetry_otlp::Protocol::HttpJson
        } else {
            opentelemetry_otlp::Protocol::HttpBinary
        };
        // The same check as gRPC's: opentelemetry-otlp's HTTP builder would drop a header that
        // HTTP cannot carry without a word, and every export would go without it.
        metadata(&self.headers)?;
        let headers: HashMap<String, String> = self.headers.iter().cloned().collect();
        let client = reqwest_client(self.timeout, target.tls.as_ref())?;
        let mut b = builder
            .with_protocol(protocol)
            .with_endpoint(target.url.clone())
            .with_timeout(self.timeout)
            .with_headers(headers)
            .with_retry_policy(retry::policy(
                self.max_retries,
                INITIAL_BACKOFF,
                MAX_BACKOFF,
            ))
            .with_http_client(CountingClient::new(client, Arc::clone(attempts)));
        if self.gzip {
            b = b.with_compression(opentelemetry_otlp::Compression::Gzip);
        }
        Ok(b)
    }

    fn wants_log(&self, e: &EventRecord) -> bool {
        match self.logs {
            EventsAsLogs::All => true,
            // An event in a trace sampled out has no span record to travel on: a log record
            // (it was counted exported and sent nowhere: adversary pass 60).
            EventsAsLogs::OutsideSpans => e.context.is_none_or(|c| !c.sampled),
            EventsAsLogs::None => false,
        }
    }

    /// The replay's clients: the same endpoints, TLS, headers, timeout and compression as the
    /// exporters. Built inside the spool's runtime (the gRPC channels connect lazily on it).
    fn build_senders(&self) -> Result<spool::Senders, String> {
        let traces = match self.traces {
            true => Some(self.target(Signal::Traces)?),
            false => None,
        };
        let logs = match self.logs != EventsAsLogs::None {
            true => Some(self.target(Signal::Logs)?),
            false => None,
        };
        if self.protocol == Protocol::Grpc {
            let mut senders = spool::GrpcSenders {
                traces: None,
                logs: None,
                metadata: metadata(&self.headers)?,
                timeout: self.timeout,
            };
            let gzip = self.gzip;
            if let Some(t) = &traces {
                senders.traces = Some(spool::Replayer::new(self.grpc_endpoint(t)?, move |c| {
                    let client = TraceServiceClient::new(c);
                    match gzip {
                        true => client.send_compressed(tonic::codec::CompressionEncoding::Gzip),
                        false => client,
                    }
                }));
            }
            if let Some(t) = &logs {
                senders.logs = Some(spool::Replayer::new(self.grpc_endpoint(t)?, move |c| {
                    let client = LogsServiceClient::new(c);
                    match gzip {
                        true => client.send_compressed(tonic::codec::CompressionEncoding::Gzip),
                        false => client,
                    }
                }));
            }
            return Ok(spool::Senders::Grpc(Box::new(senders)));
        }
        let headers = header_map(&self.headers)?;
        let client = |t: Target| -> Result<(reqwest::Client, String), String> {
            Ok((reqwest_client(self.timeout, t.tls.as_ref())?, t.url))
        };
        Ok(spool::Senders::Http(spool::HttpSenders {
            traces: traces.map(client).transpose()?,
            logs: logs.map(client).transpose()?,
            headers,
            json: self.protocol == Protocol::HttpJson,
            gzip: self.gzip,
        }))
    }

    /// A lazily connected gRPC channel to `target`, for the exporters and the replay. Each
    /// step of a connection is bounded by the request timeout: the TCP connection and the TLS
    /// handshake (tonic bounds neither by default, and a request waits for its connection
    /// outside its own timeout: a server that accepted and never answered the handshake held
    /// every export until the batch's deadline, and the channel never tried again).
    fn channel(&self, target: &Target) -> Result<tonic::transport::Channel, String> {
        Ok(self.grpc_endpoint(target)?.connect_lazy())
    }

    /// The target's gRPC endpoint (see [`Target::grpc`]), made on first use.
    fn grpc_endpoint(&self, target: &Target) -> Result<tonic::transport::Endpoint, String> {
        if let Some(endpoint) = target.grpc.get() {
            return Ok(endpoint.clone());
        }
        let endpoint = tonic::transport::Endpoint::from_shared(target.url.clone())
            .map_err(|e| {
                let shown = endpoint::redact(&target.url);
                format!(
                    "invalid endpoint {shown:?}: {}",
                    endpoint::redact_in(&e.to_string())
                )
            })?
            .timeout(self.timeout)
            .connect_timeout(self.timeout);
        #[cfg(feature = "tls")]
        let endpoint = match &target.tls {
            Some(tls) => endpoint
                .tls_config(tls.tonic_config(self.timeout)?)
                .map_err(|e| format!("TLS set-up failed: {e}"))?,
            None => endpoint,
        };
        let _ = target.grpc.set(endpoint.clone());
        Ok(endpoint)
    }

    /// The records of a batch as OTel spans and log records (with whether each log record is
    /// data, not a drop marker).
    ///
    /// Also the riders of each span (see [`Riders`](super::riders::Riders)): events sent only
    /// on their span's record, taken by it here, in the order of the spans.
    fn convert(&mut self, run: &Running, batch: &[Record]) -> (Spans, Logs) {
        let mut spans = Vec::new();
        let mut riders = Vec::new();
        let mut logs = Logs::default();
        let spans_sent = run.exporters.spans.is_some();
        for (i, record) in batch.iter().enumerate() {
            crate::record::prefetch_ahead(batch, i);
            match record {
                Record::Span(s) if spans_sent => {
                    spans.push(convert::span_data(s, &run.scope));
                    riders.push(self.riders.arrived(s.span_id(), s.events().len()));
                }
                Record::Event(e) if self.wants_log(e) => {
                    logs.records.push(convert::log_record(&run.logger, e));
                    logs.data.push(true);
                }
                // Sent on its span's record, if that comes (a sampled span's, with the traces
                // exporter on; otherwise this configuration sends it nowhere).
                Record::Event(e) if spans_sent => {
                    if let Some(c) = e.context.filter(|c| c.sampled) {
                        self.riders.add(c.span_id);
                    }
                }
                Record::Dropped(d) if run.exporters.logs.is_some() => {
                    logs.records
                        .push(convert::drop_marker(&run.logger, &d.to_string(), d.at));
                    logs.data.push(false);
                }
                _ => {}
            }
        }
        (
            Spans {
                data: spans,
                riders,
            },
            logs,
        )
    }

    /// Exports on the sink thread, waiting for each request (no spool). The spans' requests
    /// and the log records' go at once, each signal's one after another: a collector that
    /// never answers costs the batch one request timeout, not one per signal.
    fn export_direct(
        &self,
        rt: &BackgroundRuntime,
        run: &Exporters,
        spans: Spans,
        logs: Logs,
        deadline: Instant,
    ) -> Result<(), SinkError> {
        let Spans {
            data: spans,
            riders,
        } = spans;
        let span_chunks: Vec<Vec<SpanData>> = match run.spans.as_ref() {
            Some(_) => {
                let mut spans = spans.into_iter().peekable();
                std::iter::from_fn(|| {
                    spans.peek()?;
                    Some(spans.by_ref().take(self.max_batch).collect())
                })
                .collect()
            }
            None => Vec::new(),
        };
        let log_chunks: Vec<(&[SdkLogRecord], &[bool])> = match run.logs.as_ref() {
            Some(_) => logs
                .records
                .chunks(self.max_batch)
                .zip(logs.data.chunks(self.max_batch))
                .collect(),
            None => Vec::new(),
        };
        let span_losses: Vec<ChunkLoss> = span_chunks
            .iter()
            .zip(riders.chunks(self.max_batch.max(1)))
            .map(|(c, riders)| ChunkLoss::spans(c.len(), riders.iter().sum()))
            .collect();
        let log_losses: Vec<ChunkLoss> = log_chunks
            .iter()
            .map(|(_, data)| ChunkLoss::logs(data))
            .collect();
        let span_runs = SignalRuns::default();
        let log_runs = SignalRuns::default();
        let spans_part = async {
            if let Some(exporter) = run.spans.as_ref() {
                for chunk in span_chunks {
                    span_runs.start(&exporter.attempts);
                    let result = exporter.inner.export(chunk).await;
                    span_runs.finish(&exporter.attempts, result);
                }
            }
        };
        let logs_part = async {
            if let Some(exporter) = run.logs.as_ref() {
                for (chunk, _) in &log_chunks {
                    let pairs: Vec<(&SdkLogRecord, &InstrumentationScope)> =
                        chunk.iter().map(|r| (r, &*run.log_scope)).collect();
                    log_runs.start(&exporter.attempts);
                    let result = exporter.inner.export(LogBatch::new(&pairs)).await;
                    log_runs.finish(&exporter.attempts, result);
                }
            }
        };
        let timed_out = rt
            .run(deadline, async { tokio::join!(spans_part, logs_part) })
            .is_err();
        let mut retries = 0;
        let mut failures = Failures::default();
        for (what, runs, exporter, losses) in [
            (
                "spans",
                span_runs,
                run.spans.as_ref().map(|e| (&e.attempts, &e.ran_out)),
                span_losses,
            ),
            (
                "logs",
                log_runs,
                run.logs.as_ref().map(|e| (&e.attempts, &e.ran_out)),
                log_losses,
            ),
        ] {
            let Some((attempts, ran_out_flag)) = exporter else {
                continue;
            };
            let (done, in_flight) = runs.into_parts(attempts);
            let mut losses = losses.into_iter();
            let mut ran_out = false;
            for ((tried, result), lost) in done.into_iter().zip(losses.by_ref()) {
                retries += u64::saturating_sub(tried, 1);
                if let Err(message) = result {
                    ran_out |= retry::grpc_timed_out(&message);
                    let error = export_failure(self.protocol, what, attempts, tried, message);
                    failures.add(error, lost);
                }
            }
            // The batch's deadline passed first: the request under way and those not sent.
            if timed_out {
                ran_out |= in_flight.is_some();
                retries += u64::saturating_sub(in_flight.unwrap_or(0), 1);
                for lost in losses {
                    failures.add(self.batch_timed_out(what), lost);
                }
            }
            if ran_out {
                ran_out_flag.store(true, Relaxed);
            }
        }
        self.retries.fetch_add(retries, Relaxed);
        self.riders.lost(failures.riders);
        failures.into_result()
    }

    /// The error of a request of `what` ("spans", "logs") that the batch's deadline cut (the
    /// export timeout, which bounds a batch; the request timeout bounds each request).
    fn batch_timed_out(&self, what: &str) -> SinkError {
        SinkError::Retryable(format!(
            "OTLP {what} export did not finish within the batch's export timeout ({:?})",
            self.export_timeout
        ))
    }

    /// Exports with a spool: each request live for at most `spool_after`, else spooled. Each
    /// signal's requests go in order; the first request of each signal starts before the
    /// sink thread waits for either, so that a collector that answers neither costs the batch
    /// one `spool_after`, not one per signal.
    fn export_spooled(
        &self,
        engine: &mut spool::Engine,
        resource: &ResourceAttributesWithSchema,
        run: &Exporters,
        spans: Spans,
        logs: Logs,
        deadline: Instant,
    ) -> Result<(), SinkError> {
        let Spans {
            data: spans,
            riders,
        } = spans;
        let ctx_for = |exporter| ChunkCtx {
            exporter,
            resource,
            log_scope: &run.log_scope,
            resend: &run.resend,
        };
        let mut span_chunks: Vec<(Chunk, ChunkLoss)> = Vec::new();
        if run.spans.is_some() {
            let mut spans = spans.into_iter().peekable();
            let mut riders = riders.iter();
            while spans.peek().is_some() {
                let chunk: Vec<SpanData> = spans.by_ref().take(self.max_batch).collect();
                let lost = ChunkLoss::spans(chunk.len(), riders.by_ref().take(chunk.len()).sum());
                let riders = lost.riders;
                span_chunks.push((
                    Chunk::Spans {
                        data: chunk,
                        riders,
                    },
                    lost,
                ));
            }
        }
        let mut log_chunks: Vec<(Chunk, ChunkLoss)> = Vec::new();
        if run.logs.is_some() {
            // Markers to send again first, then the batch's records.
            let resent = std::mem::take(&mut *lock(&run.resend));
            let kinds: Vec<Rec> = std::iter::repeat_n(Rec::Resent, resent.len())
                .chain(
                    logs.data
                        .iter()
                        .map(|&d| if d { Rec::Data } else { Rec::Marker }),
                )
                .collect();
            let mut records = resent.into_iter().chain(logs.records);
            for kinds in kinds.chunks(self.max_batch) {
                let flags: Vec<bool> = kinds.iter().map(|k| *k == Rec::Data).collect();
                let chunk = Chunk::Logs {
                    records: Arc::new(records.by_ref().take(kinds.len()).collect()),
                    data: flags.iter().filter(|d| **d).count() as u64,
                    kinds: kinds.to_vec(),
                };
                log_chunks.push((chunk, ChunkLoss::logs(&flags)));
            }
        }
        let mut failures = Failures::default();
        let signals = [
            (
                run.spans.as_ref().map(LiveExporter::Spans),
                span_chunks.into_iter(),
            ),
            (
                run.logs.as_ref().map(LiveExporter::Logs),
                log_chunks.into_iter(),
            ),
        ];
        // Each signal's first request starts now; the rest follow it in order.
        let mut lanes = Vec::with_capacity(signals.len());
        for (exporter, mut chunks) in signals {
            let Some(exporter) = exporter else { continue };
            let ctx = ctx_for(exporter);
            let first = chunks
                .next()
                .map(|(chunk, lost)| (self.start_chunk(engine, chunk, &ctx, deadline), lost));
            lanes.push((ctx, first, chunks));
        }
        for (ctx, first, rest) in lanes {
            let first = first
                .map(|(started, lost)| (self.finish_chunk(engine, started, &ctx, deadline), lost));
            let rest = rest.map(|(chunk, lost)| {
                let started = self.start_chunk(engine, chunk, &ctx, deadline);
                (self.finish_chunk(engine, started, &ctx, deadline), lost)
            });
            for (result, lost) in first.into_iter().chain(rest) {
                if let Err(e) = result {
                    failures.add(e, lost);
                }
            }
        }
        self.riders.lost(failures.riders);
        failures.into_result()
    }

    /// Starts one request with a spool: straight to the spool while the collector is
    /// unreachable or the last live export of its signal still runs; else live, to be waited
    /// for ([`finish_chunk`](Self::finish_chunk)) at most `spool_after` from now.
    fn start_chunk(
        &self,
        engine: &mut spool::Engine,
        chunk: Chunk,
        ctx: &ChunkCtx<'_>,
        deadline: Instant,
    ) -> StartedChunk {
        let kind = chunk.kind();
        if engine.spool.straight_to_spool(kind) || engine.live_running(kind) {
            return StartedChunk::Done(
                match chunk.encode_for_spool(ctx, &self.markers_deferred, ctx.resend) {
                    Some(request) => spool_request(&engine.spool, &request, None),
                    None => Ok(()),
                },
            );
        }
        let live = LiveExport::new(kind);
        let started = Instant::now();
        engine.live[kind.index()] = Some(Arc::clone(&live));
        engine
            .runtime
            .spawn(self.live_task(&chunk, ctx, &live, &engine.spool));
        let wait_until = deadline.min(crate::clock::deadline_after(self.spool_after));
        StartedChunk::Live {
            chunk,
            live,
            started,
            wait_until,
        }
    }

    /// Waits for a request [`start_chunk`](Self::start_chunk) sent live, until its
    /// `spool_after` has passed; then spools it, or, if the spool fails, waits for it until
    /// the batch's deadline.
    fn finish_chunk(
        &self,
        engine: &spool::Engine,
        started: StartedChunk,
        ctx: &ChunkCtx<'_>,
        deadline: Instant,
    ) -> Result<(), SinkError> {
        let (chunk, live, started, wait_until) = match started {
            StartedChunk::Done(result) => return result,
            StartedChunk::Live {
                chunk,
                live,
                started,
                wait_until,
            } => (chunk, live, started, wait_until),
        };
        let kind = chunk.kind();
        let resend = &ctx.resend;
        if let Some(result) = live.wait(wait_until) {
            return after_live(&engine.spool, kind, result, || {
                chunk.encode_for_spool(ctx, &self.markers_deferred, resend)
            });
        }
        // The live export goes on with the markers; the spooled copy holds the data alone,
        // and the markers are sent again if that export fails (never spooled, where the
        // budget could evict them). Had they gone back to the sink thread's next marker, a
        // live export that succeeded after all would have reported them twice.
        let Split { data, own, resent } = chunk.split_markers();
        let markers: Vec<SdkLogRecord> = own.iter().chain(&resent).cloned().collect();
        let request = data.map(|data| data.encode(ctx));
        let if_undelivered: Option<IfUndelivered> = (!markers.is_empty()).then(|| {
            let resend = Arc::clone(resend);
            Box::new(move || lock(&resend).extend(markers)) as IfUndelivered
        });
        let spool = &engine.spool;
        let spool_it = request
            .as_ref()
            .map(|r| || spool.append(r.kind, r.records, r.riders, &r.bytes, true));
        match live.hand_off(spool, started, spool_it, if_undelivered) {
            Handoff::Spooled => Ok(()),
            Handoff::Finished(result) => after_live(spool, kind, result, || {
                undelivered(own, resent, &self.markers_deferred, resend);
                request
            }),
            Handoff::NotSpooled(e) => {
                // The spool failed: as without one, wait for the export. Not delivered, its
                // markers go to the sink thread's next marker (the batch's own: the error
                // says they were not written) or are sent again (earlier ones).
                let result = live.wait(deadline);
                if !matches!(result, Some(Ok(()))) && !resent.is_empty() {
                    lock(resend).extend(resent);
                }
                match result {
                    Some(Ok(())) => Ok(()),
                    Some(Err(failed)) => Err(SinkError::Retryable(format!(
                        "{}; and the request could not be spooled: {e}",
                        failed.with_sources()
                    ))),
                    None => Err(SinkError::Retryable(format!(
                        "OTLP {} export timed out; and the request could not be spooled: {e}",
                        kind.name()
                    ))),
                }
            }
        }
    }

    /// The task that runs one live export on the spool's runtime and reports its end.
    fn live_task(
        &self,
        chunk: &Chunk,
        ctx: &ChunkCtx<'_>,
        live: &Arc<LiveExport>,
        spool: &Arc<Spool>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let (export, attempts, ran_out_flag): (
            Pin<Box<dyn Future<Output = OTelSdkResult> + Send>>,
            _,
            _,
        ) = match (chunk, &ctx.exporter) {
            (Chunk::Spans { data: spans, .. }, LiveExporter::Spans(e)) => {
                let (exporter, spans) = (Arc::clone(&e.inner), spans.clone());
                let export = Box::pin(async move { exporter.export(spans).await });
                (export, Arc::clone(&e.attempts), Arc::clone(&e.ran_out))
            }
            (Chunk::Logs { records, .. }, LiveExporter::Logs(e)) => {
                let (exporter, records) = (Arc::clone(&e.inner), Arc::clone(records));
                let scope = Arc::clone(ctx.log_scope);
                let export = Box::pin(async move {
                    let pairs: Vec<(&SdkLogRecord, &InstrumentationScope)> =
                        records.iter().map(|r| (r, &*scope)).collect();
                    exporter.export(LogBatch::new(&pairs)).await
                });
                (export, Arc::clone(&e.attempts), Arc::clone(&e.ran_out))
            }
            _ => unreachable!("a chunk goes with its signal's exporter"),
        };
        let (live, spool) = (Arc::clone(live), Arc::clone(spool));
        let (retries, protocol, timeout) = (
            Arc::clone(&self.retries),
            self.protocol,
            self.export_timeout,
        );
        let what = chunk.kind().name();
        async move {
            let before = attempts.count();
            let ran = tokio::time::timeout(timeout, export).await;
            let tried = attempts.count() - before;
            retries.fetch_add(tried.saturating_sub(1), Relaxed);
            let result = match ran {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => {
                    let message = e.to_string();
                    if retry::grpc_timed_out(&message) {
                        ran_out_flag.store(true, Relaxed);
                    }
                    Err(export_failure(protocol, what, &attempts, tried, message))
                }
                Err(_) => {
                    ran_out_flag.store(true, Relaxed);
                    Err(SinkError::Retryable(format!(
                        "OTLP {what} export timed out after {timeout:?}"
                    )))
                }
            };
            live.finish(result, &spool);
        }
    }

    fn start_direct(&mut self) -> Result<(), SinkError> {
        let rt = BackgroundRuntime::new("the OTLP sink")?;
        // The exporters spawn their connection tasks on the runtime they are built in. `start`
        // runs on the application's thread, maybe inside its runtime: enter ours (allowed
        // there), never block on it.
        let ((spans, logs), targets) = rt
            .enter(|| self.build_exporters())?
            .map_err(SinkError::Fatal)?;
        self.running = Some(self.running_with(Engine::Direct(rt), spans, logs, targets));
        Ok(())
    }

    fn start_spooled(&mut self, dir: &std::path::Path) -> Result<(), SinkError> {
        let budget = super::MIN_SPOOL_MAX_BYTES..=super::MAX_SPOOL_MAX_BYTES;
        if !budget.contains(&self.spool_max_bytes) {
            return Err(SinkError::Fatal(format!(
                "spool_max_bytes {} is out of range: {} to {} bytes",
                self.spool_max_bytes,
                budget.start(),
                budget.end()
            )));
        }
        let rt = crate::sink::runtime::private_runtime("the OTLP spool")?;
        // As in `start_direct`: entered, never blocked on, from the application's thread. The
        // exporters first: a setting they refuse (a TLS file) fails before the spool's
        // directory is made.
        let built = {
            let _in_ours = rt.enter();
            self.build_exporters()
                .and_then(|e| Ok((e, self.build_senders()?)))
        };
        let (((spans, logs), targets), senders) = built.map_err(SinkError::Fatal)?;
        let cannot_open = |e: std::io::Error| {
            SinkError::Fatal(format!(
                "cannot open the OTLP spool directory {}: {e}",
                dir.display()
            ))
        };
        self.spool_dirs_made.clear();
        crate::sink::make_dirs(dir, &mut self.spool_dirs_made).map_err(cannot_open)?;
        let spool = Spool::open(dir, self.spool_max_bytes).map_err(cannot_open)?;
        spool.count_riders_in(self.riders.awaiting());
        let engine = spool::Engine::start(&self.name, rt, spool, senders)
            .map_err(|e| SinkError::io("starting the OTLP spool's thread", e))?;
        let resource = ResourceAttributesWithSchema::from(&self.resource());
        let engine = Engine::Spool(engine, resource);
        self.running = Some(self.running_with(engine, spans, logs, targets));
        Ok(())
    }

    fn running_with(
        &self,
        engine: Engine,
        spans: Option<Built<opentelemetry_otlp::SpanExporter>>,
        logs: Option<Built<opentelemetry_otlp::LogExporter>>,
        targets: Targets,
    ) -> Running {
        let resource = self.resource();
        let provider = SdkLoggerProvider::builder().build();
        let logger = provider.logger("tracing-offload");
        Running {
            engine,
            targets,
            exporters: Exporters {
                spans: spans.map(|b| b.with_resource(&resource)),
                logs: logs.map(|b| b.with_resource(&resource)),
                log_scope: Arc::new(InstrumentationScope::builder("").build()),
                resend: Arc::default(),
                resend_tried: None,
            },
            logger,
            _provider: provider,
            scope: InstrumentationScope::builder("tracing-offload")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        }
    }
}

/// The signals' exporters as built.
type BuiltExporters = (
    Option<Built<opentelemetry_otlp::SpanExporter>>,
    Option<Built<opentelemetry_otlp::LogExporter>>,
);

/// An exporter as built, before it gets the resource and is shared.
pub(super) struct Built<E> {
    inner: E,
    attempts: Arc<Attempts>,
}

impl Built<opentelemetry_otlp::SpanExporter> {
    fn with_resource(mut self, resource: &opentelemetry_sdk::Resource) -> SpanExporter {
        self.inner.set_resource(resource);
        Exporter {
            inner: Arc::new(self.inner),
            attempts: self.attempts,
            ran_out: Arc::default(),
        }
    }
}

impl Built<opentelemetry_otlp::LogExporter> {
    fn with_resource(mut self, resource: &opentelemetry_sdk::Resource) -> LogExporter {
        self.inner.set_resource(resource);
        Exporter {
            inner: Arc::new(self.inner),
            attempts: self.attempts,
            ran_out: Arc::default(),
        }
    }
}

/// A request that ended: the attempts it took, and its error's text if it failed.
type Ended = (u64, Result<(), String>);

/// The requests of one signal in a batch, as they end: the attempts each took and its
/// outcome. Written from the signal's part of the batch's future, read once both are done (or
/// the batch's deadline dropped them).
#[derive(Default)]
struct SignalRuns {
    done: std::cell::RefCell<Vec<Ended>>,
    /// The exporter's attempt count when the request under way started, if one is.
    under_way: std::cell::Cell<Option<u64>>,
}

impl SignalRuns {
    fn start(&self, attempts: &Attempts) {
        self.under_way.set(Some(attempts.count()));
    }

    fn finish(&self, attempts: &Attempts, result: OTelSdkResult) {
        let before = self.under_way.take().unwrap_or_else(|| attempts.count());
        let tried = attempts.count() - before;
        self.done
            .borrow_mut()
            .push((tried, result.map_err(|e| e.to_string())));
    }

    /// The requests that ended, and the attempts of the one under way when the batch's
    /// deadline passed, if one was.
    fn into_parts(self, attempts: &Attempts) -> (Vec<Ended>, Option<u64>) {
        let in_flight = self.under_way.get().map(|before| attempts.count() - before);
        (self.done.into_inner(), in_flight)
    }
}

/// A batch's spans, with the events that rode on each (see
/// [`Riders`](super::riders::Riders)), in the same order.
#[derive(Default)]
struct Spans {
    data: Vec<SpanData>,
    riders: Vec<u64>,
}

/// What a failed request loses: its data records (spans, events), and whether a drop marker
/// was among them, for the signal it carried.
#[derive(Clone, Copy, Debug)]
struct ChunkLoss {
    signal: &'static str,
    data: usize,
    marker: bool,
    /// Events that rode on its spans (see [`Riders`](super::riders::Riders)).
    riders: u64,
}

impl ChunkLoss {
    fn spans(n: usize, riders: u64) -> Self {
        ChunkLoss {
            signal: "spans",
            data: n,
            marker: false,
            riders,
        }
    }

    /// For log records, with whether each is data (not a drop marker).
    fn logs(data: &[bool]) -> Self {
        ChunkLoss {
            signal: "logs",
            data: data.iter().filter(|d| **d).count(),
            marker: data.contains(&false),
            riders: 0,
        }
    }
}

/// The requests of a batch that failed: each request stands alone (spans and log records go
/// to their own services, maybe their own endpoints), so the batch's outcome counts what each
/// lost, not the whole batch as failed for the first error, and says why each signal failed.
#[derive(Default)]
struct Failures {
    /// Each signal that failed: spans first, then log records.
    signals: Vec<SignalFailure>,
    /// Events that rode on the spans of the failed requests.
    riders: u64,
}

/// What one signal's failed requests of a batch lost, and the first one's error.
struct SignalFailure {
    signal: &'static str,
    error: SinkError,
    data: usize,
    markers_lost: bool,
}

impl Failures {
    fn add(&mut self, error: SinkError, lost: ChunkLoss) {
        self.riders += lost.riders;
        let at = match self.signals.iter().position(|f| f.signal == lost.signal) {
            Some(at) => at,
            None => {
                self.signals.push(SignalFailure {
                    signal: lost.signal,
                    error,
                    data: 0,
                    markers_lost: false,
                });
                self.signals.len() - 1
            }
        };
        let failure = &mut self.signals[at];
        failure.data += lost.data;
        failure.markers_lost |= lost.marker;
    }

    /// `Ok`, or how many data records the batch lost in all with why: one signal's error as
    /// it is (it names its signal), or each signal's, with what it lost, when both failed.
    fn into_result(mut self) -> Result<(), SinkError> {
        if self.signals.is_empty() {
            return Ok(());
        }
        let failed = self.signals.iter().map(|f| f.data).sum();
        let permanent = self
            .signals
            .iter()
            .filter(|f| f.error.is_permanent())
            .map(|f| f.data)
            .sum();
        let markers_written = !self.signals.iter().any(|f| f.markers_lost);
        let source = if self.signals.len() == 1 {
            self.signals.remove(0).error
        } else {
            each_signals_error(&self.signals)
        };
        Err(SinkError::Mixed {
            failed,
            permanent,
            markers_written,
            source: Box::new(source),
        })
    }
}

/// One error saying each signal's failure, e.g. `spans (1): <error>; logs (202): <error>`,
/// where the count is the signal's data records lost. Permanent only when each is: then
/// retrying none of them could help (each signal's records are counted `failed_permanent` or
/// not as its own error is, through [`SinkError::Mixed`]'s `permanent`).
fn each_signals_error(signals: &[SignalFailure]) -> SinkError {
    let text = signals
        .iter()
        .map(|f| {
            let lost = match (f.data, f.markers_lost) {
                (0, true) => "drop markers".to_owned(),
                (n, _) => n.to_string(),
            };
            format!("{} ({lost}): {}", f.signal, f.error.with_sources())
        })
        .collect::<Vec<_>>()
        .join("; ");
    if signals.iter().all(|f| f.error.is_permanent()) {
        SinkError::Fatal(text)
    } else {
        SinkError::Retryable(text)
    }
}

/// A batch's log records, with whether each is data (an event) or a drop marker.
#[derive(Default)]
struct Logs {
    records: Vec<SdkLogRecord>,
    data: Vec<bool>,
}

/// One request's records.
enum Chunk {
    Spans {
        data: Vec<SpanData>,
        /// The events that ride on these spans (see [`Riders`](super::riders::Riders)).
        riders: u64,
    },
    Logs {
        records: Arc<Vec<SdkLogRecord>>,
        /// The data records among them (drop markers are not counted).
        data: u64,
        /// What each record is.
        kinds: Vec<Rec>,
    },
}

/// What a log record of a request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rec {
    /// An event.
    Data,
    /// The batch's drop marker.
    Marker,
    /// A drop marker of an earlier batch, sent again.
    Resent,
}

/// A chunk's data records, and its drop markers set apart.
struct Split {
    /// `None` when nothing but markers is left.
    data: Option<Chunk>,
    /// The batch's own markers.
    own: Vec<SdkLogRecord>,
    /// Markers of earlier batches, sent again.
    resent: Vec<SdkLogRecord>,
}

/// Markers that were not delivered with a request the sink thread still waits for: the
/// batch's own are left to the sink thread's next marker (`deferred`), earlier ones are
/// queued to be sent again.
fn undelivered(
    own: Vec<SdkLogRecord>,
    resent: Vec<SdkLogRecord>,
    deferred: &AtomicBool,
    resend: &Mutex<Vec<SdkLogRecord>>,
) {
    if !own.is_empty() {
        deferred.store(true, Relaxed);
    }
    if !resent.is_empty() {
        lock(resend).extend(resent);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while holding it; a poisoned list of markers is still whole.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A request of the spooled path, started (`Otlp::start_chunk`).
enum StartedChunk {
    /// Spooled at once (or nothing to send): the outcome.
    Done(Result<(), SinkError>),
    /// Sent live: waited for until `wait_until`, then spooled.
    Live {
        chunk: Chunk,
        live: Arc<LiveExport>,
        started: Instant,
        wait_until: Instant,
    },
}

/// What a chunk is exported and encoded with.
struct ChunkCtx<'a> {
    exporter: LiveExporter<'a>,
    resource: &'a ResourceAttributesWithSchema,
    log_scope: &'a Arc<InstrumentationScope>,
    /// Drop markers to send again (see [`Exporters::resend`]).
    resend: &'a Arc<Mutex<Vec<SdkLogRecord>>>,
}

enum LiveExporter<'a> {
    Spans(&'a SpanExporter),
    Logs(&'a LogExporter),
}

/// A request encoded as the exporters encode it (protobuf), for the spool.
struct Encoded {
    kind: Kind,
    records: u64,
    /// The events riding on its spans, lost with it if the spool loses it.
    riders: u64,
    bytes: Vec<u8>,
}

// === impl Chunk ===

impl Chunk {
    fn kind(&self) -> Kind {
        match self {
            Chunk::Spans { .. } => Kind::Traces,
            Chunk::Logs { .. } => Kind::Logs,
        }
    }

    /// The request, encoded with the same transforms as opentelemetry-otlp's exporters.
    fn encode(self, ctx: &ChunkCtx<'_>) -> Encoded {
        match self {
            Chunk::Spans {
                data: spans,
                riders,
            } => Encoded {
                kind: Kind::Traces,
                records: spans.len() as u64,
                riders,
                bytes: ExportTraceServiceRequest {
                    resource_spans: group_spans_by_resource_and_scope(spans, ctx.resource),
                }
                .encode_to_vec(),
            },
            Chunk::Logs { records, data, .. } => {
                let pairs: Vec<(&SdkLogRecord, &InstrumentationScope)> =
                    records.iter().map(|r| (r, &**ctx.log_scope)).collect();
                let batch = LogBatch::new(&pairs);
                Encoded {
                    kind: Kind::Logs,
                    records: data,
                    riders: 0,
                    bytes: ExportLogsServiceRequest {
                        resource_logs: group_logs_by_resource_and_scope(&batch, ctx.resource),
                    }
                    .encode_to_vec(),
                }
            }
        }
    }
}

impl Chunk {
    /// Its data records, and its drop markers set apart.
    fn split_markers(self) -> Split {
        match self {
            Chunk::Logs {
                records,
                data,
                kinds,
            } if kinds.iter().any(|k| *k != Rec::Data) => {
                let records = Arc::try_unwrap(records).unwrap_or_else(|shared| (*shared).clone());
                let (mut kept, mut own, mut resent) = (Vec::new(), Vec::new(), Vec::new());
                for (record, kind) in records.into_iter().zip(&kinds) {
                    match kind {
                        Rec::Data => kept.push(record),
                        Rec::Marker => own.push(record),
                        Rec::Resent => resent.push(record),
                    }
                }
                let data = (data > 0).then(|| Chunk::Logs {
                    records: Arc::new(kept),
                    data,
                    kinds: vec![Rec::Data; data as usize],
                });
                Split { data, own, resent }
            }
            chunk => Split {
                data: Some(chunk),
                own: Vec::new(),
                resent: Vec::new(),
            },
        }
    }

    /// The request to spool instead of delivering it: without its drop markers, which are
    /// never put where the spool's budget could evict them (see [`undelivered`]). `None` when
    /// nothing but markers is left.
    fn encode_for_spool(
        self,
        ctx: &ChunkCtx<'_>,
        deferred: &AtomicBool,
        resend: &Mutex<Vec<SdkLogRecord>>,
    ) -> Option<Encoded> {
        let Split { data, own, resent } = self.split_markers();
        undelivered(own, resent, deferred, resend);
        data.map(|data| data.encode(ctx))
    }
}

/// Writes a request to the spool; `cause`, why it was not delivered, joins a spool error.
fn spool_request(
    spool: &Spool,
    request: &Encoded,
    cause: Option<&SinkError>,
) -> Result<(), SinkError> {
    spool
        .append(
            request.kind,
            request.records,
            request.riders,
            &request.bytes,
            false,
        )
        .map(drop)
        .map_err(|e| {
            let cause = cause.map_or(String::new(), |c| format!("{}; and ", c.with_sources()));
            SinkError::Retryable(format!(
                "{cause}OTLP {} could not be spooled: {e}",
                request.kind.name()
            ))
        })
}

/// A live export ended: delivered, refused for good (failed), or failed transiently (the
/// collector is unreachable: spooled). `undelivered` sets the request's drop markers apart
/// (see [`undelivered`]) and encodes the rest, for the spool.
fn after_live(
    spool: &Spool,
    kind: Kind,
    result: Result<(), SinkError>,
    undelivered: impl FnOnce() -> Option<Encoded>,
) -> Result<(), SinkError> {
    let Err(e) = result else {
        spool.note_success(kind);
        return Ok(());
    };
    // Its markers were not delivered, whatever the error.
    let request = undelivered();
    if let SinkError::Fatal(_) = e {
        return Err(e);
    }
    spool.note_failure(kind, e.with_sources());
    match request {
        Some(request) => spool_request(spool, &request, Some(&e)),
        None => Ok(()),
    }
}

/// Classifies a failed export of one request into the sink's error.
fn export_failure(
    protocol: Protocol,
    what: &str,
    attempts: &Attempts,
    tried: u64,
    error: String,
) -> SinkError {
    let failure = match protocol {
        Protocol::Grpc => retry::classify_grpc(&error, tried),
        _ => retry::classify_http(attempts.last_http().as_ref()),
    };
    let detail = match attempts.last_http() {
        // The HTTP exporter says only "network error": add what the client saw.
        Some(HttpOutcome::Transport(cause)) if protocol != Protocol::Grpc => {
            format!("{error} ({cause})")
        }
        _ => error,
    };
    retry::export_error(failure, what, tried, &detail)
}

/// The reqwest client of the HTTP transport. With the `tls` feature it always gets a rustls
/// configuration of ours (reqwest would otherwise look for a process-wide crypto provider).
fn reqwest_client(timeout: Duration, tls: Option<&LoadedTls>) -> Result<reqwest::Client, String> {
    let builder = reqwest::Client::builder().timeout(timeout);
    #[cfg(feature = "tls")]
    let builder = {
        let config = match tls {
            Some(tls) => tls.rustls_config()?,
            None => super::tls::plain_text_config()?,
        };
        builder.tls_backend_preconfigured(config)
    };
    #[cfg(not(feature = "tls"))]
    let _ = tls;
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

fn metadata(
    headers: &[(String, String)],
) -> Result<opentelemetry_otlp::tonic_types::metadata::MetadataMap, String> {
    Ok(opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(header_map(headers)?))
}

/// The sink's headers as HTTP carries them (names lower-case, as gRPC metadata needs), or what
/// is wrong with the first bad one: its place, never its value, and its name only when valid.
fn header_map(headers: &[(String, String)]) -> Result<http::HeaderMap, String> {
    let mut map = http::HeaderMap::new();
    for (i, (k, v)) in headers.iter().enumerate() {
        let (name, value) = check_header(k, v).map_err(|bad| bad.describe("header", i + 1, k))?;
        map.insert(name, value);
    }
    Ok(map)
}

/// What is wrong with a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BadHeader {
    /// Its name is not an HTTP header name (a token).
    Name,
    /// Its value holds a character HTTP cannot carry.
    Value,
}

impl BadHeader {
    /// The problem of header `name`, the `n`th (from 1) of a list of `what`s ("header",
    /// "entry"). The value is never shown, nor an invalid name: a malformed entry
    /// (`Authorization: Bearer <token>`) holds the secret where the name should be.
    pub(super) fn describe(self, what: &str, n: usize, name: &str) -> String {
        match self {
            BadHeader::Name => format!(
                "{what} {n} has a name that is not a valid HTTP header name (letters, digits and \
                 !#$%&'*+-.^_`|~ only: no spaces or colons)"
            ),
            BadHeader::Value => format!(
                "{what} {n} (`{name}`) has a value that HTTP cannot carry (a line break or another \
                 control character, or a character that is not ASCII)"
            ),
        }
    }
}

/// A header's name (lower-case) and value as HTTP carries them.
pub(super) fn check_header(
    name: &str,
    value: &str,
) -> Result<(http::HeaderName, http::HeaderValue), BadHeader> {
    let name = http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
        .map_err(|_| BadHeader::Name)?;
    let value = http::HeaderValue::from_str(value).map_err(|_| BadHeader::Value)?;
    Ok((name, value))
}

impl Otlp {
    /// One batch to the collector (or the spool).
    fn export_batch(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        // Taken out for the call, so that `self` can be borrowed beside it.
        let mut run = self.running.take().ok_or_else(not_started)?;
        let deadline = crate::clock::deadline_after(self.export_timeout);
        let (spans, logs) = self.convert(&run, batch);
        let result = match &mut run.engine {
            Engine::Direct(rt) => self.export_direct(rt, &run.exporters, spans, logs, deadline),
            Engine::Spool(engine, resource) => {
                self.export_spooled(engine, resource, &run.exporters, spans, logs, deadline)
            }
        };
        // What the batch's spans carried and was not lost with them went with them.
        self.riders.settle();
        self.reconnect(&mut run);
        self.running = Some(run);
        result
    }

    /// Sends the drop markers queued to be sent again (see [`Exporters::resend`]) in a request
    /// of their own: the next logs request would take them, but none may come. Not while logs
    /// go straight to the spool or a live export of logs runs, and at most once per
    /// [`MARKERS_RETRY`] (a collector that refuses them for good is not asked on every tick),
    /// unless this is the last chance: `last`, shutdown's deadline.
    fn send_queued_markers(&mut self, last: Option<Instant>) -> Result<(), SinkError> {
        let Some(mut run) = self.running.take() else {
            return Ok(());
        };
        let recently = last.is_none()
            && run
                .exporters
                .resend_tried
                .is_some_and(|at| at.elapsed() < MARKERS_RETRY);
        let result = match &mut run.engine {
            Engine::Spool(engine, resource)
                if !lock(&run.exporters.resend).is_empty()
                    && !engine.spool.straight_to_spool(Kind::Logs)
                    && !engine.live_running(Kind::Logs)
                    && !recently =>
            {
                run.exporters.resend_tried = Some(Instant::now());
                let deadline = crate::clock::deadline_after(self.export_timeout);
                let deadline = last.map_or(deadline, |last| last.min(deadline));
                let nothing = Logs {
                    records: Vec::new(),
                    data: Vec::new(),
                };
                self.export_spooled(
                    engine,
                    resource,
                    &run.exporters,
                    Spans::default(),
                    nothing,
                    deadline,
                )
            }
            _ => Ok(()),
        };
        self.running = Some(run);
        result
    }

    /// Stops the spool's replay and the exporters by `deadline`, after a last try at sending
    /// the drop markers queued to be sent again.
    fn stop(&mut self, deadline: Instant) -> Result<(), SinkError> {
        // The spans still awaited will not come: their riders reached nobody.
        self.riders.abandon();
        let _ = self.send_queued_markers(Some(deadline));
        let Some(mut run) = self.running.take() else {
            return Ok(());
        };
        let stopped = match &mut run.engine {
            Engine::Spool(engine, _) => {
                self.stopped_spool = Some(Arc::clone(&engine.spool));
                engine.shutdown(deadline)
            }
            Engine::Direct(_) => Ok(()),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if let Some(s) = run.exporters.spans.as_ref() {
            let _ = s.inner.shutdown_with_timeout(left);
        }
        if let Some(l) = run.exporters.logs.as_ref() {
            let _ = l.inner.shutdown_with_timeout(left);
        }
        if let Engine::Direct(rt) = &mut run.engine {
            rt.shutdown(deadline);
        }
        stopped
    }
}

/// How often queued drop markers are tried on their own.
const MARKERS_RETRY: Duration = Duration::from_secs(1);

/// `e` with the credentials of any URL in its messages hidden (see [`endpoint::redact_in`]):
/// what the sink returns is shown in stats, `/health` and on stderr.
fn redact_error(e: SinkError) -> SinkError {
    match e {
        SinkError::Retryable(m) => SinkError::Retryable(endpoint::redact_in(&m)),
        SinkError::Fatal(m) => SinkError::Fatal(endpoint::redact_in(&m)),
        // The OS error of a file or a thread names no URL.
        SinkError::Io { context, source } => SinkError::Io {
            context: endpoint::redact_in(&context),
            source,
        },
        SinkError::Partial { written, source } => SinkError::Partial {
            written,
            source: Box::new(redact_error(*source)),
        },
        SinkError::Mixed {
            failed,
            permanent,
            markers_written,
            source,
        } => SinkError::Mixed {
            failed,
            permanent,
            markers_written,
            source: Box::new(redact_error(*source)),
        },
    }
}

fn not_started() -> SinkError {
    SinkError::Fatal("the OTLP sink was not started".to_owned())
}

impl Sink for Otlp {
    fn name(&self) -> &str {
        &self.name
    }

    fn start(&mut self) -> Result<(), SinkError> {
        let started = match self.spool_dir.clone() {
            None => self.start_direct(),
            Some(dir) => self.start_spooled(&dir),
        };
        // The TLS files are in the transports' configurations now; their bytes (a key's) are
        // not kept.
        self.tls_reads = TlsReads::default();
        started.map_err(redact_error)
    }

    fn export(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        // The HTTP client quotes the endpoint's URL in its errors, credentials included.
        self.export_batch(batch).map_err(redact_error)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        let sent = self.send_queued_markers(None).map_err(redact_error);
        let synced = match self.running.as_ref().map(|r| &r.engine) {
            Some(Engine::Spool(engine, _)) => engine.spool.sync().map_err(redact_error),
            _ => Ok(()),
        };
        sent.and(synced)
    }

    fn holds_records(&self) -> bool {
        self.running
            .as_ref()
            .is_some_and(|r| !lock(&r.exporters.resend).is_empty())
    }

    fn shutdown(&mut self, deadline: Instant) -> Result<(), SinkError> {
        self.stop(deadline).map_err(redact_error)
    }

    /// Stops, then removes the spool's directories that `start` made, when nothing but the
    /// spool's lock file is in them (nothing was spooled).
    fn abandon(&mut self) {
        let _ = self.stop(Instant::now());
        self.stopped_spool = None;
        let made = std::mem::take(&mut self.spool_dirs_made);
        // The spool's directory, where its lock is: not always the last one made (a path
        // ending in `..` names an outer one).
        let real = |p: &std::path::Path| std::fs::canonicalize(p).ok();
        let spool_dir = self.spool_dir.as_deref().and_then(real);
        // Innermost first; a directory with anything in it (something was spooled, or put
        // there) stays, and so do those around it.
        for dir in made.iter().rev() {
            if spool_dir.is_some() && real(dir) == spool_dir {
                let only_the_lock = std::fs::read_dir(dir).is_ok_and(|entries| {
                    entries
                        .map(|e| e.map(|e| e.file_name()))
                        .all(|name| name.is_ok_and(|n| n == "lock"))
                });
                if only_the_lock {
                    let _ = std::fs::remove_file(dir.join("lock"));
                }
            }
            if std::fs::remove_dir(dir).is_err() {
                break;
            }
        }
    }

    fn wants_span_events(&self) -> bool {
        self.traces
    }

    /// Events sent only on their span's record (`EventsAsLogs::None`, `OutsideSpans`), from
    /// their export until their span's request went through or failed, or it became clear
    /// that their span's record would never come.
    fn awaiting_delivery(&self) -> Option<Arc<crate::sink::AwaitingDelivery>> {
        Some(self.riders.awaiting())
    }

    fn buffer_capacity(&self) -> Option<usize> {
        Some(self.max_queue)
    }

    fn retries(&self) -> u64 {
        self.retries.load(Relaxed)
    }

    fn markers_deferred(&mut self) -> bool {
        self.markers_deferred.swap(false, Relaxed)
    }

    fn spool(&self) -> Option<SpoolStats> {
        match self.running.as_ref().map(|r| &r.engine) {
            Some(Engine::Spool(engine, _)) => Some(engine.spool.stats()),
            Some(Engine::Direct(_)) => None,
            None => self.stopped_spool.as_ref().map(|spool| spool.stats()),
        }
    }

    fn settings(&self) -> serde_json::Value {
        let tls = |specific: &Tls| {
            let files = specific.over(&self.tls);
            (!files.is_empty()).then_some(files)
        };
        serde_json::json!({
            // Credentials in an endpoint's URL are hidden (`user:***@host`), header values too.
            "traces_endpoint": self.traces.then(|| endpoint::redact(&self.signal_endpoint(&self.traces_endpoint, "v1/traces"))),
            "logs_endpoint": (self.logs != EventsAsLogs::None)
                .then(|| endpoint::redact(&self.signal_endpoint(&self.logs_endpoint, "v1/logs"))),
            "protocol": self.protocol,
            "headers": self.headers.iter().map(|(k, _)| (k.clone(), REDACTED)).collect::<std::collections::BTreeMap<_, _>>(),
            "timeout_ms": self.timeout.as_millis() as u64,
            "compression": if self.gzip { "gzip" } else { "none" },
            "traces_tls": tls(&self.traces_tls),
            "logs_tls": tls(&self.logs_tls),
            "service_name": self.service_name,
            "resource_attributes": self.resource_attributes.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "export_timeout_ms": self.export_timeout.as_millis() as u64,
            "max_export_batch_size": self.max_batch,
            "max_queue_size": self.max_queue,
            "max_retries": self.max_retries,
            "events_as_logs": self.logs,
            // Shown, not serialised: a path that is not UTF-8 cannot be (it panicked `build()`).
            "spool_dir": self.spool_dir.as_ref().map(|d| d.to_string_lossy()),
            "spool_max_bytes": self.spool_dir.as_ref().map(|_| self.spool_max_bytes),
            "spool_after_ms": self.spool_dir.as_ref().map(|_| self.spool_after.as_millis() as u64),
        })
    }

    fn env_warnings(&self) -> Vec<EnvWarning> {
        self.warnings.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(signal: &str) -> SinkError {
        SinkError::Fatal(format!("OTLP {signal} rejected, not retried: HTTP 400"))
    }

    fn unreachable(signal: &str) -> SinkError {
        SinkError::Retryable(format!(
            "OTLP {signal} export failed after 1 attempt: error sending request for url \
             (http://user:s3cr3t@127.0.0.1:9/v1/{signal})"
        ))
    }

    fn outcome(failures: Vec<(SinkError, ChunkLoss)>) -> SinkError {
        let mut all = Failures::default();
        for (error, lost) in failures {
            all.add(error, lost);
        }
        all.into_result().expect_err("a failure")
    }

    #[test]
    fn a_batch_failed_on_both_signals_says_each_with_its_count() {
        let e = outcome(vec![
            (refused("spans"), ChunkLoss::spans(1, 0)),
            (unreachable("logs"), ChunkLoss::logs(&[true; 200])),
            // A second request of the same signal adds to its count, not to the text.
            (refused("logs"), ChunkLoss::logs(&[true, true, false])),
        ]);
        assert_eq!(
            e.with_sources(),
            "203 records of the batch were not written: \
             spans (1): OTLP spans rejected, not retried: HTTP 400; \
             logs (202): OTLP logs export failed after 1 attempt: error sending request for \
             url (http://user:s3cr3t@127.0.0.1:9/v1/logs)"
        );
        assert!(!e.markers_written());
    }

    #[test]
    fn one_signal_failing_keeps_its_own_error() {
        let e = outcome(vec![(unreachable("logs"), ChunkLoss::logs(&[true, true]))]);
        assert_eq!(
            e.with_sources(),
            format!(
                "2 records of the batch were not written: {}",
                unreachable("logs")
            )
        );
        assert!(!e.is_permanent());
    }

    #[test]
    fn lost_drop_markers_alone_are_named_as_such() {
        let e = outcome(vec![
            (refused("spans"), ChunkLoss::spans(3, 0)),
            (refused("logs"), ChunkLoss::logs(&[false])),
        ]);
        let text = e.with_sources();
        assert!(
            text.starts_with("3 records of the batch were not written: spans (3): ")
                && text.contains("; logs (drop markers): OTLP logs rejected"),
            "{text}"
        );
    }

    /// A batch of drop markers alone that failed read "0 records of the batch were not
    /// written", and became the sink's last error over the one that lost data (adversary
    /// pass 36).
    #[test]
    fn a_batch_that_lost_only_its_drop_markers_says_so() {
        let e = outcome(vec![(unreachable("logs"), ChunkLoss::logs(&[false]))]);
        assert_eq!(
            e.with_sources(),
            format!(
                "the batch's drop markers were not written: {}",
                unreachable("logs")
            )
        );
    }

    #[test]
    fn both_signals_are_permanent_only_when_each_is() {
        let both = |logs: SinkError| {
            outcome(vec![
                (refused("spans"), ChunkLoss::spans(1, 0)),
                (logs, ChunkLoss::logs(&[true])),
            ])
        };
        assert!(both(refused("logs")).is_permanent());
        assert!(!both(unreachable("logs")).is_permanent());
    }

    #[test]
    fn each_signals_error_is_redacted() {
        let e = redact_error(outcome(vec![
            (unreachable("spans"), ChunkLoss::spans(1, 0)),
            (unreachable("logs"), ChunkLoss::logs(&[true])),
        ]));
        let text = e.with_sources();
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(
            text.contains("spans (1): ") && text.contains("; logs (1): "),
            "{text}"
        );
    }
}
