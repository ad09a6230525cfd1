//! The OTLP sink sends spans and log records in separate requests, often to separate services
//! (or endpoints). One of them failing says nothing of the other: the stats count what each
//! delivered (spans `exported` while the logs service refuses the events, and the other way
//! round), and the drop markers, which travel as log records, report each loss once.
//!
//! Both used to follow the batch's first error: a collector without a logs service got every
//! span, and the sink counted them all `failed`; with the traces endpoint down, each marker
//! that did reach the collector was counted undelivered and its losses reported again in the
//! next one, so the markers added up to many times what was lost. Against a real collector
//! (Rotel).
#![cfg(feature = "otlp")]

mod support;

use std::time::Duration;

use support::collector::{endpoints, marker_count, Collector};
use support::*;
use tracing_offload::sink::Otlp;
use tracing_offload::OffloadLayer;

const N: usize = 20;

#[test]
fn spans_delivered_while_the_logs_service_refuses_are_counted_exported() {
    let Some(collector) = Collector::start_with_args(&["--otlp-receiver-logs-disabled"]) else {
        return;
    };
    let sink = Otlp::new()
        .endpoint(collector.grpc_endpoint())
        .timeout(Duration::from_secs(5));
    let (layer, guard) = OffloadLayer::builder().sink(sink).build().unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        for i in 0..N {
            let _s = tracing::info_span!("request", i).entered();
            tracing::info!("inside");
        }
    });
    handle.flush(DEADLINE).unwrap();
    guard.shutdown(DEADLINE).unwrap();
    assert_eq!(collector.wait_spans(N).len(), N);
    let s = handle.stats().sink("otlp").unwrap().clone();
    // The spans went through; the events, sent as log records, were refused.
    assert_eq!((s.exported, s.failed), (N as u64, N as u64), "{s:#?}");
    assert_eq!(s.forwarded, 2 * N as u64);
    // And the sink says when it last delivered: it said it never had (adversary pass 54).
    assert!(s.last_success_at.is_some(), "{s:#?}");
    let health = handle.health();
    let component = health.component("sink:otlp").unwrap();
    assert!(component.last_success_at.is_some(), "{component:#?}");
}

#[test]
fn markers_delivered_while_the_traces_endpoint_fails_report_each_loss_once() {
    let Some(collector) = Collector::start() else {
        return;
    };
    let nowhere = format!(
        "http://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    let logs = collector.grpc_endpoint();
    let env = endpoints(&nowhere, &logs, "500");
    let sink = Otlp::from_env_with(&env).max_retries(0);
    let (layer, guard) = OffloadLayer::builder().sink(sink).build().unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        for batch in 0..5 {
            for i in 0..N {
                drop(tracing::info_span!("lost", batch, i).entered());
            }
            // Batches of their own: each after the first carries a marker for the last.
            handle.flush(DEADLINE).unwrap();
        }
    });
    guard.shutdown(DEADLINE).unwrap();
    let s = handle.stats().sink("otlp").unwrap().clone();
    assert_eq!((s.exported, s.failed), (0, 5 * N as u64), "{s:#?}");
    let counts = |c: &Collector| -> Vec<u64> {
        c.logs()
            .iter()
            .filter_map(|l| marker_count(&l.body))
            .collect()
    };
    collector.wait_for("markers for every loss", DEADLINE, |c| {
        counts(c).iter().sum::<u64>() >= s.failed
    });
    let counts = counts(&collector);
    assert_eq!(
        counts.iter().sum::<u64>(),
        s.failed,
        "the markers {counts:?} do not add up to what was lost"
    );
}
