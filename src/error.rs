//! [`BuildError`]: why a pipeline could not be built. Each message says what to change.

use crate::env::EnvWarning;
use crate::sampling::SamplingError;
use crate::sink::SinkError;

/// Why [`Builder::build`](crate::Builder::build) failed. Each message says what to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The queue capacity was 0.
    #[error("queue capacity must be at least 1 (got 0); use a power of two such as 65536")]
    ZeroCapacity,
    /// A sink could not start, e.g. its file could not be opened.
    #[error("sink `{sink}` could not start: {source}")]
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
    #[error("invalid environment: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    InvalidEnv(Vec<EnvWarning>),
    /// The admin endpoint could not bind its address (the message names it).
    #[cfg(feature = "admin")]
    #[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
    /// A sampling rate or ratio was outside 0.0..=1.0.
    #[error("{0}; use a rate from 0.0 (keep none) to 1.0 (keep all)")]
    Sampling(#[from] SamplingError),
    /// A thread could not be started.
    #[error("could not start thread: {0}")]
    Spawn(#[from] std::io::Error),
    /// [`init`](crate::init) found a global subscriber already installed.
    #[error("a global tracing subscriber is already set; use `OffloadLayer::builder()` and add the layer to your own subscriber")]
    GlobalSubscriberAlreadySet,
}
