//! Reading environment variables by the OpenTelemetry rules: an empty variable counts as unset;
//! an invalid one gives one [`EnvWarning`] naming the variable, the value (hidden for a variable
//! that may hold secrets), what was expected and the value used instead, never a panic. A leaf module: the value parsers shared by the builder
//! and the sinks.

use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

use serde::Serialize;

/// A problem found while reading an environment variable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EnvWarning {
    /// The variable's name.
    pub var: String,
    /// Its value as found. For a variable that may hold secrets (`OTEL_EXPORTER_OTLP_HEADERS`)
    /// a marker instead (the word `redacted` in square brackets), and an endpoint's password
    /// as `***`.
    pub value: String,
    /// What was expected.
    pub expected: String,
    /// The value used instead.
    pub used: String,
}

/// The base OTLP endpoint (HTTP appends `/v1/traces`, `/v1/logs`).
pub(crate) const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The OTLP traces endpoint, used as is.
pub(crate) const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// The OTLP logs endpoint, used as is.
pub(crate) const OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT";
/// Whether spans are exported (`otlp`, `console`, `none`).
pub(crate) const OTEL_TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
/// Whether events are exported as log records (`otlp`, `console`, `none`).
pub(crate) const OTEL_LOGS_EXPORTER: &str = "OTEL_LOGS_EXPORTER";

/// What a warning shows for the value of a variable that may hold secrets
/// (`OTEL_EXPORTER_OTLP_HEADERS`): its [`EnvWarning::value`], and what `/config` shows for a
/// header's value.
pub(crate) const REDACTED: &str = "[redacted]";

impl fmt::Display for EnvWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value == REDACTED {
            return write!(
                f,
                "ignoring {} (its value is not shown: it may hold secrets): expected {}; using {}",
                self.var, self.expected, self.used
            );
        }
        write!(
            f,
            "ignoring {}={:?}: expected {}; using {}",
            self.var, self.value, self.expected, self.used
        )
    }
}

impl EnvWarning {
    /// The warning as a strict reader's refusal: the value and what was expected, without the
    /// value a lenient reader uses instead (a strict reader uses none: it fails).
    fn refusal(&self) -> String {
        if self.value == REDACTED {
            format!(
                "{} (its value is not shown: it may hold secrets): expected {}",
                self.var, self.expected
            )
        } else {
            format!("{}={:?}: expected {}", self.var, self.value, self.expected)
        }
    }
}

/// The message of a strict reader's error over `warnings`.
pub(crate) fn refusals(warnings: &[EnvWarning]) -> String {
    let each: Vec<String> = warnings.iter().map(EnvWarning::refusal).collect();
    format!("invalid environment: {}", each.join("; "))
}

/// Environment variables that a strict reader refused (`Otlp::try_from_env`, say): every
/// warning. Converts into [`BuildError::InvalidEnv`](crate::BuildError::InvalidEnv).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", refusals(.0))]
pub struct InvalidEnv(pub Vec<EnvWarning>);

/// Reads environment variables with the OTel rules, collecting warnings.
pub(crate) struct EnvReader<'a> {
    lookup: Lookup<'a>,
    pub(crate) warnings: Vec<EnvWarning>,
}

/// Where an [`EnvReader`] finds values.
#[derive(Clone, Copy)]
enum Lookup<'a> {
    /// The process environment, read with `var_os` so that a value that is not UTF-8 is
    /// reported instead of looking unset.
    Process,
    /// A caller's lookup (`Builder::from_env_with` and friends).
    Custom(&'a dyn Fn(&str) -> Option<String>),
}

/// What the lookup found for one variable.
enum Found {
    Unset,
    Value(String),
    /// Set, but not UTF-8: the value shown lossily.
    NotUtf8(String),
}

// === impl EnvReader ===

