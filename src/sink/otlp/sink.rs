//! The running sink: the exporters it builds at start (endpoint checks, TLS, retry policy,
//! attempt counting), and each export.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use opentelemetry::logs::LoggerProvider as _;
use opentelemetry::InstrumentationScope;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter as _, SdkLogRecord, SdkLoggerProvider};
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};

use super::endpoint::{self, Scheme};
use super::retry::{self, Attempts, CountingClient, HttpOutcome};
use super::tls::{LoadedTls, Tls};
use super::{convert, EventsAsLogs, Otlp, Protocol, INITIAL_BACKOFF, MAX_BACKOFF};
use crate::env::EnvWarning;
use crate::record::{EventRecord, Record};
use crate::sink::runtime::BackgroundRuntime;
use crate::sink::{Sink, SinkError};

/// What a started sink holds: its runtime, exporters and the logger that makes log records.
pub(super) struct Running {
    rt: BackgroundRuntime,
    spans: Option<SpanExporter>,
    logs: Option<LogExporter>,
    logger: opentelemetry_sdk::logs::SdkLogger,
    _provider: SdkLoggerProvider,
    /// The spans' scope: this crate, the library that made them.
    scope: InstrumentationScope,
    /// The log records' scope: no name or version of its own, so that the exporter names it
    /// after each record's target (as opentelemetry-appender-tracing does).
    log_scope: InstrumentationScope,
}

/// One signal's exporter and the count of its request attempts.
struct Exporter<E> {
    inner: E,
    attempts: Arc<Attempts>,
}

type SpanExporter = Exporter<opentelemetry_otlp::SpanExporter>;
type LogExporter = Exporter<opentelemetry_otlp::LogExporter>;

/// Where one signal goes and how: its checked endpoint and TLS files.
struct Target {
    url: String,
    tls: Option<LoadedTls>,
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
        let files = tls.over(&self.tls);
        match endpoint::validate(&url, &what)? {
            Scheme::Http => {
                if !files.is_empty() {
                    return Err(format!(
                        "TLS files are set for {what}, but it is {url:?}: use https:// to \
                         connect over TLS, or remove the TLS files"
                    ));
                }
                Ok(Target { url, tls: None })
            }
            Scheme::Https if cfg!(not(feature = "tls")) => Err(format!(
                "{what} {url:?} uses TLS, but tracing-offload was built without its `tls` \
                 feature (on by default): enable it, or use an http:// endpoint"
            )),
            Scheme::Https => Ok(Target {
                url,
                tls: Some(files.load()?),
            }),
        }
    }

    fn build_exporters(&self) -> Result<(Option<SpanExporter>, Option<LogExporter>), String> {
        let mut spans = None;
        let mut logs = None;
        if self.traces {
            let target = self.target(Signal::Traces)?;
            let attempts = Arc::new(Attempts::default());
            let builder = opentelemetry_otlp::SpanExporter::builder();
            let inner = match self.protocol {
                Protocol::Grpc => self
                    .tonic(builder.with_tonic(), &target, &attempts)?
                    .build(),
                _ => self.http(builder.with_http(), &target, &attempts)?.build(),
            };
            spans = Some(Exporter {
                inner: inner.map_err(|e| e.to_string())?,
                attempts,
            });
        }
        if self.logs != EventsAsLogs::None {
            let target = self.target(Signal::Logs)?;
            let attempts = Arc::new(Attempts::default());
            let builder = opentelemetry_otlp::LogExporter::builder();
            let inner = match self.protocol {
                Protocol::Grpc => self
                    .tonic(builder.with_tonic(), &target, &attempts)?
                    .build(),
                _ => self.http(builder.with_http(), &target, &attempts)?.build(),
            };
            logs = Some(Exporter {
                inner: inner.map_err(|e| e.to_string())?,
                attempts,
            });
        }
        Ok((spans, logs))
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
            .with_endpoint(target.url.clone())
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
        #[cfg(feature = "tls")]
        if let Some(tls) = &target.tls {
            b = b.with_tls_config(tls.tonic_config()?);
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
            EventsAsLogs::OutsideSpans => e.span_id().is_none(),
            EventsAsLogs::None => false,
        }
    }

    /// Classifies a failed export of one chunk into the sink's error.
    fn export_failure(
        &self,
        what: &str,
        attempts: &Attempts,
        tried: u64,
        error: String,
    ) -> SinkError {
        let failure = match self.protocol {
            Protocol::Grpc => retry::classify_grpc(&error, tried),
            _ => retry::classify_http(attempts.last_http().as_ref()),
        };
        let detail = match attempts.last_http() {
            // The HTTP exporter says only "network error": add what the client saw.
            Some(HttpOutcome::Transport(cause)) if self.protocol != Protocol::Grpc => {
                format!("{error} ({cause})")
            }
            _ => error,
        };
        retry::export_error(failure, what, tried, &detail)
    }
}

