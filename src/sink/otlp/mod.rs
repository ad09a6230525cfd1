//! `sink::Otlp`: spans and events to an OpenTelemetry collector, through the
//! `opentelemetry-otlp` exporters (gRPC, HTTP/protobuf, HTTP/JSON).
//!
//! The sink runs on its own thread and owns one private tokio runtime (current-thread, driven
//! only by that thread) for its whole life: never one per export, never the application's — the
//! same machinery as [`Async`](crate::sink::Async) for your own async sinks. The runtime's thread
//! is the sink thread, which runs with `tracing`'s `NoSubscriber`, so nothing the exporter's
//! HTTP/gRPC stack logs can come back into the queue.
//!
//! The parts: this file holds the public settings ([`Otlp`], [`Protocol`], [`EventsAsLogs`],
//! the `DEFAULT_*` constants) and the resource; `env` reads OpenTelemetry's variables (each
//! name paired with its default); `endpoint` and `tls` check what the user gave at build time;
//! `sink` builds the exporters and exports (the [`Sink`](crate::sink::Sink) impl); `retry`
//! counts and classifies the exporters' attempts; `convert` is the pure mapping from records to
//! OTel span data and log records.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;

use crate::env::{EnvReader, EnvWarning, InvalidEnv};

mod convert;
mod endpoint;
mod env;
mod retry;
mod sink;
mod tls;

pub use tls::Tls;

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

/// The default timeout of one request with its retries (`OTEL_EXPORTER_OTLP_TIMEOUT`).
pub const DEFAULT_OTLP_TIMEOUT: Duration = Duration::from_secs(10);
/// The default bound on one export including its retries (`OTEL_BSP_EXPORT_TIMEOUT`).
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(30);
/// The default records per OTLP request (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`).
pub const DEFAULT_MAX_EXPORT_BATCH_SIZE: usize = 512;
/// The default sink buffer (`OTEL_BSP_MAX_QUEUE_SIZE`).
pub const DEFAULT_MAX_QUEUE_SIZE: usize = 2_048;
/// Retries of a request that failed transiently (a network error, gRPC `UNAVAILABLE`, HTTP
/// 429/502/503/504, …) before its records are counted as failed. Permanent errors (e.g. HTTP
/// 400, gRPC `INVALID_ARGUMENT`) are never retried.
pub const DEFAULT_MAX_RETRIES: u32 = 5;
/// The first retry's back-off; it doubles (with up to 100 ms of jitter) up to
/// [`MAX_BACKOFF`]. A longer `Retry-After` / `RetryInfo` from the server is honoured (up to
/// 30 s, and never past the request timeout).
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// The longest back-off between retries, unless the server asks for longer.
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
    tls: Tls,
    traces_tls: Tls,
    logs_tls: Tls,
    service_name: String,
    resource_attributes: Vec<(String, String)>,
    export_timeout: Duration,
    max_batch: usize,
    max_queue: usize,
    max_retries: u32,
    traces: bool,
    logs: EventsAsLogs,
    warnings: Vec<EnvWarning>,
    running: Option<sink::Running>,
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
            tls: Tls::new(),
            traces_tls: Tls::new(),
            logs_tls: Tls::new(),
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
        // The process environment as it is: a value that is not UTF-8 is a warning, not unset.
        Self::from_reader(EnvReader::process())
    }

    /// Like [`from_env`](Self::from_env), but an invalid variable is an error (which converts
    /// into [`BuildError::InvalidEnv`](crate::BuildError::InvalidEnv) with `?`).
    pub fn try_from_env() -> Result<Self, InvalidEnv> {
        let sink = Self::from_env();
        if sink.warnings.is_empty() {
            Ok(sink)
        } else {
            Err(InvalidEnv(sink.warnings))
        }
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

    /// The timeout of one request, which is also the budget of its retries: no retry starts, and
    /// no back-off or `Retry-After` wait is taken, that would pass it (default
    /// [`DEFAULT_OTLP_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Compresses requests with gzip (default off).
    pub fn gzip(mut self, on: bool) -> Self {
        self.gzip = on;
        self
    }

    /// TLS files for `https://` endpoints, for both signals (default none: the platform's
    /// roots, no client certificate). Needs the `tls` feature (on by default).
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = tls;
        self
    }

    /// TLS files for the traces endpoint; each file not named here falls back to
    /// [`tls`](Self::tls)'s.
    pub fn traces_tls(mut self, tls: Tls) -> Self {
        self.traces_tls = tls;
        self
    }

    /// TLS files for the logs endpoint; each file not named here falls back to
    /// [`tls`](Self::tls)'s.
    pub fn logs_tls(mut self, tls: Tls) -> Self {
        self.logs_tls = tls;
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

    /// Retries of a request that failed transiently (default [`DEFAULT_MAX_RETRIES`]); all of
    /// them, with their back-off, fit in the request [`timeout`](Self::timeout). Permanent
    /// errors are never retried.
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

    /// The resource: what the SDK's default gives (`telemetry.sdk.*`), host, OS and process
    /// attributes from detectors, this crate as the distribution (`telemetry.distro.*`), then
    /// `OTEL_RESOURCE_ATTRIBUTES` and attributes set in code, then `service.name` (later wins).
    fn resource(&self) -> Resource {
        use opentelemetry_resource_detectors::{
            HostResourceDetector, OsResourceDetector, ProcessResourceDetector,
        };
        use opentelemetry_sdk::resource::{ResourceDetector as _, TelemetryResourceDetector};
        // The process detector also reports the command line (`process.command_args`), which
        // may hold secrets: left out.
        let process = ProcessResourceDetector.detect();
        let process = process
            .iter()
            .filter(|(k, _)| k.as_str() != "process.command_args")
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone()));
        Resource::builder_empty()
            .with_detectors(&[
                Box::new(TelemetryResourceDetector),
                Box::new(HostResourceDetector::default()),
                Box::new(OsResourceDetector),
            ])
            .with_attributes(process)
            .with_attributes([
                KeyValue::new("telemetry.distro.name", "tracing-offload"),
                KeyValue::new("telemetry.distro.version", env!("CARGO_PKG_VERSION")),
            ])
            .with_attributes(
                self.resource_attributes
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
            )
            .with_service_name(self.service_name.clone())
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resource_layers_detectors_env_and_code() {
        let vars = [
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=test,service.name=from-attrs,host.name=pinned",
            ),
            ("OTEL_SERVICE_NAME", "checkout"),
        ];
        let lookup = |v: &str| {
            vars.iter()
                .find(|(k, _)| *k == v)
                .map(|(_, x)| x.to_string())
        };
        let r = Otlp::from_env_with(&lookup)
            .resource_attribute("team", "payments")
            .resource();
        let get = |k: &'static str| r.get(&opentelemetry::Key::from_static_str(k));
        assert_eq!(get("service.name"), Some("checkout".into()));
        assert_eq!(get("deployment.environment"), Some("test".into()));
        assert_eq!(get("team"), Some("payments".into()));
        // The environment wins over a detector.
        assert_eq!(get("host.name"), Some("pinned".into()));
        assert_eq!(get("telemetry.sdk.name"), Some("opentelemetry".into()));
        assert_eq!(get("telemetry.sdk.language"), Some("rust".into()));
        assert_eq!(get("telemetry.distro.name"), Some("tracing-offload".into()));
        assert!(get("process.pid").is_some() && get("os.type").is_some());
        assert!(get("process.command_args").is_none());
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
