//! The event keep rate: statistically right, reproducible with a seed, and never touching
//! whitelisted, critical or error events.
mod support;

use std::time::Duration;

use support::*;
use tracing_offload::{Backpressure, Builder, LogLevel, OffloadLayer};

fn pipeline(rate: f64, sink: &Collect) -> Builder {
    OffloadLayer::builder()
        .capacity(1 << 16)
        .backpressure(Backpressure::Block {
            timeout: Duration::from_secs(30),
        })
        .sample_rate(rate)
        .sampling_seed(42)
        .sample_always("security.")
        .sink(sink.clone())
}

#[test]
fn half_the_events_are_kept_at_rate_one_half_within_five_standard_deviations() {
    let n = 200_000u64;
    let mut kept_runs = Vec::new();
    for _ in 0..2 {
        let sink = Collect::new("collect");
        let (layer, guard) = pipeline(0.5, &sink).build().unwrap();
        with_layer(layer, || {
            for seq in 0..n {
                tracing::info!(producer = 0u64, seq, "maybe");
            }
        });
        guard.shutdown(DEADLINE).unwrap();
        let stats = guard.handle().stats();
        assert_accounting(&stats, n);
        assert_eq!(stats.sampled_out + stats.enqueued, n);
        assert_eq!(sink.count() as u64, stats.enqueued);
        let sampling = stats.sampling.as_ref().unwrap();
        let kept = sampling.kept_fraction.unwrap();
        assert!(
            (kept - stats.enqueued as f64 / n as f64).abs() < 1e-12,
            "{kept}"
        );
        kept_runs.push(stats.enqueued);
    }
    let sd = (n as f64 * 0.25).sqrt();
    let off = (kept_runs[0] as f64 - n as f64 / 2.0).abs();
    assert!(
        off < 5.0 * sd,
        "kept {} of {n}: {off} from the mean, 5 sd = {}",
        kept_runs[0],
        5.0 * sd
    );
    assert_eq!(kept_runs[0], kept_runs[1], "a seeded run is reproducible");
}

#[test]
fn rate_zero_keeps_only_whitelisted_critical_and_error_events() {
    let sink = Collect::new("collect");
    let (layer, guard) = pipeline(0.0, &sink).build().unwrap();
    with_layer(layer, || {
        for _ in 0..1_000 {
            tracing::info!("dropped by the rate");
            tracing::warn!("dropped too");
            tracing::info!(target: "security.audit", "whitelisted by target");
            tracing::error!("errors are kept by default");
            tracing::error!(critical = true, "critical");
        }
    });
    guard.shutdown(DEADLINE).unwrap();
    let stats = guard.handle().stats();
    assert_accounting(&stats, 5_000);
    assert_eq!(stats.sampled_out, 2_000);
    let data = sink.data();
    assert_eq!(data.len(), 3_000);
    assert!(data.iter().all(|r| {
        r.level() >= LogLevel::Error
            || matches!(r, tracing_offload::Record::Event(e) if e.metadata().target() == "security.audit")
    }));
    let sampling = stats.sampling.unwrap();
    assert_eq!(
        (sampling.configured_rate, sampling.events_sampled_out),
        (0.0, 2_000)
    );
    assert_eq!(sampling.whitelist, ["security."]);
}

#[test]
fn errors_can_be_sampled_like_the_rest() {
    let sink = Collect::new("collect");
    let (layer, guard) = pipeline(0.0, &sink).keep_errors(false).build().unwrap();
    with_layer(layer, || {
        tracing::error!("sampled out now");
        tracing::error!(critical = true, "never sampled out");
    });
    guard.shutdown(DEADLINE).unwrap();
    assert_eq!(sink.count(), 1);
    assert_eq!(guard.handle().stats().sampled_out, 1);
}

#[test]
fn rate_one_keeps_everything_and_a_bad_rate_is_a_build_error() {
    let sink = Collect::new("collect");
    let (layer, guard) = pipeline(1.0, &sink).build().unwrap();
    with_layer(layer, || {
        for seq in 0..10_000u64 {
            tracing::debug!(seq, "all kept");
        }
    });
    guard.shutdown(DEADLINE).unwrap();
    assert_eq!(sink.count(), 10_000);
    assert_eq!(guard.handle().stats().sampled_out, 0);
    let err = OffloadLayer::builder()
        .sample_rate(1.5)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("1.5"), "{err}");
}

#[test]
fn set_sample_rate_applies_to_later_events_and_is_validated() {
    let sink = Collect::new("collect");
    let (layer, guard) = pipeline(1.0, &sink).build().unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        for _ in 0..100 {
            tracing::info!("kept");
        }
        handle.set_sample_rate(0.0).unwrap();
        for _ in 0..100 {
            tracing::info!("not kept");
        }
        assert!(handle.set_sample_rate(-1.0).is_err());
        assert_eq!(handle.config().sample_rate.value, 0.0);
    });
    guard.shutdown(DEADLINE).unwrap();
    assert_eq!(sink.count(), 100);
    assert_eq!(guard.handle().stats().sampled_out, 100);
}
