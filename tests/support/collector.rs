//! A real OpenTelemetry collector for the OTLP tests: the Rotel agent (`pip install rotel`),
//! started on free loopback ports with its debug exporter, whose output is parsed into the spans
//! and log records it received.
//!
//! When `rotel-agent` cannot be found the tests print a `SKIPPED:` line and pass without
//! running, unless `OFFLOAD_REQUIRE_COLLECTOR=1` (set by `scripts/test` and CI), where that is
//! a failure (see `skip_unless_required` in `skip.rs`).

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Loaded here rather than in `mod.rs`, so that the benchmarks, which include this file alone,
/// have it too.
#[path = "skip.rs"]
pub mod skip;

/// A running collector; killed on drop.
pub struct Collector {
    child: Child,
    output: Arc<Mutex<String>>,
    /// The threads that read its output, until it ends.
    readers: Vec<std::thread::JoinHandle<()>>,
    pub grpc_port: u16,
    pub http_port: u16,
}

/// One span as the collector printed it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpanOut {
    pub trace_id: String,
    pub parent_id: String,
    pub span_id: String,
    pub name: String,
    pub kind: String,
    pub status_code: String,
    pub status_message: String,
    /// `key -> Type(value)` as printed, e.g. `Int(3)`, `Str(ada)`.
    pub attributes: Vec<(String, String)>,
    pub events: Vec<EventOut>,
    pub resource: Vec<(String, String)>,
    /// The instrumentation scope as printed: `name version`.
    pub scope: String,
    /// Span links: (trace id, span id).
    pub links: Vec<(String, String)>,
}

/// One span event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventOut {
    pub name: String,
    pub attributes: Vec<(String, String)>,
}

/// One log record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOut {
    pub severity_text: String,
    pub severity_number: String,
    pub body: String,
    pub attributes: Vec<(String, String)>,
    pub trace_id: String,
    pub span_id: String,
    pub event_name: String,
    /// The instrumentation scope as printed: `name version`.
    pub scope: String,
    pub resource: Vec<(String, String)>,
}

impl SpanOut {
    /// The printed value of an attribute.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The environment of a sink whose spans go to `traces` and log records to `logs`, with a
/// request timeout of `timeout_ms`.
pub fn endpoints<'a>(
    traces: &'a str,
    logs: &'a str,
    timeout_ms: &'a str,
) -> impl Fn(&str) -> Option<String> + 'a {
    move |var| match var {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" => Some(traces.to_owned()),
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT" => Some(logs.to_owned()),
        "OTEL_EXPORTER_OTLP_TIMEOUT" => Some(timeout_ms.to_owned()),
        _ => None,
    }
}

/// The leading count of a drop marker's text (`"12 records dropped since …"`).
pub fn marker_count(body: &str) -> Option<u64> {
    let (before, _) = body.split_once(" records dropped since")?;
    let digits = before.len()
        - before
            .trim_start_matches(|c: char| !c.is_ascii_digit())
            .len();
    before[digits..].parse().ok()
}

/// The integer attribute `i` of every span (as the tests number them), as a set.
pub fn span_numbers(spans: &[SpanOut]) -> std::collections::BTreeSet<u64> {
    spans
        .iter()
        .map(|s| {
            let v = s.attr("i").expect("a span numbered `i`");
            let v = v.trim_start_matches("Int(").trim_end_matches(')');
            v.parse().expect("an integer `i`")
        })
        .collect()
}

impl LogOut {
    /// The printed value of an attribute.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Where `rotel-agent` is: on `PATH`, or inside the `rotel` Python package.
fn rotel_agent() -> Option<PathBuf> {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join("rotel-agent");
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, rotel; print(os.path.dirname(rotel.__file__))",
        ])
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim()).join("rotel-agent");
    p.is_file().then_some(p)
}

/// A loopback port free now and not handed out before in this process: a port given to one
/// test "for later" (released until a collector starts there) must not go to another test
/// running beside it meanwhile.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

impl Collector {
    /// Starts a collector on fresh ports; `None` (after saying why) when the binary is missing
    /// and the collector is not required.
    #[track_caller]
    pub fn start() -> Option<Collector> {
        Self::start_on(free_port(), free_port())
    }

    /// Two free ports (gRPC, HTTP) where a collector will be started later with
    /// [`start_on`](Self::start_on): a sink pointed there meets a collector that is down.
    /// `None` (after saying why) when the binary is missing and the collector is not required.
    #[track_caller]
    pub fn ports_for_later() -> Option<(u16, u16)> {
        if rotel_agent().is_none() {
            skip::skip_unless_required(
                "OFFLOAD_REQUIRE_COLLECTOR",
                "rotel-agent not found (`pip install rotel`, or run scripts/test)",
            );
            return None;
        }
        Some((free_port(), free_port()))
    }

