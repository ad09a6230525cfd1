//! With a spool, a collector killed under a steady load and started again loses nothing: every
//! span arrives (deduplicated by span id), and the counts add up exactly, with no record failed
//! or dropped. The sink keeps exporting live until the collector dies, spools while it is down
//! (health says so), and replays the spool when it is back while new spans keep flowing live.
//!
//! The outage lasts until the collector has been unreachable for 2 s and 500 spans went to the
//! spool: a few seconds prove what 30 s would (the sink is in the same state from the first
//! failed request on), and keep the test's wall time short.
#![cfg(feature = "otlp")]
mod support;

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use support::collector::{span_numbers, Collector};
use support::*;
use tracing_offload::health::HealthStatus;
use tracing_offload::sink::otlp::EventsAsLogs;
use tracing_offload::sink::Otlp;
use tracing_offload::{Handle, OffloadLayer, SinkStats};

/// A thread emitting spans numbered from 0 until stopped, about one every 2 ms.
struct Load {
    stop: Arc<AtomicBool>,
    emitted: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(dispatch: tracing::Dispatch) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let emitted = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, emitted) = (Arc::clone(&stop), Arc::clone(&emitted));
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    while !stop.load(Ordering::Relaxed) {
                        let i = emitted.load(Ordering::Relaxed);
                        drop(tracing::info_span!("work", i).entered());
                        emitted.store(i + 1, Ordering::Relaxed);
                        // Pacing the load (a steady rate), not synchronisation.
                        std::thread::sleep(Duration::from_millis(2));
                    }
                })
            })
        };
        Load {
            stop,
            emitted,
            thread: Some(thread),
        }
    }

    fn emitted(&self) -> u64 {
        self.emitted.load(Ordering::Relaxed)
    }

    /// Stops the load and returns how many spans it emitted.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        self.emitted()
    }
}

fn otlp(handle: &Handle) -> SinkStats {
    handle.stats().sink("otlp").unwrap().clone()
}

#[test]
fn a_collector_killed_under_load_and_restarted_loses_nothing_with_a_spool() {
    let Some(mut first) = Collector::start() else {
        return;
    };
    let (grpc, http) = (first.grpc_port, first.http_port);
    let dir = tempfile::tempdir().unwrap();
    let sink = Otlp::new()
        .endpoint(first.grpc_endpoint())
        .service_name("offload-spool")
        .events_as_logs(EventsAsLogs::None)
        .max_export_batch_size(100)
        .timeout(Duration::from_millis(500))
        .max_retries(2)
        .spool(dir.path());
    let (layer, guard) = OffloadLayer::builder().sink(sink).build().unwrap();
    let handle = guard.handle();
    let load = Load::start(dispatch(layer));

    // 1. Up: live exports.
    first.wait_for("live spans", DEADLINE, |c| c.span_count() >= 100);

    // 2. Down: the collector is killed mid-stream; the sink spools, and says so.
    let killed_at = SystemTime::now();
    first.kill();
    wait_until("2 s of outage and 500 spans spooled", DEADLINE, || {
        let spool = otlp(&handle).spool.unwrap();
        spool.spooled >= 500 && spool.unreachable_for >= Some(Duration::from_secs(2))
    });
    let sink = handle.health().component("sink:otlp").unwrap().clone();
    assert_eq!(sink.status, HealthStatus::Degraded, "{sink:?}");
    assert!(sink.message.contains("unreachable"), "{sink:?}");
    let during = otlp(&handle);
    assert_eq!((during.failed, during.dropped), (0, 0), "{during:#?}");
    // The spool's error says when it happened.
    let outage_error_at = during.spool.as_ref().unwrap().last_error_at;
    assert!(outage_error_at >= Some(killed_at), "{during:#?}");

    // 3. Back: the spool is replayed while new spans go live.
    let second = Collector::start_on(grpc, http).unwrap();
    let exported_before = otlp(&handle).exported;
    wait_until(
        "the spool replayed and live export resumed",
        DEADLINE,
        || {
            let s = otlp(&handle);
            let spool = s.spool.unwrap();
            spool.records == 0 && spool.replayed > 0 && s.exported > exported_before
        },
    );
    // The last error stays once the spool has drained; its time tells it is from the outage.
    let drained = otlp(&handle).spool.unwrap();
    assert!(drained.last_error.is_some(), "{drained:#?}");
    assert!(
        drained.last_error_at >= outage_error_at
            && drained.last_error_at <= Some(SystemTime::now()),
        "{drained:#?}"
    );
    let emitted = load.stop();
    handle.flush(DEADLINE).unwrap();
    second.wait_for("every span", DEADLINE, |c| {
        first.span_count() + c.span_count() >= emitted as usize
    });
    guard.shutdown(DEADLINE).unwrap();

    // Every span arrived, once or (at most for a request cut by the kill) twice.
    let received: Vec<_> = first.spans().into_iter().chain(second.spans()).collect();
    let ids: HashSet<&str> = received.iter().map(|s| s.span_id.as_str()).collect();
    let numbers = span_numbers(&received);
    assert_eq!(ids.len() as u64, emitted, "unique span ids received");
    assert_eq!(numbers, (0..emitted).collect::<BTreeSet<_>>());

    // The counts are exact: every record exported live or spooled, and every spooled one
    // replayed; nothing failed, dropped, evicted or corrupt.
    let stats = handle.stats();
    let s = stats.sink("otlp").unwrap();
    let spool = s.spool.as_ref().unwrap();
    assert_eq!(stats.offered, emitted, "{stats:#?}");
    assert_eq!(stats.dropped, 0, "{stats:#?}");
    assert_eq!(s.forwarded, emitted, "{s:#?}");
    assert_eq!(s.exported + s.spooled, emitted, "{s:#?}");
    assert_eq!((s.failed, s.dropped), (0, 0), "{s:#?}");
    assert_eq!(spool.spooled, s.spooled, "{s:#?}");
    assert_eq!(spool.replayed, spool.spooled, "{s:#?}");
    assert_eq!(spool.lost(), 0, "{s:#?}");
    assert_eq!((spool.records, spool.restored), (0, 0), "{s:#?}");
    assert!(s.spooled >= 500, "{s:#?}");
    assert_accounting(&stats, emitted);
}