impl<'a> EnvReader<'a> {
    /// A reader over `lookup`.
    pub(crate) fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        EnvReader {
            lookup: Lookup::Custom(lookup),
            warnings: Vec::new(),
        }
    }

    /// A reader over the process environment: a value that is not UTF-8 gives a warning.
    pub(crate) fn process() -> EnvReader<'static> {
        EnvReader {
            lookup: Lookup::Process,
            warnings: Vec::new(),
        }
    }

    /// A reader over the same lookup, without warnings.
    pub(crate) fn fresh(&self) -> EnvReader<'a> {
        EnvReader {
            lookup: self.lookup,
            warnings: Vec::new(),
        }
    }

    fn find(&self, var: &str) -> Found {
        let found = match self.lookup {
            Lookup::Custom(lookup) => lookup(var).map(Ok),
            Lookup::Process => std::env::var_os(var).map(|v| {
                v.into_string()
                    .map_err(|v| v.to_string_lossy().into_owned())
            }),
        };
        match found {
            None => Found::Unset,
            Some(Err(lossy)) => Found::NotUtf8(lossy),
            Some(Ok(v)) => match v.trim() {
                "" => Found::Unset,
                v => Found::Value(v.to_owned()),
            },
        }
    }

    fn warn_not_utf8(&mut self, var: &str, lossy: String, used: String) {
        self.warnings.push(EnvWarning {
            var: var.to_owned(),
            value: lossy,
            expected: "a UTF-8 value".to_owned(),
            used,
        });
    }

    /// The variable's trimmed value; `None` when unset or empty. A value that is not UTF-8 is
    /// `None` with a warning.
    pub(crate) fn raw(&mut self, var: &str) -> Option<String> {
        self.raw_shown(var, str::to_owned)
    }

    /// [`raw`](Self::raw), with the value in a warning as `show` makes it (e.g. an endpoint
    /// with its password hidden).
    pub(crate) fn raw_shown(&mut self, var: &str, show: fn(&str) -> String) -> Option<String> {
        match self.find(var) {
            Found::Unset => None,
            Found::Value(v) => Some(v),
            Found::NotUtf8(lossy) => {
                self.warn_not_utf8(var, show(&lossy), "nothing (as if unset)".to_owned());
                None
            }
        }
    }

    /// Parses `var`; on failure (a value that is not UTF-8 included) records a warning naming
    /// `default` and returns `None`.
    pub(crate) fn parse<T>(
        &mut self,
        var: &str,
        default: &dyn fmt::Display,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        self.parse_shown(var, default, parse, str::to_owned)
    }

    /// [`parse`](Self::parse) for a variable whose value may hold secrets (request headers):
    /// a warning shows the value as [`REDACTED`], never the value, so `parse`'s message must
    /// say what is wrong and where (e.g. "entry 2 has no `=`") without quoting any of it.
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))] // read by the OTLP sink's variables
    pub(crate) fn parse_secret<T>(
        &mut self,
        var: &str,
        default: &dyn fmt::Display,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        self.parse_shown(var, default, parse, |_| REDACTED.to_owned())
    }

    /// A warning for `var` when it is set: a variable this crate does not read (a per-signal
    /// form of an OTel variable, say), which would otherwise be ignored without a word.
    /// `instead` says what to set; `secret`: the value is not shown.
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))] // read by the OTLP sink's variables
    pub(crate) fn warn_not_read(&mut self, var: &str, instead: &str, secret: bool) {
        let value = match self.find(var) {
            Found::Unset => return,
            Found::Value(v) | Found::NotUtf8(v) => v,
        };
        self.warnings.push(EnvWarning {
            var: var.to_owned(),
            value: if secret { REDACTED.to_owned() } else { value },
            expected: format!("nothing: tracing-offload does not read it; set {instead}"),
            used: format!("{instead} (for both signals)"),
        });
    }

    fn parse_shown<T>(
        &mut self,
        var: &str,
        default: &dyn fmt::Display,
        parse: impl FnOnce(&str) -> Result<T, String>,
        show: fn(&str) -> String,
    ) -> Option<T> {
        let raw = match self.find(var) {
            Found::Unset => return None,
            Found::Value(v) => v,
            Found::NotUtf8(lossy) => {
                self.warn_not_utf8(var, show(&lossy), format!("the default {default}"));
                return None;
            }
        };
        match parse(&raw) {
            Ok(v) => Some(v),
            Err(expected) => {
                self.warnings.push(EnvWarning {
                    var: var.to_owned(),
                    value: show(&raw),
                    expected,
                    used: format!("the default {default}"),
                });
                None
            }
        }
    }
}

/// Parses a positive integer (`> 0`).
#[cfg_attr(not(feature = "otlp"), allow(dead_code))] // read by the OTLP sink's variables
pub(crate) fn positive_usize(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("a whole number greater than 0".to_owned()),
    }
}

/// Parses milliseconds as a whole number.
#[cfg_attr(not(feature = "otlp"), allow(dead_code))] // read by the OTLP sink's variables
pub(crate) fn millis(s: &str) -> Result<Duration, String> {
    s.parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| "a whole number of milliseconds".to_owned())
}

