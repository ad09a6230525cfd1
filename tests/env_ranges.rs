//! Every numeric setting has a documented range: out of range from the environment is a warning
//! and the default (an error from the strict variant), a count out of range from a builder
//! method is a `BuildError` that says the range. A value that is not UTF-8 is a warning, not
//! "unset". (Durations set in code take any value: see `huge_timeouts.rs`.)
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use support::admin::{Gate, Mode};
use support::*;
use tracing_offload::sink::{Sink, SinkError};
use tracing_offload::{
    BuildError, Builder, DropReason, Record, Source, DEFAULT_BLOCK_TIMEOUT, DEFAULT_CAPACITY,
    MAX_BATCH_SIZE, MAX_SPAN_EVENT_LIMIT,
};

fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |var| {
        pairs
            .iter()
            .find(|(k, _)| *k == var)
            .map(|(_, v)| v.to_string())
    }
}

#[track_caller]
fn out_of_range(builder: Builder) -> String {
    match builder.build() {
        Err(e @ BuildError::OutOfRange { .. }) => e.to_string(),
        Err(other) => panic!("expected OutOfRange, got {other}"),
        Ok(_) => panic!("expected OutOfRange, got a pipeline"),
    }
}

#[test]
fn a_huge_capacity_from_the_environment_warns_and_keeps_the_default() {
    // Before: a 24 PB allocation aborted the process in `build()`.
    let env = env(&[
        ("OFFLOAD_CAPACITY", "1000000000000000"),
        ("OTEL_SPAN_EVENT_COUNT_LIMIT", "1000000000000000"),
    ]);
    let (_layer, guard) = Builder::from_env_with(&env).build().unwrap();
    let c = guard.handle().config();
    assert_eq!(
        (c.capacity.value, c.capacity.source),
        (DEFAULT_CAPACITY, Source::Default)
    );
    assert_eq!(guard.handle().stats().capacity, DEFAULT_CAPACITY);
    let vars: Vec<&str> = c.warnings.iter().map(|w| w.var.as_str()).collect();
    assert_eq!(vars, ["OFFLOAD_CAPACITY", "OTEL_SPAN_EVENT_COUNT_LIMIT"]);
    let text = c.warnings[0].to_string();
    assert!(
        text.contains("from 1 to 16777216") && text.contains("the default 65536"),
        "{text}"
    );
    assert!(c.warnings[1].to_string().contains("from 0 to 65536"));
}

#[test]
fn an_endless_block_timeout_from_the_environment_is_refused() {
    let env = env(&[
        ("OFFLOAD_BACKPRESSURE", "block"),
        ("OFFLOAD_BLOCK_TIMEOUT_MS", "18446744073709551615"),
        ("OFFLOAD_CAPACITY", "2"),
    ]);
    let builder = Builder::from_env_with(&env);
    let gate = Gate::new("stalled");
    let (layer, guard) = builder
        .sink_buffer_capacity(1)
        .sink(gate.clone())
        .build()
        .unwrap();
    let handle = guard.handle();
    let c = handle.config();
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert_eq!(c.warnings[0].var, "OFFLOAD_BLOCK_TIMEOUT_MS");
    assert!(c.warnings[0].expected.contains("0 to 60000"), "{c:?}");
    assert_eq!(c.backpressure.value, "block");
    assert_eq!(
        c.block_timeout_ms.value,
        DEFAULT_BLOCK_TIMEOUT.as_millis() as u64
    );

    // With the sink stalled and the queue full, `info!` waits the default timeout, not forever.
    gate.set(Mode::Stall);
    let done = Arc::new(AtomicBool::new(false));
    let producer = {
        let done = Arc::clone(&done);
        let dispatch = dispatch(layer);
        std::thread::spawn(move || {
            tracing::dispatcher::with_default(&dispatch, || {
                for i in 0..20 {
                    tracing::info!(i, "while stalled");
                }
            });
            done.store(true, Ordering::SeqCst);
        })
    };
    wait_until("info! to return with the sink stalled", DEADLINE, || {
        done.load(Ordering::SeqCst)
    });
    producer.join().unwrap();
    let stats = handle.stats();
    assert!(
        stats.dropped_for(DropReason::BlockTimeout) > 0
            || stats.sink("stalled").unwrap().dropped > 0,
        "{stats:#?}"
    );
    gate.set(Mode::Pass);
    guard.shutdown(DEADLINE).unwrap();
}

#[test]
fn the_strict_variant_refuses_out_of_range_values_and_says_the_range() {
    for (var, value, range) in [
        ("OFFLOAD_CAPACITY", "16777217", "from 1 to 16777216"),
        ("OFFLOAD_CAPACITY", "0", "from 1 to 16777216"),
        ("OFFLOAD_BLOCK_TIMEOUT_MS", "60001", "from 0 to 60000"),
        ("OTEL_SPAN_EVENT_COUNT_LIMIT", "65537", "from 0 to 65536"),
    ] {
        let pairs = [(var, value)];
        let lookup = |v: &str| (v == pairs[0].0).then(|| pairs[0].1.to_owned());
        let err = Builder::try_from_env_with(&lookup).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(&err, BuildError::InvalidEnv(w) if w.len() == 1 && w[0].var == var),
            "{msg}"
        );
        assert!(msg.contains(value) && msg.contains(range), "{msg}");
    }
    let at_the_bounds = env(&[
        ("OFFLOAD_BACKPRESSURE", "block"),
        ("OFFLOAD_BLOCK_TIMEOUT_MS", "60000"),
        ("OTEL_SPAN_EVENT_COUNT_LIMIT", "65536"),
    ]);
    assert!(Builder::try_from_env_with(&at_the_bounds).is_ok());
}

