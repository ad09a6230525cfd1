//! `sink::Otlp`: spans and events to an OpenTelemetry collector, through the
//! `opentelemetry-otlp` exporters (gRPC, HTTP/protobuf, HTTP/JSON).
//!
//! The sink runs on its own thread and owns one private tokio runtime (current-thread, driven
//! only by that thread) for its whole life: never one per export, never the application's — the
//! same machinery as [`Async`](crate::sink::Async) for your own async sinks. The runtime's thread
//! is the sink thread, which runs with `tracing`'s `NoSubscriber`, so nothing the exporter's
//! HTTP/gRPC stack logs can come back into the queue.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{
    SpanContext, SpanId as OtelSpanId, SpanKind, Status, TraceFlags, TraceId as OtelTraceId,
    TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue, Value};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::logs::{LogBatch, LogExporter as _, SdkLogRecord, SdkLoggerProvider};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use opentelemetry_sdk::Resource;

use crate::env::{EnvReader, EnvWarning};
use crate::level::LogLevel;
use crate::record::{EventRecord, FieldValue, Record, SpanRecord};
use crate::sink::runtime::BackgroundRuntime;
use crate::sink::{Sink, SinkError};

/// The OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Protocol {
    /// gRPC (`grpc`), default port 4317.
    Grpc,
    /// HTTP with protobuf bodies (`http/protobuf`), default port 4318.
    HttpProtobuf,
    /// HTTP with JSON bodies (`http/json`), default port 4318.
    HttpJson,
}

impl Protocol {
    fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            "http/json" => Ok(Protocol::HttpJson),
            _ => Err("grpc, http/protobuf or http/json".to_owned()),
        }
    }

    fn default_endpoint(self) -> &'static str {
        match self {
            Protocol::Grpc => "http://localhost:4317",
            _ => "http://localhost:4318",
        }
    }
}

/// Which events the sink sends as OTLP log records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum EventsAsLogs {
    /// Every event (the default). Events inside a span are also span events on it.
    All,
    /// Only events outside any span; events inside spans travel as span events only.
    OutsideSpans,
    /// None: events travel only as span events.
    None,
}

/// The default export timeout per request (`OTEL_EXPORTER_OTLP_TIMEOUT`).
pub const DEFAULT_OTLP_TIMEOUT: Duration = Duration::from_secs(10);
/// The default bound on one export including its retries (`OTEL_BSP_EXPORT_TIMEOUT`).
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(30);
/// The default records per OTLP request (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`).
pub const DEFAULT_MAX_EXPORT_BATCH_SIZE: usize = 512;
/// The default sink buffer (`OTEL_BSP_MAX_QUEUE_SIZE`).
pub const DEFAULT_MAX_QUEUE_SIZE: usize = 2_048;
/// Retries of a failed request before its records are counted as failed.
pub const DEFAULT_MAX_RETRIES: u32 = 5;
/// The first retry's back-off; it doubles (with jitter) up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// The longest back-off between retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Exports spans (as OTLP spans) and events (as OTLP log records) to a collector.
///
/// ```
/// use std::time::Duration;
/// use tracing_offload::sink::{otlp::Protocol, Otlp};
///
/// let sink = Otlp::new()
///     .endpoint("http://127.0.0.1:4317")
///     .protocol(Protocol::Grpc)
///     .service_name("checkout")
///     .header("x-api-key", "secret")
///     .export_timeout(Duration::from_secs(5));
/// # drop(sink);
/// ```
///
/// Or from OpenTelemetry's standard variables with [`Otlp::from_env`]. Nothing connects until
/// the pipeline is built; a collector that is down is retried with back-off, and what cannot
/// be delivered is counted as failed in the sink's stats.
pub struct Otlp {
    name: String,
    endpoint: Option<String>,
    traces_endpoint: Option<String>,
    logs_endpoint: Option<String>,
    protocol: Protocol,
    headers: Vec<(String, String)>,
    timeout: Duration,
    gzip: bool,
    service_name: String,
    resource_attributes: Vec<(String, String)>,
    export_timeout: Duration,
    max_batch: usize,
    max_queue: usize,
    max_retries: u32,
    traces: bool,
    logs: EventsAsLogs,
    warnings: Vec<EnvWarning>,
    running: Option<Running>,
    retries: u64,
}