/// A parser for a whole number within `range`, for numeric variables with a documented range
/// (e.g. `whole_number_in(1..=MAX_CAPACITY)`). A value out of range, or too large for the
/// type, fails with a message that says the range.
pub(crate) fn whole_number_in<T>(range: RangeInclusive<T>) -> impl Fn(&str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + fmt::Display,
{
    move |s| match s.parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(format!(
            "a whole number from {} to {}",
            range.start(),
            range.end()
        )),
    }
}

/// A parser for whole milliseconds within `range` (e.g. `millis_in(Duration::ZERO..=MAX)`);
/// the message says the range in milliseconds.
pub(crate) fn millis_in(
    range: RangeInclusive<Duration>,
) -> impl Fn(&str) -> Result<Duration, String> {
    move |s| match s.parse::<u64>().map(Duration::from_millis) {
        Ok(d) if range.contains(&d) => Ok(d),
        _ => Err(format!(
            "a whole number of milliseconds from {} to {}",
            saturating_millis(*range.start()),
            saturating_millis(*range.end())
        )),
    }
}

/// A duration in whole milliseconds, `u64::MAX` for durations too long to count that way.
pub(crate) fn saturating_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What `host:port` variables (`OFFLOAD_ADMIN_ADDR`) take, as their warning says it.
pub(crate) const EXPECTED_HOST_PORT: &str = "an address host:port, such as 127.0.0.1:9464, \
     [::1]:9464 or localhost:9464 (port 0 for any free port), without a scheme or a path";

/// Parses an address to listen on, `host:port`: an IP address and a port (`127.0.0.1:9464`,
/// `[::1]:9464`), or a host name and a port (`localhost:9464`, resolved when it is bound). The
/// port is a whole number from 0 to 65535. Nothing is looked up here: a name that does not
/// resolve fails when it is bound, like a port in use.
pub(crate) fn host_port(s: &str) -> Result<String, String> {
    if s.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(s.to_owned());
    }
    let valid = s.rsplit_once(':').is_some_and(|(host, port)| {
        !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok()
            && is_host_name(host)
    });
    match valid {
        true => Ok(s.to_owned()),
        false => Err(EXPECTED_HOST_PORT.to_owned()),
    }
}

/// Whether `host` is a host name: dot-separated labels of letters, digits, `-` and `_` (not
/// at a label's ends for `-`), the last one not all digits (that would be an IPv4 address,
/// and one that did not parse).
fn is_host_name(host: &str) -> bool {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let last_is_numeric = host
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    host.len() <= 253 && host.split('.').all(label_ok) && !last_is_numeric
}

