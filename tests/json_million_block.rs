//! 1,000,000 events in Block mode: the JSON file has exactly 1,000,000 valid lines, in
//! per-thread order.
mod support;

use std::io::BufRead;
use std::time::Duration;

use support::*;
use tracing_offload::{sink, Backpressure, OffloadLayer};

#[test]
fn a_million_events_become_a_million_ordered_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("million.jsonl");
    let (layer, guard) = OffloadLayer::builder()
        .capacity(8_192)
        .backpressure(Backpressure::Block {
            timeout: Duration::from_secs(30),
        })
        .sink(sink::JsonFile::new(&path))
        .build()
        .unwrap();
    let threads = 4u64;
    let per_thread = 250_000u64;
    produce(layer, threads, per_thread);
    guard.shutdown(Duration::from_secs(120)).unwrap();
    let stats = guard.handle().stats();
    assert_accounting(&stats, threads * per_thread);
    assert_eq!(stats.dropped, 0, "{stats:#?}");

    let file = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
    let mut next = vec![0u64; threads as usize];
    let mut lines = 0u64;
    for line in file.lines() {
        let line = line.unwrap();
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("line {lines} is not JSON ({e}): {line}"));
        let producer = v["fields"]["producer"].as_u64().unwrap();
        let seq = v["fields"]["seq"].as_u64().unwrap();
        assert_eq!(
            seq, next[producer as usize],
            "producer {producer} out of order"
        );
        next[producer as usize] += 1;
        lines += 1;
    }
    assert_eq!(lines, threads * per_thread);
}