impl std::fmt::Debug for Otlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Otlp")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("service_name", &self.service_name)
            .finish_non_exhaustive()
    }
}

struct Running {
    rt: BackgroundRuntime,
    spans: Option<opentelemetry_otlp::SpanExporter>,
    logs: Option<opentelemetry_otlp::LogExporter>,
    logger: opentelemetry_sdk::logs::SdkLogger,
    _provider: SdkLoggerProvider,
    scope: InstrumentationScope,
}

impl Default for Otlp {
    fn default() -> Self {
        Self::new()
    }
}

// === impl Otlp ===

impl Otlp {
    /// A sink named `otlp` with the OpenTelemetry defaults: gRPC to `http://localhost:4317`,
    /// service name `unknown_service`. The environment is not read (see [`Otlp::from_env`]).
    pub fn new() -> Self {
        Otlp {
            name: "otlp".to_owned(),
            endpoint: None,
            traces_endpoint: None,
            logs_endpoint: None,
            protocol: Protocol::Grpc,
            headers: Vec::new(),
            timeout: DEFAULT_OTLP_TIMEOUT,
            gzip: false,
            service_name: "unknown_service".to_owned(),
            resource_attributes: Vec::new(),
            export_timeout: DEFAULT_EXPORT_TIMEOUT,
            max_batch: DEFAULT_MAX_EXPORT_BATCH_SIZE,
            max_queue: DEFAULT_MAX_QUEUE_SIZE,
            max_retries: DEFAULT_MAX_RETRIES,
            traces: true,
            logs: EventsAsLogs::All,
            warnings: Vec::new(),
            running: None,
            retries: 0,
        }
    }

    /// Reads OpenTelemetry's standard variables (see the README's OTLP table). Invalid values
    /// are ignored with a warning (on stderr when the pipeline is built, and in
    /// [`Otlp::warnings`]).
    pub fn from_env() -> Self {
        Self::from_env_with(&|var| std::env::var(var).ok())
    }

    /// Like [`from_env`](Self::from_env), but an invalid variable is an error.
    pub fn try_from_env() -> Result<Self, crate::BuildError> {
        let sink = Self::from_env();
        if sink.warnings.is_empty() {
            Ok(sink)
        } else {
            Err(crate::BuildError::InvalidEnv(sink.warnings))
        }
    }

