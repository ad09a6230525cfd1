//! A tiny OTLP/gRPC traces receiver that answers with scripted statuses (e.g.
//! `RESOURCE_EXHAUSTED` with a `RetryInfo` delay) and notes when each request came, for the
//! retry tests. A real gRPC server (tonic, with the OTLP service the collector implements) on a
//! real socket: only the answers are scripted.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic_types::{ErrorDetails, StatusExt as _};

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum GrpcAnswer {
    /// The request is accepted.
    Accept,
    /// The request is accepted after a delay (other requests are served meanwhile).
    AcceptAfter(Duration),
    /// The request fails with `code`, and with a `RetryInfo` detail when a delay is given.
    Fail(tonic::Code, Option<Duration>),
}

struct Scripted {
    script: Vec<GrpcAnswer>,
    received: Arc<Mutex<Vec<Instant>>>,
}

#[tonic::async_trait]
impl TraceService for Scripted {
    async fn export(
        &self,
        _request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let n = {
            let mut received = self.received.lock().unwrap();
            received.push(Instant::now());
            received.len() - 1
        };
        let accept = || {
            Ok(tonic::Response::new(ExportTraceServiceResponse {
                partial_success: None,
            }))
        };
        match &self.script[n.min(self.script.len() - 1)] {
            GrpcAnswer::Accept => accept(),
            GrpcAnswer::AcceptAfter(delay) => {
                tokio::time::sleep(*delay).await;
                accept()
            }
            GrpcAnswer::Fail(code, delay) => {
                let details = match delay {
                    Some(d) => ErrorDetails::with_retry_info(Some(*d)),
                    None => ErrorDetails::new(),
                };
                Err(tonic::Status::with_error_details(
                    *code, "scripted", details,
                ))
            }
        }
    }
}

/// The receiver; stops on drop.
pub struct GrpcReceiver {
    pub port: u16,
    received: Arc<Mutex<Vec<Instant>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl GrpcReceiver {
    /// Answers the n-th request with `script[n]`, and every request past the script with its
    /// last answer.
    pub fn start(script: Vec<GrpcAnswer>) -> GrpcReceiver {
        assert!(!script.is_empty());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let incoming = runtime
            .block_on(async {
                tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap())
            })
            .expect("a loopback port");
        let port = incoming.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let service = TraceServiceServer::new(Scripted {
            script,
            received: Arc::clone(&received),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                }),
        );
        GrpcReceiver {
            port,
            received,
            stop: Some(stop),
            runtime: Some(runtime),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// When each request so far arrived.
    pub fn received(&self) -> Vec<Instant> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for GrpcReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}
