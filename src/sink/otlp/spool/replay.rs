//! The replay: sends spooled requests, oldest first, one attempt each, up to
//! [`REPLAY_LANES`] of a signal at once while its endpoint is reachable, and one at a time,
//! backing off, while it is not. The requests are sent as they were encoded, through tonic's
//! generated OTLP clients (gRPC) or as the body of an HTTP request (protobuf as stored; JSON
//! re-encoded from it, as opentelemetry-otlp's HTTP/JSON exporter encodes).

use std::time::{Duration, Instant, SystemTime};

use opentelemetry_proto::tonic::collector::logs::v1::{
    logs_service_client::LogsServiceClient, ExportLogsServiceRequest,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    trace_service_client::TraceServiceClient, ExportTraceServiceRequest,
};
use prost::Message as _;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic_types::StatusExt as _;

use super::store::{Batch, Kind};
use super::{Outcome, Spool, REPLAY_LANES};
use crate::sink::otlp::retry::{self, Failure, HttpOutcome};
use crate::sink::otlp::{INITIAL_BACKOFF, MAX_BACKOFF};

/// The longest a throttling collector's delay (`Retry-After`, `RetryInfo`) holds the replay
/// back: a longer one is taken as this.
const MAX_SERVER_DELAY: Duration = Duration::from_secs(60);

/// What one replay attempt ended with, and how long the collector asked to wait before the
/// next one, if it did.
struct Attempt {
    outcome: Outcome,
    server_delay: Option<Duration>,
    /// The collector said it was overloaded (HTTP 429, gRPC `RESOURCE_EXHAUSTED`), with or
    /// without a delay.
    throttled: bool,
}

impl From<Outcome> for Attempt {
    fn from(outcome: Outcome) -> Self {
        Attempt {
            outcome,
            server_delay: None,
            throttled: false,
        }
    }
}

/// Replays until the spool is stopped: each signal on its own, so that one whose endpoint is
/// down holds nothing of the other's back.
///
/// A signal this sink does not export (its configuration changed since the requests were
/// spooled) is not replayed: its requests stay in the spool for a configuration that exports
/// it (see [`Spool::set_exported`]).
pub(super) async fn run(spool: &Spool, senders: &Senders) {
    let replay = |kind| async move {
        if senders.exports(kind) {
            run_signal(spool, senders, kind).await;
        }
    };
    tokio::join!(replay(Kind::Traces), replay(Kind::Logs));
}

/// Replays the requests of `kind`, oldest first, until the spool is stopped: up to
/// [`REPLAY_LANES`] at once while its endpoint is reachable, one while it is not.
async fn run_signal(spool: &Spool, senders: &Senders, kind: Kind) {
    const _: () = assert!(REPLAY_LANES == 4, "one probe lane and three others");
    tokio::join!(
        probe_lane(spool, senders, kind),
        lane(spool, senders, kind, 1),
        lane(spool, senders, kind, 2),
        lane(spool, senders, kind, 3),
    );
}

/// The first lane: replays while the endpoint is reachable, and probes it, backing off, while
/// it is not.
async fn probe_lane(spool: &Spool, senders: &Senders, kind: Kind) {
    let wake = &spool.wake[kind.index()][0];
    let mut backoff = INITIAL_BACKOFF;
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        if spool.stop_at().is_some() {
            return;
        }
        if wait_if_throttled(spool, kind, wake).await {
            continue;
        }
        if let Some(at) = retry_at {
            // Backing off: a batch spooled meanwhile does not hurry the next probe; the
            // collector found back (a live export's late success) does.
            if tokio::time::Instant::now() < at && spool.is_down(kind) {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = wake.notified() => {}
                }
                continue;
            }
            retry_at = None;
        }
        let Some(batch) = spool.take(kind) else {
            wake.notified().await;
            continue;
        };
        let Some(attempt) = send(spool, senders, kind, 0, &batch).await else {
            return;
        };
        match &attempt.outcome {
            Outcome::Delivered => backoff = INITIAL_BACKOFF,
            Outcome::Transient(_) => {
                // The collector's own delay when it gave one (throttling), else our back-off.
                let wait = attempt
                    .server_delay
                    .map_or(backoff, |d| d.min(MAX_SERVER_DELAY).max(backoff));
                retry_at = Some(tokio::time::Instant::now() + wait);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Outcome::Permanent(_) => {}
        }
        settle(spool, kind, &batch, attempt);
    }
}

// The other lanes wait out a collector's ask to wait within their time alone.
const _: () = assert!(super::ONE_LANE_AFTER_THROTTLING.as_secs() >= MAX_SERVER_DELAY.as_secs());

