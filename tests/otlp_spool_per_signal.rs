//! Spans and log records often go to separate endpoints. With a spool, one signal's endpoint
//! being down must not hold the other's records back: the spans keep going live (and any
//! spooled ones are replayed) while the log records wait in the spool for their endpoint.
//!
//! The spool used to keep one reachability flag for the whole sink and replay strictly oldest
//! first: with the logs endpoint down, every span after the first failed logs request went to
//! the spool, behind a logs request whose replay kept failing, and no span reached the
//! collector until the logs endpoint came back (or the byte budget evicted them). Against a real
//! collector (Rotel) for the spans; the logs endpoint is a port nobody listens on, then a second
//! collector started there.
#![cfg(feature = "otlp")]

mod support;

use support::collector::{endpoints, marker_count, Collector};
use support::*;
use tracing_offload::health::HealthStatus;
use tracing_offload::sink::otlp::EventsAsLogs;
use tracing_offload::sink::Otlp;
use tracing_offload::OffloadLayer;

const ROUNDS: usize = 5;
const N: usize = 20;

/// The OTLP sink's spool stats.
fn spool_of(handle: &tracing_offload::Handle) -> tracing_offload::SpoolStats {
    handle.stats().sink("otlp").unwrap().spool.clone().unwrap()
}

/// A pipeline that loses records in bursts: a small queue (a burst is mostly refused, and each
/// batch after the first carries a marker for the drops before it) and a spool of the smallest
/// budget, in requests of 50.
fn small_spooled_pipeline(
    env: &impl Fn(&str) -> Option<String>,
    dir: &std::path::Path,
) -> (tracing_offload::Guard, tracing::Dispatch) {
    let sink = Otlp::from_env_with(env)
        .max_retries(0)
        .max_export_batch_size(50)
        .spool(dir)
        .spool_max_bytes(64 * 1024);
    let (layer, guard) = OffloadLayer::builder()
        .capacity(64)
        .sink(sink)
        .build()
        .unwrap();
    (guard, dispatch(layer))
}

/// Ten bursts of 2 000 events, each flushed.
fn bursts(dispatch: &tracing::Dispatch, handle: &tracing_offload::Handle) {
    tracing::dispatcher::with_default(dispatch, || {
        for round in 0..10 {
            for i in 0..2_000 {
                tracing::info!(round, i, "burst");
            }
            handle.flush(DEADLINE).unwrap();
        }
    });
}

/// With the logs endpoint back (`logs`): log records until the spool is replayed, then the
/// markers that reach the collector add up to every record lost, exactly.
fn assert_markers_report_every_loss(
    dispatch: &tracing::Dispatch,
    guard: tracing_offload::Guard,
    logs: &Collector,
) {
    let handle = guard.handle();
    wait_until("the logs endpoint found back", DEADLINE, || {
        tracing::dispatcher::with_default(dispatch, || tracing::info!("after"));
        handle.flush(DEADLINE).unwrap();
        let stats = handle.stats();
        let spool = stats.sink("otlp").unwrap().spool.clone().unwrap();
        spool.records == 0 && spool.unreachable_for.is_none()
    });
    tracing::dispatcher::with_default(dispatch, || tracing::info!("last"));
    handle.flush(DEADLINE).unwrap();
    let stats = handle.stats();
    let s = stats.sink("otlp").unwrap();
    let lost = stats.dropped + s.failed + s.dropped + s.spool.as_ref().unwrap().lost();
    let reported =
        |c: &Collector| -> u64 { c.logs().iter().filter_map(|l| marker_count(&l.body)).sum() };
    logs.wait_for("markers for every loss", DEADLINE, |c| reported(c) >= lost);
    guard.shutdown(DEADLINE).unwrap();
    assert_eq!(reported(logs), lost, "{stats:#?}");
}