    /// [`from_env`](Self::from_env) with a custom lookup.
    pub fn from_env_with(lookup: &dyn Fn(&str) -> Option<String>) -> Self {
        let mut s = Self::new();
        let mut env = EnvReader::new(lookup);
        if let Some(p) = env.parse("OTEL_EXPORTER_OTLP_PROTOCOL", &"grpc", Protocol::parse) {
            s.protocol = p;
        }
        s.endpoint = env.raw("OTEL_EXPORTER_OTLP_ENDPOINT");
        s.traces_endpoint = env.raw("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        s.logs_endpoint = env.raw("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT");
        if let Some(h) = env.parse("OTEL_EXPORTER_OTLP_HEADERS", &"none", parse_pairs) {
            s.headers = h;
        }
        if let Some(t) = env.parse("OTEL_EXPORTER_OTLP_TIMEOUT", &"10000", crate::env::millis) {
            s.timeout = t;
        }
        if let Some(gzip) = env.parse("OTEL_EXPORTER_OTLP_COMPRESSION", &"none", |v| {
            match v.to_ascii_lowercase().as_str() {
                "gzip" => Ok(true),
                "none" => Ok(false),
                _ => Err("gzip or none".to_owned()),
            }
        }) {
            s.gzip = gzip;
        }
        if let Some(attrs) = env.parse("OTEL_RESOURCE_ATTRIBUTES", &"none", parse_pairs) {
            if let Some((_, name)) = attrs.iter().find(|(k, _)| k == "service.name") {
                s.service_name = name.clone();
            }
            s.resource_attributes = attrs
                .into_iter()
                .filter(|(k, _)| k != "service.name")
                .collect();
        }
        if let Some(name) = env.raw("OTEL_SERVICE_NAME") {
            s.service_name = name;
        }
        if let Some(t) = env.parse("OTEL_BSP_EXPORT_TIMEOUT", &"30000", crate::env::millis) {
            s.export_timeout = t;
        }
        if let Some(n) = env.parse(
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
            &DEFAULT_MAX_EXPORT_BATCH_SIZE,
            crate::env::positive_usize,
        ) {
            s.max_batch = n;
        }
        if let Some(n) = env.parse(
            "OTEL_BSP_MAX_QUEUE_SIZE",
            &DEFAULT_MAX_QUEUE_SIZE,
            crate::env::positive_usize,
        ) {
            s.max_queue = n;
        }
        // Read for validation; batching is the pipeline's (see the README).
        let _ = env.parse("OTEL_BSP_SCHEDULE_DELAY", &"5000", crate::env::millis);
        let exporter = |v: &str| match v.to_ascii_lowercase().as_str() {
            "otlp" => Ok(true),
            "none" | "console" => Ok(false),
            _ => Err("otlp, console or none".to_owned()),
        };
        if let Some(on) = env.parse("OTEL_TRACES_EXPORTER", &"otlp", exporter) {
            s.traces = on;
        }
        if let Some(on) = env.parse("OTEL_LOGS_EXPORTER", &"otlp", exporter) {
            if !on {
                s.logs = EventsAsLogs::None;
            }
        }
        s.warnings = env.warnings;
        s
    }

    /// Problems found in the environment by [`from_env`](Self::from_env).
    pub fn warnings(&self) -> &[EnvWarning] {
        &self.warnings
    }

    /// Renames the sink (default `otlp`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The collector's base endpoint (default `http://localhost:4317` for gRPC,
    /// `http://localhost:4318` for HTTP, where `/v1/traces` and `/v1/logs` are appended).
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The transport (default [`Protocol::Grpc`]).
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Adds a header (gRPC metadata) sent with every request, e.g. an API key. Header values
    /// never appear in the effective configuration or in `Debug` output.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((key.into(), value.into()));
        self
    }

    /// The timeout of one request (default [`DEFAULT_OTLP_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Compresses requests with gzip (default off).
    pub fn gzip(mut self, on: bool) -> Self {
        self.gzip = on;
        self
    }

