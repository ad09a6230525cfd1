//! [`Fields`]: a record's captured field values, with all their text in one buffer.
//!
//! A record is recycled through a pool once every sink is done with it, and its buffers keep
//! their capacity: capturing the next record into it allocates nothing as long as its text fits
//! in what the buffer already holds. Values are read through [`Fields::iter`] and
//! [`Fields::get`] as [`FieldValue`]s borrowing from the record.

use std::fmt::{self, Write as _};
use std::num::NonZeroU32;

use smallvec::SmallVec;

/// Fields stored inline in the record before the list spills to its own buffer (which is then
/// kept across reuses too).
const INLINE_FIELDS: usize = 6;

/// A spilled field list keeps up to this capacity when its record is recycled: `tracing`'s
/// callsites hold at most 32 fields, so the widest of them grows its record's list once, not at
/// each reuse (the list grows 8, 16, 32: a cut back below 32 was three allocations per record).
/// Only the `log` bridge's key-values can make more.
const RETAINED_FIELDS: usize = 32;

/// A record's text buffer is cut back to this capacity when the record is recycled, so that one
/// huge value does not pin its memory in the pool for ever.
pub(crate) const RETAINED_TEXT_BYTES: usize = 4 * 1024;

/// The fields of an event or a span, in recording order: `&'static` names and their values.
///
/// ```
/// use tracing_offload::{FieldValue, Fields};
/// let fields = Fields::default();
/// assert!(fields.is_empty());
/// assert_eq!(fields.get("user"), None::<FieldValue<'_>>);
/// ```
#[derive(Clone, Default)]
pub struct Fields {
    entries: SmallVec<[Entry; INLINE_FIELDS]>,
    /// The bytes of every text value (and error source), back to back.
    text: String,
    /// The sources of error values (`Value::Error` refers to a run of them).
    sources: SmallVec<[TextRange; 2]>,
    /// Bytes of `text` no longer referenced (values replaced by `Span::record`).
    garbage: usize,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    name: &'static str,
    value: Value,
}

/// A value as stored: numbers inline, text as a range of the record's buffer. 128-bit integers
/// are kept as two halves, so that the value is 24 bytes aligned to 8 rather than 32 aligned to
/// 16 (records are smaller, and the common fields are what counts).
#[derive(Clone, Copy, Debug)]
enum Value {
    I64(i64),
    U64(u64),
    I128([u64; 2]),
    U128([u64; 2]),
    F64(f64),
    Bool(bool),
    Str(TextRange),
    Error {
        message: TextRange,
        first_source: u32,
        sources: u32,
    },
}

/// Where a text value sits in the buffer, and the length of the original when it was cut
/// (saturating at 4 GiB).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TextRange {
    start: u32,
    len: u32,
    truncated_from: Option<NonZeroU32>,
}

impl TextRange {
    pub(crate) fn is_truncated(&self) -> bool {
        self.truncated_from.is_some()
    }
}

/// A field value, borrowed from its record.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum FieldValue<'a> {
    /// A signed integer.
    I64(i64),
    /// An unsigned integer.
    U64(u64),
    /// A 128-bit signed integer.
    I128(i128),
    /// A 128-bit unsigned integer.
    U128(u128),
    /// A float.
    F64(f64),
    /// A bool.
    Bool(bool),
    /// A string, or a `Debug` / `Display` value rendered as text.
    Str(Text<'a>),
    /// An error (a value recorded as `&dyn std::error::Error`): its message and the messages of
    /// its sources, outermost first.
    Error(ErrorValue<'a>),
}

/// Captured text, capped at [`Builder::max_field_len`](crate::Builder::max_field_len) bytes,
/// with a record of whether it was cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Text<'a> {
    /// The captured text, at most the configured cap (cut on a char boundary).
    pub text: &'a str,
    /// The length in bytes of the original text when it was longer than the cap; `None` when
    /// the text is whole.
    pub truncated_from: Option<usize>,
}

/// An error value: its message and its source chain.
#[derive(Clone, Copy)]
pub struct ErrorValue<'a> {
    fields: &'a Fields,
    message: TextRange,
    first_source: u32,
    sources: u32,
}

// === impl Text ===

impl Text<'_> {
    /// Whether the text was cut.
    pub fn is_truncated(&self) -> bool {
        self.truncated_from.is_some()
    }
}

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text)?;
        if let Some(len) = self.truncated_from {
            write!(f, "…[truncated from {len} bytes]")?;
        }
        Ok(())
    }
}