/// Another lane: replays while the endpoint is reachable, and waits while it is not (a
/// failure it meets marks the endpoint unreachable, and the first lane takes over), and for a
/// while after the collector throttled the replay (the first lane goes on alone).
async fn lane(spool: &Spool, senders: &Senders, kind: Kind, lane: usize) {
    let wake = &spool.wake[kind.index()][lane];
    loop {
        if spool.stop_at().is_some() {
            return;
        }
        if spool.is_down(kind) {
            wake.notified().await;
            continue;
        }
        if let Some(until) = spool.one_lane_until(kind) {
            sleep_or_wake(until, wake).await;
            continue;
        }
        let Some(batch) = spool.take(kind) else {
            wake.notified().await;
            continue;
        };
        let Some(attempt) = send(spool, senders, kind, lane, &batch).await else {
            return;
        };
        settle(spool, kind, &batch, attempt);
    }
}

/// Waits while the collector's last ask to wait (`Retry-After`, `RetryInfo`) holds, or until
/// the lane is woken; returns whether it waited.
async fn wait_if_throttled(spool: &Spool, kind: Kind, wake: &tokio::sync::Notify) -> bool {
    let Some(until) = spool.throttled_until(kind) else {
        return false;
    };
    sleep_or_wake(until, wake).await;
    true
}

/// Waits until `until`, or until the lane is woken (a stop, say).
async fn sleep_or_wake(until: Instant, wake: &tokio::sync::Notify) {
    tokio::select! {
        _ = tokio::time::sleep_until(until.into()) => {}
        _ = wake.notified() => {}
    }
}

/// Records how a replayed request ended; a collector's ask to wait holds every lane.
fn settle(spool: &Spool, kind: Kind, batch: &Batch, attempt: Attempt) {
    let asked = attempt.throttled || attempt.server_delay.is_some();
    if matches!(attempt.outcome, Outcome::Transient(_)) && asked {
        let delay = attempt.server_delay.unwrap_or_default();
        spool.throttle(kind, Instant::now() + delay.min(MAX_SERVER_DELAY));
    }
    spool.replayed(batch.id, kind, attempt.outcome);
}

/// Sends one spooled request; `None` when shutdown's deadline came first (the request stays
/// spooled for the next process, and the lane stops).
async fn send(
    spool: &Spool,
    senders: &Senders,
    kind: Kind,
    lane: usize,
    batch: &Batch,
) -> Option<Attempt> {
    tokio::select! {
        attempt = senders.send(batch) => Some(attempt),
        () = stop_deadline(spool, kind, lane) => {
            spool.left_in_flight(batch.id, kind);
            None
        }
    }
}

/// Resolves at shutdown's deadline, once shutdown has begun.
async fn stop_deadline(spool: &Spool, kind: Kind, lane: usize) {
    loop {
        if let Some(at) = spool.stop_at() {
            tokio::time::sleep_until(at.into()).await;
            return;
        }
        spool.stopping[kind.index()][lane].notified().await;
    }
}

/// How the replay reaches the collector: the sink's transport, endpoints, headers, TLS and
/// compression. A signal the sink does not export has no sender: its spooled requests (from an
/// earlier configuration) are not replayed, but kept for a configuration that exports it.
#[derive(Debug)]
pub(in crate::sink::otlp) enum Senders {
    Grpc(Box<GrpcSenders>),
    Http(HttpSenders),
}

/// gRPC: one lazily connected channel per signal.
#[derive(Debug)]
pub(in crate::sink::otlp) struct GrpcSenders {
    pub(in crate::sink::otlp) traces: Option<Replayer<TraceServiceClient<Channel>>>,
    pub(in crate::sink::otlp) logs: Option<Replayer<LogsServiceClient<Channel>>>,
    pub(in crate::sink::otlp) metadata: MetadataMap,
    pub(in crate::sink::otlp) timeout: Duration,
}

/// One signal's gRPC client for the replay, made again on a new connection after one of its
/// requests ran out of its timeout: the channel keeps its one HTTP/2 connection, and to a
/// collector that hung with it open every later request would wait the same way.
pub(in crate::sink::otlp) struct Replayer<C> {
    /// The client, and how many times it was made again (so that a late failure of a request
    /// sent on an earlier client does not throw away a new one that works).
    client: std::sync::Mutex<(u64, C)>,
    endpoint: tonic::transport::Endpoint,
    make: Box<dyn Fn(Channel) -> C + Send + Sync>,
}