    /// The `service.name` resource attribute (default `unknown_service`).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = name.into();
        self
    }

    /// Adds a resource attribute.
    pub fn resource_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.resource_attributes.push((key.into(), value.into()));
        self
    }

    /// The bound on one export including its retries (default [`DEFAULT_EXPORT_TIMEOUT`]);
    /// applied to every export.
    pub fn export_timeout(mut self, timeout: Duration) -> Self {
        self.export_timeout = timeout;
        self
    }

    /// Records per OTLP request (default [`DEFAULT_MAX_EXPORT_BATCH_SIZE`]).
    pub fn max_export_batch_size(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }

    /// This sink's buffer in records (default [`DEFAULT_MAX_QUEUE_SIZE`]).
    pub fn max_queue_size(mut self, n: usize) -> Self {
        self.max_queue = n.max(1);
        self
    }

    /// Retries of a failed request (default [`DEFAULT_MAX_RETRIES`]).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// Whether spans are exported (default yes; `OTEL_TRACES_EXPORTER=none` turns it off).
    pub fn traces(mut self, on: bool) -> Self {
        self.traces = on;
        self
    }

    /// Which events are exported as log records (default [`EventsAsLogs::All`]).
    pub fn events_as_logs(mut self, which: EventsAsLogs) -> Self {
        self.logs = which;
        self
    }

    fn signal_endpoint(&self, specific: &Option<String>, path: &str) -> String {
        if let Some(e) = specific {
            return e.clone();
        }
        let base = self
            .endpoint
            .clone()
            .unwrap_or_else(|| self.protocol.default_endpoint().to_owned());
        match self.protocol {
            Protocol::Grpc => base,
            _ => format!("{}/{path}", base.trim_end_matches('/')),
        }
    }

    fn resource(&self) -> Resource {
        Resource::builder_empty()
            .with_service_name(self.service_name.clone())
            .with_attributes(
                self.resource_attributes
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
            )
            .with_attributes([
                KeyValue::new("telemetry.sdk.name", "tracing-offload"),
                KeyValue::new("telemetry.sdk.language", "rust"),
                KeyValue::new("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
            ])
            .build()
    }

    fn build_exporters(
        &self,
    ) -> Result<
        (
            Option<opentelemetry_otlp::SpanExporter>,
            Option<opentelemetry_otlp::LogExporter>,
        ),
        String,
    > {
        let traces_url = self.signal_endpoint(&self.traces_endpoint, "v1/traces");
        let logs_url = self.signal_endpoint(&self.logs_endpoint, "v1/logs");
        let headers: HashMap<String, String> = self.headers.iter().cloned().collect();
        let err = |e: opentelemetry_otlp::ExporterBuildError| e.to_string();
        let mut spans = None;
        let mut logs = None;
        match self.protocol {
            Protocol::Grpc => {
                let metadata = metadata(&self.headers)?;
                if self.traces {
                    let mut b = opentelemetry_otlp::SpanExporter::builder()
                        .with_tonic()
                        .with_endpoint(traces_url)
                        .with_timeout(self.timeout)
                        .with_metadata(metadata.clone());
                    if self.gzip {
                        b = b.with_compression(opentelemetry_otlp::Compression::Gzip);
                    }
                    spans = Some(b.build().map_err(err)?);
                }
                if self.logs != EventsAsLogs::None {
                    let mut b = opentelemetry_otlp::LogExporter::builder()
                        .with_tonic()
                        .with_endpoint(logs_url)
                        .with_timeout(self.timeout)
                        .with_metadata(metadata);
                    if self.gzip {
                        b = b.with_compression(opentelemetry_otlp::Compression::Gzip);
                    }
                    logs = Some(b.build().map_err(err)?);
                }
            }
            Protocol::HttpProtobuf | Protocol::HttpJson => {
                let protocol = if self.protocol == Protocol::HttpJson {
                    opentelemetry_otlp::Protocol::HttpJson
                } else {
                    opentelemetry_otlp::Protocol::HttpBinary
                };
                if self.traces {
                    let mut b = opentelemetry_otlp::SpanExporter::builder()
                        .with_http()
                        .with_protocol(protocol)
                        .with_endpoint(traces_url)
                        .with_timeout(self.timeout)
                        .with_headers(headers.clone());
                    if self.gzip {
                        b = b.with_compression(opentelemetry_otlp::Compression::Gzip);
                    }
                    spans = Some(b.build().map_err(err)?);
                }
                if self.logs != EventsAsLogs::None {
                    let mut b = opentelemetry_otlp::LogExporter::builder()
                        .with_http()
                        .with_protocol(protocol)
                        .with_endpoint(logs_url)
                        .with_timeout(self.timeout)
                        .with_headers(headers);
                    if self.gzip {
                        b = b.with_compression(opentelemetry_otlp::Compression::Gzip);
                    }
                    logs = Some(b.build().map_err(err)?);
                }
            }
        }
        Ok((spans, logs))
    }

    /// Runs `export` until it succeeds, retrying with exponential back-off and jitter, at most
    /// `max_retries` times and never past `deadline`.
    fn with_retries<F, Fut>(
        rt: &BackgroundRuntime,
        max_retries: u32,
        deadline: Instant,
        retries: &mut u64,
        mut export: F,
    ) -> Result<(), SinkError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = opentelemetry_sdk::error::OTelSdkResult>,
    {
        let mut backoff = INITIAL_BACKOFF;
        let mut attempt = 0;
        loop {
            let result = match rt.run(deadline, export()) {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err("export timed out".to_owned()),
            };
            let error = match result {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let jitter = crate::ids::random_u64() % (backoff.as_millis() as u64 / 2 + 1);
            let sleep = backoff + Duration::from_millis(jitter);
            if attempt >= max_retries || Instant::now() + sleep >= deadline {
                return Err(SinkError::Retryable(format!(
                    "OTLP export failed after {} attempts: {error}",
                    attempt + 1
                )));
            }
            attempt += 1;
            *retries += 1;
            // Back-off on the sink's own thread: the application never waits on it.
            rt.sleep(sleep)?;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

fn parse_pairs(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| "comma-separated key=value pairs".to_owned())?;
            let (k, v) = (percent_decode(k.trim()), percent_decode(v.trim()));
            if k.is_empty() {
                return Err("comma-separated key=value pairs with non-empty keys".to_owned());
            }
            Ok((k, v))
        })
        .collect()
}

/// Decodes `%XX` escapes (the W3C baggage format OTel uses for headers and attributes).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn metadata(
    headers: &[(String, String)],
) -> Result<opentelemetry_otlp::tonic_types::metadata::MetadataMap, String> {
    let mut map = http::HeaderMap::new();
    for (k, v) in headers {
        let key = http::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())
            .map_err(|_| format!("invalid header name {k:?}"))?;
        let value = http::HeaderValue::from_str(v)
            .map_err(|_| format!("invalid value for header {k:?}"))?;
        map.insert(key, value);
    }
    Ok(opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(map))
}

