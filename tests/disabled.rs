//! `OTEL_SDK_DISABLED=true` turns the layer off without turning off the subscriber's other
//! layers.
mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use support::*;
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
