//! [`BuildError`]: why a pipeline could not be built. Each message says what to change.

use crate::env::{EnvWarning, InvalidEnv};
use crate::sampling::SamplingError;
use crate::sink::SinkError;

/// Why [`Builder::build`](crate::Builder::build) failed. Each message says what to change.
///
/// An inner error is shown once: either the message includes it, or
/// [`source`](std::error::Error::source) returns it (never both, as the Rust API guidelines
/// ask), so a chain printer such as `anyhow`'s `{:#}` prints each cause once. Print the chain
/// to see the cause of [`Sink`](Self::Sink), [`Spawn`](Self::Spawn) and
#[cfg_attr(feature = "admin", doc = "[`Admin`](Self::Admin) errors:")]
#[cfg_attr(not(feature = "admin"), doc = "`Admin` errors (`admin` feature):")]
///
/// ```
/// use std::error::Error;
/// # let dir = tempfile::tempdir()?;
/// # let not_a_dir = dir.path().join("file");
/// # std::fs::write(&not_a_dir, "")?;
/// let err = tracing_offload::OffloadLayer::builder()
///     .sink(tracing_offload::sink::JsonFile::new(not_a_dir.join("app.jsonl")))
///     .build()
///     .unwrap_err();
/// let mut chain = vec![err.to_string()];
/// let mut source = err.source();
/// while let Some(e) = source {
///     chain.push(e.to_string());
///     source = e.source();
/// }
/// // "sink `json` could not start: creating the directory of …: File exists (os error 17)"
/// assert_eq!(chain[0], "sink `json` could not start");
/// assert_eq!(chain.len(), 3);
/// # Ok::<(), Box<dyn Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The queue capacity was 0. No longer returned: a capacity of 0 is
    /// [`OutOfRange`](Self::OutOfRange), as every count outside its range is.
    #[deprecated(note = "no longer returned: a capacity of 0 is `BuildError::OutOfRange`")]
    #[error("queue capacity must be at least 1 (got 0); use 1 to 16777216 records")]
    ZeroCapacity,
    /// A numeric setting was outside its documented range (see the table on
    /// [`Builder`](crate::Builder)).
    #[error("{setting} is {value}, outside its range; use {range}")]
    OutOfRange {
        /// The setting, e.g. `` `capacity` ``.
        setting: String,
        /// The value given.
        value: String,
        /// The range allowed, e.g. `1 to 16777216 records`.
        range: String,
    },
    /// A sink could not start, e.g. its file could not be opened (the reason is the
    /// [`source`](std::error::Error::source)).
    #[error("sink `{sink}` could not start")]
    Sink {
        /// The sink's name.
        sink: String,
        /// What went wrong.
        #[source]
        source: SinkError,
    },
    /// Two sinks had the same name.
    #[error("two sinks are named `{0}`; give one of them another name (e.g. `JsonFile::new(..).name(\"audit\")`)")]
    DuplicateSinkName(String),
    /// The strict [`Builder::try_from_env`](crate::Builder::try_from_env) found invalid environment variables.
    #[error("{}", crate::env::refusals(.0))]
    InvalidEnv(Vec<EnvWarning>),
    /// The admin endpoint could not bind its address (the message names it).
    #[cfg(feature = "admin")]
    #[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
    /// A sampling rate or ratio was outside 0.0..=1.0 (the message names it; no
    /// [`source`](std::error::Error::source)).
    #[error("{0}; use a rate from 0.0 (keep none) to 1.0 (keep all)")]
    Sampling(SamplingError),
    /// One of the pipeline's threads could not be started: the process is out of threads or
    /// memory (the OS error is the [`source`](std::error::Error::source)). Nothing is left
    /// behind: every sink was [abandoned](crate::sink::Sink::abandon), the threads already
    /// started have ended, and the admin endpoint, if any, is stopped.
    #[error(
        "could not start the thread `{thread}`; the process may be out of threads or memory: \
         raise its limits (e.g. `ulimit -u`) or use fewer sinks"
    )]
    Spawn {
        /// The thread's name: `offload-sink-<sink name>` or `offload-drain`.
        thread: String,
        /// Why the system refused.
        #[source]
        source: std::io::Error,
    },
    /// [`init`](crate::init) found a global subscriber already installed.
    #[error("a global tracing subscriber is already set; use `OffloadLayer::builder()` and add the layer to your own subscriber")]
    GlobalSubscriberAlreadySet,
}

impl From<SamplingError> for BuildError {
    fn from(e: SamplingError) -> Self {
        BuildError::Sampling(e)
    }
}

impl From<InvalidEnv> for BuildError {
    fn from(e: InvalidEnv) -> Self {
        BuildError::InvalidEnv(e.0)
    }
}
