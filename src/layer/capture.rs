//! Field capture: a `tracing` visitor that writes values into a record's [`Fields`], capped at
//! the configured length, with the message, the `log` bridge's `log.*` fields and the
//! `traceparent` field set aside.

use std::fmt::{self, Write as _};

use tracing_core::field::{Field, Visit};

use crate::record::fields::Capped;
use crate::record::{FieldScalar, Fields, LogSource, TextRange};
use crate::traceparent::{parse_traceparent, RemoteParent, TRACEPARENT_FIELD};

/// Whether `name` is one of the text fields of a `log` record that are not kept as fields.
fn is_log_text(name: &str) -> bool {
    matches!(name, "log.target" | "log.module_path" | "log.file")
}

/// Captures field values into `fields`.
pub(super) struct Capture<'a> {
    pub(super) fields: &'a mut Fields,
    /// Where the `message` field goes (events); `None`: it is a field like the others.
    pub(super) message: Option<&'a mut Option<TextRange>>,
    /// Where the `log.*` fields go (events from the `log` crate).
    pub(super) log: Option<&'a mut LogSource>,
    /// A `traceparent` field is read as a remote parent and not kept as a field (spans).
    pub(super) traceparent: Option<&'a mut Option<RemoteParent>>,
    /// The cap on each text value, in bytes.
    pub(super) cap: usize,
    /// A field recorded again replaces the earlier value.
    pub(super) replace: bool,
    /// Values cut at the cap.
    pub(super) truncated: u64,
}

impl<'a> Capture<'a> {
    pub(super) fn new(fields: &'a mut Fields, cap: usize, replace: bool) -> Self {
        Capture {
            fields,
            message: None,
            log: None,
            traceparent: None,
            cap,
            replace,
            truncated: 0,
        }
    }

    #[inline(always)]
    fn scalar(&mut self, field: &Field, value: FieldScalar) {
        if self.log.is_some() && self.log_line(field, value) {
            return;
        }
        self.fields.put(field.name(), value, self.replace);
    }

    /// Takes a `log` record's `log.line` field; returns whether `field` was it. Out of line:
    /// most events do not come from `log`, and the visitor's methods stay small without it.
    #[cold]
    #[inline(never)]
    fn log_line(&mut self, field: &Field, value: FieldScalar) -> bool {
        let Some(log) = self.log.as_deref_mut() else {
            return false;
        };
        if field.name() != "log.line" {
            return false;
        }
        log.line = match value {
            FieldScalar::U64(line) => u32::try_from(line).ok(),
            FieldScalar::I64(line) => u32::try_from(line).ok(),
            _ => None,
        };
        true
    }

