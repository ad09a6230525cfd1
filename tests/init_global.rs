//! `tracing_offload::init()`: reads the environment, installs the global subscriber with a
//! console sink, and refuses a second global subscriber. Its own test binary: it sets the
//! process-wide default.
use std::time::Duration;

use tracing_offload::{BuildError, Source};

#[test]
fn init_installs_the_global_subscriber_from_the_environment() {
    std::env::set_var("OFFLOAD_CAPACITY", "1024");
    std::env::set_var("OFFLOAD_SAMPLE_ALWAYS", "audit");
    std::env::remove_var("OTEL_EXPORTER_OTLP_ENDPOINT");
    let guard = tracing_offload::init().expect("the first init succeeds");
    let handle = guard.handle();
    let config = handle.config();
    assert_eq!(config.capacity.value, 1024);
    assert_eq!(
        config.capacity.source,
        Source::Env("OFFLOAD_CAPACITY".into())
    );
    assert_eq!(config.sinks, ["console"]);

    tracing::info!(target: "audit", "through the global subscriber");
    handle.flush(Duration::from_secs(30)).unwrap();
    let stats = handle.stats();
    assert_eq!(stats.offered, 1);
    assert_eq!(stats.sink("console").unwrap().exported, 1);

    let err = tracing_offload::init().unwrap_err();
    assert!(
        matches!(err, BuildError::GlobalSubscriberAlreadySet),
        "{err}"
    );
    guard.shutdown(Duration::from_secs(10)).unwrap();
}
