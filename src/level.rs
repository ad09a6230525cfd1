//! The `LogLevel` taxonomy and its mappings to `tracing`, OpenTelemetry and text.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The six levels this crate speaks, one more than `tracing` has.
///
/// | `tracing`   | `LogLevel`  | OTel severity number | OTel severity text |
/// |-------------|-------------|----------------------|--------------------|
/// | `TRACE`     | `Trace`     | 1                    | `TRACE`            |
/// | `DEBUG`     | `Debug`     | 5                    | `DEBUG`            |
/// | `INFO`      | `Info`      | 9                    | `INFO`             |
/// | `WARN`      | `Warning`   | 13                   | `WARN`             |
/// | `ERROR`     | `Error`     | 17                   | `ERROR`            |
/// | `ERROR` + critical | `Critical` | 21            | `FATAL`            |
///
/// An `ERROR` event becomes `Critical` when it carries the field `critical = true` or when its
/// target starts with one of the prefixes given to
/// [`Builder::critical_target`](crate::Builder::critical_target). Critical records are never
/// sampled out and always take the blocking path when the queue is full.
///
/// ```
/// use tracing_offload::LogLevel;
/// assert_eq!(LogLevel::from(tracing::Level::WARN), LogLevel::Warning);
/// assert_eq!(LogLevel::Critical.severity_number(), 21);
/// assert_eq!("warn".parse::<LogLevel>().unwrap(), LogLevel::Warning);
/// assert!(LogLevel::Error < LogLevel::Critical);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Very verbose diagnostics (`tracing::Level::TRACE`).
    Trace,
    /// Diagnostics for developers (`tracing::Level::DEBUG`).
    Debug,
    /// Normal operation (`tracing::Level::INFO`).
    Info,
    /// Something unexpected that the program handled (`tracing::Level::WARN`).
    Warning,
    /// A failed operation (`tracing::Level::ERROR`).
    Error,
    /// A failure that needs a human now: an `ERROR` marked critical.
    Critical,
}

// === impl LogLevel ===

impl LogLevel {
    /// All levels, from the least to the most severe.
    pub const ALL: [LogLevel; 6] = [
        LogLevel::Trace,
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warning,
        LogLevel::Error,
        LogLevel::Critical,
    ];

    /// Maps a `tracing` level (never yields `Critical`; see the type docs for how that is made).
    #[inline]
    pub fn from_tracing(level: &tracing::Level) -> Self {
        match *level {
            tracing::Level::ERROR => LogLevel::Error,
            tracing::Level::WARN => LogLevel::Warning,
            tracing::Level::INFO => LogLevel::Info,
            tracing::Level::DEBUG => LogLevel::Debug,
            _ => LogLevel::Trace,
        }
    }

    /// The OpenTelemetry severity number: the first of each OTel range (1, 5, 9, 13, 17, 21).
    pub const fn severity_number(self) -> u8 {
        match self {
            LogLevel::Trace => 1,
            LogLevel::Debug => 5,
            LogLevel::Info => 9,
            LogLevel::Warning => 13,
            LogLevel::Error => 17,
            LogLevel::Critical => 21,
        }
    }

    /// The OpenTelemetry severity text (`TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR`, `FATAL`).
    pub const fn severity_text(self) -> &'static str {
        match self {
            LogLevel::Trace => "TRACE",
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warning => "WARN",
            LogLevel::Error => "ERROR",
            LogLevel::Critical => "FATAL",
        }
    }

    /// The lower-case name used in JSON lines and configuration (`warning`, `critical`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
        }
    }
}

impl From<tracing::Level> for LogLevel {
    fn from(level: tracing::Level) -> Self {
        LogLevel::from_tracing(&level)
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The error returned when text does not name a [`LogLevel`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log level {0:?}: expected one of trace, debug, info, warning (or warn), error, critical (or fatal)")]
pub struct ParseLevelError(String);

impl FromStr for LogLevel {
    type Err = ParseLevelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "trace" => Ok(LogLevel::Trace),
            "debug" => Ok(LogLevel::Debug),
            "info" => Ok(LogLevel::Info),
            "warning" | "warn" => Ok(LogLevel::Warning),
            "error" => Ok(LogLevel::Error),
            "critical" | "fatal" => Ok(LogLevel::Critical),
            _ => Err(ParseLevelError(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_every_tracing_level() {
        use tracing::Level;
        let pairs = [
            (Level::TRACE, LogLevel::Trace),
            (Level::DEBUG, LogLevel::Debug),
            (Level::INFO, LogLevel::Info),
            (Level::WARN, LogLevel::Warning),
            (Level::ERROR, LogLevel::Error),
        ];
        for (t, l) in pairs {
            assert_eq!(LogLevel::from(t), l);
        }
    }

    #[test]
    fn severity_numbers_are_otel_range_starts_and_text_round_trips() {
        let numbers: Vec<u8> = LogLevel::ALL.iter().map(|l| l.severity_number()).collect();
        assert_eq!(numbers, [1, 5, 9, 13, 17, 21]);
        for level in LogLevel::ALL {
            assert_eq!(level.as_str().parse::<LogLevel>().unwrap(), level);
            assert_eq!(level.severity_text().parse::<LogLevel>().unwrap(), level);
        }
        assert!("loud"
            .parse::<LogLevel>()
            .unwrap_err()
            .to_string()
            .contains("loud"));
    }
}