/// The reqwest client of the HTTP transport. With the `tls` feature it always gets a rustls
/// configuration of ours (reqwest would otherwise look for a process-wide crypto provider).
fn reqwest_client(
    timeout: std::time::Duration,
    tls: Option<&LoadedTls>,
) -> Result<reqwest::Client, String> {
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

/// Runs one export on the sink's runtime and returns the attempts it took with its result.
fn run_export(
    rt: &BackgroundRuntime,
    deadline: Instant,
    attempts: &Attempts,
    export: impl std::future::Future<Output = OTelSdkResult>,
) -> (u64, Result<(), Result<String, SinkError>>) {
    let before = attempts.count();
    let result = match rt.run(deadline, export) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Ok(e.to_string())),
        Err(timed_out) => Err(Err(timed_out)),
    };
    (attempts.count() - before, result)
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
            s.inner.set_resource(&resource);
        }
        if let Some(l) = logs.as_mut() {
            l.inner.set_resource(&resource);
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
            log_scope: InstrumentationScope::builder("").build(),
        });
        Ok(())
    }

    fn export(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        let Some(run) = self.running.as_ref() else {
            return Err(SinkError::Fatal("the OTLP sink was not started".to_owned()));
        };
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
        let mut retries = 0;
        let mut first_error = None;
        let mut outcome = |what: &str, attempts: &Attempts, (tried, result)| {
            retries += u64::saturating_sub(tried, 1);
            let error = match result {
                Ok(()) => return,
                Err(Ok(message)) => self.export_failure(what, attempts, tried, message),
                Err(Err(timed_out)) => timed_out,
            };
            first_error.get_or_insert(error);
        };
        if let Some(exporter) = run.spans.as_ref() {
            let mut spans = spans.into_iter().peekable();
            while spans.peek().is_some() {
                let chunk: Vec<SpanData> = spans.by_ref().take(self.max_batch).collect();
                let attempts = &exporter.attempts;
                let ran = run_export(&run.rt, deadline, attempts, exporter.inner.export(chunk));
                outcome("spans", attempts, ran);
            }
        }
        if let Some(exporter) = run.logs.as_ref() {
            for chunk in logs.chunks(self.max_batch) {
                let pairs: Vec<(&SdkLogRecord, &InstrumentationScope)> =
                    chunk.iter().map(|r| (r, &run.log_scope)).collect();
                let attempts = &exporter.attempts;
                let export = exporter.inner.export(LogBatch::new(&pairs));
                let ran = run_export(&run.rt, deadline, attempts, export);
                outcome("logs", attempts, ran);
            }
        }
        self.retries += retries;
        first_error.map_or(Ok(()), Err)
    }

    fn shutdown(&mut self, deadline: Instant) -> Result<(), SinkError> {
        let Some(mut run) = self.running.take() else {
            return Ok(());
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if let Some(s) = run.spans.as_mut() {
            let _ = s.inner.shutdown_with_timeout(left);
        }
        if let Some(l) = run.logs.as_mut() {
            let _ = l.inner.shutdown_with_timeout(left);
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
        let tls = |specific: &Tls| {
            let files = specific.over(&self.tls);
            (!files.is_empty()).then_some(files)
        };
        serde_json::json!({
            "traces_endpoint": self.traces.then(|| self.signal_endpoint(&self.traces_endpoint, "v1/traces")),
            "logs_endpoint": (self.logs != EventsAsLogs::None)
                .then(|| self.signal_endpoint(&self.logs_endpoint, "v1/logs")),
            "protocol": self.protocol,
            "headers": self.headers.iter().map(|(k, _)| (k.clone(), "[redacted]")).collect::<std::collections::BTreeMap<_, _>>(),
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
        })
    }

    fn env_warnings(&self) -> Vec<EnvWarning> {
        self.warnings.clone()
    }
}