impl<C: Clone> Replayer<C> {
    /// A client to `endpoint` (connected when first used), made by `make` (compression).
    pub(in crate::sink::otlp) fn new(
        endpoint: tonic::transport::Endpoint,
        make: impl Fn(Channel) -> C + Send + Sync + 'static,
    ) -> Self {
        Replayer {
            client: std::sync::Mutex::new((0, make(endpoint.clone().connect_lazy()))),
            endpoint,
            make: Box::new(make),
        }
    }

    /// The client to send on, and which one it is (for [`after`](Self::after)).
    fn client(&self) -> (u64, C) {
        self.lock().clone()
    }

    /// Leaves the connection for a new one, if `status` says a request sent on client `made`
    /// ran out of its timeout and that client is still the current one. Requests still under
    /// way finish on the old one.
    fn after(&self, made: u64, status: &tonic::Status) {
        if status.code() != tonic::Code::Cancelled
            || !retry::error_chain(status).contains(retry::CLIENT_TIMEOUT)
        {
            return;
        }
        let mut current = self.lock();
        if current.0 == made {
            *current = (made + 1, (self.make)(self.endpoint.clone().connect_lazy()));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, C)> {
        // A panic while it was held left a whole client in it.
        self.client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<C> std::fmt::Debug for Replayer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replayer").finish_non_exhaustive()
    }
}

/// HTTP: per signal, a reqwest client (with the signal's TLS) and the URL.
#[derive(Debug)]
pub(in crate::sink::otlp) struct HttpSenders {
    pub(in crate::sink::otlp) traces: Option<(reqwest::Client, String)>,
    pub(in crate::sink::otlp) logs: Option<(reqwest::Client, String)>,
    pub(in crate::sink::otlp) headers: http::HeaderMap,
    pub(in crate::sink::otlp) json: bool,
    pub(in crate::sink::otlp) gzip: bool,
}

// === impl Senders ===

impl Senders {
    /// Whether this sink exports `kind` (has a sender for it).
    pub(super) fn exports(&self, kind: Kind) -> bool {
        match (self, kind) {
            (Senders::Grpc(g), Kind::Traces) => g.traces.is_some(),
            (Senders::Grpc(g), Kind::Logs) => g.logs.is_some(),
            (Senders::Http(h), Kind::Traces) => h.traces.is_some(),
            (Senders::Http(h), Kind::Logs) => h.logs.is_some(),
        }
    }

    /// Sends one spooled request, once.
    async fn send(&self, batch: &Batch) -> Attempt {
        match self {
            Senders::Grpc(g) => g.send(batch).await,
            Senders::Http(h) => h.send(batch).await,
        }
    }
}

fn not_exported(kind: Kind) -> Outcome {
    Outcome::Permanent(format!(
        "the spool holds {}, which this sink does not export (its configuration changed)",
        kind.name()
    ))
}

fn undecodable(kind: Kind, e: prost::DecodeError) -> Outcome {
    Outcome::Permanent(format!(
        "a spooled request of {} cannot be decoded: {e}",
        kind.name()
    ))
}

impl GrpcSenders {
    async fn send(&self, batch: &Batch) -> Attempt {
        let result = match batch.kind {
            Kind::Traces => {
                let Some(replayer) = &self.traces else {
                    return not_exported(batch.kind).into();
                };
                let request = match ExportTraceServiceRequest::decode(batch.payload.as_slice()) {
                    Ok(r) => r,
                    Err(e) => return undecodable(batch.kind, e).into(),
                };
                let (made, mut client) = replayer.client();
                let result = client.export(self.request(request)).await;
                result
                    .map(drop)
                    .inspect_err(|status| replayer.after(made, status))
            }
            Kind::Logs => {
                let Some(replayer) = &self.logs else {
                    return not_exported(batch.kind).into();
                };
                let request = match ExportLogsServiceRequest::decode(batch.payload.as_slice()) {
                    Ok(r) => r,
                    Err(e) => return undecodable(batch.kind, e).into(),
                };
                let (made, mut client) = replayer.client();
                let result = client.export(self.request(request)).await;
                result
                    .map(drop)
                    .inspect_err(|status| replayer.after(made, status))
            }
        };
        match result {
            Ok(()) => Outcome::Delivered.into(),
            Err(status) => {
                let error = format!(
                    "replaying spooled {}: gRPC status {:?}: {}",
                    batch.kind.name(),
                    status.code(),
                    status.message()
                );
                let outcome = match retry::classify_grpc_status(&status) {
                    Failure::Transient => Outcome::Transient(error),
                    Failure::Permanent => Outcome::Permanent(error),
                };
                Attempt {
                    outcome,
                    server_delay: status.get_details_retry_info().and_then(|r| r.retry_delay),
                    throttled: status.code() == tonic::Code::ResourceExhausted,
                }
            }
        }
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        *request.metadata_mut() = self.metadata.clone();
        request.set_timeout(self.timeout);
        request
    }
}

impl HttpSenders {
    async fn send(&self, batch: &Batch) -> Attempt {
        let target = match batch.kind {
            Kind::Traces => &self.traces,
            Kind::Logs => &self.logs,
        };
        let Some((client, url)) = target else {
            return not_exported(batch.kind).into();
        };
        let (body, content_type) = match self.body(batch) {
            Ok(b) => b,
            Err(outcome) => return outcome.into(),
        };
        let mut request = client
            .post(url)
            .headers(self.headers.clone())
            .header(http::header::CONTENT_TYPE, content_type);
        let body = if self.gzip {
            match gzip(&body) {
                Ok(b) => {
                    request = request.header(http::header::CONTENT_ENCODING, "gzip");
                    b
                }
                Err(e) => return Outcome::Permanent(format!("gzip failed: {e}")).into(),
            }
        } else {
            body
        };
        let what = format!(
            "replaying spooled {} to {}",
            batch.kind.name(),
            crate::sink::otlp::endpoint::redact(url)
        );
        match request.body(body).send().await {
            Ok(response) if response.status().is_success() => Outcome::Delivered.into(),
            Ok(response) => {
                let code = response.status().as_u16();
                let error = format!("{what}: HTTP {}", response.status());
                let outcome = match retry::classify_http(Some(&HttpOutcome::Status(code))) {
                    Failure::Transient => Outcome::Transient(error),
                    Failure::Permanent => Outcome::Permanent(error),
                };
                let server_delay = response
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry_after(v, SystemTime::now()));
                Attempt {
                    outcome,
                    server_delay,
                    throttled: code == 429,
                }
            }
            Err(e) => Outcome::Transient(format!("{what}: {}", retry::error_chain(&e))).into(),
        }
    }

