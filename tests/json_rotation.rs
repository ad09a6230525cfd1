//! `JsonFile` rotation by size keeps `keep` old files and never splits a line.
mod support;

use support::*;
use tracing_offload::sink::{JsonFile, Rotation};
use tracing_offload::OffloadLayer;

#[test]
fn size_rotation_shifts_old_files_and_keeps_every_line_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.jsonl");
    let (layer, guard) = OffloadLayer::builder()
        .batch_size(16)
        .sink(JsonFile::new(&path).rotation(Rotation::Size {
            max_bytes: 4 * 1024,
            keep: 2,
        }))
        .build()
        .unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        for i in 0..400u64 {
            tracing::info!(i, "rotate me");
            if i % 16 == 15 {
                handle.flush(DEADLINE).unwrap(); // many small batches
            }
        }
    });
    guard.shutdown(DEADLINE).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["app.jsonl", "app.jsonl.1", "app.jsonl.2"]);
    let mut last_seen = Vec::new();
    for name in ["app.jsonl.2", "app.jsonl.1", "app.jsonl"] {
        let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert!(
            text.len() <= 4 * 1024 + 4 * 1024,
            "{name} is {} bytes",
            text.len()
        );
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("whole JSON lines only");
            last_seen.push(v["fields"]["i"].as_u64().unwrap());
        }
    }
    // The newest files hold the newest records, in order, ending with the last one.
    assert!(
        last_seen.windows(2).all(|w| w[0] + 1 == w[1]),
        "{last_seen:?}"
    );
    assert_eq!(*last_seen.last().unwrap(), 399);
}
