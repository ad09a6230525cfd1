//! TLS for `https://` endpoints: the files a user names ([`Tls`]), read and checked when the sink
//! starts, and (feature `tls`) the rustls configurations of both transports built from them.
//!
//! Trust: the platform's roots (`rustls-native-certs`) plus any CA file given. Client
//! certificates (mTLS): a certificate chain and its private key, both PEM. The crypto provider is
//! `ring`, named explicitly, so nothing depends on a process-wide default provider.

use std::path::{Path, PathBuf};

/// Installs rustls' `ring` crypto provider as the process's default, unless one is installed
/// already; returns whether this call installed it. Call it first thing in `main` when your
/// application builds `reqwest` clients (or other rustls users) of its own and does not install
/// a provider itself.
///
/// Why: this crate's `tls` feature (on by default) turns on reqwest's `rustls-no-provider`, as
/// the OTLP sink hands reqwest a rustls configuration of its own, with `ring`, and needs no
/// default provider. Cargo unifies features across the build, so your own `reqwest`
/// (`default-features = false`, say) gets rustls without a provider, and
/// `reqwest::Client::builder().build()` panics ("No rustls crypto provider is configured").
/// This crate never installs a process-wide provider by itself: an application that installs
/// another one (`aws-lc-rs`) would then fail to.
///
/// ```
/// // fn main() {
/// tracing_offload::sink::otlp::install_rustls_provider();
/// // let _guard = tracing_offload::init()?; … reqwest::Client::new() …
/// // }
/// ```
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub fn install_rustls_provider() -> bool {
    rustls::crypto::ring::default_provider()
        .install_default()
        .is_ok()
}

/// TLS files for an `https://` OTLP endpoint, all PEM: a CA to trust on top of the platform's
/// roots, and a client certificate with its key for mutual TLS.
///
/// ```
/// use tracing_offload::sink::{otlp::Tls, Otlp};
///
/// let sink = Otlp::new()
///     .endpoint("https://collector.internal:4317")
///     .tls(Tls::new()
///         .certificate("/etc/otel/ca.pem")
///         .client_certificate("/etc/otel/client.pem")
///         .client_key("/etc/otel/client-key.pem"));
/// # drop(sink);
/// ```
///
/// The files are read when the pipeline is built: a file that cannot be read or holds no
/// certificate, or a key without a certificate, fails the build with an error that names the
/// file. Needs the `tls` feature (on by default).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tls {
    #[serde(serialize_with = "shown")]
    certificate: Option<PathBuf>,
    #[serde(serialize_with = "shown")]
    client_certificate: Option<PathBuf>,
    #[serde(serialize_with = "shown")]
    client_key: Option<PathBuf>,
}

/// A path as the configuration shows it: with U+FFFD for bytes that are not UTF-8, which
/// `serde` cannot write (the settings of a sink given such a path panicked `build()`).
fn shown<S: serde::Serializer>(path: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    match path {
        Some(p) => s.serialize_some(&p.to_string_lossy()),
        None => s.serialize_none(),
    }
}

// === impl Tls ===

impl Tls {
    /// No files: the platform's roots, no client certificate.
    pub fn new() -> Self {
        Self::default()
    }

    /// A PEM file of CA certificates trusted on top of the platform's roots
    /// (`OTEL_EXPORTER_OTLP_CERTIFICATE`).
    pub fn certificate(mut self, path: impl Into<PathBuf>) -> Self {
        self.certificate = Some(path.into());
        self
    }

    /// The client's PEM certificate chain for mutual TLS
    /// (`OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`); needs [`client_key`](Self::client_key).
    pub fn client_certificate(mut self, path: impl Into<PathBuf>) -> Self {
        self.client_certificate = Some(path.into());
        self
    }

    /// The client certificate's PEM private key (`OTEL_EXPORTER_OTLP_CLIENT_KEY`).
    pub fn client_key(mut self, path: impl Into<PathBuf>) -> Self {
        self.client_key = Some(path.into());
        self
    }

    /// Whether no file is named.
    pub(super) fn is_empty(&self) -> bool {
        self.certificate.is_none() && self.client_certificate.is_none() && self.client_key.is_none()
    }

