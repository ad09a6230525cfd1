//! The async machinery behind [`Otlp`](crate::sink::Otlp) and [`Async`]: one private tokio
//! runtime per sink, created when the pipeline is built and kept for the sink's life.
//!
//! The runtime is a current-thread runtime driven only by the sink's own thread (whose logs,
//! and those of the runtime's blocking threads, the layer does not record): nothing runs on
//! the application's runtime, nothing is created per export, and it works whether the
//! application has no tokio runtime, a current-thread one or a multi-thread one.
//!
//! Write an async sink by implementing [`AsyncSink`] and wrap it in [`Async`]:
//!
//! ```
//! use std::time::Duration;
//! use tracing_offload::sink::{Async, AsyncSink, SinkError};
//! use tracing_offload::{OffloadLayer, Record};
//! use tracing_subscriber::prelude::*;
//!
//! /// Counts records, pretending to send them somewhere asynchronously.
//! struct Remote(std::sync::Arc<std::sync::atomic::AtomicUsize>);
//!
//! impl AsyncSink for Remote {
//!     fn name(&self) -> &str {
//!         "remote"
//!     }
//!     async fn export(&mut self, batch: &[Record]) -> Result<(), SinkError> {
//!         tokio::task::yield_now().await; // e.g. an HTTP request
//!         self.0.fetch_add(batch.len(), std::sync::atomic::Ordering::Relaxed);
//!         Ok(())
//!     }
//! }
//!
//! let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
//! let sink = Async::new(Remote(sent.clone())).export_timeout(Duration::from_secs(5));
//! let (layer, guard) = OffloadLayer::builder().sink(sink).build()?;
//! tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
//!     tracing::info!("hello");
//! });
//! guard.shutdown(Duration::from_secs(5))?;
//! assert_eq!(sent.load(std::sync::atomic::Ordering::Relaxed), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::future::Future;
use std::time::{Duration, Instant};

use crate::record::Record;
use crate::sink::{Sink, SinkError};

/// A sink whose work is async. Runs on its own thread and private runtime through [`Async`].
pub trait AsyncSink: Send + 'static {
    /// A short name for stats and metrics (see [`Sink::name`]).
    fn name(&self) -> &str;

    /// Prepares the sink (inside its runtime).
    fn start(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send {
        async { Ok(()) }
    }

    /// Writes one batch (see [`Sink::export`]).
    fn export(&mut self, batch: &[Record]) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Makes what was exported durable.
    fn flush(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send {
        async { Ok(()) }
    }

    /// Releases resources.
    fn shutdown(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send {
        async { Ok(()) }
    }
}

/// One private runtime, driven from the sink's thread.
#[derive(Debug)]
pub(crate) struct BackgroundRuntime {
    rt: Option<tokio::runtime::Runtime>,
}

/// A sink's private runtime: current-thread, whose blocking threads (name resolution) are
/// marked as the crate's own, like every thread the crate starts.
pub(crate) fn private_runtime(what: &str) -> Result<tokio::runtime::Runtime, SinkError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_start(crate::silent::mark_thread)
        .build()
        .map_err(|e| SinkError::io(format!("starting the runtime of {what}"), e))
}

impl BackgroundRuntime {
    pub(crate) fn new(what: &str) -> Result<Self, SinkError> {
        private_runtime(what).map(|rt| BackgroundRuntime { rt: Some(rt) })
    }

    fn rt(&self) -> Result<&tokio::runtime::Runtime, SinkError> {
        self.rt
            .as_ref()
            .ok_or_else(|| SinkError::Fatal("the sink's runtime was shut down".to_owned()))
    }

    /// Runs `f` with this runtime as the current one, without blocking on it: for `start`,
    /// which runs on the application's thread, maybe inside the application's runtime.
    pub(crate) fn enter<T>(&self, f: impl FnOnce() -> T) -> Result<T, SinkError> {
        let _in_ours = self.rt()?.enter();
        Ok(f())
    }

    /// Drives `fut` to completion on the sink's thread, giving up at `deadline`.
    pub(crate) fn run<T>(
        &self,
        deadline: Instant,
        fut: impl Future<Output = T>,
    ) -> Result<T, SinkError> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.rt()?
            .block_on(async { tokio::time::timeout(left, fut).await })
            .map_err(|_| SinkError::Retryable("timed out".to_owned()))
    }

    /// Stops the runtime, waiting at most until `deadline` for its tasks.
    pub(crate) fn shutdown(&mut self, deadline: Instant) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(deadline.saturating_duration_since(Instant::now()));
        }
    }
}

impl Drop for BackgroundRuntime {
    fn drop(&mut self) {
        // Never block here: this may run inside an application's async context (e.g. when
        // `build()` fails after this sink started).
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Runs an [`AsyncSink`] as a [`Sink`]: on the sink's own thread, with one private runtime
/// for its whole life, each export bounded by [`export_timeout`](Self::export_timeout).
pub struct Async<S> {
    inner: S,
    name: String,
    export_timeout: Duration,
    rt: Option<BackgroundRuntime>,
}

impl<S> std::fmt::Debug for Async<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Async")
            .field("name", &self.name)
            .field("export_timeout", &self.export_timeout)
            .finish_non_exhaustive()
    }
}

/// The default bound on one [`Async`] export.
pub const DEFAULT_ASYNC_EXPORT_TIMEOUT: Duration = Duration::from_secs(30);

impl<S: AsyncSink> Async<S> {
    /// Wraps `inner` (export timeout [`DEFAULT_ASYNC_EXPORT_TIMEOUT`]).
    pub fn new(inner: S) -> Self {
        Async {
            name: inner.name().to_owned(),
            inner,
            export_timeout: DEFAULT_ASYNC_EXPORT_TIMEOUT,
            rt: None,
        }
    }

    /// Bounds each export (and flush); past it the batch counts as failed.
    pub fn export_timeout(mut self, timeout: Duration) -> Self {
        self.export_timeout = timeout;
        self
    }
}

fn not_started() -> SinkError {
    SinkError::Fatal("the sink was not started".to_owned())
}

impl<S: AsyncSink> Sink for Async<S> {
    fn name(&self) -> &str {
        &self.name
    }

    fn start(&mut self) -> Result<(), SinkError> {
        let rt = BackgroundRuntime::new(&self.name)?;
        // `start` may run inside the application's runtime: drive ours from a scoped thread.
        let inner = &mut self.inner;
        let deadline = crate::clock::deadline_after(self.export_timeout);
        std::thread::scope(|s| {
            s.spawn(|| {
                crate::silent::mark_thread();
                rt.run(deadline, inner.start())
            })
            .join()
            .map_err(|_| SinkError::Fatal("the sink panicked while starting".to_owned()))?
        })??;
        self.rt = Some(rt);
        Ok(())
    }

    fn export(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        let deadline = crate::clock::deadline_after(self.export_timeout);
        let rt = self.rt.as_ref().ok_or_else(not_started)?;
        rt.run(deadline, self.inner.export(batch))?
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        let deadline = crate::clock::deadline_after(self.export_timeout);
        let rt = self.rt.as_ref().ok_or_else(not_started)?;
        rt.run(deadline, self.inner.flush())?
    }

    fn shutdown(&mut self, deadline: Instant) -> Result<(), SinkError> {
        let Some(mut rt) = self.rt.take() else {
            return Ok(());
        };
        let result = rt.run(deadline, self.inner.shutdown());
        rt.shutdown(deadline);
        result?
    }
}
