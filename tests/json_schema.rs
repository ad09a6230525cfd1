//! Every key of the documented JSON-lines schema, with its type, for events, spans and drop
//! markers.
mod support;

use support::*;
use tracing_offload::{sink, OffloadLayer};

#[test]
fn lines_follow_the_documented_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.jsonl");
    let (layer, guard) = OffloadLayer::builder()
        .sink(sink::JsonFile::new(&path))
        .build()
        .unwrap();
    let handle = guard.handle();
    std::thread::Builder::new()
        .name("worker-7".into())
        .spawn(move || {
            with_layer(layer, || {
                let outer = tracing::info_span!("outer", user = "ada").entered();
                let inner = tracing::warn_span!("inner", attempt = 2u64).entered();
                tracing::info!(n = -3i64, ok = true, ratio = 0.5, "hello {}", "world");
                drop(inner);
                drop(outer);
            })
        })
        .unwrap()
        .join()
        .unwrap();
    handle.flush(DEADLINE).unwrap();
    guard.shutdown(DEADLINE).unwrap();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    let (event, inner, outer) = (&lines[0], &lines[1], &lines[2]);
    let is_ts = |v: &serde_json::Value| {
        let s = v.as_str().unwrap();
        s.len() == 27 && s.ends_with('Z') && &s[10..11] == "T" && &s[19..20] == "."
    };
    let is_hex = |v: &serde_json::Value, n| {
        let s = v.as_str().unwrap();
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };

    assert!(is_ts(&event["ts"]));
    assert_eq!(event["kind"], "event");
    assert_eq!(event["level"], "info");
    assert_eq!(event["severity_number"], 9);
    assert_eq!(event["target"], "json_schema");
    assert!(event["name"]
        .as_str()
        .unwrap()
        .starts_with("event tests/json_schema.rs:"));
    assert_eq!(event["message"], "hello world");
    assert_eq!(
        event["fields"],
        serde_json::json!({"n": -3, "ok": true, "ratio": 0.5})
    );
    assert_eq!(event["trace_id"], inner["trace_id"]);
    assert_eq!(event["span_id"], inner["span_id"]);
    assert_eq!(event["thread"], "worker-7");

    assert_eq!(inner["kind"], "span");
    assert_eq!(inner["level"], "warning");
    assert_eq!(inner["severity_number"], 13);
    assert_eq!(inner["name"], "inner");
    assert_eq!(inner["fields"], serde_json::json!({"attempt": 2}));
    assert!(is_hex(&inner["trace_id"], 32) && is_hex(&inner["span_id"], 16));
    assert_eq!(inner["parent_span_id"], outer["span_id"]);
    assert_eq!(inner["trace_id"], outer["trace_id"]);
    assert!(outer.get("parent_span_id").is_none());
    assert!(is_ts(&inner["start"]) && is_ts(&inner["end"]));
    assert!(inner["start"].as_str() <= inner["end"].as_str());
    assert!(inner["duration_ns"].as_u64().unwrap() > 0);
    assert_eq!(outer["fields"]["user"], "ada");
}

#[test]
fn drop_markers_are_lines_with_counts_by_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("markers.jsonl");
    let stats = flood_a_one_record_queue(sink::JsonFile::new(&path));
    let text = std::fs::read_to_string(&path).unwrap();
    let markers: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "dropped")
        .collect();
    let reported: u64 = markers
        .iter()
        .map(|m| m["dropped"]["queue_full_newest"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(reported, stats.dropped, "markers report every drop");
    let m = &markers[0];
    assert_eq!(
        (m["level"].as_str(), m["severity_number"].as_u64()),
        (Some("warning"), Some(13))
    );
    assert!(m["message"]
        .as_str()
        .unwrap()
        .contains("records dropped since"));
    assert!(m["since"].as_str().unwrap() <= m["ts"].as_str().unwrap());
}
