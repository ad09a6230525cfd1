//! `promtool check metrics` accepts the rendered metrics in every state: idle, after drops,
//! with a failing sink, with a disabled sink, and after shutdown.
mod support;

use std::time::Duration;

use support::admin::*;
use support::*;
use tracing_offload::OffloadLayer;

#[test]
fn promtool_accepts_the_metrics_in_every_state() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let ok = Gate::new("ok");
    let flaky = Gate::new("flaky");
    let (layer, guard) = OffloadLayer::builder()
        .capacity(4)
        .sink(ok.clone())
        .sink(flaky.clone())
        .drop_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let handle = guard.handle();
    let check = |state: &str| {
        let text = handle.render_prometheus();
        assert!(text.contains("offload_records_total"), "{state}: {text}");
        promtool_check(&promtool, &text);
    };
    check("idle");

    // After drops at the full queue (capacity 4): emit until one is dropped.
    flaky.set(Mode::Fail);
    let dispatch = tracing::Dispatch::new({
        use tracing_subscriber::prelude::*;
        tracing_subscriber::registry().with(layer)
    });
    tracing::dispatcher::with_default(&dispatch, || {
        wait_until("a record dropped at the full queue", DEADLINE, || {
            for i in 0..1_000 {
                tracing::info!(i, "burst");
            }
            handle.stats().dropped > 0
        });
    });
    wait_until("the flaky sink to fail", DEADLINE, || {
        handle.stats().sink("flaky").is_some_and(|s| s.failed > 0)
    });
    check("after drops, with a failing sink");

    flaky.set(Mode::Panic);
    tracing::dispatcher::with_default(&dispatch, || tracing::info!("boom"));
    wait_until("the flaky sink to be disabled", DEADLINE, || {
        handle.stats().sink("flaky").is_some_and(|s| s.disabled)
    });
    check("with a disabled sink");

    let _ = guard.shutdown(DEADLINE); // the disabled sink may have abandoned records
    check("after shutdown");
    let text = handle.render_prometheus();
    assert!(
        text.contains("offload_sink_disabled{sink=\"flaky\"} 1\n"),
        "{text}"
    );
    assert!(ok.exported() > 0);
}

#[test]
fn promtool_accepts_the_tail_sampling_metrics_and_they_add_up() {
    use tracing_offload::TailSampling;
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let ok = Gate::new("ok");
    // A budget of 2 records: the third trace's records force the oldest to be decided.
    let tail = TailSampling::new().keep_errors().max_buffered_spans(2);
    let (layer, guard) = OffloadLayer::builder()
        .tail_sampling(tail)
        .sink(ok.clone())
        .build()
        .unwrap();
    let handle = guard.handle();
    promtool_check(&promtool, &handle.render_prometheus());
    let roots = with_layer(layer, || {
        let roots: Vec<tracing::Span> = (0..3)
            .map(|i| {
                let root = tracing::info_span!("root", i);
                root.in_scope(|| tracing::info_span!("step", i).in_scope(|| {}));
                root
            })
            .collect();
        tracing::info_span!("failing", otel.status_code = "error").in_scope(|| {});
        tracing::info_span!("fine").in_scope(|| {});
        roots
    });
    handle.flush(DEADLINE).unwrap();
    wait_until("a decision forced by the budget", DEADLINE, || {
        handle.stats().tail_sampling.forced_decisions() == 1
    });
    let text = handle.render_prometheus();
    promtool_check(&promtool, &text);
    let stats = handle.stats();
    let t = &stats.tail_sampling;
    for line in [
        format!("offload_tail_sampled_out_records_total {}", t.sampled_out),
        "offload_tail_traces_total{decision=\"kept\",reason=\"error\"} 1".to_owned(),
        "offload_tail_traces_total{decision=\"dropped\"} 2".to_owned(),
        "offload_tail_forced_decisions_total{reason=\"buffer_full\"} 1".to_owned(),
        "offload_tail_forced_decisions_total{reason=\"decision_wait\"} 0".to_owned(),
        "offload_tail_buffered_records 2".to_owned(),
        "offload_tail_buffered_traces 2".to_owned(),
        "offload_tail_buffer_capacity 2".to_owned(),
        format!(
            "offload_records_total{{outcome=\"sampled_out\"}} {}",
            stats.sampled_out
        ),
    ] {
        assert!(
            text.contains(&format!("{line}\n")),
            "{line} missing:\n{text}"
        );
    }
    drop(roots);
    guard.shutdown(DEADLINE).unwrap();
    promtool_check(&promtool, &handle.render_prometheus());
}