#[test]
fn builder_counts_out_of_range_fail_the_build_with_the_range() {
    let msg = out_of_range(Builder::new().capacity(1_000_000_000_000_000));
    assert!(
        msg.contains("`capacity`") && msg.contains("1 to 16777216 records"),
        "{msg}"
    );
    let msg = out_of_range(Builder::new().batch_size(MAX_BATCH_SIZE + 1));
    assert!(msg.contains("`batch_size`"), "{msg}");
    let msg = out_of_range(Builder::new().span_event_limit(MAX_SPAN_EVENT_LIMIT + 1));
    assert!(msg.contains("`span_event_limit`"), "{msg}");
    let msg = out_of_range(Builder::new().sink_buffer_capacity(usize::MAX));
    assert!(msg.contains("`sink_buffer_capacity`"), "{msg}");
    // A sink asking for its own huge buffer (e.g. from `OTEL_BSP_MAX_QUEUE_SIZE`).
    let msg = out_of_range(Builder::new().sink(HugeBuffer));
    assert!(msg.contains("sink `huge`"), "{msg}");
}

#[test]
fn builder_counts_at_the_bounds_build() {
    let (_layer, guard) = Builder::new()
        .capacity(1)
        .batch_size(MAX_BATCH_SIZE)
        .span_event_limit(MAX_SPAN_EVENT_LIMIT)
        .sink_buffer_capacity(1)
        .build()
        .unwrap();
    guard.shutdown(DEADLINE).unwrap();
}

#[cfg(unix)]
#[test]
fn a_value_that_is_not_utf8_is_a_warning_not_unset() {
    use std::os::unix::ffi::OsStrExt;
    // The only test in this file that touches the process environment.
    std::env::set_var("OFFLOAD_CAPACITY", std::ffi::OsStr::from_bytes(b"1024\xff"));
    let lenient = Builder::from_env();
    let strict = Builder::try_from_env();
    std::env::remove_var("OFFLOAD_CAPACITY");
    let (_layer, guard) = lenient.build().unwrap();
    let c = guard.handle().config();
    assert_eq!(c.capacity.value, DEFAULT_CAPACITY);
    let w = c
        .warnings
        .iter()
        .find(|w| w.var == "OFFLOAD_CAPACITY")
        .unwrap_or_else(|| panic!("no warning for OFFLOAD_CAPACITY: {:?}", c.warnings));
    assert_eq!(w.value, "1024\u{fffd}");
    assert_eq!(w.expected, "a UTF-8 value");
    assert_eq!(w.used, "the default 65536");
    let err = strict.unwrap_err();
    assert!(err.to_string().contains("OFFLOAD_CAPACITY"), "{err}");
}

/// A sink that asks for a buffer far past the range.
struct HugeBuffer;

impl Sink for HugeBuffer {
    fn name(&self) -> &str {
        "huge"
    }
    fn export(&mut self, _batch: &[Record]) -> Result<(), SinkError> {
        Ok(())
    }
    fn buffer_capacity(&self) -> Option<usize> {
        Some(1_000_000_000_000_000)
    }
}

#[cfg(feature = "otlp")]
#[test]
fn an_otlp_buffer_too_large_from_the_environment_warns_and_keeps_the_default() {
    use tracing_offload::sink::Otlp;
    use tracing_offload::MAX_SINK_BUFFER_CAPACITY;
    let env = env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "20000000"),
    ]);
    // One variable out of range does not stop the application from starting.
    let sink = Otlp::from_env_with(&env);
    let warning = sink
        .warnings()
        .iter()
        .find(|w| w.var == "OTEL_BSP_MAX_QUEUE_SIZE")
        .unwrap_or_else(|| panic!("no warning: {:?}", sink.warnings()))
        .to_string();
    assert!(
        warning.contains(&format!("from 1 to {MAX_SINK_BUFFER_CAPACITY}"))
            && warning.contains("2048"),
        "{warning}"
    );
    let (_layer, guard) = Builder::from_env_with(&env).sink(sink).build().unwrap();
    assert_eq!(guard.handle().stats().sinks[0].buffer_capacity, 2048);
    // At the bound it is taken.
    let at_bound = format!("{MAX_SINK_BUFFER_CAPACITY}");
    let lookup = |v: &str| (v == "OTEL_BSP_MAX_QUEUE_SIZE").then(|| at_bound.clone());
    assert!(Otlp::from_env_with(&lookup).warnings().is_empty());
}