    /// Captures text written by `write`.
    fn text(&mut self, field: &Field, write: impl FnOnce(&mut Capped<'_>)) {
        let name = field.name();
        if name == "message" {
            if let Some(message) = self.message.as_deref_mut() {
                let r = self.fields.write_text(self.cap, write);
                self.truncated += u64::from(r.is_truncated());
                *message = Some(r);
                return;
            }
        }
        if self.log.is_some() && is_log_text(name) {
            self.log_text(name, write);
            return;
        }
        if self.fields.put_text(name, self.cap, self.replace, write) {
            self.truncated += 1;
        }
    }

    /// Captures one of a `log` record's text fields ([`is_log_text`]). Out of line, as
    /// [`log_line`](Self::log_line) is.
    #[cold]
    #[inline(never)]
    fn log_text(&mut self, name: &str, write: impl FnOnce(&mut Capped<'_>)) {
        let Some(log) = self.log.as_deref_mut() else {
            return;
        };
        let slot = match name {
            "log.target" => &mut log.target,
            "log.module_path" => log.module_path.insert(TextRange::default()),
            _ => log.file.insert(TextRange::default()),
        };
        // Names, not values: `max_field_len` does not apply (a target cut short is another
        // target, which the whitelist and the critical targets would match); a bound of its
        // own does, whatever `max_field_len` is.
        let range = self.fields.write_text(MAX_LOG_NAME_LEN, write);
        self.truncated += u64::from(range.is_truncated());
        *slot = range;
    }

    /// Captures a string field: [`text`](Self::text) for one string, copied directly.
    fn str(&mut self, field: &Field, value: &str) {
        let name = field.name();
        if name != "message" && self.log.is_none() {
            if self.fields.put_str(name, self.cap, self.replace, value) {
                self.truncated += 1;
            }
            return;
        }
        self.text(field, |w| {
            let _ = w.write_str(value);
        });
    }

    /// Whether `field` is the `traceparent` being read as a remote parent.
    fn is_traceparent(&self, field: &Field) -> bool {
        self.traceparent.is_some() && field.name() == TRACEPARENT_FIELD
    }
}

impl Visit for Capture<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.scalar(field, FieldScalar::F64(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.scalar(field, FieldScalar::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.scalar(field, FieldScalar::U64(value));
    }
    fn record_i128(&mut self, field: &Field, value: i128) {
        self.scalar(field, FieldScalar::I128(value));
    }
    fn record_u128(&mut self, field: &Field, value: u128) {
        self.scalar(field, FieldScalar::U128(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.scalar(field, FieldScalar::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.is_traceparent(field) {
            if let Some(slot) = self.traceparent.as_deref_mut() {
                *slot = parse_traceparent(value);
            }
            return;
        }
        self.str(field, value);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self
            .fields
            .put_error(field.name(), self.cap, self.replace, value)
        {
            self.truncated += 1;
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.is_traceparent(field) {
            if let Some(slot) = self.traceparent.as_deref_mut() {
                *slot = traceparent_from_debug(value);
            }
            return;
        }
        self.text(field, |w| {
            let _ = write!(w, "{value:?}");
        });
    }
}

/// The longest `log` target, module path or file name kept (longer ones are cut and counted
/// as truncated): a bound on names that come from the program, far above any real one.
const MAX_LOG_NAME_LEN: usize = 1024;

/// The remote parent in a new span's `traceparent` field, when it is valid.
pub(super) fn remote_parent(attrs: &tracing_core::span::Attributes<'_>) -> Option<RemoteParent> {
    struct Probe(Option<RemoteParent>);
    impl Visit for Probe {
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == TRACEPARENT_FIELD {
                self.0 = parse_traceparent(value);
            }
        }
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            if field.name() == TRACEPARENT_FIELD {
                self.0 = traceparent_from_debug(value);
            }
        }
    }
    let mut probe = Probe(None);
    attrs.record(&mut probe);
    probe.0
}

/// A `traceparent` given as a `Debug` or `Display` value (`%header`, `?header`), read without
/// allocating: formatted into a stack buffer, quotes of `?"…"` removed.
fn traceparent_from_debug(value: &dyn fmt::Debug) -> Option<RemoteParent> {
    let mut buf = StackText::default();
    // Too long for a valid `traceparent` (or a failing `Debug`): ignored.
    write!(buf, "{value:?}").ok()?;
    parse_traceparent(buf.as_str()?.trim_matches('"'))
}

/// A small text buffer on the stack; writing past its end is an error.
pub(super) struct StackText {
    buf: [u8; 128],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        StackText {
            buf: [0; 128],
            len: 0,
        }
    }
}

impl StackText {
    pub(super) fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.buf[..self.len]).ok()
    }
}

impl fmt::Write for StackText {
    /// Writes `s`; past the end of the buffer, keeps what fits (cut on a char boundary) and
    /// returns an error.
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len;
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n < s.len() {
            Err(fmt::Error)
        } else {
            Ok(())
        }
    }
}

/// The `log.target` field of an event from the `log` crate, copied to the stack (targets longer
/// than the buffer are cut, which only affects prefix matching of very long targets).
pub(super) fn log_target(event: &tracing_core::Event<'_>) -> Option<LogTarget> {
    struct Probe(Option<LogTarget>);
    impl Visit for Probe {
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "log.target" {
                let mut t = LogTarget::default();
                let _ = t.0.write_str(value);
                self.0 = Some(t);
            }
        }
        fn record_debug(&mut self, _: &Field, _: &dyn fmt::Debug) {}
    }
    let mut probe = Probe(None);
    event.record(&mut probe);
    probe.0
}

/// A `log` record's target, on the stack.
#[derive(Default)]
pub(super) struct LogTarget(StackText);

impl LogTarget {
    pub(super) fn as_str(&self) -> &str {
        self.0.as_str().unwrap_or("")
    }
}

/// Whether an event's `critical` field is `true`.
pub(super) fn is_marked_critical(event: &tracing_core::Event<'_>) -> bool {
    struct Probe(bool);
    impl Visit for Probe {
        fn record_bool(&mut self, field: &Field, value: bool) {
            if field.name() == "critical" {
                self.0 = value;
            }
        }
        fn record_debug(&mut self, _: &Field, _: &dyn fmt::Debug) {}
    }
    let mut probe = Probe(false);
    event.record(&mut probe);
    probe.0
}
