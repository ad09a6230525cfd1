//! Tail sampling's rules around the decision: what is never sampled out, what is not tail
//! sampled at all, the local trace under a remote parent, decisions forced by the decision
//! wait, by the budget and by shutdown (each counted with its reason, and followed by the
//! trace's later records), flush, and run-time control.
mod support;

use std::time::Duration;

use support::*;
use tracing_offload::{
    Backpressure, EventRecord, ForcedDecision, Guard, Handle, OffloadLayer, Record, SpanRecord,
    TailSampling,
};

/// A pipeline with tail sampling into a collecting sink; nothing is dropped at the queue.
fn pipeline(tail: TailSampling) -> (OffloadLayer, Guard, Collect) {
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder()
        .backpressure(Backpressure::Block {
            timeout: Duration::from_secs(60),
        })
        .sample_always("audit")
        .tail_sampling(tail)
        .sink(sink.clone())
        .build()
        .unwrap();
    (layer, guard, sink)
}

fn event_messages(records: &[Record]) -> Vec<String> {
    let mut m: Vec<String> = records
        .iter()
        .filter_map(|r| match r {
            Record::Event(e) => Some(message(e)),
            _ => None,
        })
        .collect();
    m.sort();
    m
}

fn message(e: &EventRecord) -> String {
    e.message().map(|m| m.text.to_owned()).unwrap_or_default()
}

fn span_names(records: &[Record]) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = span_records(records).iter().map(SpanRecord::name).collect();
    names.sort_unstable();
    names
}

#[test]
fn exempt_events_are_written_at_once_and_events_outside_sampled_traces_follow_the_event_rules() {
    // No criterion: every sampled local trace is dropped.
    let (layer, guard, sink) = pipeline(TailSampling::new());
    with_layer(layer, || {
        tracing::info!("outside any span");
        tracing::info_span!("request").in_scope(|| {
            tracing::info!("routine");
            tracing::info_span!("child").in_scope(|| {
                tracing::info!(target: "audit", "whitelisted");
                tracing::error!(critical = true, "critical");
                tracing::error!("an error the event sampler keeps");
            });
        });
        // A trace the head sampler dropped (the caller's sampled flag is clear).
        let unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
        tracing::info_span!("remote", traceparent = unsampled)
            .in_scope(|| tracing::info!("in an unsampled trace"));
    });
    guard.shutdown(DEADLINE).unwrap();
    let data = sink.data();
    assert_eq!(
        event_messages(&data),
        [
            "an error the event sampler keeps",
            "critical",
            "in an unsampled trace",
            "outside any span",
            "whitelisted"
        ]
    );
    assert!(span_names(&data).is_empty(), "the trace was dropped");
    let stats = guard.handle().stats();
    // The two spans and the routine event.
    assert_eq!(stats.tail_sampling.sampled_out, 3, "{stats:#?}");
    assert_eq!(stats.tail_sampling.traces_dropped, 1);
    assert_eq!(
        stats.sampled_out,
        3 + 1,
        "and the unsampled span: {stats:#?}"
    );
    assert_accounting(&stats, 9);
}

#[test]
fn an_exempt_error_event_still_marks_its_trace() {
    let (layer, guard, sink) = pipeline(TailSampling::new().keep_errors());
    with_layer(layer, || {
        tracing::info_span!("request").in_scope(|| {
            tracing::info_span!("child").in_scope(|| tracing::error!("failed"));
            tracing::info!("after");
        });
    });
    guard.shutdown(DEADLINE).unwrap();
    let data = sink.data();
    assert_eq!(span_names(&data), ["child", "request"]);
    assert_eq!(event_messages(&data), ["after", "failed"]);
    let spans = span_records(&data);
    assert_eq!(span_named(&spans, "child").events().len(), 1);
    let tail = guard.handle().stats().tail_sampling;
    assert_eq!((tail.traces_kept_error, tail.sampled_out), (1, 0));
}