    /// This signal's files, each falling back to `general`'s (the OTel rule for the
    /// `_TRACES_`/`_LOGS_` variables).
    pub(super) fn over(&self, general: &Tls) -> Tls {
        Tls {
            certificate: self
                .certificate
                .clone()
                .or_else(|| general.certificate.clone()),
            client_certificate: self
                .client_certificate
                .clone()
                .or_else(|| general.client_certificate.clone()),
            client_key: self
                .client_key
                .clone()
                .or_else(|| general.client_key.clone()),
        }
    }

    /// Reads and checks the files, for `what` (`the OTLP logs endpoint`, named in errors with
    /// the settings that would mend them): each certificate must be readable, and the client
    /// key must be the client certificate's.
    pub(super) fn load(&self, what: &str, reads: &TlsReads) -> Result<LoadedTls, String> {
        let ca = match &self.certificate {
            Some(path) => {
                let pem = reads.read(path, "CA certificate file")?;
                check_certificates(&pem, path, "CA certificate file")?;
                Some(pem)
            }
            None => None,
        };
        let identity = match (&self.client_certificate, &self.client_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(load_identity(cert, key, reads)?),
            (None, Some(key)) => {
                return Err(format!(
                    "a client key ({}) was given without a client certificate for {what}: set \
                     one too (Tls::client_certificate, OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE or \
                     its _TRACES_/_LOGS_ form)",
                    key.display()
                ))
            }
            (Some(cert), None) => {
                return Err(format!(
                    "a client certificate ({}) was given without its key for {what}: set it \
                     too (Tls::client_key, OTEL_EXPORTER_OTLP_CLIENT_KEY or its _TRACES_/_LOGS_ \
                     form)",
                    cert.display()
                ))
            }
        };
        Ok(LoadedTls { ca, identity })
    }
}

/// The files' contents, checked to hold what they should.
#[derive(Debug, Default)]
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub(super) struct LoadedTls {
    /// PEM CA certificates.
    pub(super) ca: Option<Vec<u8>>,
    /// PEM certificate chain and PEM key.
    pub(super) identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// The TLS files a sink has read, by path. The sink reads its files for each signal and for
/// the spool's replay, and each file is read once: a pipe (`<(vault read …)`) reads as empty
/// the second time. Its clones start empty.
#[derive(Default)]
pub(super) struct TlsReads(std::sync::Mutex<std::collections::HashMap<PathBuf, Vec<u8>>>);

impl TlsReads {
    /// `path`'s contents, read the first time it is asked for.
    fn read(&self, path: &Path, what: &str) -> Result<Vec<u8>, String> {
        let mut read_so_far = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pem) = read_so_far.get(path) {
            return Ok(pem.clone());
        }
        let pem = read(path, what)?;
        read_so_far.insert(path.to_path_buf(), pem.clone());
        Ok(pem)
    }
}

impl Clone for TlsReads {
    fn clone(&self) -> Self {
        TlsReads::default()
    }
}

impl std::fmt::Debug for TlsReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsReads")
    }
}

/// The largest TLS file read: a bundle of every public CA is well under a megabyte.
const MAX_TLS_FILE_BYTES: u64 = 16 << 20;

/// Reads a TLS file: a regular file (or a link to one) of at most [`MAX_TLS_FILE_BYTES`], or a
/// pipe (`<(vault read …)`, a FIFO), read to its end. A device such as `/dev/zero` would be
/// read until memory runs out, and is refused. A FIFO is opened without waiting for a writer
/// (opening it as usual would block `build()` until some process opened it to write): with
/// none, it reads as empty.
fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let cannot =
        |e: &dyn std::fmt::Display| format!("cannot read the {what} {}: {e}", path.display());
    let meta = std::fs::metadata(path).map_err(|e| cannot(&e))?;
    let pipe = is_pipe(&meta);
    if meta.is_dir() {
        return Err(cannot(&"it is a directory"));
    }
    if !meta.is_file() && !pipe {
        return Err(cannot(
            &"it is not a regular file nor a pipe (a device or a socket)",
        ));
    }
    // Opened without waiting whatever the look found: a FIFO put there since is not waited on.
    let file = crate::sink::open_without_waiting(std::fs::OpenOptions::new().read(true), path)
        .map_err(|e| cannot(&e))?;
    let opened = file.metadata().map_err(|e| cannot(&e))?;
    if !opened.is_file() && !is_pipe(&opened) {
        return Err(cannot(
            &"it changed into something other than a file or a pipe",
        ));
    }
    let mut pem = Vec::new();
    file.take(MAX_TLS_FILE_BYTES + 1)
        .read_to_end(&mut pem)
        .map_err(|e| cannot(&e))?;
    if pem.len() as u64 > MAX_TLS_FILE_BYTES {
        return Err(cannot(&format_args!(
            "it is larger than {} MiB, more than any certificate or key file holds",
            MAX_TLS_FILE_BYTES >> 20
        )));
    }
    Ok(pem)
}

