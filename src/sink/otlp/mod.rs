//! `sink::Otlp`: spans and events to an OpenTelemetry collector, through the
//! `opentelemetry-otlp` exporters (gRPC, HTTP/protobuf, HTTP/JSON).
//!
//! The sink runs on its own thread and owns one private tokio runtime (current-thread, driven
//! only by that thread) for its whole life: never one per export, never the application's — the
//! same machinery as [`Async`](crate::sink::Async) for your own async sinks. The runtime's thread
//! is the sink thread, from which the layer records nothing, so nothing the exporter's HTTP/gRPC
//! stack logs can come back into the queue (the application's other layers still see it). With
//! a [spool](Otlp::spool), the runtime is driven by the spool's own thread
//! (`offload-spool-<name>`, marked in the same way), so that an export goes on while the sink
//! thread moves on to the next batch.
//!
//! The parts: this file holds the public settings ([`Otlp`], [`Protocol`], [`EventsAsLogs`],
//! the `DEFAULT_*` constants) and the resource; `env` reads OpenTelemetry's variables (each
//! name paired with its default); `endpoint` and `tls` check what the user gave at build time;
//! `sink` builds the exporters and exports (the [`Sink`](crate::sink::Sink) impl); `retry`
//! counts and classifies the exporters' attempts; `convert` is the pure mapping from records to
//! OTel span data and log records; `spool` keeps what the collector cannot take on disk and
//! replays it (its module docs explain the design and the on-disk format).

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;

use crate::env::{EnvReader, EnvWarning, InvalidEnv};

mod convert;
mod endpoint;
mod env;
mod retry;
mod riders;
mod sink;
mod spool;
mod tls;

#[cfg(feature = "tls")]
pub use tls::install_rustls_provider;
pub use tls::Tls;
use tls::TlsReads;

/// The OTLP transport. Serialised (in `/config`) as `OTEL_EXPORTER_OTLP_PROTOCOL` spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Protocol {
    /// gRPC (`grpc`), default port 4317.
    #[serde(rename = "grpc")]
    Grpc,
    /// HTTP with protobuf bodies (`http/protobuf`), default port 4318.
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// HTTP with JSON bodies (`http/json`), default port 4318.
    #[serde(rename = "http/json")]
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
///
/// An event that travels only as a span event is counted `exported` with its batch; if its
/// span's record then does not reach the collector (its request failed, the span was still
/// open at shutdown, its record was dropped, or the pipeline gave up on the sink: shutdown's
/// deadline passed while it exported; or it was spooled, and the spool then evicted it, found
/// it corrupt, or the collector rejected it on replay), the event counts as the sink's
/// [`lost_after_export`](crate::SinkStats::lost_after_export) too. (Events past a span's
/// `OTEL_SPAN_EVENT_COUNT_LIMIT` are counted by the pipeline, in `span_events_dropped`.)
///
/// Bounds of that count: a span spooled by an earlier process and lost by this one's spool
/// counts its events nowhere (that process counted them delivered when it spooled them, and
/// this one never counted them exported); past 65 536 spans with such events waiting at once, the
/// oldest span's events are counted lost, though its record may still come (tail sampling
/// that drops the traces of kept `ERROR` events, which go on at once, leaves spans that never
/// come). `OutsideSpans` sends an event as a log record when its trace was sampled out at its
/// head; an event kept through tail sampling whose trace is then dropped has no span to travel
/// on and counts as lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum EventsAsLogs {
    /// Every event (the default). Events inside a span are also span events on it.
    All,
    /// Only events outside any span, and events in a trace head-sampled out (they have no span
    /// record to travel on); events inside sampled spans travel as span events only.
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
/// The default budget of the [spool](Otlp::spool) in bytes on disk
/// (`OFFLOAD_OTLP_SPOOL_MAX_BYTES`): 256 MiB.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// The smallest spool budget: 64 KiB.
pub const MIN_SPOOL_MAX_BYTES: u64 = 64 * 1024;
/// The largest spool budget: 1 TiB.
pub const MAX_SPOOL_MAX_BYTES: u64 = 1 << 40;
/// How long the sink waits for a live export, when it has a spool, before it writes the request
/// to the spool and moves on (see [`Otlp::spool_after`]).
pub const DEFAULT_SPOOL_AFTER: Duration = Duration::from_millis(250);

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
/// be delivered is counted as failed in the sink's stats, unless the sink has a
/// [spool](Otlp::spool), which keeps it on disk and delivers it when the collector is back.
pub struct Otlp {
    /// The TLS files read so far, by path: each is read once, as a pipe can be.
    tls_reads: TlsReads,
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
    spool_dir: Option<PathBuf>,
    spool_max_bytes: u64,
    spool_after: Duration,
    warnings: Vec<EnvWarning>,
    running: Option<sink::Running>,
    /// The spool, once the sink has stopped: its stats still change while shutdown waits for
    /// the replay's requests in flight, and after.
    stopped_spool: Option<std::sync::Arc<spool::Spool>>,
    /// The spool's directories that `start` made (removed again if the build fails).
    spool_dirs_made: Vec<PathBuf>,
    /// Export retries so far (live exports may end on the spool's thread).
    retries: Arc<AtomicU64>,
    /// The last batch's drop markers were held back, not spooled (see
    /// [`Sink::markers_deferred`](crate::sink::Sink::markers_deferred)).
    markers_deferred: std::sync::atomic::AtomicBool,
    /// Events that reach the collector only on their span's record, and those lost.
    riders: riders::Riders,
}

