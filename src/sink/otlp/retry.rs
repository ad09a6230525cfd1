//! Retries. One loop only: opentelemetry-otlp's exporters retry by the OTLP specification
//! (retryable: gRPC `UNAVAILABLE`, `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE`,
//! `DATA_LOSS`, `RESOURCE_EXHAUSTED` with `RetryInfo`; HTTP 429, 502, 503, 504 and network
//! errors), with exponential back-off, jitter and the server's `Retry-After` / `RetryInfo`
//! delay (capped at 30 s, and never past the request timeout). This sink sets their policy,
//! counts their attempts (an interceptor for gRPC, a wrapped HTTP client for HTTP), and
//! classifies what they give up: a permanent rejection is [`SinkError::Fatal`], a transient
//! failure that outlived its retries is [`SinkError::Retryable`].

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};

use crate::sink::SinkError;

/// What one request attempt ended with, seen by the HTTP client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum HttpOutcome {
    /// The server answered with this status.
    Status(u16),
    /// No answer: the error and its causes, e.g. a refused connection or a TLS failure.
    Transport(String),
}

/// Request attempts made by one exporter, and how the last HTTP attempt ended.
#[derive(Debug, Default)]
pub(super) struct Attempts {
    count: AtomicU64,
    last_http: Mutex<Option<HttpOutcome>>,
}

// === impl Attempts ===

impl Attempts {
    /// Counts one attempt.
    pub(super) fn attempt(&self) {
        self.count.fetch_add(1, Relaxed);
    }

    /// Attempts so far.
    pub(super) fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    fn note_http(&self, outcome: HttpOutcome) {
        *self.last_http.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
    }

    /// How the last HTTP attempt ended.
    pub(super) fn last_http(&self) -> Option<HttpOutcome> {
        self.last_http
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The exporters' retry policy: `max_retries` retries, back-off from `initial` doubling to `max`,
/// up to 100 ms of jitter.
pub(super) fn policy(
    max_retries: u32,
    initial: Duration,
    max: Duration,
) -> opentelemetry_otlp::RetryPolicy {
    opentelemetry_otlp::RetryPolicy::recommended()
        .with_max_retries(max_retries as usize)
        .with_initial_delay(initial)
        .with_max_delay(max)
}

/// The HTTP client of the HTTP exporters: reqwest, counting attempts and keeping the last
/// outcome (the exporter's own error says only "network error").
#[derive(Debug, Clone)]
pub(super) struct CountingClient {
    inner: reqwest::Client,
    attempts: Arc<Attempts>,
}

impl CountingClient {
    pub(super) fn new(inner: reqwest::Client, attempts: Arc<Attempts>) -> Self {
        CountingClient { inner, attempts }
    }
}

#[async_trait::async_trait]
impl HttpClient for CountingClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        self.attempts.attempt();
        match self.inner.send_bytes(request).await {
            Ok(response) => {
                self.attempts
                    .note_http(HttpOutcome::Status(response.status().as_u16()));
                Ok(response)
            }
            Err(e) => {
                self.attempts
                    .note_http(HttpOutcome::Transport(error_chain(e.as_ref())));
                Err(e)
            }
        }
    }
}

/// An error and its sources, `a: b: c`.
pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

/// Whether retrying the same request could help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Failure {
    /// The receiver refused the request; the same request will be refused again.
    Permanent,
    /// The receiver could not take it now (down, overloaded, a network error).
    Transient,
}

/// Classifies a failed HTTP export by how its last attempt ended (the OTLP/HTTP rules).
pub(super) fn classify_http(last: Option<&HttpOutcome>) -> Failure {
    match last {
        Some(HttpOutcome::Status(429 | 502 | 503 | 504)) => Failure::Transient,
        Some(HttpOutcome::Status(_)) => Failure::Permanent,
        Some(HttpOutcome::Transport(_)) | None => Failure::Transient,
    }
}