    /// Starts a collector on fresh ports with extra `rotel-agent start` arguments.
    #[track_caller]
    pub fn start_with_args(extra: &[&str]) -> Option<Collector> {
        Self::start_with(free_port(), free_port(), extra)
    }

    /// Starts a collector on the given ports (to restart one where a sink already points).
    #[track_caller]
    pub fn start_on(grpc_port: u16, http_port: u16) -> Option<Collector> {
        Self::start_with(grpc_port, http_port, &[])
    }

    /// Starts a collector with extra `rotel-agent start` arguments, e.g.
    /// `--otlp-receiver-logs-disabled`.
    #[track_caller]
    pub fn start_with(grpc_port: u16, http_port: u16, extra: &[&str]) -> Option<Collector> {
        let Some(agent) = rotel_agent() else {
            skip::skip_unless_required(
                "OFFLOAD_REQUIRE_COLLECTOR",
                "rotel-agent not found (`pip install rotel`, or run scripts/test)",
            );
            return None;
        };
        let mut child = Command::new(agent)
            .args([
                "start",
                "--otlp-grpc-endpoint",
                &format!("127.0.0.1:{grpc_port}"),
                "--otlp-http-endpoint",
                &format!("127.0.0.1:{http_port}"),
                "--exporter",
                "blackhole",
                "--debug-log",
                "traces",
                "--debug-log",
                "logs",
                "--debug-log-verbosity",
                "detailed",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rotel-agent");
        let output = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = Arc::clone(&output);
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).split(b'\n').map_while(Result::ok) {
                    let line = strip_ansi(&String::from_utf8_lossy(&line));
                    let mut out = output.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
            }));
        }
        let collector = Collector {
            child,
            output,
            readers,
            grpc_port,
            http_port,
        };
        collector.wait_for("the collector to listen", Duration::from_secs(30), |_| {
            TcpStream::connect(("127.0.0.1", grpc_port)).is_ok()
                && TcpStream::connect(("127.0.0.1", http_port)).is_ok()
        });
        Some(collector)
    }

    pub fn grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    pub fn http_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Kills the collector (`SIGKILL`: an outage, not a shutdown) and waits until everything
    /// it printed has been read: its spans stay readable.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }

    /// How many spans the collector printed so far (cheaper than parsing them).
    pub fn span_count(&self) -> usize {
        self.output.lock().unwrap().matches("Span #").count()
    }

    /// Everything the collector printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// The spans received so far.
    pub fn spans(&self) -> Vec<SpanOut> {
        parse(&self.output()).0
    }

    /// The log records received so far.
    pub fn logs(&self) -> Vec<LogOut> {
        parse(&self.output()).1
    }

    /// The reference pipeline's exporter: `opentelemetry-otlp`'s gRPC span exporter to this
    /// collector, with the (multi-thread) tokio runtime its connection lives on; keep both.
    #[cfg(feature = "otlp")]
    pub fn reference_exporter(
        &self,
    ) -> (tokio::runtime::Runtime, opentelemetry_otlp::SpanExporter) {
        use opentelemetry_otlp::WithExportConfig;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the reference exporter");
        let exporter = {
            let _in_rt = rt.enter();
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(self.grpc_endpoint())
                .build()
                .expect("the reference exporter")
        };
        (rt, exporter)
    }

    /// The reference log exporter: `opentelemetry-otlp`'s gRPC log exporter to this collector,
    /// with the runtime its connection lives on; keep both.
    #[cfg(feature = "otlp")]
    pub fn reference_log_exporter(
        &self,
    ) -> (tokio::runtime::Runtime, opentelemetry_otlp::LogExporter) {
        use opentelemetry_otlp::WithExportConfig;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the reference exporter");
        let exporter = {
            let _in_rt = rt.enter();
            opentelemetry_otlp::LogExporter::builder()
                .with_tonic()
                .with_endpoint(self.grpc_endpoint())
                .build()
                .expect("the reference log exporter")
        };
        (rt, exporter)
    }

    /// Waits until `ready(self)` holds, polling the output, or panics at the deadline.
    #[track_caller]
    pub fn wait_for(&self, what: &str, timeout: Duration, mut ready: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while !ready(self) {
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; collector output:\n{}",
                self.output()
            );
            std::thread::park_timeout(Duration::from_millis(5));
        }
    }

    /// Waits until at least `n` spans arrived, and returns them.
    #[track_caller]
    pub fn wait_spans(&self, n: usize) -> Vec<SpanOut> {
        self.wait_for(&format!("{n} spans"), Duration::from_secs(30), |c| {
            c.spans().len() >= n
        });
        self.spans()
    }

    /// Waits until at least `n` log records arrived, and returns them.
    #[track_caller]
    pub fn wait_logs(&self, n: usize) -> Vec<LogOut> {
        self.wait_for(&format!("{n} logs"), Duration::from_secs(30), |c| {
            c.logs().len() >= n
        });
        self.logs()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses the debug exporter's output (see the module docs).
pub fn parse(text: &str) -> (Vec<SpanOut>, Vec<LogOut>) {
    enum At {
        Nothing,
        Resource,
        Span,
        SpanAttrs,
        Event,
        Link,
        Log,
    }
    let mut spans: Vec<SpanOut> = Vec::new();
    let mut logs: Vec<LogOut> = Vec::new();
    let mut resource: Vec<(String, String)> = Vec::new();
    let mut scope = String::new();
    let mut at = At::Nothing;
    for line in text.lines() {
        let t = line.trim();
        let field = |name: &str| {
            t.strip_prefix(name)
                .and_then(|r| r.trim_start().strip_prefix(':'))
                .map(|v| v.trim().to_owned())
        };
        if t.starts_with("ResourceSpans #") || t.starts_with("ResourceLog") {
            resource.clear();
            at = At::Nothing;
        } else if t == "Resource attributes:" {
            at = At::Resource;
        } else if let Some(s) = t.strip_prefix("InstrumentationScope ") {
            scope = s.trim().to_owned();
        } else if t.starts_with("Span #") {
            spans.push(SpanOut {
                resource: resource.clone(),
                scope: scope.clone(),
                ..Default::default()
            });
            at = At::Span;
        } else if t.starts_with("SpanLink #") {
            if let Some(s) = spans.last_mut() {
                s.links.push(Default::default());
            }
            at = At::Link;
        } else if t.starts_with("LogRecord #") {
            logs.push(LogOut {
                resource: resource.clone(),
                scope: scope.clone(),
                ..Default::default()
            });
            at = At::Log;
        } else if t.starts_with("SpanEvent #") {
            if let Some(s) = spans.last_mut() {
                s.events.push(EventOut::default());
            }
            at = At::Event;
        } else if t == "Attributes:" && matches!(at, At::Span | At::SpanAttrs) {
            at = At::SpanAttrs;
        } else if t.starts_with("ScopeSpans") || t.starts_with("ScopeLogs") {
            at = At::Nothing;
        } else if let Some(kv) = t.strip_prefix("-> ") {
            let Some((k, v)) = kv.split_once(": ") else {
                continue;
            };
            let kv = (k.trim().to_owned(), v.trim().to_owned());
            match at {
                At::Resource => resource.push(kv),
                At::SpanAttrs => {
                    if let Some(s) = spans.last_mut() {
                        s.attributes.push(kv)
                    }
                }
                At::Event => {
                    if let Some(e) = spans.last_mut().and_then(|s| s.events.last_mut()) {
                        match kv.0.as_str() {
                            "Name" => e.name = kv.1,
                            "Timestamp" | "DroppedAttributesCount" => {}
                            _ => e.attributes.push(kv),
                        }
                    }
                }
                At::Link => {
                    if let Some(l) = spans.last_mut().and_then(|s| s.links.last_mut()) {
                        match kv.0.as_str() {
                            "Trace ID" => l.0 = kv.1,
                            "ID" => l.1 = kv.1,
                            _ => {}
                        }
                    }
                }
                At::Log => {
                    if let Some(l) = logs.last_mut() {
                        l.attributes.push(kv)
                    }
                }
                _ => {}
            }
        } else if let Some(s) = spans.last_mut().filter(|_| matches!(at, At::Span)) {
            if let Some(v) = field("Trace ID") {
                s.trace_id = v;
            } else if let Some(v) = field("Parent ID") {
                s.parent_id = v;
            } else if let Some(v) = field("ID") {
                s.span_id = v;
            } else if let Some(v) = field("Name") {
                s.name = v;
            } else if let Some(v) = field("Kind") {
                s.kind = v;
            } else if let Some(v) = field("Status code") {
                s.status_code = v;
            } else if let Some(v) = field("Status message") {
                s.status_message = v;
            }
        } else if let Some(l) = logs.last_mut().filter(|_| matches!(at, At::Log)) {
            if let Some(v) = field("SeverityText") {
                l.severity_text = v;
            } else if let Some(v) = field("SeverityNumber") {
                l.severity_number = v;
            } else if let Some(v) = field("Body") {
                l.body = v;
            } else if let Some(v) = field("EventName") {
                l.event_name = v;
            } else if let Some(v) = field("Trace ID") {
                l.trace_id = v;
            } else if let Some(v) = field("Span ID") {
                l.span_id = v;
            }
        }
    }
    (spans, logs)
}
