//! Spans and events to an OpenTelemetry collector, configured from OpenTelemetry's standard
//! environment variables, with sampling toggled from the environment while it runs.
//!
//! ```sh
//! pip install rotel
//! ROTEL=$(python3 -c 'import os, rotel; print(os.path.dirname(rotel.__file__))')/rotel-agent
//! $ROTEL start --otlp-grpc-endpoint 127.0.0.1:4317 --otlp-http-endpoint 127.0.0.1:4318 \
//!     --exporter blackhole --debug-log traces --debug-log logs &
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 OTEL_SERVICE_NAME=shop \
//!     OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.5 \
//!     cargo run --example otlp
//! ```

use std::time::Duration;

use tracing_offload::sink::{Console, Otlp};
use tracing_offload::{Builder, OffloadSpanExt};
use tracing_subscriber::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (layer, guard) = Builder::from_env() // OTEL_TRACES_SAMPLER, OFFLOAD_SAMPLE_RATE, …
        .sink(Console::stderr())
        .sink(Otlp::from_env()) // OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, …
        .build()?;
    tracing_subscriber::registry().with(layer).init();
    let handle = guard.handle();

    for order in 0..20u64 {
        let span = tracing::info_span!("checkout", order, otel.kind = "server").entered();
        tracing::info!(items = order % 5, "order placed");
        if let Some(tp) = span.traceparent() {
            // What an outgoing HTTP call from here would carry.
            tracing::debug!(traceparent = %tp, "calling payments");
        }
        if order % 7 == 6 {
            tracing::error!(error = "card declined", "payment failed");
        }
        drop(span);
        if order == 9 {
            // An operator changed the sampling variables: apply them without a restart.
            std::env::set_var("OTEL_TRACES_SAMPLER", "always_on");
            for warning in handle.reload_from_env() {
                eprintln!("{warning}");
            }
        }
    }

    let report = guard.shutdown(Duration::from_secs(10))?;
    let stats = handle.stats();
    let otlp = stats.sink("otlp").expect("the otlp sink");
    println!(
        "offered {} (sampled out {}), exported to the collector {}, failed {} (last error: {:?}); shutdown took {:?}",
        stats.offered, stats.sampled_out, otlp.exported, otlp.failed, otlp.last_error, report.elapsed
    );
    Ok(())
}