// === impl ErrorValue ===

impl<'a> ErrorValue<'a> {
    /// The error's own message (its `Display`).
    pub fn message(&self) -> Text<'a> {
        self.fields.text_of(self.message)
    }

    /// The messages of the error's sources (`source()`, then its source, …), outermost first.
    pub fn sources(&self) -> impl ExactSizeIterator<Item = Text<'a>> + 'a {
        let fields = self.fields;
        let start = self.first_source as usize;
        fields.sources[start..start + self.sources as usize]
            .iter()
            .map(move |r| fields.text_of(*r))
    }
}

impl fmt::Debug for ErrorValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorValue")
            .field("message", &self.message())
            .field("sources", &self.sources().collect::<Vec<_>>())
            .finish()
    }
}

impl PartialEq for ErrorValue<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.message() == other.message() && self.sources().eq(other.sources())
    }
}

impl fmt::Display for ErrorValue<'_> {
    /// The message, then each source after `": "`, as error reporters print a chain.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message())?;
        for source in self.sources() {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

// === impl FieldValue ===

impl fmt::Display for FieldValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldValue::I64(v) => write!(f, "{v}"),
            FieldValue::U64(v) => write!(f, "{v}"),
            FieldValue::I128(v) => write!(f, "{v}"),
            FieldValue::U128(v) => write!(f, "{v}"),
            FieldValue::F64(v) => write!(f, "{v}"),
            FieldValue::Bool(v) => write!(f, "{v}"),
            FieldValue::Str(t) => write!(f, "{t}"),
            FieldValue::Error(e) => write!(f, "{e}"),
        }
    }
}

// === impl Fields ===

