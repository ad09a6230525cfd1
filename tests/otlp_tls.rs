//! `https://` endpoints: both transports through a TLS front (a CA made in the test) to a real
//! collector, with a CA file from the environment or from code, with mutual TLS, and without
//! the CA (the error says why).
#![cfg(feature = "tls")]
mod support;

use std::time::Duration;

use support::collector::Collector;
use support::tls::{TestPki, TlsFront};
use support::*;
use tracing_offload::sink::otlp::{Protocol, Tls};
use tracing_offload::sink::Otlp;
use tracing_offload::{Handle, OffloadLayer};

fn emit(sink: Otlp) -> Handle {
    let (layer, guard) = OffloadLayer::builder().sink(sink).build().unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        let _s = tracing::info_span!("secure", n = 1).entered();
        tracing::info!("over tls");
    });
    handle.flush(DEADLINE).unwrap();
    guard.shutdown(DEADLINE).unwrap();
    handle
}

fn exported(handle: &Handle) -> tracing_offload::SinkStats {
    handle.stats().sink("otlp").unwrap().clone()
}

#[test]
fn grpc_over_tls_with_the_ca_from_the_environment() {
    let Some(collector) = Collector::start() else {
        return;
    };
    let pki = TestPki::new();
    let front = TlsFront::start(&pki, collector.grpc_port, true, false);
    let vars = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", front.endpoint()),
        (
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            pki.ca.display().to_string(),
        ),
        ("OTEL_SERVICE_NAME", "tls-grpc".to_owned()),
    ];
    let lookup = |var: &str| vars.iter().find(|(k, _)| *k == var).map(|(_, v)| v.clone());
    let handle = emit(Otlp::from_env_with(&lookup));
    let spans = collector.wait_spans(1);
    assert_eq!(spans[0].name, "secure");
    assert_eq!(collector.wait_logs(1)[0].body, "Str(over tls)");
    let s = exported(&handle);
    assert_eq!((s.exported, s.failed), (2, 0), "{s:#?}");
}

#[test]
fn http_over_mutual_tls_with_files_from_code() {
    let Some(collector) = Collector::start() else {
        return;
    };
    let pki = TestPki::new();
    let front = TlsFront::start(&pki, collector.http_port, false, true);
    let sink = Otlp::new()
        .endpoint(front.endpoint())
        .protocol(Protocol::HttpProtobuf)
        .service_name("tls-http")
        .tls(
            Tls::new()
                .certificate(&pki.ca)
                .client_certificate(&pki.client_cert)
                .client_key(&pki.client_key),
        );
    let handle = emit(sink);
    assert_eq!(collector.wait_spans(1)[0].name, "secure");
    assert_eq!(collector.wait_logs(1)[0].body, "Str(over tls)");
    let s = exported(&handle);
    assert_eq!((s.exported, s.failed), (2, 0), "{s:#?}");
}

#[test]
fn mutual_tls_without_a_client_certificate_is_refused_and_counted() {
    let Some(collector) = Collector::start() else {
        return;
    };
    let pki = TestPki::new();
    let front = TlsFront::start(&pki, collector.http_port, false, true);
    let sink = Otlp::new()
        .endpoint(front.endpoint())
        .protocol(Protocol::HttpProtobuf)
        .max_retries(0)
        .tls(Tls::new().certificate(&pki.ca));
    let s = exported(&emit(sink));
    assert_eq!((s.exported, s.failed), (0, 2), "{s:#?}");
    assert!(collector.spans().is_empty());
}

#[test]
fn an_untrusted_server_is_an_error_that_says_so() {
    let Some(collector) = Collector::start() else {
        return;
    };
    let pki = TestPki::new();
    for grpc in [true, false] {
        let backend = if grpc {
            collector.grpc_port
        } else {
            collector.http_port
        };
        let front = TlsFront::start(&pki, backend, grpc, false);
        // No CA file: the platform's roots do not know the test CA.
        let sink = Otlp::new()
            .endpoint(front.endpoint())
            .protocol(if grpc {
                Protocol::Grpc
            } else {
                Protocol::HttpProtobuf
            })
            .timeout(Duration::from_secs(5))
            .max_retries(0);
        let s = exported(&emit(sink));
        assert_eq!((s.exported, s.failed), (0, 2), "{s:#?}");
        let error = s.last_error.unwrap_or_default();
        assert!(
            error.contains("UnknownIssuer") || error.contains("certificate"),
            "grpc={grpc}: the error names the certificate problem: {error}"
        );
    }
    assert!(collector.spans().is_empty());
}

/// A server that accepts a connection and never answers its TLS handshake (a stuck ingress)
/// holds that connection only for the request timeout: the gRPC channel gives up on it and
/// connects again. tonic bounds neither the connection nor the handshake by default, and a
/// request waits for its connection outside its own timeout: the export waited for the batch's
/// deadline, and every later one on the same stuck connection, so nothing was delivered again.
#[test]
fn grpc_gives_up_on_a_handshake_that_never_ends_and_connects_again() {
    let Some(collector) = Collector::start() else {
        return;
    };
    let pki = TestPki::new();
    let front = TlsFront::start_stalling_first(&pki, collector.grpc_port, true);
    let sink = Otlp::new()
        .endpoint(front.endpoint())
        .timeout(Duration::from_millis(500))
        .max_retries(0)
        .tls(Tls::new().certificate(&pki.ca));
    let (layer, guard) = OffloadLayer::builder().sink(sink).build().unwrap();
    let handle = guard.handle();
    let dispatch = dispatch(layer);
    let round = |n: u64| {
        tracing::dispatcher::with_default(&dispatch, || {
            let _s = tracing::info_span!("secure", n).entered();
            tracing::info!(n, "over tls");
        });
        handle.flush(DEADLINE).unwrap();
    };
    round(1);
    let first = exported(&handle);
    // The span and the log record go on two connections; the first one made was held.
    assert_eq!(first.exported + first.failed, 2, "{first:#?}");
    assert!(first.failed >= 1, "{first:#?}");
    // The error says what went wrong once (tonic's transport error repeats its source).
    let error = first.last_error.as_deref().unwrap_or_default();
    let parts: Vec<&str> = error.split(": ").collect();
    assert!(error.contains("TLS handshake timeout"), "{error}");
    assert!(parts.windows(2).all(|w| w[0] != w[1]), "{error}");
    round(2);
    let second = exported(&handle);
    assert_eq!(second.exported, first.exported + 2, "{second:#?}");
    assert_eq!(second.failed, first.failed, "{second:#?}");
    guard.shutdown(DEADLINE).unwrap();
    assert!(collector.wait_spans(1).iter().any(|s| s.name == "secure"));
}
