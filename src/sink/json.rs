//! `sink::JsonFile`: one JSON object per line, written in batches.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::ids::ThreadInfo;
use crate::record::{
    rfc3339_bytes, DropNotice, EventRecord, FieldValue, Fields, Record, SpanRecord,
};
use crate::sink::{Sink, SinkError};

/// When a [`JsonFile`] starts a new file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// One file that grows forever (the default).
    Never,
    /// Before a batch would take the file past `max_bytes`, rename it to `<path>.1` (shifting
    /// older ones to `.2`, … up to `keep`, deleting the oldest) and start a new one.
    Size {
        /// The largest a file grows (a single batch larger than this still goes in one file).
        max_bytes: u64,
        /// Old files kept besides the current one.
        keep: usize,
    },
    /// A new file each minute, named `<path>.YYYY-MM-DD-HH-mm` (by `tracing-appender`).
    Minutely,
    /// A new file each hour, named `<path>.YYYY-MM-DD-HH`.
    Hourly,
    /// A new file each day, named `<path>.YYYY-MM-DD`.
    Daily,
}

/// Writes each record as one JSON line to a file. One `write` per batch; fields are serialised
/// straight into a reused buffer.
///
/// Each line has `ts` (RFC 3339, UTC, microseconds), `kind` (`event`, `span` or `dropped`),
/// `level`, `severity_number`, `target`, `name`, `message` (events and drop markers),
/// `fields` (an object with typed values), `trace_id`, `span_id`, `parent_span_id` (spans),
/// `start`, `end`, `duration_ns` (spans), `thread`. Text cut at the length cap ends with
/// `…[truncated from N bytes]`. A `dropped` line reports `dropped` (an object of counts by
/// reason) and `since`.
///
/// ```
/// use tracing_offload::sink::{JsonFile, Rotation};
/// let sink = JsonFile::new("logs/app.jsonl")
///     .rotation(Rotation::Size { max_bytes: 64 << 20, keep: 4 });
/// # drop(sink);
/// ```
#[derive(Debug)]
pub struct JsonFile {
    name: String,
    path: PathBuf,
    rotation: Rotation,
    out: Option<Output>,
    buf: Vec<u8>,
    size: u64,
}

enum Output {
    File(File),
    Rolling(tracing_appender::rolling::RollingFileAppender),
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Output::File(_) => "File",
            Output::Rolling(_) => "Rolling",
        })
    }
}

// === impl JsonFile ===

impl JsonFile {
    /// A sink named `json` appending to `path` (parent directories are created at build time).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        JsonFile {
            name: "json".to_owned(),
            path: path.into(),
            rotation: Rotation::Never,
            out: None,
            buf: Vec::with_capacity(64 * 1024),
            size: 0,
        }
    }

    /// Renames the sink (default `json`); needed when a pipeline has two file sinks.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the rotation (default [`Rotation::Never`]).
    pub fn rotation(mut self, rotation: Rotation) -> Self {
        self.rotation = rotation;
        self
    }

    fn open(&self) -> Result<Output, SinkError> {
        let ctx = |what: &str| format!("{what} {}", self.path.display());
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)
                .map_err(|e| SinkError::io(ctx("creating the directory of"), e))?;
        }
        let rolling = |r: tracing_appender::rolling::Rotation| -> Result<Output, SinkError> {
            let dir = self
                .path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let file = self
                .path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| "log".into());
            tracing_appender::rolling::RollingFileAppender::builder()
                .rotation(r)
                .filename_prefix(file)
                .build(dir)
                .map(Output::Rolling)
                .map_err(|e| SinkError::io(ctx("opening"), std::io::Error::other(e)))
        };
        use tracing_appender::rolling::Rotation as R;
        match self.rotation {
            Rotation::Minutely => rolling(R::MINUTELY),
            Rotation::Hourly => rolling(R::HOURLY),
            Rotation::Daily => rolling(R::DAILY),
            Rotation::Never | Rotation::Size { .. } => OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map(Output::File)
                .map_err(|e| SinkError::io(ctx("opening"), e)),
        }
    }

    fn rotate_if_needed(&mut self, incoming: u64) -> Result<(), SinkError> {
        let Rotation::Size { max_bytes, keep } = self.rotation else {
            return Ok(());
        };
        if self.size == 0 || self.size + incoming <= max_bytes {
            return Ok(());
        }
        let numbered = |i: usize| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{i}"));
            PathBuf::from(p)
        };
        let ctx = format!("rotating {}", self.path.display());
        if keep == 0 {
            fs::remove_file(&self.path).map_err(|e| SinkError::io(&ctx, e))?;
        } else {
            for i in (1..keep).rev() {
                if numbered(i).exists() {
                    fs::rename(numbered(i), numbered(i + 1)).map_err(|e| SinkError::io(&ctx, e))?;
                }
            }
            fs::rename(&self.path, numbered(1)).map_err(|e| SinkError::io(&ctx, e))?;
        }
        self.out = Some(self.open()?);
        self.size = 0;
        Ok(())
    }
}