impl Fields {
    /// The number of fields.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The fields in recording order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&'static str, FieldValue<'_>)> + '_ {
        self.entries
            .iter()
            .map(|e| (e.name, self.value_of(e.value)))
    }

    /// The value of the field named `name` (the last one, if the name was recorded twice).
    pub fn get(&self, name: &str) -> Option<FieldValue<'_>> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.name == name)
            .map(|e| self.value_of(e.value))
    }

    /// Always inlined: the JSON sink reads every field through it, and a call per field cost
    /// more than the match (callgrind).
    #[inline(always)]
    fn value_of(&self, v: Value) -> FieldValue<'_> {
        match v {
            Value::I64(v) => FieldValue::I64(v),
            Value::U64(v) => FieldValue::U64(v),
            Value::I128(v) => FieldValue::I128(join(v) as i128),
            Value::U128(v) => FieldValue::U128(join(v)),
            Value::F64(v) => FieldValue::F64(v),
            Value::Bool(v) => FieldValue::Bool(v),
            Value::Str(r) => FieldValue::Str(self.text_of(r)),
            Value::Error {
                message,
                first_source,
                sources,
            } => FieldValue::Error(ErrorValue {
                fields: self,
                message,
                first_source,
                sources,
            }),
        }
    }

    pub(crate) fn text_of(&self, r: TextRange) -> Text<'_> {
        let start = r.start as usize;
        Text {
            text: self.text.get(start..start + r.len as usize).unwrap_or(""),
            truncated_from: r.truncated_from.map(|n| n.get() as usize),
        }
    }

    // --- capture (crate-internal) ---

    /// The text buffer's bytes in use (for prefetching a recycled record's buffer).
    pub(crate) fn text_buffer(&self) -> &[u8] {
        self.text.as_bytes()
    }

    /// Empties the fields, keeping the buffers.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.sources.clear();
        self.text.clear();
        self.garbage = 0;
    }

    /// Cuts oversized buffers back (emptying the fields when it must), so that one huge value
    /// does not pin its memory in the pool for ever.
    pub(crate) fn bound(&mut self) {
        if self.text.capacity() > RETAINED_TEXT_BYTES {
            self.text.clear();
            self.text.shrink_to(RETAINED_TEXT_BYTES);
            self.entries.clear();
            self.sources.clear();
        }
        if self.entries.capacity() > RETAINED_FIELDS {
            self.entries.clear();
            self.entries.shrink_to_fit();
        }
    }

    /// Sets a non-text value. `replace`: a field of that name already recorded gets the new
    /// value (spans' `record`, and callsites that name a field twice: the last value wins).
    #[inline(always)]
    pub(crate) fn put(&mut self, name: &'static str, value: FieldScalar, replace: bool) {
        self.put_value(name, replace, || value.into());
    }

    // Inlined into each capture, where the kind of value is known, and the value built in
    // each branch, so that it is stored where it goes. Otherwise it is built on the stack and
    // copied from there with wider loads than the stores that built it, and the copy waits for
    // those stores (no store forwarding): about 4 ns per field.
    #[inline(always)]
    fn put_value(&mut self, name: &'static str, replace: bool, value: impl Fn() -> Value) {
        if replace {
            self.replace_value(name, value());
        } else {
            self.entries.push(Entry {
                name,
                value: value(),
            });
        }
    }

    /// [`put_value`](Self::put_value) replacing an earlier value of the same name.
    #[inline(never)]
    fn replace_value(&mut self, name: &'static str, value: Value) {
        if let Some(i) = self.entries.iter().position(|e| e.name == name) {
            let old = std::mem::replace(&mut self.entries[i].value, value);
            self.forget(old);
        } else {
            self.entries.push(Entry { name, value });
        }
    }

    /// Counts the text an overwritten value no longer uses (see
    /// [`compact_if_mostly_garbage`](Self::compact_if_mostly_garbage)).
    fn forget(&mut self, old: Value) {
        match old {
            Value::Str(r) => self.garbage += r.len as usize,
            Value::Error {
                message,
                first_source,
                sources,
            } => {
                let start = first_source as usize;
                // Each dropped source counts at least 1, so that empty ones are reclaimed too.
                self.garbage += 1
                    + message.len as usize
                    + sources as usize
                    + self.sources[start..start + sources as usize]
                        .iter()
                        .map(|r| r.len as usize)
                        .sum::<usize>();
            }
            _ => {}
        }
    }

    /// Compacts the buffer when most of it is garbage, so that a span that records one field
    /// many times stays bounded. Only for fields whose text no range outside them refers to:
    /// compaction moves the ranges of the fields, and an event's message and `log` source are
    /// ranges of its buffer kept outside (an event's garbage is bounded anyway: each of its
    /// fields is replaced at most once per field of its callsite).
    fn compact_if_mostly_garbage(&mut self) {
        if self.garbage > 1024 && self.garbage * 2 > self.text.len() {
            self.compact();
        }
    }

    /// Moves what is still referenced to the front of the buffer (and of the list of error
    /// sources), in place: the buffers keep their capacity, so that a span recording a field in
    /// a loop does not allocate a new buffer at each compaction and grow it again after.
    fn compact(&mut self) {
        // The error sources first: each live error's run, in the order they lie.
        let mut runs: SmallVec<[(u32, usize); 8]> = SmallVec::new();
        for (i, e) in self.entries.iter().enumerate() {
            if let Value::Error { first_source, .. } = e.value {
                runs.push((first_source, i));
            }
        }
        runs.sort_unstable();
        let mut kept_sources = 0;
        for &(first, i) in &runs {
            if let Value::Error {
                first_source,
                sources,
                ..
            } = &mut self.entries[i].value
            {
                let start = (first as usize).min(self.sources.len());
                let end = (start + *sources as usize).min(self.sources.len());
                self.sources.copy_within(start..end, kept_sources);
                *first_source = kept_sources as u32;
                kept_sources += end - start;
            }
        }
        self.sources.truncate(kept_sources);
        // Then the text: every range still referenced, in the order they lie (they do not
        // overlap: each was written after the others), moved down.
        #[derive(Clone, Copy)]
        enum Holder {
            Entry(usize),
            Source(usize),
        }
        let mut ranges: SmallVec<[(u32, Holder); 40]> = SmallVec::new();
        for (i, e) in self.entries.iter().enumerate() {
            match e.value {
                Value::Str(r) | Value::Error { message: r, .. } => {
                    ranges.push((r.start, Holder::Entry(i)))
                }
                _ => {}
            }
        }
        for (i, r) in self.sources.iter().enumerate() {
            ranges.push((r.start, Holder::Source(i)));
        }
        ranges.sort_unstable_by_key(|&(start, _)| start);
        let mut bytes = std::mem::take(&mut self.text).into_bytes();
        let mut kept = 0;
        for &(_, holder) in &ranges {
            let r = match holder {
                Holder::Entry(i) => match &mut self.entries[i].value {
                    Value::Str(r) | Value::Error { message: r, .. } => r,
                    _ => continue,
                },
                Holder::Source(i) => &mut self.sources[i],
            };
            let start = (r.start as usize).min(bytes.len());
            let end = (start + r.len as usize).min(bytes.len());
            bytes.copy_within(start..end, kept);
            r.start = kept as u32;
            kept += end - start;
        }
        bytes.truncate(kept);
        // Whole ranges of valid text, each cut at character boundaries when written: valid.
        // (Were it not, the fields would read as empty, never as a panic.)
        self.text = String::from_utf8(bytes).unwrap_or_else(|e| {
            let mut bytes = e.into_bytes();
            bytes.clear();
            String::from_utf8(bytes).unwrap_or_default()
        });
        self.garbage = 0;
    }

    /// Captures text written by `write` (capped at `cap` bytes) as the field `name`.
    pub(crate) fn put_text(
        &mut self,
        name: &'static str,
        cap: usize,
        replace: bool,
        write: impl FnOnce(&mut Capped<'_>),
    ) -> bool {
        let range = self.write_text(cap, write);
        self.put_value(name, replace, || Value::Str(range));
        range.truncated_from.is_some()
    }

    /// Captures an error's message and its source chain. Returns whether any text was cut.
    pub(crate) fn put_error(
        &mut self,
        name: &'static str,
        cap: usize,
        replace: bool,
        error: &(dyn std::error::Error + 'static),
    ) -> bool {
        let message = self.write_text(cap, |w| {
            let _ = write!(w, "{error}");
        });
        let mut cut = message.truncated_from.is_some();
        let first_source = self.sources.len() as u32;
        let mut source = error.source();
        // A cycle in `source()` must not loop for ever: a chain longer than this is cut.
        let mut left = MAX_ERROR_SOURCES;
        while let (Some(s), true) = (source, left > 0) {
            let r = self.write_text(cap, |w| {
                let _ = write!(w, "{s}");
            });
            cut |= r.truncated_from.is_some();
            self.sources.push(r);
            source = s.source();
            left -= 1;
        }
        if source.is_some() {
            // Cut: said in the chain itself, and counted as truncated.
            let r = self.copy_text(cap, CHAIN_CUT);
            self.sources.push(r);
            cut = true;
        }
        let sources = self.sources.len() as u32 - first_source;
        self.put_value(name, replace, || Value::Error {
            message,
            first_source,
            sources,
        });
        cut
    }

    /// Copies `text` (capped at `cap` bytes, cut on a char boundary) to the end of the buffer;
    /// returns its range. The same as [`write_text`](Self::write_text) with one `write_str`,
    /// without going through `fmt::Write`: a string field is the common case.
    #[inline]
    pub(crate) fn copy_text(&mut self, cap: usize, text: &str) -> TextRange {
        let start = self.text.len();
        let kept = if text.len() <= cap {
            text
        } else {
            let mut end = cap;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            &text[..end]
        };
        append(&mut self.text, kept);
        TextRange {
            start: start as u32,
            len: kept.len() as u32,
            truncated_from: if text.len() > cap {
                NonZeroU32::new(u32::try_from(text.len()).unwrap_or(u32::MAX))
            } else {
                None
            },
        }
    }

    /// Captures `text` (capped at `cap` bytes) as the field `name`; returns whether it was cut.
    #[inline]
    pub(crate) fn put_str(
        &mut self,
        name: &'static str,
        cap: usize,
        replace: bool,
        text: &str,
    ) -> bool {
        let range = self.copy_text(cap, text);
        self.put_value(name, replace, || Value::Str(range));
        range.truncated_from.is_some()
    }

    /// Writes text at the end of the buffer; returns its range.
    pub(crate) fn write_text(
        &mut self,
        cap: usize,
        write: impl FnOnce(&mut Capped<'_>),
    ) -> TextRange {
        let start = self.text.len();
        let mut w = Capped {
            buf: &mut self.text,
            start,
            cap,
            total: 0,
        };
        write(&mut w);
        let total = w.total;
        TextRange {
            start: start as u32,
            len: (self.text.len() - start) as u32,
            truncated_from: if total > cap {
                NonZeroU32::new(u32::try_from(total).unwrap_or(u32::MAX))
            } else {
                None
            },
        }
    }

    /// Copies every field of `other` into `self`, replacing those of the same name (a span's
    /// `record`), and compacts `self` when most of its text is garbage.
    pub(crate) fn merge_from(&mut self, other: &Fields) {
        for (name, value) in other.iter() {
            match value {
                FieldValue::Str(t) => {
                    let r = self.copy_captured(t);
                    self.put_value(name, true, || Value::Str(r));
                }
                FieldValue::Error(e) => {
                    let message = self.copy_captured(e.message());
                    let first_source = self.sources.len() as u32;
                    for s in e.sources() {
                        let r = self.copy_captured(s);
                        self.sources.push(r);
                    }
                    let sources = self.sources.len() as u32 - first_source;
                    self.put_value(name, true, || Value::Error {
                        message,
                        first_source,
                        sources,
                    });
                }
                other => {
                    if let Some(v) = FieldScalar::from_value(other) {
                        self.put(name, v, true);
                    }
                }
            }
        }
        self.compact_if_mostly_garbage();
    }

    fn copy_captured(&mut self, t: Text<'_>) -> TextRange {
        let start = self.text.len();
        self.text.push_str(t.text);
        TextRange {
            start: start as u32,
            len: t.text.len() as u32,
            truncated_from: t
                .truncated_from
                .and_then(|n| NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX))),
        }
    }

    /// Bytes held by the text buffer (for memory tests).
    #[cfg(test)]
    pub(crate) fn text_capacity(&self) -> usize {
        self.text.capacity()
    }
}

