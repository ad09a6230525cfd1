//! A collector that answers every request, but each more slowly than `spool_after`: while one
//! live export waits for its answer, the next requests go to the spool, and the replay sends
//! them. The replay used to send one request of a signal at a time, so such a collector got at
//! most one spooled request at once (besides the live one) and the spool could fall behind a
//! busy service for good. It now sends several at once while the endpoint is reachable.
//!
//! The collector is a scripted OTLP/HTTP receiver (real sockets, real HTTP) that answers each
//! connection on its own thread after a delay, and counts how many requests it held at once.
#![cfg(feature = "otlp")]

mod support;

use std::time::{Duration, Instant};

use support::collector::endpoints;
use support::grpc_receiver::{GrpcAnswer, GrpcReceiver};
use support::receiver::{Answer, Receiver};
use support::*;
use tracing_offload::sink::otlp::{EventsAsLogs, Protocol};
use tracing_offload::sink::Otlp;
use tracing_offload::OffloadLayer;

/// How many requests of a signal the replay sends at once (the README says 4).
const REPLAY_LANES: usize = 4;

/// Log records in the requests the receiver got.
fn log_records(receiver: &Receiver) -> usize {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use prost::Message as _;
    receiver
        .received()
        .iter()
        .filter_map(|r| ExportLogsServiceRequest::decode(r.body.as_slice()).ok())
        .flat_map(|req| req.resource_logs)
        .flat_map(|r| r.scope_logs)
        .map(|s| s.log_records.len())
        .sum()
}

/// A pipeline exporting both signals over OTLP/HTTP to `endpoint`, in requests of 10 records
/// (`timeout_ms` each), with a spool in `dir`; a live export is waited for `spool_after` when
/// it is given.
fn spooled_pipeline(
    endpoint: &str,
    dir: &std::path::Path,
    timeout_ms: &str,
    spool_after: Option<Duration>,
) -> (tracing_offload::Guard, tracing::Dispatch) {
    let traces = format!("{endpoint}/v1/traces");
    let logs = format!("{endpoint}/v1/logs");
    let env = endpoints(&traces, &logs, timeout_ms);
    let mut sink = Otlp::from_env_with(&env)
        .protocol(Protocol::HttpProtobuf)
        .max_retries(0)
        .max_export_batch_size(10)
        .spool(dir);
    if let Some(wait) = spool_after {
        sink = sink.spool_after(wait);
    }
    let (layer, guard) = OffloadLayer::builder()
        .capacity(4_096)
        .sink(sink)
        .build()
        .unwrap();
    (guard, dispatch(layer))
}

/// `n` events, then a flush.
fn events(dispatch: &tracing::Dispatch, handle: &tracing_offload::Handle, n: usize) {
    tracing::dispatcher::with_default(dispatch, || {
        for i in 0..n {
            tracing::info!(i, "request served");
        }
    });
    handle.flush(DEADLINE).unwrap();
}

/// The OTLP sink's spool stats.
fn spool_of(handle: &tracing_offload::Handle) -> tracing_offload::SpoolStats {
    handle.stats().sink("otlp").unwrap().spool.clone().unwrap()
}

/// Waits until every spooled request was answered and the spool is empty.
fn wait_for_an_empty_spool(handle: &tracing_offload::Handle) {
    wait_until(
        "every request answered and the spool empty",
        DEADLINE,
        || {
            let s = spool_of(handle);
            s.batches == 0 && s.unanswered_for.is_none()
        },
    );
}

#[test]
fn the_replay_sends_several_spooled_requests_at_once_to_a_slow_collector() {
    const EVENTS: usize = 200;
    // Every request is taken, each after 300 ms.
    let collector =
        Receiver::start_concurrent(vec![Answer::after(Duration::from_millis(300), 200)]);
    let dir = tempfile::tempdir().unwrap();
    let (guard, dispatch) = spooled_pipeline(
        &collector.endpoint(),
        dir.path(),
        "5000",
        Some(Duration::from_millis(50)),
    );
    let handle = guard.handle();
    events(&dispatch, &handle, EVENTS);
    wait_for_an_empty_spool(&handle);
    guard.shutdown(DEADLINE).unwrap();

    let stats = handle.stats();
    let spool = spool_of(&handle);
    assert!(
        spool.spooled > 0,
        "the slow answers sent requests to the spool: {spool:#?}"
    );
    assert_eq!(spool.replayed, spool.spooled, "{spool:#?}");
    assert_eq!(spool.lost(), 0, "{spool:#?}");
    assert_eq!(stats.dropped, 0, "{stats:#?}");
    assert_eq!(log_records(&collector), EVENTS, "each record once");
    // One live export and one replayed request at a time made at most 2.
    assert!(
        collector.max_in_flight() > 2,
        "the collector held {} requests at once at most",
        collector.max_in_flight()
    );
}

