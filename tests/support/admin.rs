//! Helpers for the admin, metrics and health tests: a sink whose behaviour the test switches,
//! a real HTTP client, `/health` polling, and finding `promtool`/`prometheus`.
#![allow(dead_code)]

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tracing_offload::sink::{Sink, SinkError};
use tracing_offload::Record;

use super::DEADLINE;

/// How a [`Gate`] sink behaves on its next export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Export succeeds.
    Pass,
    /// Export returns an error.
    Fail,
    /// Export blocks until the mode changes.
    Stall,
    /// Export panics (the pipeline disables the sink).
    Panic,
}

/// A sink whose behaviour the test switches at any time.
#[derive(Clone)]
pub struct Gate {
    name: &'static str,
    state: Arc<(Mutex<(Mode, u64)>, Condvar)>,
}

impl Gate {
    pub fn new(name: &'static str) -> Self {
        Gate {
            name,
            state: Arc::new((Mutex::new((Mode::Pass, 0)), Condvar::new())),
        }
    }

    pub fn set(&self, mode: Mode) {
        let (lock, cv) = &*self.state;
        lock.lock().unwrap_or_else(|e| e.into_inner()).0 = mode;
        cv.notify_all();
    }

    /// Records exported successfully so far.
    pub fn exported(&self) -> u64 {
        self.state.0.lock().unwrap_or_else(|e| e.into_inner()).1
    }
}

impl Sink for Gate {
    fn name(&self) -> &str {
        self.name
    }

    fn export(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        let (lock, cv) = &*self.state;
        let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
        while state.0 == Mode::Stall {
            state = cv.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        match state.0 {
            Mode::Fail => Err(SinkError::Retryable("gate told to fail".into())),
            Mode::Panic => {
                drop(state);
                panic!("gate told to panic")
            }
            _ => {
                state.1 += batch.len() as u64;
                Ok(())
            }
        }
    }
}

/// A response read in full.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub allow: Option<String>,
    pub body: String,
}

/// Sends `method path` to the admin endpoint with a real HTTP client (any status is a reply).
#[track_caller]
/// A pipeline with `sink` and the admin endpoint on a free loopback port (no layer
/// installed): its guard and the endpoint's address.
#[cfg(feature = "admin")]
pub fn serve_admin(sink: impl Sink) -> (tracing_offload::Guard, SocketAddr) {
    let (_layer, guard) = tracing_offload::OffloadLayer::builder()
        .admin_addr("127.0.0.1:0")
        .sink(sink)
        .build()
        .unwrap();
    let addr = guard.admin_addr().unwrap();
    (guard, addr)
}

pub fn http(method: &str, addr: SocketAddr, path: &str, accept: Option<&str>) -> Reply {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let uri = format!("http://{addr}{path}");
    let mut req = ureq::http::Request::builder().method(method).uri(&uri);
    if let Some(a) = accept {
        req = req.header("Accept", a);
    }
    let req = req.body(()).expect("a valid request");
    let mut resp = agent
        .run(req)
        .unwrap_or_else(|e| panic!("{method} {uri}: {e}"));
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type").unwrap_or_default();
    let allow = header("allow");
    let status = resp.status().as_u16();
    let mut body = String::new();
    resp.body_mut()
        .as_reader()
        .read_to_string(&mut body)
        .expect("a UTF-8 body");
    Reply {
        status,
        content_type,
        allow,
        body,
    }
}

/// `GET path`.
#[track_caller]
pub fn get(addr: SocketAddr, path: &str) -> Reply {
    http("GET", addr, path, None)
}

/// `GET /health` as (status code, parsed JSON).
#[track_caller]
pub fn health(addr: SocketAddr) -> (u16, serde_json::Value) {
    let r = get(addr, "/health");
    let json = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body));
    (r.status, json)
}

/// Waits until `/health` reports `status`; returns the last JSON.
#[track_caller]
pub fn wait_for_health(addr: SocketAddr, status: &str) -> serde_json::Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (code, json) = health(addr);
        if json["status"] == status {
            let expected = if status == "unhealthy" { 503 } else { 200 };
            assert_eq!(code, expected, "{json:#}");
            return json;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for health {status}; last: {json:#}"
        );
        std::thread::park_timeout(Duration::from_millis(5));
    }
}

/// The component named `name` in a `/health` JSON.
#[track_caller]
pub fn component<'a>(health: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    health["components"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no component {name} in {health:#}"))
}

/// Finds an external tool on `PATH`. `None` (after a `SKIPPED:` line) when it is missing,
/// unless `OFFLOAD_REQUIRE_TOOLS=1`, where a missing tool fails the test.
#[track_caller]
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        super::skip_unless_required(
            "OFFLOAD_REQUIRE_TOOLS",
            &format!(
                "`{name}` is not on PATH (Debian: `apt-get install prometheus`, or run scripts/test)"
            ),
        );
    }
    found
}

/// Runs `promtool check metrics` on `text`; panics with its output when it finds problems.
#[track_caller]
pub fn promtool_check(promtool: &std::path::Path, text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- input ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
