//! Adversary pass 65: `shutdown(Duration::ZERO)` of a pipeline that is idle and fully flushed
//! (`flush()` returned `Ok`, nothing queued, nothing dropped) returns
//! `Err(FlushError::Abandoned)`, "shutdown abandoned 0 records (...)": an error whose own
//! documentation says "Shutdown finished but could not flush everything by the deadline", for a
//! shutdown that lost nothing. A signal handler's `guard.shutdown(Duration::ZERO)?` (or any
//! short deadline) fails on a quiet pipeline; and "abandoned 0 records" reads as a loss to
//! whoever sees the message (README, Use: "flush everything or report what was abandoned").
//! The threads had not ended (with a deadline of zero they cannot), and a sink's last calls (a
//! file's sync) may still be under way, so it stays `Abandoned`; its text says what it is.
mod support;

use std::time::Duration;

use support::*;
use tracing_offload::sink::JsonFile;
use tracing_offload::{FlushError, OffloadLayer};

#[test]
fn a_zero_deadline_shutdown_that_abandons_nothing_is_not_an_abandoned_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.jsonl");
    let (layer, guard) = OffloadLayer::builder()
        .sink(JsonFile::new(&path))
        .build()
        .unwrap();
    let handle = guard.handle();
    with_layer(layer, || tracing::info!("written before the shutdown"));
    handle.flush(DEADLINE).unwrap();
    assert_eq!(handle.stats().sink("json").unwrap().exported, 1);
    let result = guard.shutdown(Duration::ZERO);
    let stats = handle.stats();
    assert_eq!(stats.dropped, 0, "nothing was lost: {stats:?}");
    // The threads may not have ended in no time: the error says that, and no loss.
    if let Err(e @ FlushError::Abandoned { report }) = &result {
        assert!(report.abandoned.is_empty(), "{e}");
        let text = e.to_string();
        assert!(
            !text.contains("abandoned 0") && text.contains("still ran"),
            "a shutdown that abandoned nothing reads as a loss: {text}"
        );
    }
}
