//! `Rotation::Size` with a huge `keep` rotates in time proportional to the old files that
//! exist, not to `keep`: with `keep: usize::MAX` the sink thread used to rename `<path>.N` for
//! every `N` below `keep` — 2^64 renames of files that do not exist — and never wrote again.
mod support;

use support::*;
use tracing_offload::sink::{JsonFile, Rotation};
use tracing_offload::OffloadLayer;

#[test]
fn a_huge_keep_rotates_the_files_that_exist_and_goes_on_writing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.jsonl");
    let (layer, guard) = OffloadLayer::builder()
        .sink(JsonFile::new(&path).rotation(Rotation::Size {
            max_bytes: 1, // every batch after the first rotates
            keep: usize::MAX,
        }))
        .build()
        .unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        for i in 0..5u64 {
            tracing::info!(i, "rotate me");
            handle
                .flush(DEADLINE)
                .expect("the sink writes each batch, rotating first");
        }
    });
    guard.shutdown(DEADLINE).unwrap();
    // The newest record in the file itself, then one per old file, newest first.
    for (name, i) in [
        ("app.jsonl", 4),
        ("app.jsonl.1", 3),
        ("app.jsonl.2", 2),
        ("app.jsonl.3", 1),
        ("app.jsonl.4", 0),
    ] {
        let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["fields"]["i"], i, "{name}: {text}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 5);
}