/// The spool's families, from a real OTLP sink whose collector is down (the requests go to the
/// spool): `promtool` accepts them, and they say what the stats say.
#[cfg(feature = "otlp")]
#[test]
fn promtool_accepts_the_spool_metrics() {
    use tracing_offload::sink::otlp::EventsAsLogs;
    use tracing_offload::sink::Otlp;
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let sink = Otlp::new()
        .endpoint(format!("http://127.0.0.1:{nowhere}"))
        .events_as_logs(EventsAsLogs::None)
        .timeout(Duration::from_millis(500))
        .max_retries(0)
        .spool(dir.path());
    let (layer, guard) = OffloadLayer::builder().sink(sink).build().unwrap();
    let handle = guard.handle();
    with_layer(layer, || {
        for i in 0..10 {
            drop(tracing::info_span!("work", i).entered());
        }
    });
    handle.flush(DEADLINE).unwrap();
    wait_until("the collector known unreachable", DEADLINE, || {
        let stats = handle.stats();
        let spool = stats.sink("otlp").unwrap().spool.as_ref().unwrap();
        spool.records == 10 && spool.unreachable_for.is_some()
    });
    let text = handle.render_prometheus();
    promtool_check(&promtool, &text);
    for family in [
        "offload_sink_spool_depth{sink=\"otlp\"} 10\n",
        "offload_sink_spool_replaying{sink=\"otlp\"} 0\n",
        "offload_sink_spool_unreachable_seconds{sink=\"otlp\"} ",
        "offload_sink_spool_unanswered_seconds{sink=\"otlp\"} ",
    ] {
        assert!(text.contains(family), "{family:?} missing:\n{text}");
    }
    guard.shutdown(DEADLINE).unwrap();
}

/// The value of the sample `series` (name and labels, as rendered) in `text`.
fn sample(text: &str, series: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| {
            l.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with(' '))
        })
        .unwrap_or_else(|| panic!("{series} missing:\n{text}"));
    line[series.len() + 1..].parse().unwrap()
}

/// Every series of `offload_records_total` is a counter, and a counter only grows: records that
/// tail sampling dropped were taken out of `outcome="enqueued"` when it dropped them (scrapes
/// saw it fall, 786 to 678, which Prometheus reads as a reset: adversary pass 38). The series
/// counts the records that entered the queue, those dropped later included.
#[test]
fn the_records_enqueued_series_only_grows_when_tail_sampling_drops_a_trace() {
    use tracing_offload::TailSampling;
    let ok = Gate::new("ok");
    let (layer, guard) = OffloadLayer::builder()
        .tail_sampling(TailSampling::new().keep_ratio(0.0))
        .sink(ok.clone())
        .build()
        .unwrap();
    let handle = guard.handle();
    let enqueued = "offload_records_total{outcome=\"enqueued\"}";
    let dispatch = tracing::Dispatch::new({
        use tracing_subscriber::prelude::*;
        tracing_subscriber::registry().with(layer)
    });
    let root = tracing::dispatcher::with_default(&dispatch, || {
        let root = tracing::info_span!("root");
        root.in_scope(|| {
            for i in 0..100 {
                tracing::info!(i, "held for the trace's decision");
            }
        });
        root
    });
    wait_until("the trace's events held", DEADLINE, || {
        handle.stats().tail_sampling.buffered_records == 100
    });
    let before = sample(&handle.render_prometheus(), enqueued);
    assert_eq!(before, 100);
    drop(root); // the trace is decided: dropped (a ratio of 0)
    wait_until("the trace dropped", DEADLINE, || {
        handle.stats().tail_sampling.sampled_out == 101
    });
    let text = handle.render_prometheus();
    assert_eq!(sample(&text, enqueued), 101, "{text}");
    assert_eq!(
        sample(&text, "offload_records_total{outcome=\"sampled_out\"}"),
        101
    );
    assert_eq!(sample(&text, "offload_tail_sampled_out_records_total"), 101);
    guard.shutdown(DEADLINE).unwrap();
}
