//! The running sink: the exporters it builds at start, and each export with its retries.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use opentelemetry::logs::LoggerProvider as _;
use opentelemetry::InstrumentationScope;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::logs::{LogBatch, LogExporter as _, SdkLogRecord, SdkLoggerProvider};
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};

use super::convert;
use super::{EventsAsLogs, Otlp, Protocol, INITIAL_BACKOFF, MAX_BACKOFF};
use crate::env::EnvWarning;
use crate::record::{EventRecord, Record};
use crate::sink::runtime::BackgroundRuntime;
use crate::sink::{Sink, SinkError};

/// What a started sink holds: its runtime, exporters and the logger that makes log records.
pub(super) struct Running {
    rt: BackgroundRuntime,
    spans: Option<opentelemetry_otlp::SpanExporter>,
    logs: Option<opentelemetry_otlp::LogExporter>,
    logger: opentelemetry_sdk::logs::SdkLogger,
    _provider: SdkLoggerProvider,
    scope: InstrumentationScope,
}

// === impl Otlp ===

impl Otlp {
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
                Record::Span(s) if run.spans.is_some() => {
                    spans.push(convert::span_data(s, &run.scope))
                }
                Record::Event(e) if self.wants_log(e) => {
                    logs.push(convert::log_record(&run.logger, e))
                }
                Record::Dropped(d) if run.logs.is_some() => {
                    logs.push(convert::drop_marker(&run.logger, &d.to_string(), d.at))
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