/// The longest error source chain kept (a cycle in `source()` would be endless); a longer
/// one ends with [`CHAIN_CUT`].
const MAX_ERROR_SOURCES: usize = 16;

/// The last source of a chain cut at [`MAX_ERROR_SOURCES`].
const CHAIN_CUT: &str = "…[more sources, past 16, not kept]";

impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl PartialEq for Fields {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

/// A value that is not text.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum FieldScalar {
    I64(i64),
    U64(u64),
    I128(i128),
    U128(u128),
    F64(f64),
    Bool(bool),
}

impl FieldScalar {
    fn from_value(v: FieldValue<'_>) -> Option<Self> {
        Some(match v {
            FieldValue::I64(v) => FieldScalar::I64(v),
            FieldValue::U64(v) => FieldScalar::U64(v),
            FieldValue::I128(v) => FieldScalar::I128(v),
            FieldValue::U128(v) => FieldScalar::U128(v),
            FieldValue::F64(v) => FieldScalar::F64(v),
            FieldValue::Bool(v) => FieldScalar::Bool(v),
            FieldValue::Str(_) | FieldValue::Error(_) => return None,
        })
    }
}

impl From<FieldScalar> for Value {
    #[inline]
    fn from(v: FieldScalar) -> Self {
        match v {
            FieldScalar::I64(v) => Value::I64(v),
            FieldScalar::U64(v) => Value::U64(v),
            FieldScalar::I128(v) => Value::I128(split(v as u128)),
            FieldScalar::U128(v) => Value::U128(split(v)),
            FieldScalar::F64(v) => Value::F64(v),
            FieldScalar::Bool(v) => Value::Bool(v),
        }
    }
}

