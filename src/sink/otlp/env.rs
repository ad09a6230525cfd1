//! OpenTelemetry's standard variables for the OTLP sink: each variable's name paired with its
//! default, and the parsers of the OTel value formats (`k=v` lists, percent-encoding).

use std::fmt;
use std::time::Duration;

use super::{
    EventsAsLogs, Otlp, Protocol, Tls, DEFAULT_EXPORT_TIMEOUT, DEFAULT_MAX_EXPORT_BATCH_SIZE,
    DEFAULT_MAX_QUEUE_SIZE, DEFAULT_OTLP_TIMEOUT, DEFAULT_SPOOL_MAX_BYTES, MAX_SPOOL_MAX_BYTES,
    MIN_SPOOL_MAX_BYTES,
};
use crate::env::EnvReader;

// The endpoint and exporter variables, which `init()` reads too with or without this feature.
pub(crate) use crate::env::{
    OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_LOGS_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_LOGS_EXPORTER, OTEL_TRACES_EXPORTER,
};
/// The transport.
pub(crate) const OTEL_EXPORTER_OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// Default transport.
pub(crate) const OTEL_EXPORTER_OTLP_PROTOCOL_DEFAULT: &str = "grpc";
/// Request headers (gRPC metadata).
pub(crate) const OTEL_EXPORTER_OTLP_HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
/// Default headers: none.
pub(crate) const OTEL_EXPORTER_OTLP_HEADERS_DEFAULT: &str = "none";
/// The timeout of one request, in milliseconds.
/// The range of the timeout variables: 0 would fail every export, and more than ten minutes is
/// a typo more likely than a wish.
const ENV_TIMEOUT_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(600);

pub(crate) const OTEL_EXPORTER_OTLP_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
/// Default timeout of one request.
pub(crate) const OTEL_EXPORTER_OTLP_TIMEOUT_DEFAULT: Duration = DEFAULT_OTLP_TIMEOUT;
/// Request compression.
pub(crate) const OTEL_EXPORTER_OTLP_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";
/// Default compression: none.
pub(crate) const OTEL_EXPORTER_OTLP_COMPRESSION_DEFAULT: &str = "none";
/// A PEM file of CA certificates to trust, for both signals.
pub(crate) const OTEL_EXPORTER_OTLP_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_CERTIFICATE";
/// The client's PEM certificate (mTLS), for both signals.
pub(crate) const OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: &str =
    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE";
/// The client's PEM private key (mTLS), for both signals.
pub(crate) const OTEL_EXPORTER_OTLP_CLIENT_KEY: &str = "OTEL_EXPORTER_OTLP_CLIENT_KEY";
/// The CA file for traces.
pub(crate) const OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE: &str =
    "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE";
/// The client certificate for traces.
pub(crate) const OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE: &str =
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE";
/// The client key for traces.
pub(crate) const OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY: &str =
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY";
/// The CA file for logs.
pub(crate) const OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE";
/// The client certificate for logs.
pub(crate) const OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE: &str =
    "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE";
/// The client key for logs.
pub(crate) const OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY: &str = "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY";
/// Resource attributes, `k=v,…`.
pub(crate) const OTEL_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
/// Default resource attributes: none.
pub(crate) const OTEL_RESOURCE_ATTRIBUTES_DEFAULT: &str = "none";
/// `service.name`, over `OTEL_RESOURCE_ATTRIBUTES`.
pub(crate) const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
/// One export including its retries, in milliseconds.
pub(crate) const OTEL_BSP_EXPORT_TIMEOUT: &str = "OTEL_BSP_EXPORT_TIMEOUT";
/// Default bound on one export.
pub(crate) const OTEL_BSP_EXPORT_TIMEOUT_DEFAULT: Duration = DEFAULT_EXPORT_TIMEOUT;
/// Records per request.
pub(crate) const OTEL_BSP_MAX_EXPORT_BATCH_SIZE: &str = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE";
/// Default records per request.
pub(crate) const OTEL_BSP_MAX_EXPORT_BATCH_SIZE_DEFAULT: usize = DEFAULT_MAX_EXPORT_BATCH_SIZE;
/// The sink's buffer in records.
pub(crate) const OTEL_BSP_MAX_QUEUE_SIZE: &str = "OTEL_BSP_MAX_QUEUE_SIZE";
/// Default buffer.
pub(crate) const OTEL_BSP_MAX_QUEUE_SIZE_DEFAULT: usize = DEFAULT_MAX_QUEUE_SIZE;
/// The batch processor's delay; validated only, since batches are the pipeline's.
pub(crate) const OTEL_BSP_SCHEDULE_DELAY: &str = "OTEL_BSP_SCHEDULE_DELAY";
/// The OTel default delay, named in its warning.
pub(crate) const OTEL_BSP_SCHEDULE_DELAY_DEFAULT: Duration = Duration::from_millis(5_000);
/// Default exporter for both signals.
pub(crate) const OTEL_EXPORTER_DEFAULT: &str = "otlp";
/// This crate's own: the directory of the sink's spool (none by default).
pub(crate) const OFFLOAD_OTLP_SPOOL_DIR: &str = "OFFLOAD_OTLP_SPOOL_DIR";
/// This crate's own: the spool's budget in bytes.
pub(crate) const OFFLOAD_OTLP_SPOOL_MAX_BYTES: &str = "OFFLOAD_OTLP_SPOOL_MAX_BYTES";
/// Default spool budget.
pub(crate) const OFFLOAD_OTLP_SPOOL_MAX_BYTES_DEFAULT: u64 = DEFAULT_SPOOL_MAX_BYTES;

