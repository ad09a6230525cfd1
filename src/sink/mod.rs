//! Sinks: where records go after the drain thread.
//!
//! Every sink runs on its own named thread (`offload-sink-<name>`) behind its own bounded
//! buffer. A sink that is slow or failing fills and counts its own buffer; the others keep
//! flowing. A sink that panics is counted, disabled, and the rest of the pipeline goes on.
//!
//! Write your own by implementing [`Sink`]:
//!
//! ```
//! use tracing_offload::sink::{Sink, SinkError};
//! use tracing_offload::Record;
//!
//! struct CountingSink(u64);
//!
//! impl Sink for CountingSink {
//!     fn name(&self) -> &str {
//!         "counting"
//!     }
//!     fn export(&mut self, batch: &[Record]) -> Result<(), SinkError> {
//!         self.0 += batch.len() as u64;
//!         Ok(())
//!     }
//! }
//! ```

use std::time::Instant;

use crate::record::Record;

mod awaiting;
mod channel;
mod console;
mod json;
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub mod otlp;
#[cfg(feature = "otlp")]
mod runtime;

/// The largest sink buffer (16 777 216 records), from
/// [`Builder::sink_buffer_capacity`](crate::Builder::sink_buffer_capacity) or a sink's own
/// [`Sink::buffer_capacity`]. Each buffer is allocated whole at build time.
pub const MAX_SINK_BUFFER_CAPACITY: usize = 1 << 24;

pub use awaiting::AwaitingDelivery;
pub use channel::{Channel, ChannelReceiver};
pub use console::Console;
pub use json::{JsonFile, Rotation};
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub use otlp::Otlp;
#[cfg(feature = "otlp")]
#[cfg_attr(docsrs, doc(cfg(feature = "otlp")))]
pub use runtime::{Async, AsyncSink, DEFAULT_ASYNC_EXPORT_TIMEOUT};

