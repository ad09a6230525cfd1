//! The replay: sends spooled requests, oldest first, one attempt each, backing off while the
//! collector is unreachable. The requests are sent as they were encoded, through tonic's
//! generated OTLP clients (gRPC) or as the body of an HTTP request (protobuf as stored; JSON
//! re-encoded from it, as opentelemetry-otlp's HTTP/JSON exporter encodes).

use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::{
    logs_service_client::LogsServiceClient, ExportLogsServiceRequest,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    trace_service_client::TraceServiceClient, ExportTraceServiceRequest,
};
use prost::Message as _;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;

use super::store::{Batch, Kind};
use super::{Outcome, Spool};
use crate::sink::otlp::retry::{self, Failure, HttpOutcome};
use crate::sink::otlp::{INITIAL_BACKOFF, MAX_BACKOFF};

/// Replays until the spool is stopped.
pub(super) async fn run(spool: &Spool, senders: &Senders) {
    let mut backoff = INITIAL_BACKOFF;
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        if spool.stop_at().is_some() {
            return;
        }
        if let Some(at) = retry_at {
            // Backing off: a batch spooled meanwhile does not hurry the next probe; the
            // collector found back (a live export's late success) does.
            if tokio::time::Instant::now() < at && spool.is_down() {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = spool.wake.notified() => {}
                }
                continue;
            }
            retry_at = None;
        }
        let Some(batch) = spool.take() else {
            spool.wake.notified().await;
            continue;
        };
        let id = batch.id;
        let outcome = tokio::select! {
            outcome = senders.send(&batch) => outcome,
            () = stop_deadline(spool) => {
                // Shutdown's deadline: the batch stays spooled for the next process.
                spool.finish(id, Outcome::Transient("shut down while replaying".to_owned()));
                return;
            }
        };
        match &outcome {
            Outcome::Delivered => backoff = INITIAL_BACKOFF,
            Outcome::Transient(_) => {
                retry_at = Some(tokio::time::Instant::now() + backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Outcome::Permanent(_) => {}
        }
        spool.finish(id, outcome);
    }
}

/// Resolves at shutdown's deadline, once shutdown has begun.
async fn stop_deadline(spool: &Spool) {
    loop {
        if let Some(at) = spool.stop_at() {
            tokio::time::sleep_until(at.into()).await;
            return;
        }
        spool.stopping.notified().await;
    }
}

/// How the replay reaches the collector: the sink's transport, endpoints, headers, TLS and
/// compression. A signal the sink does not export has no sender: its spooled requests (from an
/// earlier configuration) are refused.
#[derive(Debug)]
pub(in crate::sink::otlp) enum Senders {
    Grpc(Box<GrpcSenders>),
    Http(HttpSenders),
}

/// gRPC: one lazily connected channel per signal.
#[derive(Debug)]
pub(in crate::sink::otlp) struct GrpcSenders {
    pub(in crate::sink::otlp) traces: Option<TraceServiceClient<Channel>>,
    pub(in crate::sink::otlp) logs: Option<LogsServiceClient<Channel>>,
    pub(in crate::sink::otlp) metadata: MetadataMap,
    pub(in crate::sink::otlp) timeout: Duration,
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
    /// Sends one spooled request, once.
    async fn send(&self, batch: &Batch) -> Outcome {
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
    async fn send(&self, batch: &Batch) -> Outcome {
        let result = match batch.kind {
            Kind::Traces => {
                let Some(client) = &self.traces else {
                    return not_exported(batch.kind);
                };
                let request = match ExportTraceServiceRequest::decode(batch.payload.as_slice()) {
                    Ok(r) => r,
                    Err(e) => return undecodable(batch.kind, e),
                };
                client.clone().export(self.request(request)).await.map(drop)
            }
            Kind::Logs => {
                let Some(client) = &self.logs else {
                    return not_exported(batch.kind);
                };
                let request = match ExportLogsServiceRequest::decode(batch.payload.as_slice()) {
                    Ok(r) => r,
                    Err(e) => return undecodable(batch.kind, e),
                };
                client.clone().export(self.request(request)).await.map(drop)
            }
        };
        match result {
            Ok(()) => Outcome::Delivered,
            Err(status) => {
                let error = format!(
                    "replaying spooled {}: gRPC status {:?}: {}",
                    batch.kind.name(),
                    status.code(),
                    status.message()
                );
                match retry::classify_grpc_status(&status) {
                    Failure::Transient => Outcome::Transient(error),
                    Failure::Permanent => Outcome::Permanent(error),
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
    async fn send(&self, batch: &Batch) -> Outcome {
        let target = match batch.kind {
            Kind::Traces => &self.traces,
            Kind::Logs => &self.logs,
        };
        let Some((client, url)) = target else {
            return not_exported(batch.kind);
        };
        let (body, content_type) = match self.body(batch) {
            Ok(b) => b,
            Err(outcome) => return outcome,
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
                Err(e) => return Outcome::Permanent(format!("gzip failed: {e}")),
            }
        } else {
            body
        };
        let what = format!("replaying spooled {} to {url}", batch.kind.name());
        match request.body(body).send().await {
            Ok(response) if response.status().is_success() => Outcome::Delivered,
            Ok(response) => {
                let code = response.status().as_u16();
                let error = format!("{what}: HTTP {}", response.status());
                match retry::classify_http(Some(&HttpOutcome::Status(code))) {
                    Failure::Transient => Outcome::Transient(error),
                    Failure::Permanent => Outcome::Permanent(error),
                }
            }
            Err(e) => Outcome::Transient(format!("{what}: {}", retry::error_chain(&e))),
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

fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body)?;
    encoder.finish()
}