fn split(v: u128) -> [u64; 2] {
    [(v >> 64) as u64, v as u64]
}

fn join([high, low]: [u64; 2]) -> u128 {
    u128::from(high) << 64 | u128::from(low)
}

/// Appends `s` to `buf` (see [`append_bytes`]).
#[inline(always)]
fn append(buf: &mut String, s: &str) {
    // SAFETY: the bytes appended are a whole `str`'s, so the string stays valid UTF-8.
    #[allow(unsafe_code)]
    let v = unsafe { buf.as_mut_vec() };
    append_bytes(v, s.as_bytes());
}

/// Appends `s` to `buf`. A field's text, a field name or a short value is short: up to 16 bytes
/// are copied here with two overlapping loads and stores, where `extend_from_slice` would call
/// `memcpy` (which costs a call, and the registers saved around it, for a copy of a few bytes).
#[inline(always)]
pub(crate) fn append_bytes(v: &mut Vec<u8>, s: &[u8]) {
    let n = s.len();
    if n > 16 || n == 0 {
        v.extend_from_slice(s);
        return;
    }
    v.reserve(n);
    // SAFETY: `reserve` made room for `n` more bytes: `dst..dst + n` is in the buffer's
    // allocation, past its length, where nothing refers; `copy_short` writes exactly those
    // bytes, every one of them, from `s` (1 ≤ n ≤ 16), so the new length covers initialised
    // bytes only. Miri runs the tests of this module through every length (`scripts/test`).
    #[allow(unsafe_code)]
    unsafe {
        let len = v.len();
        copy_short(v.as_mut_ptr().add(len), s);
        v.set_len(len + n);
    }
}

