//! Retries follow the OTLP specification: permanent errors fail fast (one request, counted as
//! failed, said to be permanent), transient ones are retried a bounded number of times by one
//! loop only, and the server's `Retry-After` is honoured. Against a real HTTP endpoint that
//! answers with scripted statuses, and a real collector (Rotel) without a logs service for gRPC.
#![cfg(feature = "otlp")]
mod support;

use std::time::Duration;

use support::collector::Collector;
use support::grpc_receiver::{GrpcAnswer, GrpcReceiver};
use support::receiver::{Answer, Receiver};
use support::*;
use tracing_offload::sink::otlp::{EventsAsLogs, Protocol};
use tracing_offload::sink::Otlp;
use tracing_offload::{Handle, OffloadLayer, SinkStats};

/// A traces-only HTTP sink to `endpoint`.
fn http_sink(endpoint: String, max_retries: u32) -> Otlp {
    Otlp::new()
        .endpoint(endpoint)
        .protocol(Protocol::HttpProtobuf)
        .events_as_logs(EventsAsLogs::None)
        .timeout(Duration::from_secs(5))
        .max_retries(max_retries)
}

/// Sends `n` spans through `sink` as one batch; returns the sink's stats after a flush.
fn send_spans(sink: Otlp, n: u64) -> (SinkStats, Handle) {
    let (layer, guard) = OffloadLayer::builder().sink(sink).build().unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        for i in 0..n {
            let _s = tracing::info_span!("work", i).entered();
        }
    });
    handle.flush(DEADLINE).unwrap();
    let stats = handle.stats().sink("otlp").unwrap().clone();
    guard.shutdown(DEADLINE).unwrap();
    (stats, handle)
}

#[test]
fn permanent_http_errors_are_sent_once_and_counted_as_failed() {
    for status in [400, 401, 403, 404, 413] {
        let receiver = Receiver::start(vec![Answer::status(status)]);
        let (s, handle) = send_spans(http_sink(receiver.endpoint(), 5), 3);
        // One request per batch the sink exported (the drain may split the three spans).
        assert_eq!(
            receiver.received().len() as u64,
            s.batches,
            "HTTP {status}: not retried"
        );
        assert_eq!(
            (s.exported, s.failed, s.failed_permanent, s.retries),
            (0, 3, 3, 0),
            "{status}: {s:#?}"
        );
        let error = s.last_error.unwrap_or_default();
        assert!(
            error.contains("not retried (a permanent error)")
                && error.contains(&status.to_string()),
            "HTTP {status}: {error}"
        );
        assert_accounting(&handle.stats(), 3);
    }
}

#[test]
fn transient_http_errors_are_retried_by_one_loop_only() {
    let receiver = Receiver::start(vec![Answer::status(503)]);
    let (s, _) = send_spans(http_sink(receiver.endpoint(), 2), 3);
    // Per batch, one request and two retries: before, our loop wrapped the exporter's, and
    // each of our 3 attempts made 4 requests.
    assert_eq!(receiver.received().len() as u64, 3 * s.batches, "{s:#?}");
    assert_eq!(
        (s.exported, s.failed, s.failed_permanent, s.retries),
        (0, 3, 0, 2 * s.batches),
        "{s:#?}"
    );
    let error = s.last_error.unwrap_or_default();
    assert!(
        error.contains("after 3 attempts") && error.contains("503"),
        "{error}"
    );
}

#[test]
fn retry_after_is_honoured() {
    let receiver = Receiver::start(vec![Answer::retry_after(429, "1"), Answer::status(200)]);
    let (s, _) = send_spans(http_sink(receiver.endpoint(), 5), 3);
    let got = receiver.received();
    // The first request is throttled, every later one accepted.
    assert_eq!(got.len() as u64, s.batches + 1, "{s:#?}");
    assert_eq!((s.exported, s.failed, s.retries), (3, 0, 1), "{s:#?}");
    assert!(
        got[1].at.duration_since(got[0].at) >= Duration::from_secs(1),
        "the retry waited for Retry-After: {:?}",
        got[1].at.duration_since(got[0].at)
    );
    assert!(got.iter().all(|r| r.path == "/v1/traces"));
}

