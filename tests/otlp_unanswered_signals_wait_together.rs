//! Without a spool, a batch's spans and log records go to the collector at once. Against a
//! collector that takes connections and never answers, each request waits its whole timeout:
//! the batch used to send its spans, wait the timeout out, then send its log records and wait
//! again, so that every batch cost two timeouts (and the sink's buffer filled twice as fast as
//! it could drain). Now a batch costs one. Each record is still counted as failed, and the
//! error still names both signals; a signal cut by the batch's own deadline is named with it.
//! With a spool, the same: each signal's request waits `spool_after` at most, side by side, and
//! then both are spooled; the batch waited `spool_after` once per signal, one after the other.
#![cfg(feature = "otlp")]

mod support;

use std::time::Duration;

use support::*;
use tracing_offload::sink::otlp::Protocol;
use tracing_offload::sink::Otlp;

/// The request timeout: long enough that two of them, one after the other, stand well apart
/// from one (with the time to build, flush and shut down) on a loaded machine.
const TIMEOUT: Duration = Duration::from_secs(2);

fn one_batch_against_a_silent_collector(protocol: Protocol) {
    let silent = Unanswering::start();
    let sink = || {
        Otlp::new()
            .endpoint(format!("http://127.0.0.1:{}", silent.port))
            .protocol(protocol)
            .timeout(TIMEOUT)
            .max_retries(0)
    };
    let (took, s) = one_span_two_events(sink);
    assert_eq!((s.exported, s.failed), (0, 3), "{protocol:?}: {s:#?}");
    let error = s.last_error.unwrap_or_default();
    assert!(
        error.contains("spans (1): ") && error.contains("; logs (2): "),
        "{protocol:?}: {error}"
    );
    // Both requests waited their timeout, side by side: one timeout, not two.
    assert!(
        took >= TIMEOUT && took < TIMEOUT * 2 - Duration::from_millis(500),
        "{protocol:?}: the batch took {took:?} against a timeout of {TIMEOUT:?}"
    );
}

#[test]
fn over_http_a_batch_waits_one_timeout_for_both_signals() {
    one_batch_against_a_silent_collector(Protocol::HttpProtobuf);
}

#[test]
fn over_grpc_a_batch_waits_one_timeout_for_both_signals() {
    one_batch_against_a_silent_collector(Protocol::Grpc);
}

/// The batch's deadline (`export_timeout`) shorter than the request timeout, the spans answered
/// and the log records not: the error names the signal that did not finish and the timeout
/// that cut it. It used to say "timed out" alone, which could be either signal and either
/// timeout.
#[test]
fn a_signal_cut_by_the_batch_deadline_is_named_with_that_deadline() {
    use support::collector::endpoints;
    use support::receiver::{Answer, Receiver};
    let answering = Receiver::start(vec![Answer::status(200)]);
    let silent = Unanswering::start();
    let traces = format!("{}/v1/traces", answering.endpoint());
    let logs = format!("http://127.0.0.1:{}/v1/logs", silent.port);
    let sink = || {
        Otlp::from_env_with(&endpoints(&traces, &logs, "3000"))
            .protocol(Protocol::HttpProtobuf)
            .max_retries(0)
            .export_timeout(Duration::from_millis(800))
    };
    let (_, s) = one_span_two_events(sink);
    assert_eq!((s.exported, s.failed), (1, 2), "{s:#?}");
    let error = s.last_error.unwrap_or_default();
    assert!(
        error.contains("OTLP logs export did not finish within the batch's export timeout (800ms)"),
        "{error}"
    );
    assert!(!error.contains("spans"), "{error}");
}

/// With a spool, against the silent collector: both signals' requests wait `spool_after` side
/// by side, then go to the spool; the batch costs one `spool_after`, not two.
#[test]
fn with_a_spool_a_batch_waits_one_spool_after_for_both_signals() {
    let silent = Unanswering::start();
    let dir = tempfile::tempdir().unwrap();
    // A spool directory of its own for each try (see `one_span_two_events`).
    let tries = std::sync::atomic::AtomicUsize::new(0);
    let sink = || {
        let n = tries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Otlp::new()
            .endpoint(format!("http://127.0.0.1:{}", silent.port))
            // Longer than `spool_after`: the requests are still waiting when they are spooled.
            .timeout(TIMEOUT * 2)
            .max_retries(0)
            .spool(dir.path().join(n.to_string()))
            .spool_after(TIMEOUT)
    };
    let (took, s) = one_span_two_events(sink);
    assert_eq!((s.exported, s.spooled, s.failed), (0, 3, 0), "{s:#?}");
    assert!(
        took >= TIMEOUT && took < TIMEOUT * 2 - Duration::from_millis(500),
        "the batch took {took:?} against a spool_after of {TIMEOUT:?}"
    );
}