/// Appends `s` between double quotes (a JSON string that needs no escaping), with one check
/// for room where pushing the quotes and [`append_bytes`] would check three times.
#[inline(always)]
pub(crate) fn append_quoted(v: &mut Vec<u8>, s: &[u8]) {
    let n = s.len();
    if n > 16 {
        v.reserve(n + 2);
        v.push(b'"');
        v.extend_from_slice(s);
        v.push(b'"');
        return;
    }
    v.reserve(n + 2);
    // SAFETY: `reserve` made room for `n + 2` more bytes: `dst..dst + n + 2` is in the
    // buffer's allocation, past its length, where nothing refers. The two quotes go to its
    // first and last byte, and `copy_short` writes every byte in between from `s` (when
    // `n > 0`; 0 ≤ n ≤ 16), so the new length covers initialised bytes only. Miri runs the
    // tests of this module through every length (`scripts/test`).
    #[allow(unsafe_code)]
    unsafe {
        let len = v.len();
        let dst = v.as_mut_ptr().add(len);
        *dst = b'"';
        if n > 0 {
            copy_short(dst.add(1), s);
        }
        *dst.add(n + 1) = b'"';
        v.set_len(len + n + 2);
    }
}

/// Copies `s` (1 to 16 bytes) to `dst` without a call: for 8 ≤ n ≤ 16 the first and the last
/// 8 bytes (overlapping when n < 16), for 4 ≤ n < 8 the first and the last 4, for n < 4 the
/// first, middle and last byte; together they cover every byte.
///
/// # Safety
///
/// `1 <= s.len() <= 16`, and `dst..dst + s.len()` is valid for writes and does not overlap
/// `s`. Every read is within `s` and every write within `dst..dst + s.len()`; the loads and
/// stores are unaligned ones.
#[inline(always)]
#[allow(unsafe_code)]
unsafe fn copy_short(dst: *mut u8, s: &[u8]) {
    let n = s.len();
    debug_assert!((1..=16).contains(&n));
    let src = s.as_ptr();
    // SAFETY: the caller's contract, above; each offset below is less than `n`.
    unsafe {
        if n >= 8 {
            let head = src.cast::<u64>().read_unaligned();
            let tail = src.add(n - 8).cast::<u64>().read_unaligned();
            dst.cast::<u64>().write_unaligned(head);
            dst.add(n - 8).cast::<u64>().write_unaligned(tail);
        } else if n >= 4 {
            let head = src.cast::<u32>().read_unaligned();
            let tail = src.add(n - 4).cast::<u32>().read_unaligned();
            dst.cast::<u32>().write_unaligned(head);
            dst.add(n - 4).cast::<u32>().write_unaligned(tail);
        } else {
            *dst = *src;
            *dst.add(n / 2) = *src.add(n / 2);
            *dst.add(n - 1) = *src.add(n - 1);
        }
    }
}

/// A writer that keeps the first `cap` bytes written (cut on a char boundary) and counts the
/// rest.
pub(crate) struct Capped<'a> {
    buf: &'a mut String,
    start: usize,
    cap: usize,
    total: usize,
}