#[test]
fn each_local_root_under_a_remote_parent_is_decided_on_its_own() {
    let (layer, guard, sink) = pipeline(TailSampling::new().keep_errors());
    // Two requests of one distributed trace, from two calls of the caller.
    let first = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let second = "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01";
    with_layer(layer, || {
        tracing::info_span!("failing", traceparent = first).in_scope(|| {
            tracing::info_span!("step", otel.status_code = "ERROR").in_scope(|| {});
        });
        tracing::info_span!("fine", traceparent = second).in_scope(|| {
            tracing::info_span!("step").in_scope(|| tracing::info!("ok"));
        });
    });
    guard.shutdown(DEADLINE).unwrap();
    let data = sink.data();
    assert_eq!(span_names(&data), ["failing", "step"]);
    let spans = span_records(&data);
    let root = span_named(&spans, "failing");
    assert!(root.parent_is_remote());
    assert_eq!(span_named(&spans, "step").local_root_id(), root.span_id());
    let tail = guard.handle().stats().tail_sampling;
    assert_eq!((tail.traces_kept_error, tail.traces_dropped), (1, 1));
    assert_eq!(tail.sampled_out, 3);
}

/// Waits until `n` traces were decided for `reason`.
#[track_caller]
fn wait_for_forced(handle: &Handle, reason: ForcedDecision, n: u64) {
    wait_until(&format!("{n} decisions for {reason}"), DEADLINE, || {
        handle.stats().tail_sampling.forced_for(reason) == n
    });
}

#[test]
fn a_trace_whose_root_stays_open_is_decided_as_is_after_the_decision_wait() {
    // A real passage of time is what the decision wait is about: 100 ms, waited for as a
    // condition (the forced decisions' count), not slept.
    let tail = TailSampling::new()
        .keep_errors()
        .decision_wait(Duration::from_millis(100));
    let (layer, guard, sink) = pipeline(tail);
    let handle = guard.handle();
    with_layer(layer, || {
        let failing = tracing::info_span!("failing");
        failing.in_scope(|| {
            tracing::info_span!("step", otel.status_code = "error").in_scope(|| {});
        });
        let fine = tracing::info_span!("fine");
        fine.in_scope(|| tracing::info_span!("step").in_scope(|| tracing::info!("ok")));
        wait_for_forced(&handle, ForcedDecision::DecisionWait, 2);
        // Decided: the failing trace's records are written, the fine one's dropped.
        wait_until("the failing trace's step written", DEADLINE, || {
            span_names(&sink.data()) == ["step"]
        });
        // Their later records follow the decision, at once.
        failing.in_scope(|| tracing::info!("late"));
        fine.in_scope(|| tracing::info!("late"));
        handle.flush(DEADLINE).unwrap();
        assert_eq!(event_messages(&sink.data()), ["late"]);
        drop((failing, fine));
    });
    guard.shutdown(DEADLINE).unwrap();
    let data = sink.data();
    assert_eq!(span_names(&data), ["failing", "step"]);
    assert_eq!(event_messages(&data), ["late"]);
    let stats = handle.stats();
    let tail = &stats.tail_sampling;
    assert_eq!((tail.traces_kept_error, tail.traces_dropped), (1, 1));
    assert_eq!(
        tail.traces_decided(),
        2,
        "each trace decided once: {tail:#?}"
    );
    assert_eq!(tail.forced_decisions(), 2);
    // The fine trace: step, ok, late, and its root.
    assert_eq!(tail.sampled_out, 4);
    assert_accounting(&stats, 7);
}

#[test]
fn a_full_budget_decides_the_oldest_trace_as_is() {
    let tail = TailSampling::new().keep_errors().max_buffered_spans(4);
    let (layer, guard, sink) = pipeline(tail);
    let handle = guard.handle();
    with_layer(layer, || {
        let oldest = tracing::info_span!("oldest");
        oldest.in_scope(|| {
            tracing::info_span!("a", otel.status_code = "error").in_scope(|| {});
            tracing::info_span!("b").in_scope(|| {});
            tracing::info_span!("c").in_scope(|| {});
        });
        let newer = tracing::info_span!("newer");
        newer.in_scope(|| {
            tracing::info_span!("d").in_scope(|| {});
            // The fifth record: the oldest trace is decided (kept: it failed) to make room.
            tracing::info_span!("e").in_scope(|| {});
        });
        wait_for_forced(&handle, ForcedDecision::BufferFull, 1);
        handle.flush(DEADLINE).unwrap();
        assert_eq!(span_names(&sink.data()), ["a", "b", "c"]);
        let tail = handle.stats().tail_sampling;
        assert_eq!((tail.buffered_records, tail.buffered_traces), (2, 1));
        drop((oldest, newer));
    });
    guard.shutdown(DEADLINE).unwrap();
    let data = sink.data();
    assert_eq!(span_names(&data), ["a", "b", "c", "oldest"]);
    let stats = handle.stats();
    let tail = &stats.tail_sampling;
    assert_eq!(tail.high_water_mark, 4);
    assert_eq!((tail.traces_kept_error, tail.traces_dropped), (1, 1));
    assert_eq!(tail.sampled_out, 3);
    assert_accounting(&stats, 7);
    // Health says the budget forced a decision.
    let health = handle.health();
    let c = health.component("tail_sampling").unwrap();
    assert_eq!(
        c.status,
        tracing_offload::health::HealthStatus::Degraded,
        "{c:?}"
    );
    assert!(c.message.contains("budget was full"), "{}", c.message);
}

