//! Adversary pass 66: `OffloadCollector::combine(label, [(name, collector)])` takes any label
//! name and any pipeline names and gives, without a word, an exposition OpenMetrics forbids
//! and Prometheus refuses or mangles:
//! - a label named like one the samples already carry (`sink`, `outcome`, `reason`) gives
//!   samples with the label twice (`{sink="app",sink="channel"}`);
//! - two pipelines of the same name give the same series twice (Prometheus drops them as
//!   duplicate samples);
//! - a combined collector inside another with the same label gives the label twice.
//!
//! README: combine is the way to get "one collector" for several pipelines where two
//! registered collectors "would declare each family twice, which Prometheus refuses".
//! `combine` refuses each of these now, with an error that says why.
use prometheus_client::registry::Registry;
use tracing_offload::metrics::OffloadCollector;
use tracing_offload::sink::Channel;
use tracing_offload::{Guard, OffloadLayer};

fn pipeline(name: &'static str) -> (tracing_offload::OffloadLayer, Guard) {
    let (sink, _rx) = Channel::new(16);
    let (layer, guard) = OffloadLayer::builder()
        .sink(sink.name(name))
        .build()
        .unwrap();
    std::mem::forget(_rx);
    (layer, guard)
}

fn scrape(c: OffloadCollector) -> String {
    let mut registry = Registry::default();
    c.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}

/// `combine`'s error text, for a combination that must be refused.
#[track_caller]
fn refused(combined: Result<OffloadCollector, tracing_offload::metrics::CombineError>) -> String {
    match combined {
        Ok(c) => panic!("combined without a word; its scrape:\n{}", scrape(c)),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_label_named_like_an_existing_one_is_refused() {
    let (_l1, app) = pipeline("json");
    let (_l2, audit) = pipeline("json");
    // It gave samples `{sink="app",sink="json"}`, which promtool refuses.
    let e = refused(OffloadCollector::combine(
        "sink",
        [
            ("app", app.handle().metrics_collector()),
            ("audit", audit.handle().metrics_collector()),
        ],
    ));
    assert!(
        e.contains("\"sink\" is a label the metrics carry already"),
        "{e}"
    );
}

#[test]
fn two_pipelines_of_one_name_are_refused() {
    let (_l1, a) = pipeline("channel");
    let (_l2, b) = pipeline("channel");
    // It gave every series twice, which Prometheus drops.
    let e = refused(OffloadCollector::combine(
        "pipeline",
        [
            ("app", a.handle().metrics_collector()),
            ("app", b.handle().metrics_collector()),
        ],
    ));
    assert!(e.contains("two pipelines named \"app\""), "{e}");
}

#[test]
fn a_nested_combine_with_the_same_label_is_refused_and_another_label_works() {
    let (_l1, a) = pipeline("channel");
    let (_l2, b) = pipeline("channel");
    let inner =
        || OffloadCollector::combine("pipeline", [("a", a.handle().metrics_collector())]).unwrap();
    let e = refused(OffloadCollector::combine(
        "pipeline",
        [("outer", inner()), ("b", b.handle().metrics_collector())],
    ));
    assert!(e.contains("labels with \"pipeline\" already"), "{e}");
    let text = scrape(
        OffloadCollector::combine(
            "region",
            [("eu", inner()), ("us", b.handle().metrics_collector())],
        )
        .unwrap(),
    );
    assert!(
        text.contains("offload_records_total{region=\"eu\",pipeline=\"a\",outcome=\"enqueued\"} 0"),
        "{text}"
    );
}

#[test]
fn a_label_that_is_not_a_valid_label_name_is_refused() {
    let (_l1, a) = pipeline("channel");
    for label in ["pipe-line", "", "9lives", "__name"] {
        let e = refused(OffloadCollector::combine(
            label,
            [("app", a.handle().metrics_collector())],
        ));
        assert!(e.contains("is not a label name"), "{label:?}: {e}");
    }
}