/// Parses `OTEL_TRACES_EXPORTER` / `OTEL_LOGS_EXPORTER` as OpenTelemetry defines them: a
/// comma-separated list of exporter names, any case, of which this crate knows `otlp`,
/// `console` and `none` (alone); returns whether the list names `otlp`. (The console is a sink
/// of its own here, [`Console`](crate::sink::Console); the variable does not add it.)
pub(crate) fn exporters(s: &str) -> Result<bool, String> {
    const EXPECTED: &str = "otlp, console or none, or a comma-separated list such as otlp,console";
    let names: Vec<String> = s
        .split(',')
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    let known = |name: &String| matches!(name.as_str(), "otlp" | "console" | "none");
    let none_with_others = names.len() > 1 && names.iter().any(|n| n == "none");
    if names.is_empty() || !names.iter().all(known) || none_with_others {
        return Err(EXPECTED.to_owned());
    }
    Ok(names.iter().any(|n| n == "otlp"))
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
    fn an_exporter_variable_is_a_list_of_names() {
        assert_eq!(exporters("otlp"), Ok(true));
        assert_eq!(exporters("OTLP"), Ok(true));
        assert_eq!(exporters("otlp,console"), Ok(true));
        assert_eq!(exporters(" console , OTLP ,"), Ok(true));
        assert_eq!(exporters("console"), Ok(false));
        assert_eq!(exporters("none"), Ok(false));
        for invalid in [
            "otlpp",
            "zipkin",
            "otlp,zipkin",
            "none,otlp",
            ",",
            "otlp;console",
        ] {
            assert!(exporters(invalid).is_err(), "{invalid}");
        }
    }

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

    #[test]
    fn numbers_out_of_their_range_warn_with_the_range() {
        let lookup = |v: &str| match v {
            "HUGE" => Some("1000000000000000".to_owned()),
            "MAX_U64" => Some("18446744073709551615".to_owned()),
            "PAST_U64" => Some("99999999999999999999999".to_owned()),
            "OK" => Some("60000".to_owned()),
            _ => None,
        };
        let mut env = EnvReader::new(&lookup);
        assert_eq!(
            env.parse("HUGE", &7, whole_number_in(1..=1usize << 24)),
            None
        );
        let max = Duration::from_secs(60);
        assert_eq!(
            env.parse("MAX_U64", &7, millis_in(Duration::ZERO..=max)),
            None
        );
        assert_eq!(
            env.parse("PAST_U64", &7, millis_in(Duration::ZERO..=max)),
            None
        );
        assert_eq!(
            env.parse("OK", &7, millis_in(Duration::ZERO..=max)),
            Some(max)
        );
        let w: Vec<String> = env.warnings.iter().map(|w| w.expected.clone()).collect();
        assert_eq!(
            w,
            [
                "a whole number from 1 to 16777216",
                "a whole number of milliseconds from 0 to 60000",
                "a whole number of milliseconds from 0 to 60000"
            ]
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_value_that_is_not_utf8_warns_instead_of_looking_unset() {
        use std::os::unix::ffi::OsStrExt;
        let var = "TRACING_OFFLOAD_UNIT_TEST_NOT_UTF8";
        std::env::set_var(var, std::ffi::OsStr::from_bytes(b"12\xff"));
        let mut env = EnvReader::process();
        assert_eq!(env.parse(var, &7, positive_usize), None);
        assert_eq!(env.raw(var), None);
        std::env::remove_var(var);
        assert_eq!(env.warnings.len(), 2, "{:?}", env.warnings);
        let w = &env.warnings[0];
        assert_eq!(
            (w.value.as_str(), w.used.as_str()),
            ("12\u{fffd}", "the default 7")
        );
        assert_eq!(w.expected, "a UTF-8 value");
        assert_eq!(env.warnings[1].used, "nothing (as if unset)");
    }

    #[test]
    fn a_secret_variable_is_never_shown_in_its_warning() {
        let var = "TRACING_OFFLOAD_UNIT_TEST_SECRET";
        let lookup = |v: &str| (v == var).then(|| "Authorization: Bearer s3cr3t".to_owned());
        let mut env = EnvReader::new(&lookup);
        let parsed = env.parse_secret(var, &"none", |_| {
            Err::<(), _>("key=value pairs, but entry 1 has no `=`".to_owned())
        });
        assert_eq!(parsed, None);
        let w = &env.warnings[0];
        assert_eq!(w.value, REDACTED);
        assert_eq!(
            w.to_string(),
            "ignoring TRACING_OFFLOAD_UNIT_TEST_SECRET (its value is not shown: it may hold \
             secrets): expected key=value pairs, but entry 1 has no `=`; using the default none"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_variable_that_is_not_utf8_is_not_shown_either() {
        use std::os::unix::ffi::OsStrExt;
        let var = "TRACING_OFFLOAD_UNIT_TEST_SECRET_NOT_UTF8";
        std::env::set_var(var, std::ffi::OsStr::from_bytes(b"k=s3cr3t\xff"));
        let mut env = EnvReader::process();
        assert_eq!(env.parse_secret(var, &"none", |_| Ok(())), None);
        std::env::remove_var(var);
        assert_eq!(env.warnings[0].value, REDACTED);
        assert_eq!(env.warnings[0].expected, "a UTF-8 value");
    }

    #[test]
    fn host_port_takes_ip_addresses_and_host_names_with_a_port() {
        for ok in [
            "127.0.0.1:9464",
            "0.0.0.0:0",
            "[::1]:9464",
            "localhost:9464",
            "metrics.internal:65535",
            "my_host-1:80",
        ] {
            assert_eq!(host_port(ok).as_deref(), Ok(ok), "{ok}");
        }
        for bad in [
            "http://127.0.0.1:9464",
            "localhost:99999",
            "127.0.0.1:9464x",
            "127.0.0.1",
            ":9464",
            "localhost:",
            "localhost:+80",
            "127.0.0.1:9464/metrics",
            "::1:9464",
            "local host:9464",
            "999.0.0.1:80",
            "-host:80",
            "host..name:80",
            "[::1]",
        ] {
            assert_eq!(host_port(bad), Err(EXPECTED_HOST_PORT.to_owned()), "{bad}");
        }
    }

    #[test]
    fn durations_become_milliseconds_without_wrapping() {
        assert_eq!(saturating_millis(Duration::from_millis(1500)), 1500);
        assert_eq!(saturating_millis(Duration::MAX), u64::MAX);
        assert_eq!(
            saturating_millis(Duration::from_secs(u64::MAX / 500)),
            u64::MAX
        );
    }
}
