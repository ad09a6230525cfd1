//! Two `OffloadLayer`s on one registry (one per destination, each with its own filter) keep
//! their span state apart: no panic, each records its own spans with the right parents. A span
//! both record has the same ids at both destinations (it had ids of each layer's own: a JSON
//! file's lines and the collector's spans named different traces).
mod support;

use support::*;
use tracing_offload::{OffloadLayer, Record};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::prelude::*;

#[test]
fn two_layers_on_one_registry_each_keep_their_spans() {
    let all = Collect::new("all");
    let audit = Collect::new("audit");
    let (layer_all, guard_all) = OffloadLayer::builder().sink(all.clone()).build().unwrap();
    let (layer_audit, guard_audit) = OffloadLayer::builder().sink(audit.clone()).build().unwrap();
    let subscriber = tracing_subscriber::registry()
        .with(layer_all)
        .with(layer_audit.with_filter(filter_fn(|m| m.target().starts_with("audit"))));
    tracing::subscriber::with_default(subscriber, || {
        let outer = tracing::info_span!(target: "audit", "outer").entered();
        let inner = tracing::info_span!(target: "app", "inner").entered();
        tracing::info!(target: "audit", "audited");
        drop(inner);
        drop(outer);
    });
    guard_all.shutdown(DEADLINE).unwrap();
    guard_audit.shutdown(DEADLINE).unwrap();
    let spans = |c: &Collect| {
        c.data()
            .into_iter()
            .filter_map(|r| match r {
                Record::Span(s) => Some(s),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let all_spans = spans(&all);
    assert_eq!(all_spans.len(), 2);
    let outer = all_spans.iter().find(|s| s.name() == "outer").unwrap();
    let inner = all_spans.iter().find(|s| s.name() == "inner").unwrap();
    assert_eq!(inner.parent_span_id(), Some(outer.span_id()));
    assert_eq!(inner.trace_id(), outer.trace_id());
    // The audit layer sees only `outer` (its filter hides `inner`), with the same ids.
    let audit_spans = spans(&audit);
    assert_eq!(audit_spans.len(), 1, "{audit_spans:?}");
    assert_eq!(audit_spans[0].name(), "outer");
    assert_eq!(
        (audit_spans[0].trace_id(), audit_spans[0].span_id()),
        (outer.trace_id(), outer.span_id()),
        "one span, two sets of ids"
    );
    // The event reached both, each in the span its layer records: `outer` for the audit
    // layer, `inner` for the other, in one trace.
    let audit_event = audit.events().into_iter().next().unwrap();
    assert_eq!(audit_event.span_id(), Some(outer.span_id()));
    assert_eq!(audit_event.trace_id(), Some(outer.trace_id()));
    let all_event = all.events().into_iter().next().unwrap();
    assert_eq!(all_event.span_id(), Some(inner.span_id()));
}

/// A span whose parent one layer's filter hides is a root for that layer: it stays in the
/// trace the other layer sees (it started a trace of its own), with the same span id.
#[test]
fn a_span_whose_parent_a_filter_hides_stays_in_the_trace() {
    let all = Collect::new("all");
    let audit = Collect::new("audit");
    let (layer_audit, guard_audit) = OffloadLayer::builder().sink(audit.clone()).build().unwrap();
    let (layer_all, guard_all) = OffloadLayer::builder().sink(all.clone()).build().unwrap();
    // The filtered layer inside this time, the other outermost.
    let subscriber = tracing_subscriber::registry()
        .with(layer_audit.with_filter(filter_fn(|m| m.target().starts_with("audit"))))
        .with(layer_all);
    tracing::subscriber::with_default(subscriber, || {
        let _request = tracing::info_span!(target: "app", "request").entered();
        let _check = tracing::info_span!(target: "audit", "check").entered();
        tracing::info!(target: "audit", "access granted");
    });
    guard_all.shutdown(DEADLINE).unwrap();
    guard_audit.shutdown(DEADLINE).unwrap();
    let (request, check) = (all.span("request"), all.span("check"));
    let audited = audit.span("check");
    assert_eq!(check.parent_span_id(), Some(request.span_id()));
    assert_eq!(
        audited.parent_span_id(),
        None,
        "its parent is not at this destination"
    );
    assert_eq!(
        (audited.trace_id(), audited.span_id()),
        (request.trace_id(), check.span_id()),
        "the audit destination's `check` in a trace of its own"
    );
    let event = audit.events().into_iter().next().unwrap();
    assert_eq!(event.trace_id(), Some(request.trace_id()));
}

/// `set_parent_traceparent` reaches every `OffloadLayer` of the registry, not only the outer
/// one: the span joins the remote trace at both destinations (it used to do so only at the
/// outer layer's, so the other destination's trace was split from the caller's).
#[test]
fn a_remote_parent_set_later_reaches_every_layer() {
    use tracing_offload::{OffloadSpanExt, SpanId, TraceId};
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT: &str = "00f067aa0ba902b7";
    let header = format!("00-{TRACE}-{PARENT}-01");

    let sinks = [
        Collect::new("first"),
        Collect::new("second"),
        Collect::new("third"),
    ];
    let mut guards = Vec::new();
    let mut layers = Vec::new();
    for sink in &sinks {
        let (layer, guard) = OffloadLayer::builder().sink(sink.clone()).build().unwrap();
        layers.push(layer);
        guards.push(guard);
    }
    let third = layers.pop().unwrap();
    let second = layers.pop().unwrap();
    let first = layers.pop().unwrap();
    let subscriber = tracing_subscriber::registry()
        .with(first)
        .with(second.with_filter(filter_fn(|_| true)))
        .with(third);
    tracing::subscriber::with_default(subscriber, || {
        let request = tracing::info_span!("request");
        request.set_parent_traceparent(&header).unwrap();
        request.in_scope(|| tracing::info!("handled"));
        // Refused at every layer once the span has an event, and said so.
        assert_eq!(
            request.set_parent_traceparent(&header),
            Err(tracing_offload::SetParentError::HasEvents)
        );
    });
    for guard in guards {
        guard.shutdown(DEADLINE).unwrap();
    }
    let trace = TraceId::from_hex(TRACE).unwrap();
    for (sink, at) in sinks.iter().zip(["first", "second", "third"]) {
        let span = sink.span("request");
        assert_eq!(span.trace_id(), trace, "at the {at} layer");
        assert_eq!(
            span.parent_span_id(),
            SpanId::from_hex(PARENT),
            "at the {at} layer"
        );
        assert!(span.parent_is_remote());
    }
}

/// The layers decide together: a layer whose filter showed it a child refuses (and says so),
/// and so do the others, so that the span keeps one trace at every destination (each decided
/// for its own span state, and the span had two traces: adversary pass 64);
/// `span.traceparent()` answers from a layer that records the span when the outermost one's
/// filter hides it.
#[test]
fn a_refusal_by_one_layer_holds_for_all_and_any_layer_answers_for_the_context() {
    use tracing_offload::{OffloadSpanExt, SetParentError, TraceId};
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let header = format!("00-{TRACE}-00f067aa0ba902b7-01");

    let (sees_children, hides_children) = (Collect::new("children"), Collect::new("no-children"));
    let (a, guard_a) = OffloadLayer::builder()
        .sink(sees_children.clone())
        .build()
        .unwrap();
    let (b, guard_b) = OffloadLayer::builder()
        .sink(hides_children.clone())
        .build()
        .unwrap();
    let outermost = Collect::new("outermost");
    let (c, guard_c) = OffloadLayer::builder().sink(outermost).build().unwrap();
    let subscriber = tracing_subscriber::registry()
        .with(a)
        .with(b.with_filter(filter_fn(|m| m.name() != "child")))
        // The outermost layer, the one extensions find, records no span named `hidden…`.
        .with(c.with_filter(filter_fn(|m| !m.name().starts_with("hidden"))));
    tracing::subscriber::with_default(subscriber, || {
        let request = tracing::info_span!("request");
        let _child = tracing::info_span!(parent: &request, "child");
        assert_eq!(
            request.set_parent_traceparent(&header),
            Err(SetParentError::HasChildren)
        );
        drop(request);

        let hidden = tracing::info_span!("hidden");
        let context = hidden.offload_context().expect("an inner layer records it");
        assert_eq!(
            hidden.traceparent().unwrap().split('-').nth(1).unwrap(),
            context.trace_id.to_string()
        );
    });
    guard_a.shutdown(DEADLINE).unwrap();
    guard_b.shutdown(DEADLINE).unwrap();
    guard_c.shutdown(DEADLINE).unwrap();
    let request = |sink: &Collect| sink.span("request");
    let trace = TraceId::from_hex(TRACE).unwrap();
    // The layer that saw the child kept its trace whole, and so did the other.
    let (seen, hid) = (request(&sees_children), request(&hides_children));
    assert_ne!(seen.trace_id(), trace);
    assert_eq!(
        (hid.trace_id(), hid.span_id()),
        (seen.trace_id(), seen.span_id())
    );
    assert!(!hid.parent_is_remote());
}

/// A span with a `traceparent` field made inside a local span (a consumer span under a worker
/// loop, say). One layer records the worker span; the other's filter hides it. For the first,
/// the span has a local parent: it stays in the worker's trace (the remote parent refused and
/// counted, as the README says). For the second, whose filter hides the parent, it was a root
/// that joined the remote trace: one span, two trace ids and two span ids at two destinations
/// (adversary pass 63). Both keep it in the worker's trace now, whichever layer sees it first.
fn a_span_with_a_traceparent_field_under_a_hidden_parent(hiding_layer_inside: bool) {
    use tracing_subscriber::Layer;
    const HEADER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let all = Collect::new("all");
    let audit = Collect::new("audit");
    let (layer_all, guard_all) = OffloadLayer::builder().sink(all.clone()).build().unwrap();
    let (layer_audit, guard_audit) = OffloadLayer::builder().sink(audit.clone()).build().unwrap();
    let audit_only = || filter_fn(|m| m.target().starts_with("audit"));
    let run = || {
        let worker = tracing::info_span!(target: "app", "worker").entered();
        let _msg = tracing::info_span!(target: "audit", "message", traceparent = HEADER).entered();
        tracing::info!(target: "audit", "handled");
        worker.id()
    };
    if hiding_layer_inside {
        let subscriber = tracing_subscriber::registry()
            .with(layer_audit.with_filter(audit_only()))
            .with(layer_all);
        tracing::subscriber::with_default(subscriber, run);
    } else {
        let subscriber = tracing_subscriber::registry()
            .with(layer_all)
            .with(layer_audit.with_filter(audit_only()));
        tracing::subscriber::with_default(subscriber, run);
    }
    guard_all.shutdown(DEADLINE).unwrap();
    guard_audit.shutdown(DEADLINE).unwrap();
    let (worker, at_all) = (all.span("worker"), all.span("message"));
    let at_audit = audit.span("message");
    assert_eq!(
        at_all.trace_id(),
        worker.trace_id(),
        "a local child stays local"
    );
    assert_eq!(
        (at_all.trace_id(), at_all.span_id()),
        (at_audit.trace_id(), at_audit.span_id()),
        "one span, two sets of ids"
    );
    assert!(at_audit.parent_span_id().is_none() && !at_audit.parent_is_remote());
}

#[test]
fn a_span_with_a_traceparent_under_a_parent_the_outer_layer_hides_has_one_set_of_ids() {
    a_span_with_a_traceparent_field_under_a_hidden_parent(false);
}

#[test]
fn a_span_with_a_traceparent_under_a_parent_the_inner_layer_hides_has_one_set_of_ids() {
    a_span_with_a_traceparent_field_under_a_hidden_parent(true);
}
