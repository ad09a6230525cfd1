//! `OTEL_SDK_DISABLED=true` turns the layer off without turning off the subscriber's other
//! layers, and, like OpenTelemetry's no-op SDK, touches nothing: no sink is started, so no file
//! is created.
mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use support::*;
use tracing_offload::health::HealthStatus;
use tracing_offload::Builder;
use tracing_subscriber::prelude::*;

struct CountEvents(Arc<AtomicU64>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountEvents {
    fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_disabled_layer_records_nothing_and_leaves_other_layers_alone() {
    let lookup = |var: &str| (var == "OTEL_SDK_DISABLED").then(|| "true".to_owned());
    let sink = Collect::new("collect");
    let (layer, guard) = Builder::from_env_with(&lookup)
        .sink(sink.clone())
        .build()
        .unwrap();
    assert!(!guard.handle().config().enabled.value);
    let other = Arc::new(AtomicU64::new(0));
    let subscriber = tracing_subscriber::registry()
        .with(layer)
        .with(CountEvents(other.clone()));
    tracing::subscriber::with_default(subscriber, || {
        let _s = tracing::info_span!("s").entered();
        tracing::info!("seen by the other layer only");
    });
    guard.shutdown(DEADLINE).unwrap();
    assert_eq!(other.load(Ordering::SeqCst), 1);
    let stats = guard.handle().stats();
    assert_eq!(stats.offered, 0);
    assert_eq!(stats.open_spans, 0);
    assert_eq!(sink.count(), 0);
}

/// A disabled pipeline touches no file: its sinks are not started, so the JSON-lines sink
/// creates neither its file nor its directory (and an OTLP spool, its directory). They used to
/// be created, and left empty, by a pipeline that could never write to them.
#[test]
fn a_disabled_pipeline_creates_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let path = logs.join("app.jsonl");
    let disabled_by_env = |var: &str| (var == "OTEL_SDK_DISABLED").then(|| "true".to_owned());
    let builders = [
        (
            "OTEL_SDK_DISABLED=true",
            Builder::from_env_with(&disabled_by_env),
        ),
        ("enabled(false)", Builder::new().enabled(false)),
    ];
    for (how, builder) in builders {
        let (layer, guard) = builder
            .sink(tracing_offload::sink::JsonFile::new(&path))
            .build()
            .unwrap_or_else(|e| panic!("{how}: {e}"));
        assert!(!guard.handle().config().enabled.value, "{how}");
        with_layer(layer, || {
            let _s = tracing::info_span!("s").entered();
            tracing::info!("recorded nowhere");
        });
        // Not a failure: a probe of a disabled service finds it healthy.
        let health = guard.handle().health();
        assert_eq!(health.status, HealthStatus::Healthy, "{how}: {health:#?}");
        guard.shutdown(DEADLINE).unwrap();
        assert_eq!(guard.handle().stats().offered, 0, "{how}");
        assert!(!path.exists(), "{how}: created {}", path.display());
        assert!(!logs.exists(), "{how}: created {}", logs.display());
    }
}

#[cfg(feature = "otlp")]
#[test]
fn a_disabled_pipeline_creates_no_spool_directory() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let sink = tracing_offload::sink::Otlp::new()
        .endpoint("http://127.0.0.1:9")
        .spool(&spool);
    let (_layer, guard) = Builder::new().enabled(false).sink(sink).build().unwrap();
    guard.shutdown(DEADLINE).unwrap();
    assert!(!spool.exists(), "created {}", spool.display());
}