/// Classifies a failed gRPC export by the status code in the exporter's error (the OTLP/gRPC
/// rules). `RESOURCE_EXHAUSTED` is retryable only with `RetryInfo`, which the error does not
/// carry: the exporter retried it (`attempts > 1`) exactly when the server sent one. A
/// transport error (the connection reset or closed under the request, which tonic reports as
/// `UNKNOWN`) is a network error, not the server's answer: transient.
pub(super) fn classify_grpc(error: &str, attempts: u64) -> Failure {
    let (code, rest) = grpc_code(error);
    match code {
        "Unavailable" | "Cancelled" | "DeadlineExceeded" | "Aborted" | "OutOfRange"
        | "DataLoss" => Failure::Transient,
        "ResourceExhausted" if attempts > 1 => Failure::Transient,
        "Unknown" if rest.trim_start_matches(": ").starts_with(TRANSPORT_ERROR) => {
            Failure::Transient
        }
        "" => Failure::Transient,
        _ => Failure::Permanent,
    }
}

/// The gRPC status code in the exporter's error text (`…gRPC code: Unavailable: …`), and what
/// follows it; empty when there is none.
fn grpc_code(error: &str) -> (&str, &str) {
    error
        .split_once("gRPC code: ")
        .map(|(_, rest)| {
            let code = rest
                .split(|c: char| !c.is_ascii_alphanumeric())
                .next()
                .unwrap_or_default();
            (code, &rest[code.len()..])
        })
        .unwrap_or_default()
}

/// Whether a failed gRPC export ran out of its own time waiting for the server: tonic cancels
/// a request at its timeout (`CANCELLED`, "Timeout expired"). On a connection to a server that
/// hung with it open, every later request would wait the same way: the channel is worth
/// leaving for a new connection. A `DEADLINE_EXCEEDED` the server sent is an answer, over a
/// connection that works.
pub(super) fn grpc_timed_out(error: &str) -> bool {
    let (code, rest) = grpc_code(error);
    code == "Cancelled" && rest.contains(CLIENT_TIMEOUT)
}

/// How tonic's client says a request ran out of its timeout.
pub(super) const CLIENT_TIMEOUT: &str = "Timeout expired";

/// How tonic's transport errors read (`tonic::transport::Error`'s text).
const TRANSPORT_ERROR: &str = "transport error";

/// Classifies a failed replay of a spooled request by its gRPC status (the OTLP/gRPC rules;
/// a transport error is transient, as in [`classify_grpc`]). `RESOURCE_EXHAUSTED` is transient
/// here: the replay comes back after its back-off
/// anyway, and refusing for good what a throttling collector would take later loses it.
pub(super) fn classify_grpc_status(status: &tonic::Status) -> Failure {
    use tonic::Code;
    match status.code() {
        // No answer from the server: the connection failed under the request.
        Code::Unknown if status.message().starts_with(TRANSPORT_ERROR) => Failure::Transient,
        Code::Unavailable
        | Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::DataLoss
        | Code::ResourceExhausted => Failure::Transient,
        _ => Failure::Permanent,
    }
}

/// The sink's error for a failed export of `what` ("spans", "logs").
pub(super) fn export_error(failure: Failure, what: &str, attempts: u64, detail: &str) -> SinkError {
    let detail = &without_repeats(detail);
    match failure {
        Failure::Permanent => SinkError::Fatal(format!(
            "OTLP {what} rejected, not retried (a permanent error): {detail}"
        )),
        Failure::Transient => SinkError::Retryable(format!(
            "OTLP {what} export failed after {attempts} attempt{}: {detail}",
            if attempts == 1 { "" } else { "s" }
        )),
    }
}