impl fmt::Write for Capped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.total = self.total.saturating_add(s.len());
        let room = self.cap.saturating_sub(self.buf.len() - self.start);
        if s.len() <= room {
            append(self.buf, s);
        } else if room > 0 {
            let mut end = room;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            self.buf.push_str(&s[..end]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`append`]'s copies, through every length it copies itself and past, of ASCII and of
    /// multi-byte text, onto buffers with and without room: Miri checks its reads and writes
    /// (`scripts/test`).
    #[test]
    fn append_copies_every_length_whole() {
        let ascii = "abcdefghijklmnopqrstuvwxyz";
        let wide = "é€𝄞é€𝄞é€𝄞";
        let pieces = (0..=20)
            .map(|n| &ascii[..n])
            .chain((0..=wide.len()).filter_map(|n| wide.get(..n)));
        for piece in pieces {
            for start in ["", "é"] {
                let mut tight = String::from(start);
                tight.shrink_to_fit();
                let mut roomy = String::with_capacity(64);
                roomy.push_str(start);
                for buf in [&mut tight, &mut roomy] {
                    append(buf, piece);
                    append(buf, "|");
                    assert_eq!(*buf, [start, piece, "|"].concat());
                }
            }
        }
    }

    /// [`append_quoted`], through every length it copies itself and past, onto buffers with
    /// and without room: Miri checks its reads and writes (`scripts/test`).
    #[test]
    fn append_quoted_copies_every_length_whole() {
        let ascii = b"abcdefghijklmnopqrstuvwxyz";
        for n in 0..=20 {
            let piece = &ascii[..n];
            for start in [&b""[..], b"x"] {
                let mut tight = start.to_vec();
                tight.shrink_to_fit();
                let mut roomy = Vec::with_capacity(64);
                roomy.extend_from_slice(start);
                for buf in [&mut tight, &mut roomy] {
                    append_quoted(buf, piece);
                    append_quoted(buf, b"|");
                    assert_eq!(*buf, [start, b"\"", piece, b"\"\"|\""].concat());
                }
            }
        }
    }

    #[test]
    fn text_is_capped_on_char_boundaries_and_the_original_length_is_kept() {
        let mut f = Fields::default();
        f.put_text("a", 5, false, |w| {
            w.write_str("ab").unwrap();
            w.write_str("cé€").unwrap(); // 1 + 2 + 3 bytes; only "cé" fits in the 3 left
            w.write_str("zzz").unwrap();
        });
        let Some(FieldValue::Str(t)) = f.get("a") else {
            panic!("{f:?}")
        };
        assert_eq!(t.text, "abcé");
        assert_eq!(t.truncated_from, Some(11));
        assert_eq!(t.to_string(), "abcé…[truncated from 11 bytes]");
    }

    #[test]
    fn a_copied_string_is_capped_like_a_written_one() {
        for (text, cap) in [
            ("abcé€zzz", 5),
            ("short", 64),
            ("", 0),
            ("é", 1),
            ("xyz", 0),
        ] {
            let mut copied = Fields::default();
            let mut written = Fields::default();
            copied.put_str("a", cap, false, text);
            written.put_text("a", cap, false, |w| w.write_str(text).unwrap());
            assert_eq!(copied, written, "{text:?} {cap}");
            assert_eq!(copied.get("a"), written.get("a"));
        }
    }

    #[test]
    fn values_keep_their_order_and_replace_keeps_the_last() {
        let mut f = Fields::default();
        f.put("n", FieldScalar::U64(1), false);
        f.put_text("s", 64, false, |w| w.write_str("first").unwrap());
        f.put_text("s", 64, true, |w| w.write_str("second").unwrap());
        f.put("b", FieldScalar::Bool(true), false);
        let all: Vec<_> = f.iter().map(|(n, v)| (n, v.to_string())).collect();
        assert_eq!(
            all,
            [
                ("n", "1".into()),
                ("s", "second".into()),
                ("b", "true".into())
            ]
        );
        assert_eq!(f.len(), 3);
        assert_eq!(f.get("missing"), None);
    }

    #[test]
    fn a_field_recorded_many_times_stays_bounded() {
        // As a span's `record` does: each value is captured apart, then merged in.
        let mut f = Fields::default();
        f.put_text("keep", 64, false, |w| w.write_str("kept").unwrap());
        let mut scratch = Fields::default();
        for i in 0..100_000 {
            scratch.clear();
            scratch.put_text("progress", 64, true, |w| write!(w, "step {i:>20}").unwrap());
            f.merge_from(&scratch);
        }
        assert!(f.text.len() < 8 * 1024, "{}", f.text.len());
        assert_eq!(f.get("keep").unwrap().to_string(), "kept");
        assert_eq!(
            f.get("progress").unwrap().to_string(),
            format!("step {:>20}", 99_999)
        );
    }

    #[derive(Debug)]
    struct Chain(&'static str, Option<Box<Chain>>);
    impl fmt::Display for Chain {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Chain {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|c| c as _)
        }
    }

    #[test]
    fn errors_keep_their_source_chain_through_merge_and_compaction() {
        let e = Chain(
            "request failed",
            Some(Box::new(Chain("connection reset", None))),
        );
        let mut f = Fields::default();
        f.put_error("error", 64, false, &e);
        let Some(FieldValue::Error(v)) = f.get("error") else {
            panic!("{f:?}")
        };
        assert_eq!(v.message().text, "request failed");
        assert_eq!(
            v.sources().map(|t| t.text).collect::<Vec<_>>(),
            ["connection reset"]
        );
        assert_eq!(v.to_string(), "request failed: connection reset");
        let mut g = Fields::default();
        g.merge_from(&f);
        assert_eq!(g, f);
        let mut noise = Fields::default();
        noise.put_text("noise", 64, false, |w| {
            w.write_str(&"x".repeat(40)).unwrap()
        });
        for _ in 0..1000 {
            g.merge_from(&noise);
        }
        assert!(g.text.len() < 8 * 1024, "{}", g.text.len());
        assert_eq!(g.get("error"), f.get("error"));
    }

    /// Compaction moves the live text and sources down in place, in whatever order the
    /// fields hold them: errors replaced many times between two that stay, a text field
    /// replaced after them; the buffers keep their capacity.
    #[test]
    fn compaction_in_place_keeps_every_live_value() {
        let first = Chain("first", Some(Box::new(Chain("first's cause", None))));
        let later = Chain("later", Some(Box::new(Chain("later's cause", None))));
        let mut f = Fields::default();
        f.put_error("first", 64, false, &first);
        f.put_text("text", 64, false, |w| w.write_str("original").unwrap());
        let mut capacity = None;
        for i in 0..200 {
            let mut scratch = Fields::default();
            let churn = Chain("churn", Some(Box::new(Chain("churn's cause", None))));
            scratch.put_error("churn", 64, true, &churn);
            if i == 100 {
                scratch.put_error("later", 64, true, &later);
            }
            scratch.put_text("text", 64, true, |w| {
                write!(w, "text {i} {}", "y".repeat(30)).unwrap()
            });
            f.merge_from(&scratch);
            if i == 150 {
                capacity = Some((f.text.capacity(), f.sources.capacity()));
            }
        }
        assert_eq!(capacity, Some((f.text.capacity(), f.sources.capacity())));
        assert!(f.text.len() < 4 * 1024, "{}", f.text.len());
        let error = |name| match f.get(name) {
            Some(FieldValue::Error(v)) => v.to_string(),
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(error("first"), "first: first's cause");
        assert_eq!(error("later"), "later: later's cause");
        assert_eq!(error("churn"), "churn: churn's cause");
        assert_eq!(
            f.get("text").unwrap().to_string(),
            format!("text 199 {}", "y".repeat(30))
        );
        assert!(f.sources.len() < 64, "{}", f.sources.len());
    }

    /// A chain longer than 16 sources (or a cycle) is cut, and says so: it ended at the 16th
    /// source with no mark, and was not counted as truncated (adversary pass 50).
    #[test]
    fn a_chain_past_16_sources_ends_with_a_mark() {
        let mut chain = Chain("e20", None);
        for i in (0..20).rev() {
            chain = Chain(
                Box::leak(format!("e{i}").into_boxed_str()),
                Some(Box::new(chain)),
            );
        }
        let mut f = Fields::default();
        assert!(
            f.put_error("error", 64, false, &chain),
            "counted as truncated"
        );
        let Some(FieldValue::Error(v)) = f.get("error") else {
            panic!("{f:?}")
        };
        let sources: Vec<_> = v.sources().map(|t| t.text.to_owned()).collect();
        assert_eq!(sources.len(), 17, "{sources:?}");
        assert_eq!(sources[15], "e16");
        assert_eq!(sources[16], CHAIN_CUT);
        // 16 exactly is whole, unmarked.
        let mut whole = Chain("e16", None);
        for i in (0..16).rev() {
            whole = Chain(
                Box::leak(format!("e{i}").into_boxed_str()),
                Some(Box::new(whole)),
            );
        }
        let mut f = Fields::default();
        assert!(!f.put_error("error", 64, false, &whole));
        let Some(FieldValue::Error(v)) = f.get("error") else {
            panic!("{f:?}")
        };
        assert_eq!(v.sources().last().unwrap().text, "e16");
    }

    #[test]
    fn wide_integers_round_trip_and_values_stay_small() {
        let mut f = Fields::default();
        f.put("i", FieldScalar::I128(i128::MIN + 7), false);
        f.put("u", FieldScalar::U128(u128::MAX - 3), false);
        assert_eq!(f.get("i"), Some(FieldValue::I128(i128::MIN + 7)));
        assert_eq!(f.get("u"), Some(FieldValue::U128(u128::MAX - 3)));
        assert_eq!(std::mem::size_of::<Value>(), 24);
    }

    #[test]
    fn clearing_keeps_a_bounded_buffer() {
        let mut f = Fields::default();
        f.put_text("big", 1 << 20, false, |w| {
            w.write_str(&"x".repeat(100_000)).unwrap()
        });
        f.bound();
        f.clear();
        assert!(f.is_empty());
        assert!(f.text_capacity() <= RETAINED_TEXT_BYTES);
    }
}
