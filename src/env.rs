//! Reading environment variables by the OpenTelemetry rules: an empty variable counts as unset;
//! an invalid one gives one [`EnvWarning`] naming the variable, the value, what was expected and
//! the value used instead, never a panic. A leaf module: the value parsers shared by the builder
//! and the sinks.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// A problem found while reading an environment variable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EnvWarning {
    /// The variable's name.
    pub var: String,
    /// Its value as found.
    pub value: String,
    /// What was expected.
    pub expected: String,
    /// The value used instead.
    pub used: String,
}

impl fmt::Display for EnvWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ignoring {}={:?}: expected {}; using {}",
            self.var, self.value, self.expected, self.used
        )
    }
}

/// Reads environment variables with the OTel rules, collecting warnings.
pub(crate) struct EnvReader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    pub(crate) warnings: Vec<EnvWarning>,
}

impl<'a> EnvReader<'a> {
    pub(crate) fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        EnvReader {
            lookup,
            warnings: Vec::new(),
        }
    }

    /// The variable's trimmed value; `None` when unset or empty.
    pub(crate) fn raw(&self, var: &str) -> Option<String> {
        (self.lookup)(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// Parses `var`; on failure records a warning naming `default` and returns `None`.
    pub(crate) fn parse<T>(
        &mut self,
        var: &str,
        default: &dyn fmt::Display,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let raw = self.raw(var)?;
        match parse(&raw) {
            Ok(v) => Some(v),
            Err(expected) => {
                self.warnings.push(EnvWarning {
                    var: var.to_owned(),
                    value: raw,
                    expected,
                    used: format!("the default {default}"),
                });
                None
            }
        }
    }
}

/// Parses a positive integer (`> 0`).
pub(crate) fn positive_usize(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("a whole number greater than 0".to_owned()),
    }
}

/// Parses milliseconds as a whole number.
pub(crate) fn millis(s: &str) -> Result<Duration, String> {
    s.parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| "a whole number of milliseconds".to_owned())
}

/// Parses an OTel boolean: `true` or `false`, any case.
pub(crate) fn boolean(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("true or false".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_unset_and_invalid_warns_with_the_default() {
        let lookup = |v: &str| match v {
            "EMPTY" => Some("  ".to_owned()),
            "BAD" => Some("abc".to_owned()),
            "GOOD" => Some(" 42 ".to_owned()),
            _ => None,
        };
        let mut env = EnvReader::new(&lookup);
        assert_eq!(env.parse("EMPTY", &7, positive_usize), None);
        assert_eq!(env.parse("UNSET", &7, positive_usize), None);
        assert_eq!(env.parse("GOOD", &7, positive_usize), Some(42));
        assert!(env.warnings.is_empty());
        assert_eq!(env.parse("BAD", &7, positive_usize), None);
        let w = env.warnings[0].to_string();
        assert!(
            w.contains("BAD") && w.contains("abc") && w.contains("the default 7"),
            "{w}"
        );
    }
}
