//! `sink::JsonFile`: one JSON object per line, written in batches.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::record::{
    rfc3339_bytes, DropNotice, EventRecord, FieldValue, Fields, Record, SpanRecord, ThreadInfo,
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
pub(crate) fn write_json_line(out: &mut Vec<u8>, record: &Record) {
    let mut ser = serde_json::Serializer::new(&mut *out);
    // Serialising into a Vec cannot fail: every value here is representable.
    let _ = JsonLine(record).serialize(&mut ser);
    out.push(b'\n');
}

struct JsonLine<'a>(&'a Record);
/// A time as RFC 3339 text, formatted on the stack.
struct Ts(std::time::SystemTime);
/// ASCII bytes (hex ids) as a JSON string.
struct Ascii<'a>(&'a [u8]);
/// Captured text, with its truncation marker when it was cut.
struct JsonText<'a>(&'a crate::record::Text);

impl Serialize for Ts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Ascii(&rfc3339_bytes(self.0)).serialize(s)
    }
}

impl Serialize for Ascii<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(std::str::from_utf8(self.0).unwrap_or_default())
    }
}

impl Serialize for JsonText<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_truncated() {
            s.collect_str(self.0)
        } else {
            s.serialize_str(&self.0.text)
        }
    }
}
struct JsonFields<'a>(&'a Fields);
struct JsonValue<'a>(&'a FieldValue);
struct JsonThread<'a>(&'a ThreadInfo);

impl Serialize for JsonLine<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        match self.0 {
            Record::Event(e) => event(&mut m, e)?,
            Record::Span(sp) => span(&mut m, sp)?,
            Record::Dropped(d) => dropped(&mut m, d)?,
        }
        m.end()
    }
}

fn event<M: SerializeMap>(m: &mut M, e: &EventRecord) -> Result<(), M::Error> {
    m.serialize_entry("ts", &Ts(e.timestamp))?;
    m.serialize_entry("kind", "event")?;
    m.serialize_entry("level", e.level.as_str())?;
    m.serialize_entry("severity_number", &e.level.severity_number())?;
    m.serialize_entry("target", e.metadata.target())?;
    m.serialize_entry("name", e.metadata.name())?;
    if let Some(msg) = &e.message {
        m.serialize_entry("message", &JsonText(msg))?;
    }
    m.serialize_entry("fields", &JsonFields(&e.fields))?;
    if let (Some(t), Some(s)) = (e.trace_id, e.span_id) {
        m.serialize_entry("trace_id", &Ascii(&t.to_hex()))?;
        m.serialize_entry("span_id", &Ascii(&s.to_hex()))?;
    }
    m.serialize_entry("thread", &JsonThread(&e.thread))
}

fn span<M: SerializeMap>(m: &mut M, sp: &SpanRecord) -> Result<(), M::Error> {
    m.serialize_entry("ts", &Ts(sp.end))?;
    m.serialize_entry("kind", "span")?;
    m.serialize_entry("level", sp.level.as_str())?;
    m.serialize_entry("severity_number", &sp.level.severity_number())?;
    m.serialize_entry("target", sp.metadata.target())?;
    m.serialize_entry("name", sp.metadata.name())?;
    m.serialize_entry("fields", &JsonFields(&sp.fields))?;
    m.serialize_entry("trace_id", &Ascii(&sp.trace_id.to_hex()))?;
    m.serialize_entry("span_id", &Ascii(&sp.span_id.to_hex()))?;
    if let Some(p) = sp.parent_span_id {
        m.serialize_entry("parent_span_id", &Ascii(&p.to_hex()))?;
    }
    m.serialize_entry("start", &Ts(sp.start))?;
    m.serialize_entry("end", &Ts(sp.end))?;
    m.serialize_entry(
        "duration_ns",
        &(sp.duration.as_nanos().min(u64::MAX as u128) as u64),
    )?;
    if sp.dropped_events > 0 {
        m.serialize_entry("dropped_events", &sp.dropped_events)?;
    }
    m.serialize_entry("thread", &JsonThread(&sp.thread))
}

fn dropped<M: SerializeMap>(m: &mut M, d: &DropNotice) -> Result<(), M::Error> {
    let level = crate::LogLevel::Warning;
    m.serialize_entry("ts", &Ts(d.at))?;
    m.serialize_entry("kind", "dropped")?;
    m.serialize_entry("level", level.as_str())?;
    m.serialize_entry("severity_number", &level.severity_number())?;
    m.serialize_entry("target", "tracing_offload")?;
    m.serialize_entry("name", "records_dropped")?;
    m.serialize_entry("message", &d.to_string())?;
    m.serialize_entry("since", &Ts(d.since))?;
    m.serialize_entry("dropped", &DropCounts(&d.by_reason))
}

struct DropCounts<'a>(&'a [(crate::DropReason, u64)]);

impl Serialize for DropCounts<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (reason, n) in self.0 {
            m.serialize_entry(reason.as_str(), n)?;
        }
        m.end()
    }
}

impl Serialize for JsonFields<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            m.serialize_entry(name, &JsonValue(value))?;
        }
        m.end()
    }
}

impl Serialize for JsonValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            FieldValue::I64(v) => s.serialize_i64(*v),
            FieldValue::U64(v) => s.serialize_u64(*v),
            FieldValue::I128(v) => s.serialize_i128(*v),
            FieldValue::U128(v) => s.serialize_u128(*v),
            FieldValue::F64(v) if v.is_finite() => s.serialize_f64(*v),
            FieldValue::F64(v) => s.serialize_str(&v.to_string()),
            FieldValue::Bool(v) => s.serialize_bool(*v),
            FieldValue::Str(t) => JsonText(t).serialize(s),
        }
    }
}

impl Serialize for JsonThread<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0.name {
            Some(name) => s.serialize_str(name),
            None => s.serialize_str(&format!("thread-{}", self.0.id)),
        }
    }
}
