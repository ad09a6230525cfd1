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
                if slot.is_none() {
                    unreadable_traceparent(&value);
                }
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
                if slot.is_none() {
                    unreadable_traceparent(value);
                }
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
                if self.0.is_none() {
                    unreadable_traceparent(&value);
                }
            }
        }
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            if field.name() == TRACEPARENT_FIELD {
                self.0 = traceparent_from_debug(value);
                if self.0.is_none() {
                    unreadable_traceparent(value);
                }
            }
        }
    }
    let mut probe = Probe(None);
    attrs.record(&mut probe);
    probe.0
}

/// A `traceparent` field whose value is not a W3C `traceparent` is said once per process (on
/// stderr, by the notice thread): the span starts a new trace, which nothing else shows
/// (adversary pass 62: `traceparent = ?headers.get(..)`, an `Option`, split the caller's trace
/// with nothing said). `set_parent_traceparent` returns an error for such a value instead.
/// An empty value (no header) is no parent, not an unreadable one.
#[cold]
fn unreadable_traceparent(value: &dyn fmt::Debug) {
    static SAID: std::sync::Once = std::sync::Once::new();
    if SAID.is_completed() {
        return;
    }
    let mut shown = StackText::default();
    let _ = write!(shown, "{value:?}");
    let text = shown.as_str().unwrap_or("?");
    if text
        .trim_matches(|c: char| c.is_whitespace() || c == '"')
        .is_empty()
    {
        return;
    }
    SAID.call_once(|| {
        let cut = if shown.overflowed { "…" } else { "" };
        crate::notice::post(format!(
            "a `traceparent` field's value is not a W3C traceparent ({}{cut}): the span starts \
             a new trace instead of joining the caller's. Give the header's text (a `&str`, or \
             `%value`), not an `Option`. Said once; later cases are not reported.",
            text
        ));
    });
}

/// A `traceparent` given as a `Debug` or `Display` value (`%header`, `?header`), read without
/// allocating: formatted into a stack buffer, quotes of `?"…"` removed. A value longer than
/// the buffer is read as a `&str` is: a later version may carry more after its first 55
/// characters, which are all that is read of it (adversary pass 62: such a value given with
/// `%` started a new trace, as a `&str` it joined the caller's).
fn traceparent_from_debug(value: &dyn fmt::Debug) -> Option<RemoteParent> {
    let mut buf = StackText::default();
    let whole = write!(buf, "{value:?}").is_ok();
    let text = buf.as_str()?;
    if whole {
        // All of it, or all but blanks and quotes (trimmed by the parser anyway).
        return parse_traceparent(text.trim_matches('"'));
    }
    if !buf.overflowed {
        return None; // a failing `Debug`
    }
    // Longer than the buffer: valid only as a later version, whose 56th character is a `-`
    // (an ASCII byte: 55 is a char boundary).
    let start = text.trim_start().trim_start_matches('"');
    let later = start.len() > 55 && start.as_bytes()[55] == b'-' && !start.starts_with("00");
    later.then(|| parse_traceparent(&start[..55])).flatten()
}

/// A small text buffer on the stack; writing past its end is an error, unless all that does
/// not fit is blanks and quotes.
pub(super) struct StackText {
    buf: [u8; 128],
    len: usize,
    /// Something did not fit.
    overflowed: bool,
}

impl Default for StackText {
    fn default() -> Self {
        StackText {
            buf: [0; 128],
            len: 0,
            overflowed: false,
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
    /// returns an error, unless what did not fit is only blanks and quotes.
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len;
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n == s.len() {
            return Ok(());
        }
        self.overflowed = true;
        if s[n..].chars().all(|c| c.is_whitespace() || c == '"') {
            Ok(())
        } else {
            Err(fmt::Error)
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

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// Given as `Debug` or `Display`, a value reads as the same `&str` does, however long.
    #[test]
    fn a_long_value_reads_as_its_text_does() {
        let later = format!("01{}-{}", &OK[2..], "x".repeat(300));
        let padded = format!("{OK}{}", " ".repeat(300));
        let version_00_longer = format!("{OK}-{}", "x".repeat(300));
        for text in [OK.to_owned(), later, padded, version_00_longer] {
            let as_str = parse_traceparent(&text);
            let shown = traceparent_from_debug(&format_args!("{text}"));
            let debugged = traceparent_from_debug(&text);
            assert_eq!((shown, debugged), (as_str, as_str), "{}", &text[..60]);
        }
        assert!(parse_traceparent(&format!("01{}-x", &OK[2..])).is_some());
    }
}