impl std::fmt::Debug for Otlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Otlp")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint.as_deref().map(endpoint::redact))
            .field(
                "traces_endpoint",
                &self.traces_endpoint.as_deref().map(endpoint::redact),
            )
            .field(
                "logs_endpoint",
                &self.logs_endpoint.as_deref().map(endpoint::redact),
            )
            .field("protocol", &self.protocol)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("service_name", &self.service_name)
            .field("spool_dir", &self.spool_dir)
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
            tls_reads: TlsReads::default(),
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
            spool_dir: None,
            spool_max_bytes: DEFAULT_SPOOL_MAX_BYTES,
            spool_after: DEFAULT_SPOOL_AFTER,
            warnings: Vec::new(),
            running: None,
            stopped_spool: None,
            spool_dirs_made: Vec::new(),
            retries: Arc::new(AtomicU64::new(0)),
            markers_deferred: Default::default(),
            riders: Default::default(),
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
    /// Credentials in the URL (`http://user:password@host`) are hidden (`user:***@host`)
    /// wherever the endpoint is shown: the effective configuration, `Debug`, errors.
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
    /// never appear in the effective configuration, in `Debug` output or in errors. A name or
    /// value that HTTP cannot carry fails `build()` with an error naming the header by its
    /// place (and by its name when the name is valid).
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

    /// Keeps what the collector cannot take in a durable spool in `dir` (created if needed;
    /// `OFFLOAD_OTLP_SPOOL_DIR`), and replays it, oldest first, when the collector is back,
    /// while new records keep flowing. Default: no spool (what cannot be delivered is counted
    /// failed). A relative `dir` is taken from the current directory now, once.
    ///
    /// What goes there: every request that failed transiently after the exporter's retries
    /// (the collector unreachable, overloaded), every request while the collector is known to
    /// be unreachable, and a request the collector has not answered within
    /// [`spool_after`](Self::spool_after), so that the sink's buffer keeps draining in an
    /// outage instead of filling up. Requests the collector refuses for good (HTTP 400, gRPC
    /// `INVALID_ARGUMENT`, …) are not spooled: they would be refused again.
    ///
    /// The spool survives the process: the next start with the same directory replays what the
    /// last one left. A crash loses at most the request being written, which is found by its
    /// checksum and counted. The budget is [`spool_max_bytes`](Self::spool_max_bytes): past
    /// it, the oldest requests are evicted (counted). One directory per sink: a second sink or
    /// process on the same directory fails to start.
    ///
    /// The stats show the spool ([`SinkStats::spool`](crate::SinkStats::spool)): records
    /// `spooled` are counted at the sink; what became of them (replayed, evicted, corrupt,
    /// rejected) and what the spool holds (bytes, the oldest's age, whether it replays) are
    /// in the spool's own stats, in the Prometheus metrics and in health.
    ///
    /// ```
    /// use tracing_offload::sink::Otlp;
    ///
    /// let sink = Otlp::new()
    ///     .endpoint("http://127.0.0.1:4317")
    ///     .spool("/var/spool/my-app/otlp")
    ///     .spool_max_bytes(64 * 1024 * 1024);
    /// # drop(sink);
    /// ```
    pub fn spool(mut self, dir: impl Into<PathBuf>) -> Self {
        self.spool_dir = Some(crate::sink::absolute(dir.into()));
        self
    }

    /// The spool's budget in bytes on disk (default [`DEFAULT_SPOOL_MAX_BYTES`], 256 MiB;
    /// `OFFLOAD_OTLP_SPOOL_MAX_BYTES`), within [`MIN_SPOOL_MAX_BYTES`] ..=
    /// [`MAX_SPOOL_MAX_BYTES`]: a value outside makes the pipeline's `build()` fail with
    /// [`BuildError::Sink`](crate::BuildError::Sink), which says the range. The spool deletes
    /// its oldest files (about a sixteenth of the budget at a time) to stay within it; a single
    /// request larger than the whole budget is counted failed, so leave room for several
    /// requests (a request of [`max_export_batch_size`](Self::max_export_batch_size) spans or
    /// log records takes roughly 200 bytes each).
    pub fn spool_max_bytes(mut self, bytes: u64) -> Self {
        self.spool_max_bytes = bytes;
        self
    }

    /// With a spool: how long the sink waits for a live export before it writes the request to
    /// the spool as well and moves on (default [`DEFAULT_SPOOL_AFTER`], 250 ms). The export goes
    /// on; if it succeeds, the spooled copy is dropped (counted replayed), if it fails, the copy
    /// is replayed. Keep it below the pipeline's
    /// [`sink_stall_after`](crate::Builder::sink_stall_after) (half the timeout under
    /// `Backpressure::Block`), so that the sink never counts as stalled while it waits.
    pub fn spool_after(mut self, wait: Duration) -> Self {
        self.spool_after = wait;
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
            _ => with_signal_path(&base, path),
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

/// `base` with the signal's `path` appended to its path (before a query or a fragment, which
/// stay as they are: `http://h/otlp?key=k` gives `http://h/otlp/v1/traces?key=k`).
fn with_signal_path(base: &str, path: &str) -> String {
    let end = base.find(['?', '#']).unwrap_or(base.len());
    let (before, after) = base.split_at(end);
    // The path's trailing slashes go, not the `//` of `scheme://` (`http:///` has no host,
    // and must say so, not become `http:/v1/traces`).
    let mut trimmed = before.trim_end_matches('/');
    if trimmed.ends_with(':') && before[trimmed.len()..].starts_with("//") {
        trimmed = &before[..trimmed.len() + 2];
    }
    format!("{trimmed}/{path}{after}")
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
    fn http_signal_paths_go_on_the_path_not_after_the_query() {
        let s = Otlp::new()
            .protocol(Protocol::HttpProtobuf)
            .endpoint("http://h:4318/otlp/?api_key=k&x=1#f");
        assert_eq!(
            s.signal_endpoint(&None, "v1/traces"),
            "http://h:4318/otlp/v1/traces?api_key=k&x=1#f"
        );
        let s = s.endpoint("http://h:4318#f");
        assert_eq!(
            s.signal_endpoint(&None, "v1/logs"),
            "http://h:4318/v1/logs#f"
        );
        let s = s.endpoint("http://h:4318/");
        assert_eq!(s.signal_endpoint(&None, "v1/logs"), "http://h:4318/v1/logs");
        let s = s.endpoint("http:///?k=v");
        assert_eq!(s.signal_endpoint(&None, "v1/logs"), "http:///v1/logs?k=v");
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