/// `text` with each `": "`-separated part that only repeats the part before it left out: the
/// exporters' errors end with their source's message, and some of those sources print it twice
/// (tonic's gRPC transport says `TLS handshake timeout.: TLS handshake timeout.`).
pub(super) fn without_repeats(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last: Option<&str> = None;
    for part in text.split(": ") {
        if last == Some(part) {
            continue;
        }
        if last.is_some() {
            out.push_str(": ");
        }
        out.push_str(part);
        last = Some(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_told_from_the_other_grpc_failures() {
        let timed_out = "Operation failed: TonicTracesClient export failed with gRPC code: \
                         Cancelled: transport error: Timeout expired";
        assert!(grpc_timed_out(timed_out));
        for other in [
            // The server's answers, over a connection that works.
            "export failed with gRPC code: DeadlineExceeded: upstream timed out",
            "export failed with gRPC code: Cancelled: the server cancelled it",
            "export failed with gRPC code: Unavailable: connection refused",
            "export failed with gRPC code: ResourceExhausted: slow down",
            "export failed with gRPC code: InvalidArgument: bad",
            "a message without a code: Cancelled",
            "",
        ] {
            assert!(!grpc_timed_out(other), "{other}");
        }
    }

    #[test]
    fn a_part_repeating_the_one_before_is_said_once() {
        assert_eq!(
            without_repeats("transport error: TLS handshake timeout.: TLS handshake timeout."),
            "transport error: TLS handshake timeout."
        );
        // Parts that repeat apart, and everything else, stay as they were.
        for kept in ["a: b: a", "code: Unavailable: a:b", "", "one", "x:: x"] {
            assert_eq!(without_repeats(kept), kept);
        }
        assert_eq!(without_repeats("a: a: a: b: b"), "a: b");
    }

    #[test]
    fn http_statuses_follow_the_otlp_spec() {
        for code in [429, 502, 503, 504] {
            assert_eq!(
                classify_http(Some(&HttpOutcome::Status(code))),
                Failure::Transient,
                "{code}"
            );
        }
        for code in [400, 401, 403, 404, 405, 413, 415, 500, 501] {
            assert_eq!(
                classify_http(Some(&HttpOutcome::Status(code))),
                Failure::Permanent,
                "{code}"
            );
        }
        let refused = HttpOutcome::Transport("connection refused".into());
        assert_eq!(classify_http(Some(&refused)), Failure::Transient);
    }

    #[test]
    fn grpc_codes_follow_the_otlp_spec() {
        let msg = |code: &str| format!("TonicTracesClient export failed with gRPC code: {code}");
        for code in [
            "Unavailable",
            "Cancelled",
            "DeadlineExceeded",
            "Aborted",
            "OutOfRange",
            "DataLoss",
        ] {
            assert_eq!(classify_grpc(&msg(code), 1), Failure::Transient, "{code}");
        }
        for code in [
            "InvalidArgument",
            "Unimplemented",
            "Unauthenticated",
            "PermissionDenied",
            "NotFound",
            "Internal",
        ] {
            assert_eq!(classify_grpc(&msg(code), 1), Failure::Permanent, "{code}");
        }
        assert_eq!(
            classify_grpc(&msg("ResourceExhausted"), 1),
            Failure::Permanent
        );
        assert_eq!(
            classify_grpc(&msg("ResourceExhausted"), 3),
            Failure::Transient
        );
        assert_eq!(
            classify_grpc(
                "TonicLogsClient export failed with gRPC code: Unavailable: transport error",
                4
            ),
            Failure::Transient
        );
    }

    #[test]
    fn replayed_grpc_statuses_follow_the_otlp_spec() {
        use tonic::{Code, Status};
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
        ] {
            let status = Status::new(code, "x");
            assert_eq!(
                classify_grpc_status(&status),
                Failure::Transient,
                "{code:?}"
            );
        }
        for code in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::Unimplemented,
        ] {
            let status = Status::new(code, "x");
            assert_eq!(
                classify_grpc_status(&status),
                Failure::Permanent,
                "{code:?}"
            );
        }
        let reset = Status::new(Code::Unknown, "transport error");
        assert_eq!(classify_grpc_status(&reset), Failure::Transient);
        let unknown = Status::new(Code::Unknown, "the server failed");
        assert_eq!(classify_grpc_status(&unknown), Failure::Permanent);
    }

    #[test]
    fn a_connection_reset_under_a_grpc_request_is_transient() {
        // What tonic reports when the collector closes the connection without answering.
        let reset = "Operation failed: TonicTracesClient export failed with gRPC code: Unknown: \
                     transport error: connection error: connection reset";
        assert_eq!(classify_grpc(reset, 1), Failure::Transient);
        let unknown = "TonicTracesClient export failed with gRPC code: Unknown: boom";
        assert_eq!(classify_grpc(unknown, 1), Failure::Permanent);
    }

    #[test]
    fn the_error_says_whether_it_was_retried() {
        let fatal = export_error(Failure::Permanent, "spans", 1, "HTTP 400");
        assert!(matches!(fatal, SinkError::Fatal(ref m) if m.contains("not retried")));
        let retryable = export_error(Failure::Transient, "logs", 6, "network error");
        assert!(matches!(retryable, SinkError::Retryable(ref m) if m.contains("after 6 attempts")));
    }
}
