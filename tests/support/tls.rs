//! TLS for the OTLP tests: a CA made in the test (rcgen), and a TLS-terminating front (rustls)
//! that forwards each decrypted connection to a plain-text port of a real collector. Rotel's
//! receivers have no TLS, so the front stands where an ingress or a TLS collector would.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A test CA with a server certificate for `localhost` / `127.0.0.1` and a client certificate,
/// all written as PEM files into a temporary directory.
pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TestPki {
    pub fn new() -> TestPki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "tracing-offload test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf = |names: Vec<String>, purpose: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(names).unwrap();
            params.extended_key_usages.push(purpose);
            let cert = params.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = leaf(
            vec!["offload-client".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
        );

        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, pem: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        TestPki {
            ca: write("ca.pem", &ca_cert.pem()),
            server_cert: write("server.pem", &server_cert),
            server_key: write("server-key.pem", &server_key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client-key.pem", &client_key),
            dir,
        }
    }

    fn server_config(&self, alpn: &[u8], require_client_cert: bool) -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.server_cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(&self.server_key).unwrap();
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            for ca in CertificateDer::pem_file_iter(&self.ca).unwrap() {
                roots.add(ca.unwrap()).unwrap();
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_single_cert(certs, key).unwrap();
        config.alpn_protocols = vec![alpn.to_vec()];
        config
    }
}

/// A TLS front on a loopback port, forwarding to `127.0.0.1:<backend>`; stops on drop.
pub struct TlsFront {
    pub port: u16,
    _rt: tokio::runtime::Runtime,
}

impl TlsFront {
    /// For gRPC (ALPN `h2`) or HTTP/1.1 (ALPN `http/1.1`) backends; with `require_client_cert`
    /// the handshake needs a client certificate signed by the test CA.
    pub fn start(pki: &TestPki, backend: u16, grpc: bool, require_client_cert: bool) -> TlsFront {
        Self::start_with(pki, backend, grpc, require_client_cert, false)
    }

    /// [`start`](Self::start), holding the first connection it accepts without ever answering
    /// its handshake (a stuck ingress); the later ones are served.
    pub fn start_stalling_first(pki: &TestPki, backend: u16, grpc: bool) -> TlsFront {
        Self::start_with(pki, backend, grpc, false, true)
    }

    fn start_with(
        pki: &TestPki,
        backend: u16,
        grpc: bool,
        require_client_cert: bool,
        stall_first: bool,
    ) -> TlsFront {
        let alpn: &[u8] = if grpc { b"h2" } else { b"http/1.1" };
        let config = Arc::new(pki.server_config(alpn, require_client_cert));
        let (rt, listener, port) = super::front_runtime();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        rt.spawn(async move {
            let mut stall = stall_first;
            while let Ok((tcp, _)) = listener.accept().await {
                if std::mem::take(&mut stall) {
                    tokio::spawn(async move {
                        let _held = tcp;
                        std::future::pending::<()>().await;
                    });
                    continue;
                }
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A failed handshake (e.g. an untrusted client) just ends the connection.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut plain) =
                        tokio::net::TcpStream::connect(("127.0.0.1", backend)).await
                    else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        TlsFront { port, _rt: rt }
    }

    pub fn endpoint(&self) -> String {
        format!("https://localhost:{}", self.port)
    }
}
