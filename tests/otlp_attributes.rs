//! What a collector (Rotel) receives as attributes: every transport carries every float, each
//! key once, and each error value under its own field's name.
#![cfg(feature = "otlp")]
mod support;

use std::time::Duration;

use support::collector::{Collector, LogOut};
use support::*;
use tracing_offload::sink::otlp::Protocol;
use tracing_offload::sink::Otlp;
use tracing_offload::{OffloadLayer, Stats};

#[derive(Debug)]
struct Failure(&'static str, Option<Box<Failure>>);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.1.as_deref().map(|e| e as _)
    }
}

/// Runs `f` with a pipeline exporting to `collector` over `protocol`, in one batch (the one
/// shutdown flushes); the stats after shutdown.
fn run(collector: &Collector, protocol: Protocol, f: impl FnOnce()) -> Stats {
    let endpoint = match protocol {
        Protocol::Grpc => collector.grpc_endpoint(),
        _ => collector.http_endpoint(),
    };
    let (layer, guard) = OffloadLayer::builder()
        .flush_interval(Duration::from_secs(3600))
        .sink(Otlp::new().endpoint(endpoint).protocol(protocol))
        .build()
        .unwrap();
    with_layer(layer, f);
    guard.shutdown(DEADLINE).unwrap();
    guard.handle().stats()
}

fn log_with_body<'a>(logs: &'a [LogOut], body: &str) -> &'a LogOut {
    let want = format!("Str({body})");
    logs.iter()
        .find(|l| l.body == want)
        .unwrap_or_else(|| panic!("no log with body {body} in {logs:#?}"))
}

/// The keys that appear more than once.
fn repeated(attributes: &[(String, String)]) -> Vec<&str> {
    let mut keys: Vec<&str> = attributes.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    let mut repeated: Vec<&str> = keys
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect();
    repeated.dedup();
    repeated
}

/// A NaN or infinite float went over `http/json` as `null` (the OTLP encoder's serde), which
/// the collector refused, and every record of its request with it (adversary pass 50). Such
/// floats go as text on every transport, as in the JSON file.
#[test]
fn non_finite_floats_reach_the_collector_on_every_transport() {
    let Some(collector) = Collector::start() else {
        return;
    };
    for protocol in [Protocol::HttpJson, Protocol::Grpc, Protocol::HttpProtobuf] {
        let stats = run(&collector, protocol, || {
            tracing::info!(n = 1, "innocent");
            tracing::info_span!("ratio", ratio = f64::INFINITY).in_scope(|| {
                tracing::info!(ratio = f64::NAN, low = f64::NEG_INFINITY, "nan");
            });
        });
        let otlp = stats.sink("otlp").unwrap();
        assert_eq!(
            (otlp.exported, otlp.failed),
            (3, 0),
            "{protocol:?}: {:?}",
            otlp.last_error
        );
    }
    let logs = collector.wait_logs(6);
    let nan: Vec<_> = logs.iter().filter(|l| l.body == "Str(nan)").collect();
    assert_eq!(nan.len(), 3);
    for l in nan {
        assert_eq!(l.attr("ratio"), Some("Str(NaN)"), "{l:#?}");
        assert_eq!(l.attr("low"), Some("Str(-inf)"), "{l:#?}");
    }
    let spans = collector.wait_spans(3);
    for s in spans {
        assert_eq!(s.attr("ratio"), Some("Str(inf)"), "{s:#?}");
    }
}