#[test]
fn spans_flow_while_the_logs_endpoint_is_down_and_the_logs_follow_when_it_is_back() {
    let Some(traces) = Collector::start() else {
        return;
    };
    let Some((logs_grpc, logs_http)) = Collector::ports_for_later() else {
        return;
    };
    let traces_endpoint = traces.grpc_endpoint();
    let logs_endpoint = format!("http://127.0.0.1:{logs_grpc}");
    let env = endpoints(&traces_endpoint, &logs_endpoint, "500");
    let dir = tempfile::tempdir().unwrap();
    let sink = Otlp::from_env_with(&env).max_retries(0).spool(dir.path());
    let (layer, guard) = OffloadLayer::builder().sink(sink).build().unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        for round in 0..ROUNDS {
            for i in 0..N {
                let _s = tracing::info_span!("request", round, i).entered();
                tracing::info!("inside");
            }
            // Batches of their own: after the first, the logs endpoint is known to be down.
            handle.flush(DEADLINE).unwrap();
        }
    });

    // Every span reaches the collector while the logs endpoint stays down.
    let spans = traces.wait_spans(ROUNDS * N);
    assert_eq!(spans.len(), ROUNDS * N);
    let s = handle.stats().sink("otlp").unwrap().clone();
    let spool = s.spool.clone().unwrap();
    assert_eq!((s.failed, s.dropped), (0, 0), "{s:#?}");
    assert!(
        spool.records >= (ROUNDS * N) as u64,
        "the log records wait: {s:#?}"
    );
    assert!(spool.unreachable_for.is_some(), "{s:#?}");
    assert_eq!(spool.unreachable_signals, ["logs"], "{s:#?}");
    assert!(traces.logs().is_empty());
    // Health names the signal whose endpoint is down.
    let health = handle.health();
    let sink = health.component("sink:otlp").unwrap();
    assert_eq!(sink.status, HealthStatus::Degraded, "{sink:?}");
    assert!(sink.message.contains("unreachable for"), "{sink:?}");
    assert!(sink.message.contains("(logs)"), "{sink:?}");

    // The logs endpoint comes back: the spooled log records are replayed there.
    let logs = Collector::start_on(logs_grpc, logs_http).unwrap();
    wait_until("the spool replayed", DEADLINE, || {
        let spool = handle.stats().sink("otlp").unwrap().spool.clone().unwrap();
        spool.records == 0 && spool.unreachable_for.is_none()
    });
    let spool = handle.stats().sink("otlp").unwrap().spool.clone().unwrap();
    assert!(spool.unreachable_signals.is_empty(), "{spool:#?}");
    let inside = logs.wait_logs(ROUNDS * N);
    assert_eq!(
        inside.iter().filter(|l| l.body == "Str(inside)").count(),
        ROUNDS * N
    );
    guard.shutdown(DEADLINE).unwrap();
    let stats = handle.stats();
    let s = stats.sink("otlp").unwrap();
    let spool = s.spool.as_ref().unwrap();
    assert_eq!((s.failed, s.dropped), (0, 0), "{s:#?}");
    assert_eq!(s.exported + s.spooled, s.forwarded, "{s:#?}");
    assert_eq!(spool.replayed, spool.spooled, "{s:#?}");
    assert_eq!(spool.lost(), 0, "{s:#?}");
}