/// A destination for records, driven by its own thread.
///
/// [`start`](Sink::start) runs once, on the thread that calls
/// [`Builder::build`](crate::Builder::build) (an error there fails the build). A disabled
/// pipeline ([`Builder::enabled`](crate::Builder::enabled)) never starts its sinks: it reads
/// their names, settings and warnings, and drops them. Everything else
/// runs on the sink's own thread: [`export`](Sink::export) once per batch, [`flush`](Sink::flush)
/// when its buffer runs dry, then [`shutdown`](Sink::shutdown) once. The layer records nothing
/// from that thread, so a sink may use libraries that log through `tracing` without feeding its
/// own queue (the application's other layers, a `fmt` layer, still see those logs).
///
/// A sink that wraps another (to count, filter or time it) forwards every method, the provided
/// ones included: [`spool`](Sink::spool), [`retries`](Sink::retries),
/// [`holds_records`](Sink::holds_records), [`markers_deferred`](Sink::markers_deferred) and
/// [`awaiting_delivery`](Sink::awaiting_delivery) are how the OTLP sink tells the sink thread
/// what it spooled, retried, holds back and has yet to deliver, and
/// [`abandon`](Sink::abandon) how the file sink undoes a failed build's file.
pub trait Sink: Send + 'static {
    /// A short name for stats, metrics labels and thread names, e.g. `"json"`. Names must be
    /// unique within one pipeline and contain no NUL character (`build()` fails otherwise).
    fn name(&self) -> &str;

    /// Prepares the sink (opens files, connects). Called once, from `build()`.
    fn start(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Undoes what [`start`](Self::start) left on the system when `build()` fails because a
    /// sink failed to start: called on that sink (for what it made before it failed) and on
    /// those started before it, instead of [`shutdown`](Self::shutdown), before they are
    /// dropped. The JSON-lines sink removes the directories it created, and the file it created
    /// when the file is still empty (nobody wrote to it). By default, nothing.
    fn abandon(&mut self) {}

    /// Writes one batch. The records are shared with other sinks; read, don't hold on to them
    /// longer than needed. An error counts the whole batch as failed, unless it says that the
    /// first records of the batch were written ([`SinkError::Partial`]): those are counted
    /// exported and the rest failed; or how many were not, in no particular order
    /// ([`SinkError::Mixed`], for a sink that sends records to more than one place).
    fn export(&mut self, batch: &[Record]) -> Result<(), SinkError>;

    /// Writes out what the sink buffers of its own (records exported so far), and for a sink
    /// that can, checks that they reached their destination: the JSON-lines sink syncs its
    /// file, at most once a second, and reports a write-back error here. Called when the
    /// sink's buffer runs empty and on flush requests; an error shows in the sink's health.
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Flushes and releases resources; must return by `deadline`.
    fn shutdown(&mut self, deadline: Instant) -> Result<(), SinkError> {
        let _ = deadline;
        self.flush()
    }

    /// Whether this sink wants events attached to their enclosing spans
    /// ([`SpanRecord::events`](crate::SpanRecord::events)). When no sink does, the layer does
    /// not keep them.
    fn wants_span_events(&self) -> bool {
        false
    }

    /// This sink's buffer in records, when it wants its own size instead of
    /// [`Builder::sink_buffer_capacity`](crate::Builder::sink_buffer_capacity).
    fn buffer_capacity(&self) -> Option<usize> {
        None
    }

    /// Records this sink counted exported and learned since may not have reached their
    /// destination, so far: the JSON-lines sink's records written to its file before a sync
    /// that reported that the system could not write them back to the device. Shown in stats
    /// (`lost_after_export`), metrics and health (a loss, as a drop is).
    fn lost_after_export(&self) -> u64 {
        0
    }

    /// Records this sink counts exported whose delivery still depends on records it has not
    /// sent (see [`AwaitingDelivery`]: the OTLP sink's events that travel on their span's
    /// record), for a sink that has such records. Asked once, when the pipeline is built; the
    /// sink thread then counts the records this says were lost in `lost_after_export`, and
    /// when the pipeline gives up on the sink (shutdown's deadline, a panic), those still
    /// awaiting delivery too. None by default.
    fn awaiting_delivery(&self) -> Option<std::sync::Arc<AwaitingDelivery>> {
        None
    }

    /// Export retries so far (sinks that retry report them; shown in stats and metrics).
    fn retries(&self) -> u64 {
        0
    }

    /// Whether the sink holds records of its own that its next [`flush`](Self::flush) writes
    /// (the OTLP sink: drop markers to send again, from an export that failed after the sink
    /// thread had moved on). While it does, the sink thread calls `flush` on each idle tick,
    /// and once more before [`shutdown`](Self::shutdown).
    fn holds_records(&self) -> bool {
        false
    }

    /// Whether the drop markers of the batch just exported were held back rather than written
    /// (asked after each export that did not panic; answering resets it). The sink thread then
    /// reports their counts again in the next batch's marker, as it does for a batch whose
    /// markers failed. A sink that spools what it cannot deliver holds its markers back instead
    /// of spooling them, where the spool's budget could evict them, and their counts with them.
    fn markers_deferred(&mut self) -> bool {
        false
    }

    /// The sink's spool, for sinks that keep what they cannot export on disk: read after each
    /// export and while the sink is idle. Its [`spooled`](crate::SpoolStats::spooled) count is
    /// how the sink says which records of a batch went to the spool: the sink thread counts
    /// them `spooled` rather than `exported` (or `failed`), so `export` returns `Ok` for a
    /// batch it spooled.
    fn spool(&self) -> Option<crate::SpoolStats> {
        None
    }

    /// The sink's settings for [`Config::sink_settings`](crate::Config::sink_settings) and
    /// the admin `/config` endpoint. Leave secrets out or redact them.
    fn settings(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Problems the sink found reading the environment; they join
    /// [`Config::warnings`](crate::Config::warnings) when the pipeline is built.
    fn env_warnings(&self) -> Vec<crate::EnvWarning> {
        Vec::new()
    }
}

/// A sink's failure, counted in its stats and shown in health.
///
/// As the Rust API guidelines ask, an inner error is either part of the message or returned by
/// [`source`](std::error::Error::source), never both: [`SinkError::Io`] says what the sink was
/// doing and returns the I/O error as its source, so a chain printer (`anyhow`'s `{:#}`,
/// `eyre`) shows the OS error once. Health and stats show the whole chain.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// An I/O error, with what the sink was doing.
    #[error("{context}")]
    Io {
        /// What the sink was doing, e.g. "opening logs/app.jsonl".
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A transient failure: the sink could not export now and may succeed later (e.g. the
    /// collector is down or throttling). A sink that retries returns this once its retries are
    /// spent.
    #[error("{0}")]
    Retryable(String),
    /// A permanent failure: retrying the same batch cannot help (e.g. the collector rejected it
    /// as invalid or unauthorised, or the sink is misconfigured), so a sink returns it without
    /// retrying. From [`Sink::start`] it fails the build.
    #[error("{0}")]
    Fatal(String),
    /// The export failed part way: the first `written` records of the batch, in order, were
    /// written whole (they are counted exported), the others were not (counted failed).
    #[error("the first {written} records of the batch were written")]
    Partial {
        /// How many records, from the start of the batch, were written.
        written: usize,
        /// Why the rest were not.
        #[source]
        source: Box<SinkError>,
    },
    /// Some records of the batch were written and others not, in no particular order (a sink
    /// that sends records of different kinds to different places, as the OTLP sink sends spans
    /// and log records in requests of their own): `failed` of its records, drop markers not
    /// counted, were not written (counted failed), `permanent` of those for good (counted
    /// `failed_permanent` as well), the others were written (counted exported), and
    /// `markers_written` says whether its drop markers were.
    #[error("{}", mixed_text(*.failed, *.markers_written))]
    Mixed {
        /// How many records (drop markers not counted) were not written.
        failed: usize,
        /// How many of those were refused for good: no retry could deliver them (the OTLP
        /// sink's spans refused with HTTP 400, say, while its log records met a timeout).
        /// Capped at `failed`; when `source` is itself permanent, all `failed` records count
        /// as refused for good, whatever this says.
        permanent: usize,
        /// Whether the batch's drop markers were written (their losses then count as
        /// reported).
        markers_written: bool,
        /// Why those were not.
        #[source]
        source: Box<SinkError>,
    },
}

/// What a [`SinkError::Mixed`] says: the records not written, or, when only drop markers were
/// lost (a batch of markers alone), those.
fn mixed_text(failed: usize, markers_written: bool) -> String {
    match (failed, markers_written) {
        (0, false) => "the batch's drop markers were not written".to_owned(),
        (n, _) => format!("{n} records of the batch were not written"),
    }
}

impl SinkError {
    /// Whether retrying cannot help: [`Fatal`](Self::Fatal), or a [`Partial`](Self::Partial)
    /// export that stopped on one. What a sink fails with is counted
    /// [`failed_permanent`](crate::SinkStats::failed_permanent) when this is true (and a
    /// [`Mixed`](Self::Mixed) error's `permanent` records when it is not).
    pub fn is_permanent(&self) -> bool {
        match self {
            SinkError::Fatal(_) => true,
            SinkError::Partial { source, .. } | SinkError::Mixed { source, .. } => {
                source.is_permanent()
            }
            SinkError::Io { .. } | SinkError::Retryable(_) => false,
        }
    }

    /// Whether the batch's drop markers were written despite the error: the first record of a
    /// [`Partial`](Self::Partial) write (where a batch's marker is), as a
    /// [`Mixed`](Self::Mixed) one says; not otherwise.
    pub(crate) fn markers_written(&self) -> bool {
        match self {
            SinkError::Partial { written, .. } => *written > 0,
            SinkError::Mixed {
                markers_written, ..
            } => *markers_written,
            _ => false,
        }
    }

    /// This error followed by each of its sources, joined by `": "` (as `anyhow` prints a
    /// chain with `{:#}`): what health and stats show as a sink's last error.
    pub(crate) fn with_sources(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(e) = source {
            text.push_str(": ");
            text.push_str(&e.to_string());
            source = e.source();
        }
        text
    }

    /// Wraps an I/O error with what the sink was doing.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SinkError::Io {
            context: context.into(),
            source,
        }
    }

    /// `source`, after the first `written` records of the batch were written; with `written`
    /// 0 it is `source` itself.
    ///
    /// ```
    /// use tracing_offload::sink::SinkError;
    /// let full = std::io::Error::other("No space left on device");
    /// let e = SinkError::partial(3, SinkError::io("writing app.jsonl", full));
    /// assert_eq!(e.written(), 3);
    /// assert!(e.to_string().contains("the first 3 records"));
    /// ```
    pub fn partial(written: usize, source: SinkError) -> Self {
        match written {
            0 => source,
            written => SinkError::Partial {
                written,
                source: Box::new(source),
            },
        }
    }

    /// How many records from the start of the batch were written despite the error (0 unless
    /// [`SinkError::Partial`]).
    pub fn written(&self) -> usize {
        match self {
            SinkError::Partial { written, .. } => *written,
            _ => 0,
        }
    }
}

