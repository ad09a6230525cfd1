//! A small service with the admin endpoint on: `/metrics`, `/health` and `/config`.
//!
//! ```sh
//! cargo run --example admin --features admin           # runs until Ctrl-C
//! cargo run --example admin --features admin -- 30     # stops after 30 s
//! curl -s localhost:9464/metrics
//! curl -s localhost:9464/health
//! curl -s localhost:9464/config
//! ```
//!
//! `OFFLOAD_ADMIN_ADDR` overrides the address (e.g. `0.0.0.0:9464` to reach it from outside a
//! container).

use std::time::{Duration, Instant};

use tracing_offload::{sink, Builder};
use tracing_subscriber::prelude::*;

const DEFAULT_ADDR: &str = "127.0.0.1:9464";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let run_for = std::env::args()
        .nth(1)
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    let mut builder = Builder::from_env().sink(sink::Console::stderr());
    if std::env::var_os("OFFLOAD_ADMIN_ADDR").is_none() {
        builder = builder.admin_addr(DEFAULT_ADDR);
    }
    let (layer, guard) = builder.build()?;
    tracing_subscriber::registry().with(layer).init();

    if let Some(addr) = guard.admin_addr() {
        println!("admin endpoint on http://{addr}");
        for path in ["/metrics", "/health", "/config"] {
            println!("  curl -s http://{addr}{path}");
        }
    }

    let started = Instant::now();
    let mut request = 0u64;
    while run_for.is_none_or(|d| started.elapsed() < d) {
        request += 1;
        let span = tracing::info_span!("request", id = request, route = "/orders").entered();
        tracing::info!(items = request % 5, "order placed");
        if request % 10 == 0 {
            tracing::warn!(latency_ms = 250, "payment provider slow");
        }
        drop(span);
        std::thread::sleep(Duration::from_millis(200)); // pacing the demo traffic
    }
    let health = guard.handle().health();
    println!("health at exit: {}", health.status);
    Ok(())
}