/// A collector that throttles one of the requests in flight (`429` with `Retry-After`) is
/// given that time by every lane of the replay, even when another request in flight succeeds
/// meanwhile: no request is sent until it has passed.
#[test]
fn a_retry_after_answered_to_one_lane_holds_every_lane() {
    const EVENTS: usize = 300;
    // The first 12 requests are taken slowly (so that the rest go to the spool and several
    // lanes are in flight); the next 6 are throttled at once; then all are taken.
    let mut script = vec![Answer::after(Duration::from_millis(300), 200); 12];
    script.extend(vec![Answer::retry_after(429, "2"); 6]);
    script.push(Answer::status(200));
    let collector = Receiver::start_concurrent(script);
    let dir = tempfile::tempdir().unwrap();
    let (guard, dispatch) = spooled_pipeline(
        &collector.endpoint(),
        dir.path(),
        "5000",
        Some(Duration::from_millis(50)),
    );
    let handle = guard.handle();
    events(&dispatch, &handle, EVENTS);
    wait_until("every record at the collector", DEADLINE, || {
        log_records(&collector) >= EVENTS
    });
    guard.shutdown(DEADLINE).unwrap();

    // The 13th request was the first throttled, answered at once.
    let arrivals: Vec<Instant> = collector.received().iter().map(|r| r.at).collect();
    assert_none_sent_within_the_hold(&arrivals, 12, "the Retry-After of 2 s");
}

/// No request arrived between 50 ms and 1.95 s after the first throttled one (`arrivals[first]`,
/// answered at once with a hold of 2 s): one sent after the client read the answer must have
/// waited the hold out (`asked` names it).
#[track_caller]
fn assert_none_sent_within_the_hold(arrivals: &[Instant], first: usize, asked: &str) {
    assert!(arrivals.len() > first + 1, "{} requests", arrivals.len());
    let throttled_at = arrivals[first];
    let early: Vec<Duration> = arrivals[first + 1..]
        .iter()
        .map(|at| at.saturating_duration_since(throttled_at))
        .filter(|after| *after > Duration::from_millis(50) && *after < Duration::from_millis(1_950))
        .collect();
    assert!(
        early.is_empty(),
        "requests sent before {asked} had passed: {early:?} after the first throttled one"
    );
}

/// The same over gRPC: a `RESOURCE_EXHAUSTED` with a `RetryInfo` delay answered to one of the
/// requests in flight holds every lane of the replay until the delay has passed. (The
/// collector is a real tonic server with the OTLP trace service; only its answers are
/// scripted.)
#[test]
fn a_grpc_retry_info_answered_to_one_lane_holds_every_lane() {
    const SPANS: usize = 300;
    let slow = GrpcAnswer::AcceptAfter(Duration::from_millis(300));
    let throttle = GrpcAnswer::Fail(tonic::Code::ResourceExhausted, Some(Duration::from_secs(2)));
    let mut script = vec![slow; 12];
    script.extend(vec![throttle; 6]);
    script.push(GrpcAnswer::Accept);
    let collector = GrpcReceiver::start(script);
    let dir = tempfile::tempdir().unwrap();
    let sink = Otlp::new()
        .endpoint(collector.endpoint())
        .protocol(Protocol::Grpc)
        .events_as_logs(EventsAsLogs::None)
        .timeout(Duration::from_secs(5))
        .max_retries(0)
        .max_export_batch_size(10)
        .spool(dir.path())
        .spool_after(Duration::from_millis(50));
    let (layer, guard) = OffloadLayer::builder()
        .capacity(4_096)
        .sink(sink)
        .build()
        .unwrap();
    let handle = guard.handle();
    tracing::dispatcher::with_default(&dispatch(layer), || {
        for i in 0..SPANS {
            let _span = tracing::info_span!("work", i).entered();
        }
    });
    handle.flush(DEADLINE).unwrap();
    wait_for_an_empty_spool(&handle);
    guard.shutdown(DEADLINE).unwrap();

    let spool = spool_of(&handle);
    assert!(
        spool.spooled > 0,
        "the slow answers spooled requests: {spool:#?}"
    );
    assert_eq!(spool.lost(), 0, "{spool:#?}");
    // As over HTTP: the 13th request was the first throttled, answered at once.
    assert_none_sent_within_the_hold(&collector.received(), 12, "the RetryInfo of 2 s");
}

