//! `sink::Channel`: live records to consumers in the same process.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::time::{Duration, Instant};

use crate::record::Record;
use crate::sink::{Sink, SinkError};

/// Hands every record to a [`ChannelReceiver`] in the same process: the in-process fast path,
/// and what tests use to see what was emitted.
///
/// Bounded and best-effort: the channel holds `capacity` records; while the receiver lags, the
/// sink's own buffer fills, and what does not fit is dropped and counted (reason
/// `sink_buffer_full`) in [`Stats`](crate::Stats). If the receiver is dropped, exports fail
/// and are counted as failed.
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
}

/// The receiving end of a [`Channel`].
#[derive(Debug)]
pub struct ChannelReceiver {
    rx: Receiver<Record>,
}

// === impl Channel ===

impl Channel {
    /// A sink named `channel` and its receiver; the channel holds `capacity` records.
    pub fn new(capacity: usize) -> (Channel, ChannelReceiver) {
        let (tx, rx) = mpsc::sync_channel(capacity.max(1));
        (
            Channel {
                name: "channel".to_owned(),
                tx,
            },
            ChannelReceiver { rx },
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

    fn export(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        for (sent, record) in batch.iter().enumerate() {
            if self.tx.send(record.clone()).is_err() {
                // The records sent before it went away were the receiver's (adversary pass 57:
                // the whole batch was counted failed).
                let gone = SinkError::Fatal("the channel's receiver was dropped".to_owned());
                return Err(SinkError::partial(sent, gone));
            }
        }
        Ok(())
    }

    fn wants_span_events(&self) -> bool {
        true
    }
}

// === impl ChannelReceiver ===

impl ChannelReceiver {
    /// The next record, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Record> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// Every record available now, without waiting.
    pub fn drain(&self) -> Vec<Record> {
        self.rx.try_iter().collect()
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
                    if !matches!(r, Record::Dropped(_)) {
                        data += 1;
                    }
                    out.push(r);
                }
                Err(_) => break,
            }
        }
        out
    }
}