impl Sink for Otlp {
    fn name(&self) -> &str {
        &self.name
    }

    fn start(&mut self) -> Result<(), SinkError> {
        let rt = BackgroundRuntime::new("the OTLP sink")?;
        // The exporters spawn their connection tasks on the runtime they are built in. `start`
        // runs on the application's thread, maybe inside its runtime: enter ours (allowed
        // there), never block on it.
        let (mut spans, mut logs) = rt
            .enter(|| self.build_exporters())?
            .map_err(SinkError::Fatal)?;
        let resource = self.resource();
        if let Some(s) = spans.as_mut() {
            s.set_resource(&resource);
        }
        if let Some(l) = logs.as_mut() {
            l.set_resource(&resource);
        }
        let provider = SdkLoggerProvider::builder().build();
        let logger = provider.logger("tracing-offload");
        self.running = Some(Running {
            rt,
            spans,
            logs,
            logger,
            _provider: provider,
            scope: InstrumentationScope::builder("tracing-offload")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        });
        Ok(())
    }

    fn export(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        let Some(run) = self.running.as_ref() else {
            return Err(SinkError::Fatal("the OTLP sink was not started".to_owned()));
        };
        let rt = &run.rt;
        let deadline = crate::clock::deadline_after(self.export_timeout);
        let mut spans = Vec::new();
        let mut logs = Vec::new();
        for record in batch {
            match record {
                Record::Span(s) if run.spans.is_some() => spans.push(span_data(s, &run.scope)),
                Record::Event(e) if self.wants_log(e) => logs.push(log_record(&run.logger, e)),
                Record::Dropped(d) if run.logs.is_some() => {
                    logs.push(drop_marker(&run.logger, &d.to_string(), d.at))
                }
                _ => {}
            }
        }
        let mut first_error = None;
        if let Some(exporter) = run.spans.as_ref() {
            let mut spans = spans.into_iter().peekable();
            while spans.peek().is_some() {
                let chunk: Vec<SpanData> = spans.by_ref().take(self.max_batch).collect();
                let r =
                    Self::with_retries(rt, self.max_retries, deadline, &mut self.retries, || {
                        exporter.export(chunk.clone())
                    });
                if let Err(e) = r {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(exporter) = run.logs.as_ref() {
            for chunk in logs.chunks(self.max_batch) {
                let pairs: Vec<(&SdkLogRecord, &InstrumentationScope)> =
                    chunk.iter().map(|r| (r, &run.scope)).collect();
                let r =
                    Self::with_retries(rt, self.max_retries, deadline, &mut self.retries, || {
                        exporter.export(LogBatch::new(&pairs))
                    });
                if let Err(e) = r {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn shutdown(&mut self, deadline: Instant) -> Result<(), SinkError> {
        let Some(mut run) = self.running.take() else {
            return Ok(());
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if let Some(s) = run.spans.as_mut() {
            let _ = s.shutdown_with_timeout(left);
        }
        if let Some(l) = run.logs.as_mut() {
            let _ = l.shutdown_with_timeout(left);
        }
        run.rt.shutdown(deadline);
        Ok(())
    }

    fn wants_span_events(&self) -> bool {
        self.traces
    }

    fn buffer_capacity(&self) -> Option<usize> {
        Some(self.max_queue)
    }

    fn retries(&self) -> u64 {
        self.retries
    }

    fn settings(&self) -> serde_json::Value {
        serde_json::json!({
            "traces_endpoint": self.traces.then(|| self.signal_endpoint(&self.traces_endpoint, "v1/traces")),
            "logs_endpoint": (self.logs != EventsAsLogs::None)
                .then(|| self.signal_endpoint(&self.logs_endpoint, "v1/logs")),
            "protocol": self.protocol,
            "headers": self.headers.iter().map(|(k, _)| (k.clone(), "[redacted]")).collect::<std::collections::BTreeMap<_, _>>(),
            "timeout_ms": self.timeout.as_millis() as u64,
            "compression": if self.gzip { "gzip" } else { "none" },
            "service_name": self.service_name,
            "resource_attributes": self.resource_attributes.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "export_timeout_ms": self.export_timeout.as_millis() as u64,
            "max_export_batch_size": self.max_batch,
            "max_queue_size": self.max_queue,
            "max_retries": self.max_retries,
            "events_as_logs": self.logs,
        })
    }

    fn env_warnings(&self) -> Vec<EnvWarning> {
        self.warnings.clone()
    }
}

impl Otlp {
    fn wants_log(&self, e: &EventRecord) -> bool {
        match self.logs {
            EventsAsLogs::All => true,
            EventsAsLogs::OutsideSpans => e.span_id().is_none(),
            EventsAsLogs::None => false,
        }
    }
}

fn severity(level: LogLevel) -> Severity {
    match level {
        LogLevel::Trace => Severity::Trace,
        LogLevel::Debug => Severity::Debug,
        LogLevel::Info => Severity::Info,
        LogLevel::Warning => Severity::Warn,
        LogLevel::Error => Severity::Error,
        LogLevel::Critical => Severity::Fatal,
    }
}

fn value(v: FieldValue<'_>) -> Value {
    match v {
        FieldValue::I64(v) => Value::I64(v),
        FieldValue::U64(v) => {
            i64::try_from(v).map_or_else(|_| Value::String(v.to_string().into()), Value::I64)
        }
        FieldValue::I128(v) => {
            i64::try_from(v).map_or_else(|_| Value::String(v.to_string().into()), Value::I64)
        }
        FieldValue::U128(v) => {
            i64::try_from(v).map_or_else(|_| Value::String(v.to_string().into()), Value::I64)
        }
        FieldValue::F64(v) => Value::F64(v),
        FieldValue::Bool(v) => Value::Bool(v),
        FieldValue::Str(t) => Value::String(t.to_string().into()),
        other => Value::String(other.to_string().into()),
    }
}

fn any_value(v: FieldValue<'_>) -> AnyValue {
    match value(v) {
        Value::I64(i) => AnyValue::Int(i),
        Value::F64(f) => AnyValue::Double(f),
        Value::Bool(b) => AnyValue::Boolean(b),
        other => AnyValue::String(other.as_str().into_owned().into()),
    }
}

fn code_attributes(
    file: Option<&str>,
    line: Option<u32>,
    module: Option<&str>,
    out: &mut Vec<KeyValue>,
) {
    if let Some(file) = file {
        out.push(KeyValue::new("code.file.path", file.to_owned()));
    }
    if let Some(line) = line {
        out.push(KeyValue::new("code.line.number", i64::from(line)));
    }
    if let Some(module) = module {
        out.push(KeyValue::new("code.module.name", module.to_owned()));
    }
}

fn thread_attributes(t: &crate::ids::ThreadInfo, out: &mut Vec<KeyValue>) {
    out.push(KeyValue::new("thread.id", t.id as i64));
    if let Some(name) = t.name {
        out.push(KeyValue::new("thread.name", name));
    }
}

/// A closed span as OTLP span data, with the `otel.*` conventions of `tracing-opentelemetry`.
fn span_data(s: &SpanRecord, scope: &InstrumentationScope) -> SpanData {
    let mut name: Cow<'static, str> = Cow::Borrowed(s.name());
    let mut kind = SpanKind::Internal;
    let mut status_code: Option<String> = None;
    let mut status_message: Option<String> = None;
    let mut attributes = Vec::with_capacity(s.fields().len() + 5);
    for (key, v) in s.fields().iter() {
        match key {
            "otel.name" => name = Cow::Owned(v.to_string()),
            "otel.kind" => kind = span_kind(&v.to_string()),
            "otel.status_code" => status_code = Some(v.to_string().to_ascii_lowercase()),
            "otel.status_message" => status_message = Some(v.to_string()),
            _ => attributes.push(KeyValue::new(key, value(v))),
        }
    }
    let meta = s.metadata();
    code_attributes(
        meta.file(),
        meta.line(),
        meta.module_path(),
        &mut attributes,
    );
    thread_attributes(&s.thread(), &mut attributes);
    if let Some((busy, idle)) = s.busy_idle() {
        attributes.push(KeyValue::new(
            "busy_ns",
            busy.as_nanos().min(i64::MAX as u128) as i64,
        ));
        attributes.push(KeyValue::new(
            "idle_ns",
            idle.as_nanos().min(i64::MAX as u128) as i64,
        ));
    }
    let mut error_event: Option<String> = None;
    let events = s
        .events()
        .iter()
        .map(|e| {
            let message = e.message().map(|m| m.to_string());
            if e.level() >= LogLevel::Error && error_event.is_none() {
                error_event = Some(message.clone().unwrap_or_else(|| "error".to_owned()));
            }
            let mut attrs: Vec<KeyValue> = vec![
                KeyValue::new("level", e.level().severity_text()),
                KeyValue::new("target", e.target().to_owned()),
            ];
            let mut event_name: Cow<'static, str> =
                message.clone().map_or(Cow::Borrowed("event"), Cow::Owned);
            for (key, v) in e.fields().iter() {
                if key == "error" && message.is_none() {
                    // `tracing-opentelemetry`'s convention: an event that is just an `error`
                    // field is an exception.
                    event_name = Cow::Borrowed("exception");
                    attrs.push(KeyValue::new("exception.message", v.to_string()));
                } else {
                    attrs.push(KeyValue::new(key, value(v)));
                }
            }
            opentelemetry::trace::Event::new(event_name, e.timestamp(), attrs, 0)
        })
        .collect();
    let status = match status_code.as_deref() {
        Some("ok") => Status::Ok,
        Some("error") => Status::error(status_message.unwrap_or_default()),
        _ => match error_event {
            Some(m) => Status::error(m),
            None => Status::Unset,
        },
    };
    SpanData {
        span_context: SpanContext::new(
            OtelTraceId::from_bytes(s.trace_id().0),
            OtelSpanId::from_bytes(s.span_id().0),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: s
            .parent_span_id()
            .map_or(OtelSpanId::INVALID, |p| OtelSpanId::from_bytes(p.0)),
        parent_span_is_remote: s.parent_is_remote(),
        span_kind: kind,
        name,
        start_time: s.start(),
        end_time: s.end(),
        attributes,
        dropped_attributes_count: 0,
        events: span_events(events, s.dropped_events()),
        links: span_links(s.links()),
        status,
        instrumentation_scope: scope.clone(),
    }
}

fn span_links(links: &[crate::ids::SpanContext]) -> SpanLinks {
    let mut l = SpanLinks::default();
    l.links = links
        .iter()
        .map(|c| {
            opentelemetry::trace::Link::with_context(SpanContext::new(
                OtelTraceId::from_bytes(c.trace_id.0),
                OtelSpanId::from_bytes(c.span_id.0),
                if c.sampled {
                    TraceFlags::SAMPLED
                } else {
                    TraceFlags::default()
                },
                false,
                TraceState::default(),
            ))
        })
        .collect();
    l
}

fn span_events(events: Vec<opentelemetry::trace::Event>, dropped: u32) -> SpanEvents {
    let mut e = SpanEvents::default();
    e.events = events;
    e.dropped_count = dropped;
    e
}

fn span_kind(s: &str) -> SpanKind {
    match s.to_ascii_lowercase().as_str() {
        "client" => SpanKind::Client,
        "server" => SpanKind::Server,
        "producer" => SpanKind::Producer,
        "consumer" => SpanKind::Consumer,
        _ => SpanKind::Internal,
    }
}

fn log_record(logger: &opentelemetry_sdk::logs::SdkLogger, e: &EventRecord) -> SdkLogRecord {
    let mut r = logger.create_log_record();
    r.set_timestamp(e.timestamp());
    r.set_observed_timestamp(SystemTime::now());
    r.set_severity_number(severity(e.level()));
    r.set_severity_text(e.level().severity_text());
    r.set_target(e.target().to_owned());
    if let Some(m) = e.message() {
        r.set_body(AnyValue::String(m.to_string().into()));
    }
    for (key, v) in e.fields().iter() {
        r.add_attribute(key, any_value(v));
    }
    let mut extra = Vec::new();
    code_attributes(e.file(), e.line(), e.module_path(), &mut extra);
    thread_attributes(&e.thread(), &mut extra);
    for kv in extra {
        let v = match kv.value {
            Value::I64(i) => AnyValue::Int(i),
            other => AnyValue::String(other.as_str().into_owned().into()),
        };
        r.add_attribute(kv.key, v);
    }
    if let Some(c) = e.span_context() {
        r.set_trace_context(
            OtelTraceId::from_bytes(c.trace_id.0),
            OtelSpanId::from_bytes(c.span_id.0),
            Some(if c.sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            }),
        );
    }
    r
}

fn drop_marker(
    logger: &opentelemetry_sdk::logs::SdkLogger,
    text: &str,
    at: SystemTime,
) -> SdkLogRecord {
    let mut r = logger.create_log_record();
    r.set_timestamp(at);
    // The OTLP encoder requires an observed time on every record.
    r.set_observed_timestamp(SystemTime::now());
    r.set_severity_number(Severity::Warn);
    r.set_severity_text("WARN");
    r.set_target("tracing_offload");
    r.set_body(AnyValue::String(text.to_owned().into()));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_is_read_with_warnings_and_endpoints_follow_the_spec() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            (
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                "http://logs:9999/custom",
            ),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "api-key=s%3Dcret, team = core",
            ),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "abc"),
            ("OTEL_SERVICE_NAME", "checkout"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,service.name=ignored",
            ),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "0"),
        ];
        let lookup = |v: &str| {
            vars.iter()
                .find(|(k, _)| *k == v)
                .map(|(_, x)| x.to_string())
        };
        let s = Otlp::from_env_with(&lookup);
        assert_eq!(s.protocol, Protocol::HttpProtobuf);
        assert_eq!(
            s.signal_endpoint(&s.traces_endpoint, "v1/traces"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            s.signal_endpoint(&s.logs_endpoint, "v1/logs"),
            "http://logs:9999/custom"
        );
        assert_eq!(
            s.headers,
            [
                ("api-key".into(), "s=cret".into()),
                ("team".into(), "core".into())
            ]
        );
        assert_eq!(s.service_name, "checkout");
        assert_eq!(
            s.resource_attributes,
            [("deployment.environment".into(), "prod".into())]
        );
        assert_eq!(s.timeout, DEFAULT_OTLP_TIMEOUT);
        assert_eq!(s.max_batch, DEFAULT_MAX_EXPORT_BATCH_SIZE);
        let vars: Vec<&str> = s.warnings().iter().map(|w| w.var.as_str()).collect();
        assert_eq!(
            vars,
            [
                "OTEL_EXPORTER_OTLP_TIMEOUT",
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"
            ]
        );
        assert!(
            !format!("{s:?}").contains("s=cret"),
            "header values are secret"
        );
    }

    #[test]
    fn grpc_endpoints_are_used_as_given() {
        let s = Otlp::new().endpoint("http://127.0.0.1:4317");
        assert_eq!(
            s.signal_endpoint(&None, "v1/traces"),
            "http://127.0.0.1:4317"
        );
        assert_eq!(
            Otlp::new().signal_endpoint(&None, "v1/traces"),
            "http://localhost:4317"
        );
    }
}