#[test]
fn shutdown_decides_every_held_trace_as_is() {
    let (layer, guard, sink) = pipeline(TailSampling::new().keep_errors());
    let dispatch = dispatch(layer);
    // Roots left open: shutdown finds their traces held.
    let (failing, fine) = tracing::dispatcher::with_default(&dispatch, || {
        let failing = tracing::info_span!("failing");
        failing.in_scope(|| tracing::info_span!("step").in_scope(|| tracing::error!("boom")));
        let fine = tracing::info_span!("fine");
        fine.in_scope(|| tracing::info_span!("step").in_scope(|| tracing::info!("ok")));
        (failing, fine)
    });
    let handle = guard.handle();
    // A flush does not wait for traces whose root is open, and says what is held.
    handle.flush(DEADLINE).unwrap();
    wait_until("the steps held", DEADLINE, || {
        handle.stats().tail_sampling.buffered_records == 3
    });
    guard.shutdown(DEADLINE).unwrap();
    let data = sink.data();
    assert_eq!(span_names(&data), ["step"]);
    assert_eq!(event_messages(&data), ["boom"]);
    let stats = handle.stats();
    let tail = &stats.tail_sampling;
    assert_eq!(tail.forced_for(ForcedDecision::Shutdown), 2, "{tail:#?}");
    assert_eq!((tail.traces_kept_error, tail.traces_dropped), (1, 1));
    assert_eq!((tail.sampled_out, tail.buffered_records), (2, 0));
    assert_accounting(&stats, 4);
    drop((failing, fine)); // after shutdown: counted as dropped with reason `shutdown`
    let stats = handle.stats();
    assert_accounting(&stats, 6);
}

#[test]
fn run_time_changes_apply_to_held_traces() {
    let (layer, guard, sink) = pipeline(TailSampling::new().max_buffered_spans(100));
    let handle = guard.handle();
    with_layer(layer, || {
        let roots: Vec<tracing::Span> = (0..3)
            .map(|i| {
                let root = tracing::info_span!("root", i);
                root.in_scope(|| tracing::info_span!("step", i).in_scope(|| {}));
                root
            })
            .collect();
        wait_until("three steps held", DEADLINE, || {
            handle.stats().tail_sampling.buffered_records == 3
        });
        // A lower budget decides the oldest as is (dropped: nothing qualifies).
        let lower = TailSampling::new().max_buffered_spans(2);
        handle.set_tail_sampling(Some(lower)).unwrap();
        wait_for_forced(&handle, ForcedDecision::BufferFull, 1);
        assert_eq!(handle.config().tail_sampling.value, Some(lower));
        // Invalid settings are refused and change nothing.
        assert!(handle
            .set_tail_sampling(Some(lower.max_buffered_spans(0)))
            .is_err());
        assert!(handle
            .set_tail_sampling(Some(lower.keep_ratio(1.1)))
            .is_err());
        assert_eq!(handle.stats().tail_sampling.settings, Some(lower));
        // Off: what is held is written, and so is everything after.
        handle.set_tail_sampling(None).unwrap();
        wait_until("the held steps released", DEADLINE, || {
            handle.stats().tail_sampling.buffered_records == 0
        });
        drop(roots);
    });
    guard.shutdown(DEADLINE).unwrap();
    let data = sink.data();
    // The oldest trace's step was dropped, and so is its root (the decision is remembered).
    assert_eq!(span_names(&data), ["root", "root", "step", "step"]);
    let stats = handle.stats();
    assert_eq!(stats.tail_sampling.sampled_out, 2);
    assert!(stats.tail_sampling.settings.is_none());
    assert_accounting(&stats, 6);
}

