//! Under a global default subscriber, as an application installs it, building a pipeline must
//! not change what `tracing` delivers to the application's layers. It did: the crate's threads
//! ran under a scoped default subscriber of their own, which switches `tracing` to its scoped
//! dispatch for the whole process; there, an event logged from a field's `Debug` (while another
//! event is being dispatched) and one logged from a thread-local destructor reach no subscriber
//! at all. Now the crate's threads are only marked, and the layer records nothing from them.
//!
//! One test in this binary: the global default is process-wide, and no other test here may
//! set a scoped one.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing_offload::sink::{Channel, Sink, SinkError};
use tracing_offload::{OffloadLayer, Record};
use tracing_subscriber::prelude::*;

/// Messages of the events an application layer saw, next to this crate's layer.
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Witness;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Witness {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut m = Message(String::new());
        event.record(&mut m);
        SEEN.lock().unwrap().push(m.0);
    }
}

/// A value whose `Debug` logs: the inner event is dispatched inside the outer one's.
struct Chatty;

impl fmt::Debug for Chatty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        tracing::warn!("logged from a Debug impl");
        f.write_str("Chatty")
    }
}

/// Logs when its thread ends.
struct LogsOnDrop;

impl Drop for LogsOnDrop {
    fn drop(&mut self) {
        tracing::warn!("logged from a thread-local destructor");
    }
}

thread_local! {
    static ON_EXIT: LogsOnDrop = const { LogsOnDrop };
}

/// A sink that logs on every export, as an exporter's HTTP stack does, on the sink's thread.
struct Talkative(Arc<AtomicU64>);

impl Sink for Talkative {
    fn name(&self) -> &str {
        "talkative"
    }
    fn export(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        tracing::info!(records = batch.len(), "logged by a sink");
        Ok(())
    }
}

#[test]
fn a_pipeline_changes_nothing_the_applications_layers_receive() {
    let (channel, records) = Channel::new(1024);
    let exports = Arc::new(AtomicU64::new(0));
    let (layer, guard) = OffloadLayer::builder()
        .sink(channel)
        .sink(Talkative(Arc::clone(&exports)))
        .build()
        .unwrap();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(layer).with(Witness),
    )
    .unwrap();

    tracing::info!(value = ?Chatty, "outer");
    std::thread::spawn(|| {
        ON_EXIT.with(|_| {});
        tracing::info!("thread body");
    })
    .join()
    .unwrap();
    let handle = guard.handle();
    handle.flush(Duration::from_secs(30)).unwrap();
    assert!(exports.load(Ordering::SeqCst) > 0);

    let expected = [
        "logged from a Debug impl",
        "outer",
        "thread body",
        "logged from a thread-local destructor",
    ];
    let mut exported: Vec<String> = records
        .drain()
        .iter()
        .filter_map(|r| match r {
            Record::Event(e) => e.message().map(|m| m.text.to_owned()),
            _ => None,
        })
        .collect();
    exported.sort();
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.sort();
    // Every event of the application, and nothing the sink logged on the crate's thread.
    assert_eq!(exported, want);
    let stats = handle.stats();
    assert_eq!(stats.offered, 4, "{stats:#?}");
    assert_eq!(
        stats.offered,
        stats.enqueued + stats.dropped + stats.sampled_out
    );

    // The application's own layer saw them all, and the sink's log too, as on any thread.
    let seen = SEEN.lock().unwrap().clone();
    for message in expected {
        assert!(
            seen.iter().any(|m| m == message),
            "{message:?} not in {seen:?}"
        );
    }
    assert!(seen.iter().any(|m| m == "logged by a sink"), "{seen:?}");
    guard.shutdown(Duration::from_secs(30)).unwrap();
}