#[cfg(unix)]
fn is_pipe(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt as _;
    meta.file_type().is_fifo()
}

#[cfg(not(unix))]
fn is_pipe(_: &std::fs::Metadata) -> bool {
    false
}

fn load_identity(cert: &Path, key: &Path, reads: &TlsReads) -> Result<(Vec<u8>, Vec<u8>), String> {
    let cert_pem = reads.read(cert, "client certificate file")?;
    let key_pem = reads.read(key, "client key file")?;
    check_certificates(&cert_pem, cert, "client certificate file")?;
    if !has_private_key(&key_pem) {
        if String::from_utf8_lossy(&key_pem).contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return Err(format!(
                "the client key file {} holds an encrypted private key, which cannot be used: \
                 give it decrypted (`openssl pkey -in <encrypted> -out <key.pem>`)",
                key.display()
            ));
        }
        return Err(format!(
            "the client key file {} holds no PEM private key",
            key.display()
        ));
    }
    #[cfg(feature = "tls")]
    client_auth(&cert_pem, &key_pem).map_err(|e| {
        if e.contains("KeyMismatch") {
            format!(
                "the client key {} does not fit the client certificate {}: the certificate \
                 file must start with the client's own certificate (then its intermediates), \
                 and the key must be that certificate's ({e})",
                key.display(),
                cert.display()
            )
        } else {
            // A key or certificate rustls cannot use (an RSA-PSS key, an unknown critical
            // extension): no advice about the order of the files.
            format!(
                "the client certificate {} and key {} cannot be used: {e}",
                cert.display(),
                key.display()
            )
        }
    })?;
    Ok((cert_pem, key_pem))
}

