//! A field named twice at one callsite: the last value wins, in every sink (one JSON key, one
//! field in the record).
mod support;

use support::*;
use tracing_offload::{sink, FieldValue, OffloadLayer, Record};

#[test]
fn the_last_value_of_a_field_named_twice_wins_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dup.jsonl");
    let collect = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder()
        .sink(sink::JsonFile::new(&path))
        .sink(collect.clone())
        .build()
        .unwrap();
    with_layer(layer, || {
        tracing::info!(user = "alice", user = "mallory", "login");
        let span = tracing::info_span!("session", user = "alice", user = "mallory");
        drop(span);
    });
    guard.shutdown(DEADLINE).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    for line in text.lines() {
        assert_eq!(
            line.matches("\"user\":").count(),
            1,
            "duplicate key: {line}"
        );
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["fields"]["user"], "mallory", "{line}");
    }
    assert_eq!(text.lines().count(), 2);
    for r in collect.data() {
        let fields = match &r {
            Record::Event(e) => e.fields().clone(),
            Record::Span(s) => s.fields().clone(),
            Record::Dropped(_) => continue,
        };
        assert_eq!(fields.len(), 1, "{fields:?}");
        assert!(
            matches!(fields.get("user"), Some(FieldValue::Str(t)) if t.text == "mallory"),
            "{fields:?}"
        );
    }
}