/// OTLP's attribute keys are unique in a span, a span event and a log record. A field named as
/// one of the attributes the crate adds (`target`, `busy_ns`, `thread.id`, `level` on a span
/// event, `code.*`, `thread.name` on a log record) made a second attribute of that name, and a
/// backend kept either (adversary pass 50). The field's value is kept.
#[test]
fn a_field_named_as_an_added_attribute_makes_one_attribute() {
    let Some(collector) = Collector::start() else {
        return;
    };
    let first = Failure("first", Some(Box::new(Failure("first's cause", None))));
    let second = Failure("second", None);
    let stats = run(&collector, Protocol::Grpc, || {
        let s = tracing::info_span!("s", target = "mine", busy_ns = 7, thread.id = -1);
        s.in_scope(|| {
            tracing::info!(level = "mine", "inside");
            tracing::warn!(
                first = &first as &(dyn std::error::Error + 'static),
                second = &second as &(dyn std::error::Error + 'static),
                "two errors"
            );
        });
        tracing::info!(thread.name = "mine", code.line.number = 1, "names");
    });
    assert_eq!(stats.sink("otlp").unwrap().exported, 4);
    let spans = collector.wait_spans(1);
    let s = &spans[0];
    assert_eq!(repeated(&s.attributes), Vec::<&str>::new(), "{s:#?}");
    assert_eq!(s.attr("target"), Some("Str(mine)"));
    assert_eq!(s.attr("busy_ns"), Some("Int(7)"));
    assert_eq!(s.attr("thread.id"), Some("Int(-1)"));
    // The first error value gives the span's exception attributes.
    assert_eq!(s.attr("exception.message"), Some("Str(first)"));
    for e in &s.events {
        assert_eq!(repeated(&e.attributes), Vec::<&str>::new(), "{e:#?}");
    }
    assert_eq!(
        s.events[0].attributes[0],
        ("level".into(), "Str(mine)".into())
    );
    let logs = collector.wait_logs(3);
    let names = log_with_body(&logs, "names");
    assert_eq!(
        repeated(&names.attributes),
        Vec::<&str>::new(),
        "{names:#?}"
    );
    assert_eq!(names.attr("thread.name"), Some("Str(mine)"));
    assert_eq!(names.attr("code.line.number"), Some("Int(1)"));
}

/// A log record with two error values named neither (both went as `exception.message`, with
/// one `exception.stacktrace`: which was which, and whose chain it was, was lost; adversary
/// pass 50). Each is under its field's name, with its chain; the first gives the exception
/// attributes.
#[test]
fn each_error_value_of_a_log_record_keeps_its_name() {
    let Some(collector) = Collector::start() else {
        return;
    };
    let db = Failure(
        "db down",
        Some(Box::new(Failure("connection refused", None))),
    );
    let cache = Failure("cache miss", None);
    run(&collector, Protocol::Grpc, || {
        tracing::warn!(
            db = &db as &(dyn std::error::Error + 'static),
            cache = &cache as &(dyn std::error::Error + 'static),
            "two errors"
        );
    });
    let logs = collector.wait_logs(1);
    let l = log_with_body(&logs, "two errors");
    assert_eq!(repeated(&l.attributes), Vec::<&str>::new(), "{l:#?}");
    assert_eq!(l.attr("db"), Some("Str(db down)"), "{l:#?}");
    assert_eq!(l.attr("cache"), Some("Str(cache miss)"), "{l:#?}");
    assert_eq!(l.attr("exception.message"), Some("Str(db down)"), "{l:#?}");
    assert!(
        l.attr("exception.stacktrace")
            .is_some_and(|v| v.contains("connection refused")),
        "{l:#?}"
    );
    assert!(
        l.attr("db.chain")
            .is_some_and(|v| v.contains("connection refused")),
        "{l:#?}"
    );
}

/// What an error value adds (`exception.*`, `<field>.chain`) loses to a field of the same
/// name, wherever the field comes: one after the error value lost to it (adversary pass 52).
#[test]
fn a_field_after_an_error_value_keeps_its_value() {
    let Some(collector) = Collector::start() else {
        return;
    };
    let db = Failure(
        "db down",
        Some(Box::new(Failure("connection refused", None))),
    );
    let stats = run(&collector, Protocol::Grpc, || {
        let span = tracing::info_span!(
            "s",
            db = &db as &(dyn std::error::Error + 'static),
            exception.message = "mine",
            db.chain = "mine too"
        );
        span.in_scope(|| {
            tracing::warn!(
                db = &db as &(dyn std::error::Error + 'static),
                exception.message = "mine",
                db.chain = "mine too",
                "log"
            );
        });
    });
    assert_eq!(stats.sink("otlp").unwrap().exported, 2);
    let spans = collector.wait_spans(1);
    let logs = collector.wait_logs(1);
    let log = log_with_body(&logs, "log");
    let event = &spans[0].events[0].attributes;
    for (what, attributes) in [
        ("span", &spans[0].attributes),
        ("log record", &log.attributes),
        ("span event", event),
    ] {
        assert_eq!(
            repeated(attributes),
            Vec::<&str>::new(),
            "{what}: {attributes:#?}"
        );
        let attr = |key: &str| {
            attributes
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(attr("db"), Some("Str(db down)"), "{what}");
        assert_eq!(attr("exception.message"), Some("Str(mine)"), "{what}");
        assert_eq!(attr("db.chain"), Some("Str(mine too)"), "{what}");
    }
}