/// Log records spooled while their endpoint was down, then a restart whose configuration does
/// not export logs: they are kept for a configuration that does, not deleted. They used to be
/// replayed into a refusal of the sink's own making, counted `rejected` (as if the collector
/// had refused them) and deleted within a second. Found by an adversary.
#[test]
fn logs_spooled_under_an_earlier_configuration_wait_for_one_that_exports_them() {
    let Some(traces) = Collector::start() else {
        return;
    };
    let Some((logs_grpc, logs_http)) = Collector::ports_for_later() else {
        return;
    };
    let traces_endpoint = traces.grpc_endpoint();
    let logs_endpoint = format!("http://127.0.0.1:{logs_grpc}");
    let env = endpoints(&traces_endpoint, &logs_endpoint, "500");
    let dir = tempfile::tempdir().unwrap();
    let sink = |events: EventsAsLogs| {
        Otlp::from_env_with(&env)
            .events_as_logs(events)
            .max_retries(0)
            .spool(dir.path())
    };

    // 1. The logs endpoint is down: the events wait in the spool.
    let (layer, guard) = OffloadLayer::builder()
        .sink(sink(EventsAsLogs::All))
        .build()
        .unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        for i in 0..N {
            let _s = tracing::info_span!("request", i).entered();
            tracing::info!("inside");
        }
    });
    handle.flush(DEADLINE).unwrap();
    wait_until("the log records spooled", DEADLINE, || {
        spool_of(&handle).records == N as u64
    });
    guard.shutdown(DEADLINE).unwrap();

    // 2. Restarted without logs: the spans go on; the log records are kept, not rejected.
    let (layer, guard) = OffloadLayer::builder()
        .sink(sink(EventsAsLogs::None))
        .build()
        .unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        drop(tracing::info_span!("after the restart").entered())
    });
    handle.flush(DEADLINE).unwrap();
    traces.wait_for("the span after the restart", DEADLINE, |c| {
        c.spans().iter().any(|s| s.name == "after the restart")
    });
    let spool = spool_of(&handle);
    assert_eq!(
        (spool.restored, spool.records),
        (N as u64, N as u64),
        "{spool:#?}"
    );
    assert_eq!(spool.lost(), 0, "{spool:#?}");
    assert!(!spool.replaying, "{spool:#?}");
    let error = spool.last_error.clone().unwrap_or_default();
    assert!(error.contains("does not export"), "{spool:#?}");
    guard.shutdown(DEADLINE).unwrap();
    let spool = spool_of(&handle);
    assert_eq!((spool.records, spool.lost()), (N as u64, 0), "{spool:#?}");

    // 3. A configuration that exports logs, with their endpoint up: they are delivered.
    let logs = Collector::start_on(logs_grpc, logs_http).unwrap();
    let (_layer, guard) = OffloadLayer::builder()
        .sink(sink(EventsAsLogs::All))
        .build()
        .unwrap();
    let handle = guard.handle();
    wait_until("the kept log records replayed", DEADLINE, || {
        spool_of(&handle).records == 0
    });
    let inside = logs.wait_logs(N);
    assert_eq!(inside.iter().filter(|l| l.body == "Str(inside)").count(), N);
    guard.shutdown(DEADLINE).unwrap();
    let spool = spool_of(&handle);
    assert_eq!((spool.replayed, spool.lost()), (N as u64, 0), "{spool:#?}");
}

/// Drop markers travel as log records. While the logs endpoint is down they are held back, not
/// spooled: in the spool, its budget evicted them with the requests they were in, and the
/// drops they reported were never reported again (a burst of 18 100 drops was reported as 3 835
/// evicted records and nothing else). Found by an adversary.
#[test]
fn drop_markers_are_held_back_while_the_logs_endpoint_is_down_and_report_every_loss() {
    let Some(traces) = Collector::start() else {
        return;
    };
    let Some((logs_grpc, logs_http)) = Collector::ports_for_later() else {
        return;
    };
    let traces_endpoint = traces.grpc_endpoint();
    let logs_endpoint = format!("http://127.0.0.1:{logs_grpc}");
    let env = endpoints(&traces_endpoint, &logs_endpoint, "500");
    let dir = tempfile::tempdir().unwrap();
    let (guard, dispatch) = small_spooled_pipeline(&env, dir.path());
    let handle = guard.handle();
    bursts(&dispatch, &handle);
    let before = handle.stats();
    let s = before.sink("otlp").unwrap();
    let spool = s.spool.as_ref().unwrap();
    assert!(before.dropped > 0, "{before:#?}");
    assert!(spool.evicted > 0, "the budget evicted requests: {spool:#?}");

    // The logs endpoint comes back; the next batch's marker reports every loss so far.
    let logs = Collector::start_on(logs_grpc, logs_http).unwrap();
    assert_markers_report_every_loss(&dispatch, guard, &logs);
}

