//! Under a global default subscriber, as an application installs it, building a pipeline must
//! not change what `tracing` delivers to the application's layers, and nothing the crate's own
//! threads log may come back into a pipeline.
//!
//! It did change: the crate's threads ran under a scoped default subscriber of their own,
//! which switches `tracing` to its scoped dispatch for the whole process; there, an event
//! logged from a field's `Debug` (while another event is being dispatched) and one logged from
//! a thread-local destructor reach no subscriber at all. Now the crate's threads are only
//! marked, and the layer records nothing from them: what a sink logs while exporting, from its
//! thread's thread-local destructors, while starting, and from its runtime's blocking threads.
//!
//! One test in this binary: the global default is process-wide.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use tracing_offload::sink::{Channel, Sink, SinkError};
use tracing_offload::{OffloadLayer, Record};
use tracing_subscriber::prelude::*;

const DEADLINE: Duration = Duration::from_secs(30);

/// Messages of the events an application layer saw, next to this crate's layer.
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Witness;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Witness {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        SEEN.lock().unwrap().push(message_of(event));
    }
}

fn message_of(event: &tracing::Event<'_>) -> String {
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
    m.0
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
struct LogsOnDrop(&'static str);

impl Drop for LogsOnDrop {
    fn drop(&mut self) {
        tracing::warn!("{}", self.0);
    }
}

thread_local! {
    static ON_EXIT: LogsOnDrop = const { LogsOnDrop("logged from a thread-local destructor") };
    /// A sink's per-thread connection pool, which logs when the sink's thread ends.
    static POOL: std::cell::RefCell<Option<LogsOnDrop>> = const { std::cell::RefCell::new(None) };
}

/// A sink that logs on every export, as an exporter's HTTP stack does, and whose thread's pool
/// logs when the thread ends.
struct Talkative;

impl Sink for Talkative {
    fn name(&self) -> &str {
        "talkative"
    }
    fn export(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        POOL.with(|p| {
            p.borrow_mut()
                .get_or_insert(LogsOnDrop("logged by a sink's thread-local destructor"));
        });
        tracing::info!(records = batch.len(), "logged by a sink");
        Ok(())
    }
}

/// An async sink that logs while it starts (on a thread the crate starts for it) and on its
/// runtime's blocking threads.
#[cfg(feature = "otlp")]
struct TalkativeAsync;

#[cfg(feature = "otlp")]
impl tracing_offload::sink::AsyncSink for TalkativeAsync {
    fn name(&self) -> &str {
        "talkative-async"
    }
    async fn start(&mut self) -> Result<(), SinkError> {
        tracing::info!("logged by an async sink starting");
        Ok(())
    }
    async fn export(&mut self, _batch: &[Record]) -> Result<(), SinkError> {
        tokio::task::spawn_blocking(|| tracing::info!("logged on a sink runtime's thread"))
            .await
            .map_err(|e| SinkError::Retryable(e.to_string()))
    }
}

#[test]
fn a_pipeline_changes_nothing_the_applications_layers_receive() {
    let (channel, records) = Channel::new(1024);
    let (layer, guard) = OffloadLayer::builder().sink(channel).build().unwrap();
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

    // A second pipeline whose sinks log, fed from this thread, then shut down (its threads
    // end): the installed pipeline must record none of what they log.
    let second = OffloadLayer::builder().sink(Talkative);
    #[cfg(feature = "otlp")]
    let second = second.sink(tracing_offload::sink::Async::new(TalkativeAsync));
    let (second, second_guard) = second.build().unwrap();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(second), || {
        tracing::info!("for the second pipeline");
    });
    second_guard.shutdown(DEADLINE).unwrap();
    let exported = second_guard.handle().stats();
    assert_eq!(
        exported.sink("talkative").unwrap().exported,
        1,
        "{exported:#?}"
    );

    let handle = guard.handle();
    handle.flush(DEADLINE).unwrap();
    let expected = [
        "logged from a Debug impl",
        "outer",
        "thread body",
        "logged from a thread-local destructor",
    ];
    let mut got: Vec<String> = records
        .drain()
        .iter()
        .filter_map(|r| match r {
            Record::Event(e) => e.message().map(|m| m.text.to_owned()),
            _ => None,
        })
        .collect();
    got.sort();
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.sort();
    // Every event of the application, and nothing logged on the second pipeline's threads.
    assert_eq!(got, want);
    let stats = handle.stats();
    assert_eq!(stats.offered, 4, "{stats:#?}");
    assert_eq!(
        stats.offered,
        stats.enqueued + stats.dropped + stats.sampled_out
    );

    // The application's own layer saw them all, and what the sinks logged, as on any thread.
    let seen = SEEN.lock().unwrap().clone();
    for message in expected {
        assert!(
            seen.iter().any(|m| m == message),
            "{message:?} not in {seen:?}"
        );
    }
    let mut from_sinks = vec![
        "logged by a sink",
        "logged by a sink's thread-local destructor",
    ];
    if cfg!(feature = "otlp") {
        from_sinks.push("logged by an async sink starting");
        from_sinks.push("logged on a sink runtime's thread");
    }
    for message in from_sinks {
        assert!(
            seen.iter().any(|m| m == message),
            "{message:?} not in {seen:?}"
        );
    }
    guard.shutdown(DEADLINE).unwrap();
}