impl Sink for JsonFile {
    fn name(&self) -> &str {
        &self.name
    }

    fn start(&mut self) -> Result<(), SinkError> {
        let out = self.open()?;
        if let Output::File(f) = &out {
            self.size = f.metadata().map(|m| m.len()).unwrap_or(0);
        }
        self.out = Some(out);
        Ok(())
    }

    fn export(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        self.buf.clear();
        for record in batch {
            write_json_line(&mut self.buf, record);
        }
        self.rotate_if_needed(self.buf.len() as u64)?;
        let ctx = || format!("writing {}", self.path.display());
        let result = match self.out.as_mut() {
            Some(Output::File(f)) => f.write_all(&self.buf),
            Some(Output::Rolling(r)) => r.write_all(&self.buf),
            None => {
                return Err(SinkError::Fatal(format!(
                    "{} was not opened",
                    self.path.display()
                )))
            }
        };
        result.map_err(|e| SinkError::io(ctx(), e))?;
        self.size += self.buf.len() as u64;
        if self.buf.capacity() > 4 << 20 {
            self.buf = Vec::with_capacity(64 * 1024);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        let result = match self.out.as_mut() {
            Some(Output::File(f)) => f.flush(),
            Some(Output::Rolling(r)) => r.flush(),
            None => Ok(()),
        };
        result.map_err(|e| SinkError::io(format!("flushing {}", self.path.display()), e))
    }
}

/// Appends one record as a JSON line (with the newline) to `out`.
///
/// Written by hand: the keys and the crate's own values (times, hex ids, levels) are known to
/// need no escaping and are copied as they are; only user text (targets, names, messages,
/// field names and values) goes through [`string`], which copies runs that need no escaping in
/// one go. Floats and 128-bit integers are written by `serde_json`/`itoa`-style formatting.
pub(crate) fn write_json_line(out: &mut Vec<u8>, record: &Record) {
    match record {
        Record::Event(e) => event(out, e),
        Record::Span(s) => span(out, s),
        Record::Dropped(d) => dropped(out, d),
    }
    out.extend_from_slice(b"}\n");
}

/// `{"ts":"…","kind":"…","level":"…","severity_number":N,"target":…,"name":…`
fn head(
    out: &mut Vec<u8>,
    ts: std::time::SystemTime,
    kind: &str,
    level: crate::LogLevel,
    target: &str,
    name: &str,
) {
    out.extend_from_slice(b"{\"ts\":\"");
    out.extend_from_slice(&rfc3339_bytes(ts));
    out.extend_from_slice(b"\",\"kind\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"level\":\"");
    out.extend_from_slice(level.as_str().as_bytes());
    out.extend_from_slice(b"\",\"severity_number\":");
    number(out, level.severity_number());
    out.extend_from_slice(b",\"target\":");
    string(out, target);
    out.extend_from_slice(b",\"name\":");
    string(out, name);
}

fn event(out: &mut Vec<u8>, e: &EventRecord) {
    head(
        out,
        e.timestamp,
        "event",
        e.level,
        e.metadata.target(),
        e.metadata.name(),
    );
    if let Some(msg) = &e.message {
        out.extend_from_slice(b",\"message\":");
        text(out, msg);
    }
    fields(out, &e.fields);
    if let (Some(t), Some(s)) = (e.trace_id, e.span_id) {
        raw_entry(out, "trace_id", &t.to_hex());
        raw_entry(out, "span_id", &s.to_hex());
    }
    thread(out, &e.thread);
}

fn span(out: &mut Vec<u8>, sp: &SpanRecord) {
    head(
        out,
        sp.end,
        "span",
        sp.level,
        sp.metadata.target(),
        sp.metadata.name(),
    );
    fields(out, &sp.fields);
    raw_entry(out, "trace_id", &sp.trace_id.to_hex());
    raw_entry(out, "span_id", &sp.span_id.to_hex());
    if let Some(p) = sp.parent_span_id {
        raw_entry(out, "parent_span_id", &p.to_hex());
    }
    raw_entry(out, "start", &rfc3339_bytes(sp.start));
    raw_entry(out, "end", &rfc3339_bytes(sp.end));
    out.extend_from_slice(b",\"duration_ns\":");
    number(out, sp.duration.as_nanos().min(u64::MAX as u128) as u64);
    if sp.dropped_events > 0 {
        out.extend_from_slice(b",\"dropped_events\":");
        number(out, sp.dropped_events);
    }
    thread(out, &sp.thread);
}

fn dropped(out: &mut Vec<u8>, d: &DropNotice) {
    head(
        out,
        d.at,
        "dropped",
        crate::LogLevel::Warning,
        "tracing_offload",
        "records_dropped",
    );
    out.extend_from_slice(b",\"message\":");
    string(out, &d.to_string());
    raw_entry(out, "since", &rfc3339_bytes(d.since));
    out.extend_from_slice(b",\"dropped\":{");
    for (i, (reason, n)) in d.by_reason.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, reason.as_str());
        out.push(b':');
        number(out, *n);
    }
    out.push(b'}');
}