#[test]
fn the_environment_sets_tail_sampling_and_bad_values_warn() {
    use tracing_offload::{BuildError, Builder, Source};
    let env = |value: &'static str| {
        move |var: &str| (var == "OFFLOAD_TAIL_SAMPLING").then(|| value.to_owned())
    };
    let (_layer, guard) = Builder::from_env_with(&env("errors,slow:500ms,ratio:0.05"))
        .build()
        .unwrap();
    let c = guard.handle().config();
    let expected = TailSampling::new()
        .keep_errors()
        .keep_slower_than(Duration::from_millis(500))
        .keep_ratio(0.05);
    assert_eq!(c.tail_sampling.value, Some(expected));
    assert_eq!(
        c.tail_sampling.source,
        Source::Env("OFFLOAD_TAIL_SAMPLING".into())
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // The config shows it in its text form.
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(
        json["tail_sampling"]["value"],
        "errors,slow:500ms,ratio:0.05,wait:30s,max_buffered_spans:100000"
    );

    let (_layer, guard) = Builder::from_env_with(&env("errors,ratio:0,05"))
        .build()
        .unwrap();
    let c = guard.handle().config();
    assert_eq!(c.tail_sampling.value, None);
    assert_eq!(c.warnings.len(), 1);
    let w = c.warnings[0].to_string();
    assert!(
        w.contains("OFFLOAD_TAIL_SAMPLING")
            && w.contains("errors,ratio:0,05")
            && w.contains("the default off"),
        "{w}"
    );
    assert!(matches!(
        Builder::try_from_env_with(&env("slow")),
        Err(BuildError::InvalidEnv(_))
    ));

    // A reload applies a valid value and keeps the one in force for an invalid one.
    let handle = guard.handle();
    assert!(handle.reload_from_env_with(&env("errors")).is_empty());
    assert_eq!(
        handle.stats().tail_sampling.settings,
        Some(TailSampling::new().keep_errors())
    );
    let warnings = handle.reload_from_env_with(&env("errors,fast"));
    assert_eq!(
        warnings[0].used,
        "the current value errors,ratio:0,wait:30s,max_buffered_spans:100000"
    );
    assert!(handle.reload_from_env_with(&env("off")).is_empty());
    assert_eq!(handle.stats().tail_sampling.settings, None);

    // A budget out of range set in code fails the build, saying the range.
    let err = OffloadLayer::builder()
        .tail_sampling(TailSampling::new().max_buffered_spans(0))
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::OutOfRange { .. }), "{err}");
    let err = OffloadLayer::builder()
        .tail_sampling(TailSampling::new().keep_ratio(-0.5))
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::Sampling(_)), "{err}");
}

#[test]
fn what_tail_sampling_holds_past_the_shutdown_deadline_is_counted() {
    use tracing_offload::{DropReason, FlushError};
    let sink = Collect::new("stalled");
    let (layer, guard) = OffloadLayer::builder()
        .sink_buffer_capacity(1)
        .tail_sampling(TailSampling::new().keep_errors())
        .sink(sink.clone())
        .build()
        .unwrap();
    let handle = guard.handle();
    let dispatch = dispatch(layer);
    let root = tracing::dispatcher::with_default(&dispatch, || {
        let root = tracing::info_span!("failing");
        root.in_scope(|| tracing::info_span!("step", otel.status_code = "error").in_scope(|| {}));
        wait_until("the step held", DEADLINE, || {
            handle.stats().tail_sampling.buffered_records == 1
        });
        // Then the only sink stops taking anything: stuck in an export, its buffer full.
        sink.stall();
        tracing::info!("exporting");
        wait_until("the sink stuck in an export", DEADLINE, || {
            handle.stats().sinks[0].export_in_progress_for.is_some()
        });
        tracing::info!("buffered");
        wait_until("the sink's buffer full", DEADLINE, || {
            handle.stats().sinks[0].buffered == 1
        });
        root
    });
    // Shutdown decides the trace (kept: it failed), but no sink takes it before the deadline.
    let result = guard.shutdown(std::time::Duration::from_secs(1));
    let Err(FlushError::Abandoned { report }) = result else {
        panic!("{result:?}")
    };
    assert!(report.abandoned.total() >= 2, "{report:?}");
    sink.release();
    wait_until("the held step counted", DEADLINE, || {
        handle.stats().dropped_for(DropReason::ShutdownDeadline) == 1
    });
    let stats = handle.stats();
    assert_eq!(stats.tail_sampling.traces_kept_error, 1);
    assert_eq!(stats.tail_sampling.forced_for(ForcedDecision::Shutdown), 1);
    assert_accounting(&stats, 3);
    drop(root);
}