/// A duration shown as the milliseconds the variables take, for warnings.
struct Millis(Duration);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_millis())
    }
}

// === impl Otlp ===

impl Otlp {
    /// [`from_env`](Self::from_env) with a custom lookup.
    pub fn from_env_with(lookup: &dyn Fn(&str) -> Option<String>) -> Self {
        Self::from_reader(EnvReader::new(lookup))
    }

    /// Reads the variables through `env` (the process environment, or a custom lookup).
    pub(crate) fn from_reader(mut env: EnvReader<'_>) -> Self {
        let mut s = Self::new();
        s.read_transport(&mut env);
        s.read_resource(&mut env);
        s.read_batching(&mut env);
        s.read_signals(&mut env);
        s.read_spool(&mut env);
        s.warnings = env.warnings;
        s
    }

    fn read_transport(&mut self, env: &mut EnvReader<'_>) {
        if let Some(p) = env.parse(
            OTEL_EXPORTER_OTLP_PROTOCOL,
            &OTEL_EXPORTER_OTLP_PROTOCOL_DEFAULT,
            Protocol::parse,
        ) {
            self.protocol = p;
        }
        // An endpoint may carry credentials (`http://user:password@host`): hidden in warnings.
        let redact = |url: &str| super::endpoint::redact(url);
        self.endpoint = env.raw_shown(OTEL_EXPORTER_OTLP_ENDPOINT, redact);
        self.traces_endpoint = env.raw_shown(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, redact);
        self.logs_endpoint = env.raw_shown(OTEL_EXPORTER_OTLP_LOGS_ENDPOINT, redact);
        // Header values are secrets (API keys, tokens), and a malformed entry may hold one
        // where a name was expected: a warning says which entry is wrong, never the value.
        if let Some(h) = env.parse_secret(
            OTEL_EXPORTER_OTLP_HEADERS,
            &OTEL_EXPORTER_OTLP_HEADERS_DEFAULT,
            parse_headers,
        ) {
            self.headers = h;
        }
        if let Some(t) = env.parse(
            OTEL_EXPORTER_OTLP_TIMEOUT,
            &Millis(OTEL_EXPORTER_OTLP_TIMEOUT_DEFAULT),
            crate::env::millis_in(ENV_TIMEOUT_RANGE),
        ) {
            self.timeout = t;
        }
        if let Some(gzip) = env.parse(
            OTEL_EXPORTER_OTLP_COMPRESSION,
            &OTEL_EXPORTER_OTLP_COMPRESSION_DEFAULT,
            compression,
        ) {
            self.gzip = gzip;
        }
        // OTel's per-signal forms of these four: not read (one setting serves both signals),
        // so said when set rather than ignored without a word.
        for (general, secret) in [
            (OTEL_EXPORTER_OTLP_HEADERS, true),
            (OTEL_EXPORTER_OTLP_TIMEOUT, false),
            (OTEL_EXPORTER_OTLP_COMPRESSION, false),
            (OTEL_EXPORTER_OTLP_PROTOCOL, false),
        ] {
            for signal in ["TRACES", "LOGS"] {
                let var = general.replacen("OTLP_", &format!("OTLP_{signal}_"), 1);
                env.warn_not_read(&var, general, secret);
            }
        }
        self.tls = tls_files(
            env,
            [
                OTEL_EXPORTER_OTLP_CERTIFICATE,
                OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
                OTEL_EXPORTER_OTLP_CLIENT_KEY,
            ],
        );
        self.traces_tls = tls_files(
            env,
            [
                OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE,
                OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE,
                OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY,
            ],
        );
        self.logs_tls = tls_files(
            env,
            [
                OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE,
                OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE,
                OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY,
            ],
        );
    }