#[test]
fn a_retry_after_beyond_the_request_timeout_fails_at_once() {
    // Waiting an hour would outlive the 5 s request budget: give up now, counted.
    let receiver = Receiver::start(vec![Answer::retry_after(429, "3600")]);
    let (s, _) = send_spans(http_sink(receiver.endpoint(), 5), 3);
    assert_eq!(receiver.received().len() as u64, s.batches, "{s:#?}");
    assert_eq!((s.exported, s.failed, s.retries), (0, 3, 0), "{s:#?}");
    let error = s.last_error.unwrap_or_default();
    assert!(
        error.contains("after 1 attempt:") && error.contains("429"),
        "{error}"
    );
}

#[test]
fn a_grpc_service_the_collector_lacks_is_a_permanent_error() {
    let Some(collector) = Collector::start_with_args(&["--otlp-receiver-logs-disabled"]) else {
        return;
    };
    let sink = Otlp::new()
        .endpoint(collector.grpc_endpoint())
        .timeout(Duration::from_secs(5))
        .max_retries(5);
    let (layer, guard) = OffloadLayer::builder().sink(sink).build().unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        let _s = tracing::info_span!("request").entered();
        tracing::info!("inside");
    });
    handle.flush(DEADLINE).unwrap();
    guard.shutdown(DEADLINE).unwrap();
    let s = handle.stats().sink("otlp").unwrap().clone();
    // The span went through; its event, sent as a log record, was refused once, not retried.
    assert_eq!(collector.wait_spans(1).len(), 1);
    assert_eq!(s.retries, 0, "{s:#?}");
    let error = s.last_error.unwrap_or_default();
    assert!(
        error.contains("OTLP logs rejected, not retried") && error.contains("Unimplemented"),
        "{error}"
    );
}

#[test]
fn the_spool_replay_honours_grpc_retry_info() {
    // The same over gRPC: the live export fails (`UNAVAILABLE`, not retried), the batch is
    // spooled; its replay is throttled with `RESOURCE_EXHAUSTED` and a `RetryInfo` of 3 s; the
    // next attempt is accepted.
    let receiver = GrpcReceiver::start(vec![
        GrpcAnswer::Fail(tonic::Code::Unavailable, None),
        GrpcAnswer::Fail(tonic::Code::ResourceExhausted, Some(Duration::from_secs(3))),
        GrpcAnswer::Accept,
    ]);
    let dir = tempfile::tempdir().unwrap();
    let sink = Otlp::new()
        .endpoint(receiver.endpoint())
        .protocol(Protocol::Grpc)
        .events_as_logs(EventsAsLogs::None)
        .timeout(Duration::from_secs(5))
        .max_retries(0)
        .spool(dir.path());
    let (layer, guard) = OffloadLayer::builder().sink(sink).build().unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        let _s = tracing::info_span!("work").entered();
    });
    wait_until("the spool replayed", DEADLINE, || {
        otlp_spool(&handle).replayed == 1
    });
    guard.shutdown(DEADLINE).unwrap();
    let got = receiver.received();
    assert_eq!(got.len(), 3, "{got:?}");
    let waited = got[2].duration_since(got[1]);
    assert!(
        waited >= Duration::from_secs(3),
        "the replay retried {waited:?} after a RetryInfo of 3 s"
    );
}

#[test]
fn the_spool_replay_honours_retry_after() {
    // The live export is refused (503, not retried), so the batch is spooled; its replay is
    // throttled with `Retry-After: 3`; the next attempt is accepted.
    let receiver = Receiver::start(vec![
        Answer::status(503),
        Answer::retry_after(429, "3"),
        Answer::status(200),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let sink = http_sink(receiver.endpoint(), 0).spool(dir.path());
    let (layer, guard) = OffloadLayer::builder().sink(sink).build().unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        let _s = tracing::info_span!("work").entered();
    });
    wait_until("the spool replayed", DEADLINE, || {
        otlp_spool(&handle).replayed == 1
    });
    guard.shutdown(DEADLINE).unwrap();
    let got = receiver.received();
    assert_eq!(got.len(), 3, "{got:?}");
    // The replay waited as long as the collector asked before trying again (its own back-off
    // starts at 100 ms).
    let waited = got[2].at.duration_since(got[1].at);
    assert!(
        waited >= Duration::from_secs(3),
        "the replay retried {waited:?} after a Retry-After of 3 s"
    );
}
