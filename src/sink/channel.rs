//! `sink::Channel`: live records to consumers in the same process.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::record::Record;
use crate::sink::{Sink, SinkError, MAX_SINK_BUFFER_CAPACITY};

/// Hands every record to a [`ChannelReceiver`] in the same process: the in-process fast path,
/// and what tests use to see what was emitted.
///
/// Bounded and best-effort: the channel holds `capacity` records; while the receiver lags, the
/// sink's own buffer fills, and what does not fit is dropped and counted (reason
/// `sink_buffer_full`) in [`Stats`](crate::Stats). If the receiver is dropped, exports fail
/// and are counted as failed, and the records the channel still held, unread, count as
/// [`lost_after_export`](crate::SinkStats::lost_after_export): they were counted exported
/// when sent. The stats are final once the pipeline has shut down: what a receiver dropped
/// after that leaves unread is not counted.
///
/// ```
/// use std::time::Duration;
/// use tracing_offload::{sink, OffloadLayer, Record};
/// use tracing_subscriber::prelude::*;
///
/// let (channel, rx) = sink::Channel::new(1024);
/// let (layer, guard) = OffloadLayer::builder().sink(channel).build()?;
/// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
///     tracing::info!("hello");
/// });
/// let records = rx.wait_for(1, Duration::from_secs(5));
/// assert!(matches!(&records[0], Record::Event(e) if e.message().unwrap().text == "hello"));
/// # drop(guard);
/// # Ok::<(), tracing_offload::BuildError>(())
/// ```
#[derive(Debug)]
pub struct Channel {
    name: String,
    tx: SyncSender<Record>,
    /// Events and spans sent (drop markers are not counted exported, nor here).
    sent: u64,
    reads: Arc<Reads>,
    /// A capacity asked for past [`MAX_SINK_BUFFER_CAPACITY`]: `start` fails with it.
    too_large: Option<usize>,
}

/// The receiving end of a [`Channel`].
#[derive(Debug)]
pub struct ChannelReceiver {
    rx: Receiver<Record>,
    reads: Arc<Reads>,
}

/// What the receiver took, for the sink to know what a dropped receiver left unread.
#[derive(Debug, Default)]
struct Reads {
    /// Events and spans received.
    received: AtomicU64,
    /// The receiver was dropped: `received` is final.
    gone: AtomicBool,
}

// === impl Channel ===

impl Channel {
    /// A sink named `channel` and its receiver; the channel holds `capacity` records (1 to
    /// [`MAX_SINK_BUFFER_CAPACITY`]: the channel is allocated whole, so a larger one fails
    /// `build()`, where it would abort the process; 0 counts as 1).
    pub fn new(capacity: usize) -> (Channel, ChannelReceiver) {
        // Adversary pass 65: `usize::MAX` panicked here, `1 << 32` aborted the process.
        let too_large = (capacity > MAX_SINK_BUFFER_CAPACITY).then_some(capacity);
        let (tx, rx) = mpsc::sync_channel(capacity.clamp(1, MAX_SINK_BUFFER_CAPACITY));
        let reads = Arc::new(Reads::default());
        (
            Channel {
                name: "channel".to_owned(),
                tx,
                sent: 0,
                reads: Arc::clone(&reads),
                too_large,
            },
            ChannelReceiver { rx, reads },
        )
    }

    /// Renames the sink (default `channel`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

impl Sink for Channel {
    fn name(&self) -> &str {
        &self.name
    }

    fn start(&mut self) -> Result<(), SinkError> {
        match self.too_large {
            Some(capacity) => Err(SinkError::Fatal(format!(
                "a channel of {capacity} records: the capacity is 1 to \
                 {MAX_SINK_BUFFER_CAPACITY} (the channel is allocated whole)"
            ))),
            None => Ok(()),
        }
    }

    fn export(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        for (sent, record) in batch.iter().enumerate() {
            if self.tx.send(record.clone()).is_err() {
                // The records sent before it went away were the receiver's (adversary pass 57:
                // the whole batch was counted failed).
                let gone = SinkError::Fatal("the channel's receiver was dropped".to_owned());
                return Err(SinkError::partial(sent, gone));
            }
            self.sent += u64::from(is_data(record));
        }
        Ok(())
    }

    /// Once the receiver is dropped: what was sent and never received (the channel's buffer
    /// went with it).
    fn lost_after_export(&self) -> u64 {
        if !self.reads.gone.load(Ordering::Acquire) {
            return 0;
        }
        let received = self.reads.received.load(Ordering::Relaxed);
        self.sent.saturating_sub(received)
    }

    fn wants_span_events(&self) -> bool {
        true
    }
}

/// Whether `record` is an event or a span (counted exported), not a drop marker.
fn is_data(record: &Record) -> bool {
    !matches!(record, Record::Dropped(_))
}

// === impl ChannelReceiver ===

impl ChannelReceiver {
    /// Counts `record` as received (an event or a span) and returns it.
    fn took(&self, record: Record) -> Record {
        if is_data(&record) {
            self.reads.received.fetch_add(1, Ordering::Relaxed);
        }
        record
    }

    /// The next record, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Record> {
        self.rx.recv_timeout(timeout).ok().map(|r| self.took(r))
    }

    /// Every record available now, without waiting.
    pub fn drain(&self) -> Vec<Record> {
        self.rx.try_iter().map(|r| self.took(r)).collect()
    }

    /// Collects records until `n` events or spans (drop markers not counted) have arrived, or
    /// `timeout` passes; returns what arrived, markers included.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Record> {
        let deadline = crate::clock::deadline_after(timeout);
        let mut out = Vec::new();
        let mut data = 0;
        while data < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(r) => {
                    if is_data(&r) {
                        data += 1;
                    }
                    out.push(self.took(r));
                }
                Err(_) => break,
            }
        }
        out
    }
}

impl Drop for ChannelReceiver {
    fn drop(&mut self) {
        // Release: the sink reads `received` after seeing this (Acquire).
        self.reads.gone.store(true, Ordering::Release);
    }
}
