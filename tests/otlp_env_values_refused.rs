//! Adversary pass 65: two OTLP variables take values they cannot honour without a word.
//!
//! * `OTEL_RESOURCE_ATTRIBUTES` whose values are not valid percent-encoding (`%zz`) or decode
//!   to bytes that are not UTF-8 (`%ff%fe`) is taken as is: `%zz` stays literally, `%ff%fe`
//!   becomes `"��"` (U+FFFD twice), no warning. The crate's own warning for this variable says
//!   it expects "comma-separated key=value pairs (percent-encoded)"; the README: "an invalid one
//!   (unparsable, outside its range, or not UTF-8) is ignored with one warning naming the
//!   variable"; the OpenTelemetry specification: on a decoding failure "the entire
//!   environment variable value SHOULD be discarded and an error SHOULD be reported".
//! * `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` larger than `OTEL_BSP_MAX_QUEUE_SIZE` (the specification:
//!   "must be less than or equal to") is accepted silently, and `/config` shows a batch size of
//!   4096 for a sink whose buffer holds 16.
#![cfg(feature = "otlp")]

use std::time::Duration;

use tracing_offload::sink::Otlp;
use tracing_offload::{Config, OffloadLayer};

fn config_with(pairs: &'static [(&'static str, &'static str)]) -> Config {
    let lookup = move |var: &str| {
        pairs
            .iter()
            .find(|(k, _)| *k == var)
            .map(|(_, v)| (*v).to_owned())
    };
    let (_layer, guard) = OffloadLayer::builder()
        .sink(Otlp::from_env_with(&lookup))
        .build()
        .unwrap();
    let config = guard.handle().config();
    let _ = guard.shutdown(Duration::from_secs(2));
    config
}

fn warned(config: &Config, var: &str) -> bool {
    config.warnings.iter().any(|w| w.var == var)
}

#[test]
fn resource_attributes_that_do_not_decode_are_a_warning() {
    let config = config_with(&[("OTEL_RESOURCE_ATTRIBUTES", "team=%zz,owner=%ff%fe")]);
    let settings = &config.sink_settings["otlp"]["resource_attributes"];
    assert!(
        warned(&config, "OTEL_RESOURCE_ATTRIBUTES"),
        "no warning; resource attributes in force: {settings}"
    );
}

#[test]
fn an_export_batch_larger_than_the_queue_is_a_warning() {
    let config = config_with(&[
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4096"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "16"),
    ]);
    let otlp = &config.sink_settings["otlp"];
    assert!(
        warned(&config, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"),
        "no warning; in force: max_export_batch_size {} with max_queue_size {}",
        otlp["max_export_batch_size"],
        otlp["max_queue_size"]
    );
}