    fn read_resource(&mut self, env: &mut EnvReader<'_>) {
        if let Some(attrs) = env.parse(
            OTEL_RESOURCE_ATTRIBUTES,
            &OTEL_RESOURCE_ATTRIBUTES_DEFAULT,
            parse_pairs,
        ) {
            if let Some((_, name)) = attrs.iter().find(|(k, _)| k == "service.name") {
                self.service_name = name.clone();
            }
            self.resource_attributes = attrs
                .into_iter()
                .filter(|(k, _)| k != "service.name")
                .collect();
        }
        if let Some(name) = env.raw(OTEL_SERVICE_NAME) {
            self.service_name = name;
        }
    }

    fn read_batching(&mut self, env: &mut EnvReader<'_>) {
        if let Some(t) = env.parse(
            OTEL_BSP_EXPORT_TIMEOUT,
            &Millis(OTEL_BSP_EXPORT_TIMEOUT_DEFAULT),
            crate::env::millis_in(ENV_TIMEOUT_RANGE),
        ) {
            self.export_timeout = t;
        }
        let batch_set = env.parse(
            OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
            &OTEL_BSP_MAX_EXPORT_BATCH_SIZE_DEFAULT,
            crate::env::positive_usize,
        );
        if let Some(n) = batch_set {
            self.max_batch = n;
        }
        // The sink's buffer: a value the pipeline would refuse is a warning here, not a build
        // that fails.
        if let Some(n) = env.parse(
            OTEL_BSP_MAX_QUEUE_SIZE,
            &OTEL_BSP_MAX_QUEUE_SIZE_DEFAULT,
            crate::env::whole_number_in(1..=crate::sink::MAX_SINK_BUFFER_CAPACITY),
        ) {
            self.max_queue = n;
        }
        // The specification: the batch size "must be less than or equal to" the queue size;
        // the SDK then exports batches of the queue size (adversary pass 65: taken silently).
        if self.max_batch > self.max_queue {
            if let Some(batch) = batch_set {
                env.warnings.push(crate::env::EnvWarning {
                    var: OTEL_BSP_MAX_EXPORT_BATCH_SIZE.to_owned(),
                    value: batch.to_string(),
                    expected: format!(
                        "at most {OTEL_BSP_MAX_QUEUE_SIZE} ({}): a batch cannot be larger \
                         than the queue it is taken from",
                        self.max_queue
                    ),
                    used: self.max_queue.to_string(),
                });
            }
            self.max_batch = self.max_queue;
        }
        // Read for validation; batching is the pipeline's (see the README).
        let _ = env.parse(
            OTEL_BSP_SCHEDULE_DELAY,
            &Millis(OTEL_BSP_SCHEDULE_DELAY_DEFAULT),
            crate::env::millis,
        );
    }

    fn read_signals(&mut self, env: &mut EnvReader<'_>) {
        if let Some(on) = env.parse(
            OTEL_TRACES_EXPORTER,
            &OTEL_EXPORTER_DEFAULT,
            crate::env::exporters,
        ) {
            self.traces = on;
        }
        if let Some(on) = env.parse(
            OTEL_LOGS_EXPORTER,
            &OTEL_EXPORTER_DEFAULT,
            crate::env::exporters,
        ) {
            if !on {
                self.logs = EventsAsLogs::None;
            }
        }
    }
}

impl Otlp {
    fn read_spool(&mut self, env: &mut EnvReader<'_>) {
        if let Some(dir) = env.raw(OFFLOAD_OTLP_SPOOL_DIR) {
            self.spool_dir = Some(crate::sink::absolute(dir.into()));
        }
        if let Some(n) = env.parse(
            OFFLOAD_OTLP_SPOOL_MAX_BYTES,
            &OFFLOAD_OTLP_SPOOL_MAX_BYTES_DEFAULT,
            crate::env::whole_number_in(MIN_SPOOL_MAX_BYTES..=MAX_SPOOL_MAX_BYTES),
        ) {
            self.spool_max_bytes = n;
        }
    }
}

