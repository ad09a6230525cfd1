//! A real Prometheus server (Debian package `prometheus`) on loopback scrapes the admin
//! endpoint; its HTTP API then returns the `offload_` series with the expected values.
#![cfg(feature = "admin")]

mod support;

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::admin::*;
use support::*;
use tracing_offload::OffloadLayer;

/// Kills the Prometheus process this test started when the test ends, however it ends.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: std::path::PathBuf,
}

impl Server {
    fn start(prometheus: &std::path::Path, dir: &std::path::Path, target: SocketAddr) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: offload\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let log = dir.join("prometheus.log");
        let child = Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("prometheus starts");
        Server { child, addr, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value of the single series `query` selects, once Prometheus has it.
    #[track_caller]
    fn value(&self, query: &str) -> Option<String> {
        let r = get(self.addr, &format!("/api/v1/query?query={}", encode(query)));
        let json: serde_json::Value = serde_json::from_str(&r.body).ok()?;
        let result = json["data"]["result"].as_array()?;
        (result.len() == 1).then(|| result[0]["value"][1].as_str().map(str::to_owned))?
    }

    #[track_caller]
    fn wait_for(&mut self, query: &str, expected: &str) {
        let mut last = None;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("prometheus exited ({status}):\n{}", self.log());
            }
            last = self.value(query);
            if last.as_deref() == Some(expected) {
                return;
            }
            std::thread::park_timeout(Duration::from_millis(100));
        }
        panic!(
            "prometheus never returned {expected} for {query} (last: {last:?});\nlog:\n{}",
            self.log()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a PromQL query for a URL.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn prometheus_scrapes_the_offload_series() {
    let Some(prometheus) = tool("prometheus") else {
        return;
    };
    let gate = Gate::new("gate");
    let (layer, guard) = OffloadLayer::builder()
        .capacity(512)
        .admin_addr("127.0.0.1:0")
        .sink(gate.clone())
        .build()
        .unwrap();
    with_layer(layer, || {
        for i in 0..5 {
            tracing::info!(i, "scraped");
        }
    });
    guard.handle().flush(DEADLINE).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&prometheus, dir.path(), guard.admin_addr().unwrap());
    wait_until("prometheus to be ready", DEADLINE, || {
        std::net::TcpStream::connect(server.addr).is_ok()
            && get(server.addr, "/-/ready").status == 200
    });
    server.wait_for(r#"up{job="offload"}"#, "1");
    server.wait_for(r#"offload_records_total{outcome="enqueued"}"#, "5");
    server.wait_for(
        r#"offload_records_total{outcome="dropped",reason="queue_full_newest"}"#,
        "0",
    );
    server.wait_for("offload_queue_capacity", "512");
    server.wait_for(
        r#"offload_sink_records_total{sink="gate",outcome="exported"}"#,
        "5",
    );
    server.wait_for(
        r#"offload_sink_export_duration_seconds_count{sink="gate"}"#,
        &guard.handle().stats().sinks[0].batches.to_string(),
    );
    let names = get(server.addr, "/api/v1/label/__name__/values").body;
    for name in [
        "offload_drain_heartbeat_age_seconds",
        "offload_sink_export_duration_seconds_bucket",
        "offload_open_spans",
    ] {
        assert!(names.contains(name), "{name} missing from {names}");
    }
}
