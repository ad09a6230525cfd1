//! The spool replays over every transport the sink speaks — HTTP/protobuf, HTTP/JSON and gRPC,
//! with and without gzip — spans and log records alike, with the sink's resource: what the
//! collector receives from the spool is what a live export would have sent.
#![cfg(feature = "otlp")]
mod support;

use support::collector::Collector;
use support::*;
use tracing_offload::sink::otlp::Protocol;
use tracing_offload::OffloadLayer;

const SPANS: u64 = 30;

fn replays_over(protocol: Protocol, gzip: bool) {
    let what = format!("{protocol:?}, gzip {gzip}");
    let Some((grpc, http)) = Collector::ports_for_later() else {
        return;
    };
    let port = if protocol == Protocol::Grpc {
        grpc
    } else {
        http
    };
    let dir = tempfile::tempdir().unwrap();
    let (layer, guard) = OffloadLayer::builder()
        .sink(
            spooling_sink(
                format!("http://127.0.0.1:{port}"),
                "offload-spool-transports",
                dir.path(),
            )
            .protocol(protocol)
            .gzip(gzip),
        )
        .build()
        .unwrap();
    let handle = guard.handle();

    // The collector is down: spans and their events (as log records too) are spooled.
    with_layer(layer, || {
        for i in 0..SPANS {
            tracing::info_span!("work", i).in_scope(|| tracing::info!(i, "step"));
        }
    });
    handle.flush(DEADLINE).unwrap();
    let s = handle.stats().sink("otlp").unwrap().clone();
    assert_eq!((s.spooled, s.exported), (2 * SPANS, 0), "{what}: {s:#?}");

    let collector = Collector::start_on(grpc, http).unwrap();
    wait_spool_replayed(&format!("{what}: the spool replayed"), &handle);
    guard.shutdown(DEADLINE).unwrap();
    let spool = otlp_spool(&handle);
    assert_eq!(spool.replayed, 2 * SPANS, "{what}: {spool:#?}");

    let spans = collector.wait_spans(SPANS as usize);
    let logs = collector.wait_logs(SPANS as usize);
    assert_eq!(spans.len() as u64, SPANS, "{what}");
    assert_eq!(logs.len() as u64, SPANS, "{what}");
    let service = (
        "service.name".to_owned(),
        "Str(offload-spool-transports)".to_owned(),
    );
    for span in &spans {
        assert!(span.resource.contains(&service), "{what}: {span:?}");
        assert_eq!(
            span.scope,
            format!("tracing-offload {}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(span.events.len(), 1, "{what}: {span:?}");
        assert_eq!(span.events[0].name, "step", "{what}: {span:?}");
    }
    for log in &logs {
        assert!(log.resource.contains(&service), "{what}: {log:?}");
        assert_eq!(log.body, "Str(step)", "{what}: {log:?}");
        assert!(
            !log.trace_id.is_empty() && !log.span_id.is_empty(),
            "{what}: {log:?}"
        );
    }
}

#[test]
fn the_spool_replays_over_http_protobuf_with_gzip() {
    replays_over(Protocol::HttpProtobuf, true);
}

#[test]
fn the_spool_replays_over_http_json() {
    replays_over(Protocol::HttpJson, false);
}

#[test]
fn the_spool_replays_over_grpc_with_gzip() {
    replays_over(Protocol::Grpc, true);
}