/// Opens `path` with `options` without waiting for the other end of a FIFO (a named pipe), then
/// makes the descriptor blocking again: opening a FIFO for writing waits for a reader, for
/// reading waits for a writer, and `build()` or a sink's thread would wait for ever. Without the
/// other end, opening to write fails at once (`ENXIO`), and reading reads as the end. Any other
/// file opens as with `options.open(path)`; every open of a path some other process may have
/// replaced goes through here, so that a FIFO put there between a look and the open is not
/// waited on either.
#[cfg(unix)]
pub(crate) fn open_without_waiting(
    options: &mut std::fs::OpenOptions,
    path: &std::path::Path,
) -> std::io::Result<std::fs::File> {
    use rustix::fs::OFlags;
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = options
        .custom_flags(OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    let flags = rustix::fs::fcntl_getfl(&file)?;
    rustix::fs::fcntl_setfl(&file, flags - OFlags::NONBLOCK)?;
    Ok(file)
}

/// Opens `path` with `options` (no FIFO to wait on here).
#[cfg(not(unix))]
pub(crate) fn open_without_waiting(
    options: &mut std::fs::OpenOptions,
    path: &std::path::Path,
) -> std::io::Result<std::fs::File> {
    options.open(path)
}

/// Whether `e` is the error of opening a FIFO to write while no process reads it (`ENXIO`).
#[cfg(unix)]
pub(crate) fn is_fifo_without_reader(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error())
}