/// The same with a logs endpoint that takes connections and never answers: the first request
/// is handed to the spool while its live export still runs. The live export keeps the markers
/// (it may deliver them yet); the spooled copy does not, and when the export fails the markers
/// are sent again with the next logs request that goes out. The spooled copy used to carry
/// them, and the budget evicted them with it. Found by an adversary.
#[test]
fn drop_markers_of_a_request_handed_to_the_spool_are_sent_again_when_its_export_fails() {
    let Some(traces) = Collector::start() else {
        return;
    };
    let Some((logs_grpc, logs_http)) = Collector::ports_for_later() else {
        return;
    };
    let silent = Unanswering::start_on(logs_grpc);
    let traces_endpoint = traces.grpc_endpoint();
    let logs_endpoint = format!("http://127.0.0.1:{logs_grpc}");
    let env = endpoints(&traces_endpoint, &logs_endpoint, "1500");
    let dir = tempfile::tempdir().unwrap();
    let (guard, dispatch) = small_spooled_pipeline(&env, dir.path());
    let handle = guard.handle();
    // Spans alone at first, so that the first logs request holds drop markers alone: it is
    // handed to the spool while its export runs, and the log records that follow fill the
    // budget, which evicts the oldest requests.
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..2_000 {
            drop(tracing::info_span!("burst", i).entered());
        }
    });
    handle.flush(DEADLINE).unwrap();
    bursts(&dispatch, &handle);
    // The live export has failed (timed out): the logs endpoint is known unreachable.
    wait_until("the first logs export timed out", DEADLINE, || {
        let spool = spool_of(&handle);
        spool.unreachable_signals == ["logs"] && spool.unanswered_for.is_none()
    });
    let spool = spool_of(&handle);
    assert!(spool.evicted > 0, "the budget evicted requests: {spool:#?}");

    silent.stop();
    let logs = Collector::start_on(logs_grpc, logs_http).unwrap();
    assert_markers_report_every_loss(&dispatch, guard, &logs);
}

/// Markers queued to be sent again go out on their own once the logs endpoint is back, even
/// when no other log record comes to carry them. They used to wait for the next logs request,
/// and with none they were never sent, not even at shutdown. Then a logs service that refuses
/// them for good (a collector without one) keeps them queued, as it does the batch's own
/// markers, until one takes them. Found by an adversary.
#[test]
fn queued_markers_are_sent_on_their_own_and_outlast_a_refusal() {
    let Some(traces) = Collector::start() else {
        return;
    };
    let Some((logs_grpc, logs_http)) = Collector::ports_for_later() else {
        return;
    };
    let silent = Unanswering::start_on(logs_grpc);
    let traces_endpoint = traces.grpc_endpoint();
    let logs_endpoint = format!("http://127.0.0.1:{logs_grpc}");
    let env = endpoints(&traces_endpoint, &logs_endpoint, "1500");
    let dir = tempfile::tempdir().unwrap();
    let sink = Otlp::from_env_with(&env).max_retries(0).spool(dir.path());
    let (layer, guard) = OffloadLayer::builder()
        .capacity(64)
        .sink(sink)
        .build()
        .unwrap();
    let handle = guard.handle();
    let dispatch = dispatch(layer);
    // Spans alone: the only logs request holds a drop marker alone, and it hangs.
    tracing::dispatcher::with_default(&dispatch, || {
        wait_until("spans dropped at the full queue", DEADLINE, || {
            for i in 0..2_000 {
                drop(tracing::info_span!("burst", i).entered());
            }
            handle.stats().dropped > 0
        });
    });
    handle.flush(DEADLINE).unwrap();
    let lost = handle.stats().dropped;
    wait_until("the hanging logs export timed out", DEADLINE, || {
        let spool = spool_of(&handle);
        spool.unreachable_signals == ["logs"] && spool.unanswered_for.is_none()
    });
    silent.stop();
    let reported =
        |c: &Collector| -> u64 { c.logs().iter().filter_map(|l| marker_count(&l.body)).sum() };

    // A logs service that refuses them for good: they stay queued.
    let refusing =
        Collector::start_with(logs_grpc, logs_http, &["--otlp-receiver-logs-disabled"]).unwrap();
    wait_until("the markers refused", DEADLINE, || {
        let s = handle.stats().sink("otlp").unwrap().clone();
        s.last_error.is_some_and(|e| e.contains("Unimplemented"))
    });
    drop(refusing);

    // The logs service is back: no log record comes, the markers go on their own.
    let logs = Collector::start_on(logs_grpc, logs_http).unwrap();
    logs.wait_for("the queued markers", DEADLINE, |c| reported(c) >= lost);
    guard.shutdown(DEADLINE).unwrap();
    assert_eq!(reported(&logs), handle.stats().dropped);
}

