//! A span that follows more spans than it keeps links for (128, OpenTelemetry's default link
//! limit) says how many it did not keep, as it does for events over the span-event limit:
//! `SpanRecord::dropped_links` and `"dropped_links"` in the JSON file. The links past the
//! limit used to vanish without a count.
mod support;

use support::*;
use tracing_offload::sink::JsonFile;
use tracing_offload::OffloadLayer;

#[test]
fn links_past_the_limit_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("links.jsonl");
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder()
        .sink(sink.clone())
        .sink(JsonFile::new(&path))
        .build()
        .unwrap();
    with_layer(layer, || {
        let followed: Vec<_> = (0..200).map(|_| tracing::info_span!("before")).collect();
        let span = tracing::info_span!("after many");
        for f in &followed {
            span.follows_from(f);
        }
        span.follows_from(&span); // a cycle on itself: a link like any other
    });
    guard.shutdown(DEADLINE).unwrap();
    let spans = span_records(&sink.data());
    let span = span_named(&spans, "after many");
    assert_eq!(span.links().len(), 128);
    assert_eq!(span.dropped_links(), 73);
    let text = std::fs::read_to_string(&path).unwrap();
    let line: serde_json::Value = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["name"] == "after many")
        .unwrap();
    assert_eq!(line["links"].as_array().unwrap().len(), 128);
    assert_eq!(line["dropped_links"], 73);
}
