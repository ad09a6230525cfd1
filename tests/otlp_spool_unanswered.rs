//! With a spool, a collector that takes connections and never answers costs the sink nothing:
//! it waits for a live export at most `spool_after`, writes the request to the spool and moves
//! on, so its buffer (64 records here) drains at disk speed and nothing is dropped there, as
//! it would be if the sink waited for the export: held for the request's whole timeout, its
//! buffer full, it would count as stalled after `sink_stall_after` and the drain thread would
//! drop into it what the other sink (a channel here) takes. When a real collector takes
//! the port, every span is delivered: the requests whose live export was still running when
//! they were spooled are replayed once that export has failed.
#![cfg(feature = "otlp")]
mod support;

use std::collections::HashSet;
use std::time::Duration;

use support::collector::Collector;
use support::*;
use tracing_offload::sink::otlp::EventsAsLogs;
use tracing_offload::sink::{Channel, Otlp};
use tracing_offload::OffloadLayer;

const SPANS: u64 = 2_000;

#[test]
fn a_collector_that_never_answers_fills_the_spool_not_the_sink_buffer() {
    // A free port for the collector's HTTP side (it will need both).
    let Some((_, http)) = Collector::ports_for_later() else {
        return;
    };
    let silent = Unanswering::start();
    let grpc = silent.port;
    let dir = tempfile::tempdir().unwrap();
    let (channel, _records) = Channel::new(2 * SPANS as usize);
    let (layer, guard) = OffloadLayer::builder()
        .sink(channel)
        .sink(
            Otlp::new()
                .endpoint(format!("http://127.0.0.1:{grpc}"))
                .service_name("offload-spool-unanswered")
                .events_as_logs(EventsAsLogs::None)
                .max_export_batch_size(50)
                .max_queue_size(64)
                .timeout(Duration::from_secs(2))
                .max_retries(0)
                .spool(dir.path())
                .spool_after(Duration::from_millis(100)),
        )
        .build()
        .unwrap();
    let handle = guard.handle();
    work_spans(layer, SPANS);
    // Everything is on disk well before a single request to the silent port times out.
    handle.flush(DEADLINE).unwrap();
    let stats = handle.stats();
    let s = stats.sink("otlp").unwrap();
    assert_eq!((s.exported, s.spooled), (0, SPANS), "{s:#?}");
    assert_eq!(
        (s.failed, s.dropped, stats.dropped),
        (0, 0, 0),
        "{stats:#?}"
    );
    assert_accounting(&stats, SPANS);

    // A real collector takes the port.
    silent.stop();
    let collector = Collector::start_on(grpc, http).unwrap();
    wait_spool_replayed("the spool replayed", &handle);
    guard.shutdown(DEADLINE).unwrap();
    let spool = otlp_spool(&handle);
    assert_eq!(spool.replayed, SPANS, "{spool:#?}");
    assert_eq!(spool.lost(), 0, "{spool:#?}");
    let received = collector.wait_spans(SPANS as usize);
    let ids: HashSet<&str> = received.iter().map(|s| s.span_id.as_str()).collect();
    assert_eq!(ids.len() as u64, SPANS);
}

/// A sink for a collector on `port` that never answers.
fn unanswered_sink(port: u16, dir: &std::path::Path) -> Otlp {
    Otlp::new()
        .endpoint(format!("http://127.0.0.1:{port}"))
        .events_as_logs(EventsAsLogs::None)
        .max_export_batch_size(50)
        .timeout(Duration::from_secs(30))
        .export_timeout(Duration::from_secs(60))
        .max_retries(0)
        .spool(dir)
}

#[test]
fn a_shutdown_keeps_its_deadline_while_requests_hang_and_leaves_them_spooled() {
    let silent = Unanswering::start();
    let dir = tempfile::tempdir().unwrap();
    let (layer, guard) = OffloadLayer::builder()
        .sink(unanswered_sink(silent.port, dir.path()))
        .build()
        .unwrap();
    let handle = guard.handle();
    work_spans(layer, 500u64);
    handle.flush(DEADLINE).unwrap();
    // A live export and a replay hang on the silent collector (for 30 s each): the shutdown
    // ends within its second all the same, every thread finished, nothing abandoned.
    let report = guard.shutdown(Duration::from_secs(1)).unwrap();
    assert!(report.unfinished_threads.is_empty(), "{report:?}");
    let s = handle.stats().sink("otlp").unwrap().clone();
    assert_eq!(s.spooled, 500, "{s:#?}");

    // Everything is still in the spool for the next process.
    let (_layer, guard) = OffloadLayer::builder()
        .sink(unanswered_sink(silent.port, dir.path()))
        .build()
        .unwrap();
    let spool = guard
        .handle()
        .stats()
        .sink("otlp")
        .unwrap()
        .spool
        .clone()
        .unwrap();
    assert_eq!((spool.restored, spool.records), (500, 500), "{spool:#?}");
    let _ = guard.shutdown(Duration::from_secs(1));
    silent.stop();
}

/// A collector that takes connections and never answers is not "healthy": nothing reaches it,
/// though nothing is lost (the requests wait in the spool). Health said healthy and
/// "replaying" until the first request timed out (10 s by default, up to 600 s), and only then
/// "unreachable"; the stuck rule never fired, since the sink thread itself waits only
/// `spool_after`. It now says stuck once a request has waited `export_stuck_after`.
#[test]
fn a_collector_that_never_answers_shows_in_health_before_any_request_times_out() {
    let silent = Unanswering::start();
    let dir = tempfile::tempdir().unwrap();
    let (layer, guard) = OffloadLayer::builder()
        .health_config(
            tracing_offload::health::HealthConfig::default()
                .export_stuck_after(Duration::from_millis(500)),
        )
        .sink(unanswered_sink(silent.port, dir.path()))
        .build()
        .unwrap();
    let handle = guard.handle();
    work_spans(layer, 100u64);
    handle.flush(DEADLINE).unwrap();
    // Well within the requests' 30 s timeout.
    wait_until(
        "health says the sink is stuck",
        Duration::from_secs(10),
        || {
            let health = handle.health();
            let sink = health.component("sink:otlp").unwrap();
            sink.status == tracing_offload::health::HealthStatus::Degraded
                && sink.message.contains("has not answered")
        },
    );
    let spool = otlp_spool(&handle);
    assert!(
        spool.unanswered_for >= Some(Duration::from_millis(500)),
        "{spool:#?}"
    );
    assert_eq!(
        spool.unreachable_for, None,
        "no request has failed yet: {spool:#?}"
    );
    assert_eq!(spool.records, 100, "{spool:#?}");
    let s = handle.stats().sink("otlp").unwrap().clone();
    assert_eq!((s.spooled, s.failed, s.dropped), (100, 0, 0), "{s:#?}");
    drop(guard.shutdown(Duration::from_secs(1)));
    silent.stop();
}