/// A logs service that answers slowly (past `spool_after`, so the export is handed off while
/// it runs) and then refuses the request for good: its drop markers are queued and sent again.
/// They were queued only after a transient failure, so a refusal lost them. Found by an
/// adversary.
#[test]
fn drop_markers_of_a_handed_off_request_refused_for_good_are_sent_again() {
    use support::receiver::{Answer, Receiver};
    let Some(traces) = Collector::start() else {
        return;
    };
    // The first logs request is refused after 600 ms; every later one is taken.
    let logs = Receiver::start(vec![
        Answer::after(std::time::Duration::from_millis(600), 400),
        Answer::status(200),
    ]);
    let traces_endpoint = format!("http://127.0.0.1:{}/v1/traces", traces.http_port);
    let logs_endpoint = format!("{}/v1/logs", logs.endpoint());
    let env = endpoints(&traces_endpoint, &logs_endpoint, "5000");
    let dir = tempfile::tempdir().unwrap();
    let sink = Otlp::from_env_with(&env)
        .protocol(tracing_offload::sink::otlp::Protocol::HttpProtobuf)
        .max_retries(0)
        .spool(dir.path());
    let (layer, guard) = OffloadLayer::builder()
        .capacity(64)
        .sink(sink)
        .build()
        .unwrap();
    let handle = guard.handle();
    let dispatch = dispatch(layer);
    // Spans alone: the only log records are the drop markers.
    tracing::dispatcher::with_default(&dispatch, || {
        wait_until("spans dropped at the full queue", DEADLINE, || {
            for i in 0..2_000 {
                drop(tracing::info_span!("burst", i).entered());
            }
            handle.stats().dropped > 0
        });
    });
    handle.flush(DEADLINE).unwrap();
    // Refused, then sent again on their own, and taken: the markers of every request after
    // the first (refused) add up to every record dropped.
    let reported = || -> u64 {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        use prost::Message as _;
        let requests = logs.received();
        requests
            .iter()
            .skip(1)
            .filter_map(|r| ExportLogsServiceRequest::decode(r.body.as_slice()).ok())
            .flat_map(|req| req.resource_logs)
            .flat_map(|r| r.scope_logs)
            .flat_map(|s| s.log_records)
            .filter_map(|l| match l.body?.value? {
                Value::StringValue(text) => marker_count(&text),
                _ => None,
            })
            .sum()
    };
    let lost = handle.stats().dropped;
    wait_until("the markers sent again", DEADLINE, || reported() >= lost);
    guard.shutdown(DEADLINE).unwrap();
    assert_eq!(reported(), handle.stats().dropped);
}