/// Whether `e` is the error of opening a FIFO to write while no process reads it.
#[cfg(not(unix))]
pub(crate) fn is_fifo_without_reader(_: &std::io::Error) -> bool {
    false
}

/// Makes `dir` and its parents (as `create_dir_all` does), one level at a time, noting in
/// `made` (outermost first) each directory this call made: one that another process makes at
/// the same moment is found already there and not noted. A failure part-way leaves what was
/// made noted.
pub(crate) fn make_dirs(
    dir: &std::path::Path,
    made: &mut Vec<std::path::PathBuf>,
) -> std::io::Result<()> {
    use std::path::Component;
    let mut prefix = std::path::PathBuf::new();
    for component in dir.components() {
        prefix.push(component);
        if !matches!(component, Component::Normal(_)) || prefix.is_dir() {
            continue;
        }
        match std::fs::create_dir(&prefix) {
            Ok(()) => made.push(prefix.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && prefix.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `path` made absolute against the current directory now (a program that changes directory
/// later keeps writing where the path named when it was given: adversary pass 60, where a
/// relative JSON-lines path followed the new directory and split the log); as given if the
/// current directory cannot be read.
pub(crate) fn absolute(path: std::path::PathBuf) -> std::path::PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::SinkError;

    #[test]
    fn the_last_error_shown_in_stats_has_the_whole_chain() {
        let os = std::io::Error::from(std::io::ErrorKind::NotFound);
        let text = format!("opening logs/app.jsonl: {os}");
        let err = SinkError::io("opening logs/app.jsonl", os);
        assert_eq!(err.to_string(), "opening logs/app.jsonl");
        assert_eq!(err.with_sources(), text);
        assert_eq!(SinkError::Fatal("no".into()).with_sources(), "no");
    }
}