/// Checks that `pem` holds certificates, each of them readable: a damaged one would be skipped
/// by one transport and fail the other's set-up with an error that names no file.
#[cfg(feature = "tls")]
fn check_certificates(pem: &[u8], path: &Path, what: &str) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject as _;
    let mut found = 0;
    for (i, cert) in rustls::pki_types::CertificateDer::pem_slice_iter(pem).enumerate() {
        let unreadable = |e: &dyn std::fmt::Display| {
            format!(
                "the {what} {} holds a certificate that cannot be read (its certificate number \
                 {}): {e}",
                path.display(),
                i + 1
            )
        };
        let cert = cert.map_err(|e| unreadable(&e))?;
        rustls::RootCertStore::empty()
            .add(cert)
            .map_err(|e| unreadable(&e))?;
        found += 1;
    }
    if found == 0 {
        return Err(format!(
            "the {what} {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(())
}

#[cfg(not(feature = "tls"))]
fn check_certificates(pem: &[u8], path: &Path, what: &str) -> Result<(), String> {
    if certificates(pem).is_empty() {
        return Err(format!(
            "the {what} {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(())
}

/// The rustls client configuration builder's check of a client certificate and its key.
#[cfg(feature = "tls")]
fn client_auth(cert_pem: &[u8], key_pem: &[u8]) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject as _;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("the client key cannot be read: {e}"))?;
    client_config(rustls::RootCertStore::empty())?
        .with_client_auth_cert(certificates(cert_pem), key)
        .map_err(|e| e.to_string())
}

/// A rustls client configuration builder with `ring` (named, so that nothing depends on a
/// process-wide default provider), the safe default protocol versions and `roots`.
#[cfg(feature = "tls")]
fn client_config(
    roots: rustls::RootCertStore,
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>, String> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up failed: {e}"))?
        .with_root_certificates(roots))
}

#[cfg(feature = "tls")]
fn certificates(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

#[cfg(feature = "tls")]
fn has_private_key(pem: &[u8]) -> bool {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::PrivateKeyDer::from_pem_slice(pem).is_ok()
}

// Without the `tls` feature an `https://` endpoint fails the build before the files matter; the
// files are still checked for being readable, and these loose checks keep the messages the same.
#[cfg(not(feature = "tls"))]
fn certificates(pem: &[u8]) -> Vec<()> {
    let text = String::from_utf8_lossy(pem);
    text.matches("-----BEGIN CERTIFICATE-----")
        .map(|_| ())
        .collect()
}

#[cfg(not(feature = "tls"))]
fn has_private_key(pem: &[u8]) -> bool {
    String::from_utf8_lossy(pem).contains("PRIVATE KEY-----")
}

// === the transports' configurations (feature `tls`) ===

#[cfg(feature = "tls")]
impl LoadedTls {
    /// The rustls client configuration for the HTTP transport (reqwest), ALPN `http/1.1`.
    pub(super) fn rustls_config(&self) -> Result<rustls::ClientConfig, String> {
        let mut roots = platform_roots();
        if let Some(ca) = &self.ca {
            for cert in certificates(ca) {
                roots
                    .add(cert)
                    .map_err(|e| format!("a CA certificate cannot be used: {e}"))?;
            }
        }
        if roots.is_empty() {
            return Err(NO_ROOTS.to_owned());
        }
        let builder = client_config(roots)?;
        let mut config = match &self.identity {
            Some((cert, key)) => {
                use rustls::pki_types::pem::PemObject as _;
                let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key)
                    .map_err(|e| format!("the client key cannot be read: {e}"))?;
                builder
                    .with_client_auth_cert(certificates(cert), key)
                    .map_err(|e| format!("the client certificate and key do not fit: {e}"))?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// tonic's TLS configuration for the gRPC transport: the platform's roots plus the CA file,
    /// the handshake bounded by `timeout`.
    pub(super) fn tonic_config(
        &self,
        timeout: std::time::Duration,
    ) -> Result<opentelemetry_otlp::tonic_types::transport::ClientTlsConfig, String> {
        use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};
        if platform_roots().is_empty() && self.ca.is_none() {
            return Err(NO_ROOTS.to_owned());
        }
        let mut config = ClientTlsConfig::new().with_native_roots().timeout(timeout);
        if let Some(ca) = &self.ca {
            config = config.ca_certificate(Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        Ok(config)
    }
}

/// The rustls configuration reqwest gets for a plain-text endpoint, where it is never used (with
/// the `tls` feature reqwest needs one, or a process-wide crypto provider).
#[cfg(feature = "tls")]
pub(super) fn plain_text_config() -> Result<rustls::ClientConfig, String> {
    Ok(client_config(rustls::RootCertStore::empty())?.with_no_client_auth())
}

#[cfg(feature = "tls")]
const NO_ROOTS: &str = "no trusted root certificates: the platform's store is empty or \
    unreadable and no CA file was given (OTEL_EXPORTER_OTLP_CERTIFICATE or Tls::certificate)";

/// The platform's trusted roots; certificates it cannot parse are skipped.
#[cfg(feature = "tls")]
fn platform_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(found.certs);
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_files_fall_back_to_the_general_ones_field_by_field() {
        let general = Tls::new().certificate("/ca.pem").client_key("/k.pem");
        let traces = Tls::new().certificate("/traces-ca.pem");
        let t = traces.over(&general);
        assert_eq!(t.certificate.as_deref(), Some(Path::new("/traces-ca.pem")));
        assert_eq!(t.client_key.as_deref(), Some(Path::new("/k.pem")));
        assert!(Tls::new().over(&Tls::new()).is_empty());
    }

    #[test]
    fn unreadable_or_incomplete_files_are_errors_that_name_them() {
        let missing = Tls::new()
            .certificate("/nonexistent/ca.pem")
            .load("the OTLP traces endpoint", &TlsReads::default())
            .unwrap_err();
        assert!(
            missing.starts_with("cannot read the CA certificate file /nonexistent/ca.pem"),
            "{missing}"
        );
        let key_only = Tls::new()
            .client_key("/k.pem")
            .load("the OTLP logs endpoint", &TlsReads::default())
            .unwrap_err();
        assert!(
            key_only.contains("without a client certificate"),
            "{key_only}"
        );
        let cert_only = Tls::new()
            .client_certificate("/c.pem")
            .load("x", &TlsReads::default())
            .unwrap_err();
        assert!(cert_only.contains("without its key"), "{cert_only}");

        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let empty = Tls::new()
            .certificate(&junk)
            .load("x", &TlsReads::default())
            .unwrap_err();
        assert!(empty.contains("holds no PEM certificate"), "{empty}");
    }
}