/// The TLS files named by three variables: CA, client certificate, client key. They are read
/// (and any problem reported) when the pipeline is built.
fn tls_files(env: &mut EnvReader<'_>, [ca, cert, key]: [&str; 3]) -> Tls {
    let mut tls = Tls::new();
    if let Some(path) = env.raw(ca) {
        tls = tls.certificate(path);
    }
    if let Some(path) = env.raw(cert) {
        tls = tls.client_certificate(path);
    }
    if let Some(path) = env.raw(key) {
        tls = tls.client_key(path);
    }
    tls
}

/// `OTEL_EXPORTER_OTLP_COMPRESSION`: whether requests are gzipped.
fn compression(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "gzip" => Ok(true),
        "none" => Ok(false),
        _ => Err("gzip or none".to_owned()),
    }
}

/// What the `k=v` list variables take.
const EXPECTED_PAIRS: &str = "comma-separated key=value pairs (percent-encoded)";

/// A `k=v,k2=v2` list (`OTEL_RESOURCE_ATTRIBUTES`), percent-decoded. An error says which entry
/// is wrong (counted from 1, by commas) without quoting it.
fn parse_pairs(s: &str) -> Result<Vec<(String, String)>, String> {
    Ok(numbered_pairs(s)?
        .into_iter()
        .map(|(_, k, v)| (k, v))
        .collect())
}

/// `OTEL_EXPORTER_OTLP_HEADERS`: a `k=v` list whose names and values HTTP can carry (the same
/// check as a header set in code, made when the sink starts). An error says which entry is
/// wrong, and names a header only when its name is valid: a malformed entry
/// (`Authorization: Bearer <token>==`) may hold the secret where the name was expected.
fn parse_headers(s: &str) -> Result<Vec<(String, String)>, String> {
    let pairs = numbered_pairs(s)?;
    for (entry, k, v) in &pairs {
        super::sink::check_header(k, v)
            .map_err(|bad| format!("{EXPECTED_PAIRS}, but {}", bad.describe("entry", *entry, k)))?;
        // A header with no value is dropped by OpenTelemetry's exporters; here it is an error,
        // since it is most likely a secret pasted without its name, which would be sent and
        // shown (in `/config`) as a header name. So is a value of `=` alone: base64 padding of
        // two, the first of which was read as the separator.
        if v.chars().all(|c| c == '=') {
            return Err(format!(
                "{EXPECTED_PAIRS}, but entry {entry} has no value (a bare token? write \
                 `name=value`, e.g. `authorization=Bearer%20<token>`)"
            ));
        }
    }
    Ok(pairs.into_iter().map(|(_, k, v)| (k, v)).collect())
}

/// The entries of a `k=v` list with their place in it (from 1, empty entries counted).
fn numbered_pairs(s: &str) -> Result<Vec<(usize, String, String)>, String> {
    s.split(',')
        .enumerate()
        .filter(|(_, p)| !p.trim().is_empty())
        .map(|(i, pair)| {
            let entry = i + 1;
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("{EXPECTED_PAIRS}, but entry {entry} has no `=`"))?;
            // A value that does not decode is refused whole, as the specification asks
            // (adversary pass 65: `%zz` was kept as is, `%ff%fe` became U+FFFD twice).
            let undecodable = |what: &str| {
                format!(
                    "{EXPECTED_PAIRS}, but entry {entry}'s {what} is not valid percent-encoding \
                     (`%` and two hex digits, decoding to UTF-8)"
                )
            };
            let k = percent_decode(k.trim()).ok_or_else(|| undecodable("key"))?;
            let v = percent_decode(v.trim()).ok_or_else(|| undecodable("value"))?;
            if k.is_empty() {
                return Err(format!("{EXPECTED_PAIRS}, but entry {entry} has no key"));
            }
            Ok((entry, k, v))
        })
        .collect()
}

