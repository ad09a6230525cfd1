//! User-written async sinks run on one private runtime through `sink::Async`: from inside an
//! application's runtime too, with every export bounded by its timeout.
#![cfg(feature = "otlp")]
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tracing_offload::sink::{Async, AsyncSink, SinkError};
use tracing_offload::{OffloadLayer, Record};

struct Remote {
    sent: Arc<AtomicUsize>,
    hang: bool,
}

impl AsyncSink for Remote {
    fn name(&self) -> &str {
        "remote"
    }
    async fn export(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        if self.hang {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(Duration::from_millis(1)).await; // timers work on the private runtime
        self.sent.fetch_add(batch.len(), Ordering::SeqCst);
        Ok(())
    }
}

fn run(hang: bool) -> (usize, tracing_offload::Stats) {
    let sent = Arc::new(AtomicUsize::new(0));
    let sink = Async::new(Remote {
        sent: sent.clone(),
        hang,
    })
    .export_timeout(Duration::from_millis(50));
    let (layer, guard) = OffloadLayer::builder().sink(sink).build().unwrap();
    with_layer(layer, || {
        for i in 0..100u64 {
            tracing::info!(i, "to the remote");
        }
    });
    guard.shutdown(DEADLINE).unwrap();
    (sent.load(Ordering::SeqCst), guard.handle().stats())
}

#[test]
fn an_async_sink_built_inside_a_runtime_receives_everything() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (sent, stats) = rt.block_on(async { run(false) });
    assert_eq!(sent, 100);
    assert_eq!(stats.sink("remote").unwrap().exported, 100);
}

#[test]
fn an_export_that_never_finishes_times_out_and_is_counted_failed() {
    let (sent, stats) = run(true);
    assert_eq!(sent, 0);
    let s = stats.sink("remote").unwrap();
    assert_eq!((s.exported, s.failed), (0, 100), "{s:#?}");
    assert_eq!(s.last_error.as_deref(), Some("timed out"));
}