/// What the replay delivers while shutdown waits for the requests in flight is counted: after
/// shutdown, the stats say what is left in the spool, and that is what the next process finds.
/// The stats used to stay as they were before shutdown, counting requests delivered during it
/// as still spooled (found by an adversary).
#[test]
fn the_stats_after_shutdown_count_what_the_replay_delivered_during_it() {
    const EVENTS: usize = 400;
    let collector =
        Receiver::start_concurrent(vec![Answer::after(Duration::from_millis(300), 200)]);
    let dir = tempfile::tempdir().unwrap();
    let endpoint = collector.endpoint();
    let pipeline = || {
        spooled_pipeline(
            &endpoint,
            dir.path(),
            "5000",
            Some(Duration::from_millis(50)),
        )
    };
    let (guard, dispatch) = pipeline();
    let handle = guard.handle();
    events(&dispatch, &handle, EVENTS);
    wait_until("the replay under way", DEADLINE, || {
        spool_of(&handle).replayed > 0
    });
    // Shutdown while requests are in flight: they are answered before its deadline.
    guard.shutdown(DEADLINE).unwrap();
    let left = spool_of(&handle);
    assert_eq!(
        left.restored + left.spooled,
        left.replayed + left.lost() + left.records,
        "the ledger holds: {left:#?}"
    );

    let (guard, _dispatch) = pipeline();
    let next = spool_of(&guard.handle());
    assert_eq!(
        next.restored, left.records,
        "the next process finds what the stats said was left: {left:#?}"
    );
    let _ = guard.shutdown(DEADLINE);
}

/// A collector that serves one request at a time and throttles any other (`429` with
/// `Retry-After`) is sent one request at a time after it first throttles the replay: the
/// replay's lanes came back after each `Retry-After`, were throttled again, and the spool
/// drained in bursts between pauses (found by an adversary).
#[test]
fn after_a_collector_throttles_the_replay_it_is_sent_one_request_at_a_time() {
    assert_one_request_at_a_time_after_throttling(Answer::retry_after(429, "1"));
}

/// The same with a plain `429` (no `Retry-After`): each of the probe lane's successes woke
/// the other lanes, which were throttled again, about 3 requests refused for each one taken
/// (found by an adversary).
#[test]
fn after_a_plain_429_the_replay_is_sent_one_request_at_a_time() {
    assert_one_request_at_a_time_after_throttling(Answer::status(429));
}

/// Spools records while the collector is down, then starts one there that serves one request
/// at a time and answers the others with `over`: from its first refusal on, at most the
/// requests already in flight in the other lanes are refused.
fn assert_one_request_at_a_time_after_throttling(over: Answer) {
    const EVENTS: usize = 300;
    // The collector is down while the records are spooled, then comes up: the replay alone
    // sends them, with no live export beside it.
    let port = support::collector::free_port();
    let dir = tempfile::tempdir().unwrap();
    let (guard, dispatch) = spooled_pipeline(
        &format!("http://127.0.0.1:{port}"),
        dir.path(),
        "5000",
        None,
    );
    let handle = guard.handle();
    events(&dispatch, &handle, EVENTS);
    let spooled = spool_of(&handle);
    assert_eq!(spooled.records, EVENTS as u64, "{spooled:#?}");

    let collector = Receiver::start_limited_on(
        port,
        1,
        Answer::after(Duration::from_millis(100), 200),
        over,
    );
    wait_until("every record at the collector", DEADLINE, || {
        log_records(&collector) >= EVENTS
    });
    guard.shutdown(DEADLINE).unwrap();

    let statuses = collector.statuses();
    let first = statuses
        .iter()
        .position(|s| *s == 429)
        .unwrap_or(statuses.len());
    let throttled = statuses[first..].iter().filter(|s| **s == 429).count();
    assert!(
        throttled < REPLAY_LANES,
        "{throttled} requests throttled from the first on: {statuses:?}"
    );
}

/// Requests in flight when shutdown's time for them runs out stay in the spool for the next
/// process; that is no failure of the collector's. They were counted as one: after a normal
/// shutdown, health said the collector was unreachable and the last error "shut down while
/// replaying" (found by an adversary).
#[test]
fn requests_left_in_flight_at_shutdown_do_not_make_the_collector_unreachable() {
    const EVENTS: usize = 100;
    // Every request is taken, each after 3 s: longer than shutdown gives them.
    let collector = Receiver::start_concurrent(vec![Answer::after(Duration::from_secs(3), 200)]);
    let dir = tempfile::tempdir().unwrap();
    let (guard, dispatch) = spooled_pipeline(
        &collector.endpoint(),
        dir.path(),
        "10000",
        Some(Duration::from_millis(50)),
    );
    let handle = guard.handle();
    events(&dispatch, &handle, EVENTS);
    wait_until("the replay's requests in flight", DEADLINE, || {
        collector.received().len() >= 3
    });
    let _ = guard.shutdown(Duration::from_secs(1));

    let left = spool_of(&handle);
    assert!(
        left.records > 0,
        "requests left for the next process: {left:#?}"
    );
    assert!(left.unreachable_signals.is_empty(), "{left:#?}");
    assert!(
        !left
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("shut down"),
        "{left:#?}"
    );
    let health = handle.health();
    let sink = health
        .components
        .iter()
        .find(|c| c.name == "sink:otlp")
        .unwrap();
    assert!(
        !sink.message.contains("unreachable"),
        "{}: {}",
        sink.name,
        sink.message
    );
}