/// Decodes `%XX` escapes (the W3C baggage format OTel uses for headers and attributes);
/// `None` for a `%` not followed by two hex digits, or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
            out.push(u8::from_str_radix(hex?, 16).ok()?);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_refuses_what_does_not_decode() {
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("caf%C3%A9").as_deref(), Some("café"));
        for bad in ["%zz", "%f", "100%", "%ff%fe", "%+1"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn env_is_read_with_warnings_and_endpoints_follow_the_spec() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            (
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                "http://logs:9999/custom",
            ),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "api-key=s%3Dcret, team = core",
            ),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "abc"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "0"),
            ("OTEL_SERVICE_NAME", "checkout"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,service.name=ignored",
            ),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "0"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem"),
            ("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", "/etc/logs-ca.pem"),
            ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "/etc/key.pem"),
            ("OFFLOAD_OTLP_SPOOL_DIR", "/var/spool/app"),
            ("OFFLOAD_OTLP_SPOOL_MAX_BYTES", "1024"),
        ];
        let lookup = |v: &str| {
            vars.iter()
                .find(|(k, _)| *k == v)
                .map(|(_, x)| x.to_string())
        };
        let s = Otlp::from_env_with(&lookup);
        assert_eq!(s.protocol, Protocol::HttpProtobuf);
        assert_eq!(
            s.signal_endpoint(&s.traces_endpoint, "v1/traces"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            s.signal_endpoint(&s.logs_endpoint, "v1/logs"),
            "http://logs:9999/custom"
        );
        assert_eq!(
            s.headers,
            [
                ("api-key".into(), "s=cret".into()),
                ("team".into(), "core".into())
            ]
        );
        assert_eq!(s.service_name, "checkout");
        assert_eq!(
            s.resource_attributes,
            [("deployment.environment".into(), "prod".into())]
        );
        assert_eq!(s.timeout, DEFAULT_OTLP_TIMEOUT);
        assert_eq!(s.tls, Tls::new().certificate("/etc/ca.pem"));
        assert_eq!(
            s.logs_tls.over(&s.tls),
            Tls::new().certificate("/etc/logs-ca.pem")
        );
        assert_eq!(
            s.traces_tls.over(&s.tls),
            Tls::new()
                .certificate("/etc/ca.pem")
                .client_key("/etc/key.pem")
        );
        assert_eq!(s.max_batch, DEFAULT_MAX_EXPORT_BATCH_SIZE);
        assert_eq!(s.spool_dir.as_deref(), Some("/var/spool/app".as_ref()));
        assert_eq!(s.spool_max_bytes, DEFAULT_SPOOL_MAX_BYTES);
        let vars: Vec<&str> = s.warnings().iter().map(|w| w.var.as_str()).collect();
        assert_eq!(
            vars,
            [
                "OTEL_EXPORTER_OTLP_TIMEOUT",
                "OTEL_BSP_EXPORT_TIMEOUT",
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                "OFFLOAD_OTLP_SPOOL_MAX_BYTES"
            ]
        );
        assert_eq!(
            s.export_timeout, DEFAULT_EXPORT_TIMEOUT,
            "0 would fail every export"
        );
        let spool = s.warnings().last().unwrap().to_string();
        assert!(
            spool.contains("from 65536 to 1099511627776")
                && spool.contains("the default 268435456"),
            "{spool}"
        );
        assert!(
            !format!("{s:?}").contains("s=cret"),
            "header values are secret"
        );
    }

    #[test]
    fn a_bad_header_entry_is_named_by_its_place_never_by_its_text() {
        let expected = |s: &str| parse_headers(s).unwrap_err();
        assert_eq!(
            expected("Authorization: Bearer s3cr3t"),
            "comma-separated key=value pairs (percent-encoded), but entry 1 has no `=`"
        );
        assert!(expected("a=1,,=s3cr3t").ends_with("but entry 3 has no key"));
        let name = expected("x-team=core,Authorization: Bearer s3cr3t==");
        assert!(
            name.ends_with(
                "but entry 2 has a name that is not a valid HTTP header name (letters, digits \
                 and !#$%&'*+-.^_`|~ only: no spaces or colons)"
            ),
            "{name}"
        );
        let value = expected("x-api-key=s3cr3t%0A");
        assert!(
            value.ends_with(
                "but entry 1 (`x-api-key`) has a value that HTTP cannot carry (a line \
                 break or another control character, or a character that is not ASCII)"
            ),
            "{value}"
        );
        // A bare token (base64, its padding read as the `=`) would be sent, and shown in
        // `/config`, as a header name; its padding may be two `=`, the value then `=` alone.
        let no_value = |entry: usize| {
            format!(
                "but entry {entry} has no value (a bare token? write `name=value`, e.g. \
                 `authorization=Bearer%20<token>`)"
            )
        };
        let bare = expected("x-team=core,czNjcjN0dG9rZW4=");
        assert!(bare.ends_with(&no_value(2)), "{bare}");
        let padded = expected("czNjcjN0dG9rZQ==");
        assert!(padded.ends_with(&no_value(1)), "{padded}");
        for e in [name, value, bare, padded] {
            assert!(!e.contains("s3cr3t") && !e.contains("czNjcjN0"), "{e}");
        }
        assert_eq!(
            parse_headers("api-key=s%3Dcret, Team = core"),
            Ok(vec![
                ("api-key".into(), "s=cret".into()),
                ("Team".into(), "core".into())
            ])
        );
    }
}
