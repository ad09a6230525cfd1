//! With `EventsAsLogs::None` (also what `OTEL_LOGS_EXPORTER=none` selects) or
//! `OutsideSpans`, an event inside a span travels to the collector only on its span's record.
//! The OTLP sink counts the event record `exported` with its batch; when the span's record then
//! never reaches the collector (the span still open at shutdown, a tokio task alive when the
//! guard drops; or the span's own export refused), the events reached nobody and nothing said
//! so (adversary pass 60). They count as the sink's `lost_after_export` now, exactly; and an
//! event in a trace sampled out, with no span record to travel on, goes as a log record under
//! `OutsideSpans`. README: "every record enqueued ends, at each sink, as exported, spooled,
//! failed or dropped with a reason".
#![cfg(feature = "otlp")]
mod support;

use std::time::{Duration, Instant};

use support::collector::Collector;
use support::*;
use tracing_offload::sink::otlp::EventsAsLogs;
use tracing_offload::sink::Otlp;
use tracing_offload::OffloadLayer;

const EVENTS: u64 = 10;

/// Events the collector holds: as log records, and as span events on the spans it got.
fn delivered_events(collector: &Collector) -> u64 {
    let logs = collector
        .logs()
        .iter()
        .filter(|l| support::collector::marker_count(&l.body).is_none())
        .count() as u64;
    let span_events: u64 = collector
        .output()
        .lines()
        .filter(|l| l.contains("SpanEvent #"))
        .count() as u64;
    logs + span_events
}

/// Waits (up to a deadline, without failing) until the collector holds `want` events: what a
/// sink counted exported should arrive; when it never does, the assertion after says so.
fn wait_delivered(collector: &Collector, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while delivered_events(collector) < want && Instant::now() < deadline {
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

fn span_open_at_shutdown(which: EventsAsLogs) {
    let Some(collector) = Collector::start() else {
        return;
    };
    let sink = Otlp::new()
        .endpoint(collector.grpc_endpoint())
        .events_as_logs(which)
        .timeout(Duration::from_secs(5));
    let (layer, guard) = OffloadLayer::builder().sink(sink).build().unwrap();
    let handle = guard.handle();
    let dispatch = dispatch(layer);
    let span = tracing::dispatcher::with_default(&dispatch, || {
        // e.g. a connection task's span, still open when `main` returns
        let span = tracing::info_span!("connection");
        span.in_scope(|| {
            for i in 0..EVENTS {
                tracing::info!(i, "request handled");
            }
        });
        span
    });
    handle.flush(DEADLINE).unwrap();
    guard.shutdown(DEADLINE).unwrap();
    tracing::dispatcher::with_default(&dispatch, || drop(span)); // closes after shutdown
    let stats = handle.stats();
    let s = stats.sink("otlp").unwrap();
    wait_delivered(&collector, s.exported);
    let delivered = delivered_events(&collector);
    // Each event not delivered is counted as such at the sink: exported, then lost.
    assert_eq!(delivered, 0, "{stats:#?}");
    assert_eq!(
        (s.exported, s.lost_after_export),
        (EVENTS, EVENTS),
        "the collector got no event and no span: {stats:#?}"
    );
}

#[test]
fn events_of_a_span_open_at_shutdown_are_not_counted_exported_with_no_logs() {
    span_open_at_shutdown(EventsAsLogs::None);
}

#[test]
fn events_of_a_span_open_at_shutdown_are_not_counted_exported_outside_spans_only() {
    span_open_at_shutdown(EventsAsLogs::OutsideSpans);
}

#[test]
fn events_of_a_span_whose_export_is_refused_are_not_counted_exported() {
    let Some(collector) = Collector::start_with_args(&["--otlp-receiver-traces-disabled"]) else {
        return;
    };
    let sink = Otlp::new()
        .endpoint(collector.grpc_endpoint())
        .events_as_logs(EventsAsLogs::None)
        .timeout(Duration::from_secs(5));
    let (layer, guard) = OffloadLayer::builder().sink(sink).build().unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        let span = tracing::info_span!("request");
        span.in_scope(|| {
            for i in 0..EVENTS {
                tracing::info!(i, "step");
            }
        });
        // the events go in a batch of their own, before the span closes
        handle.flush(DEADLINE).unwrap();
        drop(span);
    });
    guard.shutdown(DEADLINE).unwrap();
    let stats = handle.stats();
    let s = stats.sink("otlp").unwrap();
    wait_delivered(&collector, s.exported);
    assert_eq!(collector.spans().len(), 0, "the traces service is off");
    assert_eq!(delivered_events(&collector), 0);
    // 1 span + 10 events reached nobody: the span counted failed, its events lost.
    assert_eq!(
        (
            s.exported - s.lost_after_export,
            s.failed,
            s.lost_after_export
        ),
        (0, 1, EVENTS),
        "the span's events counted exported though the span carrying them was refused: {stats:#?}"
    );
}

