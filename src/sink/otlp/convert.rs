//! The pure mapping from [`Record`](crate::Record)s to OTel span data and log records, with the
//! conventions of `tracing-opentelemetry` (`otel.*` fields, exception events, status).

use std::borrow::Cow;
use std::time::SystemTime;

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, Severity};
use opentelemetry::trace::Link;
use opentelemetry::trace::{
    SpanContext, SpanId as OtelSpanId, SpanKind, Status, TraceFlags, TraceId as OtelTraceId,
    TraceState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_sdk::logs::SdkLogRecord;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use crate::ids::SpanContext as OffloadSpanContext;
use crate::level::LogLevel;
use crate::record::{ErrorValue, EventRecord, FieldValue, SpanRecord};

fn severity(level: LogLevel) -> Severity {
    match level {
        LogLevel::Trace => Severity::Trace,
        LogLevel::Debug => Severity::Debug,
        LogLevel::Info => Severity::Info,
        LogLevel::Warning => Severity::Warn,
        LogLevel::Error => Severity::Error,
        LogLevel::Critical => Severity::Fatal,
    }
}

fn value(v: FieldValue<'_>) -> Value {
    match v {
        FieldValue::I64(v) => Value::I64(v),
        FieldValue::U64(v) => {
            i64::try_from(v).map_or_else(|_| Value::String(v.to_string().into()), Value::I64)
        }
        FieldValue::I128(v) => {
            i64::try_from(v).map_or_else(|_| Value::String(v.to_string().into()), Value::I64)
        }
        FieldValue::U128(v) => {
            i64::try_from(v).map_or_else(|_| Value::String(v.to_string().into()), Value::I64)
        }
        FieldValue::F64(v) if v.is_finite() => Value::F64(v),
        // As text (`NaN`, `inf`, `-inf`), as in the JSON file: OTLP/JSON as the encoder writes
        // it sends a non-finite double as `null`, which a collector refuses with the whole
        // request, and many backends refuse such doubles anyway.
        FieldValue::F64(v) => Value::String(v.to_string().into()),
        FieldValue::Bool(v) => Value::Bool(v),
        FieldValue::Str(t) => Value::String(t.to_string().into()),
        FieldValue::Error(e) => Value::String(e.message().to_string().into()),
    }
}

/// An attribute's value as a log record's `AnyValue`.
fn any_of(v: Value) -> AnyValue {
    match v {
        Value::I64(i) => AnyValue::Int(i),
        Value::F64(f) => AnyValue::Double(f),
        Value::Bool(b) => AnyValue::Boolean(b),
        Value::String(s) => AnyValue::String(s),
        Value::Array(Array::String(list)) => {
            AnyValue::ListAny(Box::new(list.into_iter().map(AnyValue::String).collect()))
        }
        other => AnyValue::String(other.as_str().into_owned().into()),
    }
}

fn code_attributes(
    file: Option<&str>,
    line: Option<u32>,
    module: Option<&str>,
    out: &mut Vec<KeyValue>,
) {
    if let Some(file) = file {
        out.push(KeyValue::new("code.file.path", file.to_owned()));
    }
    if let Some(line) = line {
        out.push(KeyValue::new("code.line.number", i64::from(line)));
    }
    if let Some(module) = module {
        out.push(KeyValue::new("code.module.name", module.to_owned()));
    }
}

fn thread_attributes(t: &crate::ids::ThreadInfo, out: &mut Vec<KeyValue>) {
    out.push(KeyValue::new("thread.id", t.id as i64));
    if let Some(name) = t.name {
        out.push(KeyValue::new("thread.name", name));
    }
}

/// A closed span as OTLP span data, with the conventions of `tracing-opentelemetry` 0.34 (see
/// the README's "differences from tracing-opentelemetry" for where this differs on purpose).
pub(super) fn span_data(s: &SpanRecord, scope: &InstrumentationScope) -> SpanData {
    let mut span = SpanParts {
        name: Cow::Borrowed(s.name()),
        kind: SpanKind::Internal,
        status: Status::Unset,
        attributes: Vec::with_capacity(s.fields().len() + 8),
        derived: Vec::new(),
    };
    for (key, v) in s.fields().iter() {
        span.field(key, v);
    }
    let meta = s.metadata();
    code_attributes(
        meta.file(),
        meta.line(),
        meta.module_path(),
        &mut span.attributes,
    );
    thread_attributes(&s.thread(), &mut span.attributes);
    span.attributes.push(KeyValue::new("target", s.target()));
    if let Some((busy, idle)) = s.busy_idle() {
        span.attributes.push(KeyValue::new("busy_ns", nanos(busy)));
        span.attributes.push(KeyValue::new("idle_ns", nanos(idle)));
    }
    let events = s.events().iter().map(|e| span.event(e)).collect();
    span.attributes.append(&mut span.derived);
    keep_first_of_each_key(&mut span.attributes);
    SpanData {
        span_context: SpanContext::new(
            OtelTraceId::from_bytes(s.trace_id().0),
            OtelSpanId::from_bytes(s.span_id().0),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: s
            .parent_span_id()
            .map_or(OtelSpanId::INVALID, |p| OtelSpanId::from_bytes(p.0)),
        parent_span_is_remote: s.parent_is_remote(),
        span_kind: span.kind,
        name: span.name,
        start_time: otlp_time(s.start()),
        end_time: otlp_time(s.end()),
        attributes: span.attributes,
        dropped_attributes_count: 0,
        events: span_events(events, s.dropped_events()),
        links: span_links(s.links()),
        status: span.status,
        instrumentation_scope: scope.clone(),
    }
}

/// A span's name, kind, status and attributes as its fields and events set them.
struct SpanParts {
    name: Cow<'static, str>,
    kind: SpanKind,
    status: Status,
    attributes: Vec<KeyValue>,
    /// What the fields' and events' error values add (`exception.*`, `<field>.chain`): after
    /// every field, so that a field of the same name wins.
    derived: Vec<KeyValue>,
}

impl SpanParts {
    /// One span field: an `otel.*` convention, or an attribute.
    fn field(&mut self, key: &'static str, v: FieldValue<'_>) {
        match key {
            "otel.name" => self.name = Cow::Owned(v.to_string()),
            "otel.kind" => {
                if let Some(kind) = span_kind(&v.to_string()) {
                    self.kind = kind;
                }
            }
            "otel.status_code" => self.status = status_code(&v.to_string()),
            // `otel.status_description` is tracing-opentelemetry's name; `otel.status_message`
            // is accepted too (it was this crate's).
            "otel.status_description" | "otel.status_message" => {
                self.status = Status::error(v.to_string())
            }
            _ => match v {
                FieldValue::Error(e) => {
                    self.attributes.push(KeyValue::new(key, value(v)));
                    exception_attributes(&e, &mut self.derived);
                    chain_attribute(key, &e, &mut self.derived);
                }
                _ => self.attributes.push(KeyValue::new(key, value(v))),
            },
        }
    }

    /// One event inside the span, as a span event; its effect on the span's status and
    /// attributes as in tracing-opentelemetry:
    /// - an `ERROR` event makes an unset status an error (with no description);
    /// - an event whose `error` field comes without a message is an `exception` event, and the
    ///   error's text becomes the status description;
    /// - an error value (`&dyn Error`) adds `exception.message` / `exception.stacktrace` (its
    ///   source chain) to the span.
    fn event(&mut self, e: &EventRecord) -> opentelemetry::trace::Event {
        let mut name: Cow<'static, str> = match e.message() {
            Some(m) => Cow::Owned(m.to_string()),
            None => Cow::Borrowed(e.name()),
        };
        let mut attrs = Vec::with_capacity(e.fields().len() + 6);
        let mut derived = Vec::new();
        if e.level() >= LogLevel::Error && self.status == Status::Unset {
            self.status = Status::error("");
        }
        // The fields first: a field named as an attribute added below keeps its value.
        for (key, v) in e.fields().iter() {
            match v {
                FieldValue::Error(err) => {
                    attrs.push(KeyValue::new(key, value(v)));
                    exception_attributes(&err, &mut derived);
                    chain_attribute(key, &err, &mut derived);
                    exception_attributes(&err, &mut self.derived);
                }
                _ if key == "error" && e.message().is_none() => {
                    let text = v.to_string();
                    name = Cow::Borrowed("exception");
                    derived.push(KeyValue::new("exception.message", text.clone()));
                    self.status = Status::error(text);
                }
                _ => attrs.push(KeyValue::new(key, value(v))),
            }
        }
        attrs.push(KeyValue::new("level", e.metadata().level().as_str()));
        attrs.push(KeyValue::new("target", e.target().to_owned()));
        code_attributes(e.file(), e.line(), e.module_path(), &mut attrs);
        attrs.append(&mut derived);
        keep_first_of_each_key(&mut attrs);
        opentelemetry::trace::Event::new(name, otlp_time(e.timestamp()), attrs, 0)
    }
}

/// Removes every attribute whose key an earlier one has: OTLP's keys are unique in a span, a
/// span event or a log record, and a backend given two keeps either. The fields come first, so
/// a field named as an attribute the crate adds (`target`, `thread.id`, `busy_ns`, …) keeps its
/// value, and of several error values the first gives the exception attributes.
fn keep_first_of_each_key(attributes: &mut Vec<KeyValue>) {
    let mut seen = std::collections::HashSet::with_capacity(attributes.len());
    attributes.retain(|kv| seen.insert(kv.key.clone()));
}

/// `exception.message` and `exception.stacktrace` (the source chain: Rust errors carry no
/// stack trace), as tracing-opentelemetry writes them.
fn exception_attributes(e: &ErrorValue<'_>, out: &mut Vec<KeyValue>) {
    out.push(KeyValue::new("exception.message", e.message().to_string()));
    out.push(KeyValue::new("exception.stacktrace", chain(e)));
}

/// An error field's `<field>.chain` (the field itself is its message).
fn chain_attribute(key: &'static str, e: &ErrorValue<'_>, out: &mut Vec<KeyValue>) {
    out.push(KeyValue::new(format!("{key}.chain"), chain(e)));
}

fn chain(e: &ErrorValue<'_>) -> Value {
    let sources: Vec<StringValue> = e.sources().map(|t| t.to_string().into()).collect();
    Value::Array(Array::String(sources))
}

/// The latest time OTLP's nanoseconds since the Unix epoch (a `u64`) can hold, 2554-07-21.
const LATEST_OTLP_TIME: std::time::Duration = std::time::Duration::from_nanos(u64::MAX);

/// `t` as OTLP can carry it: a time past [`LATEST_OTLP_TIME`] is that time. (The encoder casts
/// the nanoseconds to a `u64`, which wrapped a time in 2600 round to 2015, and could put a
/// span's end before its start: adversary pass 44.) Times before 1970 are 0 in the encoder.
fn otlp_time(t: SystemTime) -> SystemTime {
    let latest = SystemTime::UNIX_EPOCH + LATEST_OTLP_TIME;
    t.min(latest)
}

fn nanos(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn span_links(links: &[OffloadSpanContext]) -> SpanLinks {
    let mut out = SpanLinks::default();
    out.links = links
        .iter()
        .map(|c| {
            Link::with_context(SpanContext::new(
                OtelTraceId::from_bytes(c.trace_id.0),
                OtelSpanId::from_bytes(c.span_id.0),
                trace_flags(c.sampled),
                false,
                TraceState::default(),
            ))
        })
        .collect();
    out
}

fn trace_flags(sampled: bool) -> TraceFlags {
    if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    }
}

/// `otel.status_code`: `ok`, `error` (no description), anything else unset.
fn status_code(s: &str) -> Status {
    match s.to_ascii_lowercase().as_str() {
        "ok" => Status::Ok,
        "error" => Status::error(""),
        _ => Status::Unset,
    }
}

fn span_events(events: Vec<opentelemetry::trace::Event>, dropped: u32) -> SpanEvents {
    let mut e = SpanEvents::default();
    e.events = events;
    e.dropped_count = dropped;
    e
}

/// `otel.kind`; an unknown kind leaves the kind as it was.
fn span_kind(s: &str) -> Option<SpanKind> {
    match s.to_ascii_lowercase().as_str() {
        "client" => Some(SpanKind::Client),
        "server" => Some(SpanKind::Server),
        "producer" => Some(SpanKind::Producer),
        "consumer" => Some(SpanKind::Consumer),
        "internal" => Some(SpanKind::Internal),
        _ => None,
    }
}

pub(super) fn log_record(
    logger: &opentelemetry_sdk::logs::SdkLogger,
    e: &EventRecord,
) -> SdkLogRecord {
    let mut r = logger.create_log_record();
    r.set_timestamp(otlp_time(e.timestamp()));
    r.set_observed_timestamp(otlp_time(SystemTime::now()));
    r.set_severity_number(severity(e.level()));
    r.set_severity_text(e.level().severity_text());
    r.set_target(e.target().to_owned());
    r.set_event_name(e.name());
    if let Some(m) = e.message() {
        r.set_body(AnyValue::String(m.to_string().into()));
    }
    let mut attributes: Vec<KeyValue> = Vec::with_capacity(e.fields().len() + 8);
    let mut derived = Vec::new();
    for (key, v) in e.fields().iter() {
        match v {
            // As opentelemetry-appender-tracing: an error value is `exception.message` (the
            // first one's, when there are several); its source chain is kept too, as
            // `exception.stacktrace`; and the field itself, with its chain, as span events
            // have them, so that two errors are told apart.
            FieldValue::Error(err) => {
                attributes.push(KeyValue::new(key, value(v)));
                derived.push(KeyValue::new(
                    "exception.message",
                    err.message().to_string(),
                ));
                if err.sources().len() > 0 {
                    derived.push(KeyValue::new("exception.stacktrace", chain(&err)));
                }
                chain_attribute(key, &err, &mut derived);
            }
            _ => attributes.push(KeyValue::new(key, value(v))),
        }
    }
    code_attributes(e.file(), e.line(), e.module_path(), &mut attributes);
    thread_attributes(&e.thread(), &mut attributes);
    attributes.append(&mut derived);
    keep_first_of_each_key(&mut attributes);
    for kv in attributes {
        r.add_attribute(kv.key, any_of(kv.value));
    }
    if let Some(c) = e.span_context() {
        r.set_trace_context(
            OtelTraceId::from_bytes(c.trace_id.0),
            OtelSpanId::from_bytes(c.span_id.0),
            Some(trace_flags(c.sampled)),
        );
    }
    r
}

pub(super) fn drop_marker(
    logger: &opentelemetry_sdk::logs::SdkLogger,
    text: &str,
    at: SystemTime,
) -> SdkLogRecord {
    let mut r = logger.create_log_record();
    r.set_timestamp(otlp_time(at));
    // The OTLP encoder requires an observed time on every record.
    r.set_observed_timestamp(otlp_time(SystemTime::now()));
    r.set_severity_number(Severity::Warn);
    r.set_severity_text("WARN");
    r.set_target("tracing_offload");
    r.set_body(AnyValue::String(text.to_owned().into()));
    r
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use opentelemetry::logs::{AnyValue, LoggerProvider as _, Severity};
    use opentelemetry::trace::{SpanKind, Status};
    use opentelemetry::{InstrumentationScope, Key, Value};
    use opentelemetry_sdk::logs::{SdkLogger, SdkLoggerProvider};
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;
    use crate::record::{EventRecord, Record, SpanRecord};

    /// The records the real layer makes from `f`, taken from a channel sink: `n` of them.
    fn capture(n: usize, f: impl FnOnce()) -> Vec<Record> {
        let (channel, rx) = crate::sink::Channel::new(1024);
        let (layer, guard) = crate::OffloadLayer::builder()
            .sink(channel)
            .build()
            .unwrap();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
        let records = rx.wait_for(n, Duration::from_secs(10));
        drop(guard);
        records
    }

    fn spans(records: &[Record]) -> Vec<&SpanRecord> {
        records
            .iter()
            .filter_map(|r| match r {
                Record::Span(s) => Some(&**s),
                _ => None,
            })
            .collect()
    }

    fn events(records: &[Record]) -> Vec<&EventRecord> {
        records
            .iter()
            .filter_map(|r| match r {
                Record::Event(e) => Some(&**e),
                _ => None,
            })
            .collect()
    }

    fn span_named<'a>(records: &'a [Record], name: &str) -> &'a SpanRecord {
        spans(records)
            .into_iter()
            .find(|s| s.name() == name)
            .unwrap_or_else(|| panic!("no span {name}"))
    }

    fn scope() -> InstrumentationScope {
        InstrumentationScope::builder("test").build()
    }

    fn logger() -> (SdkLoggerProvider, SdkLogger) {
        let provider = SdkLoggerProvider::builder().build();
        let logger = provider.logger("test");
        (provider, logger)
    }

    fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
        attrs
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    fn log_attr<'a>(r: &'a SdkLogRecord, key: &str) -> Option<&'a AnyValue> {
        r.attributes_iter()
            .find(|(k, _)| k == &Key::from(key.to_owned()))
            .map(|(_, v)| v)
    }

    #[test]
    fn a_span_keeps_its_ids_times_and_typed_attributes() {
        let records = capture(2, || {
            let root = tracing::info_span!(
                "checkout",
                user = "ada",
                items = 3i64,
                big = u64::MAX,
                ratio = 0.5,
                paid = true
            );
            root.in_scope(|| tracing::info_span!("child").in_scope(|| {}));
        });
        let root = span_named(&records, "checkout");
        let child = span_named(&records, "child");
        let d = span_data(root, &scope());
        assert_eq!(d.name, "checkout");
        assert_eq!(
            d.span_context.trace_id(),
            OtelTraceId::from_bytes(root.trace_id().0)
        );
        assert_eq!(
            d.span_context.span_id(),
            OtelSpanId::from_bytes(root.span_id().0)
        );
        assert_eq!(d.parent_span_id, OtelSpanId::INVALID);
        assert!(d.span_context.is_sampled());
        assert_eq!((d.start_time, d.end_time), (root.start(), root.end()));
        assert_eq!(d.span_kind, SpanKind::Internal);
        assert_eq!(d.status, Status::Unset);
        assert_eq!(attr(&d.attributes, "user"), Some(&Value::from("ada")));
        assert_eq!(attr(&d.attributes, "items"), Some(&Value::I64(3)));
        // Beyond i64: the exact digits as text, never a wrapped number.
        assert_eq!(
            attr(&d.attributes, "big"),
            Some(&Value::from(u64::MAX.to_string()))
        );
        assert_eq!(attr(&d.attributes, "ratio"), Some(&Value::F64(0.5)));
        assert_eq!(attr(&d.attributes, "paid"), Some(&Value::Bool(true)));
        assert!(attr(&d.attributes, "thread.id").is_some());
        assert!(attr(&d.attributes, "code.file.path").is_some());
        assert!(attr(&d.attributes, "code.line.number").is_some());
        let c = span_data(child, &scope());
        assert_eq!(c.parent_span_id, OtelSpanId::from_bytes(root.span_id().0));
        assert_eq!(c.span_context.trace_id(), d.span_context.trace_id());
    }

    #[test]
    fn otel_fields_name_kind_and_status_are_conventions_not_attributes() {
        let records = capture(2, || {
            tracing::info_span!(
                "handler",
                otel.name = "GET /cart",
                otel.kind = "Server",
                otel.status_code = "ERROR",
                otel.status_message = "cart locked"
            )
            .in_scope(|| {});
            tracing::info_span!("fine", otel.status_code = "ok").in_scope(|| {});
        });
        let d = span_data(span_named(&records, "handler"), &scope());
        assert_eq!(d.name, "GET /cart");
        assert_eq!(d.span_kind, SpanKind::Server);
        assert_eq!(d.status, Status::error("cart locked"));
        assert!(d
            .attributes
            .iter()
            .all(|kv| !kv.key.as_str().starts_with("otel.")));
        assert_eq!(
            span_data(span_named(&records, "fine"), &scope()).status,
            Status::Ok
        );
    }

    #[test]
    fn an_error_event_marks_the_span_and_an_error_field_alone_is_an_exception() {
        let records = capture(3, || {
            tracing::info_span!("pay").in_scope(|| {
                tracing::error!("payment declined");
                tracing::warn!(error = "timeout");
            });
        });
        let d = span_data(span_named(&records, "pay"), &scope());
        // As tracing-opentelemetry: the ERROR event makes the status an error, and the
        // `error` field's text (an event without a message) becomes its description.
        assert_eq!(d.status, Status::error("timeout"));
        let events = &d.events.events;
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].name, "payment declined");
        assert_eq!(
            attr(&events[0].attributes, "level"),
            Some(&Value::from("ERROR"))
        );
        assert!(attr(&events[0].attributes, "code.line.number").is_some());
        assert_eq!(events[1].name, "exception");
        assert_eq!(
            attr(&events[1].attributes, "exception.message"),
            Some(&Value::from("timeout"))
        );
        assert!(attr(&events[1].attributes, "error").is_none());
    }

    #[test]
    fn an_error_event_alone_sets_an_error_status_without_description() {
        let records = capture(2, || {
            tracing::info_span!("pay").in_scope(|| tracing::error!("payment declined"));
        });
        let d = span_data(span_named(&records, "pay"), &scope());
        assert_eq!(d.status, Status::error(""));
    }

    #[test]
    fn an_event_without_a_message_is_named_after_its_callsite() {
        let records = capture(2, || {
            tracing::info_span!("quiet").in_scope(|| tracing::info!(n = 1i64));
        });
        let d = span_data(span_named(&records, "quiet"), &scope());
        let name = &d.events.events[0].name;
        assert!(
            name.starts_with("event src/sink/otlp/convert.rs:"),
            "{name}"
        );
    }

    /// An error with a source chain.
    #[derive(Debug)]
    struct Failed(std::io::Error);

    impl std::fmt::Display for Failed {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("payment failed")
        }
    }

    impl std::error::Error for Failed {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    fn failed() -> Failed {
        Failed(std::io::Error::other("connection reset"))
    }

    fn strings(v: &[&str]) -> Value {
        Value::Array(Array::String(
            v.iter().map(|s| StringValue::from(s.to_string())).collect(),
        ))
    }

    #[test]
    fn an_error_value_keeps_its_chain_on_the_event_and_the_span() {
        let records = capture(2, || {
            tracing::info_span!("charge").in_scope(|| {
                let e = failed();
                tracing::warn!(cause = &e as &dyn std::error::Error, "charge");
            });
        });
        let d = span_data(span_named(&records, "charge"), &scope());
        let chain = strings(&["connection reset"]);
        let e = &d.events.events[0];
        assert_eq!(e.name, "charge");
        assert_eq!(
            attr(&e.attributes, "exception.message"),
            Some(&Value::from("payment failed"))
        );
        assert_eq!(attr(&e.attributes, "exception.stacktrace"), Some(&chain));
        assert_eq!(
            attr(&e.attributes, "cause"),
            Some(&Value::from("payment failed"))
        );
        assert_eq!(attr(&e.attributes, "cause.chain"), Some(&chain));
        assert_eq!(
            attr(&d.attributes, "exception.message"),
            Some(&Value::from("payment failed"))
        );
        assert_eq!(attr(&d.attributes, "exception.stacktrace"), Some(&chain));
        assert_eq!(d.status, Status::Unset, "a WARN event leaves the status");
    }

    #[test]
    fn status_description_and_its_second_name_set_an_error_status() {
        let records = capture(2, || {
            tracing::info_span!("a", otel.status_description = "cart locked").in_scope(|| {});
            tracing::info_span!("b", otel.status_message = "cart locked").in_scope(|| {});
        });
        for name in ["a", "b"] {
            let d = span_data(span_named(&records, name), &scope());
            assert_eq!(d.status, Status::error("cart locked"), "{name}");
        }
    }

    #[test]
    fn links_timings_and_target_are_carried() {
        let records = capture(2, || {
            let cause = tracing::info_span!("cause");
            let effect = tracing::info_span!(target: "shop::cart", "effect");
            effect.follows_from(&cause);
            effect.in_scope(|| {});
        });
        let cause = span_named(&records, "cause");
        let d = span_data(span_named(&records, "effect"), &scope());
        let link = &d.links.links[0].span_context;
        assert_eq!(link.trace_id(), OtelTraceId::from_bytes(cause.trace_id().0));
        assert_eq!(link.span_id(), OtelSpanId::from_bytes(cause.span_id().0));
        assert!(attr(&d.attributes, "busy_ns").is_some());
        assert!(attr(&d.attributes, "idle_ns").is_some());
        assert_eq!(
            attr(&d.attributes, "target"),
            Some(&Value::from("shop::cart"))
        );
    }

    #[test]
    fn an_event_becomes_a_log_record_with_severity_body_and_trace_context() {
        let (_provider, logger) = logger();
        let records = capture(2, || {
            tracing::info_span!("stock").in_scope(|| {
                tracing::warn!(target: "shop::cart", sku = "A-1", left = 2i64, "low stock");
            });
        });
        let e = events(&records)[0];
        let span = span_named(&records, "stock");
        let r = log_record(&logger, e);
        assert_eq!(r.severity_number(), Some(Severity::Warn));
        assert_eq!(r.severity_text(), Some("WARN"));
        assert_eq!(r.body(), Some(&AnyValue::String("low stock".into())));
        assert_eq!(r.timestamp(), Some(e.timestamp()));
        assert!(r.observed_timestamp().is_some());
        assert_eq!(r.target().map(|t| t.as_ref()), Some("shop::cart"));
        assert!(r
            .event_name()
            .is_some_and(|n| n.starts_with("event src/sink/otlp/convert.rs:")));
        assert_eq!(log_attr(&r, "sku"), Some(&AnyValue::String("A-1".into())));
        assert_eq!(log_attr(&r, "left"), Some(&AnyValue::Int(2)));
        assert!(log_attr(&r, "thread.id").is_some());
        let ctx = r.trace_context().expect("the enclosing span's ids");
        assert_eq!(ctx.trace_id, OtelTraceId::from_bytes(span.trace_id().0));
        assert_eq!(ctx.span_id, OtelSpanId::from_bytes(span.span_id().0));
    }

    #[test]
    fn an_error_value_in_a_log_record_is_an_exception_with_its_chain() {
        let (_provider, logger) = logger();
        let records = capture(1, || {
            let e = failed();
            tracing::error!(cause = &e as &dyn std::error::Error, "charge");
        });
        let r = log_record(&logger, events(&records)[0]);
        assert_eq!(
            log_attr(&r, "exception.message"),
            Some(&AnyValue::String("payment failed".into()))
        );
        assert_eq!(
            log_attr(&r, "exception.stacktrace"),
            Some(&AnyValue::ListAny(Box::new(vec![AnyValue::String(
                "connection reset".into()
            )])))
        );
    }

    #[test]
    fn critical_is_fatal_severity() {
        assert_eq!(severity(LogLevel::Critical), Severity::Fatal);
        assert_eq!(severity(LogLevel::Trace), Severity::Trace);
    }

    /// OTLP carries nanoseconds since 1970 in a `u64`: the encoder cast a later time, which
    /// wrapped 2600 round to 2015 (adversary pass 44). Past the latest it holds, a time is the
    /// latest; before it, unchanged.
    #[test]
    fn a_time_past_what_otlp_holds_is_the_latest_it_holds() {
        let (_provider, logger) = logger();
        let year_2600 = SystemTime::UNIX_EPOCH + Duration::from_secs(19_725_379_200);
        let latest = SystemTime::UNIX_EPOCH + LATEST_OTLP_TIME;
        let r = drop_marker(&logger, "3 records dropped", year_2600);
        assert_eq!(r.timestamp(), Some(latest));
        let now = SystemTime::now();
        assert_eq!(otlp_time(now), now);
        assert_eq!(otlp_time(latest), latest);
    }

    #[test]
    fn a_drop_marker_is_a_warn_record_with_both_times() {
        let (_provider, logger) = logger();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(5);
        let r = drop_marker(&logger, "3 records dropped", at);
        assert_eq!(r.severity_number(), Some(Severity::Warn));
        assert_eq!(r.timestamp(), Some(at));
        assert!(r.observed_timestamp().is_some(), "the encoder requires it");
        assert_eq!(
            r.body(),
            Some(&AnyValue::String("3 records dropped".into()))
        );
    }
}