    /// The request body: the stored protobuf, or the same request as OTLP/JSON.
    fn body(&self, batch: &Batch) -> Result<(Vec<u8>, &'static str), Outcome> {
        if !self.json {
            return Ok((batch.payload.clone(), "application/x-protobuf"));
        }
        let json = match batch.kind {
            Kind::Traces => ExportTraceServiceRequest::decode(batch.payload.as_slice())
                .map_err(|e| undecodable(batch.kind, e))
                .map(|r| serde_json::to_vec(&r)),
            Kind::Logs => ExportLogsServiceRequest::decode(batch.payload.as_slice())
                .map_err(|e| undecodable(batch.kind, e))
                .map(|r| serde_json::to_vec(&r)),
        }?;
        json.map(|b| (b, "application/json"))
            .map_err(|e| Outcome::Permanent(format!("JSON encoding failed: {e}")))
    }
}

/// An HTTP `Retry-After` value as a delay from `now`: seconds, or a date (RFC 9110). A date in
/// the past is no delay; anything else is ignored.
fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body)?;
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_client_is_made_again_once_per_timeout_of_its_own() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _in_it = rt.enter();
        let made = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = std::sync::Arc::clone(&made);
        let endpoint = tonic::transport::Endpoint::from_static("http://127.0.0.1:9");
        let replayer = Replayer::new(endpoint, move |channel| {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            channel
        });
        let made = || made.load(std::sync::atomic::Ordering::Relaxed);
        let timed_out = tonic::Status::cancelled(retry::CLIENT_TIMEOUT);
        assert_eq!(made(), 1);
        let (first, _) = replayer.client();
        // Two requests sent on the first client time out: one new client, not two.
        replayer.after(first, &timed_out);
        replayer.after(first, &timed_out);
        assert_eq!(made(), 2);
        // Answers that are not the client's own timeout keep the client.
        let (second, _) = replayer.client();
        replayer.after(second, &tonic::Status::deadline_exceeded("upstream"));
        replayer.after(second, &tonic::Status::cancelled("by the server"));
        assert_eq!(made(), 2);
        replayer.after(second, &timed_out);
        assert_eq!(made(), 3);
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(42));
        assert_eq!(retry_after(&later, now), Some(Duration::from_secs(42)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(42));
        assert_eq!(retry_after(&earlier, now), Some(Duration::ZERO));
        for bad in ["", "-1", "1.5", "soon", "18446744073709551616"] {
            assert_eq!(retry_after(bad, now), None, "{bad:?}");
        }
    }
}
