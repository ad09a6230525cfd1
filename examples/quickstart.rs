//! Console + JSON file, a few spans and events, and the stats at the end.
//!
//! ```sh
//! cargo run --example quickstart
//! ```

use std::time::Duration;

use tracing_offload::{sink, Backpressure, OffloadLayer};
use tracing_subscriber::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join("tracing-offload-quickstart.jsonl");
    let (layer, guard) = OffloadLayer::builder()
        .capacity(65_536)
        .backpressure(Backpressure::DropOldest)
        .sink(sink::Console::stderr())
        .sink(sink::JsonFile::new(&path))
        .build()?;
    tracing_subscriber::registry().with(layer).init();

    for order in 1..=3u64 {
        let span = tracing::info_span!("checkout", order, customer = "ada").entered();
        tracing::info!(
            items = order * 2,
            total = 9.5 * order as f64,
            "order placed"
        );
        if order == 3 {
            tracing::warn!(retry = true, "payment provider slow");
        }
        drop(span);
    }
    tracing::error!(critical = true, "disk almost full");

    let handle = guard.handle();
    let report = guard.shutdown(Duration::from_secs(5))?;
    let stats = handle.stats();
    println!(
        "wrote {} to {}",
        stats.sink("json").map_or(0, |s| s.exported),
        path.display()
    );
    println!(
        "offered={} enqueued={} dropped={} sampled_out={} shutdown took {:?}",
        stats.offered, stats.enqueued, stats.dropped, stats.sampled_out, report.elapsed
    );
    Ok(())
}
