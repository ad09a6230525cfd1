//! A misconfigured OTLP sink fails `build()` with an error that says what was given and what
//! is expected, instead of failing every export later (or retrying for seconds in silence).
#![cfg(feature = "otlp")]

use tracing_offload::sink::otlp::Tls;
use tracing_offload::sink::Otlp;
use tracing_offload::OffloadLayer;

/// The build error for `sink`, with its source chain.
#[track_caller]
fn build_error(sink: Otlp) -> String {
    let Err(e) = OffloadLayer::builder().sink(sink).build() else {
        panic!("the build should fail");
    };
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(" | ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[test]
fn an_endpoint_without_http_or_https_is_refused() {
    let ftp = build_error(Otlp::new().endpoint("ftp://x"));
    assert!(
        ftp.contains(r#"the OTLP traces endpoint "ftp://x" uses the scheme "ftp""#),
        "{ftp}"
    );
    let no_scheme = build_error(Otlp::new().endpoint("collector:4317"));
    assert!(
        no_scheme.contains(r#""collector:4317" has no scheme"#)
            && no_scheme.contains("expected a URL such as http://collector:4317"),
        "{no_scheme}"
    );
    assert!(
        !no_scheme.contains("https://collector:4317\""),
        "{no_scheme}"
    );
}

/// A port that is not a number from 1 to 65535, or no valid host, used to pass `build()`, and
/// every export then failed ("invalid port number", "empty host"), retried as a network error
/// (found by an adversary).
#[test]
fn an_endpoint_with_an_invalid_port_or_host_is_refused() {
    for (endpoint, why) in [
        ("http://collector:abc", "invalid port number"),
        ("http://collector:99999", "invalid port number"),
        ("http://:9", "empty host"),
        ("http://[127.0.0.1]:9", "invalid IPv6 address"),
        ("http://10.0.0.300:4318", "invalid IPv4 address"),
    ] {
        let e = build_error(Otlp::new().endpoint(endpoint));
        assert!(
            e.contains(&format!("{endpoint:?} is not a valid URL ({why})")),
            "{e}"
        );
    }
    // A `#` in a password ends the URL's authority: refused, without showing the password.
    let e = build_error(Otlp::new().endpoint("http://user:pa#s3cr3t@collector:4318"));
    assert!(
        e.contains("percent-encoded") && !e.contains("s3cr3t"),
        "{e}"
    );
}

#[cfg(feature = "tls")]
#[test]
fn tls_files_that_cannot_be_used_are_refused_by_name() {
    let missing = build_error(
        Otlp::new()
            .endpoint("https://collector.example:4317")
            .tls(Tls::new().certificate("/nonexistent/ca.pem")),
    );
    assert!(
        missing.contains("cannot read the CA certificate file /nonexistent/ca.pem"),
        "{missing}"
    );

    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let key_only = build_error(
        Otlp::new()
            .endpoint("https://collector.example:4318")
            .tls(Tls::new().client_key(&key)),
    );
    assert!(
        key_only.contains("was given without a client certificate"),
        "{key_only}"
    );
}

#[test]
fn tls_files_on_a_plain_text_endpoint_are_refused() {
    let plain = build_error(
        Otlp::new()
            .endpoint("http://collector.example:4317")
            .tls(Tls::new().certificate("/etc/ca.pem")),
    );
    assert!(
        plain.contains("TLS files are set (Otlp::tls or OTEL_EXPORTER_OTLP_CERTIFICATE")
            && plain.contains("the OTLP traces endpoint is \"http://collector.example:4317\"")
            && plain.contains("use https://"),
        "{plain}"
    );
}

#[cfg(not(feature = "tls"))]
#[test]
fn https_without_the_tls_feature_is_refused() {
    let e = build_error(Otlp::new().endpoint("https://collector.example:4317"));
    assert!(e.contains("without its `tls` feature"), "{e}");
}
