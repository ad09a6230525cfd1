//! A batch whose spans and log records both failed says each signal's failure, with how many of
//! its records were lost, in the sink's last error (stats, `/health`): "3 records of the batch
//! were not written: spans (1): …; logs (2): …". It used to give the total with the first
//! signal's error alone ("3 records of the batch were not written: OTLP spans rejected …"),
//! as though the spans were all that failed. Against a real HTTP endpoint that answers with
//! scripted statuses, and a port where nothing listens (whose errors quote the endpoint).
#![cfg(feature = "otlp")]

mod support;

use std::time::Duration;

use support::receiver::{Answer, Receiver};
use support::*;
use tracing_offload::sink::otlp::Protocol;
use tracing_offload::sink::Otlp;

/// The part of `error` about `signal`, from its label to the next signal's (or the end).
#[track_caller]
fn part<'a>(error: &'a str, label: &str) -> &'a str {
    let at = error
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in: {error}"));
    let rest = &error[at..];
    match rest[label.len()..].find("; logs (") {
        Some(end) => &rest[..label.len() + end],
        None => rest,
    }
}

#[test]
fn both_signals_refused_are_each_named_with_their_count() {
    let receiver = Receiver::start(vec![Answer::status(400)]);
    let sink = || {
        Otlp::new()
            .endpoint(receiver.endpoint())
            .protocol(Protocol::HttpProtobuf)
            .timeout(Duration::from_secs(5))
    };
    let (_, s) = one_span_two_events(sink);
    assert_eq!(
        (s.exported, s.failed, s.failed_permanent),
        (0, 3, 3),
        "{s:#?}"
    );
    let error = s.last_error.unwrap_or_default();
    assert!(
        error.starts_with("3 records of the batch were not written: spans (1): "),
        "{error}"
    );
    let spans = part(&error, "spans (1): ");
    let logs = part(&error, "; logs (2): ");
    for (signal, text) in [("spans", spans), ("logs", logs)] {
        assert!(
            text.contains(&format!("OTLP {signal} rejected, not retried")) && text.contains("400"),
            "{signal}: {text}\nin: {error}"
        );
    }
    assert!(!spans.contains("logs"), "{spans}");
}

#[test]
fn both_signals_failing_show_neither_endpoints_credentials() {
    const SECRET: &str = "s3cr3t-token";
    let port = support::collector::free_port();
    let sink = || {
        Otlp::new()
            .endpoint(format!(
                "http://user:{SECRET}@127.0.0.1:{port}/?api_key={SECRET}"
            ))
            .protocol(Protocol::HttpProtobuf)
            .timeout(Duration::from_millis(500))
            .max_retries(0)
    };
    let (_, s) = one_span_two_events(sink);
    assert_eq!((s.exported, s.failed), (0, 3), "{s:#?}");
    let error = s.last_error.unwrap_or_default();
    assert!(
        !error.contains(SECRET),
        "secret in the sink's last error: {error}"
    );
    let spans = part(&error, "spans (1): ");
    let logs = part(&error, "; logs (2): ");
    assert!(spans.contains("OTLP spans export failed"), "{error}");
    assert!(logs.contains("OTLP logs export failed"), "{error}");
}

/// The spans refused for good (HTTP 400) and the log records not delivered for a reason that
/// may pass (a collector that never answers): each signal's records count as its error says,
/// the span as `failed_permanent` and the two log records as transient failures. The batch
/// used to count as transient whole, the permanent refusal hidden.
#[test]
fn a_permanent_and_a_transient_failure_are_each_counted_as_they_are() {
    use support::collector::endpoints;
    let refusing = Receiver::start(vec![Answer::status(400)]);
    let silent = Unanswering::start();
    let traces = format!("{}/v1/traces", refusing.endpoint());
    let logs = format!("http://127.0.0.1:{}/v1/logs", silent.port);
    let sink = || {
        Otlp::from_env_with(&endpoints(&traces, &logs, "1000"))
            .protocol(Protocol::HttpProtobuf)
            .max_retries(0)
    };
    let (_, s) = one_span_two_events(sink);
    assert_eq!(
        (s.exported, s.failed, s.failed_permanent),
        (0, 3, 1),
        "{s:#?}"
    );
    let error = s.last_error.unwrap_or_default();
    assert!(
        part(&error, "spans (1): ").contains("rejected, not retried"),
        "{error}"
    );
    assert!(
        part(&error, "; logs (2): ").contains("export failed"),
        "{error}"
    );
}
