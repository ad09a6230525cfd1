//! TLS files that cannot be used fail `build()` at once, with an error that names the file and
//! what is wrong, the same for both transports; files that can be used are not refused.
#![cfg(feature = "tls")]
mod support;

use std::path::Path;

use support::tls::TestPki;
use tracing_offload::sink::otlp::{Protocol, Tls};
use tracing_offload::sink::Otlp;
use tracing_offload::OffloadLayer;

const PROTOCOLS: [Protocol; 2] = [Protocol::Grpc, Protocol::HttpProtobuf];

/// The build error of an `https://` sink with `tls`, with its sources, or `None` if it built.
fn build_error(protocol: Protocol, tls: Tls) -> Option<String> {
    let sink = Otlp::new()
        .endpoint("https://localhost:4317")
        .protocol(protocol)
        .tls(tls);
    let e = OffloadLayer::builder().sink(sink).build().err()?;
    Some(support::error_chain(&e))
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// A FIFO used to block the build until some process wrote to it (for ever, at start-up), and a
/// device such as `/dev/zero` was read until memory ran out.
#[cfg(unix)]
#[test]
fn a_fifo_without_a_writer_or_a_device_fails_the_build_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("ca.fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    for protocol in PROTOCOLS {
        let e = build_error(protocol, Tls::new().certificate(&fifo)).expect("refused");
        assert!(
            e.contains(&format!(
                "the CA certificate file {} holds no PEM certificate",
                fifo.display()
            )),
            "{e}"
        );
        let e = build_error(protocol, Tls::new().certificate("/dev/zero")).expect("refused");
        assert!(
            e.contains("cannot read the CA certificate file /dev/zero")
                && e.contains("not a regular file nor a pipe"),
            "{e}"
        );
    }
}

/// A key handed through a pipe, as `<(vault read …)` does, keeps it off the disk: read to the
/// pipe's end.
#[cfg(target_os = "linux")]
#[test]
fn a_key_and_a_ca_handed_through_pipes_are_read() {
    use std::io::Write as _;
    use std::os::fd::AsRawFd as _;
    let pki = TestPki::new();
    for protocol in PROTOCOLS {
        let through_pipe = |path: &Path| {
            let (reader, mut writer) = std::io::pipe().unwrap();
            writer.write_all(read(path).as_bytes()).unwrap();
            drop(writer);
            let fd = format!("/dev/fd/{}", reader.as_raw_fd());
            (reader, fd)
        };
        let (_ca, ca) = through_pipe(&pki.ca);
        let (_key, key) = through_pipe(&pki.client_key);
        let tls = Tls::new()
            .certificate(&ca)
            .client_certificate(&pki.client_cert)
            .client_key(&key);
        assert_eq!(build_error(protocol, tls), None, "{protocol:?}");
    }
}

/// A damaged certificate among good ones was skipped by the HTTP transport and failed the gRPC
/// one's set-up with "Error parsing TLS certificate", naming no file.
#[test]
fn a_damaged_certificate_in_a_bundle_is_named_on_both_transports() {
    let pki = TestPki::new();
    let bundle = format!(
        "{}-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n",
        read(&pki.ca)
    );
    let path = write(pki.dir.path(), "bundle.pem", &bundle);
    for protocol in PROTOCOLS {
        let e = build_error(protocol, Tls::new().certificate(&path)).expect("refused");
        assert!(
            e.contains(&format!(
                "the CA certificate file {} holds a certificate that cannot be read (its \
                 certificate number 2)",
                path.display()
            )),
            "{protocol:?}: {e}"
        );
    }
}

#[test]
fn client_keys_that_cannot_be_used_say_why_and_name_the_files() {
    let pki = TestPki::new();
    let dir = pki.dir.path();
    let encrypted = write(
        dir,
        "encrypted.pem",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n\
         -----END ENCRYPTED PRIVATE KEY-----\n",
    );
    // The client's chain with the CA first: the key is not the first certificate's.
    let reversed = write(
        dir,
        "reversed.pem",
        &(read(&pki.ca) + &read(&pki.client_cert)),
    );
    for protocol in PROTOCOLS {
        let e = build_error(
            protocol,
            Tls::new()
                .client_certificate(&pki.client_cert)
                .client_key(&encrypted),
        )
        .expect("refused");
        assert!(
            e.contains(&format!(
                "the client key file {} holds an encrypted private key",
                encrypted.display()
            )),
            "{e}"
        );
        for (cert, key) in [
            (&reversed, &pki.client_key),
            // Another certificate's key.
            (&pki.client_cert, &pki.server_key),
        ] {
            let e = build_error(
                protocol,
                Tls::new().client_certificate(cert).client_key(key),
            )
            .expect("refused");
            assert!(
                e.contains(&format!(
                    "the client key {} does not fit the client certificate {}: the \
                     certificate file must start with the client's own certificate",
                    key.display(),
                    cert.display()
                )),
                "{protocol:?}: {e}"
            );
        }
    }
    // The files in the right order build.
    let good = Tls::new()
        .client_certificate(&pki.client_cert)
        .client_key(&pki.client_key);
    for protocol in PROTOCOLS {
        assert_eq!(build_error(protocol, good.clone()), None);
    }
}

/// The general TLS files (OTEL_EXPORTER_OTLP_CERTIFICATE) apply to every signal: with traces
/// on `https://` and logs on `http://`, the logs simply do without them. The build used to fail,
/// advising to remove the files the traces need.
#[test]
fn general_files_with_one_plain_text_signal_build_and_signal_files_do_not() {
    let pki = TestPki::new();
    let vars = [
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "https://localhost:4318/v1/traces".to_owned(),
        ),
        (
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
            "http://127.0.0.1:4318/v1/logs".to_owned(),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
        (
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            pki.ca.display().to_string(),
        ),
    ];
    let lookup = |var: &str| vars.iter().find(|(k, _)| *k == var).map(|(_, v)| v.clone());
    let built = OffloadLayer::builder()
        .sink(Otlp::from_env_with(&lookup))
        .build();
    assert!(built.is_ok(), "{:?}", built.err());

    // Files set for the logs themselves, on a plain-text logs endpoint: a mistake, said so.
    let sink = Otlp::from_env_with(&lookup).logs_tls(Tls::new().certificate(&pki.ca));
    let Err(e) = OffloadLayer::builder().sink(sink).build() else {
        panic!("TLS files for a plain-text logs endpoint were accepted");
    };
    let e = support::error_chain(&e);
    assert!(
        e.contains(
            "TLS files are set for the OTLP logs endpoint (Otlp::logs_tls or \
                    OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE"
        ),
        "{e}"
    );

    // The general files with no https:// endpoint at all: a mistake too.
    let sink = Otlp::new()
        .endpoint("http://127.0.0.1:4318")
        .protocol(Protocol::HttpProtobuf)
        .tls(Tls::new().certificate(&pki.ca));
    let Err(e) = OffloadLayer::builder().sink(sink).build() else {
        panic!("TLS files with only plain-text endpoints were accepted");
    };
    let e = support::error_chain(&e);
    assert!(e.contains("no endpoint uses https://"), "{e}");
}