/// The control: the span closes before shutdown, and its events arrive on it.
#[test]
fn control_events_on_a_span_that_closes_in_time_arrive_as_span_events() {
    let Some(collector) = Collector::start() else {
        return;
    };
    let sink = Otlp::new()
        .endpoint(collector.grpc_endpoint())
        .events_as_logs(EventsAsLogs::None)
        .timeout(Duration::from_secs(5));
    let (layer, guard) = OffloadLayer::builder().sink(sink).build().unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        let span = tracing::info_span!("request");
        span.in_scope(|| {
            for i in 0..EVENTS {
                tracing::info!(i, "step");
            }
        });
    });
    guard.shutdown(DEADLINE).unwrap();
    collector.wait_spans(1);
    collector.wait_for("span events", DEADLINE, |c| delivered_events(c) >= EVENTS);
    let s = handle.stats().sink("otlp").unwrap().clone();
    assert_eq!((s.exported, s.lost_after_export), (EVENTS + 1, 0), "{s:#?}");
    assert_eq!(delivered_events(&collector), EVENTS);
}

/// `OutsideSpans` with a traces sampler that drops the trace: the event is kept (the event
/// rate alone decides, README) and has no span record to travel on. It was counted `exported`
/// and sent nowhere; it goes as a log record.
#[test]
fn events_in_an_unsampled_trace_are_not_counted_exported_outside_spans_only() {
    let Some(collector) = Collector::start() else {
        return;
    };
    let sink = Otlp::new()
        .endpoint(collector.grpc_endpoint())
        .events_as_logs(EventsAsLogs::OutsideSpans)
        .timeout(Duration::from_secs(5));
    let (layer, guard) = OffloadLayer::builder()
        .traces_sampler(tracing_offload::TracesSampler::AlwaysOff)
        .sink(sink)
        .build()
        .unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        let _span = tracing::info_span!("request").entered();
        for i in 0..EVENTS {
            tracing::warn!(i, "slow dependency");
        }
    });
    guard.shutdown(DEADLINE).unwrap();
    let stats = handle.stats();
    let s = stats.sink("otlp").unwrap();
    wait_delivered(&collector, s.exported);
    let delivered = delivered_events(&collector);
    assert_eq!(
        (s.exported, delivered),
        (EVENTS, EVENTS),
        "warnings in an unsampled trace counted exported, sent nowhere: {stats:#?}"
    );
}

/// The collector takes the span's request and never answers; shutdown's deadline passes while
/// the sink waits for it, and the pipeline gives up on the sink (the span counted
/// `shutdown_deadline`). The span's events had been counted exported with their own batch:
/// they reach nobody either, and count as lost after export. They were left counted exported
/// (a known gap of adversary pass 60's fix): the sink that would have counted them never
/// returned.
#[test]
fn events_of_a_span_whose_export_outlives_shutdown_are_counted_lost() {
    let silent = Unanswering::start();
    let sink = Otlp::new()
        .endpoint(format!("http://127.0.0.1:{}", silent.port))
        .events_as_logs(EventsAsLogs::None)
        .timeout(Duration::from_secs(60))
        .max_retries(0);
    let (layer, guard) = OffloadLayer::builder().sink(sink).build().unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        let span = tracing::info_span!("request");
        span.in_scope(|| {
            for i in 0..EVENTS {
                tracing::info!(i, "step");
            }
        });
        // The events go in a batch of their own, sent nowhere (no logs): counted exported.
        handle.flush(DEADLINE).unwrap();
        drop(span);
    });
    // The span's request under way, unanswered.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let s = handle.stats().sink("otlp").unwrap().clone();
        if s.forwarded == EVENTS + 1 && s.export_in_progress_for.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the span never went out: {s:#?}");
        std::thread::park_timeout(Duration::from_millis(10));
    }
    let _ = guard.shutdown(Duration::from_millis(300));
    let s = handle.stats().sink("otlp").unwrap().clone();
    assert_eq!(
        (
            s.exported,
            s.dropped_for(tracing_offload::DropReason::ShutdownDeadline),
            s.lost_after_export
        ),
        (EVENTS, 1, EVENTS),
        "the span given up on at the deadline, and the events that rode on it: {s:#?}"
    );
    silent.stop();
}