/// `,"key":"value"` for values known to need no escaping (times, hex ids).
fn raw_entry(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":\"");
    out.extend_from_slice(value);
    out.push(b'"');
}

fn fields(out: &mut Vec<u8>, fields: &Fields) {
    out.extend_from_slice(b",\"fields\":{");
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, name);
        out.push(b':');
        match value {
            FieldValue::I64(v) => number(out, v),
            FieldValue::U64(v) => number(out, v),
            FieldValue::I128(v) => number(out, v),
            FieldValue::U128(v) => number(out, v),
            FieldValue::F64(v) if v.is_finite() => {
                // serde_json prints the shortest representation that round-trips.
                let _ = serde_json::to_writer(&mut *out, v);
            }
            FieldValue::F64(v) => string(out, &v.to_string()),
            FieldValue::Bool(true) => out.extend_from_slice(b"true"),
            FieldValue::Bool(false) => out.extend_from_slice(b"false"),
            FieldValue::Str(t) => text(out, t),
        }
    }
    out.push(b'}');
}

fn thread(out: &mut Vec<u8>, t: &ThreadInfo) {
    out.extend_from_slice(b",\"thread\":");
    match &t.name {
        Some(name) => string(out, name),
        None => {
            out.extend_from_slice(b"\"thread-");
            number(out, t.id);
            out.push(b'"');
        }
    }
}

/// Captured text, with its truncation marker when it was cut.
fn text(out: &mut Vec<u8>, t: &crate::record::Text) {
    if t.is_truncated() {
        string(out, &t.to_string());
    } else {
        string(out, &t.text);
    }
}

fn number(out: &mut Vec<u8>, n: impl std::fmt::Display) {
    use std::io::Write as _;
    let _ = write!(out, "{n}");
}

/// A JSON string: runs of bytes that need no escaping are copied at once; `"`, `\` and
/// control characters are escaped as JSON requires.
fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_exactly_like_serde_json() {
        for s in [
            "plain",
            "",
            "quote\" back\\slash",
            "tab\tnl\ncr\r",
            "\u{0}\u{8}\u{c}\u{1f}\u{7f}",
            "é€😀",
        ] {
            let mut ours = Vec::new();
            string(&mut ours, s);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(s).unwrap()
            );
        }
    }
}
