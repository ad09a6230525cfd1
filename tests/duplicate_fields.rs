//! A field named twice at one callsite: the last value wins, in every sink (one JSON key, one
//! field in the record).
mod support;

use support::*;
use tracing_offload::{sink, FieldValue, Guard, OffloadLayer, Record};

/// The JSON file's name in the directory [`json_and_collect`] makes.
const JSON: &str = "fields.jsonl";

/// A pipeline writing both to a JSON file (in the returned directory) and to a collecting sink.
fn json_and_collect() -> (tempfile::TempDir, Collect, OffloadLayer, Guard) {
    let dir = tempfile::tempdir().unwrap();
    let collect = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder()
        .sink(sink::JsonFile::new(dir.path().join(JSON)))
        .sink(collect.clone())
        .build()
        .unwrap();
    (dir, collect, layer, guard)
}

#[test]
fn the_last_value_of_a_field_named_twice_wins_everywhere() {
    let (dir, collect, layer, guard) = json_and_collect();
    let path = dir.path().join(JSON);
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

/// A long value replaced by a later one of the same name used to leave most of the event's
/// text buffer unused, and the buffer was compacted: the fields' text moved, but the message
/// (kept apart from the fields) still pointed where it was, at another value's bytes (found by
/// an adversary pass: `message` became `"SE"`, the start of the other value).
#[test]
fn replacing_a_long_value_keeps_the_message_whole() {
    let (dir, collect, layer, guard) = json_and_collect();
    let path = dir.path().join(JSON);
    let big = "B".repeat(2000);
    with_layer(layer, || {
        tracing::info!(a = %big, a = "SECRET-token", "hi");
        tracing::warn!(user = %big, user = "alice", "payment declined");
    });
    guard.shutdown(DEADLINE).unwrap();
    let mut seen = Vec::new();
    for r in collect.data() {
        let Record::Event(e) = &r else { continue };
        let message = e.message().map(|m| m.text.to_owned()).unwrap_or_default();
        let fields: Vec<(String, String)> = e
            .fields()
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_string()))
            .collect();
        seen.push((message, fields));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            ("hi".into(), vec![("a".into(), "SECRET-token".into())]),
            (
                "payment declined".into(),
                vec![("user".into(), "alice".into())]
            ),
        ]
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let messages: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["message"].to_string())
        .collect();
    assert_eq!(messages, ["\"hi\"", "\"payment declined\""], "{text}");
}
