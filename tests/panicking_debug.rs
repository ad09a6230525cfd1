//! A `Debug` impl that panics while a span records it unwinds to the caller, as the `fmt`
//! layer does, and leaves the pipeline working: no abort, no poisoned state.
mod support;

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use support::*;
use tracing_offload::{OffloadLayer, Record};

struct Panics;

impl fmt::Debug for Panics {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        panic!("Debug impl panicked")
    }
}

#[test]
fn a_panicking_debug_in_span_record_unwinds_and_the_pipeline_goes_on() {
    let sink = Collect::new("collect");
    let (layer, guard) = OffloadLayer::builder().sink(sink.clone()).build().unwrap();
    with_layer(layer, || {
        let span = tracing::info_span!("work", value = tracing::field::Empty, after = 1u64);
        let caught = catch_unwind(AssertUnwindSafe(|| {
            span.record("value", tracing::field::debug(Panics));
        }));
        assert!(caught.is_err(), "the panic reaches the caller");
        let caught = catch_unwind(AssertUnwindSafe(|| {
            tracing::info!(value = ?Panics, "event");
        }));
        assert!(caught.is_err());
        let caught = catch_unwind(AssertUnwindSafe(|| {
            drop(tracing::info_span!("at creation", value = ?Panics));
        }));
        assert!(caught.is_err());
        span.record("after", 2u64);
        span.in_scope(|| tracing::info!("still working"));
        drop(span);
        tracing::info!("and after");
    });
    guard.shutdown(DEADLINE).unwrap();
    let data = sink.data();
    let work = data
        .iter()
        .find_map(|r| match r {
            Record::Span(s) if s.name() == "work" => Some(s.clone()),
            _ => None,
        })
        .expect("the span was recorded");
    assert_eq!(work.fields().get("after").unwrap().to_string(), "2");
    let messages: Vec<String> = data
        .iter()
        .filter_map(|r| match r {
            Record::Event(e) => e.message().map(|m| m.text.to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(messages, ["still working", "and after"]);
}
