//! The default `tls` feature turns on reqwest's `rustls-no-provider` (the OTLP sink hands
//! reqwest a rustls configuration of its own, with `ring`). Cargo unifies features across the
//! build, so an application's own plain `reqwest` client (`default-features = false`) gets
//! rustls without a crypto provider, and building it panics (found by an adversary building an
//! axum service, pass 42). `sink::otlp::install_rustls_provider()` installs `ring` as the
//! process's default, as the README says to do first thing in `main`. Its own test binary: the
//! provider is process-wide.
#![cfg(feature = "tls")]

use tracing_offload::sink::otlp::install_rustls_provider;

#[test]
fn an_applications_own_reqwest_client_builds_once_the_provider_is_installed() {
    let before = std::panic::catch_unwind(|| reqwest::Client::builder().build().is_ok());
    assert!(
        before.is_err(),
        "reqwest no longer panics without a provider: the README's advice can go"
    );
    assert!(install_rustls_provider(), "installed");
    let client = reqwest::Client::builder().build();
    assert!(client.is_ok(), "{:?}", client.err());
    assert!(!install_rustls_provider(), "one was already installed");
}
